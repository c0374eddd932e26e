/**
 * fslock/proper-lockfile: the API of proper-lockfile 4.x on real kernel locks.
 *
 * The on-disk artefact stays upstream's — a `<file>.lock` directory whose
 * mtime is refreshed while held — so processes still running the real
 * proper-lockfile and processes using this module exclude each other. Inside
 * it sits `.fslock`, a marker file that its holder keeps locked in the kernel
 * (it is renamed into place already locked). Between fslock users that
 * changes everything:
 *
 * - a holder that crashed or was SIGKILLed never blocks anyone: its marker
 *   can be locked, which proves it dead, and the artefact is taken over at once;
 * - `retries` is a real wait in the kernel, bounded by the total time the
 *   retry schedule would have allowed; the waiter gets the lock the moment it
 *   is released;
 * - `onCompromised` is only called when the artefact really was removed or
 *   replaced, never because the event loop was slow;
 * - a real proper-lockfile process can never take a lock held here, even when
 *   our mtime looks stale: its rmdir fails on the non-empty directory.
 */
import { performance } from 'perf_hooks';
import { errorCode } from '../errors.js';
import * as nodeFs from 'fs';
import { join, resolve } from 'path';
import type { FileLock } from '../lock.js';
import {
  cleanupOnExit,
  entryExists,
  identityOf,
  isHeld,
  pathIdentity,
  placeLocked,
  probeMarker,
  retryBudgetMs,
  sleep,
  waitForRelease,
  type RetryOptions,
} from './shared.js';

type FsLike = Partial<typeof nodeFs>;

interface LockOptions {
  stale?: number;
  update?: number | null;
  retries?: number | RetryOptions;
  realpath?: boolean;
  fs?: FsLike;
  onCompromised?: (err: Error) => void;
  lockfilePath?: string;
}
interface UnlockOptions {
  realpath?: boolean;
  fs?: FsLike;
  lockfilePath?: string;
}
interface CheckOptions {
  stale?: number;
  realpath?: boolean;
  fs?: FsLike;
  lockfilePath?: string;
}

/** The file inside `<file>.lock` that carries the kernel lock. */
const MARKER = '.fslock';
/** How often a waiter looks again at an artefact held by a real proper-lockfile process. */
const UPSTREAM_POLL_MS = 25;

interface Held {
  dir: string;
  marker: string;
  kernel: FileLock;
  identity: string;
  options: Normalized;
  timer: NodeJS.Timeout | null;
  released: boolean;
}

interface Normalized {
  stale: number;
  update: number;
  retries: RetryOptions;
  realpath: boolean;
  fs: FsLike;
  onCompromised: (err: Error) => void;
  lockfilePath: string | undefined;
}

const locks = new Map<string, Held>();

function withCode(err: Error, code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(err, { code }, extra);
}

function normalize(options: LockOptions | undefined): Normalized {
  const o = {
    stale: 10000,
    update: null as number | null | undefined,
    realpath: true,
    retries: 0 as number | RetryOptions | undefined,
    fs: nodeFs as FsLike,
    onCompromised: (err: Error) => {
      throw err;
    },
    ...options,
  };
  const retries = o.retries || 0;
  const retryOptions: RetryOptions = typeof retries === 'number' ? { retries } : retries;
  const stale = Math.max(o.stale || 0, 2000);
  let update = o.update == null ? stale / 2 : o.update || 0;
  update = Math.max(Math.min(update, stale / 2), 1000);
  return {
    stale,
    update,
    retries: retryOptions,
    realpath: o.realpath !== false,
    fs: o.fs ?? nodeFs,
    onCompromised: o.onCompromised,
    lockfilePath: o.lockfilePath,
  };
}

function fsCall<K extends keyof typeof nodeFs>(o: Normalized, name: K): (typeof nodeFs)[K] {
  const fn = (o.fs[name] ?? nodeFs[name]) as (typeof nodeFs)[K];
  return fn;
}

function canonical(file: string, o: { realpath: boolean; fs: FsLike }): string {
  if (!o.realpath) return resolve(file);
  return ((o.fs.realpathSync ?? nodeFs.realpathSync) as typeof nodeFs.realpathSync)(file) as string;
}

function lockDir(file: string, o: { lockfilePath?: string | undefined }): string {
  return o.lockfilePath || `${file}.lock`;
}

function lockedError(file: string): Error {
  return withCode(new Error('Lock file is already being held'), 'ELOCKED', { file });
}

