/**
 * inspect(path): is a lock file held, in which mode, and by whom.
 *
 * On Linux the kernel's own table (/proc/locks) lists every flock, OFD and
 * POSIX lock with its mode and (for flock and POSIX) the owning process, so
 * nothing has to be locked to look. Elsewhere inspect asks F_OFD_GETLK /
 * F_GETLK and tries non-blocking flock locks on a fresh descriptor, releasing
 * them at once (a concurrent tryLock may then see the file busy for that
 * instant).
 */
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { binding, C } from './binding.js';
import { checkPath, WINDOWS_LOCK_OFFSET, type LockMode } from './options.js';
import { readRecord, type HolderRecord } from './lock.js';

export interface KernelLock {
  kind: 'flock' | 'ofd' | 'posix';
  mode: LockMode;
  /** Owning process; null for OFD locks (the kernel does not track one) or when not visible. */
  pid: number | null;
  start: number;
  /** Last byte, or null for "to end of file". */
  end: number | null;
}

export interface LockInfo {
  path: string;
  exists: boolean;
  held: boolean;
  /** The strongest mode anyone holds, or null when free. */
  mode: LockMode | null;
  /** The record an exclusive fslock holder wrote, when held exclusively. */
  holder: HolderRecord | null;
  /** Each lock the kernel reports on the file (Linux); empty where unknown. */
  locks: KernelLock[];
  /** Requests blocked waiting for this file (Linux only; 0 elsewhere). */
  waiters: number;
  /** 'proc-locks' (Linux kernel table) or 'probe' (lock attempts). */
  source: 'proc-locks' | 'probe';
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

function strongest(locks: KernelLock[]): LockMode | null {
  if (locks.some((l) => l.mode === 'exclusive')) return 'exclusive';
  return locks.length > 0 ? 'shared' : null;
}

/** Lock attempts on a fresh descriptor, released at once. */
function probeMode(fd: number): LockMode | null {
  if (process.platform === 'win32') {
    const s = WINDOWS_LOCK_OFFSET;
    if (binding.lock(C.WINDOWS, fd, C.SHARED, s, 1, false)) {
      binding.lock(C.WINDOWS, fd, C.UNLOCK, s, 1, false);
      return null;
    }
    return 'exclusive';
  }
  let mode: LockMode | null = null;
  for (const prim of [C.OFD, C.POSIX]) {
    try {
      const q = binding.query(prim, fd, C.EXCLUSIVE, 0, 0);
      if (q.type === C.EXCLUSIVE) return 'exclusive';
      if (q.type === C.SHARED) mode = 'shared';
      break; // OFD and POSIX locks see each other: one query answers both
    } catch {
      // primitive unavailable here; try the next
    }
  }
  try {
    if (binding.lock(C.FLOCK, fd, C.EXCLUSIVE, 0, 0, false)) {
      binding.lock(C.FLOCK, fd, C.UNLOCK, 0, 0, false);
    } else if (binding.lock(C.FLOCK, fd, C.SHARED, 0, 0, false)) {
      binding.lock(C.FLOCK, fd, C.UNLOCK, 0, 0, false);
      mode ??= 'shared';
    } else {
      return 'exclusive';
    }
  } catch {
    // no flock here
  }
  return mode;
}

/** @internal inspect with an already read /proc/locks (null: probe instead). */
export function inspectWith(path: string, procLocks: string | null): LockInfo {
  let fd: number;
  try {
    fd = binding.open(path, 0);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') {
      return { path, exists: false, held: false, mode: null, holder: null, locks: [], waiters: 0, source: procLocks === null ? 'probe' : 'proc-locks' };
    }
    throw err;
  }
  try {
    let mode: LockMode | null;
    let locks: KernelLock[] = [];
    let waiters = 0;
    if (procLocks !== null) {
      ({ locks, waiters } = parseProcLocks(procLocks, binding.identity(fd)));
      mode = strongest(locks);
    } else {
      mode = probeMode(fd);
    }
    const holder = mode === 'exclusive' ? readRecord(fd) : null;
    return { path, exists: true, held: mode !== null, mode, holder, locks, waiters, source: procLocks === null ? 'probe' : 'proc-locks' };
  } finally {
    binding.close(fd);
  }
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

/** Is the lock file held, in which mode, by whom (if recorded). Never creates the file. */
export async function inspect(path: string): Promise<LockInfo> {
  checkPath(path);
  let proc: string | null = null;
  if (process.platform === 'linux') {
    try {
      proc = await readFile('/proc/locks', 'utf8');
    } catch {
      proc = null;
    }
  }
  return inspectWith(path, proc);
}

/** Synchronous twin of inspect(). */
export function inspectSync(path: string): LockInfo {
  checkPath(path);
  return inspectWith(path, readProcLocksSync());
}
