/**
 * Waiting for a contended lock without blocking the event loop or the libuv
 * threadpool: either a blocking system call on a dedicated native thread that
 * a timeout or an AbortSignal interrupts, or (where a kernel wait cannot be
 * interrupted, or for the registry-backed POSIX primitive) a non-blocking try
 * repeated with capped exponential backoff.
 */
import { platform } from './platform.js';
import { performance } from 'perf_hooks';
import { binding, C, CancelOutcome } from './binding.js';
import { abortError, timeoutError, type HolderRecordLike } from './errors.js';
import { pollDelays } from './retry.js';
import { checkSyncWait, CHECK_MS, watchWait } from './deadlock.js';

export interface KernelWait {
  primitive: number;
  fd: number;
  type: number;
  start: number;
  len: number;
  /** Finish on the waiter thread: the path to verify and the steps after this one (count + triples). */
  then?: { path: string; reusable: boolean; steps: number[] };
}

/**
 * What the waiter thread did after the grant when asked to finish the lock
 * (KernelWait.then): `state` -1 means every step is taken and the file is
 * still the one at the path (`identity`); k means the k-th of the `then`
 * steps is held by someone else; -2 means the file was replaced meanwhile.
 */
export interface WaitOutcome {
  state: number;
  identity: string | undefined;
  /** When the kernel granted the wait, on the native clock (FileLock.startClock); 0 unknown. */
  grantMs?: number;
}

export interface WaitContext {
  path: string;
  /** Absolute deadline (performance.now() scale) or Infinity. */
  deadline: number;
  /** The timeout as given, for messages. */
  timeout: number;
  signal: AbortSignal | undefined;
  /** Who holds it, for timeout messages. */
  holder: () => HolderRecordLike | null;
  /** Look for a cycle of waits while waiting (deadlock.ts): the identity of the file waited for. */
  deadlock?: string;
  /**
   * Called in the wait's own callback, before its promise settles, with what
   * the waiter thread found after a grant (a WaitOutcome's fields, with no
   * object made for them; see acquire.ts): the caller may
   * finish the lock there, in the one turn of the event loop that the grant
   * wakes, instead of in the microtask turns after it. True when it did: the
   * wait's promise is then never settled, and whoever awaited it is dropped
   * with it (nothing but the caller's own lock loop awaits it).
   */
  onGrant?: (state: number, identity: string | undefined, grantMs: number | undefined) => boolean;
}

/**
 * A failed wait. `stuck`: the descriptor now belongs to the waiter thread. A
 * wait granted at the instant it was cancelled needs no flag: the caller's
 * clean-up unlocks and closes the descriptor, which releases it.
 */
export interface WaitFailure extends Error {
  code: string;
  /** The system call could not be interrupted: the fd now belongs to the waiter thread. */
  stuck?: boolean;
}

/**
 * How long a cancel (timeout, abort) keeps interrupting a kernel wait before
 * it gives up and leaves the descriptor to the waiter thread ('stuck': an
 * uninterruptible FUSE or NFS call). The one budget for asynchronous and
 * synchronous waits; environment teardown uses a shorter one in native code
 * (kTeardownCancelBudgetMs in native/waits.cc), since a worker must go away.
 */
export const CANCEL_BUDGET_MS = 1000;

/** The longest delay setTimeout honours (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export function remaining(deadline: number): number {
  return deadline === Infinity ? Infinity : Math.max(0, deadline - performance.now());
}

function failure(ctx: WaitContext, why: 'timeout' | 'abort'): WaitFailure {
  return (
    why === 'abort'
      ? abortError(ctx.path, ctx.signal?.reason, 'while')
      : timeoutError(ctx.path, ctx.timeout, ctx.holder())
  ) as WaitFailure;
}

/**
 * Blocks in the kernel on a native thread until granted, timed out or
 * aborted. With `req.then`, resolves with what the thread did after the grant.
 */