/** One try's outcome: taken, or busy (held by an fslock process, with its marker, or by upstream). */
type TryOutcome = { held: Held } | { busy: 'fslock'; marker: string } | { busy: 'upstream' };

/** One non-blocking attempt; takes over artefacts of dead or stale holders. */
function attempt(file: string, o: Normalized): TryOutcome {
  const dir = lockDir(file, o);
  const marker = join(dir, MARKER);
  for (;;) {
    try {
      fsCall(o, 'mkdirSync')(dir);
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw err;
      const probe = probeMarker(marker);
      if (probe.state === 'live') return { busy: 'fslock', marker };
      if (probe.state === 'dead') {
        // Its holder is gone: take the artefact over now, no staleness wait.
        try {
          nodeFs.rmSync(marker, { force: true });
          fsCall(o, 'rmdirSync')(dir);
        } catch (e) {
          if (errorCode(e) !== 'ENOENT' && errorCode(e) !== 'ENOTEMPTY') throw e;
        } finally {
          probe.lock!.release();
        }
        continue;
      }
      // No marker: a real proper-lockfile holder (or an fslock one an instant
      // before it places its marker). Upstream's staleness rule applies.
      let stat: nodeFs.Stats;
      try {
        stat = fsCall(o, 'statSync')(dir) as nodeFs.Stats;
      } catch (e) {
        // Something is there that is no directory one can stat (a dangling
        // symlink): held, as upstream answers, never a reason to spin.
        if (errorCode(e) === 'ENOENT') {
          if (entryExists(dir)) return { busy: 'upstream' };
          continue;
        }
        throw e;
      }
      if (stat.mtime.getTime() >= Date.now() - o.stale) return { busy: 'upstream' };
      try {
        fsCall(o, 'rmdirSync')(dir);
      } catch (e) {
        if (errorCode(e) !== 'ENOENT' && errorCode(e) !== 'ENOTEMPTY') throw e;
      }
      continue;
    }
    // The directory is ours; put the locked marker in it.
    let kernel: FileLock;
    try {
      kernel = placeLocked(marker, 'rename');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') continue; // removed under us: start again
      try {
        fsCall(o, 'rmdirSync')(dir);
      } catch {
        // leave it to the staleness rule
      }
      throw err;
    }
    const held: Held = { dir, marker, kernel, identity: identityOf(kernel), options: o, timer: null, released: false };
    return { held };
  }
}

function compromised(file: string, held: Held, err: Error): void {
  held.released = true;
  if (held.timer) clearTimeout(held.timer);
  if (locks.get(file) === held) locks.delete(file);
  held.kernel.release();
  held.options.onCompromised(withCode(err, 'ECOMPROMISED'));
}

/** Keeps the mtime fresh for real proper-lockfile processes, and notices a lost artefact. */
function scheduleUpdate(file: string, held: Held): void {
  held.timer = setTimeout(() => {
    held.timer = null;
    if (held.released) return;
    if (pathIdentity(held.marker) !== held.identity) {
      // upstream reports the fs error of its failed mtime update: ENOENT for a removed lock
      compromised(
        file,
        held,
        new Error(`ENOENT: the lock artefact was removed or replaced by someone else, '${held.dir}'`),
      );
      return;
    }
    const now = new Date();
    try {
      fsCall(held.options, 'utimesSync')(held.dir, now, now);
    } catch (err) {
      if (errorCode(err) === 'ENOENT') {
        compromised(file, held, err as Error);
        return;
      }
      // Transient: try again on the next tick; the kernel lock is what counts.
    }
    scheduleUpdate(file, held);
  }, held.options.update);
  held.timer.unref?.();
}

function register(file: string, held: Held): void {
  locks.set(file, held);
  installCleanup();
  const now = new Date();
  try {
    fsCall(held.options, 'utimesSync')(held.dir, now, now);
  } catch {
    // best effort: the rename of the marker already refreshed it
  }
  scheduleUpdate(file, held);
}

function releaseHeld(file: string, held: Held): void {
  if (held.timer) clearTimeout(held.timer);
  held.released = true;
  if (locks.get(file) === held) locks.delete(file);
  try {
    // Delete while still holding the kernel lock, marker first, then the directory.
    if (pathIdentity(held.marker) === held.identity) nodeFs.rmSync(held.marker, { force: true });
    try {
      fsCall(held.options, 'rmdirSync')(held.dir);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
    }
  } finally {
    held.kernel.release();
  }
}

