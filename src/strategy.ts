/**
 * How each primitive locks: the one place where a primitive's behaviour is
 * decided. A `LockStrategy` knows the system calls that take, wait for,
 * convert and release its lock on an open lock file (a `LockHandle`), built
 * from the platform facts in primitives.ts, and how a holder is detected where
 * there is no lock table to read (probeHeldMode, for inspect). FileLock, the
 * acquisition loop in lock.ts and inspect.ts call it and never branch on the
 * primitive.
 *
 * | strategy | steps | waits | shared↔exclusive |
 * |---|---|---|---|
 * | flock+ofd (Linux) | flock, then OFD, on one descriptor (a fixed order, so two fslock lockers cannot deadlock) | kernel, per step | OFD converts in place; flock drops and retakes |
 * | flock+ofd-readonly | flock, then a shared OFD lock (a read-only descriptor, see readOnlyExclusive) | kernel, per step | no upgrade (read-only) |
 * | flock | flock | kernel | drops and retakes (not atomic) |
 * | ofd | OFD on the range | kernel | in place (atomic) |
 * | posix | classic fcntl behind the native process-wide registry | poll | in place (atomic) |
 * | windows | LockFileEx on one byte at 2^52, or the range | poll | downgrade: shared then unlock; upgrade: unlock then exclusive (not atomic) |
 */
import { platform } from './platform.js';
import { binding, C } from './binding.js';
import { invalidArgValue, notSupportedError, readOnlyError } from './errors.js';
import { primitives, type PrimitiveName, type ResolvedPrimitive } from './primitives.js';
import {
  kernelWait,
  kernelWaitSync,
  pollWait,
  pollWaitSync,
  type WaitContext,
  type WaitFailure,
  type WaitOutcome,
} from './wait.js';
import type { LockMode, LockRange } from './options.js';

/**
 * Where a Windows whole-file lock sits: one byte far beyond any data, so the
 * file's contents stay readable by others (Windows byte-range locks are
 * mandatory).
 */
export const WINDOWS_LOCK_OFFSET = 2 ** 52;

/** An open lock file and what this process holds on it. */
export interface LockHandle {
  /** The descriptor (a HANDLE value on Windows); -1 once closed or given to a stuck waiter thread. */
  fd: number;
  /** Opened read-write (an exclusive lock needs that for OFD, POSIX and Windows). */
  writable: boolean;
  /** The POSIX registry's holder id, while the registry strategy holds a lock. */
  registryId: number | null;
}

/** One lock system call: which primitive, on which range. */
export interface Step {
  primitive: number;
  start: number;
  len: number;
  /** This step always takes this lock type (C.SHARED), whatever the lock's mode. */
  type?: number;
}

/** The lock type a step takes for a lock of type `type`. */
const typeFor = (step: Step, type: number): number => (type === C.UNLOCK ? type : (step.type ?? type));

export interface UpgradeOutcome {
  /** false: for a moment nothing was held (flock, Windows). */
  atomic: boolean;
}

/** Thrown by `tryUpgrade` and `upgrade` when a failed upgrade could not keep the shared lock. */
export interface LostLock {
  lost?: boolean;
}

export const typeOf = (mode: LockMode): number => (mode === 'exclusive' ? C.EXCLUSIVE : C.SHARED);

/** What the native fast path reports: the descriptor, its identity, and the contended step or -1. */
export interface FastResult {
  fd: number;
  identity: string;
  contended: number;
}

export abstract class LockStrategy {
  constructor(
    /** What a FileLock reports as its `primitive`. */
    readonly resolved: ResolvedPrimitive,
    /** Taken in this order. */
    readonly steps: readonly Step[],
    /** Waits poll with backoff instead of blocking in the kernel. */
    readonly poll: boolean,
  ) {}

  /**
   * Whether open + every step + the identity check can run as one native
   * call (acquireFast / releaseFast): plain kernel locks, not the registry.
   */
  get fast(): boolean {
    return false;
  }

  /** The native fast path (see `fast`): throws the open's errors as they are. */
  acquireFast(_path: string, _create: boolean, _type: number, _keepOpen?: boolean): FastResult {
    throw new Error('fslock: no fast path for this primitive');
  }

  /**
   * Unlocks every step (reverse order) and closes, in one native call; with
   * `keepOpen` the descriptor may stay open for the next lock of its path.
   */
  releaseFast(h: LockHandle, _keepOpen?: boolean): void {
    try {
      this.unlock(h);
    } finally {
      binding.close(h.fd);
    }
  }

