/** FileLock: a held lock, released with release(), `using` or `await using`. */
import { performance } from 'perf_hooks';
import { binding } from '../binding.js';
import { abortError, errorCode, FslockError, lockedError, readOnlyError, withPath } from '../errors.js';
import { removeRecord, writeRecord, type WrittenRecord } from '../holder.js';
import {
  checkOptionsObject,
  parseSignal,
  parseTimeout,
  type LockMode,
  type LockRange,
  type ParsedLockOptions,
} from '../options.js';
import type { ResolvedPrimitive } from '../primitives.js';
import type { LockHandle, LockStrategy, LostLock } from '../strategy.js';
import { releaseChannel } from '../trace.js';
import { unlinkIfHeld } from '../unlink.js';
import { holderOf, noteHeld, waitContext } from './held.js';

/**
 * performance.now() minus the native PerfClockMs (both libuv's uv_hrtime
 * clock on Linux): the hrtime reading between two performance.now() readings
 * closest together of a few, against their midpoint.
 */
const PERF_CLOCK_OFFSET = (() => {
  let best = { gap: Infinity, offset: 0 };
  for (let i = 0; i < 5; i++) {
    const a = performance.now();
    const h = Number(process.hrtime.bigint()) / 1e6;
    const b = performance.now();
    if (b - a < best.gap) best = { gap: b - a, offset: (a + b) / 2 - h };
  }
  return best.offset;
})();

type ReleaseHook = (identity: string, s: LockStrategy, range: LockRange | null) => void;
let releaseHook: ReleaseHook = () => undefined;

/** @internal line.ts hears of every release and downgrade of this thread here (to serve its waiting line). */
export function onRelease(hook: ReleaseHook): void {
  releaseHook = hook;
}

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

  /**
   * @internal Held from now (a FileLock built before its wait is granted
   * later), or from `grantMs` (the native clock of the grant, PerfClockMs;
   * 0 unknown): reading performance.now() in a just-woken event loop costs
   * more than the rest of the hand-off's bookkeeping.
   */
  startClock(grantMs = 0): void {
    this.#since = grantMs > 0 ? grantMs + PERF_CLOCK_OFFSET : performance.now();
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
   * the file is taken off its name first, while the lock is still held, and
   * deleted just after the unlock, only if the path still named the file this
   * lock holds and that file is empty (a lock file; a file with data is never
   * deleted).
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    try {
      // the kernel first: a waiter in another process is woken by the unlock,
      // and this thread's bookkeeping can follow while it wakes
      this.#releaseHandle();
    } finally {
      noteHeld(this.#identity, -1);
      releaseHook(this.#identity, this.#strategy, this.range);
      if (releaseChannel.hasSubscribers) {
        const heldMs = performance.now() - this.#since;
        releaseChannel.publish({ path: this.path, mode: this.#mode, primitive: this.primitive, heldMs });
      }
    }
  }

  #releaseHandle(): void {
    let failure: unknown;
    try {
      if (this.#record) removeRecord(this.#record);
      this.#record = null;
      // off its name while held; let go then, and a waiter wakes while the unlink goes on
      if (this.#unlinkOnRelease) unlinkIfHeld(this.path, this.#identity, false, () => (failure = this.#unlock()));
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') failure ??= err;
    }
    failure ??= this.#unlock();
    if (failure) throw withPath(failure, this.path);
  }

  /**
   * Unlocks every step explicitly, then closes (or keeps the descriptor for
   * the next lock of this path); once. Returns what failed, if anything.
   */
  #unlock(): unknown {
    const h = this.#handle;
    if (h.fd < 0) return undefined;
    try {
      this.#strategy.releaseFast(h, this.#keepOpen);
      return undefined;
    } catch (err) {
      return err;
    } finally {
      h.fd = -1;
    }
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
    releaseHook(this.#identity, this.#strategy, this.range);
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
    releaseHook(this.#identity, this.#strategy, this.range); // shared waiters may come in
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
