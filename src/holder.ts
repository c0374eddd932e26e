/**
 * Who holds a lock, and the holder record: the one module that writes,
 * reads and removes records.
 *
 * ## Where a record lives, and why never in the lock file
 *
 * The lock file's contents belong to the user: `fslock run out.log …` locks
 * the very file the command appends to, exactly as flock(1) is used. So fslock
 * never writes into, truncates or empties a lock file. An exclusive holder
 * that asks for a record (`record: true`) writes it into a *sidecar*,
 * `<lockfile>.fslock-holder`, that fslock alone creates:
 *
 * 1. a fresh temporary file is created with O_CREAT|O_EXCL|O_NOFOLLOW (so it
 *    is new, ours, and never reached through a symlink), the record is
 *    written into it and it is closed;
 * 2. it is renamed to the sidecar name, only when that name is free (a rename
 *    that never replaces: a file that appears there meanwhile stays) or holds
 *    a regular file that parses as a record (a stale one of a holder that
 *    died), which is replaced; a user's file found there is never replaced
 *    (a racer who may rename files in the directory can still swap one in
 *    between that check and the rename: docs/security.md);
 * 3. on release the sidecar is unlinked if the name still holds the file
 *    this holder renamed there (same device and inode).
 *
 * A record holds only what names the holder: pid, host name, start time, the
 * lock file's identity, and by default no command-line arguments (they carry
 * tokens and passwords); `record: { argv }` records what the caller passes.
 *
 * ## Trusting a record
 *
 * A sidecar can be planted by anyone who can write the directory. A record is
 * believed only if it names the lock file it sits beside (its `file` identity
 * is the open lock file's), its host is this one or it is labelled as another
 * host's, its process lives, and — on Linux, where the kernel's lock table
 * (/proc/locks) names the owning process of flock and POSIX locks — the
 * kernel agrees that this pid holds a lock on the file, and the sidecar is
 * owned by that process's user (anyone who can write the directory can plant
 * a record naming the real holder). Otherwise the kernel's answer is used and
 * the record is ignored. The kernel's table names the process that took a
 * lock, which may have died while a child that inherited the descriptor holds
 * on: only live processes that hold the descriptor are named (liveHolders).
 */
import { platform } from './platform.js';
import {
  closeSync,
  constants as fsc,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  unlinkSync,
} from 'fs';
import { hostname } from 'os';
import { basename, dirname, join } from 'path';
import { binding, C } from './binding.js';
import { errorCode } from './errors.js';
import { NAME_ATTEMPTS, randomTag, renameFresh } from './names.js';
import type { LockMode } from './options.js';
import { type KernelLock, type LockTable, parseProcLocks, readLockTableSync } from './lock-table.js';

/** What an exclusive holder records in its sidecar. */
export interface HolderRecord {
  pid: number;
  hostname: string;
  /** ISO time the lock was acquired ('' when unknown). */
  startedAt: string;
  /** The recorded command line: empty unless the holder passed one (`record: { argv }`). */
  argv: string[];
}

/** Name of the record beside a lock file. */
export const RECORD_SUFFIX = '.fslock-holder';
/** A record is one short JSON line; larger sidecars are not records. */
export const RECORD_MAX = 4096;
const RECORD_PREFIX = Buffer.from('{"fslock":1,');

export function recordPath(lockPath: string): string {
  return lockPath + RECORD_SUFFIX;
}

/** A record this process wrote, to be removed on release. */
export interface WrittenRecord {
  path: string;
  identity: string;
}