export function kernelWait(req: KernelWait, ctx: WaitContext): Promise<WaitOutcome | undefined> {
  return new Promise<WaitOutcome | undefined>((resolve, reject) => {
    if (ctx.signal?.aborted) return reject(failure(ctx, 'abort'));
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let unwatch: (() => void) | undefined;
    const cleanup = () => {
      settled = true;
      if (timer) clearTimeout(timer);
      unwatch?.();
      ctx.signal?.removeEventListener('abort', onAbort);
    };
    const done = (err: Error | null, state?: number, identity?: string, grantMs?: number) => {
      if (settled) return;
      cleanup();
      if (err) return reject(err);
      if (state === undefined) return resolve(undefined);
      // A lock finished in onGrant is its caller's: this promise is left unsettled (see WaitContext.onGrant)
      if (ctx.onGrant?.(state, identity, grantMs)) return;
      resolve({ state, identity, grantMs });
    };
    const handle = req.then
      ? binding.waitStart(
          req.primitive,
          req.fd,
          req.type,
          req.start,
          req.len,
          done,
          req.then.path,
          req.then.reusable,
          ...req.then.steps,
        )
      : binding.waitStart(req.primitive, req.fd, req.type, req.start, req.len, done);
    const cancel = (why: 'timeout' | 'abort' | Error) => {
      if (settled) return;
      const outcome = binding.waitCancel(handle, CANCEL_BUDGET_MS);
      cleanup();
      const err = (why instanceof Error ? why : failure(ctx, why)) as WaitFailure;
      if (outcome === CancelOutcome.Stuck) err.stuck = true;
      reject(err);
    };
    const onAbort = () => cancel('abort');
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    if (ctx.deadlock !== undefined) unwatch = watchWait(ctx.deadlock, ctx.path, cancel);
    // Timers fire at once beyond 2^31-1 ms: arm in steps until the deadline.
    const arm = () => {
      const ms = remaining(ctx.deadline);
      if (ms === Infinity) return;
      if (ms <= 0) return cancel('timeout');
      timer = setTimeout(arm, Math.min(ms, MAX_TIMER_MS));
    };
    arm();
  });
}

/** Calls `attempt` until it returns true, sleeping with capped backoff in between. */
export async function pollWait(attempt: () => boolean, ctx: WaitContext): Promise<void> {
  const delays = pollDelays();
  for (;;) {
    if (ctx.signal?.aborted) throw failure(ctx, 'abort');
    const left = remaining(ctx.deadline);
    if (left <= 0) throw failure(ctx, 'timeout');
    const delay = Math.min(delays.next().value as number, left);
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(failure(ctx, 'abort'));
      };
      const timer = setTimeout(() => {
        ctx.signal?.removeEventListener('abort', onAbort);
        resolve();
      }, delay);
      ctx.signal?.addEventListener('abort', onAbort, { once: true });
    });
    if (attempt()) return;
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** Synchronous twin of pollWait for lockSync. */
export function pollWaitSync(attempt: () => boolean, ctx: WaitContext): void {
  const delays = pollDelays();
  for (;;) {
    const left = remaining(ctx.deadline);
    if (left <= 0) throw failure(ctx, 'timeout');
    sleepSync(Math.min(delays.next().value as number, left));
    if (attempt()) return;
  }
}

/**
 * Synchronous kernel wait: blocks this thread, bounded by the deadline. The
 * kernel wait runs on a pool thread, and this thread waits for it in slices;
 * looking for cycles (Linux), it looks between slices while the kernel wait
 * goes on, so the request never leaves the lock table, where the other
 * members of a cycle look for it.
 */
export function kernelWaitSync(req: KernelWait, ctx: WaitContext): void {
  const watch = ctx.deadlock !== undefined && platform().lockTable ? { since: null, misses: 0 } : null;
  if (!watch && remaining(ctx.deadline) === Infinity) {
    binding.lock(req.primitive, req.fd, req.type, req.start, req.len, true);
    return;
  }
  const h = binding.syncWaitStart(req.primitive, req.fd, req.type, req.start, req.len);
  let running = true;
  // Ends the wait early; true when the lock was granted just before.
  const cancel = (why: 'timeout' | null): boolean => {
    running = false;
    const outcome = binding.syncWaitCancel(h, CANCEL_BUDGET_MS);
    if (outcome === CancelOutcome.Granted) return true;
    if (outcome === CancelOutcome.Stuck) {
      const err = failure(ctx, why ?? 'timeout');
      err.stuck = true;
      throw err;
    }
    return false;
  };
  try {
    for (;;) {
      if (watch) {
        const err = checkSyncWait(ctx.deadlock!, ctx.path, watch, req.primitive === C.FLOCK, req.type === C.EXCLUSIVE);
        // granted meanwhile: no cycle is left to break
        if (err && cancel(null)) return;
        if (err) throw err;
      }
      const left = remaining(ctx.deadline);
      if (left <= 0) {
        if (cancel('timeout')) return;
        throw failure(ctx, 'timeout');
      }
      // The native wait takes whole milliseconds; wait in steps a native clock
      // cannot overflow (a timeout of 1e13 ms or Number.MAX_VALUE must not end early).
      const slice = Math.min(left, watch ? CHECK_MS : MAX_TIMER_MS);
      const r = binding.syncWaitFor(h, Math.ceil(slice));
      if (r === 1) {
        running = false;
        return;
      }
    }
  } finally {
    // anything thrown on the way (a wait that failed has ended already: -1)
    if (running) binding.syncWaitCancel(h, CANCEL_BUDGET_MS);
  }
}
