/**
 * # Session directories: a copy-on-write cache protocol
 *
 * A *crate directory* holds the versions of one cache. Every version is a
 * directory; a finalized version is never modified again, so any number of
 * processes can read it at once, and a process that wants to change the
 * cache works on a private copy that nobody else can see until it publishes
 * it. The names are the Rust compiler's (see naming.ts), so these functions
 * work on the compiler's own incremental directories.
 *
 * ## The life of a session
 *
 *   openSession                       finalize(tag)
 *   ───────────► s-T-R-working ──────────────────► s-T-R-tag ──► (obsolete once a newer one exists)
 *                 │ lock s-T-R.lock   rename, then  │ lock file kept, unlocked;
 *                 │ held exclusively  release        │ readers take it shared
 *                 │
 *                 └── abandon(), or the process dies ──► garbage
 *
 * 1. Allocate. Pick `s-{T}-{R}` (T = now in µs, R = random u32) and lock
 *    `s-{T}-{R}.lock` exclusively, creating it, *before* the directory
 *    `s-{T}-{R}-working` exists. So whenever a working directory exists, its
 *    lock file exists too and is held for as long as its owner lives.
 * 2. Seed. Take the newest finalized directory, lock its lock file *shared*
 *    and hard-link its files into the working directory, copying where links
 *    fail (another filesystem, no hard links, permissions). A collector
 *    deletes a finalized directory only while holding its lock exclusively,
 *    and never locks the newest one at all, so a shared lock guarantees the
 *    source stays whole while it is read. The newest is waited for briefly
 *    (its finalizer holds it for the moment between rename and release);
 *    older ones are tried without waiting. A source that vanished (collected
 *    because a newer one exists) sends us back to the listing, which then
 *    shows the newer one. The session starts empty only when no finalized
 *    directory exists. Any other failure while seeding (ENOSPC, EACCES, EIO)
 *    fails openSession with that error after removing the working directory
 *    and its lock file: a seed is complete or there is no session.
 * 3. Work. The directory is private: nobody else writes it, and collectors
 *    leave it alone because its lock is held.
 * 4. Finalize: rename `-working` to `-{tag}` (atomic; retried on Windows'
 *    transient EPERM/EACCES/EBUSY), then release the lock. Readers see either
 *    no version or a complete one, never a partial one. Or abandon: remove the
 *    directory, then the lock file while still holding it.
 * 5. Collect garbage (after finalize, or on demand): see gc.ts.
 *
 * ## Invariants, and why each step is safe
 *
 * - *A directory is deleted only by someone holding its lock exclusively*
 *   (or when it has no lock file at all, i.e. no one can be holding it). A
 *   live owner holds its lock exclusively, a reader holds it shared, and the
 *   kernel releases both when a process dies, so "could lock it exclusively"
 *   means exactly "nobody is using it".
 * - *A lock file is deleted only while held exclusively* (or, for an orphan,
 *   once locked). A waiter granted a lock on a deleted file would hold a lock
 *   nobody else can see; fslock's locks re-check the path after every
 *   acquisition, and the protocol never waits on session locks anyway.
 * - *The lock must exclude other handles in the same process.* The compiler
 *   once collected its own live session because process-scoped POSIX fcntl
 *   locks let a second descriptor in the same process "acquire" a lock the
 *   process already held, and a slow session looked old enough to be
 *   abandoned. fslock's locks exclude every other descriptor and worker
 *   thread. Independently of that, a session open anywhere in this process
 *   (any worker thread) is marked in a process-wide table, and collectors
 *   never consider a marked session, whatever its age.
 * - *Age only protects the moment between creating and locking.* Working
 *   directories and orphan lock files younger than `gcAge` are left alone;
 *   fslock creates and locks in one call, so the window is tiny, but other
 *   tools (the compiler) create first and lock after.
 * - *Removal is atomic at the session level.* A directory is first renamed to
 *   a hidden `.fslock-trash-*` name (invisible to the protocol), then deleted;
 *   a removal that fails half-way leaves trash for a later collection, never a
 *   half-deleted session that someone might seed from.
 * - *Everything tolerates losing races.* Many processes collect at once: an
 *   entry that vanishes (ENOENT) was collected by someone else and is not an
 *   error; a collection never throws its per-entry errors and never aborts a
 *   finalize.
 * - *Only the newest finalized directory is kept*, and the collector never
 *   locks it, so it never blocks a reader of the version it keeps; an older
 *   one being read is skipped this time and collected by a later pass.
 * - *Only exact names count.* Entries that merely look like sessions
 *   (s-2024-photos-raw), session names of the wrong type (a file named like a
 *   directory, a directory named like a lock file), and trash not of our own
 *   making are left alone; a directory without any session lock file is not
 *   a crate directory and nothing in it is touched.
 */