function lstatIdentity(path: string): string | null {
  try {
    const st = lstatSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

// The record's first fields, the same for every record of this process
// (the hostname is read once, like the pid: a record names its writer as it started).
let ownPrefix: string | undefined;

/**
 * The record line: the JSON of { fslock, pid, hostname, startedAt, file,
 * argv }, built without JSON.stringify over the whole (the drop-ins write one
 * per lock). `argv` is recorded only when given, and capped.
 */
export function formatRecord(fileIdentity: string, argv: string[] | undefined): Buffer {
  ownPrefix ??= `{"fslock":1,"pid":${process.pid},"hostname":${JSON.stringify(hostname())}`;
  const head = `${ownPrefix},"startedAt":"${new Date().toISOString()}","file":${JSON.stringify(fileIdentity)}`;
  if (!argv || argv.length === 0) return Buffer.from(`${head}}\n`);
  let line = `${head},"argv":${JSON.stringify(argv)}}`;
  // a record must stay readable as one (RECORD_MAX bytes, not characters): keep the command's name only
  if (Buffer.byteLength(line) + 1 > RECORD_MAX)
    line = `${head},"argv":${JSON.stringify([String(argv[0]).slice(0, 256)])}}`;
  return Buffer.from(`${line}\n`);
}

export function parseRecord(buf: Buffer): (HolderRecord & { file: string }) | null {
  if (buf.length < RECORD_PREFIX.length || !buf.subarray(0, RECORD_PREFIX.length).equals(RECORD_PREFIX)) return null;
  const end = buf.indexOf(0x0a);
  try {
    const r = JSON.parse(buf.subarray(0, end < 0 ? buf.length : end).toString('utf8')) as Record<string, unknown>;
    if (typeof r.pid !== 'number' || !Number.isSafeInteger(r.pid) || r.pid <= 0) return null;
    return {
      pid: r.pid,
      hostname: typeof r.hostname === 'string' ? r.hostname : '',
      startedAt: typeof r.startedAt === 'string' ? r.startedAt : '',
      argv: Array.isArray(r.argv) ? r.argv.map(String) : [],
      file: typeof r.file === 'string' ? r.file : '',
    };
  } catch {
    return null;
  }
}

/**
 * Reads a sidecar without following a symlink, without blocking on a FIFO,
 * and only if it is a small regular file.
 */
function readSidecar(path: string): Buffer | null {
  return readSidecarOwned(path)?.buf ?? null;
}

/** readSidecar, with the uid that owns the file. */
function readSidecarOwned(path: string): { buf: Buffer; uid: number } | null {
  let fd: number;
  try {
    fd = openSync(path, fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0) | (fsc.O_NONBLOCK ?? 0));
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > RECORD_MAX) return null;
    const buf = Buffer.alloc(RECORD_MAX);
    const n = readSync(fd, buf, 0, RECORD_MAX, 0);
    return { buf: buf.subarray(0, n), uid: st.uid };
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the record of the exclusive holder of `lockPath` (whose open file has
 * `fileIdentity`). Returns what to remove on release, or null when no record
 * could be written: a record is a courtesy, the lock is held either way.
 */
export function writeRecord(lockPath: string, fileIdentity: string, argv: string[] | undefined): WrittenRecord | null {
  const target = recordPath(lockPath);
  let tmp = '';
  let fd = -1;
  for (let i = 1; fd < 0; i++) {
    tmp = join(dirname(target), `.${basename(lockPath)}.fslock-holder-${randomTag()}.tmp`);
    try {
      fd = binding.open(tmp, C.OPEN_WRITE | C.OPEN_CREATE | C.OPEN_EXCLUSIVE | C.OPEN_NOFOLLOW);
    } catch (err) {
      // a planted name: take another; anything else (the directory is not writable): no record
      if (i >= NAME_ATTEMPTS || errorCode(err) !== 'EEXIST') return null;
    }
  }
  let written = true;
  try {
    binding.writeAt(fd, formatRecord(fileIdentity, argv), 0);
  } catch {
    written = false;
  } finally {
    binding.close(fd);
  }
  if (!written) {
    unlinkQuietly(tmp);
    return null;
  }
  // Replace only a free name or a stale record (a regular file that parses as
  // one); never a user's file, and never a symlink, whoever made it.
  let st;
  try {
    st = lstatSync(target);
  } catch (err) {
    st = errorCode(err) === 'ENOENT' ? null : undefined;
  }
  const replaceable =
    st === null || (st !== undefined && st.isFile() && parseRecord(readSidecar(target) ?? Buffer.alloc(0)) !== null);
  if (!replaceable) {
    unlinkQuietly(tmp);
    return null;
  }
  const identity = lstatIdentity(tmp);
  try {
    if (st === null) renameFresh(tmp, target);
    else renameSync(tmp, target);
  } catch {
    unlinkQuietly(tmp);
    return null;
  }
  return identity === null ? null : { path: target, identity };
}

/**
 * Writes a record (no command line) into a lock file that fslock has just
 * created itself with O_EXCL and that nobody else writes: the compatibility
 * layers' own lock files, which mark their holder this way as upstream's do.
 * Never used on a file a user names.
 */
export function writeRecordIntoOwnFile(fd: number, identity = binding.identity(fd)): void {
  binding.writeAt(fd, formatRecord(identity, undefined), 0);
}

/** Whether the file at `path` starts with an fslock record (a compat layer's lock file). */
export function fileHoldsRecord(path: string): boolean {
  const buf = readSidecar(path);
  return buf !== null && parseRecord(buf) !== null;
}

/**
 * Whether the open file `fd` starts with an fslock record naming that very
 * file (a compat layer's lock file), whose identity is `identity` (a lock's,
 * taken while the file had its name). Read through the descriptor: the
 * answer is about the file in hand, whatever its name holds by now.
 */
export function descriptorHoldsOwnRecord(fd: number, identity = binding.identity(fd)): boolean {
  const buf = Buffer.alloc(RECORD_MAX);
  try {
    const r = parseRecord(buf.subarray(0, binding.readAt(fd, buf, 0)));
    return r !== null && r.file === identity;
  } catch {
    return false;
  }
}

/** Removes a record this process wrote, if the name still holds it. */
export function removeRecord(rec: WrittenRecord): void {
  if (lstatIdentity(rec.path) === rec.identity) unlinkQuietly(rec.path);
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}

/** The record beside `lockPath`, if one is there and names the file with `fileIdentity`. */
export function readRecord(lockPath: string, fileIdentity?: string): HolderRecord | null {
  const r = readOwnedRecord(lockPath, fileIdentity);
  if (!r) return null;
  const { uid: _uid, ...out } = r;
  return out;
}

/** readRecord, with the uid that owns the sidecar. */
function readOwnedRecord(lockPath: string, fileIdentity?: string): (HolderRecord & { uid: number }) | null {
  const got = readSidecarOwned(recordPath(lockPath));
  const rec = got && parseRecord(got.buf);
  if (!rec) return null;
  if (fileIdentity !== undefined && rec.file !== fileIdentity) return null;
  const { file: _file, ...out } = rec;
  return { ...out, uid: got.uid };
}

/** The user ids of a live process (real, effective, saved, filesystem), or null when unknown (Linux /proc). */
function processUids(pid: number): number[] | null {
  try {
    const m = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? m.slice(1, 5).map(Number) : null;
  } catch {
    return null;
  }
}

/**
 * Whether a sidecar owned by `uid` can have been written by process `pid`:
 * anyone who can write the directory can plant one naming any pid. On Linux
 * the owner must be that process's user (its effective or filesystem uid);
 * elsewhere, where a process's user cannot be read, the inspecting user's own
 * or root's. Windows has no owner to compare (its uid reads 0).
 */
function ownerCanBe(uid: number, pid: number): boolean {
  if (!platform().fileOwners) return true;
  if (platform().lockTable) {
    const ids = processUids(pid);
    return ids !== null && (ids[1] === uid || ids[3] === uid);
  }
  return uid === 0 || uid === process.getuid?.();
}

function processLives(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errorCode(err) === 'EPERM';
  }
}

/** The processes behind blocked requests (their pid, command, kind and mode), as /proc/locks lists them. */
export function waitingProcesses(blocked: KernelLock[]): LiveHolder[] {
  return blocked
    .filter((b): b is KernelLock & { pid: number } => b.pid !== null)
    .map((b) => ({ pid: b.pid, argv: commandLine(b.pid), kind: b.kind, mode: b.mode }));
}

export type HolderSource = 'record' | 'kernel';

export interface CurrentHolder extends HolderRecord {
  source: HolderSource;
  /** The record names another host: it cannot be checked from here. */
  remote?: boolean;
}

/**
 * The holder of the lock on the open file `fd` (opened from `path`): its
 * record when one is there and believable (see above), else (Linux) the
 * process the kernel names, with its command line from /proc. Null when
 * unknown. `table` may pass an already read lock table.
 */
export function currentHolder(
  fd: number,
  path: string,
  table?: LockTable | null,
  excludeSelf = false,
): CurrentHolder | null {
  let identity: string;
  try {
    identity = binding.identity(fd);
  } catch {
    return null;
  }
  const read = table === undefined ? readLockTableSync() : table;
  // excludeSelf: the caller holds part of the lock itself (flock taken, OFD
  // contended), so this process's own entries are not the holder.
  const kernelPids =
    read === null
      ? null
      : read
          .entries(identity)
          .locks.map((l) => l.pid)
          .filter((p): p is number => p !== null && !(excludeSelf && p === process.pid));
  // The pid the kernel table names is whoever took the lock; that process may
  // have died since while a child that inherited the descriptor holds on. Only
  // live processes are named: those with a descriptor that carries the lock.
  let livePids = kernelPids?.filter(processLives) ?? null;
  if (kernelPids !== null && kernelPids.length > 0 && livePids!.length === 0) {
    livePids = liveHolders(identity)
      .map((h) => h.pid)
      .filter((p) => !(excludeSelf && p === process.pid));
  }
  const rec = readOwnedRecord(path, identity);
  if (rec) {
    const { uid, ...shown } = rec;
    // On Linux the kernel is the truth: a record it contradicts is not
    // believed. "Silent" means it shows no lock at all: a kernel naming only
    // dead pids (holders this user cannot see) still contradicts any record.
    const kernelSilent = kernelPids === null || kernelPids.length === 0;
    if (rec.hostname && rec.hostname !== hostname()) {
      // another host's holder (a network filesystem): unverifiable, so labelled,
      // and only when no local process holds the file
      if (kernelSilent) return { ...shown, source: 'record', remote: true };
    } else if ((kernelSilent || livePids!.includes(rec.pid)) && processLives(rec.pid) && ownerCanBe(uid, rec.pid)) {
      return { ...shown, source: 'record' };
    }
  }
  const pid = livePids?.[0];
  if (pid === undefined) return null;
  return { pid, hostname: hostname(), startedAt: '', argv: commandLine(pid), source: 'kernel' };
}

function commandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return []; // gone meanwhile, or not visible from here
  }
}

