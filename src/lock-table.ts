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
 *   or any POSIX lock: the kernel merges a process's own) is counted once;
 * - across readings, each entry counts as often as it was seen at most in
 *   one reading, so an entry missed by one reading is still there.
 * What remains: shared flock or OFD locks listed twice in every reading are
 * counted twice, and a lock let go while the table is being read may still
 * be reported. A held lock is reported free only if every reading missed it.
 *
 * The cycle watch (deadlock.ts) reads the table on its own: it acts only on
 * a cycle seen in two consecutive looks.
 */
import { promises as fsp, readFileSync } from 'fs';
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

const READINGS = 3;

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
    const locks = new Map<string, { lock: KernelLock; n: number }>();
    const blocked = new Map<string, { lock: KernelLock; n: number }>();
    for (const text of this.readings) {
      const seen = parseProcLocks(text, identity);
      countMax(locks, seen.locks, (l) => l.mode === 'exclusive' || l.kind === 'posix');
      countMax(blocked, seen.blocked, () => false);
    }
    const list = (m: Map<string, { lock: KernelLock; n: number }>) =>
      [...m.values()].flatMap(({ lock, n }) => Array.from({ length: n }, () => ({ ...lock })));
    return { locks: list(locks), blocked: list(blocked) };
  }
}

function countMax(
  into: Map<string, { lock: KernelLock; n: number }>,
  seen: KernelLock[],
  once: (l: KernelLock) => boolean,
): void {
  const here = new Map<string, { lock: KernelLock; n: number }>();
  for (const lock of seen) {
    const key = `${lock.kind} ${lock.mode} ${lock.pid} ${lock.start} ${lock.end}`;
    const e = here.get(key);
    if (!e) here.set(key, { lock, n: 1 });
    else if (!once(lock)) e.n++;
  }
  for (const [key, e] of here) {
    const had = into.get(key);
    if (!had) into.set(key, e);
    else had.n = Math.max(had.n, e.n);
  }
}

function readSync(): string | null {
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
    const r = readSync();
    if (r === null) break;
    readings.push(r);
  } while (wantsMore(readings));
  return readings.length === 0 ? null : new LockTable(readings);
}

/** readLockTableSync, reading off the event loop (the kernel's table lock makes a reading take milliseconds). */
export async function readLockTable(): Promise<LockTable | null> {
  if (!platform().lockTable) return null;
  const readings: string[] = [];
  do {
    const r = await fsp.readFile('/proc/locks', 'utf8').catch(() => null);
    if (r === null) break;
    readings.push(r);
  } while (wantsMore(readings));
  return readings.length === 0 ? null : new LockTable(readings);
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
