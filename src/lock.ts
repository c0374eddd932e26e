/**
 * The lock API: lock, tryLock, lockSync, withLock and FileLock.
 *
 * Acquiring is always: open the lock file (O_CLOEXEC, so children never
 * inherit it), take each step of the plan (flock, then OFD, for `auto` on
 * Linux) with a non-blocking try, wait only for a step that is contended, and
 * finally check that the open file is still the one at `path` (a holder may
 * have deleted it with `unlinkOnRelease` while we waited; a lock on the
 * orphaned inode would exclude nobody), starting again if not.
 */
import { linkSync, lstatSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { currentHolder, readRecord, removeRecord, writeRecord, type HolderRecord, type WrittenRecord } from './holder.js';
import { binding, C } from './binding.js';
import {
  errorCode,
  FslockError,
  lockedError,
  invalidArgType,
  withPath,
  type HolderRecordLike,
} from './errors.js';
import { openLockFile } from './open.js';
import {
  checkOptionsObject,
  checkPath,
  parseLockOptions,
  parseSignal,
  parseTimeout,
  type LockMode,
  type LockOptions,
  type LockRange,
  type ParsedLockOptions,
  type Plan,
  type Step,
} from './options.js';
import type { ResolvedPrimitive } from './primitives.js';
import {
  kernelWait,
  kernelWaitSync,
  pollWait,
  pollWaitSync,
  type KernelWait,
  type WaitContext,
  type WaitFailure,
} from './wait.js';


/**
 * Files this thread holds locks on (identity -> count), so that a wait on
 * one of them can say "held by this process" and a synchronous wait that
 * could never end fails at once (EDEADLK) instead of hanging.
 */
const heldHere = new Map<string, number>();

function noteHeld(identity: string, delta: 1 | -1): void {
  const n = (heldHere.get(identity) ?? 0) + delta;
  if (n > 0) heldHere.set(identity, n);
  else heldHere.delete(identity);
}

function heldByThisThread(fd: number): boolean {
  if (heldHere.size === 0) return false;
  try {
    return heldHere.has(binding.identity(fd));
  } catch {
    return false;
  }
}

/** Who holds the lock that the open file `fd` (of `path`) is contending for. */
function holderOf(fd: number, path: string): HolderRecordLike | null {
  if (heldByThisThread(fd)) return { pid: process.pid, self: true };
  return currentHolder(fd, path, undefined, true);
}

function deadlockError(path: string): FslockError {
  return new FslockError('EDEADLK', `EDEADLK: the lock is held by this thread itself, and a synchronous wait here ` +
    `could never end (the only code that could release it is blocked waiting), '${path}'. Release the other ` +
    'FileLock first, use tryLock, or wait asynchronously with lock().', { path, holder: { pid: process.pid, self: true } });
}

/** The identity of the open file if `path` still names it, else null. */
function sameFile(fd: number, path: string): string | null {
  const id = binding.identity(fd);
  return id === binding.pathIdentity(path) ? id : null;
}

// ---------------------------------------------------------------------------

interface Attempt {
  fd: number;
  writable: boolean;
  holderId: number | null;
}

function openAttempt(path: string, p: ParsedLockOptions): Attempt {
  if (p.createNew) {
    return { fd: binding.open(path, C.OPEN_WRITE | C.OPEN_CREATE | C.OPEN_EXCLUSIVE | C.OPEN_NOFOLLOW), writable: true, holderId: null };
  }
  try {
    return { fd: openLockFile(path, true, p.create, p.allowUnsafeSymlink), writable: true, holderId: null };
  } catch (err) {
    const code = errorCode(err);
    // A shared lock needs only read access: lock read-only files too.
    if (p.mode === 'shared' && (code === 'EACCES' || code === 'EROFS' || code === 'EPERM')) {
      return { fd: openLockFile(path, false, p.create, p.allowUnsafeSymlink), writable: false, holderId: null };
    }
    if (code === 'EISDIR') {
      throw new FslockError('EISDIR', `EISDIR: illegal operation on a directory, open '${path}'. ` +
        'Lock a file inside the directory (for example a `.lock` file) instead.', { path, syscall: 'open' });
    }
    throw err;
  }
}

function undo(a: Attempt): void {
  if (a.fd < 0) return; // belongs to a stuck waiter thread now
  try {
    if (a.holderId !== null) binding.registryUnlock(a.holderId);
  } finally {
    a.holderId = null;
    binding.close(a.fd); // closing releases flock, OFD and Windows locks
    a.fd = -1;
  }
}

function tryStep(a: Attempt, plan: Plan, step: Step, type: number): boolean {
  if (plan.registry) {
    const id = binding.registryLock(a.fd, type, step.start, step.len);
    if (id === null) return false;
    a.holderId = id;
    return true;
  }
  return binding.lock(step.primitive, a.fd, type, step.start, step.len, false);
}

function nonWritableExclusive(path: string): FslockError {
  return new FslockError('EBADF', `EBADF: the lock file was opened read-only (it is not writable), so it cannot be ` +
    `locked exclusively, '${path}'. Make it writable or lock it in shared mode.`, { path });
}

function waitContext(path: string, timeout: number, signal: AbortSignal | undefined, fd: () => number): WaitContext {
  return {
    path,
    deadline: timeout === Infinity ? Infinity : performance.now() + timeout,
    timeout,
    signal,
    holder: () => {
      const f = fd();
      return f >= 0 ? holderOf(f, path) : null;
    },
  };
}

function afterWaitFailure(a: Attempt, err: unknown): void {
  if ((err as WaitFailure).stuck) a.fd = -1;
}

function finish(path: string, a: Attempt, p: ParsedLockOptions, identity: string): FileLock {
  const rec = p.mode === 'exclusive' && !p.range && p.record ? writeRecord(path, identity, p.recordArgv) : null;
  return new FileLock(path, a, p, identity, rec);
}

/**
 * unlinkOnRelease: deletes the file at `path` only if it is the file this
 * lock holds. Checking and then unlinking the path would be two steps that a
 * racer can separate (swapping in another file between them), so the path is
 * first moved aside to a unique name in one atomic rename, the moved file is
 * checked, and a file that is not ours is put back without replacing anything
 * that appeared at `path` meanwhile. Nothing this lock did not hold is ever
 * deleted.
 */
function unlinkIfHeld(path: string, identity: string): void {
  const aside = join(dirname(path), `.${basename(path)}.fslock-unlink-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    renameSync(path, aside);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return; // already gone
    throw err;
  }
  let moved: string | null = null;
  try {
    const st = lstatSync(aside, { bigint: true });
    moved = `${st.dev}:${st.ino}`;
  } catch {
    moved = null;
  }
  if (moved === identity && emptyFile(aside)) {
    unlinkSync(aside);
    return;
  }
  putBack(aside, path);
}

/**
 * fslock never writes into lock files, so a lock file that fslock (or any
 * other locker) created is empty. A file with data at the lock path is
 * somebody's (swapped in by a racer, or a data file locked with
 * unlinkOnRelease by mistake) and is never deleted.
 */
function emptyFile(path: string): boolean {
  try {
    return lstatSync(path).size === 0;
  } catch {
    return false;
  }
}

/** Renames `from` back to `to` without replacing anything now at `to`. */
function putBack(from: string, to: string): void {
  try {
    binding.renameNoReplace(from, to);
    return;
  } catch (err) {
    if (errorCode(err) !== 'ENOSYS') return warnLeftAside(from, to, err);
  }
  try {
    linkSync(from, to);
    unlinkSync(from);
  } catch (err) {
    warnLeftAside(from, to, err);
  }
}

function warnLeftAside(from: string, to: string, err: unknown): void {
  if (errorCode(err) === 'ENOENT') return;
  process.emitWarning(`fslock: a file that replaced the lock file '${to}' while it was being released could not be put ` +
    `back (${errorCode(err) ?? 'error'}: another file is there now); it was left, untouched, at '${from}'`,
  { code: 'FSLOCK_LEFT_ASIDE', type: 'FslockWarning' });
}

/** A contended step the caller must wait for. */
interface Contended {
  a: Attempt;
  step: Step;
}

/**
 * The acquisition loop, shared by the asynchronous and synchronous entry
 * points: it yields each contended step for its driver to wait on (awaiting,
 * or blocking the thread), and the driver throws a failed wait back in. It
 * returns null at once for a caller that may not wait.
 */
function* acquisition(path: string, p: ParsedLockOptions, mayWait: boolean): Generator<Contended, FileLock | null, void> {
  for (;;) {
    const a = openAttempt(path, p);
    try {
      for (const step of p.plan.steps) {
        if (tryStep(a, p.plan, step, p.type)) continue;
        if (!mayWait) {
          undo(a);
          return null;
        }
        if (p.timeout === 0) throw lockedError(path, holderOf(a.fd, path));
        try {
          yield { a, step };
        } catch (err) {
          afterWaitFailure(a, err);
          throw err;
        }
      }
      const identity = sameFile(a.fd, path);
      if (identity === null) {
        undo(a); // the file was replaced or deleted while we waited: start over
        continue;
      }
      return finish(path, a, p, identity);
    } catch (err) {
      undo(a);
      throw err;
    }
  }
}

function kernelRequest({ a, step }: Contended, type: number): KernelWait {
  return { primitive: step.primitive, fd: a.fd, type, start: step.start, len: step.len };
}

async function acquire(path: string, p: ParsedLockOptions): Promise<FileLock> {
  if (p.signal?.aborted) throw abortFor(path, p.signal);
  let current: Attempt | null = null;
  const ctx = waitContext(path, p.timeout, p.signal, () => current?.fd ?? -1);
  const gen = acquisition(path, p, true);
  let next = gen.next();
  while (!next.done) {
    const c = next.value;
    current = c.a;
    try {
      if (p.plan.poll) await pollWait(() => tryStep(c.a, p.plan, c.step, p.type), ctx);
      else await kernelWait(kernelRequest(c, p.type), ctx);
    } catch (err) {
      next = gen.throw(err); // rethrows after cleaning up
      continue;
    }
    next = gen.next();
  }
  return next.value as FileLock;
}

function abortFor(path: string, signal: AbortSignal): FslockError {
  return new FslockError('ABORT_ERR', `The operation was aborted before the lock on '${path}' was requested`, {
    path,
    cause: signal.reason,
  });
}

function acquireSync(path: string, p: ParsedLockOptions, wait: boolean): FileLock | null {
  let current: Attempt | null = null;
  const ctx = waitContext(path, p.timeout, undefined, () => current?.fd ?? -1);
  const gen = acquisition(path, p, wait);
  let next = gen.next();
  while (!next.done) {
    const c = next.value;
    current = c.a;
    try {
      if (heldByThisThread(c.a.fd)) throw deadlockError(path);
      if (p.plan.poll) pollWaitSync(() => tryStep(c.a, p.plan, c.step, p.type), ctx);
      else kernelWaitSync(kernelRequest(c, p.type), ctx);
    } catch (err) {
      next = gen.throw(err);
      continue;
    }
    next = gen.next();
  }
  return next.value;
}

// ---------------------------------------------------------------------------

export interface UpgradeOptions {
  /** Milliseconds to wait for other holders to leave (default forever, 0 = one try). */
  timeout?: number;
  signal?: AbortSignal;
}

export interface UpgradeResult {
  /**
   * true: the shared lock turned into the exclusive one without ever being
   * released. false: the primitive could not convert in place (flock, Windows),
   * so for a moment nothing was held and someone else may have changed the
   * file: re-read whatever you read under the shared lock.
   */
  atomic: boolean;
}

const UPGRADE_OPTION_NAMES = new Set(['timeout', 'signal']);

/** A held lock. Release it with `release()`, `using` or `await using`. */
export class FileLock {
  /** The lock file's path, as given. */
  readonly path: string;

  /** What was actually used, for example `'flock+ofd'`. */
  readonly primitive: ResolvedPrimitive;
  /** The locked byte range, or null for the whole file. */
  readonly range: LockRange | null;
  #mode: LockMode;
  #released = false;
  #attempt: Attempt;
  #plan: Plan;
  #unlinkOnRelease: boolean;
  #record: WrittenRecord | null;
  #recordEnabled: boolean;
  #recordArgv: string[] | undefined;
  #identity: string;

  /** @internal */
  constructor(path: string, a: Attempt, p: ParsedLockOptions, identity: string, record: WrittenRecord | null) {
    this.path = path;
    this.primitive = p.plan.resolved;
    this.range = p.range ? { ...p.range } : null;
    this.#mode = p.mode;
    this.#attempt = a;
    this.#plan = p.plan;
    this.#unlinkOnRelease = p.unlinkOnRelease;
    this.#record = record;
    this.#recordEnabled = p.record;
    this.#recordArgv = p.recordArgv;
    this.#identity = identity;
    noteHeld(identity, 1);
  }

  /**
   * The open descriptor (a HANDLE value on Windows), or -1 once released:
   * the number may be reused by an unrelated file after that.
   */
  get fd(): number {
    return this.#attempt.fd;
  }

  /** `'exclusive'` or `'shared'`; changes with downgrade() and upgrade(). */
  get mode(): LockMode {
    return this.#mode;
  }

  get released(): boolean {
    return this.#released;
  }

  /**
   * Releases the lock and closes the file. Idempotent. With `unlinkOnRelease`
   * the file is deleted first, while the lock is still held, and only if the
   * path still names the file this lock holds and that file is empty (a lock
   * file; a file with data is never deleted).
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    noteHeld(this.#identity, -1);
    const a = this.#attempt;
    let failure: unknown;
    try {
      if (this.#record) removeRecord(this.#record);
      this.#record = null;
      if (this.#unlinkOnRelease) unlinkIfHeld(this.path, this.#identity);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') failure = err;
    }
    try {
      // Unlock explicitly, in reverse order, before closing: a child process
      // between fork and exec still references the open file description, and
      // only an explicit unlock releases the lock for everyone at once.
      if (a.holderId !== null) {
        binding.registryUnlock(a.holderId);
        a.holderId = null;
      } else {
        for (const step of [...this.#plan.steps].reverse()) {
          binding.lock(step.primitive, a.fd, C.UNLOCK, step.start, step.len, false);
        }
      }
    } catch (err) {
      failure ??= err;
    } finally {
      binding.close(a.fd);
      a.fd = -1;
    }
    if (failure) throw withPath(failure, this.path);
  }

  /**
   * @internal For `fslock run`: forget the lock and close this descriptor
   * without an explicit unlock, so a child process that inherited the open
   * file description keeps the lock (flock(1)'s behaviour). Registry (POSIX)
   * locks cannot be inherited and are released normally.
   */
  closeKeepingInherited(): void {
    if (this.#released || this.#attempt.holderId !== null || this.#unlinkOnRelease) {
      this.release();
      return;
    }
    this.#released = true;
    noteHeld(this.#identity, -1);
    if (this.#record) removeRecord(this.#record);
    this.#record = null;
    const a = this.#attempt;
    binding.close(a.fd);
    a.fd = -1;
  }

  #assertHeld(what: string): void {
    if (this.#released) {
      throw new FslockError('ERR_LOCK_RELEASED', `Cannot ${what}: the lock on '${this.path}' was already released`, {
        path: this.path,
      });
    }
  }

  /**
   * Exclusive → shared. Atomic for OFD, POSIX and Windows locks, and for flock
   * on Linux (the kernel swaps the lock under one spinlock); POSIX does not
   * promise it for flock elsewhere.
   */
  downgrade(): void {
    this.#assertHeld('downgrade');
    if (this.#mode === 'shared') return;
    const a = this.#attempt;
    if (this.#record) {
      removeRecord(this.#record); // shared holders do not record themselves
      this.#record = null;
    }
    if (a.holderId !== null) {
      binding.registryChange(a.holderId, C.SHARED);
    } else {
      for (const step of this.#plan.steps) {
        if (step.primitive === C.WINDOWS) {
          // Same handle: the shared lock may overlap our exclusive one, and the
          // first unlock removes the exclusive lock, leaving the shared one.
          binding.lock(step.primitive, a.fd, C.SHARED, step.start, step.len, false);
          binding.lock(step.primitive, a.fd, C.UNLOCK, step.start, step.len, false);
        } else {
          // OFD/POSIX convert atomically; flock converts under one kernel lock.
          binding.lock(step.primitive, a.fd, C.SHARED, step.start, step.len, false);
        }
      }
    }
    this.#mode = 'shared';
  }

  /**
   * Shared → exclusive, waiting for other shared holders to leave. Resolves
   * with `{ atomic }` (see UpgradeResult). On timeout or abort the shared lock
   * is kept where the primitive allows it; where it was lost (flock: the
   * kernel drops a shared lock whose upgrade fails) the error has
   * `lost: true` and this FileLock is released.
   */
  async upgrade(options?: UpgradeOptions): Promise<UpgradeResult> {
    this.#assertHeld('upgrade');
    const o = checkOptionsObject(options, UPGRADE_OPTION_NAMES);
    const timeout = parseTimeout(o.timeout);
    const signal = parseSignal(o.signal);
    if (this.#mode === 'exclusive') return { atomic: true };
    const a = this.#attempt;
    if (!a.writable) throw nonWritableExclusive(this.path);
    if (signal?.aborted) throw abortFor(this.path, signal);
    const ctx = waitContext(this.path, timeout, signal, () => a.fd);
    let atomic = true;
    const converted: Step[] = [];
    // Convert the primitives that can convert in place (OFD, POSIX) first:
    // once they are exclusive no OFD/POSIX locker can get in, whatever
    // happens to the flock part.
    const order = [...this.#plan.steps].sort((x, y) => Number(y.primitive === C.OFD || y.primitive === C.POSIX) -
      Number(x.primitive === C.OFD || x.primitive === C.POSIX));
    try {
      for (const step of order) {
        const convertible = step.primitive === C.OFD || step.primitive === C.POSIX;
        if (this.#plan.registry) {
          if (!binding.registryChange(a.holderId as number, C.EXCLUSIVE)) {
            if (timeout === 0) throw lockedError(this.path, holderOf(a.fd, this.path));
            await pollWait(() => binding.registryChange(a.holderId as number, C.EXCLUSIVE), ctx);
          }
        } else if (convertible) {
          if (!binding.lock(step.primitive, a.fd, C.EXCLUSIVE, step.start, step.len, false)) {
            if (timeout === 0) throw lockedError(this.path, holderOf(a.fd, this.path));
            await this.#waitStep(step, ctx);
          }
        } else {
          // flock and Windows cannot convert in place.
          if (step.primitive === C.WINDOWS) {
            binding.lock(step.primitive, a.fd, C.UNLOCK, step.start, step.len, false);
            atomic = false;
          }
          if (!binding.lock(step.primitive, a.fd, C.EXCLUSIVE, step.start, step.len, false)) {
            atomic = false; // flock has dropped our shared lock by now
            if (timeout === 0) throw lockedError(this.path, holderOf(a.fd, this.path));
            await this.#waitStep(step, ctx);
          }
        }
        converted.push(step);
      }
    } catch (err) {
      const lost = this.#restoreShared(converted, err as WaitFailure);
      if (lost) (err as { lost?: boolean }).lost = true;
      throw err;
    }
    this.#mode = 'exclusive';
    if (!this.range && this.#recordEnabled) this.#record = writeRecord(this.path, this.#identity, this.#recordArgv);
    return { atomic };
  }

  async #waitStep(step: Step, ctx: WaitContext): Promise<void> {
    const a = this.#attempt;
    if (this.#plan.poll) {
      await pollWait(() => binding.lock(step.primitive, a.fd, C.EXCLUSIVE, step.start, step.len, false), ctx);
    } else {
      await kernelWait({ primitive: step.primitive, fd: a.fd, type: C.EXCLUSIVE, start: step.start, len: step.len }, ctx);
    }
  }

  /** After a failed upgrade: go back to shared everywhere. Returns true if the lock was lost. */
  #restoreShared(converted: Step[], err: WaitFailure): boolean {
    const a = this.#attempt;
    if (err.stuck) {
      // The descriptor belongs to a waiter thread that could not be interrupted.
      a.fd = -1;
      this.#released = true;
      noteHeld(this.#identity, -1);
      return true;
    }
    try {
      if (a.holderId !== null) {
        binding.registryChange(a.holderId, C.SHARED);
        return false;
      }
      // Re-requesting a shared lock is a no-op where it is still held, an
      // atomic downgrade where the step became exclusive (or was granted as
      // the wait was cancelled), and a fresh try where flock dropped it.
      for (const step of this.#plan.steps) {
        if (!binding.lock(step.primitive, a.fd, C.SHARED, step.start, step.len, false)) throw new Error('lost');
        if (step.primitive === C.WINDOWS && converted.includes(step)) {
          binding.lock(step.primitive, a.fd, C.UNLOCK, step.start, step.len, false);
        }
      }
      return false;
    } catch {
      this.release();
      return true;
    }
  }

  [Symbol.dispose](): void {
    this.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

// ---------------------------------------------------------------------------

const TRY_LOCK_OPTIONS = new Set(['mode', 'primitive', 'range', 'create', 'unlinkOnRelease', 'record', 'allowUnsafeSymlink']);
const LOCK_SYNC_OPTIONS = new Set([...TRY_LOCK_OPTIONS, 'timeout']);

/** Waits until the lock is acquired (or `timeout` / `signal` end the wait). */
export async function lock(path: string, options?: LockOptions): Promise<FileLock> {
  checkPath(path);
  const p = parseLockOptions(options, path);
  return acquire(path, p);
}

/** One synchronous try; null when someone else holds the lock. Never waits. */
export function tryLock(path: string, options?: Omit<LockOptions, 'timeout' | 'signal'>): FileLock | null {
  checkPath(path);
  const o = checkOptionsObject(options, TRY_LOCK_OPTIONS);
  const p = parseLockOptions(o, path);
  return acquireSync(path, p, false);
}

/**
 * Acquires synchronously, blocking the calling thread until granted or until
 * `timeout` ms have passed (ETIMEDOUT). `timeout: 0` is a single try (ELOCKED).
 */
export function lockSync(path: string, options?: Omit<LockOptions, 'signal'>): FileLock {
  checkPath(path);
  const o = checkOptionsObject(options, LOCK_SYNC_OPTIONS);
  const p = parseLockOptions(o, path);
  return acquireSync(path, p, true) as FileLock;
}

/**
 * @internal For the compatibility layers: creates `path`, which must not
 * exist (O_CREAT|O_EXCL|O_NOFOLLOW: a file of fslock's own by construction),
 * and locks it exclusively.
 */
export function tryLockNew(path: string): FileLock | null {
  checkPath(path);
  const p = { ...parseLockOptions({}, path), createNew: true };
  return acquireSync(path, p, false);
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
