/**
 * The lock API: lock, tryLock, lockSync, withLock and FileLock.
 *
 * Acquiring is always: open the lock file (O_CLOEXEC, so children never
 * inherit it; see open.ts for symlinks), take each step of the primitive's
 * strategy (flock, then OFD, for `auto` on Linux; see strategy.ts) with a
 * non-blocking try, wait only for a step that is contended, and finally
 * check that the open file is still the one at `path` (a holder may have
 * deleted it with `unlinkOnRelease` while we waited; a lock on the orphaned
 * inode would exclude nobody), starting again if not.
 */
import { performance } from 'perf_hooks';
import {
  currentHolder,
  readRecord,
  removeRecord,
  writeRecord,
  type HolderRecord,
  type WrittenRecord,
} from './holder.js';
import { binding, C } from './binding.js';
import {
  abortError,
  deadlockError,
  readOnlyError,
  errorCode,
  FslockError,
  invalidArgType,
  lockedError,
  timeoutError,
  withPath,
  type HolderRecordLike,
} from './errors.js';
import { inspectSync } from './inspect.js';
import { openLockFile } from './open.js';
import {
  checkOptionsObject,
  checkPath,
  LOCK_OPTION_NAMES,
  parseLockOptions,
  parseSignal,
  parseTimeout,
  type LockMode,
  type LockOptions,
  type LockRange,
  type ParsedLockOptions,
} from './options.js';
import type { ResolvedPrimitive } from './primitives.js';
import {
  readOnlyExclusive,
  strategyFor,
  typeOf,
  type LockHandle,
  type LockStrategy,
  type LostLock,
} from './strategy.js';
import { unlinkIfHeld } from './unlink.js';
import type { WaitContext, WaitFailure, WaitOutcome } from './wait.js';
import { lockChannel, outcomeOf, releaseChannel, tracingLocks, type LockTraceContext } from './trace.js';

// ---------------------------------------------------------------------------
// What this thread holds

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

// ---------------------------------------------------------------------------
// Acquisition

/** An opened lock file with the strategy that will lock it. */
interface Opened {
  h: LockHandle;
  s: LockStrategy;
}

/** An open lock file that holds nothing yet. */
function handle(fd: number, writable: boolean): LockHandle {
  return { fd, writable, registryId: null };
}

function openHandle(path: string, p: ParsedLockOptions, s: LockStrategy): Opened {
  if (p.createNew) {
    const fd = binding.open(path, C.OPEN_WRITE | C.OPEN_CREATE | C.OPEN_EXCLUSIVE | C.OPEN_NOFOLLOW);
    return { h: handle(fd, true), s };
  }
  try {
    return { h: handle(openLockFile(path, true, p.create, p.allowUnsafeSymlink), true), s };
  } catch (err) {
    const code = errorCode(err);
    // Not writable (or a directory): open it read-only. A shared lock needs
    // nothing more; an exclusive one only flock can take on such a descriptor.
    if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM' && code !== 'EISDIR') throw err;
    const fd = openLockFile(path, false, p.create, p.allowUnsafeSymlink);
    try {
      const ro = p.mode === 'exclusive' ? readOnlyExclusive(s, p.primitive, path, p.range) : s;
      return { h: handle(fd, false), s: ro };
    } catch (e) {
      binding.close(fd);
      throw e;
    }
  }
}

/** Gives up an attempt: unlocks what it took and closes the descriptor. */
function undo({ h, s }: Opened): void {
  if (h.fd < 0) return; // belongs to a stuck waiter thread now
  try {
    s.unlock(h);
  } catch {
    // closing releases flock, OFD and Windows locks anyway
  } finally {
    binding.close(h.fd);
    h.fd = -1;
  }
}

/** An attempt stopped at a contended step. */
interface Contended extends Opened {
  step: number;
  /** The file's identity, when the fast path reported it. */
  identity?: string;
}

/** Errors of the native fast path that the general path handles (symlinks, read-only files, directories). */
const SLOW_PATH_CODES = new Set(['ELOOP', 'EMLINK', 'EFTYPE', 'EACCES', 'EROFS', 'EPERM', 'EISDIR']);

function finishLock(path: string, p: ParsedLockOptions, o: Opened, identity: string): FileLock {
  const rec = p.mode === 'exclusive' && !p.range && p.record ? writeRecord(path, identity, p.recordArgv) : null;
  return new FileLock(path, o.h, o.s, p, identity, rec);
}

