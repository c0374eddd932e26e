/**
 * Who holds a lock: the record an fslock holder wrote (record: true), checked
 * against reality, or else the kernel's own lock table (Linux /proc/locks),
 * which names the owning process of flock and POSIX locks.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { binding } from './binding.js';
import type { LockMode } from './options.js';

/** What an exclusive holder writes into its lock file. */
export interface HolderRecord {
  pid: number;
  hostname: string;
  /** ISO time the lock was acquired. */
  startedAt: string;
  argv: string[];
}

export const RECORD_PREFIX = Buffer.from('{"fslock":1,');
export const RECORD_MAX = 4096;

/** Reads the holder record at the start of an open lock file, if there is one. */
export function readRecord(fd: number): HolderRecord | null {
  try {
    const buf = Buffer.allocUnsafe(RECORD_MAX);
    const n = binding.readAt(fd, buf, 0);
    return parseRecord(buf.subarray(0, n));
  } catch {
    return null;
  }
}

export function parseRecord(buf: Buffer): HolderRecord | null {
  if (buf.length < RECORD_PREFIX.length || !buf.subarray(0, RECORD_PREFIX.length).equals(RECORD_PREFIX)) return null;
  const end = buf.indexOf(0x0a);
  try {
    const r = JSON.parse(buf.subarray(0, end < 0 ? buf.length : end).toString('utf8')) as Partial<HolderRecord>;
    if (typeof r.pid !== 'number') return null;
    return {
      pid: r.pid,
      hostname: typeof r.hostname === 'string' ? r.hostname : '',
      startedAt: typeof r.startedAt === 'string' ? r.startedAt : '',
      argv: Array.isArray(r.argv) ? r.argv.map(String) : [],
    };
  } catch {
    return null;
  }
}

/** A record is trusted only while its process lives (on this host; another host's cannot be checked). */
function recordIsLive(r: HolderRecord): boolean {
  if (r.hostname && r.hostname !== hostname()) return true;
  try {
    process.kill(r.pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

export interface KernelLock {
  kind: 'flock' | 'ofd' | 'posix';
  mode: LockMode;
  /** Owning process; null for OFD locks (the kernel does not track one) or when not visible. */
  pid: number | null;
  start: number;
  /** Last byte, or null for "to end of file". */
  end: number | null;
}

/** Linux st_dev → "MAJ:MIN" as /proc/locks prints it (%02x:%02x). */
function procDev(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  const hex = (n: bigint) => n.toString(16).padStart(2, '0');
  return `${hex(major)}:${hex(minor)}`;
}

const PROC_LINE = /^\d+:\s+(->\s+)?(FLOCK|OFDLCK|POSIX)\s+\S+\s+(READ|WRITE)\s+(-?\d+)\s+([0-9a-f]+:[0-9a-f]+):(\d+)\s+(\d+)\s+(\S+)/;

export function parseProcLocks(text: string, identity: string): { locks: KernelLock[]; waiters: number } {
  const [devStr, inoStr] = identity.split(':');
  const dev = procDev(BigInt(devStr as string));
  const locks: KernelLock[] = [];
  let waiters = 0;
  for (const line of text.split('\n')) {
    const m = PROC_LINE.exec(line);
    if (!m || m[6] !== inoStr) continue;
    // /proc/locks pads to at least two hex digits per part; compare numerically.
    const [maj, min] = (m[5] as string).split(':').map((x) => parseInt(x, 16));
    const [wmaj, wmin] = dev.split(':').map((x) => parseInt(x, 16));
    if (maj !== wmaj || min !== wmin) continue;
    if (m[1]) {
      waiters++;
      continue;
    }
    const pid = Number(m[4]);
    locks.push({
      kind: m[2] === 'FLOCK' ? 'flock' : m[2] === 'OFDLCK' ? 'ofd' : 'posix',
      mode: m[3] === 'WRITE' ? 'exclusive' : 'shared',
      pid: pid > 0 ? pid : null,
      start: Number(m[7]),
      end: m[8] === 'EOF' ? null : Number(m[8]),
    });
  }
  return { locks, waiters };
}

/** @internal */
export function readProcLocksSync(): string | null {
  if (process.platform !== 'linux') return null;
  try {
    return readFileSync('/proc/locks', 'utf8');
  } catch {
    return null;
  }
}

export type HolderSource = 'record' | 'kernel';

/**
 * The holder of the lock on the open file `fd`: its record when one is there
 * and its process is alive, else (Linux) the process the kernel names, with
 * its command line from /proc. Null when unknown. `procLocks` may pass an
 * already read /proc/locks.
 */
export function currentHolder(fd: number, procLocks?: string | null): (HolderRecord & { source: HolderSource }) | null {
  const rec = readRecord(fd);
  if (rec && recordIsLive(rec)) return { ...rec, source: 'record' };
  const text = procLocks === undefined ? readProcLocksSync() : procLocks;
  if (text === null) return null;
  let pid: number | null = null;
  try {
    pid = parseProcLocks(text, binding.identity(fd)).locks.find((l) => l.pid !== null)?.pid ?? null;
  } catch {
    return null;
  }
  if (pid === null) return null;
  let argv: string[] = [];
  try {
    argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    // gone meanwhile, or not visible from here
  }
  return { pid, hostname: hostname(), startedAt: '', argv, source: 'kernel' };
}
