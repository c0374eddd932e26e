/**
 * Linux's lock table, /proc/locks, read so that what it says about a file
 * holds.
 *
 * The kernel prints the table a page at a time: each read(2) takes the
 * table's lock, prints the entries from a position up to a page's worth, and
 * lets go. Locks taken or let go between two pages shift the positions, so
 * one reading of a table longer than a page lists some entries twice and
 * misses others. The last entries are the likeliest to be listed again, and
 * they are the oldest locks. Measured on Linux 6.18 beside two processes
 * locking in a loop, with 100 other locks held: a long-held lock's entries
 * were wrong in about one reading in five (listed 2 to 100 times, or
 * missing), and two consecutive readings were often wrong the same way.
 *
 * A reading that fits in one page is no safer: the read(2) that finds the
 * end can come after the table shrank, and a page that was full then never
 * shows the entries that did not fit (measured: a 4 KB reading without the
 * oldest lock, then the end). So:
 * - the table is read at least twice, and up to READINGS times until two
 *   readings in a row are the same text (back to back a reading costs about
 *   0.1 ms; the first one of a while costs a few ms: the kernel's
 *   lock-table semaphore waits out an RCU grace period);
 * - in each reading, an entry that cannot be there twice (an exclusive lock,
 *   or any POSIX lock: the kernel merges a process's own) is counted once,
 *   and so is a blocked request of a process (two threads of one process
 *   blocked the same way on one file are listed once);
 * - each entry is listed as often as most readings list it, and at least
 *   once if any reading listed it: an entry one reading repeats or misses
 *   is listed as it is.
 * What remains: an entry most readings repeat is listed more than once, and
 * a lock let go while the table is being read may still be reported. A held
 * lock is reported free only if every reading missed it.
 *
 * The cycle watch (deadlock.ts) reads the table whole, once per look, right
 * after warmLockTable: it acts only on a cycle seen in two consecutive looks.
 */
import { readFile, readFileSync } from 'fs';
import type { LockMode } from './options.js';
import { platform } from './platform.js';

export interface KernelLock {
  kind: 'flock' | 'ofd' | 'posix';
  mode: LockMode;
  /** Owning process; null for OFD locks (the kernel does not track one) or when not visible. */
  pid: number | null;
  start: number;
  /** Last byte, or null for "to end of file". */
  end: number | null;
}

/** What the table lists for one file. */
export interface FileEntries {
  /** The locks held on it. */
  locks: KernelLock[];
  /** The requests blocked on it. */
  blocked: KernelLock[];
}

const READINGS = 5;

/** Whether more readings are wanted after `readings`: at least two, until two in a row are the same text. */
function wantsMore(readings: string[]): boolean {
  const n = readings.length;
  return n < 2 || (n < READINGS && readings[n - 1] !== readings[n - 2]);
}

/** A reading of the kernel's lock table, asked about one file at a time. */
export class LockTable {
  /** @internal */
  constructor(private readonly readings: string[]) {}

  /** The locks and blocked requests on the file with `identity` ("dev:ino"). */
  entries(identity: string): FileEntries {
    const seen = this.readings.map((text) => parseProcLocks(text, identity));
    return {
      locks: agree(
        seen.map((e) => e.locks),
        (l) => l.mode === 'exclusive' || l.kind === 'posix',
      ),
      // one process's two requests blocked the same way (two threads) look
      // alike, and are listed once: rarer than a repeat by far
      blocked: agree(
        seen.map((e) => e.blocked),
        (l) => l.pid !== null,
      ),
    };
  }
}

/**
 * What the readings agree on: each entry as often as most readings list it
 * (ties: the smaller count), and at least once if any reading listed it. An
 * entry that cannot be there twice (`once`) counts once per reading.
 */
