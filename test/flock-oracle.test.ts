// fslock as flock(1) in shell scripts, with util-linux flock(1) as the
// oracle: the same script runs once with `flock` and once with `fslock`
// (node bin/fslock.js, no npx), and what the calling script can observe —
// exit status, death by a signal, stdout — must agree.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { inspect, lock } from '../src/index.js';
import { cleanupTempDirs, sleep, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const BIN = resolve(__dirname, '..', 'bin', 'fslock.js');
const hasFlock = (() => {
  try {
    execFileSync('flock', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const linux = process.platform === 'linux';
const root = linux && process.getuid?.() === 0;

interface Seen {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** An `fslock` on disk that execs node on bin/fslock.js (the script sees one command, as with flock). */
function fslockWrapper(): string {
  const d = tempDir('fslock-bin-');
  const path = join(d, 'fslock');
  writeFileSync(path, `#!/bin/sh\nexec ${q(process.execPath)} ${q(BIN)} "$@"\n`, { mode: 0o755 });
  return path;
}
const LOCKERS = { flock: 'flock', fslock: fslockWrapper() };

/** Runs `script` with bash, $L being the locker; `whileRunning` may act on the running script (its own process group). */
async function runScript(
  script: string,
  locker: string,
  whileRunning?: (pgid: number) => Promise<void>,
): Promise<Seen> {
  const child = spawn('bash', ['-c', script], {
    detached: true, // its own process group, as a script run from a terminal
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, L: locker },
  });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.resume();
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  if (whileRunning) await whileRunning(child.pid!);
  const [code, signal] = await exited;
  return { code, signal, stdout };
}

async function both(script: string, whileRunning?: (pgid: number) => Promise<void>) {
  const flock = await runScript(script, LOCKERS.flock, whileRunning);
  const fslock = await runScript(script, LOCKERS.fslock, whileRunning);
  return { flock, fslock };
}

/** Resolves once the kernel's lock table shows a request blocked on `path`. */
async function untilWaiting(path: string): Promise<void> {
  while ((await inspect(path)).waiters === 0) await sleep(5);
}

describe.runIf(hasFlock)('exit statuses, as flock(1) gives them', () => {
  const cases: Array<[string, string]> = [
    ['usage: exit code out of range', '$L -E 300 "$D/f" true'],
    ['usage: a bad -w', '$L -w abc "$D/f" true'],
    ['usage: a bad -E', '$L -E 1.5 "$D/f" true'],
    ['usage: no arguments', '$L'],
    ['usage: a file and no command', '$L "$D/f"'],
    ['cannot open: missing directory', '$L "$D/missing/dir/f" true'],
    ['command not found', '$L "$D/f" /nonexistent/command'],
    ['command not executable', '$L "$D/f" "$D/plain"'],
    ['closed descriptor in the fd form', '$L -n 7 7>&-'],
    ["the command's own status, with -c after the file", '$L "$D/f" -c "exit 4"'],
    ['the command killed by a signal: 128+N', `$L "$D/f" sh -c 'kill -TERM $$'`],
    ['without the word run', '$L "$D/f" echo hi'],
    ['-x -s: the last one wins (shared)', `$L -x -s "$D/f" sh -c 'flock -n -s "$D/f" true && echo shared'`],
    ['-s -x: the last one wins (exclusive)', `$L -s -x "$D/f" sh -c 'flock -n -s "$D/f" true || echo exclusive'`],
    [
      '-n on a held lock: status 1, nothing on stdout',
      `flock "$D/h" sh -c 'touch "$D/h.ready"; sleep 5' & while [ ! -e "$D/h.ready" ]; do sleep 0.01; done; $L -n "$D/h" echo no; echo "st $?"; kill $!`,
    ],
    [
      '-w that ends: status 1 (or -E)',
      `flock "$D/h" sh -c 'touch "$D/h.ready"; sleep 5' & while [ ! -e "$D/h.ready" ]; do sleep 0.01; done; $L -w 0.1 -E 9 "$D/h" echo no; echo "st $?"; kill $!`,
    ],
    [
      'the fd form holds the lock for the subshell',
      `( $L -n 9 || exit 1; flock -n "$D/g" true; echo "foreign $?" ) 9>"$D/g"`,
    ],
  ];
  for (const [name, body] of cases) {
    it(name, async () => {
      const d = tempDir();
      writeFileSync(join(d, 'plain'), 'not a program\n');
      const { flock, fslock } = await both(`export D=${q(d)}; ${body}`);
      expect(fslock, `flock(1) gave ${JSON.stringify(flock)}`).toEqual(flock);
    });
  }

  it.runIf(root)('cannot open: read-only filesystem (73)', async () => {
    const d = tempDir();
    const ro = join(d, 'ro');
    mkdirSync(ro);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
    try {
      const { flock, fslock } = await both(`$L ${q(join(ro, 'f'))} true`);
      expect(flock.code).toBe(73);
      expect(fslock).toEqual(flock);
    } finally {
      execFileSync('umount', [ro]);
    }
  });
});

describe.runIf(hasFlock && linux)('signals, as a calling script sees them', () => {
  it('Ctrl-C while waiting: the script stops at once, killed by SIGINT', async () => {
    const d = tempDir();
    const p = join(d, 'hold.lock');
    const held = await lock(p);
    try {
      const script = `for i in 1 2 3; do $L -w 10 ${q(p)} echo got; done; echo end`;
      const ctrlC = async (pgid: number) => {
        await untilWaiting(p);
        process.kill(-pgid, 'SIGINT');
      };
      const { flock, fslock } = await both(script, ctrlC);
      expect(flock).toEqual({ code: null, signal: 'SIGINT', stdout: '' });
      expect(fslock).toEqual(flock); // the code before this change: status 130, the loop went on to "end"
    } finally {
      held.release();
    }
  });

  it('Ctrl-C while the command runs: the script stops, killed by SIGINT', async () => {
    const d = tempDir();
    const p = join(d, 'run.lock');
    const ready = join(d, 'ready');
    const script = `for i in 1 2; do $L ${q(p)} sh -c 'touch ${q(ready)}; sleep 30'; done; echo end`;
    const ctrlC = async (pgid: number) => {
      while (!(await inspect(p)).held) await sleep(5);
      while (!require('node:fs').existsSync(ready)) await sleep(5);
      process.kill(-pgid, 'SIGINT');
    };
    const flock = await runScript(script, LOCKERS.flock, ctrlC);
    require('node:fs').rmSync(ready, { force: true });
    const fslock = await runScript(script, LOCKERS.fslock, ctrlC);
    expect(flock).toEqual({ code: null, signal: 'SIGINT', stdout: '' });
    expect(fslock).toEqual(flock);
    expect((await inspect(p)).held).toBe(false); // let go
  });
});
