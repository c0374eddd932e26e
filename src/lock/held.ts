/**
 * What this thread holds (identity -> count), so that a wait on one of those
 * files can say "held by this process" and a synchronous wait that could
 * never end fails at once (EDEADLK); and the context every wait is given.
 */
import { performance } from 'perf_hooks';
import { binding } from '../binding.js';
import type { HolderRecordLike } from '../errors.js';
import { currentHolder } from '../holder.js';
import type { WaitContext } from '../wait.js';

/**
 * Files this thread holds locks on (identity -> count), so that a wait on
 * one of them can say "held by this process" and a synchronous wait that
 * could never end fails at once (EDEADLK) instead of hanging.
 */
const heldHere = new Map<string, number>();

let heldCount = 0; // entries of heldHere above 0

/**
 * Locks counted held but not yet in heldHere: a grant's callback runs in an
 * event loop just woken, where a lookup in a cold map costs more than the
 * rest of the hand-off; it only notes the identity here, and whoever reads or
 * changes heldHere next brings it up to date first.
 */
const pendingHeld: string[] = [];

/** Counts `identity` held from now (see pendingHeld). */
export function noteHeldSoon(identity: string): void {
  pendingHeld.push(identity);
}

/** Brings heldHere up to date with the locks counted held by noteHeldSoon. */
function settleHeld(): void {
  while (pendingHeld.length > 0) count(pendingHeld.pop()!, 1);
}

export function noteHeld(identity: string, delta: 1 | -1): void {
  if (pendingHeld.length > 0) settleHeld();
  count(identity, delta);
}

function count(identity: string, delta: 1 | -1): void {
  const before = heldHere.get(identity) ?? 0;
  const n = before + delta;
  if (before === 0 && n > 0) heldCount++;
  else if (before > 0 && n === 0) heldCount--;
  // A count that falls to 0 stays while the table is small (a file locked
  // again and again would otherwise cost it a delete and a rehash each time).
  if (n === 0 && heldHere.size > 64) heldHere.delete(identity);
  else heldHere.set(identity, n);
}

export function heldByThisThread(fd: number): boolean {
  if (pendingHeld.length > 0) settleHeld();
  if (heldCount === 0) return false;
  try {
    return (heldHere.get(binding.identity(fd)) ?? 0) > 0;
  } catch {
    return false;
  }
}

/** Who holds the lock that the open file `fd` (of `path`) is contending for. */
export function holderOf(fd: number, path: string): HolderRecordLike | null {
  if (heldByThisThread(fd)) return { pid: process.pid, self: true };
  return currentHolder(fd, path, undefined, true);
}

/** The context of a wait on `path`: its deadline, signal, who holds it, and (`deadlock`) the file to watch for cycles. */
export function waitContext(
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
