/**
 * Waiting in line. The asynchronous waits of this thread for one lock (one
 * file, primitive and range) stand in a line: only its first waits in the
 * kernel (one native thread however many wait), the others wait here, first
 * come first served. When a FileLock of this thread releases, the lock is
 * handed to the next in line at once, before anyone else in this thread can
 * take it; when the kernel waiter gives up (timeout, abort), the next one
 * takes its place.
 */
import { performance } from 'perf_hooks';
import { abortError, timeoutError, type HolderRecordLike } from '../errors.js';
import { inspectSync } from '../inspect.js';
import type { LockRange, ParsedLockOptions } from '../options.js';
import type { LockStrategy } from '../strategy.js';
import { openAndTry, type Contended } from './attempt.js';
import { FileLock, onRelease } from './file-lock.js';

interface Ticket {
  path: string;
  p: ParsedLockOptions;
  s: LockStrategy;
  /** Handed the lock, made the kernel waiter (a Contended), or failed. */
  settle(r: FileLock | Contended | Error): void;
}

export interface Line {
  key: string;
  /** Someone of this line waits in the kernel (or polls) now. */
  active: boolean;
  tickets: Ticket[];
  /** Left in `lines` with nobody in it (see leaveIdle). */
  idle?: boolean;
}

export const lines = new Map<string, Line>();

/**
 * Lines of `lines` with nobody in them: a lock granted in its wait's callback
 * leaves its line there (a delete from a cold map costs more in a just-woken
 * event loop than the rest of the hand-off), for the next wait of this thread
 * on the file to take up. A release looks for its line only when some line
 * is not idle; idle ones are forgotten, MAX_IDLE_LINES at a time, when a wait
 * opens a new line.
 */
let idleLines = 0;
const MAX_IDLE_LINES = 64;

/** The head of `line` holds the lock now and nobody waits behind it. */
export function leaveIdle(line: Line): void {
  line.active = false;
  if (!line.idle) {
    line.idle = true;
    idleLines++;
  }
}

/** A wait takes up `line` (at its head: it is active from now). */
export function takeUpLine(line: Line): void {
  if (line.idle) {
    line.idle = false;
    idleLines--;
  }
  line.active = true;
}

/** A new line for `key`, its first wait at its head; idle lines are forgotten first when there are many. */
export function openLine(key: string): Line {
  if (idleLines >= MAX_IDLE_LINES) {
    for (const [k, l] of lines) if (l.idle) lines.delete(k);
    idleLines = 0;
  }
  const line: Line = { key, active: true, tickets: [] };
  lines.set(key, line);
  return line;
}

/** Forgets `line`, which nobody waits in. */
export function dropLine(line: Line): void {
  if (line.idle) {
    line.idle = false;
    idleLines--;
  }
  if (lines.get(line.key) === line) lines.delete(line.key);
}

let queued = 0;
let keepAlive: NodeJS.Timeout | null = null;

export function lineKey(identity: string, s: LockStrategy, range: LockRange | null | undefined): string {
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
export function serveLine(line: Line): void {
  while (!line.active && line.tickets.length > 0) {
    const t = line.tickets.shift()!;
    let r: FileLock | Contended;
    try {
      r = openAndTry(t.path, t.p, t.s);
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
  if (!line.active && line.tickets.length === 0) dropLine(line);
}

/** After a lock of this thread was released or downgraded: serve its line, if anyone waits in it. */
function released(identity: string, s: LockStrategy, range: LockRange | null): void {
  const line = lines.get(lineKey(identity, s, range));
  if (line) serveLine(line);
}

export function waitInLine(
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
      if (!line.active && line.tickets.length === 0) dropLine(line);
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
export function queuedHolder(path: string): HolderRecordLike | null {
  try {
    return inspectSync(path).holder;
  } catch {
    return null;
  }
}

// FileLock reports its releases and downgrades here (file-lock.ts cannot import this module: it is imported by it).
onRelease((identity, s, range) => {
  if (lines.size > idleLines) released(identity, s, range); // else nobody of this thread waits: the common case
});
