/**
 * The lock API: lock, tryLock, lockSync, withLock and FileLock, and the entry
 * points the drop-ins use. The work is done in lock/: held.ts (what this
 * thread holds), attempt.ts (one attempt), line.ts (this thread's waiting
 * line), acquire.ts (attempts and waits until held), file-lock.ts (FileLock).
 */
import { binding } from './binding.js';
import { invalidArgType, type HolderRecordLike } from './errors.js';
import { readRecord, type HolderRecord } from './holder.js';
import { checkPath, LOCK_OPTION_NAMES, parseLockOptions, type LockOptions, type ParsedLockOptions } from './options.js';
import { strategyFor } from './strategy.js';
import { lockChannel, outcomeOf, tracingLocks, type LockTraceContext } from './trace.js';
import { acquire, acquireSync } from './lock/acquire.js';
import { closeAttempt, handle, takeSteps, type Contended, type Opened } from './lock/attempt.js';
import { FileLock } from './lock/file-lock.js';
import './lock/line.js';

export { FileLock };
export type { UpgradeOptions, UpgradeResult } from './lock/file-lock.js';

/** tryLock takes every option of lock() but the waiting ones; lockSync all but `signal`. */
const TRY_LOCK_OPTIONS = new Set([...LOCK_OPTION_NAMES].filter((n) => n !== 'timeout' && n !== 'signal'));
const LOCK_SYNC_OPTIONS = new Set([...TRY_LOCK_OPTIONS, 'timeout']);

/** Waits until the lock is acquired (or `timeout` / `signal` end the wait). */
export function lock(path: string, options?: LockOptions): Promise<FileLock> {
  // Not an async function: it would resolve with acquire()'s promise two
  // microtask turns later, in every hand-off. Errors still reject.
  try {
    checkPath(path);
    const p = parseLockOptions(options);
    if (!tracingLocks()) return acquire(path, p) as Promise<FileLock>; // null only for untilReleased
    const ctx: LockTraceContext = { path, mode: p.mode, primitive: p.primitive, waited: false };
    return lockChannel.tracePromise(
      () =>
        (acquire(path, p, ctx) as Promise<FileLock>).then(
          (l) => settleTrace(ctx, l) as FileLock,
          (err: unknown) => {
            ctx.outcome = outcomeOf(err);
            throw err;
          },
        ),
      ctx,
    );
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

function settleTrace(ctx: LockTraceContext, l: FileLock | null): FileLock | null {
  ctx.outcome = l ? 'acquired' : 'busy';
  if (l) {
    ctx.primitive = l.primitive;
    ctx.lock = l;
  }
  return l;
}

/** acquireSync, traced when someone listens (tryLock, lockSync). */
function acquireSyncTraced(path: string, p: ParsedLockOptions, mayWait: boolean): FileLock | null {
  if (!tracingLocks()) return acquireSync(path, p, mayWait);
  const ctx: LockTraceContext = { path, mode: p.mode, primitive: p.primitive, waited: false };
  return lockChannel.traceSync(() => {
    try {
      return settleTrace(ctx, acquireSync(path, p, mayWait, ctx));
    } catch (err) {
      ctx.outcome = outcomeOf(err);
      throw err;
    }
  }, ctx);
}

/** One synchronous try; null when someone else holds the lock. Never waits. */
export function tryLock(path: string, options?: Omit<LockOptions, 'timeout' | 'signal'>): FileLock | null {
  checkPath(path);
  const p = parseLockOptions(options, TRY_LOCK_OPTIONS);
  return acquireSyncTraced(path, p, false);
}

/**
 * Acquires synchronously, blocking the calling thread until granted or until
 * `timeout` ms have passed (ETIMEDOUT). `timeout: 0` is a single try (ELOCKED).
 * A lock this very thread holds is EDEADLK at once.
 */
export function lockSync(path: string, options?: Omit<LockOptions, 'signal'>): FileLock {
  checkPath(path);
  const p = parseLockOptions(options, LOCK_SYNC_OPTIONS);
  return acquireSyncTraced(path, p, true) as FileLock;
}

/**
 * @internal For the compatibility layers: creates `path`, which must not
 * exist (O_CREAT|O_EXCL|O_NOFOLLOW: a file of fslock's own by construction),
 * and locks it exclusively.
 */
export function tryLockNew(path: string): FileLock | null {
  checkPath(path);
  // keepOpen: false — these files are deleted while locked: never reuse their descriptors
  const p = { ...parseLockOptions({ keepOpen: false }), createNew: true };
  return acquireSync(path, p, false);
}

/**
 * @internal For the compatibility layers: locks exclusively, without waiting,
 * the file the caller has just created and opened for writing as `fd`, which
 * this takes over: it is closed when the lock is released, or at once when
 * the lock cannot be had (null) or the file is no longer at `path` (null).
 * Either a file of fslock's own by construction at `path` (O_CREAT|O_EXCL),
 * or with `anonymous` one that has no name yet (O_TMPFILE, see
 * C.ANONYMOUS_FILE) and is about to be given `path`: nobody else can reach
 * it, so there is no name to check.
 */
export function lockCreatedFile(path: string, fd: number, anonymous = false): FileLock | null {
  binding.adopt(fd);
  const p = parseLockOptions({ keepOpen: false });
  const o: Opened = { h: handle(fd, true), s: strategyFor(p.primitive, undefined, path) };
  let r: FileLock | Contended | null;
  try {
    r = takeSteps(path, p, o, 0, !anonymous);
  } catch (err) {
    closeAttempt(o);
    throw err;
  }
  if (r instanceof FileLock) return r;
  if (r) closeAttempt(r);
  return null;
}

/**
 * @internal For the compatibility layers: waits in the kernel until whoever
 * holds `path` lets go, for at most `timeout` ms (ETIMEDOUT after). Resolves
 * null when the holder deleted the file as it let go (the common case: a
 * lock artefact), or with the lock when the file is still there (its holder
 * let go without deleting it, or died); the caller releases that at once.
 * Throws ENOENT when there is no file to wait for.
 */
export function waitUntilReleased(path: string, timeout: number): Promise<FileLock | null> {
  const p = parseLockOptions({ create: false, record: false, keepOpen: false, timeout });
  return acquire(path, { ...p, untilReleased: true });
}

/** Acquires, runs `fn(lock)`, and always releases, returning what `fn` returned. */
export async function withLock<T>(
  path: string,
  fn: (lock: FileLock) => T | Promise<T>,
  options?: LockOptions,
): Promise<T> {
  if (typeof fn !== 'function') throw invalidArgType('fn', 'of type function', fn);
  const l = await lock(path, options);
  try {
    return await fn(l);
  } finally {
    l.release();
  }
}

export type { HolderRecordLike, HolderRecord };

/** The holder record beside the lock file at `path` (see `record`), or null. Never believed blindly: see inspect(). */
export function readHolderRecord(path: string): HolderRecord | null {
  return readRecord(path);
}
