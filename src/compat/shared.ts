/** Pieces shared by the proper-lockfile and lockfile compatibility layers. */
import { platform } from '../platform.js';
import { linkSync, lstatSync, openSync, renameSync } from 'fs';
import { basename, dirname, join } from 'path';
import { performance } from 'perf_hooks';
import { binding } from '../binding.js';
import { errorCode as code } from '../errors.js';
import { lockCreatedFile, tryLock, tryLockNew, waitUntilReleased, type FileLock } from '../lock.js';
import { writeRecordIntoOwnFile } from '../holder.js';
import { isLocked } from '../inspect.js';
import { unlinkIfHeld } from '../unlink.js';
import { NAME_ATTEMPTS, randomTag } from '../names.js';

/** A fresh name for a temporary file beside `target`. */
export function tempNameFor(target: string): string {
  return join(dirname(target), `.fslock-${randomTag()}.tmp`);
}

/**
 * A file the caller created to be placed as a lock file, and its open
 * descriptor: either anonymous (`tmp` null: opened with C.ANONYMOUS_FILE in
 * the target's directory, nameless until placed), or a temporary file
 * created O_CREAT|O_EXCL at `tmp`.
 */
export interface CreatedTemp {
  tmp: string | null;
  fd: number;
}

/**
 * Whether anonymous files can be placed here: O_TMPFILE exists and its files
 * can be linked (through /proc/self/fd). Cleared for good the first time
 * linking says ENOSYS (no /proc in this process).
 */
let anonymousLinkable = binding.constants.ANONYMOUS_FILE !== 0;

/** Errors of an O_TMPFILE open that mean "not on this filesystem or kernel": use a named temporary file. */
const NO_ANONYMOUS = new Set(['ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EINVAL']);

/**
 * What to do with an error of the O_TMPFILE open of `target`'s directory:
 * null to fall back to a named temporary file, else the error to report,
 * naming `target` (the file the caller asked about) rather than the directory.
 */
function anonymousOpenFailure(err: unknown, target: string): Error | null {
  if (NO_ANONYMOUS.has(code(err) ?? '')) return null;
  const e = err as NodeJS.ErrnoException;
  const dir = dirname(target);
  if (e && e.path === dir) {
    e.message = e.message.replace(`'${dir}'`, `'${target}'`);
    e.path = target;
  }
  return e;
}

/**
 * Opens an anonymous file in `target`'s directory with `open` (Node's fs by
 * default; the lockfile layer passes its own call so fs hooks see it), or
 * null where there are none: then the caller uses a named temporary file.
 */
export function createAnonymousSync(
  target: string,
  open: (dir: string, flags: number) => number = openSync,
): CreatedTemp | null {
  if (!anonymousLinkable) return null;
  try {
    return { tmp: null, fd: open(dirname(target), binding.constants.ANONYMOUS_FILE) };
  } catch (err) {
    const e = anonymousOpenFailure(err, target);
    if (e) throw e;
    return null;
  }
}

/** createAnonymousSync with an asynchronous `open`. */
export async function createAnonymous(
  target: string,
  open: (dir: string, flags: number) => Promise<number>,
): Promise<CreatedTemp | null> {
  if (!anonymousLinkable) return null;
  try {
    return { tmp: null, fd: await open(dirname(target), binding.constants.ANONYMOUS_FILE) };
  } catch (err) {
    const e = anonymousOpenFailure(err, target);
    if (e) throw e;
    return null;
  }
}

/**
 * Creates `target` atomically, already locked. Nobody who finds `target` can
 * find it unlocked — until its holder releases it (deleting it first) or dies.
 *
 * Where the OS has anonymous files (Linux O_TMPFILE), the file is created
 * without a name, locked, and then linked at `target`, which fails with
 * EEXIST like O_EXCL whatever `mode` says: no temporary name appears in the
 * directory, none can be swapped by a neighbour, and a crash leaves nothing.
 * Elsewhere a fresh temporary file is locked, then renamed (mode 'rename',
 * never over a file where the OS can refuse that) or hard-linked (mode
 * 'link', which fails with EEXIST like O_EXCL) into place.
 * `record`: write pid, host and time into it (lockfile's layer tells its own
 * files from real lockfile's by that; proper-lockfile's marker needs none).
 * `created`: the file the caller opened for it (see CreatedTemp); without
 * it, one is created here.
 */
export function placeLocked(
  target: string,
  mode: 'rename' | 'link',
  record = true,
  created?: CreatedTemp | null,
): FileLock {
  const c = created ?? createAnonymousSync(target);
  if (c?.tmp !== null) return placeNamed(target, mode, record, c);
  // null: an anonymous file cannot be linked here after all (no /proc); a named one then
  return placeAnonymous(target, record, c.fd) ?? placeNamed(target, mode, record, null);
}

