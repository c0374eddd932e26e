import { describe, expect, it } from 'vitest';
import { primitives } from '../src/index.js';

describe('primitives()', () => {
  it('reports what this kernel supports and what auto resolves to', () => {
    const r = primitives();
    expect(r.platform).toBe(process.platform);
    if (process.platform === 'linux') {
      // OFD locks exist since Linux 3.15; this machine is far newer
      expect(r.available).toEqual({ flock: true, ofd: true, posix: true, windows: false });
      expect(r.auto).toBe('flock+ofd');
      expect(r.autoRange).toBe('ofd');
      expect(r.kernelWait).toBe(true);
    }
  });

  it('returns a copy the caller cannot use to change the cached report', () => {
    const r = primitives();
    r.available.flock = false;
    expect(primitives().available.flock).toBe(process.platform !== 'win32');
  });
});
