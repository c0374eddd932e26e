/**
 * fslock/lockfile: the API of lockfile 1.x on real kernel locks.
 *
 * As upstream, the lock file exists exactly while the lock is held, so code
 * that looks for it (and processes still running the real lockfile package)
 * see the usual thing. Here the file is created already locked in the kernel
 * (hard-linked into place from a locked temporary file, which fails with
 * EEXIST like upstream's O_EXCL) and holds a one-line record of its holder.
 * Between fslock users:
 *
 * - a holder that crashed or was SIGKILLed never blocks anyone: its file can
 *   be locked, which proves it dead, and it is replaced at once without
 *   waiting for `stale`;
 * - `wait` is a real wait in the kernel: the waiter gets the lock the moment
 *   it is released, not at the next poll;
 * - unlock() only deletes a lock file that this process holds, or one that no
 *   live process holds; it never deletes another live holder's lock.
 */
import { errorCode } from '../errors.js';
import * as fs from 'node:fs';
import type { FileLock } from '../lock.js';
import { fileHoldsRecord } from '../holder.js';
import { isHeld, placeLocked, probeMarker, sleep, waitForRelease } from './shared.js';

export interface Options {
  /** Milliseconds to wait for the lock to be released. */
  wait?: number;
  /** How often to look while waiting for a holder that is not an fslock process (default 100). */
  pollPeriod?: number;
  /** A lock file older than this (ms) may be taken over, as upstream. */
  stale?: number;
  /** Extra attempts after a failed one. */
  retries?: number;
  /** Milliseconds between retries. */
  retryWait?: number;
}

export type Callback = (err?: Error | null) => void;

/** Which timestamp decides staleness, as upstream: ctime, mtime on Windows. */
export const filetime: 'ctime' | 'mtime' = process.platform === 'win32' ? 'mtime' : 'ctime';

const locks = new Map<string, FileLock>();

function holdsFslockRecord(path: string): boolean {
  return fileHoldsRecord(path);
}

function isStale(path: string, stale: number | undefined): boolean {
  if (!stale) return false;
  try {
    const st = fs.statSync(path);
    return Date.now() - st[filetime].getTime() > stale;
  } catch {
    return false;
  }
}

type Attempt = { ok: true } | { ok: false; fslock: boolean; err: Error };

function attempt(path: string, opts: Options): Attempt {
  for (;;) {
    try {
      locks.set(path, placeLocked(path, 'link'));
      return { ok: true };
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw err;
      const probe = probeMarker(path);
      if (probe.state === 'absent') continue; // released meanwhile
      if (probe.state === 'live') return { ok: false, fslock: true, err: err as Error };
      // Nobody holds it in the kernel: a dead fslock holder's file (it carries
      // our record) is replaced at once; a real lockfile user's file only once stale.
      const takeOver = holdsFslockRecord(path) || isStale(path, opts.stale);
      try {
        if (takeOver) fs.rmSync(path, { force: true });
      } finally {
        probe.lock!.release();
      }
      if (!takeOver) return { ok: false, fslock: false, err: err as Error };
    }
  }
}

async function lockAsync(path: string, opts: Options): Promise<void> {
  let retries = typeof opts.retries === 'number' && opts.retries > 0 ? opts.retries : 0;
  for (;;) {
    const end = Date.now() + (typeof opts.wait === 'number' && opts.wait > 0 ? opts.wait : 0);
    let a = attempt(path, opts);
    while (!a.ok && Date.now() < end) {
      const left = end - Date.now();
      if (a.fslock) await waitForRelease(path, left);
      else await sleep(Math.min(left, opts.pollPeriod || 100));
      a = attempt(path, opts);
    }
    if (a.ok) return;
    if (retries-- <= 0) throw a.err;
    if (opts.retryWait) await sleep(opts.retryWait);
  }
}

export function lock(path: string, opts: Options | Callback, cb?: Callback): void {
  if (typeof opts === 'function') {
    cb = opts;
    opts = {};
  }
  const done = cb ?? (() => undefined);
  lockAsync(path, { ...(opts ?? {}) }).then(
    () => done(null),
    (err: Error) => done(err),
  );
}

export function lockSync(path: string, opts?: Options): void {
  const o = { ...(opts ?? {}) };
  if (o.wait || o.retryWait) throw new Error('opts.wait not supported sync for obvious reasons');
  let retries = typeof o.retries === 'number' && o.retries > 0 ? o.retries : 0;
  for (;;) {
    const a = attempt(path, o);
    if (a.ok) return;
    if (retries-- <= 0) throw a.err;
  }
}

export function unlockSync(path: string): void {
  const held = locks.get(path);
  locks.delete(path);
  if (held) {
    try {
      fs.rmSync(path, { force: true }); // while still holding it
    } catch {
      // best effort, as upstream
    }
    held.release();
    return;
  }
  // Not ours: upstream deletes it regardless; we only delete it when no live
  // process holds it, so one holder can never break another's lock.
  if (isHeld(path)) return;
  try {
    fs.unlinkSync(path);
  } catch {
    // best effort
  }
}

export function unlock(path: string, cb?: Callback): void {
  unlockSync(path);
  if (cb) process.nextTick(cb);
}

export function checkSync(path: string, opts?: Options): boolean {
  const o = opts ?? {};
  if (o.wait) throw new Error('opts.wait not supported sync for obvious reasons');
  if (!fs.existsSync(path)) return false;
  if (isHeld(path)) return true;
  if (holdsFslockRecord(path)) return false; // its holder died
  if (!o.stale) return true;
  return !isStale(path, o.stale);
}

export function check(
  path: string,
  opts: Options | ((err: Error | null, locked?: boolean) => void),
  cb?: (err: Error | null, locked?: boolean) => void,
): void {
  if (typeof opts === 'function') {
    cb = opts;
    opts = {};
  }
  const { wait: _ignored, ...rest } = opts ?? {};
  void _ignored;
  let result: boolean;
  try {
    result = checkSync(path, rest);
  } catch (err) {
    process.nextTick(() => cb?.(err as Error));
    return;
  }
  process.nextTick(() => cb?.(null, result));
}

// Release everything on a normal exit, as upstream does.
process.once('exit', () => {
  for (const path of [...locks.keys()]) unlockSync(path);
});
