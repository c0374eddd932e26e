/**
 * Garbage collection and listing of session directories. See protocol.ts for
 * the protocol and the reasoning behind each rule.
 */
import { join } from 'path';
import { binding } from '../binding.js';
import { tryLock, type FileLock } from '../lock.js';
import { checkPath } from '../options.js';
import { inspectWith } from '../inspect.js';
import { readLockTableSync } from '../lock-table.js';
import { errorCode } from '../errors.js';
import type { PrimitiveName } from '../primitives.js';
import { fsops, removeDirAtomically, removeTrash, TRASH_NAME, unlinkLockFile } from './fsops.js';
import { gcChannel } from '../trace.js';
import { isLiveSession } from './live.js';
import { isFinalized, LOCK_SUFFIX, parseLockFile, parseSessionDir, type ParsedName } from './naming.js';
import { nowMicros, parseSessionOptions, type GcOptions } from './options.js';

export interface GcError {
  path: string;
  code: string;
  message: string;
}

export interface GcReport {
  /** Deleted. Empty with `dryRun` (see `wouldDelete`). */
  deleted: string[];
  /** With `dryRun`: what a real collection would delete now. */
  wouldDelete: string[];
  /** Held by a live process (or open in this one): left alone. */
  inUse: string[];
  /** Left alone by rule: too young to judge, or the newest finalized session. */
  kept: string[];
  /** What failed; collection goes on past errors and never throws them. */
  errors: GcError[];
  /**
   * Set when nothing was collected because the directory is not a crate
   * directory (it holds no session lock file): why, in words. Nothing in it
   * was touched.
   */
  skipped: string | null;
  /** With `skipped`: subdirectories that are crate directories (hold session lock files). */
  crateDirs: string[];
}

export interface SessionInfo {
  name: string;
  path: string;
  state: 'working' | 'finalized';
  /** 'working', or the finalized tag. */
  tag: string;
  createdAt: Date;
  /** The lock file's path, or null when it is missing (the directory is garbage). */
  lockFile: string | null;
  /** Whether someone holds the lock file now. */
  held: boolean;
}

/**
 * Test seams. `lockForCollection` is how the collector proves a session is
 * dead; `respectLiveMarks` is the second, independent guarantee that a
 * process never collects a session it holds itself.
 */
export const internals: {
  lockForCollection(path: string, primitive: 'auto' | PrimitiveName): Pick<FileLock, 'release'> | null;
  respectLiveMarks: boolean;
} = {
  lockForCollection(path: string, primitive: 'auto' | PrimitiveName): FileLock | null {
    return tryLock(path, { create: false, record: false, primitive, keepOpen: false });
  },
  respectLiveMarks: true,
};

function isLive(crateDir: string, prefix: string): boolean {
  return internals.respectLiveMarks && isLiveSession(crateDir, prefix);
}

export interface Entry {
  name: string;
  parsed: ParsedName;
}

export async function canonicalCrateDir(crateDir: string): Promise<string> {
  return fsops.realpath(crateDir);
}

/**
 * Collects garbage in a crate directory. Errors are reported, not thrown
 * (apart from bad arguments and a crate directory that cannot be read).
 */
export async function collectGarbage(crateDir: string, options?: GcOptions): Promise<GcReport> {
  checkPath(crateDir, 'crateDir');
  const o = parseSessionOptions(options, ['gcAge', 'now', 'dryRun', 'primitive']);
  const real = await canonicalCrateDir(crateDir);
  return collectIn(real, o.gcAge, nowMicros(o.now), o.dryRun, o.primitive);
}

/** Publishes a collection on `fslock:gc` (see trace.ts) when someone listens. */
function traced(crateDir: string, dryRun: boolean, report: GcReport): GcReport {
  if (gcChannel.hasSubscribers) gcChannel.publish({ crateDir, dryRun, report });
  return report;
}

