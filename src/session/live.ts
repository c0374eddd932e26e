/**
 * Live sessions of this process: a session open anywhere in the process (any
 * worker thread) is marked in a process-wide native table, and collectors in
 * the process never consider a marked session, whatever its age. This is the
 * second, independent guarantee against the seed bug (a process collecting its
 * own live session); the first is the lock itself.
 */
import { binding } from '../binding.js';

function liveSessionKey(crateDir: string, prefix: string): string {
  return `fslock-session:${crateDir}/${prefix}`;
}

/** Marks the session `prefix` of `crateDir` live (true) or no longer live (false). */
export function markLiveSession(crateDir: string, prefix: string, live: boolean): void {
  binding.mark(liveSessionKey(crateDir, prefix), live);
}

/** Whether any thread of this process has the session open. */
export function isLiveSession(crateDir: string, prefix: string): boolean {
  return binding.isMarked(liveSessionKey(crateDir, prefix));
}
