// Transient names: an occupied name is never an error for the caller. The
// name generator is made to hand out a name someone planted a directory at
// first, then fresh ones: releases and collections carry on as if nothing
// were there, and the planted entries are left alone.
import { afterAll, describe, expect, it, vi } from 'vitest';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { lock } from '../src/index.js';
import { openSession } from '../src/session/index.js';
import { cleanupTempDirs, tempDir } from './helpers.js';

// vi.mock is hoisted above the imports; `planted` is read only when a name is drawn
const planted: string[] = vi.hoisted(() => []);
vi.mock('../src/names.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/names.js')>();
  return {
    ...real,
    randomTag: () => (planted.length > 0 ? planted.shift()! : real.randomTag()),
  };
});

afterAll(cleanupTempDirs);

describe('an occupied transient name is retried, never an error', () => {
  it.runIf(process.platform !== 'win32')(
    'release() with unlinkOnRelease when its first aside names are taken',
    async () => {
      const d = tempDir();
      const p = join(d, 'x.lock');
      for (let i = 0; i < 3; i++) {
        const tag = `${'0'.repeat(15)}${i}`;
        mkdirSync(join(d, `.x.lock.fslock-unlink-${tag}`));
        planted.push(tag);
      }
      const l = await lock(p, { unlinkOnRelease: true });
      l.release(); // the code before this change threw EISDIR here
      expect(existsSync(p)).toBe(false);
      expect(readdirSync(d).filter((n) => n.includes('fslock-unlink')).length).toBe(3); // the planted ones, untouched
    },
  );

  it('abandon() when the first trash name is taken', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    const tag = 'f'.repeat(16);
    const trash = join(crate, `.fslock-trash-${s.path.split(/[\\/]/).pop()}-${tag}`);
    mkdirSync(join(trash, 'inside'), { recursive: true });
    planted.push(tag);
    await s.abandon();
    expect(existsSync(s.path)).toBe(false);
    expect(existsSync(join(trash, 'inside'))).toBe(true);
  });
});
