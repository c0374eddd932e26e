// fslock as flock(1) in shell scripts, with util-linux flock(1) as the
// oracle: the same script runs once with `flock` and once with `fslock`
// (node bin/fslock.js, no npx), and what the calling script can observe —
// exit status, death by a signal, stdout — must agree.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    const script = `for i in 1 2; do $L ${q(p)} sh -c 'sleep 30; true'; done; echo end`;
    // once `sleep` runs (a SIGINT to a shell that is just forking it would
    // reach the shell, which acts on it only after sleep's 30 s)
    const ctrlC = async (pgid: number) => {
      while (!inGroup(pgid, 'sleep')) await sleep(5);
      process.kill(-pgid, 'SIGINT');
    };
    const flock = await runScript(script, LOCKERS.flock, ctrlC);
    const fslock = await runScript(script, LOCKERS.fslock, ctrlC);
    expect(flock).toEqual({ code: null, signal: 'SIGINT', stdout: '' });
    expect(fslock).toEqual(flock);
    expect((await inspect(p)).held).toBe(false); // let go
  });

  it('Ctrl-C while the command runs reaches the command once, as with flock(1)', async () => {
    const d = tempDir();
    const p = join(d, 'once.lock');
    // a command that cleans up for 0.1 s after the first SIGINT, counting any
    // more (fslock passes a signal on only to a command still running 1 s later)
    const py = [
      'import signal, time',
      'n = [0]',
      'def count(*_):',
      '    n[0] += 1',
      'signal.signal(signal.SIGINT, count)',
      'print("ready", flush=True)',
      't = time.time()',
      'while n[0] == 0 and time.time() - t < 10: time.sleep(0.01)',
      'time.sleep(0.1)',
      'print("sigints", n[0], flush=True)',
    ].join('\n');
    const out = join(d, 'out');
    const script = `$L ${q(p)} python3 -c ${q(py)} > ${q(out)}`;
    const seen: Record<string, string> = {};
    for (const [name, locker] of Object.entries(LOCKERS)) {
      const ctrlC = async (pgid: number) => {
        while (!existsSync(out) || !readFileSync(out, 'utf8').includes('ready')) await sleep(5);
        process.kill(-pgid, 'SIGINT');
      };
      await runScript(script, locker, ctrlC);
      // flock(1) does not wait for the command: wait for its count
      while (!readFileSync(out, 'utf8').includes('sigints')) await sleep(20);
      seen[name] = readFileSync(out, 'utf8').trim().split('\n').pop()!;
      rmSync(out);
    }
    expect(seen.flock).toBe('sigints 1');
    expect(seen.fslock).toBe(seen.flock); // the code before this change: 2 (passed on a second time)
  });
});

/** Whether a process named `comm` runs in process group `pgid` (Linux). */
function inGroup(pgid: number, comm: string): boolean {
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const name = stat.slice(stat.indexOf('(') + 1, close);
      const pgrp = Number(stat.slice(close + 2).split(' ')[2]);
      if (name === comm && pgrp === pgid) return true;
    } catch {
      // gone
    }
  }
  return false;
}
