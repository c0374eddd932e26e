/**
 * Garbage collection and listing of session directories. See protocol.ts for
 * the protocol and the reasoning behind each rule.
 */
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { binding } from '../binding.js';
import { tryLock, type FileLock } from '../lock.js';
import { checkPath } from '../options.js';
import { inspectWith } from '../inspect.js';
import { readProcLocksSync } from '../holder.js';
import { retryTransient } from '../retry.js';
import type { PrimitiveName } from '../primitives.js';
import { fsops } from './fsops.js';
import { isFinalized, LOCK_SUFFIX, parseLockFile, parseSessionDir, type ParsedName } from './naming.js';
import { nowMicros, parseSessionOptions, type GcOptions } from './options.js';

export interface GcError {
  path: string;
  code: string;
  message: string;
}

export interface GcReport {
  /** Deleted (with dryRun: would be deleted). */
  deleted: string[];
  /** Held by a live process (or open in this one): left alone. */
  inUse: string[];
  /** Left alone by rule: too young to judge, or the newest finalized session. */
  kept: string[];
  /** What failed; collection goes on past errors and never throws them. */
  errors: GcError[];
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

/** Prefix of temporary names used to remove directories atomically. */
export const TRASH_PREFIX = '.fslock-trash-';

/** Key of a live session in the process-wide marks (shared with worker threads). */
export function liveKey(crateDir: string, prefix: string): string {
  return `fslock-session:${crateDir}/${prefix}`;
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
    return tryLock(path, { create: false, record: false, primitive });
  },
  respectLiveMarks: true,
};

function isLive(crateDir: string, prefix: string): boolean {
  return internals.respectLiveMarks && binding.isMarked(liveKey(crateDir, prefix));
}

function errorCode(err: unknown): string {
  return (err as { code?: string })?.code ?? 'UNKNOWN';
}

/**
 * Removes a directory without ever leaving a half-deleted one under a session
 * name: rename it to a hidden trash name first (atomic), then delete that.
 * Both steps retry the transient errors Windows produces. ENOENT: already gone.
 */
export async function removeDirAtomically(dir: string): Promise<void> {
  const trash = join(dirname(dir), `${TRASH_PREFIX}${basename(dir)}-${randomBytes(4).toString('hex')}`);
  try {
    await retryTransient(() => fsops.rename(dir, trash));
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return;
    throw err;
  }
  await removeTrash(trash);
}

async function removeTrash(trash: string): Promise<void> {
  await retryTransient(() => fsops.remove(trash));
}