/**
 * Takes the steps from `from` on without waiting. Returns the FileLock, the
 * contended step, or null when the file at `path` changed (start again).
 * `named` false: the file has no name yet (an anonymous file), nothing to check.
 */
function advance(
  path: string,
  p: ParsedLockOptions,
  o: Opened,
  from: number,
  named = true,
): FileLock | Contended | null {
  const type = typeOf(p.mode);
  const steps = o.s.steps;
  for (let i = from; i < steps.length; i++) {
    if (!o.s.tryStep(o.h, steps[i]!, type)) return { ...o, step: i };
  }
  const identity = binding.identity(o.h.fd);
  if (named && identity !== binding.pathIdentity(path)) {
    undo(o); // the file was replaced or deleted while we waited: start over
    return null;
  }
  return finishLock(path, p, o, identity);
}

/** Opens and tries; loops while the file changes under us. */
function begin(path: string, p: ParsedLockOptions, s: LockStrategy): FileLock | Contended {
  if (s.fast && !p.createNew) {
    // One native call: open, every step, identity check.
    let r = null;
    try {
      r = s.acquireFast(path, p.create, typeOf(p.mode));
    } catch (err) {
      if (!SLOW_PATH_CODES.has(errorCode(err) ?? '')) throw err;
    }
    if (r) {
      const o: Opened = { h: handle(r.fd, true), s };
      if (r.contended >= 0) return { ...o, step: r.contended, identity: r.identity };
      try {
        return finishLock(path, p, o, r.identity);
      } catch (err) {
        undo(o);
        throw err;
      }
    }
  }
  for (;;) {
    const o = openHandle(path, p, s);
    try {
      const r = advance(path, p, o, 0);
      if (r) return r;
    } catch (err) {
      undo(o);
      throw err;
    }
  }
}

/**
 * After a granted wait on `c.step`: take the rest, or start over if the file
 * changed. `o`: what the waiter thread found when it took the rest itself
 * (see LockStrategy.waitStep); without it, the rest is taken here.
 */
function resume(
  path: string,
  p: ParsedLockOptions,
  s: LockStrategy,
  c: Contended,
  o?: WaitOutcome,
): FileLock | Contended {
  try {
    if (!o) return advance(path, p, c, c.step + 1) ?? begin(path, p, s);
    if (o.state >= 0) return { ...c, step: c.step + 1 + o.state };
    if (o.state === -1) return finishLock(path, p, c, o.identity!);
    undo(c); // the file was replaced or deleted while we waited: start over
    return begin(path, p, s);
  } catch (err) {
    undo(c);
    throw err;
  }
}

function waitContext(
  path: string,
  timeout: number,
  signal: AbortSignal | undefined,
  fd: () => number,
  deadline?: number,
  deadlock?: string,
): WaitContext {
  return {
    path,
    deadline: deadline ?? (timeout === Infinity ? Infinity : performance.now() + timeout),
    timeout,
    signal,
    holder: () => {
      const f = fd();
      return f >= 0 ? holderOf(f, path) : null;
    },
    deadlock,
  };
}

/** Cleans up after a failed wait and passes its error on. */
function failed(c: Contended, err: unknown): never {
  if ((err as WaitFailure).stuck) c.h.fd = -1; // the waiter thread owns the descriptor now
  undo(c);
  throw err;
}

function notWaiting(path: string, c: Contended): never {
  const holder = holderOf(c.h.fd, path);
  undo(c);
  throw lockedError(path, holder);
}

// ---------------------------------------------------------------------------
// Waiting in line
//
// The asynchronous waits of this thread for one lock (one file, primitive and
// range) stand in a line: only its first waits in the kernel (one native
// thread however many wait), the others wait here, first come first served.
// When a FileLock of this thread releases, the lock is handed to the next in
// line at once, before anyone else in this thread can take it; when the
// kernel waiter gives up (timeout, abort), the next one takes its place.

interface Ticket {
  path: string;
  p: ParsedLockOptions;
  s: LockStrategy;
  /** Handed the lock, made the kernel waiter (a Contended), or failed. */
  settle(r: FileLock | Contended | Error): void;
}

interface Line {
  key: string;
  /** Someone of this line waits in the kernel (or polls) now. */
  active: boolean;
  tickets: Ticket[];
}