import { sessionFinalizeChannel, sessionOpenChannel } from '../trace.js';
import { dirname, join } from 'path';
import { errorCode, FslockError, invalidArgValue, notSupportedError } from '../errors.js';
import { lock as waitForLock, tryLock, type FileLock } from '../lock.js';
import { checkOptionsObject, checkPath, parseSignal, parseTimeout } from '../options.js';
import { retryTransient } from '../retry.js';
import { describeFs } from '../fstype.js';
import { canonicalCrateDir, collectIn, newestFirst, type Entry, type GcReport } from './gc.js';
import { fsops, removeDirAtomically, unlinkLockFile } from './fsops.js';
import { markLiveSession } from './live.js';
import { isFinalized, LOCK_SUFFIX, newPrefix, parseSessionDir, TAG_PATTERN, WORKING_TAG } from './naming.js';
import { nowMicros, parseSessionOptions, type ParsedSessionOptions, type SessionOptions } from './options.js';
import type { PrimitiveName } from '../primitives.js';

/** Codes of errors worth falling back to copying for. */
const LINK_FALLBACK_CODES = new Set([
  'EXDEV',
  'EPERM',
  'EACCES',
  'ENOTSUP',
  'EOPNOTSUPP',
  'EMLINK',
  'ENOSYS',
  'EINVAL',
]);
/** How many link/copy operations run at once while seeding. */
const SEED_CONCURRENCY = 32;
/**
 * How long to wait for a shared lock on the newest finalized session: its
 * finalizer holds it exclusively between its rename and its release, a moment.
 */
const NEWEST_SOURCE_WAIT_MS = 2000;
/** How many times the crate directory is listed again when every source vanished. */
const SEED_LISTINGS = 20;
/** Warning code for filesystems where locks are unreliable. */
export const UNRELIABLE_FS_WARNING = 'FSLOCK_UNRELIABLE_FS';

export interface SessionStats {
  linked: number;
  copied: number;
  /**
   * Special files of the source (FIFOs, sockets, devices) that were not
   * copied: a copy cannot recreate them (with links, `'auto'`, they are linked
   * as what they are).
   */
  skipped: number;
}

export type SessionState = 'working' | 'finalized' | 'abandoned';

/** A private, locked working directory in a crate directory. */
export class Session {
  /** The crate directory, canonicalized. */
  readonly crateDir: string;
  /** "s-{timestamp}-{random}", shared by the directory and its lock file. */
  readonly prefix: string;
  /** The lock file (`{prefix}.lock`). */
  readonly lockFile: string;
  /** The finalized directory this session was seeded from, or null. */
  readonly source: string | null;
  /** Files hard-linked and copied from the source. */
  readonly stats: SessionStats;
  /** The report of the collection that finalize() ran, once it has. */
  gcReport: GcReport | null = null;
  #path: string;
  #state: SessionState = 'working';
  #lock: FileLock;
  #options: ParsedSessionOptions;
  #busy = false;

  /** @internal */
  constructor(
    crateDir: string,
    prefix: string,
    lock: FileLock,
    source: string | null,
    stats: SessionStats,
    options: ParsedSessionOptions,
  ) {
    this.crateDir = crateDir;
    this.prefix = prefix;
    this.lockFile = join(crateDir, prefix + LOCK_SUFFIX);
    this.#path = join(crateDir, `${prefix}-${WORKING_TAG}`);
    this.#lock = lock;
    this.source = source;
    this.stats = stats;
    this.#options = options;
  }