  /** One non-blocking try of one step. */
  abstract tryStep(h: LockHandle, step: Step, type: number): boolean;
  /** Releases everything held on `h` (explicitly, before the descriptor is closed). */
  abstract unlock(h: LockHandle): void;
  /** Exclusive → shared, without letting anyone in between where the primitive allows. */
  abstract downgrade(h: LockHandle): void;
  /** Shared → exclusive on one step without waiting; false when others hold it. */
  protected abstract tryConvert(h: LockHandle, step: Step): { granted: boolean; dropped: boolean };
  /** Back to shared after a failed upgrade; false when the shared lock is gone. */
  protected abstract restoreShared(h: LockHandle): boolean;

  /** Converts in place without ever releasing (OFD, POSIX), so it is tried first in upgrades. */
  protected convertsInPlace(step: Step): boolean {
    return step.primitive === C.OFD || step.primitive === C.POSIX;
  }

  /** Waits for one step (kernel wait or polling, as this strategy waits). */
  async wait(h: LockHandle, step: Step, type: number, ctx: WaitContext): Promise<void> {
    if (this.poll) await pollWait(() => this.tryStep(h, step, type), ctx);
    else {
      const t = typeFor(step, type);
      await kernelWait({ primitive: step.primitive, fd: h.fd, type: t, start: step.start, len: step.len }, ctx);
    }
  }

  /**
   * Waits for step `index` of a lock being taken on `path`. Where the waiter
   * thread can, it also takes the later steps and checks the file's identity
   * before waking JavaScript, and this resolves with what it found;
   * undefined means the caller takes the rest itself.
   */
  async waitStep(
    h: LockHandle,
    index: number,
    type: number,
    ctx: WaitContext,
    _path: string,
  ): Promise<WaitOutcome | undefined> {
    await this.wait(h, this.steps[index]!, type, ctx);
    return undefined;
  }

  /** Synchronous twin of wait(). */
  waitSync(h: LockHandle, step: Step, type: number, ctx: WaitContext): void {
    if (this.poll) pollWaitSync(() => this.tryStep(h, step, type), ctx);
    else {
      const t = typeFor(step, type);
      kernelWaitSync({ primitive: step.primitive, fd: h.fd, type: t, start: step.start, len: step.len }, ctx);
    }
  }

  /**
   * Shared → exclusive, waiting (`ctx`) for other shared holders to leave, or
   * failing at once with `onContended()` when `mayWait` is false. On failure
   * the shared lock is restored where the primitive allows; where it is gone
   * the error gets `lost: true`.
   */
  async upgrade(h: LockHandle, ctx: WaitContext, mayWait: boolean, onContended: () => Error): Promise<UpgradeOutcome> {
    let atomic = true;
    // In-place conversions first: once they are exclusive no OFD/POSIX locker
    // can get in, whatever happens to the parts that cannot convert.
    const order = [...this.steps].sort((x, y) => Number(this.convertsInPlace(y)) - Number(this.convertsInPlace(x)));
    try {
      for (const step of order) {
        const r = this.tryConvert(h, step);
        if (r.dropped) atomic = false;
        if (r.granted) continue;
        if (!mayWait) throw onContended();
        await this.wait(h, step, C.EXCLUSIVE, ctx);
      }
    } catch (err) {
      if ((err as WaitFailure).stuck) {
        h.fd = -1; // the descriptor belongs to a waiter thread that could not be interrupted
        (err as LostLock).lost = true;
      } else if (!this.restoreShared(h)) {
        (err as LostLock).lost = true;
      }
      throw err;
    }
    return { atomic };
  }
}

/** flock, OFD and their Linux pair: one kernel call per step on one descriptor. */
class KernelStrategy extends LockStrategy {
  // The steps as the native fast path takes them: a plan number registered
  // once (whole-file strategies, cached by strategyFor), else count + triples.
  readonly #a: number[];
  readonly #plan: number;
  // For each step, the steps after it (count + triples) for the waiter thread to take.
  readonly #rest: number[][];
  // Some step takes a fixed type: the native paths (one type for every step) cannot take it.
  readonly #mixed: boolean;

