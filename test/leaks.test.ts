import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { lock, lockSync, tryLock, inspect } from '../src/index.js';
import { cleanupTempDirs, fdCount, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

describe('no descriptor leaks', () => {
  it('10,000 acquire/release cycles and 1,000 failing calls leave the fd count unchanged', async () => {
    const d = tempDir();
    const p = join(d, 'leak.lock');
    mkdirSync(join(d, 'adir'));
    // warm up lazily opened descriptors (primitive probe, etc.)
    (await lock(p)).release();
    const before = fdCount();
    for (let i = 0; i < 10_000; i++) {
      const prim = (['auto', 'flock', 'ofd', 'posix'] as const)[i % 4];
      if (i % 2) (await lock(p, { primitive: prim })).release();
      else lockSync(p, { primitive: prim, mode: i % 3 ? 'exclusive' : 'shared' }).release();
    }
    const held = await lock(p);
    const failures: Array<() => unknown> = [
      () => lock(join(d, 'missing', 'x.lock')),
      () => lock(join(d, 'adir'), { primitive: 'ofd' }),
      () => lock(p, { mode: 'bogus' as never }),
      () => lock(p, { timeout: 0 }),
      () => lockSync(p, { timeout: 0 }),
      () => lock(p, { timeout: 1 }),
      () => lock(p, { primitive: 'posix', timeout: 0 }),
      () => lock(p, { create: false, timeout: 0 }),
      () => tryLock(join(d, 'missing', 'y.lock')),
      () => lock(p, { signal: AbortSignal.abort() }),
    ];
    let failed = 0;
    for (let i = 0; i < 1000; i++) {
      try {
        await failures[i % failures.length]!();
      } catch {
        failed++;
      }
    }
    expect(failed).toBe(1000);
    expect(tryLock(p)).toBeNull();
    held.release();
    await inspect(p);
    expect(fdCount()).toBe(before);
  });
});