const lines = new Map<string, Line>();
let queued = 0;
let keepAlive: NodeJS.Timeout | null = null;

function lineKey(identity: string, s: LockStrategy, range: LockRange | null | undefined): string {
  return range ? `${identity}|${s.resolved}|${range.offset}:${range.length}` : `${identity}|${s.resolved}`;
}

/** A pending wait keeps the event loop alive, like a timer would (the kernel waiter's thread does so too). */
function countQueued(delta: 1 | -1): void {
  queued += delta;
  if (queued > 0 && keepAlive === null) keepAlive = setInterval(() => undefined, 2 ** 31 - 1);
  else if (queued === 0 && keepAlive !== null) {
    clearInterval(keepAlive);
    keepAlive = null;
  }
}

/**
 * Settlements of served tickets, delivered on the next turn of the event
 * loop: the lock is already theirs (nobody can take it meanwhile), but a long
 * line served through promise callbacks alone would never let the event loop
 * run (10,000 waiters: one 100 ms stall).
 */
let deliveries: Array<() => void> = [];

function deliver(fn: () => void): void {
  if (deliveries.length === 0) {
    setImmediate(() => {
      const batch = deliveries;
      deliveries = [];
      for (const d of batch) d();
    });
  }
  deliveries.push(fn);
}

/** Gives the lock to the next in line while it can be had without waiting (several shared ones at once). */
function serveLine(line: Line): void {
  while (!line.active && line.tickets.length > 0) {
    const t = line.tickets.shift()!;
    let r: FileLock | Contended;
    try {
      r = begin(t.path, t.p, t.s);
    } catch (err) {
      t.settle(err as Error);
      continue;
    }
    if (r instanceof FileLock) {
      const granted = r;
      deliver(() => t.settle(granted));
      if (t.p.mode === 'shared' && line.tickets[0]?.p.mode === 'shared') continue;
      break;
    }
    line.active = true; // held elsewhere: this one waits in the kernel now
    t.settle(r);
  }
  if (!line.active && line.tickets.length === 0) lines.delete(line.key);
}

/** After a lock of this thread was released or downgraded: serve its line, if anyone waits in it. */
function released(identity: string, s: LockStrategy, range: LockRange | null): void {
  const line = lines.get(lineKey(identity, s, range));
  if (line) serveLine(line);
}

function waitInLine(
  line: Line,
  path: string,
  p: ParsedLockOptions,
  s: LockStrategy,
  deadline: number,
): Promise<FileLock | Contended> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const ticket: Ticket = {
      path,
      p,
      s,
      settle: (r) => {
        cleanup();
        if (r instanceof Error) reject(r);
        else resolve(r);
      },
    };
    const cleanup = () => {
      if (timer) clearTimeout(timer);
      p.signal?.removeEventListener('abort', onAbort);
      countQueued(-1);
    };
    const leave = (err: Error) => {
      const i = line.tickets.indexOf(ticket);
      if (i < 0) return; // already served
      line.tickets.splice(i, 1);
      if (!line.active && line.tickets.length === 0) lines.delete(line.key);
      cleanup();
      reject(err);
    };
    const onAbort = () => leave(abortError(path, p.signal?.reason, 'while'));
    const arm = () => {
      const ms = deadline - performance.now();
      if (ms <= 0) return leave(timeoutError(path, p.timeout, queuedHolder(path)));
      timer = setTimeout(arm, Math.min(ms, 2 ** 31 - 1));
    };
    line.tickets.push(ticket);
    countQueued(1);
    p.signal?.addEventListener('abort', onAbort, { once: true });
    if (deadline !== Infinity) arm();
  });
}

/** Who holds a lock one waits for in line (no descriptor of our own to ask with). */
function queuedHolder(path: string): HolderRecordLike | null {
  try {
    return inspectSync(path).holder;
  } catch {
    return null;
  }
}

