import { nullTranslator } from '@jupyterlab/translation';

import { formatShortPrice, ILaunchOffer, offerSentence } from '../format';

const trans = nullTranslator.load('awsjobs_lab');

function offer(fields: Partial<ILaunchOffer>): ILaunchOffer {
  return {
    types: ['m7i.xlarge'],
    zones: ['us-east-1a'],
    pools: 1,
    strategy: 'lowest-price',
    spot: false,
    from_price: null,
    ...fields
  };
}

describe('what one launch will try', () => {
  it('says the first type, how many others, zones and the lowest price', () => {
    const types = [
      'm7i.xlarge',
      ...Array.from({ length: 9 }, (_, i) => `x${i}`)
    ];
    expect(
      offerSentence(
        offer({
          types,
          zones: ['a', 'b', 'c'],
          pools: 30,
          spot: true,
          from_price: 0.061
        }),
        trans
      )
    ).toBe('m7i.xlarge or 9 similar types, 3 zones, from $0.061/h spot');
  });

  it('counts in the singular and leaves an unknown price out', () => {
    expect(
      offerSentence(offer({ types: ['c7i.large', 'c7a.large'] }), trans)
    ).toBe('c7i.large or 1 similar type, 1 zone, on-demand');
    expect(offerSentence(offer({}), trans)).toBe(
      'm7i.xlarge, 1 zone, on-demand'
    );
  });

  it('shortens prices without losing digits', () => {
    expect(formatShortPrice(0.061)).toBe('$0.061/h');
    expect(formatShortPrice(0.0832)).toBe('$0.0832/h');
    expect(formatShortPrice(0.5)).toBe('$0.500/h');
    expect(formatShortPrice(2.448)).toBe('$2.45/h');
  });
});
