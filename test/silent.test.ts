// "No silent failures": each test here failed on the code before its fix.
// fslock deletes only what it made, believes only what it can prove,
// excludes what it says it excludes, and fails loudly rather than forever.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectGarbage } from '../src/session/index.js';
import { attach, cleanupTempDirs, FIXTURES, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const linux = process.platform === 'linux';

/** A session name of the protocol, `ageMs` old. */
function sessionName(ageMs: number, n: number): string {
  const t = (BigInt(Date.now() - ageMs) * 1000n + BigInt(n)).toString(36).padStart(10, '0');
  return `s-${t}-${n.toString(36).padStart(7, '0')}`;
}

describe('recursive removal never leaves the tree it opened', () => {
  it.runIf(linux)(
    'a racer swapping a listed session subdirectory for a symlink cannot make GC delete files outside the crate',
    async () => {
      const d = tempDir();
      const outside = join(d, 'outside');
      mkdirSync(outside);
      const names = Array.from({ length: 50 }, (_, i) => `keep-${i}`);
      for (const n of names) writeFileSync(join(outside, n), 'precious');
      const crate = join(d, 'crate');
      mkdirSync(crate);
      const racer = attach(
        spawn('python3', [join(FIXTURES, 'tree-racer.py'), outside], { stdio: ['pipe', 'pipe', 'inherit'] }),
      );
      try {
        let watchedSub = '';
        for (let round = 0; round < 3; round++) {
          // an old finalized session (collected) whose sub/ holds files named like outside's, and a newer one (kept)
          for (let k = 0; k < 2; k++) {
            const name = sessionName(k === 1 ? 60_000 : 3_600_000, round * 10 + k);
            writeFileSync(join(crate, `${name}.lock`), '');
            const sub = join(crate, `${name}-v${k}`, 'sub');
            mkdirSync(sub, { recursive: true });
            for (const n of names) writeFileSync(join(sub, n), 'ours');
            if (k === 0) {
              watchedSub = sub;
              racer.send(`watch ${sub}`);
              await racer.waitFor(`watching ${sub}`);
            }
          }
          const r = await collectGarbage(crate, { gcAge: 0 });
          // the racer saw the listing and acted (on the code before the fix, "swapped" deleted outside's files)
          await racer.waitFor(
            new RegExp(`^(swapped|gone|missed) ${watchedSub.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`),
          );
          expect(readdirSync(outside).sort(), `round ${round}: ${JSON.stringify(r.errors)}`).toEqual(names.sort());
        }
      } finally {
        racer.child.stdin?.end();
        await racer.exited;
      }
      expect(readdirSync(outside).length).toBe(50);
    },
    60_000,
  );
});
