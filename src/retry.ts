/**
 * Backoff schedules: polling waits, and retrying rename/remove on Windows,
 * where antivirus scanners and indexers briefly hold files open
 * (EPERM/EACCES/EBUSY), as documented in docs/sessions.md.
 */

import { performance } from 'perf_hooks';
import { errorCode } from './errors.js';

/** 1, 2, 4, 8, 16 ms, then 25 ms forever: polling waits. */
export function* pollDelays(first = 1, cap = 25): Generator<number, never> {
  let d = first;
  for (;;) {
    yield d;
    d = Math.min(cap, d * 2);
  }
}

export interface TransientRetryOptions {
  /** Total time budget in ms (default 2000). */
  budgetMs?: number;
  /** First delay in ms (default 10), growing ×2 up to `maxDelayMs` (default 200). */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** Error codes worth retrying (default EPERM, EACCES, EBUSY). */
  codes?: readonly string[];
}

export const TRANSIENT_FS_CODES = Object.freeze(['EPERM', 'EACCES', 'EBUSY']);

/**
 * Runs `op` until it succeeds, it fails with a code not in `codes`, or the
 * budget is spent (then the last error is thrown).
 */
export async function retryTransient<T>(op: () => Promise<T>, options: TransientRetryOptions = {}): Promise<T> {
  const budget = options.budgetMs ?? 2000;
  const codes = options.codes ?? TRANSIENT_FS_CODES;
  const started = performance.now();
  let delay = options.firstDelayMs ?? 10;
  const maxDelay = options.maxDelayMs ?? 200;
  for (;;) {
    try {
      return await op();
    } catch (err) {
      const code = errorCode(err);
      const elapsed = performance.now() - started;
      if (!code || !codes.includes(code) || elapsed + delay > budget) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(maxDelay, delay * 2);
    }
  }
}
