/**
 * Tracing through node:diagnostics_channel (documented in docs/api.md,
 * "Tracing"). With no subscriber each call checks five booleans and
 * allocates nothing.
 *
 * - `fslock:lock`, a TracingChannel around every acquisition (lock, tryLock,
 *   lockSync, withLock's lock): start, end, asyncStart, asyncEnd, error. Its
 *   context: `{ path, mode, primitive, waited, outcome, lock }`, where
 *   `primitive` is what was asked for until the lock is held, then what it
 *   uses; `waited` whether the call had to wait; `outcome` one of
 *   'acquired', 'busy' (tryLock: held elsewhere), 'locked' (timeout 0),
 *   'timeout', 'aborted', 'deadlock', 'error'.
 * - `fslock:release`: `{ path, mode, primitive, heldMs }` when a FileLock is released.
 * - `fslock:session:open`, `fslock:session:finalize`, `fslock:gc`: see the session protocol.
 */
import { channel, tracingChannel, type TracingChannel } from 'diagnostics_channel';
import { errorCode } from './errors.js';

export type LockOutcome = 'acquired' | 'busy' | 'locked' | 'timeout' | 'aborted' | 'deadlock' | 'error';

export interface LockTraceContext {
  path: string;
  mode: 'exclusive' | 'shared';
  primitive: string;
  waited: boolean;
  outcome?: LockOutcome;
  /** The FileLock, once acquired. */
  lock?: unknown;
  error?: unknown;
  result?: unknown;
}

export const lockChannel: TracingChannel<LockTraceContext, LockTraceContext> = tracingChannel('fslock:lock');
export const releaseChannel = channel('fslock:release');
export const sessionOpenChannel = channel('fslock:session:open');
export const sessionFinalizeChannel = channel('fslock:session:finalize');
export const gcChannel = channel('fslock:gc');

/** Whether anyone listens to `fslock:lock` (TracingChannel.hasSubscribers is Node 20.13+). */
export function tracingLocks(): boolean {
  const c = lockChannel;
  return (
    c.start.hasSubscribers ||
    c.end.hasSubscribers ||
    c.asyncStart.hasSubscribers ||
    c.asyncEnd.hasSubscribers ||
    c.error.hasSubscribers
  );
}

/** The outcome a failed acquisition reports. */
export function outcomeOf(err: unknown): LockOutcome {
  switch (errorCode(err)) {
    case 'ETIMEDOUT':
      return 'timeout';
    case 'ABORT_ERR':
      return 'aborted';
    case 'EDEADLK':
      return 'deadlock';
    case 'ELOCKED':
      return 'locked';
    default:
      return 'error';
  }
}
