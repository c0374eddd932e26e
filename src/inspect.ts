/**
 * inspect(path): is a lock file held, in which mode, and by whom.
 *
 * On Linux the kernel's own table (/proc/locks) lists every flock, OFD and
 * POSIX lock with its mode and (for flock and POSIX) the owning process, so
 * nothing has to be locked to look (lock-table.ts reads it so that what it
 * says holds). Elsewhere inspect asks F_OFD_GETLK / F_GETLK and tries
 * non-blocking flock locks on a fresh descriptor, releasing them at once (a
 * concurrent tryLock may then see the file busy for that instant).
 */
import { lstatSync } from 'fs';
import { join } from 'path';
import { errorCode } from './errors.js';
import { isSymlink, openLockFile } from './open.js';
import { binding } from './binding.js';
import { checkPath, type LockMode } from './options.js';
import { probeHeldMode } from './strategy.js';
import {
  currentHolder,
  liveHolders,
  waitingProcesses,
  type HolderRecord,
  type HolderSource,
  type LiveHolder,
} from './holder.js';
import { type KernelLock, type LockTable, readLockTable, readLockTableSync } from './lock-table.js';

export type { KernelLock, HolderSource, LiveHolder };

export interface LockInfo {
  path: string;
  exists: boolean;
  held: boolean;
  /** The strongest mode anyone holds, or null when free. */
  mode: LockMode | null;
  /**
   * Who holds it exclusively: the record the holder wrote (`record: true`),
   * or on Linux the process the kernel names (argv from /proc, no startedAt).
   */
  holder: HolderRecord | null;
  /** Where `holder` came from: 'kernel' (Linux /proc/locks), or 'record' (its sidecar, checked against the kernel). */
  holderSource: HolderSource | null;
  /** The holder's record names another host: it could not be checked from here. */
  holderRemote: boolean;
  /** Each lock the kernel reports on the file (Linux); empty where unknown. */
  locks: KernelLock[];
  /** Requests blocked waiting for this file (Linux only; 0 elsewhere). */
  waiters: number;
  /**
   * The processes blocked waiting for it, as /proc/locks lists them, fslock's and
   * foreign lockers' alike (Linux: the blocked requests of /proc/locks; empty
   * elsewhere). Same shape as `holders`.
   */
  queue: LiveHolder[];
  /**
   * Every live process holding the lock (Linux: each process with a
   * descriptor that carries it, from /proc/<pid>/fdinfo — a child that
   * inherited the descriptor included, a holder that died never); empty
   * where unknown. Other users' processes are visible only to root.
   */
  holders: LiveHolder[];
  /** 'proc-locks' (Linux kernel table) or 'probe' (lock attempts). */
  source: 'proc-locks' | 'probe';
  /**
   * When the lock is a drop-in's artefact rather than `path` itself: the file
   * whose lock is reported (fslock/proper-lockfile's marker inside
   * `<path>.lock/`, or inside `path` when it is that directory); else null.
   */
  artefact: string | null;
}

/**
 * The name of fslock/proper-lockfile's marker inside a `<file>.lock/`
 * directory: the file its kernel lock is held on (compat/proper-lockfile.ts).
 */
export const PROPER_LOCKFILE_MARKER = '.fslock';

/** The marker of fslock/proper-lockfile for `path` (the file, or its lock directory), if one is there. */
function dropInMarker(path: string): string | null {
  const isDir = (p: string) => {
    try {
      return lstatSync(p).isDirectory();
    } catch {
      return false;
    }
  };
  const isFile = (p: string) => {
    try {
      return lstatSync(p).isFile();
    } catch {
      return false;
    }
  };
  for (const dir of [path, `${path}.lock`]) {
    if (isDir(dir) && isFile(join(dir, PROPER_LOCKFILE_MARKER))) return join(dir, PROPER_LOCKFILE_MARKER);
  }
  return null;
}

function strongest(locks: KernelLock[]): LockMode | null {
  if (locks.some((l) => l.mode === 'exclusive')) return 'exclusive';
  return locks.length > 0 ? 'shared' : null;
}

/**
 * @internal inspect with an already read lock table (null: probe instead).
 * `who` false: only whether and how `path` itself is held (for the
 * collector's and the drop-ins' many quick looks): no drop-in artefact is
 * looked for, and no holder, holders or queue are read (those scan /proc).
 */
export function inspectWith(path: string, table: LockTable | null, who = true): LockInfo {
  if (!who) return inspectPath(path, table, false);
  // A lock taken through fslock/proper-lockfile is held on a marker inside
  // its lock directory, not on the file or the directory a user names.
  const marker = dropInMarker(path);
  if (marker !== null) {
    const info = inspectPath(marker, table, true);
    if (info.held) return { ...info, path, artefact: marker };
  }
  return inspectPath(path, table, true);
}

/** Whether `path` itself is locked by anyone, without taking it or asking who. */
export function isLocked(path: string): boolean {
  return inspectWith(path, readLockTableSync(), false).held;
}

function inspectPath(path: string, table: LockTable | null, who: boolean): LockInfo {
  let fd: number;
  try {
    fd = openLockFile(path, false, false, false);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' && !isSymlink(path)) {
      return {
        path,
        exists: false,
        held: false,
        mode: null,
        holder: null,
        holderSource: null,
        holderRemote: false,
        locks: [],
        waiters: 0,
        queue: [],
        holders: [],
        source: table === null ? 'probe' : 'proc-locks',
        artefact: null,
      };
    }
    throw err;
  }
  try {
    let mode: LockMode | null;
    let locks: KernelLock[] = [];
    let waiters = 0;
    let holders: LiveHolder[] = [];
    let queue: LiveHolder[] = [];
    if (table !== null) {
      const identity = binding.identity(fd);
      let blocked: KernelLock[];
      ({ locks, blocked } = table.entries(identity));
      waiters = blocked.length;
      mode = strongest(locks);
      if (who) {
        queue = waitingProcesses(blocked);
        if (locks.length > 0) holders = liveHolders(identity);
      }
    } else {
      mode = probeHeldMode(fd);
    }
    const found = who && mode === 'exclusive' ? currentHolder(fd, path, table) : null;
    const { source: holderSource = null, remote = false, ...holder } = found ?? {};
    return {
      path,
      exists: true,
      held: mode !== null,
      mode,
      holder: found ? (holder as HolderRecord) : null,
      holderSource,
      holderRemote: remote,
      locks,
      waiters,
      queue,
      holders,
      source: table === null ? 'probe' : 'proc-locks',
      artefact: null,
    };
  } finally {
    binding.close(fd);
  }
}

/** Is the lock file held, in which mode, by whom (if recorded). Never creates the file. */
export async function inspect(path: string): Promise<LockInfo> {
  checkPath(path);
  return inspectWith(path, await readLockTable());
}

/** Synchronous twin of inspect(). */
export function inspectSync(path: string): LockInfo {
  checkPath(path);
  return inspectWith(path, readLockTableSync());
}