/** Locks the anonymous file `fd`, records, and links it at `target`; null when linking cannot be done here. */
function placeAnonymous(target: string, record: boolean, fd: number): FileLock | null {
  const held = lockCreatedFile(target, fd, true); // takes `fd` over: closed with the lock
  if (!held) throw new Error(`fslock: could not lock a fresh anonymous file for '${target}'`);
  try {
    if (record) writeRecordQuietly(held.fd, held.identity);
    binding.linkAnonymous(held.fd, target);
    return held;
  } catch (err) {
    held.release();
    if (code(err) === 'ENOSYS') {
      anonymousLinkable = false;
      return null;
    }
    throw err;
  }
}

/** How many waits of a process may hold a spare at a time (see Spare). */
const SPARES_MAX = 64;

/**
 * A waiter's spare lock file: an anonymous file on the lock file's
 * filesystem, already locked and (with `record`) recorded, made while a wait
 * for an fslock holder lasts, so that once the holder lets go only a link is
 * left to do. Nothing is on disk until it is linked: dropping an unused
 * spare leaves nothing behind. Where there are no linkable anonymous files
 * there is no spare, and the waiter places a file the usual way. A spare
 * costs a descriptor for as long as its wait lasts: at most SPARES_MAX
 * waits of a process have one at a time (the rest wait as before), so many
 * waits in one process do not run it out of descriptors twice as soon.
 */
export class Spare {
  #lock: FileLock | null = null;
  #usable = true;
  static #live = 0;
  /** When the spare there is now was made (performance.now()). */
  madeAt = 0;

  constructor(private readonly record: boolean) {}

  /**
   * Makes the spare for `target` (opened in `dir`, by default `target`'s
   * directory, with `open`: Node's fs by default), if there is none yet.
   */
  ready(target: string, dir = dirname(target), open?: (dir: string, flags: number) => number): void {
    if (this.#lock || !this.#usable || Spare.#live >= SPARES_MAX) return;
    let held: FileLock | null = null;
    try {
      const c = createAnonymousSync(join(dir, basename(target)), open); // opened in `dir`, as if for a file there
      held = c && lockCreatedFile(target, c.fd, true); // closes the descriptor if it throws
    } catch {
      // no spare: the usual way will say what is wrong
    }
    if (held && this.record) writeRecordQuietly(held.fd, held.identity);
    this.#lock = held;
    this.#usable = held !== null;
    this.madeAt = performance.now();
    if (held) Spare.#live++;
  }

  /** Whether there is a spare. */
  get held(): boolean {
    return this.#lock !== null;
  }

  /**
   * Links the spare at `target` and hands its lock over. Throws as a link
   * does (EEXIST, like O_EXCL, when something is there: the spare stays for
   * the next try); null when there is no spare or it cannot be linked there
   * (another filesystem, no /proc): then the usual way.
   */
  take(target: string): FileLock | null {
    const spare = this.#lock;
    if (!spare) return null;
    try {
      binding.linkAnonymous(spare.fd, target);
    } catch (err) {
      if (code(err) !== 'ENOSYS' && code(err) !== 'EXDEV') throw err;
      if (code(err) === 'ENOSYS') anonymousLinkable = false;
      this.drop();
      this.#usable = false;
      return null;
    }
    this.#lock = null;
    Spare.#live--;
    return spare;
  }

  drop(): void {
    if (!this.#lock) return;
    this.#lock.release();
    this.#lock = null;
    Spare.#live--;
  }
}

/** tryLockNew at a fresh temporary name beside `target`; a name someone planted is passed over. */
function lockNewTemp(target: string): { tmp: string; held: FileLock | null } {
  for (let i = 1; ; i++) {
    const tmp = tempNameFor(target);
    try {
      return { tmp, held: tryLockNew(tmp) };
    } catch (err) {
      if (i >= NAME_ATTEMPTS || code(err) !== 'EEXIST') throw err;
    }
  }
}

function placeNamed(target: string, mode: 'rename' | 'link', record: boolean, created: CreatedTemp | null): FileLock {
  let tmp = created?.tmp ?? '';
  const ours = created ? binding.identity(created.fd) : null;
  let held: FileLock | null = null;
  try {
    if (created) held = lockCreatedFile(tmp, created.fd);
    else ({ tmp, held } = lockNewTemp(target));
  } finally {
    // not locked: delete the caller's temporary file, unless something replaced it meanwhile
    if (!held && ours !== null) unlinkIfHeld(tmp, ours);
  }
  if (!held) throw new Error(`fslock: could not lock a fresh temporary file ${tmp}`);
  const id = held.identity;
  try {
    if (record) writeRecordQuietly(held.fd, id);
    if (mode === 'rename') {
      renameNoReplace(tmp, target);
    } else {
      try {
        linkSync(tmp, target);
      } finally {
        unlinkIfHeld(tmp, id, true); // only our temporary file, whatever the name holds by now
      }
    }
  } catch (err) {
    try {
      if (mode === 'rename') unlinkIfHeld(tmp, id, true);
    } catch {
      // already gone
    }
    held.release();
    throw err;
  }
  return held;
}

/** rename() that fails with EEXIST rather than replace a file someone put at `to`, where the OS can say so. */
function renameNoReplace(from: string, to: string): void {
  try {
    binding.renameNoReplace(from, to);
  } catch (err) {
    if (code(err) !== 'ENOSYS') throw err;
    renameSync(from, to);
  }
}

/** Our own new file: pid, host, time; never the command line. */
function writeRecordQuietly(fd: number, identity?: string): void {
  try {
    writeRecordIntoOwnFile(fd, identity);
  } catch {
    // the record is a courtesy
  }
}

export type Liveness = 'live' | 'dead' | 'absent' | 'foreign';

/**
 * Is the kernel lock on `path` held by a live process? 'dead' means the file
 * exists but nobody holds it: its holder is gone (crash, SIGKILL). 'absent':
 * no such file. 'foreign': something is there that cannot be opened as a
 * lock file (a dangling symlink, say): never ours, and never to be waited
 * for as if it were. A 'dead' marker is returned locked so the caller can
 * remove it safely; release it afterwards.
 */
export function probeMarker(path: string): { state: Liveness; lock: FileLock | null } {
  try {
    const l = tryLock(path, { create: false, record: false, keepOpen: false });
    return l ? { state: 'dead', lock: l } : { state: 'live', lock: null };
  } catch (err) {
    if (
      code(err) === 'ENOENT' ||
      code(err) === 'ENOTDIR' ||
      code(err) === 'ERR_UNSAFE_SYMLINK' ||
      code(err) === 'EISDIR'
    ) {
      return { state: entryExists(path) ? 'foreign' : 'absent', lock: null };
    }
    throw err;
  }
}

/** Whether anything (a symlink too, dangling or not) is at `path`. */
export function entryExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether `path` is locked by someone, without taking it (Linux reads /proc/locks). */
export function isHeld(path: string): boolean {
  try {
    return isLocked(path);
  } catch {
    return false;
  }
}

/**
 * Waits (in the kernel) until the holder of `path` lets go, at most `ms`.
 * Returns true when it did, false on timeout. Whether the lock is now free to
 * take is for the caller's next attempt to find out.
 */
export async function waitForRelease(path: string, ms: number): Promise<boolean> {
  try {
    // null: deleted and let go, as holders do; a lock: the file is still in place
    // (its holder died without cleaning up): let go of it, the caller's next try decides.
    (await waitUntilReleased(path, Math.max(0, ms)))?.release();
    return true;
  } catch (err) {
    if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return true; // released and removed
    if (code(err) === 'ETIMEDOUT') return false;
    throw err;
  }
}

export function pathIdentity(path: string): string | null {
  try {
    return binding.pathIdentity(path);
  } catch {
    return null;
  }
}

export const sleep = (ms: number, unref = false) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    if (unref) t.unref?.();
  });