// Release everything on exit and on SIGINT, SIGTERM and SIGHUP, as upstream
// does, so real proper-lockfile processes are not left waiting for staleness.
let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  cleanupOnExit(() => {
    for (const [file, held] of [...locks]) {
      try {
        releaseHeld(file, held);
      } catch {
        // exiting anyway
      }
    }
  });
}

async function acquire(file: string, o: Normalized): Promise<Held> {
  const budget = retryBudgetMs(o.retries);
  const deadline = performance.now() + budget;
  for (;;) {
    const a = attempt(file, o);
    if ('held' in a) return a.held;
    const left = deadline - performance.now();
    if (left <= 0) throw lockedError(file);
    if (o.retries.unref) {
      // retries: { unref: true }: like upstream's unref'd retry timers, the
      // wait must not keep the process alive, so poll with unref'd sleeps
      await sleep(Math.min(UPSTREAM_POLL_MS, left), true);
    } else if (a.busy === 'fslock') {
      // a real wait, woken by the kernel when the holder lets go
      if (!(await waitForRelease(a.marker, Math.min(left, 2 ** 31 - 1)))) throw lockedError(file);
    } else {
      await sleep(Math.min(UPSTREAM_POLL_MS, left));
    }
  }
}

// ---------------------------------------------------------------------------

function lock(file: string, options?: LockOptions): Promise<() => Promise<void>> {
  return (async () => {
    const o = normalize(options);
    const canon = canonical(file, o);
    const held = await acquire(canon, o);
    register(canon, held);
    return async () => {
      if (held.released) throw withCode(new Error('Lock is already released'), 'ERELEASED');
      releaseHeld(canon, held);
    };
  })();
}

function syncOptions<T extends { retries?: number | RetryOptions }>(options: T | undefined): T {
  const o = { ...options } as T;
  const r = o.retries;
  if (
    (typeof r === 'number' && r > 0) ||
    (r && typeof r === 'object' && typeof r.retries === 'number' && r.retries > 0)
  ) {
    throw withCode(new Error('Cannot use retries with the sync api'), 'ESYNC');
  }
  return o;
}

function lockSync(file: string, options?: LockOptions): () => void {
  const o = normalize(syncOptions(options));
  const canon = canonical(file, o);
  const a = attempt(canon, o);
  if (!('held' in a)) throw lockedError(canon);
  register(canon, a.held);
  const held = a.held;
  return () => {
    if (held.released) throw withCode(new Error('Lock is already released'), 'ERELEASED');
    releaseHeld(canon, held);
  };
}

function unlockSync(file: string, options?: UnlockOptions): void {
  const o = { realpath: true, fs: nodeFs as FsLike, ...syncOptions(options as LockOptions) };
  const canon = canonical(file, { realpath: o.realpath !== false, fs: o.fs });
  const held = locks.get(canon);
  if (!held) throw withCode(new Error('Lock is not acquired/owned by you'), 'ENOTACQUIRED');
  releaseHeld(canon, held);
}

async function unlock(file: string, options?: UnlockOptions): Promise<void> {
  unlockSync(file, { ...options, retries: 0 } as UnlockOptions);
}

function checkSync(file: string, options?: CheckOptions): boolean {
  const o = { stale: 10000, realpath: true, fs: nodeFs as FsLike, ...syncOptions(options as LockOptions) };
  const stale = Math.max(o.stale || 0, 2000);
  const canon = canonical(file, { realpath: o.realpath !== false, fs: o.fs });
  const dir = lockDir(canon, o);
  let stat: nodeFs.Stats;
  try {
    stat = ((o.fs.statSync ?? nodeFs.statSync) as typeof nodeFs.statSync)(dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
  const marker = join(dir, MARKER);
  if (nodeFs.existsSync(marker)) return isHeld(marker); // an fslock holder: alive or not, the kernel knows
  return stat.mtime.getTime() >= Date.now() - stale;
}

async function check(file: string, options?: CheckOptions): Promise<boolean> {
  return checkSync(file, { ...options, retries: 0 } as CheckOptions);
}

lock.lock = lock;
lock.unlock = unlock;
lock.lockSync = lockSync;
lock.unlockSync = unlockSync;
lock.check = check;
lock.checkSync = checkSync;

// The option types under the names @types/proper-lockfile uses, so code typed
// against it compiles unchanged (import { LockOptions } from 'fslock/proper-lockfile').
// eslint-disable-next-line @typescript-eslint/no-namespace -- the types of an `export =` module
declare namespace lock {
  export type { LockOptions, UnlockOptions, CheckOptions };
}

export = lock;