  /** The working directory, or the finalized one after finalize(). */
  get path(): string {
    return this.#path;
  }

  get state(): SessionState {
    return this.#state;
  }

  #enter(what: string): void {
    if (this.#state !== 'working') {
      throw new FslockError(
        'ERR_SESSION_CLOSED',
        `Cannot ${what}: the session ${this.#path} was already ${this.#state}`,
        {
          path: this.#path,
        },
      );
    }
    if (this.#busy) {
      throw new FslockError(
        'ERR_SESSION_BUSY',
        `Cannot ${what}: another finalize() or abandon() of ${this.#path} is in progress`,
        {
          path: this.#path,
        },
      );
    }
    this.#busy = true;
  }

  #close(): void {
    markLiveSession(this.crateDir, this.prefix, false);
    this.#lock.release();
  }

  /**
   * Publishes the session as `s-{timestamp}-{random}-{tag}` and releases its
   * lock, then collects garbage (its report is in `gcReport`; its errors are
   * never thrown). If the rename fails the session stays open and working, so
   * finalize can be retried or the session abandoned; nothing is lost.
   */
  async finalize(tag: string): Promise<string> {
    if (typeof tag !== 'string' || !TAG_PATTERN.test(tag) || tag === WORKING_TAG) {
      throw invalidArgValue('tag', tag, "must match [0-9a-z]+ and not be 'working'");
    }
    this.#enter('finalize');
    const finalPath = join(this.crateDir, `${this.prefix}-${tag}`);
    try {
      await retryTransient(() => fsops.rename(this.#path, finalPath));
    } catch (err) {
      this.#busy = false;
      throw new FslockError(
        errorCode(err) ?? 'EIO',
        `${(err as Error).message} (finalizing session ${this.#path} as ${finalPath}; ` +
          'the session is still open: retry finalize() or abandon() it)',
        { path: this.#path, cause: err },
      );
    }
    this.#path = finalPath;
    this.#state = 'finalized';
    this.#busy = false;
    this.#close();
    if (sessionFinalizeChannel.hasSubscribers) {
      sessionFinalizeChannel.publish({ crateDir: this.crateDir, path: finalPath, tag });
    }
    try {
      const o = this.#options;
      this.gcReport = await collectIn(this.crateDir, o.gcAge, nowMicros(o.now), false, o.primitive);
    } catch (err) {
      this.gcReport = {
        deleted: [],
        wouldDelete: [],
        inUse: [],
        kept: [],
        skipped: null,
        crateDirs: [],
        errors: [{ path: this.crateDir, code: errorCode(err) ?? 'UNKNOWN', message: (err as Error).message }],
      };
    }
    return finalPath;
  }

  /** Deletes the working directory, then its lock file while still holding it. */
  async abandon(): Promise<void> {
    this.#enter('abandon');
    try {
      await removeDirAtomically(this.#path);
      await unlinkLockFile(this.lockFile);
    } catch (err) {
      this.#busy = false;
      throw err; // still open and locked: abandon() can be retried
    }
    this.#state = 'abandoned';
    this.#busy = false;
    this.#close();
  }

  /** `await using session = await openSession(dir)`: abandons a session that was not finalized. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#state === 'working' && !this.#busy) await this.abandon();
  }
}

/**
 * Hard-links (or copies) every file of `src` into `dst`. Either completes,
 * with `stats` counting exactly what was linked, copied and skipped (special
 * files a copy cannot recreate), or throws the
 * first error after every operation already started has settled (so the
 * caller can remove `dst` without racing a copy still being written).
 */
async function linkOrCopyTree(src: string, dst: string, mode: 'auto' | 'copy', stats: SessionStats): Promise<void> {
  let linksWork = mode === 'auto';
  const queue: Array<[string, string, boolean]> = [];
  const walk = async (from: string, to: string): Promise<void> => {
    for (const ent of await fsops.readdir(from)) {
      const s = join(from, ent.name);
      const d = join(to, ent.name);
      if (ent.isDirectory()) {
        await fsops.mkdir(d);
        await walk(s, d);
      } else {
        const special = ent.isFIFO() || ent.isSocket() || ent.isCharacterDevice() || ent.isBlockDevice();
        queue.push([s, d, special]);
      }
    }
  };
  await walk(src, dst);
  const one = async ([s, d, special]: [string, string, boolean]): Promise<void> => {
    if (special && !linksWork) {
      stats.skipped++; // never a reason to refuse the session: a copy cannot recreate it
      return;
    }
    if (linksWork) {
      try {
        await fsops.link(s, d);
        stats.linked++;
        return;
      } catch (err) {
        if (!LINK_FALLBACK_CODES.has(errorCode(err) ?? '')) throw err;
        linksWork = false; // this filesystem will not link: copy the rest
        if (special) {
          stats.skipped++;
          return;
        }
      }
    }
    await fsops.copy(s, d);
    stats.copied++;
  };
  for (let i = 0; i < queue.length; i += SEED_CONCURRENCY) {
    const results = await Promise.allSettled(queue.slice(i, i + SEED_CONCURRENCY).map(one));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

async function emptyDir(dir: string): Promise<void> {
  for (const ent of await fsops.readdir(dir)) await fsops.remove(join(dir, ent.name));
}

/** Finalized directories, newest first. */
async function finalizedNewestFirst(crateDir: string): Promise<string[]> {
  const found: Entry[] = [];
  for (const ent of await fsops.readdir(crateDir)) {
    const p = parseSessionDir(ent.name);
    if (p && isFinalized(p) && ent.isDirectory()) found.push({ name: ent.name, parsed: p });
  }
  return found.sort(newestFirst).map((f) => f.name);
}

/**
 * A shared lock on a finalized session's lock file, or null when it is gone
 * (collected) or held exclusively (being collected, or not yet released by
 * its finalizer after `waitMs`).
 */
async function lockSource(
  lockPath: string,
  waitMs: number,
  primitive: 'auto' | PrimitiveName,
): Promise<FileLock | null> {
  try {
    if (waitMs === 0) return tryLock(lockPath, { mode: 'shared', create: false, primitive, keepOpen: false });
    return await waitForLock(lockPath, { mode: 'shared', create: false, primitive, timeout: waitMs, keepOpen: false });
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ETIMEDOUT' || code === 'ENOTDIR') return null;
    throw err;
  }
}

/**
 * Seeds `working` from the newest finalized session that can be read (see
 * step 2 above). Returns the source, or null when no finalized session
 * exists. Throws what made seeding fail; `working` may then hold a part.
 */
async function seed(
  real: string,
  working: string,
  o: ParsedSessionOptions,
  stats: SessionStats,
): Promise<string | null> {
  const tried = new Set<string>();
  for (let listing = 0; listing < SEED_LISTINGS; listing++) {
    const names = (await finalizedNewestFirst(real)).filter((n) => !tried.has(n));
    if (names.length === 0) return null;
    for (const [i, name] of names.entries()) {
      tried.add(name);
      const dir = join(real, name);
      const lockPath = join(real, parseSessionDir(name)!.prefix + LOCK_SUFFIX);
      const shared = await lockSource(lockPath, i === 0 ? NEWEST_SOURCE_WAIT_MS : 0, o.primitive);
      if (!shared) continue;
      try {
        try {
          await linkOrCopyTree(dir, working, o.copy, stats);
          return dir;
        } catch (err) {
          // The source vanished under us (removed by something that ignores
          // the lock): start again from the next one. Anything else is real.
          if (
            errorCode(err) !== 'ENOENT' ||
            (await fsops.lstat(dir).then(
              () => true,
              () => false,
            ))
          )
            throw err;
          stats.linked = 0;
          stats.copied = 0;
          stats.skipped = 0;
          await emptyDir(working);
        }
      } finally {
        shared.release();
      }
    }
  }
  return null;
}

/** The newest finalized session of a crate directory, held for reading (see openLatest). */
export interface LatestSession {
  /** Its directory. */
  readonly path: string;
  /** Its tag (the part after the last '-'). */
  readonly tag: string;
  readonly released: boolean;
  /** Lets go of the shared lock: from then on the collector may delete it (once a newer one exists). */
  release(): void;
  [Symbol.dispose](): void;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface OpenLatestOptions {
  /** Milliseconds to wait for the newest session's finalizer to let go (ETIMEDOUT); default forever. */
  timeout?: number;
  signal?: AbortSignal;
  primitive?: 'auto' | PrimitiveName;
}

const OPEN_LATEST_OPTIONS = new Set(['timeout', 'signal', 'primitive']);

/**
 * The newest finalized session of `crateDir`, held for reading: a shared
 * lock on its lock file, which the collector never deletes a session under
 * (it deletes a finalized session only while holding its lock exclusively).
 * Null when there is none (or no such directory). A reader that finds the
 * newest session being finalized waits for its finalizer to let go (bounded
 * by `timeout`); one whose session is collected between listing and locking
 * lists again.
 *
 * Concurrent writers are not merged: the newest finalized session wins, as
 * in the compiler's protocol (docs/sessions.md).
 */
export async function openLatest(crateDir: string, options?: OpenLatestOptions): Promise<LatestSession | null> {
  checkPath(crateDir, 'crateDir');
  const o = checkOptionsObject(options, OPEN_LATEST_OPTIONS);
  const timeout = parseTimeout(o.timeout);
  const signal = parseSignal(o.signal);
  const { primitive } = parseSessionOptions(o.primitive === undefined ? {} : { primitive: o.primitive }, ['primitive']);
  const deadline = timeout === Infinity ? Infinity : Date.now() + timeout;
  let real: string;
  try {
    real = await canonicalCrateDir(crateDir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return null;
    throw err;
  }
  for (;;) {
    const newest = (await finalizedNewestFirst(real))[0];
    if (newest === undefined) return null;
    const parsed = parseSessionDir(newest)!;
    const lockPath = join(real, parsed.prefix + LOCK_SUFFIX);
    let held: FileLock;
    try {
      const left = deadline === Infinity ? Infinity : Math.max(0, deadline - Date.now());
      held = await waitForLock(lockPath, {
        mode: 'shared',
        create: false,
        primitive,
        keepOpen: false,
        ...(left === Infinity ? {} : { timeout: left }),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (errorCode(err) === 'ENOENT') continue; // collected meanwhile: list again
      throw err;
    }
    // Held: the collector cannot delete it now. Is it still there, and still the newest?
    const dir = join(real, newest);
    const there = await fsops.lstat(dir).then(
      (st) => st.isDirectory(),
      () => false,
    );
    if (there && (await finalizedNewestFirst(real))[0] === newest) {
      return latestHandle(dir, parsed.tag, held);
    }
    held.release();
  }
}

function latestHandle(path: string, tag: string, held: FileLock): LatestSession {
  const release = () => held.release();
  return {
    path,
    tag,
    get released() {
      return held.released;
    },
    release,
    [Symbol.dispose]: release,
    [Symbol.asyncDispose]: async () => release(),
  };
}

/**
 * mkdir -p that reports the real error: Node's recursive mkdir turns some
 * failures (ENOSPC among them) into ENOENT.
 */
async function mkdirp(dir: string): Promise<void> {
  try {
    await fsops.mkdir(dir);
  } catch (err) {
    const code = errorCode(err);
    if (code === 'EEXIST') {
      if ((await fsops.lstat(dir).catch(() => null))?.isDirectory() === false) {
        // a symlink to a directory is fine; a file is not
        const st = await fsops.stat(dir).catch(() => null);
        if (!st?.isDirectory()) throw err;
      }
      return;
    }
    if (code !== 'ENOENT' || dirname(dir) === dir) throw err;
    await mkdirp(dirname(dir));
    try {
      await fsops.mkdir(dir);
    } catch (err2) {
      if (errorCode(err2) !== 'EEXIST') throw err2;
    }
  }
}

function checkFilesystem(lock: FileLock, crateDir: string, strict: boolean): void {
  const fs = describeFs(lock.fd);
  if (!fs.warning) return;
  const msg =
    `Locks are unreliable on ${fs.name} (${fs.warning.why}); session directories in ${crateDir} ` +
    'may be collected while in use. Put the cache on a local filesystem.';
  if (strict) throw notSupportedError(crateDir, msg, 'Pass strict: false to only warn.');
  process.emitWarning(msg, { code: UNRELIABLE_FS_WARNING, type: 'FslockWarning' });
}

/**
 * Opens a new session in `crateDir` (created if missing), seeded from the
 * newest finalized session.
 */
export async function openSession(crateDir: string, options?: SessionOptions): Promise<Session> {
  checkPath(crateDir, 'crateDir');
  const o = parseSessionOptions(options, ['gcAge', 'now', 'primitive', 'strict', 'copy']);
  await mkdirp(crateDir);
  const real = await canonicalCrateDir(crateDir);
  const { prefix, lock } = await allocate(real, o);
  const working = join(real, `${prefix}-${WORKING_TAG}`);
  // 2. Seed from the newest finalized directory that can be read: completely,
  //    or not at all (the session is then given back and the error thrown).
  const stats: SessionStats = { linked: 0, copied: 0, skipped: 0 };
  let source: string | null;
  try {
    source = await seed(real, working, o, stats);
  } catch (err) {
    throw await giveBackFailedSeed(real, prefix, lock, err);
  }
  const session = new Session(real, prefix, lock, source, stats, o);
  if (sessionOpenChannel.hasSubscribers) {
    sessionOpenChannel.publish({ crateDir: real, path: session.path, source, stats: { ...stats } });
  }
  return session;
}

/** 1. Allocate a session name: its lock first, then its working directory. */
async function allocate(real: string, o: ParsedSessionOptions): Promise<{ prefix: string; lock: FileLock }> {
  for (let attempt = 0; ; attempt++) {
    const prefix = newPrefix(nowMicros(o.now));
    const l = tryLock(join(real, prefix + LOCK_SUFFIX), { primitive: o.primitive, keepOpen: false });
    if (!l) {
      if (attempt > 100) throw new FslockError('EEXIST', `cannot allocate a session name in ${real}`, { path: real });
      continue; // the same name is taken (same microsecond and random number): pick another
    }
    try {
      checkFilesystem(l, real, o.strict);
      markLiveSession(real, prefix, true);
      await fsops.mkdir(join(real, `${prefix}-${WORKING_TAG}`));
      return { prefix, lock: l };
    } catch (err) {
      markLiveSession(real, prefix, false);
      await unlinkLockFile(join(real, prefix + LOCK_SUFFIX)).catch(() => undefined);
      l.release();
      if (errorCode(err) !== 'EEXIST') throw err;
    }
  }
}

/** A seed failed: remove the new session (directory, then lock file), and say so in the error returned. */
async function giveBackFailedSeed(real: string, prefix: string, lock: FileLock, err: unknown): Promise<FslockError> {
  const working = join(real, `${prefix}-${WORKING_TAG}`);
  const cleanup: unknown[] = [];
  await removeDirAtomically(working).catch((e: unknown) => cleanup.push(e));
  await unlinkLockFile(join(real, prefix + LOCK_SUFFIX)).catch((e: unknown) => cleanup.push(e));
  markLiveSession(real, prefix, false);
  lock.release();
  const syscall = (err as { syscall?: unknown }).syscall;
  return new FslockError(
    errorCode(err) ?? 'EIO',
    `${(err as Error).message} (seeding the new session ${working} from the newest ` +
      `finalized session in ${real} failed; the session was removed${cleanup.length ? ' as far as possible' : ''} and ` +
      'no existing session was changed. Free space or fix permissions, then open a session again.)',
    { path: working, ...(typeof syscall === 'string' ? { syscall } : {}), cause: err },
  );
}