async function acquire(path: string, p: ParsedLockOptions, trace?: LockTraceContext): Promise<FileLock | null> {
  if (p.signal?.aborted) throw abortError(path, p.signal.reason, 'before');
  const s = strategyFor(p.primitive, p.range, path);
  let r = begin(path, p, s);
  if (r instanceof FileLock) return r;
  if (p.timeout === 0) notWaiting(path, r);
  if (trace) trace.waited = true;
  const deadline = p.timeout === Infinity ? Infinity : performance.now() + p.timeout;
  let identity: string;
  try {
    identity = r.identity ?? binding.identity(r.h.fd);
  } catch (err) {
    undo(r);
    throw err;
  }
  const key = lineKey(identity, s, p.range);
  let line = lines.get(key);
  if (line && (line.active || line.tickets.length > 0)) {
    undo(r); // someone of this thread is ahead: wait behind them, without a descriptor or thread of our own
    const got = await waitInLine(line, path, p, s, deadline);
    if (got instanceof FileLock) return got;
    r = got; // made the kernel waiter (serveLine set line.active)
  } else if (line) {
    line.active = true;
  } else {
    lines.set(key, (line = { key, active: true, tickets: [] }));
  }
  let c: Contended = r;
  const ctx = waitContext(path, p.timeout, p.signal, () => c.h.fd, deadline, p.deadlock ? identity : undefined);
  try {
    for (;;) {
      let o: WaitOutcome | undefined;
      // The FileLock a hand-off ends with, built before the wait: on a grant
      // of the whole lock (the waiter thread took every step and checked the
      // file), nothing is left to do but count it held. Building it after
      // the grant cost a cold hand-off about 10 µs (interleaved runs).
      const ready = p.record ? null : new FileLock(path, c.h, c.s, p, identity, null, true);
      try {
        o = await c.s.waitStep(c.h, c.step, typeOf(p.mode), ctx, path);
      } catch (err) {
        failed(c, err);
      }
      if (o?.state === -2 && p.untilReleased) {
        // Deleted (or replaced) while held, then let go: the release waited for.
        undo(c);
        line.active = false;
        serveLine(line);
        return null;
      }
      if (ready !== null && o?.state === -1 && o.identity === identity) {
        noteHeld(identity, 1);
        ready.startClock();
        r = ready;
      } else {
        r = resume(path, p, s, c, o);
      }
      if (r instanceof FileLock) {
        // The rest of the line is served when this lock is released; shared
        // waiters right behind a shared lock come in now.
        line.active = false;
        if (p.mode === 'shared') serveLine(line);
        else if (line.tickets.length === 0) lines.delete(key);
        return r;
      }
      c = r;
    }
  } catch (err) {
    line.active = false;
    serveLine(line); // the next in line takes over the wait
    throw err;
  }
}

