import {
  applyChunk,
  emptyLogState,
  ILogState,
  isAtBottom,
  shouldReadAgain,
  trimTail
} from '../logbuffer';
import { LogFollower } from '../logfollower';
import type { ILogChunk } from '../tokens';

const OPTIONS = { tailBytes: 1000, maxChars: 1000, maxLines: 50 };

/** A fake log of `size` bytes of numbered 10-byte lines ("000000001\n"…). */
function fakeLog(size: number, complete = false) {
  let reads = 0;
  let bytes = 0;
  const read = async (
    _id: string,
    offset: number,
    limit: number
  ): Promise<ILogChunk> => {
    reads++;
    const end = Math.min(size, offset + limit);
    let content = '';
    for (let pos = offset; pos < end; pos++) {
      const line = Math.floor(pos / 10);
      const col = pos % 10;
      content += col === 9 ? '\n' : String(line).padStart(9, '0')[col];
    }
    bytes += content.length;
    return {
      content,
      offset,
      next_offset: end,
      size,
      eof: end === size,
      complete: complete && end === size
    };
  };
  return { read, stats: () => ({ reads, bytes }) };
}

describe('trimTail', () => {
  it('keeps everything under the limits', () => {
    expect(trimTail('a\nb\n', 100, 10)).toEqual({
      text: 'a\nb\n',
      trimmed: false
    });
  });
  it('cuts at a line start when over the character limit', () => {
    const { text, trimmed } = trimTail('aaaa\nbbbb\ncccc\n', 8, 100);
    expect(trimmed).toBe(true);
    expect(text).toBe('cccc\n');
  });
  it('keeps at most maxLines lines', () => {
    const { text, trimmed } = trimTail('1\n2\n3\n4\n5\n', 1000, 2);
    expect(trimmed).toBe(true);
    expect(text).toBe('4\n5\n');
  });
});

describe('applyChunk', () => {
  it('appends chunks and follows the offset', () => {
    let state = emptyLogState();
    state = applyChunk(
      state,
      {
        content: 'one\n',
        offset: 0,
        next_offset: 4,
        size: 4,
        eof: true,
        complete: false
      },
      OPTIONS
    );
    expect(state).toMatchObject({
      offset: 4,
      text: 'one\n',
      eof: true,
      truncated: false
    });
    expect(shouldReadAgain(state)).toBe(false);
    state = applyChunk(
      state,
      {
        content: 'two\n',
        offset: 4,
        next_offset: 8,
        size: 20,
        eof: false,
        complete: false
      },
      OPTIONS
    );
    expect(state.text).toBe('one\ntwo\n');
    expect(shouldReadAgain(state)).toBe(true);
  });

  it('skips ahead when far behind, and drops the partial first line', () => {
    let state: ILogState = emptyLogState();
    state = applyChunk(
      state,
      {
        content: 'x'.repeat(100),
        offset: 0,
        next_offset: 100,
        size: 100000,
        eof: false,
        complete: false
      },
      OPTIONS
    );
    expect(state).toMatchObject({
      offset: 99000,
      text: '',
      truncated: true,
      dropPartial: true
    });
    state = applyChunk(
      state,
      {
        content: 'tial\nwhole line\n',
        offset: 99000,
        next_offset: 99016,
        size: 99016,
        eof: true,
        complete: false
      },
      OPTIONS
    );
    expect(state.text).toBe('whole line\n');
    expect(state.truncated).toBe(true);
    expect(state.dropPartial).toBe(false);
  });

  it('stops when the log is complete', () => {
    const state = applyChunk(
      emptyLogState(),
      {
        content: 'end\n',
        offset: 0,
        next_offset: 4,
        size: 4,
        eof: true,
        complete: true
      },
      OPTIONS
    );
    expect(state.complete).toBe(true);
    expect(shouldReadAgain(state)).toBe(false);
  });

  it('follows a 200 MB log with a bounded text and few bytes read', async () => {
    const size = 200 * 1024 * 1024;
    const log = fakeLog(size);
    const options = {
      tailBytes: 256 * 1024,
      maxChars: 256 * 1024,
      maxLines: 5000
    };
    let state = emptyLogState();
    for (let i = 0; i < 10 && !state.eof; i++) {
      state = applyChunk(
        state,
        await log.read('j', state.offset, 256 * 1024),
        options
      );
    }
    expect(state.eof).toBe(true);
    expect(state.truncated).toBe(true);
    expect(state.text.length).toBeLessThanOrEqual(256 * 1024);
    expect(state.text.split('\n').length - 1).toBeLessThanOrEqual(5000);
    expect(
      state.text.endsWith(`${String(size / 10 - 1).padStart(9, '0')}\n`)
    ).toBe(true);
    // Never the whole file: one probe and the tail.
    expect(log.stats().reads).toBeLessThanOrEqual(3);
    expect(log.stats().bytes).toBeLessThanOrEqual(3 * 256 * 1024);
  });
});

describe('isAtBottom', () => {
  it('tells whether the user scrolled up', () => {
    expect(isAtBottom(900, 1000, 100)).toBe(true);
    expect(isAtBottom(880, 1000, 100)).toBe(true);
    expect(isAtBottom(500, 1000, 100)).toBe(false);
  });
});

describe('LogFollower', () => {
  it('reads until the log is complete, then stops', async () => {
    const log = fakeLog(95, true);
    const follower = new LogFollower({
      jobId: 'j',
      read: log.read,
      tailBytes: 64 * 1024,
      intervalSeconds: 0.25
    });
    await new Promise<void>(resolve => {
      follower.changed.connect((_, state) => {
        if (state.complete) {
          resolve();
        }
      });
    });
    expect(follower.state.text.startsWith('000000000\n')).toBe(true);
    expect(follower.state.offset).toBe(95);
    const reads = log.stats().reads;
    await new Promise(resolve => setTimeout(resolve, 600));
    expect(log.stats().reads).toBe(reads);
    follower.dispose();
    expect(follower.isDisposed).toBe(true);
  });
});
