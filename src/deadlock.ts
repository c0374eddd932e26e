/**
 * Cycles of waits between processes, found in the kernel's lock table.
 *
 * The kernel detects deadlocks only for classic POSIX locks, never for flock
 * or OFD locks, so a process waiting for a lock held by a process that waits,
 * directly or through others, for a lock the first one holds would wait
 * forever. While a wait of this process lasts (and only then: nothing runs
 * for an uncontended lock), Linux's /proc/locks is read ten times a second
 * (asynchronously, for lock(): the read can take milliseconds),
 * with the fdinfo of the processes that wait (see waitersHoldings), and a wait-for graph between processes is built from it: every blocked
 * request is an edge from its process to each process holding a conflicting
 * lock on that file (same family — flock, or OFD/POSIX —, overlapping range,
 * an exclusive side). Processes that do not use fslock are nodes like any
 * other, so a cycle through util-linux flock(1) or Python's lockf is found
 * too.
 *
 * Exactly one wait in a cycle must fail. Every fslock process in it sees the
 * same cycle and ranks its members by pid, highest first; the one ranked k
 * gives up once the cycle has been there for k × ESCALATE_MS and in two looks
 * in a row (a table read while a lock changes hands is never acted on). The
 * highest ranked fslock process thus fails first, and its wait's end breaks
 * the cycle before the next would; a member that does not use fslock never
 * fails, so the next one down does after one more step.
 */
import { platform } from './platform.js';
import { readdirSync, readFileSync, readlinkSync, statSync } from 'fs';
import { descriptorLocks } from './holder.js';
import { readLockTableText, warmLockTable } from './lock-table.js';
import { performance } from 'perf_hooks';
import { deadlockCycleError } from './errors.js';

/** How often a wait looks at the lock table. */
export const CHECK_MS = 100;
/**
 * How much longer the k-th ranked member of a cycle waits before it gives
 * up: long enough that the first-ranked one, looking every CHECK_MS, has
 * broken the cycle even on a busy machine, so exactly one wait fails.
 */
export const ESCALATE_MS = 1000;
/**
 * What the processes that wait hold, from their /proc/<pid>/fdinfo, as
 * /proc/locks lines naming each of them. The table names the process that
 * took a flock or OFD lock (an OFD lock: often no one, -1), not every process
 * sharing it, and a cycle runs only through processes that wait: so a child
 * that inherited a locked descriptor and now waits is a holder here. Reads
 * only the waiting processes' descriptors, not all of /proc.
 */
function waitersHoldings(text: string): string {
  const waiting = new Set<number>();
  for (const e of parse(text)) if (e.blocked && e.pid > 0) waiting.add(e.pid);
  const out: string[] = [];
  for (const { pid, lines } of descriptorLocks([...waiting])) {
    for (const l of lines) {
      if (l.includes('->')) continue;
      // "N: KIND ADVISORY TYPE PID dev:ino start end": put this process in the PID field
      out.push(l.replace(/^(\d+:\s+\S+\s+\S+\s+\S+\s+)-?\d+/, `$1${pid}`));
    }
  }
  return out.length ? `\n${out.join('\n')}` : '';
}

interface Entry {
  id: string;
  blocked: boolean;
  family: 'flock' | 'fcntl';
  exclusive: boolean;
  pid: number;
  file: string; // "MAJ:MIN:INO" as /proc/locks prints it, normalized
  start: number;
  end: number; // Infinity for EOF
}

const LINE =
  /^(\d+):\s+(->\s+)?(FLOCK|OFDLCK|POSIX)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\S+)/;

function parse(text: string): Entry[] {
  const out: Entry[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (!m) continue;
    out.push({
      id: m[1]!,
      blocked: m[2] !== undefined,
      family: m[3] === 'FLOCK' ? 'flock' : 'fcntl',
      exclusive: m[4] === 'WRITE',
      pid: Number(m[5]),
      file: `${parseInt(m[6]!, 16)}:${parseInt(m[7]!, 16)}:${m[8]}`,
      start: Number(m[9]),
      end: m[10] === 'EOF' ? Infinity : Number(m[10]),
    });
  }
  return out;
}