/** A live process with a descriptor that carries a lock on a file (Linux). */
export interface LiveHolder {
  pid: number;
  argv: string[];
  kind: KernelLock['kind'];
  mode: LockMode;
}

/**
 * Every live process that has a descriptor carrying a lock on the file with
 * `identity`, from /proc/<pid>/fdinfo (as lslocks finds its HOLDERS): for
 * flock and OFD locks, each process sharing the locked open file description
 * (a child that inherited it included). Processes of other users are visible
 * only to root. Linux only; [] elsewhere.
 */
export function liveHolders(identity: string): LiveHolder[] {
  const out: LiveHolder[] = [];
  for (const { pid, lines } of descriptorLocks()) {
    const seen = new Set<string>();
    for (const l of parseProcLocks(lines.join('\n'), identity).locks) {
      const key = `${l.kind}:${l.mode}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ pid, argv: commandLine(pid), kind: l.kind, mode: l.mode });
    }
  }
  return out;
}

/**
 * The locks each live process's descriptors carry (of `only` these processes,
 * or all), from /proc/<pid>/fdinfo: per process, its "lock:" lines in
 * /proc/locks' format (the PID field names whoever took the lock, or -1).
 * Linux only; [] elsewhere. Other users' processes are visible only to root.
 */
export function descriptorLocks(only?: number[]): Array<{ pid: number; lines: string[] }> {
  if (!platform().lockTable) return [];
  let pids: string[];
  try {
    pids = only ? only.map(String) : readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return [];
  }
  const out: Array<{ pid: number; lines: string[] }> = [];
  for (const p of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fdinfo`);
    } catch {
      continue; // gone, or another user's
    }
    const lines: string[] = [];
    for (const fd of fds) {
      let text: string;
      try {
        text = readFileSync(`/proc/${p}/fdinfo/${fd}`, 'utf8');
      } catch {
        continue;
      }
      if (!text.includes('lock:')) continue;
      for (const l of text.split('\n')) if (l.startsWith('lock:')) lines.push(l.slice(5).trimStart());
    }
    if (lines.length > 0) out.push({ pid: Number(p), lines });
  }
  return out;
}
