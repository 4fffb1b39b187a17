import { backendCan, backendLabel, configBackendCan } from '../backends';
import { EC2, LOCAL, makeBackend, makeConfig } from './fixtures';

describe('backends from GET config', () => {
  const config = makeConfig({
    backends: [LOCAL, EC2, makeBackend('gpu', { capabilities: { spot: true } })]
  });

  it("labels a backend with the server's label, else its id", () => {
    expect(backendLabel(config, 'ec2')).toBe('EC2');
    expect(backendLabel(config, 'local')).toBe('This machine');
    expect(backendLabel(config, 'gone')).toBe('gone');
    expect(backendLabel(null, 'ec2')).toBe('ec2');
  });

  it('answers capabilities from the server, never from an id', () => {
    expect(backendCan(config.backends, 'ec2', 'spot')).toBe(true);
    expect(backendCan(config.backends, 'local', 'spot')).toBe(false);
    expect(backendCan(config.backends, 'gpu', 'spot')).toBe(true);
    expect(backendCan(config.backends, 'gpu', 'instance_types')).toBe(false);
    expect(backendCan(config.backends, 'gone', 'spot')).toBe(false);
    expect(configBackendCan(null, 'ec2', 'instances')).toBe(false);
    expect(configBackendCan(config, 'ec2', 'instances')).toBe(true);
  });
});