/** "MAJ:MIN:INO" of an identity "dev:ino" (Linux st_dev). */
export function fileKey(identity: string): string {
  const [devStr, ino] = identity.split(':');
  const dev = BigInt(devStr!);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}:${ino}`;
}

interface Edge {
  from: number;
  to: number;
  file: string;
}

function edges(entries: Entry[]): Edge[] {
  const held = entries.filter((e) => !e.blocked && e.pid > 0);
  const out: Edge[] = [];
  for (const w of entries) {
    if (!w.blocked || w.pid <= 0) continue;
    for (const h of held) {
      if (h.file !== w.file || h.family !== w.family || h.pid === w.pid) continue;
      if (!h.exclusive && !w.exclusive) continue;
      if (h.start > w.end || w.start > h.end) continue;
      out.push({ from: w.pid, to: h.pid, file: w.file });
    }
  }
  return out;
}

/** What a synchronous wait, not in the table between its slices, adds to it. */
export interface OwnRequest {
  family: 'flock' | 'fcntl';
  exclusive: boolean;
  key: string;
}

/** A cycle of waits through `self`, as its edges starting with one of `self`'s, or null. */
export function findCycle(text: string, self: number, own?: OwnRequest): Edge[] | null {
  const entries = parse(text);
  if (own) {
    entries.push({
      id: '',
      blocked: true,
      family: own.family,
      exclusive: own.exclusive,
      pid: self,
      file: own.key,
      start: 0,
      end: Infinity,
    });
  }
  const all = edges(entries);
  const byFrom = new Map<number, Edge[]>();
  for (const e of all) byFrom.set(e.from, [...(byFrom.get(e.from) ?? []), e]);
  const path: Edge[] = [];
  const seen = new Set<number>([self]);
  const visit = (pid: number): boolean => {
    for (const e of byFrom.get(pid) ?? []) {
      path.push(e);
      if (e.to === self) return true;
      if (!seen.has(e.to)) {
        seen.add(e.to);
        if (visit(e.to)) return true;
      }
      path.pop();
    }
    return false;
  };
  return visit(self) ? path : null;
}

/** The rank of `self` in the cycle (0: the highest pid, first to give up). */
function rankIn(cycle: Edge[], self: number): number {
  const pids = [...new Set(cycle.map((e) => e.from))].sort((a, b) => b - a);
  return pids.indexOf(self);
}

/** A cycle's text for the message: each process and the file it waits for. */
function describeCycle(cycle: Edge[]): string {
  const parts = cycle.map(
    (e) => `pid ${e.from}${command(e.from)} waits for ${fileName(e.to, e.file)} held by pid ${e.to}`,
  );
  return parts.join(', ');
}

function command(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return argv.length ? ` (${argv.join(' ').slice(0, 80)})` : '';
  } catch {
    return '';
  }
}

/** A path the holder `pid` has the file open under, or the file's numbers. */
function fileName(pid: number, key: string): string {
  const ino = key.split(':')[2];
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const st = statSync(`/proc/${pid}/fd/${fd}`, { bigint: true });
        if (String(st.ino) === ino) return `'${readlinkSync(`/proc/${pid}/fd/${fd}`)}'`;
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // not visible
  }
  return `file ${key}`;
}

/** One wait being watched. */
interface Watched {
  key: string;
  path: string;
  started: number; // when the wait began (looked at from CHECK_MS on)
  ended: boolean; // the wait is over (removed at the next tick)
  since: number | null; // when its cycle was first seen
  misses: number; // looks in a row that did not see it since (one is forgiven: a table read mid-change)
  fail: (err: Error) => void;
}

const watched = new Set<Watched>();
let timer: NodeJS.Timeout | null = null;

/** Looks once at the table's `text`; returns the waits that must give up, with their errors. */
function look(text: string | null, list: Iterable<Watched>, now: number, own?: OwnRequest): Array<[Watched, Error]> {
  if (text === null) return [];
  const out: Array<[Watched, Error]> = [];
  const cycle = findCycle(text + waitersHoldings(text), process.pid, own);
  for (const w of list) {
    const mine = cycle && cycle[0]!.file === w.key ? cycle : null;
    if (!mine) {
      if (++w.misses >= 2) w.since = null;
      continue;
    }
    w.misses = 0;
    if (w.since === null) {
      w.since = now; // seen once: act only if it is still there next time
      continue;
    }
    if (now - w.since >= rankIn(mine, process.pid) * ESCALATE_MS) {
      out.push([w, deadlockCycleError(w.path, describeCycle(mine))]);
    }
  }
  return out;
}

let looking = false; // a read of the table is under way (tick)

/**
 * The waits to look at: those that have lasted CHECK_MS (the timer outlives
 * the waits it was started for, and a hand-off must not pay for a look).
 */
function dueWaits(now: number): Watched[] {
  return [...watched].filter((w) => !w.ended && now - w.started >= CHECK_MS);
}

function tick(): void {
  for (const w of watched) if (w.ended) watched.delete(w);
  if (watched.size === 0) {
    // the last wait ended since the previous tick (see watchWait)
    clearInterval(timer!);
    timer = null;
    return;
  }
  if (looking || dueWaits(performance.now()).length === 0) return;
  // The slow part off the event loop: reading /proc/locks makes the kernel
  // take its lock table for writing, which waits for an RCU grace period
  // (8 ms measured here, while other processes lock and read files); the
  // reading used is made right after, back to back (see warmLockTable).
  looking = true;
  warmLockTable(() => {
    looking = false;
    const now = performance.now();
    for (const [w, e] of look(readLockTableText(), dueWaits(now), now)) {
      watched.delete(w);
      w.fail(e);
    }
  });
}

/**
 * Watches an asynchronous wait for the file with `identity` (Linux only):
 * `fail` is called with EDEADLK if it closes a cycle. Returns the function
 * that stops watching.
 */
export function watchWait(identity: string, path: string, fail: (err: Error) => void): () => void {
  if (!platform().lockTable) return () => undefined;
  const w: Watched = {
    key: fileKey(identity),
    path,
    started: performance.now(),
    ended: false,
    since: null,
    misses: 0,
    fail,
  };
  watched.add(w);
  timer ??= setInterval(tick, CHECK_MS);
  timer.unref?.();
  // Forgetting the wait and stopping the timer are left to its next tick: a
  // wait that ends with a grant wakes a cold event loop, where clearing an
  // interval costs more than the whole rest of the hand-off.
  return () => {
    w.ended = true;
  };
}

/**
 * For a synchronous wait, between its slices: one look, counting this
 * process as waiting for the file (`flock`: the primitive waited on is flock;
 * `exclusive`: the mode). The EDEADLK to throw, or null. `state` carries what
 * earlier looks saw.
 */
export function checkSyncWait(
  identity: string,
  path: string,
  state: { since: number | null; misses: number },
  flock: boolean,
  exclusive: boolean,
): Error | null {
  if (!platform().lockTable) return null;
  const key = fileKey(identity);
  const w: Watched = { key, path, started: 0, ended: false, ...state, fail: () => undefined };
  const r = look(readLockTableText(), [w], performance.now(), { family: flock ? 'flock' : 'fcntl', exclusive, key });
  state.since = w.since;
  state.misses = w.misses;
  return r.length ? r[0]![1] : null;
}
