/**
 * Acquisition: an attempt, then (when contended) a wait in line and in the
 * kernel, step by step, until the lock is held, the wait times out or is
 * aborted, or a cycle of waits is found (see deadlock.ts).
 */
import { performance } from 'perf_hooks';
import { binding } from '../binding.js';
import { abortError, deadlockError } from '../errors.js';
import type { ParsedLockOptions } from '../options.js';
import { strategyFor, typeOf, type LockStrategy } from '../strategy.js';
import type { LockTraceContext } from '../trace.js';
import type { WaitOutcome } from '../wait.js';
import {
  closeAttempt,
  continueAfterGrant,
  endFailedWait,
  failHeldElsewhere,
  openAndTry,
  type Contended,
} from './attempt.js';
import { FileLock } from './file-lock.js';
import { heldByThisThread, noteHeldSoon, waitContext } from './held.js';
import { dropLine, leaveIdle, lineKey, lines, openLine, serveLine, takeUpLine, waitInLine, type Line } from './line.js';

/**
 * Takes the lock, waiting in this thread's line and in the kernel while it is
 * held elsewhere. Not an async function: the promise of a wait in the kernel
 * is the caller's own, resolved in the wait's callback (see waitInKernel).
 */
export function acquire(path: string, options: ParsedLockOptions, trace?: LockTraceContext): Promise<FileLock | null> {
  try {
    if (options.signal?.aborted) throw abortError(path, options.signal.reason, 'before');
    const strategy = strategyFor(options.primitive, options.range, path);
    const attempt = openAndTry(path, options, strategy);
    if (attempt instanceof FileLock) return Promise.resolve(attempt);
    if (options.timeout === 0) failHeldElsewhere(path, attempt);
    if (trace) trace.waited = true;
    const deadline = options.timeout === Infinity ? Infinity : performance.now() + options.timeout;
    let identity: string;
    try {
      identity = attempt.identity ?? binding.identity(attempt.h.fd);
    } catch (err) {
      closeAttempt(attempt);
      throw err;
    }
    const place = takePlaceInLine(path, options, strategy, attempt, identity, deadline);
    if (!(place instanceof Promise)) {
      return waitInKernel(path, options, strategy, place.line, place.contended, identity, deadline);
    }
    return place.then((p) =>
      p instanceof FileLock ? p : waitInKernel(path, options, strategy, p.line, p.contended, identity, deadline),
    );
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/** Where a wait goes on: the head of `line`, waiting in the kernel from `contended`. */
type Place = { line: Line; contended: Contended };

/**
 * This thread's line for the lock: behind someone of this thread who waits
 * already (without a descriptor or thread of our own), until served the lock
 * or made the one that waits in the kernel; or at its head at once.
 */
function takePlaceInLine(
  path: string,
  options: ParsedLockOptions,
  strategy: LockStrategy,
  attempt: Contended,
  identity: string,
  deadline: number,
): Place | Promise<FileLock | Place> {
  const key = lineKey(identity, strategy, options.range);
  let line = lines.get(key);
  if (line && (line.active || line.tickets.length > 0)) {
    closeAttempt(attempt);
    const behind = line;
    return waitInLine(behind, path, options, strategy, deadline).then(
      (got) => (got instanceof FileLock ? got : { line: behind, contended: got }), // made the kernel waiter (serveLine set line.active)
    );
  }
  if (line) takeUpLine(line);
  else line = openLine(key);
  return { line, contended: attempt };
}

/**
 * Waits in the kernel, step by step, as the head of `line`, until the lock is
 * held (or the wait fails). A grant of the whole lock (the waiter thread took
 * every step and checked the file) is finished in the wait's callback, which
 * resolves the promise returned here at once: the caller resumes in the first
 * microtask turn after the event loop woke, with nothing of fslock's left to
 * run cold in between.
 */
function waitInKernel(
  path: string,
  options: ParsedLockOptions,
  strategy: LockStrategy,
  line: Line,
  first: Contended,
  identity: string,
  deadline: number,
): Promise<FileLock | null> {
  let contended = first;
  // The FileLock a hand-off ends with, built before each wait (not for
  // records, written once held): on a grant of the whole lock nothing is left
  // but to count it held.
  let ready: FileLock | null = null;
  let resolveNow!: (l: FileLock) => void;
  const ctx = waitContext(
    path,
    options.timeout,
    options.signal,
    () => contended.h.fd,
    deadline,
    options.deadlock ? identity : undefined,
  );
  ctx.onGrant = (state, found, grantMs) => {
    if (ready === null || state !== -1 || found !== identity) return false;
    // Only what the caller's code may see now: the count of locks held is
    // brought up to date on its next use, and a line nobody waits in stays,
    // idle (see leaveIdle).
    noteHeldSoon(identity);
    ready.startClock(grantMs);
    if (line.tickets.length === 0) leaveIdle(line);
    else leaveLine(line, options); // the shared ones behind come in
    resolveNow(ready); // the caller resumes once this callback has returned
    return true; // and the loop below is left where it waits
  };
  const loop = async (): Promise<FileLock | null> => {
    try {
      for (;;) {
        let outcome: WaitOutcome | undefined;
        ready = options.record ? null : new FileLock(path, contended.h, contended.s, options, identity, null, true);
        try {
          outcome = await contended.s.waitStep(contended.h, contended.step, typeOf(options.mode), ctx, path);
        } catch (err) {
          endFailedWait(contended, err);
        }
        if (outcome?.state === -2 && options.untilReleased) {
          // Deleted (or replaced) while held, then let go: the release waited for.
          closeAttempt(contended, true);
          line.active = false;
          serveLine(line);
          return null;
        }
        const next = continueAfterGrant(path, options, strategy, contended, outcome);
        if (next instanceof FileLock) {
          leaveLine(line, options);
          return next;
        }
        contended = next;
      }
    } catch (err) {
      line.active = false;
      serveLine(line); // the next in line takes over the wait
      throw err;
    }
  };
  return new Promise<FileLock | null>((resolve, reject) => {
    resolveNow = resolve;
    loop().then(resolve, reject); // settled already when granted in the callback
  });
}

/**
 * The head of `line` holds the lock now: the rest of the line is served when
 * it is released; shared waiters right behind a shared lock come in now.
 */
function leaveLine(line: Line, options: ParsedLockOptions): void {
  line.active = false;
  if (options.mode === 'shared') serveLine(line);
  else if (line.tickets.length === 0) dropLine(line);
}

export function acquireSync(
  path: string,
  options: ParsedLockOptions,
  mayWait: boolean,
  trace?: LockTraceContext,
): FileLock | null {
  const strategy = strategyFor(options.primitive, options.range, path);
  let attempt = openAndTry(path, options, strategy);
  if (attempt instanceof FileLock) return attempt;
  if (!mayWait) {
    closeAttempt(attempt);
    return null;
  }
  if (options.timeout === 0) failHeldElsewhere(path, attempt);
  if (trace) trace.waited = true;
  let contended: Contended = attempt;
  let identity: string | undefined;
  if (options.deadlock) {
    try {
      identity = binding.identity(contended.h.fd);
    } catch (err) {
      closeAttempt(contended);
      throw err;
    }
  }
  const ctx = waitContext(path, options.timeout, undefined, () => contended.h.fd, undefined, identity);
  for (;;) {
    if (heldByThisThread(contended.h.fd)) {
      closeAttempt(contended);
      throw deadlockError(path);
    }
    try {
      contended.s.waitSync(contended.h, contended.s.steps[contended.step]!, typeOf(options.mode), ctx);
    } catch (err) {
      endFailedWait(contended, err);
    }
    attempt = continueAfterGrant(path, options, strategy, contended);
    if (attempt instanceof FileLock) return attempt;
    contended = attempt;
  }
}
