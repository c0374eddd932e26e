// The platform seam (src/platform.ts): code asks for capabilities by name,
// and a test can pretend to be another platform. Here Linux runs the code
// paths other platforms take.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect, lock } from '../src/index.js';
import { openSession } from '../src/session/index.js';
import { overridePlatform, platform } from '../src/platform.js';
import { cleanupTempDirs, startNode, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

describe('overridePlatform', () => {
  it('restores the real capabilities', () => {
    const real = platform();
    const restore = overridePlatform('win32');
    expect(platform()).toMatchObject({ name: 'win32', posixFiles: false, lockTable: false, staleTimestamp: 'mtime' });
    restore();
    expect(platform()).toBe(real);
  });

  it.runIf(process.platform === 'linux')(
    "without POSIX file semantics: a release with unlinkOnRelease and an abandoned session take Node's fs paths",
    async () => {
      const restore = overridePlatform({ posixFiles: false });
      try {
        const p = join(tempDir(), 'u.lock');
        const l = await lock(p, { unlinkOnRelease: true });
        l.release();
        expect(existsSync(p)).toBe(false);
        const s = await openSession(join(tempDir(), 'crate'));
        mkdirSync(join(s.path, 'sub'));
        writeFileSync(join(s.path, 'sub', 'f'), 'x');
        await s.abandon();
        expect(existsSync(s.path)).toBe(false);
      } finally {
        restore();
      }
    },
  );

  it.runIf(process.platform === 'linux')('without a lock table, inspect probes with lock attempts', async () => {
    const p = join(tempDir(), 'probe.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    const restore = overridePlatform({ lockTable: false });
    try {
      const info = await inspect(p);
      expect(info).toMatchObject({ held: true, mode: 'exclusive', source: 'probe', holders: [], queue: [] });
    } finally {
      restore();
      h.child.kill('SIGKILL');
    }
  });
});