function agree(readings: KernelLock[][], once: (l: KernelLock) => boolean): KernelLock[] {
  const counts = new Map<string, { lock: KernelLock; n: number[] }>();
  readings.forEach((locks, i) => {
    for (const lock of locks) {
      const key = `${lock.kind} ${lock.mode} ${lock.pid} ${lock.start} ${lock.end}`;
      let e = counts.get(key);
      if (!e) counts.set(key, (e = { lock, n: readings.map(() => 0) }));
      if (e.n[i] === 0 || !once(lock)) e.n[i] = (e.n[i] ?? 0) + 1;
    }
  });
  const out: KernelLock[] = [];
  for (const { lock, n } of counts.values()) {
    for (let k = 0, times = Math.max(1, mostCommon(n)); k < times; k++) out.push({ ...lock });
  }
  return out;
}

/** The value most of `ns` have; the smaller one on a tie (a repeat is likelier than a second lock). */
function mostCommon(ns: number[]): number {
  let best = 0;
  let bestTimes = 0;
  for (const v of new Set(ns)) {
    const times = ns.filter((x) => x === v).length;
    if (times > bestTimes || (times === bestTimes && v < best)) [best, bestTimes] = [v, times];
  }
  return best;
}

/** One reading of /proc/locks, whole (for the cycle watch's graph), or null when it cannot be read. */
export function readLockTableText(): string | null {
  try {
    return readFileSync('/proc/locks', 'utf8');
  } catch {
    return null;
  }
}

/** The lock table (Linux), or null where there is none to read. */
export function readLockTableSync(): LockTable | null {
  if (!platform().lockTable) return null;
  const readings: string[] = [];
  do {
    const r = readLockTableText();
    if (r === null) break;
    readings.push(r);
  } while (wantsMore(readings));
  return readings.length === 0 ? null : new LockTable(readings);
}

/**
 * Calls `done` once a reading of the table made off the event loop has
 * ended: the first reading in a while waits out an RCU grace period (7-16 ms
 * measured), the ones right after it take about 0.1 ms. That reading itself
 * is not worth keeping: read a page per turn of the event loop, with the
 * table changing between pages, it is the likeliest to be wrong (an
 * inspect() that used such readings was wrong 6 times in 100 beside two
 * processes locking in a loop; with readings made back to back after it,
 * 0 in 2,000).
 */
export function warmLockTable(done: () => void): void {
  readFile('/proc/locks', () => done());
}

/** readLockTableSync, with the slow part of it off the event loop (see warmLockTable). */
export async function readLockTable(): Promise<LockTable | null> {
  if (!platform().lockTable) return null;
  await new Promise<void>((resolve) => warmLockTable(resolve));
  return readLockTableSync();
}

/** Linux st_dev → "MAJ:MIN" as /proc/locks prints it (%02x:%02x). */
function procDev(dev: bigint): [number, number] {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return [Number(major), Number(minor)];
}

const PROC_LINE =
  /^\d+:\s+(->\s+)?(FLOCK|OFDLCK|POSIX)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s+(\d+)\s+(\S+)/;

/**
 * The entries for the file with `identity` in lines of /proc/locks' format
 * (one reading of the table, or a process's fdinfo "lock:" lines).
 */
export function parseProcLocks(text: string, identity: string): FileEntries {
  const [devStr, inoStr] = identity.split(':');
  const [wmaj, wmin] = procDev(BigInt(devStr as string));
  const locks: KernelLock[] = [];
  const blocked: KernelLock[] = [];
  for (const line of text.split('\n')) {
    const m = PROC_LINE.exec(line);
    if (!m || m[7] !== inoStr) continue;
    // /proc/locks pads to at least two hex digits per part; compare numerically.
    if (parseInt(m[5] as string, 16) !== wmaj || parseInt(m[6] as string, 16) !== wmin) continue;
    const pid = Number(m[4]);
    // a blocked request ("->") is listed after the lock that blocks it
    (m[1] ? blocked : locks).push({
      kind: m[2] === 'FLOCK' ? 'flock' : m[2] === 'OFDLCK' ? 'ofd' : 'posix',
      mode: m[3] === 'WRITE' ? 'exclusive' : 'shared',
      pid: pid > 0 ? pid : null,
      start: Number(m[8]),
      end: m[9] === 'EOF' ? null : Number(m[9]),
    });
  }
  return { locks, blocked };
}