function emptyReport(): GcReport {
  return { deleted: [], wouldDelete: [], inUse: [], kept: [], errors: [], skipped: null, crateDirs: [] };
}

/** What a survey of a crate directory found, by the exact names of the protocol. */
interface Survey {
  /** prefix -> lock file name (regular files only) */
  locks: Map<string, string>;
  /** session directories (directories only) */
  dirs: Entry[];
  /** trash this process's user left behind (directories of the exact trash shape) */
  trash: string[];
}

async function survey(crateDir: string): Promise<Survey> {
  const out: Survey = { locks: new Map(), dirs: [], trash: [] };
  const euid = typeof process.geteuid === 'function' ? process.geteuid() : null;
  for (const ent of await fsops.readdir(crateDir)) {
    const name = ent.name;
    if (TRASH_NAME.test(name) && ent.isDirectory()) {
      // only trash our own rename can have produced: a directory of that exact
      // shape, owned by us (another user's planted entry is left alone)
      const st = await fsops.lstat(join(crateDir, name)).catch(() => null);
      if (st && st.isDirectory() && (euid === null || st.uid === euid)) out.trash.push(name);
      continue;
    }
    const lf = parseLockFile(name);
    if (lf) {
      if (ent.isFile()) out.locks.set(lf.prefix, name);
      continue;
    }
    const sd = parseSessionDir(name);
    if (sd && ent.isDirectory()) out.dirs.push({ name, parsed: sd });
  }
  return out;
}

/** Subdirectories of `dir` that hold session lock files (for a collector pointed one level too high). */
async function crateDirsBelow(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const ent of await fsops.readdir(dir)) {
    if (!ent.isDirectory()) continue;
    const sub = join(dir, ent.name);
    try {
      if ((await fsops.readdir(sub)).some((e) => e.isFile() && parseLockFile(e.name) !== null)) found.push(sub);
    } catch {
      // unreadable: not a candidate
    }
  }
  return found.sort();
}

/**
 * The verdict on one entry. Each rule below returns one, and states the
 * invariant it enforces; `sweep` carries verdicts out.
 */
type Verdict =
  | { kind: 'kept' | 'inUse'; path: string }
  | { kind: 'delete'; path: string; remove: () => Promise<void>; release?: () => void }
  | { kind: 'error'; path: string; err: unknown };

interface Judge {
  crateDir: string;
  cutoff: bigint;
  primitive: 'auto' | PrimitiveName;
}

/** Locks `lockPath` exclusively without waiting: null means a live process holds it. */
function lockDead(j: Judge, lockPath: string): Pick<FileLock, 'release'> | null {
  return internals.lockForCollection(lockPath, j.primitive);
}

/**
 * Rule 1, orphan lock files (no directory): deleted once older than gcAge and
 * only while locked exclusively — a new session creates its lock file a
 * moment before its directory, and a lock file is never deleted while held.
 * The survey is not a snapshot: a session renamed from -working to its tag
 * while the directory was being read can be missing from it. So with the lock
 * held (no owner can be renaming now) the directory is listed again, and a
 * lock file that has a session after all is kept.
 */
async function judgeOrphanLock(j: Judge, prefix: string, name: string): Promise<Verdict> {
  const path = join(j.crateDir, name);
  if (parseLockFile(name)!.micros >= j.cutoff) return { kind: 'kept', path };
  if (isLive(j.crateDir, prefix)) return { kind: 'inUse', path };
  let held: Pick<FileLock, 'release'> | null = null;
  try {
    held = lockDead(j, path);
    if (!held) return { kind: 'inUse', path };
    const again = await fsops.readdir(j.crateDir);
    if (again.some((e) => parseSessionDir(e.name)?.prefix === prefix)) {
      held.release();
      return { kind: 'kept', path };
    }
    const h = held;
    return { kind: 'delete', path, remove: () => unlinkLockFile(path), release: () => h.release() };
  } catch (err) {
    held?.release();
    return { kind: 'error', path, err };
  }
}