  constructor(resolved: ResolvedPrimitive, steps: readonly Step[], poll: boolean, registerPlan = false) {
    super(resolved, steps, poll);
    const triples = (from: number) => steps.slice(from).flatMap((x) => [x.primitive, x.start, x.len]);
    this.#a = [steps.length, ...triples(0)];
    this.#plan = registerPlan ? binding.plan(...(this.#a as [number, ...number[]])) : 0;
    this.#rest = steps.map((_, i) => [steps.length - i - 1, ...triples(i + 1)]);
    this.#mixed = steps.some((x) => x.type !== undefined);
  }

  override waitStep(
    h: LockHandle,
    index: number,
    type: number,
    ctx: WaitContext,
    path: string,
  ): Promise<WaitOutcome | undefined> {
    if (this.poll || this.#mixed) return super.waitStep(h, index, type, ctx, path);
    const step = this.steps[index]!;
    return kernelWait(
      {
        primitive: step.primitive,
        fd: h.fd,
        type,
        start: step.start,
        len: step.len,
        then: { path, reusable: h.writable, steps: this.#rest[index]! },
      },
      ctx,
    );
  }

  override get fast(): boolean {
    return !this.#mixed;
  }

  override acquireFast(path: string, create: boolean, type: number, keepOpen = false): FastResult {
    const flags = C.OPEN_WRITE | (create ? C.OPEN_CREATE : 0) | (keepOpen && KEEP_OPEN ? C.ACQUIRE_KEEP : 0);
    const identity =
      this.#plan !== 0
        ? binding.acquire(path, flags, type, this.#plan)
        : binding.acquire(path, flags, type, ...(this.#a as [number, ...number[]]));
    const out = binding.out;
    return { fd: out[0]!, identity, contended: out[1]! };
  }

  override releaseFast(h: LockHandle, keepOpen?: boolean): void {
    const keep = KEEP_OPEN && keepOpen === true;
    if (this.#plan !== 0) binding.release(h.fd, keep, this.#plan);
    else binding.release(h.fd, keep, ...(this.#a as [number, ...number[]]));
    if (keep) armSweep();
  }

  tryStep(h: LockHandle, step: Step, type: number): boolean {
    return binding.lock(step.primitive, h.fd, typeFor(step, type), step.start, step.len, false);
  }

  unlock(h: LockHandle): void {
    // In reverse order, explicitly: a child between fork and exec still
    // references the open file description, and only an explicit unlock
    // releases the lock for everyone at once.
    for (let i = this.steps.length - 1; i >= 0; i--) {
      const s = this.steps[i] as Step;
      binding.lock(s.primitive, h.fd, C.UNLOCK, s.start, s.len, false);
    }
  }

  downgrade(h: LockHandle): void {
    // OFD converts atomically; Linux converts flock under one kernel lock.
    for (const s of this.steps) binding.lock(s.primitive, h.fd, C.SHARED, s.start, s.len, false);
  }

  protected tryConvert(h: LockHandle, step: Step): { granted: boolean; dropped: boolean } {
    const granted = binding.lock(step.primitive, h.fd, C.EXCLUSIVE, step.start, step.len, false);
    // A refused flock upgrade has dropped the shared lock already.
    return { granted, dropped: !granted && !this.convertsInPlace(step) };
  }

  protected restoreShared(h: LockHandle): boolean {
    // A no-op where still shared, an atomic downgrade where a step became
    // exclusive (or was granted as the wait was cancelled), a fresh try where
    // flock dropped it.
    try {
      for (const s of this.steps) {
        if (!binding.lock(s.primitive, h.fd, C.SHARED, s.start, s.len, false)) return false;
      }
      return true;
    } catch {
      return false;
    }
  }
}

/** Windows: LockFileEx locks do not convert; the same handle may hold both modes at once. */
class WindowsStrategy extends KernelStrategy {
  override downgrade(h: LockHandle): void {
    // The shared lock may overlap our exclusive one on the same handle; the
    // first unlock then removes the exclusive one, leaving the shared one.
    for (const s of this.steps) {
      binding.lock(s.primitive, h.fd, C.SHARED, s.start, s.len, false);
      binding.lock(s.primitive, h.fd, C.UNLOCK, s.start, s.len, false);
    }
  }

  protected override tryConvert(h: LockHandle, step: Step): { granted: boolean; dropped: boolean } {
    binding.lock(step.primitive, h.fd, C.UNLOCK, step.start, step.len, false);
    return { granted: binding.lock(step.primitive, h.fd, C.EXCLUSIVE, step.start, step.len, false), dropped: true };
  }
  // restoreShared: KernelStrategy's (re-request the shared lock) is right here too.
}

/** Classic POSIX locks behind the native process-wide registry (see docs/platforms.md, "Choosing a primitive"). */
class RegistryStrategy extends LockStrategy {
  tryStep(h: LockHandle, step: Step, type: number): boolean {
    const id = binding.registryLock(h.fd, type, step.start, step.len);
    if (id === null) return false;
    h.registryId = id;
    return true;
  }

  unlock(h: LockHandle): void {
    if (h.registryId === null) return;
    const id = h.registryId;
    h.registryId = null;
    binding.registryUnlock(id);
  }

  downgrade(h: LockHandle): void {
    binding.registryChange(h.registryId as number, C.SHARED);
  }

  protected tryConvert(h: LockHandle): { granted: boolean; dropped: boolean } {
    return { granted: binding.registryChange(h.registryId as number, C.EXCLUSIVE), dropped: false };
  }

  override async wait(h: LockHandle, step: Step, type: number, ctx: WaitContext): Promise<void> {
    if (h.registryId !== null) {
      // an upgrade: wait for the registry to let our holder become exclusive
      await pollWait(() => binding.registryChange(h.registryId as number, C.EXCLUSIVE), ctx);
      return;
    }
    await pollWait(() => this.tryStep(h, step, type), ctx);
  }

  protected restoreShared(h: LockHandle): boolean {
    try {
      binding.registryChange(h.registryId as number, C.SHARED);
      return true;
    } catch {
      return false;
    }
  }
}

function build(resolved: ResolvedPrimitive, range: LockRange | undefined): LockStrategy {
  const start = range ? range.offset : 0;
  const len = range ? range.length : 0;
  const kernelWaits = C.NATIVE_WAIT;
  const plan = !range; // built once per thread (strategyFor caches it)
  switch (resolved) {
    case 'flock+ofd':
      return new KernelStrategy(
        resolved,
        [
          { primitive: C.FLOCK, start: 0, len: 0 },
          { primitive: C.OFD, start: 0, len: 0 },
        ],
        !kernelWaits,
        plan,
      );
    case 'flock+ofd-readonly':
      return new KernelStrategy(
        resolved,
        [
          { primitive: C.FLOCK, start: 0, len: 0 },
          { primitive: C.OFD, start: 0, len: 0, type: C.SHARED },
        ],
        !kernelWaits,
      );
    case 'flock':
      return new KernelStrategy(resolved, [{ primitive: C.FLOCK, start: 0, len: 0 }], !kernelWaits, plan);
    case 'ofd':
      return new KernelStrategy(resolved, [{ primitive: C.OFD, start, len }], !kernelWaits, plan);
    case 'posix':
      return new RegistryStrategy(resolved, [{ primitive: C.POSIX, start, len }], true);
    case 'windows':
      // Windows waits poll: Wine (where it is tested) cannot complete or cancel an overlapped wait.
      return new WindowsStrategy(
        resolved,
        [{ primitive: C.WINDOWS, start: range ? start : WINDOWS_LOCK_OFFSET, len: range ? len : 1 }],
        true,
        plan,
      );
  }
}

/**
 * Where there is no kernel lock table to read (inspect() off Linux): which
 * mode someone holds the file `fd` is open on, found by non-blocking tries of
 * each primitive on this fresh descriptor, released at once; null when free.
 */
export function probeHeldMode(fd: number): LockMode | null {
  if (primitives().available.windows) {
    // An exclusive try first: a shared one would coexist with shared holders
    // and report them as nothing.
    const s = WINDOWS_LOCK_OFFSET;
    if (binding.lock(C.WINDOWS, fd, C.EXCLUSIVE, s, 1, false)) {
      binding.lock(C.WINDOWS, fd, C.UNLOCK, s, 1, false);
      return null;
    }
    if (binding.lock(C.WINDOWS, fd, C.SHARED, s, 1, false)) {
      binding.lock(C.WINDOWS, fd, C.UNLOCK, s, 1, false);
      return 'shared';
    }
    return 'exclusive';
  }
  let mode: LockMode | null = null;
  for (const prim of [C.OFD, C.POSIX]) {
    try {
      const q = binding.query(prim, fd, C.EXCLUSIVE, 0, 0);
      if (q.type === C.EXCLUSIVE) return 'exclusive';
      if (q.type === C.SHARED) mode = 'shared';
      break; // OFD and POSIX locks see each other: one query answers both
    } catch {
      // primitive unavailable here; try the next
    }
  }
  try {
    if (binding.lock(C.FLOCK, fd, C.EXCLUSIVE, 0, 0, false)) {
      binding.lock(C.FLOCK, fd, C.UNLOCK, 0, 0, false);
    } else if (binding.lock(C.FLOCK, fd, C.SHARED, 0, 0, false)) {
      binding.lock(C.FLOCK, fd, C.UNLOCK, 0, 0, false);
      mode ??= 'shared';
    } else {
      return 'exclusive';
    }
  } catch {
    // no flock here
  }
  return mode;
}

/**
 * Released descriptors are kept open (unlocked) for the next lock of the same
 * path (option `keepOpen`, default true), so a lock taken again and again (a
 * build tool, a CLI loop, a queue) skips open() and close(): at most 16 per
 * thread, each closed after KEEP_OPEN_IDLE_MS unused; a file deleted or
 * replaced meanwhile is noticed by the identity check and its descriptor
 * closed. Not on Windows, where an open handle can get in the way of
 * removing the directory.
 */
const KEEP_OPEN = platform().posixFiles;
export const KEEP_OPEN_IDLE_MS = 500;
let sweepArmed = false;

function armSweep(): void {
  if (sweepArmed) return;
  sweepArmed = true;
  setTimeout(closeIdleKept, KEEP_OPEN_IDLE_MS).unref?.();
}

function closeIdleKept(): void {
  sweepArmed = false;
  if (binding.sweepCache(KEEP_OPEN_IDLE_MS) > 0) armSweep();
}

/** Closes every descriptor this thread keeps open for reuse (see the `keepOpen` option). */
export function closeIdleDescriptors(): void {
  binding.sweepCache(0);
}

const wholeFile = new Map<string, LockStrategy>();

/**
 * The strategy for a requested primitive (and range) on this platform.
 * Throws ENOTSUP for a primitive this platform lacks.
 */
export function strategyFor(
  primitive: 'auto' | PrimitiveName,
  range: LockRange | undefined,
  path?: string,
): LockStrategy {
  if (!range) {
    const hit = wholeFile.get(primitive);
    if (hit) return hit;
  }
  const report = primitives();
  let resolved: ResolvedPrimitive;
  if (primitive === 'auto') {
    resolved = range ? report.autoRange : report.auto;
  } else {
    if (!report.available[primitive]) {
      throw notSupportedError(
        path,
        `the '${primitive}' primitive is not available on ${report.platform} ${report.release}`,
        `Use primitive 'auto' (here: '${report.auto}').`,
      );
    }
    if (primitive === 'flock' && range) {
      throw invalidArgValue('options.range', range, "cannot be used with primitive 'flock' (flock locks whole files)");
    }
    resolved = primitive;
  }
  const s = build(resolved, range);
  if (!range) wholeFile.set(primitive, s);
  return s;
}

/**
 * The strategy for an exclusive whole-file lock on a file that could only be
 * opened read-only (a file you may read but not write, a directory): flock
 * takes exclusive locks on any descriptor; OFD, POSIX and Windows exclusive
 * locks need write access. 'auto' never excludes less than it says without
 * saying so: where it means flock alone anyway, flock; where it means OFD too,
 * flock exclusive plus a shared OFD lock ('flock+ofd-readonly', reported in
 * FileLock.primitive): flock lockers are kept out, OFD and POSIX lockers can
 * no longer write-lock the file but can still read-lock it. 'flock' asked for
 * by name is flock. Anything else is EBADF, naming the choices.
 */
let readOnlyPair: LockStrategy | undefined;

export function readOnlyExclusive(
  s: LockStrategy,
  requested: 'auto' | PrimitiveName,
  path: string,
  range: LockRange | undefined,
): LockStrategy {
  if (s.steps.every((x) => x.primitive === C.FLOCK)) return s;
  const report = primitives();
  if (!range && requested === 'auto') {
    if (report.auto === 'flock') return strategyFor('flock', undefined, path);
    if (report.available.flock && report.available.ofd)
      return (readOnlyPair ??= build('flock+ofd-readonly', undefined));
  }
  throw readOnlyError(path, `'${s.resolved}'`);
}