/** Deletes a lock file (its holder must hold it exclusively). ENOENT: already gone. */
export async function unlinkLockFile(path: string): Promise<void> {
  try {
    await retryTransient(() => fsops.unlink(path));
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
}

interface Entry {
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

/** @internal The collection itself, on a canonical crate directory. */
export async function collectIn(
  crateDir: string,
  gcAge: number,
  nowUs: bigint,
  dryRun: boolean,
  primitive: 'auto' | PrimitiveName,
): Promise<GcReport> {
  const report: GcReport = { deleted: [], inUse: [], kept: [], errors: [] };
  const fail = (path: string, err: unknown) => {
    if (errorCode(err) === 'ENOENT') return; // someone else collected it first: fine
    report.errors.push({ path, code: errorCode(err), message: (err as Error)?.message ?? String(err) });
  };
  const cutoff = nowUs - BigInt(Math.floor(gcAge * 1000));

  const locks = new Map<string, string>(); // prefix -> lock file name
  const dirs: Entry[] = [];
  const trash: string[] = [];
  for (const ent of await fsops.readdir(crateDir)) {
    const name = ent.name;
    if (name.startsWith(TRASH_PREFIX)) {
      trash.push(name);
      continue;
    }
    const lf = parseLockFile(name);
    if (lf) {
      locks.set(lf.prefix, name);
      continue;
    }
    const sd = parseSessionDir(name);
    if (sd) dirs.push({ name, parsed: sd });
  }
  const dirPrefixes = new Set(dirs.map((d) => d.parsed.prefix));

  // 1. Lock files without a directory: leftovers, once old enough (a new
  //    session creates its lock file a moment before its directory).
  for (const [prefix, name] of locks) {
    if (dirPrefixes.has(prefix)) continue;
    const path = join(crateDir, name);
    const micros = parseLockFile(name)!.micros;
    if (micros >= cutoff) {
      report.kept.push(path);
      continue;
    }
    if (isLive(crateDir, prefix)) {
      report.inUse.push(path);
      continue;
    }
    let held: Pick<FileLock, 'release'> | null = null;
    try {
      held = internals.lockForCollection(path, primitive);
      if (!held) {
        report.inUse.push(path);
        continue;
      }
      if (!dryRun) await unlinkLockFile(path);
      report.deleted.push(path);
    } catch (err) {
      fail(path, err);
    } finally {
      held?.release();
    }
  }

  // 2. Session directories without a lock file: nobody can hold them.
  const withLock: Entry[] = [];
  for (const d of dirs) {
    const path = join(crateDir, d.name);
    if (locks.has(d.parsed.prefix)) {
      withLock.push(d);
      continue;
    }
    if (isLive(crateDir, d.parsed.prefix)) {
      report.inUse.push(path);
      continue;
    }
    try {
      // Look again: the listing may be older than a lock file created since.
      if (binding.pathIdentity(join(crateDir, d.parsed.prefix + LOCK_SUFFIX)) !== null) {
        report.kept.push(path);
        continue;
      }
      if (!dryRun) await removeDirAtomically(path);
      report.deleted.push(path);
    } catch (err) {
      fail(path, err);
    }
  }

  // 3. Directories with a lock file. The lock is taken exclusively, without
  //    waiting: if that fails, a live process holds it (as owner, or as a
  //    reader copying from it) and the directory is left alone.
  const candidates: Array<{ entry: Entry; path: string; lockPath: string; lock: Pick<FileLock, 'release'> }> = [];
  try {
    for (const d of withLock) {
      const path = join(crateDir, d.name);
      const lockPath = join(crateDir, d.parsed.prefix + LOCK_SUFFIX);
      const finalized = isFinalized(d.parsed);
      if (!finalized && d.parsed.micros >= cutoff) {
        report.kept.push(path); // too young to tell a dead owner from one still starting up
        continue;
      }
      if (isLive(crateDir, d.parsed.prefix)) {
        report.inUse.push(path); // open in this process: never a candidate, whatever the clock says
        continue;
      }
      let held: Pick<FileLock, 'release'> | null = null;
      try {
        held = internals.lockForCollection(lockPath, primitive);
      } catch (err) {
        fail(lockPath, err);
        continue;
      }
      if (!held) {
        report.inUse.push(path);
        continue;
      }
      if (finalized) {
        candidates.push({ entry: d, path, lockPath, lock: held }); // decided below, lock kept
        continue;
      }
      // A working directory whose owner is gone.
      try {
        if (!dryRun) {
          await removeDirAtomically(path);
          await unlinkLockFile(lockPath);
        }
        report.deleted.push(path);
      } catch (err) {
        fail(path, err);
      } finally {
        held.release();
      }
    }

    // 4. Finalized directories: all but the newest we could lock are obsolete.
    candidates.sort((a, b) =>
      a.entry.parsed.micros === b.entry.parsed.micros
        ? a.entry.name.localeCompare(b.entry.name)
        : a.entry.parsed.micros < b.entry.parsed.micros ? -1 : 1,
    );
    const newest = candidates.pop();
    if (newest) {
      report.kept.push(newest.path);
      newest.lock.release();
    }
    for (const c of candidates) {
      try {
        if (!dryRun) {
          await removeDirAtomically(c.path);
          await unlinkLockFile(c.lockPath);
        }
        report.deleted.push(c.path);
      } catch (err) {
        fail(c.path, err);
      } finally {
        c.lock.release();
      }
    }
  } finally {
    for (const c of candidates) c.lock.release(); // idempotent; covers an unexpected throw
  }

  // 5. Trash left by a removal that failed half-way (never referenced by anyone).
  for (const name of trash) {
    const path = join(crateDir, name);
    try {
      if (!dryRun) await removeTrash(path);
      report.deleted.push(path);
    } catch (err) {
      fail(path, err);
    }
  }
  return report;
}

/** The session directories in a crate directory, oldest first. */
export async function listSessions(crateDir: string): Promise<SessionInfo[]> {
  checkPath(crateDir, 'crateDir');
  const real = await canonicalCrateDir(crateDir);
  const entries = await fsops.readdir(real);
  const names = new Set(entries.map((e) => e.name));
  const proc = readProcLocksSync();
  const out: SessionInfo[] = [];
  for (const ent of entries) {
    const parsed = parseSessionDir(ent.name);
    if (!parsed || !ent.isDirectory()) continue;
    const lockName = parsed.prefix + LOCK_SUFFIX;
    const lockFile = names.has(lockName) ? join(real, lockName) : null;
    let held = false;
    if (lockFile) {
      try {
        held = inspectWith(lockFile, proc).held;
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