/**
 * Rule 2, session directories without a lock file: nobody can hold them, so
 * they are garbage — unless a lock file has appeared since the survey.
 */
function judgeUnlockedDir(j: Judge, d: Entry): Verdict {
  const path = join(j.crateDir, d.name);
  if (isLive(j.crateDir, d.parsed.prefix)) return { kind: 'inUse', path };
  try {
    if (binding.pathIdentity(join(j.crateDir, d.parsed.prefix + LOCK_SUFFIX)) !== null) return { kind: 'kept', path };
  } catch (err) {
    return { kind: 'error', path, err };
  }
  return { kind: 'delete', path, remove: async () => void (await removeDirAtomically(path)) };
}

/**
 * Rule 3, working directories: deleted only when older than gcAge (younger
 * ones may belong to an owner still starting up), never when open in this
 * process, and only while their lock is held exclusively by the collector —
 * which proves the owner is gone.
 */
function judgeWorking(j: Judge, d: Entry): Verdict | Promise<Verdict> {
  const path = join(j.crateDir, d.name);
  const lockPath = join(j.crateDir, d.parsed.prefix + LOCK_SUFFIX);
  if (d.parsed.micros >= j.cutoff) return { kind: 'kept', path };
  if (isLive(j.crateDir, d.parsed.prefix)) return { kind: 'inUse', path };
  return judgeLocked(j, path, lockPath);
}

/**
 * Rule 4, finalized directories: the newest one is kept and never locked by
 * the collector, so sessions opening meanwhile can always seed from it; every
 * older one is obsolete, and deleted only while locked exclusively (a reader
 * copying from it holds it shared, so it is skipped this time).
 */
function judgeFinalized(j: Judge, d: Entry, newest: boolean): Verdict | Promise<Verdict> {
  const path = join(j.crateDir, d.name);
  if (newest) return { kind: 'kept', path };
  if (isLive(j.crateDir, d.parsed.prefix)) return { kind: 'inUse', path };
  return judgeLocked(j, path, join(j.crateDir, d.parsed.prefix + LOCK_SUFFIX));
}

/**
 * Takes the lock of a session directory exclusively and, holding it, checks
 * that the directory is still there under the surveyed name: an owner renames
 * its directory (finalize) only while holding the lock, so a `-working` name
 * seen before we locked may have become a finalized one since, and its lock
 * file is then the finalized session's, not garbage.
 */
async function judgeLocked(j: Judge, path: string, lockPath: string): Promise<Verdict> {
  let held: Pick<FileLock, 'release'> | null;
  try {
    held = lockDead(j, lockPath);
  } catch (err) {
    return { kind: 'error', path: lockPath, err };
  }
  if (!held) return { kind: 'inUse', path };
  const h = held;
  const still = await fsops.lstat(path).then(
    (st) => st.isDirectory(),
    () => false,
  );
  if (!still) {
    h.release();
    return { kind: 'kept', path: lockPath }; // finalized or abandoned meanwhile: not ours to touch
  }
  return {
    kind: 'delete',
    path,
    remove: async () => {
      if (await removeDirAtomically(path)) await unlinkLockFile(lockPath);
    },
    release: () => h.release(),
  };
}

/** Carries out one verdict (one at a time: a lock is held only while its entry is removed). */
async function sweep(v: Verdict, dryRun: boolean, report: GcReport): Promise<void> {
  const fail = (path: string, err: unknown) => {
    if (errorCode(err) === 'ENOENT') return; // someone else collected it first: fine
    report.errors.push({ path, code: errorCode(err) ?? 'UNKNOWN', message: (err as Error)?.message ?? String(err) });
  };
  switch (v.kind) {
    case 'kept':
      report.kept.push(v.path);
      return;
    case 'inUse':
      report.inUse.push(v.path);
      return;
    case 'error':
      fail(v.path, v.err);
      return;
    case 'delete':
      try {
        if (dryRun) {
          report.wouldDelete.push(v.path);
        } else {
          await v.remove();
          report.deleted.push(v.path);
        }
      } catch (err) {
        fail(v.path, err);
      } finally {
        v.release?.();
      }
  }
}

