import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { readLockTableSync, type FileEntries } from '../src/lock-table.js';

/** The built package: child processes and workers load this, not the TS sources. */
export const DIST = resolve(__dirname, '../dist/cjs/index.js');
export const FIXTURES = resolve(__dirname, 'fixtures');

const dirs: string[] = [];
export function tempDir(prefix = 'fslock-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
export function cleanupTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/**
 * The process's open descriptors, but for a reading of /proc/locks under way
 * (the cycle watch and inspect() read it off the event loop: a moment's
 * descriptor, never a leak).
 */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) !== '/proc/locks';
    } catch {
      return false; // the directory's own descriptor, closed by now
    }
  }).length;
}

export interface Holder {
  child: ChildProcess;
  /** Lines the child printed so far. */
  lines: string[];
  /** Resolves when the child prints `line`. */
  waitFor(line: string | RegExp): Promise<string>;
  send(line: string): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs test/fixtures/<script> with node; stdout lines are collected. */
export function startNode(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Holder {
  const child = spawn(process.execPath, [join(FIXTURES, script), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  return attach(child);
}

export function attach(child: ChildProcess): Holder {
  const lines: string[] = [];
  const waiters: Array<{ re: string | RegExp; resolve: (l: string) => void }> = [];
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (typeof w.re === 'string' ? line === w.re : w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal })) as Holder['exited'];
  return {
    child,
    lines,
    exited,
    waitFor(re) {
      const hit = lines.find((l) => (typeof re === 'string' ? l === re : re.test(l)));
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        waiters.push({ re, resolve });
        exited.then(({ code, signal }) =>
          reject(
            new Error(`child exited (${code ?? signal}) before printing ${String(re)}; got ${JSON.stringify(lines)}`),
          ),
        );
      });
    },
    send(line) {
      child.stdin?.write(`${line}\n`);
    },
  };
}

/** Runs a command to completion. */
export async function run(cmd: string, args: string[], opts: { timeoutMs?: number } = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Milliseconds since `t0`. */
export const since = (t0: number) => performance.now() - t0;

/** Mounts a fresh overlayfs (root only) and returns its merged directory; `unmount()` undoes it. */
export function mountOverlay(): { merged: string; unmount: () => void } {
  const d = tempDir();
  for (const x of ['lower', 'upper', 'work', 'merged']) mkdirSync(join(d, x));
  const merged = join(d, 'merged');
  execFileSync('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${d}/lower,upperdir=${d}/upper,workdir=${d}/work`,
    merged,
  ]);
  return { merged, unmount: () => execFileSync('umount', [merged]) };
}

/**
 * The built package copied where any user can read it, for a test that runs
 * node as another user (uid 4242): the checkout itself may sit below a
 * directory only its owner can enter (a fresh mktemp -d, /root). Returns the
 * copy's dist/cjs/index.js.
 */
export function distForOtherUsers(): string {
  const root = resolve(__dirname, '..');
  const d = tempDir('fslock-shared-');
  chmodSync(d, 0o755);
  cpSync(join(root, 'package.json'), join(d, 'package.json'));
  cpSync(join(root, 'dist'), join(d, 'dist'), { recursive: true });
  cpSync(join(root, 'prebuilds'), join(d, 'prebuilds'), { recursive: true });
  const built = join(root, 'build', 'Release', 'fslock.node');
  if (existsSync(built)) cpSync(built, join(d, 'build', 'Release', 'fslock.node'));
  cpSync(join(root, 'node_modules', 'node-gyp-build'), join(d, 'node_modules', 'node-gyp-build'), { recursive: true });
  execFileSync('chmod', ['-R', 'a+rX', d]);
  return join(d, 'dist', 'cjs', 'index.js');
}

/**
 * Resolves once the kernel's lock table (/proc/locks) shows at least `n`
 * requests blocked on the file at `path`: a wait that is really in the
 * kernel, not a sleep that hopes so. Linux only.
 */
export async function untilBlocked(path: string, n = 1): Promise<void> {
  const count = blockedCounter(path);
  while (count() < n) await sleep(5);
}

/**
 * A function counting the blocked requests for `path` in /proc/locks now, read
 * as inspect() reads it (one reading of a busy table can repeat or miss
 * entries: src/lock-table.ts). Linux only.
 */
export function blockedCounter(path: string): () => number {
  return () => kernelEntries(path).blocked.length;
}

/** What the kernel's lock table says about the file at `path` now (see blockedCounter). Linux only. */
export function kernelEntries(path: string): FileEntries {
  const st = statSync(path, { bigint: true });
  return readLockTableSync()!.entries(`${st.dev}:${st.ino}`);
}