/** Options of the `retry` package, as proper-lockfile accepts them. */
export interface RetryOptions {
  retries?: number;
  factor?: number;
  minTimeout?: number;
  maxTimeout?: number;
  randomize?: boolean;
  forever?: boolean;
  maxRetryTime?: number;
  unref?: boolean;
}

/**
 * The longest the `retry` package's schedule would keep trying: the sum of
 * its timeouts (randomized ones at their largest), capped by maxRetryTime.
 */
export function retryBudgetMs(r: RetryOptions): number {
  if (r.forever) return r.maxRetryTime ?? Infinity;
  const retries = r.retries ?? 10;
  const factor = r.factor ?? 2;
  const min = r.minTimeout ?? 1000;
  const max = r.maxTimeout ?? Infinity;
  let total = 0;
  for (let i = 0; i < retries; i++) total += Math.min(min * (r.randomize ? 2 : 1) * factor ** i, max);
  return Math.min(total, r.maxRetryTime ?? Infinity);
}

/** Cleanups of every compat layer, run once on exit or on a terminating signal. */
const exitCleanups = new Set<() => void>();
let exitHandlersInstalled = false;

function runExitCleanups(): void {
  for (const c of [...exitCleanups]) {
    exitCleanups.delete(c);
    try {
      c();
    } catch {
      // exiting anyway
    }
  }
}

/**
 * Runs `cleanup` when the process exits normally or is ended by SIGINT,
 * SIGTERM or SIGHUP, as upstream's signal-exit does: one set of handlers for
 * every caller; after cleaning up, a signal nobody else listens to is raised
 * again, so the process still dies of it (with the usual 128+N status).
 */
export function cleanupOnExit(cleanup: () => void): void {
  exitCleanups.add(cleanup);
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.once('exit', runExitCleanups);
  for (const sig of platform().exitSignals) {
    const handler = () => {
      runExitCleanups();
      if (process.listenerCount(sig) === 1) {
        process.removeListener(sig, handler);
        process.kill(process.pid, sig);
      }
    };
    process.on(sig, handler);
  }
}