/** @internal The collection itself, on a canonical crate directory. */
export async function collectIn(
  crateDir: string,
  gcAge: number,
  nowUs: bigint,
  dryRun: boolean,
  primitive: 'auto' | PrimitiveName,
): Promise<GcReport> {
  const report = emptyReport();
  const found = await survey(crateDir);
  if (found.locks.size === 0) {
    // Not a crate directory (or one no session ever used): touch nothing.
    report.crateDirs = await crateDirsBelow(crateDir);
    report.skipped =
      report.crateDirs.length > 0
        ? `${crateDir} holds no session lock file (s-*.lock), but ${report.crateDirs.length === 1 ? 'this subdirectory does' : 'these subdirectories do'}: ` +
          `${report.crateDirs.join(', ')}. Collect in each of those; nothing was changed here.`
        : `${crateDir} holds no session lock file (s-*.lock), so it is not a crate directory; nothing was changed.`;
    return traced(crateDir, dryRun, report);
  }
  const j: Judge = { crateDir, cutoff: nowUs - BigInt(Math.floor(gcAge * 1000)), primitive };
  const dirPrefixes = new Set(found.dirs.map((d) => d.parsed.prefix));
  for (const [prefix, name] of found.locks) {
    if (!dirPrefixes.has(prefix)) await sweep(await judgeOrphanLock(j, prefix, name), dryRun, report);
  }
  const finalized: Entry[] = [];
  for (const d of found.dirs) {
    if (!found.locks.has(d.parsed.prefix)) await sweep(judgeUnlockedDir(j, d), dryRun, report);
    else if (isFinalized(d.parsed)) finalized.push(d);
    else await sweep(await judgeWorking(j, d), dryRun, report);
  }
  finalized.sort(newestFirst);
  for (const [i, d] of finalized.entries()) await sweep(await judgeFinalized(j, d, i === 0), dryRun, report);
  // Rule 5, trash: left by a removal that failed half-way, referenced by no one.
  for (const name of found.trash) {
    const path = join(crateDir, name);
    await sweep({ kind: 'delete', path, remove: () => removeTrash(path) }, dryRun, report);
  }
  return traced(crateDir, dryRun, report);
}

/** Orders session entries newest first (by timestamp, then name). */
export function newestFirst(a: Entry, b: Entry): number {
  if (a.parsed.micros !== b.parsed.micros) return a.parsed.micros > b.parsed.micros ? -1 : 1;
  return b.name.localeCompare(a.name);
}

/** The session directories in a crate directory, oldest first. */
export async function listSessions(crateDir: string): Promise<SessionInfo[]> {
  checkPath(crateDir, 'crateDir');
  const real = await canonicalCrateDir(crateDir);
  const entries = await fsops.readdir(real);
  const names = new Set(entries.map((e) => e.name));
  const table = readLockTableSync();
  const out: SessionInfo[] = [];
  for (const ent of entries) {
    const parsed = parseSessionDir(ent.name);
    if (!parsed || !ent.isDirectory()) continue;
    const lockName = parsed.prefix + LOCK_SUFFIX;
    const lockFile = names.has(lockName) ? join(real, lockName) : null;
    let held = false;
    if (lockFile) {
      try {
        held = inspectWith(lockFile, table, false).held;
      } catch {
        held = false;
      }
    }
    out.push({
      name: ent.name,
      path: join(real, ent.name),
      state: isFinalized(parsed) ? 'finalized' : 'working',
      tag: parsed.tag,
      createdAt: new Date(Number(parsed.micros / 1000n)),
      lockFile,
      held,
    });
  }
  return out.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.name.localeCompare(b.name));
}