function acquireSync(path: string, p: ParsedLockOptions, mayWait: boolean, trace?: LockTraceContext): FileLock | null {
  const s = strategyFor(p.primitive, p.range, path);
  let r = begin(path, p, s);
  if (r instanceof FileLock) return r;
  if (!mayWait) {
    undo(r);
    return null;
  }
  if (p.timeout === 0) notWaiting(path, r);
  if (trace) trace.waited = true;
  let c: Contended = r;
  let identity: string | undefined;
  if (p.deadlock) {
    try {
      identity = binding.identity(c.h.fd);
    } catch (err) {
      undo(c);
      throw err;
    }
  }
  const ctx = waitContext(path, p.timeout, undefined, () => c.h.fd, undefined, identity);
  for (;;) {
    if (heldByThisThread(c.h.fd)) {
      undo(c);
      throw deadlockError(path);
    }
    try {
      c.s.waitSync(c.h, c.s.steps[c.step]!, typeOf(p.mode), ctx);
    } catch (err) {
      failed(c, err);
    }
    r = resume(path, p, s, c);
    if (r instanceof FileLock) return r;
    c = r;
  }
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
  #handle: LockHandle;
  #strategy: LockStrategy;
  #unlinkOnRelease: boolean;
  #keepOpen: boolean;
  #record: WrittenRecord | null;
  #recordEnabled: boolean;
  #recordArgv: string[] | undefined;
  #identity: string;
  #since = performance.now();

  /** @internal */
  constructor(
    path: string,
    h: LockHandle,
    s: LockStrategy,
    p: ParsedLockOptions,
    identity: string,
    record: WrittenRecord | null,
    /** Built ahead of its grant (see acquire): not counted as held until then. */
    pending = false,
  ) {
    this.path = path;
    this.primitive = s.resolved;
    this.range = p.range ? { ...p.range } : null;
    this.#mode = p.mode;
    this.#handle = h;
    this.#strategy = s;
    this.#unlinkOnRelease = p.unlinkOnRelease;
    this.#keepOpen = p.keepOpen && !p.unlinkOnRelease;
    this.#record = record;
    this.#recordEnabled = p.record;
    this.#recordArgv = p.recordArgv;
    this.#identity = identity;
    if (!pending) noteHeld(identity, 1);
  }

  /**
   * The open descriptor (a HANDLE value on Windows), or -1 once released:
   * the number may be reused by an unrelated file after that.
   */
  get fd(): number {
    return this.#handle.fd;
  }

  /** `'exclusive'` or `'shared'`; changes with downgrade() and upgrade(). */
  get mode(): LockMode {
    return this.#mode;
  }

  get released(): boolean {
    return this.#released;
  }

  /**
   * @internal The locked file's identity ("dev:ino"), as found when the lock
   * was taken, with the file at its path (a handle's volume serial can read
   * 0 under Wine once the file's name is gone).
   */
  get identity(): string {
    return this.#identity;
  }

  /** @internal Held from now (a FileLock built before its wait is granted later). */
  startClock(): void {
    this.#since = performance.now();
  }

  /** Marks this FileLock released; true the first time. */
  #close(): boolean {
    if (this.#released) return false;
    this.#released = true;
    noteHeld(this.#identity, -1);
    return true;
  }

  /**
   * Releases the lock and closes the file. Idempotent. With `unlinkOnRelease`
   * the file is deleted first, while the lock is still held, and only if the
   * path still names the file this lock holds and that file is empty (a lock
   * file; a file with data is never deleted).
   */
  release(): void {
    if (!this.#close()) return;
    try {
      this.#releaseHandle();
    } finally {
      if (lines.size > 0) released(this.#identity, this.#strategy, this.range);
      if (releaseChannel.hasSubscribers) {
        const heldMs = performance.now() - this.#since;
        releaseChannel.publish({ path: this.path, mode: this.#mode, primitive: this.primitive, heldMs });
      }
    }
  }

  #releaseHandle(): void {
    const h = this.#handle;
    let failure: unknown;
    try {
      if (this.#record) removeRecord(this.#record);
      this.#record = null;
      if (this.#unlinkOnRelease) unlinkIfHeld(this.path, this.#identity);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') failure = err;
    }
    if (h.fd < 0) return;
    try {
      // unlocks every step explicitly, then closes (or keeps the descriptor for the next lock of this path)
      this.#strategy.releaseFast(h, this.#keepOpen);
    } catch (err) {
      failure ??= err;
    } finally {
      h.fd = -1;
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
    if (this.#released || this.#handle.registryId !== null || this.#unlinkOnRelease) {
      this.release();
      return;
    }
    this.#close();
    if (this.#record) removeRecord(this.#record);
    this.#record = null;
    binding.close(this.#handle.fd);
    this.#handle.fd = -1;
    if (lines.size > 0) released(this.#identity, this.#strategy, this.range);
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
    if (this.#record) {
      removeRecord(this.#record); // shared holders do not record themselves
      this.#record = null;
    }
    this.#strategy.downgrade(this.#handle);
    this.#mode = 'shared';
    if (lines.size > 0) released(this.#identity, this.#strategy, this.range); // shared waiters may come in
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
    const h = this.#handle;
    if (!h.writable) throw readOnlyError(this.path, 'an upgrade');
    if (signal?.aborted) throw abortError(this.path, signal.reason, 'before');
    const ctx = waitContext(this.path, timeout, signal, () => h.fd);
    let outcome;
    try {
      outcome = await this.#strategy.upgrade(h, ctx, timeout !== 0, () =>
        lockedError(this.path, holderOf(h.fd, this.path)),
      );
    } catch (err) {
      if ((err as LostLock).lost) {
        if (h.fd < 0) this.#close();
        else this.release();
      }
      throw err;
    }
    this.#mode = 'exclusive';
    if (!this.range && this.#recordEnabled) this.#record = writeRecord(this.path, this.#identity, this.#recordArgv);
    return outcome;
  }

  [Symbol.dispose](): void {
    this.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }
}

// ---------------------------------------------------------------------------

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
    r = advance(path, p, o, 0, !anonymous);
  } catch (err) {
    undo(o);
    throw err;
  }
  if (r instanceof FileLock) return r;
  if (r) undo(r);
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
