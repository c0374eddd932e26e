/**
 * fslock/lockfile: the API of lockfile 1.x on real kernel locks.
 *
 * As upstream, the lock file exists exactly while the lock is held, so code
 * that looks for it (and processes still running the real lockfile package)
 * see the usual thing. Here the file is created already locked in the kernel
 * (a locked anonymous file linked into place, or where there are none a
 * locked temporary file hard-linked into place; either fails with EEXIST like
 * upstream's O_EXCL) and holds a one-line record of its holder.
 * Between fslock users:
 *
 * - a holder that crashed or was SIGKILLed never blocks anyone: its file can
 *   be locked, which proves it dead, and it is replaced at once without
 *   waiting for `stale`;
 * - `wait` is a real wait in the kernel: the waiter gets the lock the moment
 *   it is released, not at the next poll;
 * - unlock() only deletes a lock file that this process holds, or one that no
 *   live process holds; it never deletes another live holder's lock.
 */
import { platform } from '../platform.js';
import { errorCode } from '../errors.js';
import * as fs from 'fs';
import { performance } from 'perf_hooks';
import type { FileLock } from '../lock.js';
import { descriptorHoldsOwnRecord, fileHoldsRecord, writeRecordIntoOwnFile } from '../holder.js';
import { unlinkIfHeld } from '../unlink.js';
import { NAME_ATTEMPTS } from '../names.js';
import {
  cleanupOnExit,
  createAnonymous,
  createAnonymousSync,
  isHeld,
  placeLocked,
  Spare,
  probeMarker,
  sleep,
  tempNameFor,
  waitForRelease,
  type CreatedTemp,
} from './shared.js';

interface Options {
  /** Milliseconds to wait for the lock to be released. */
  wait?: number | undefined;
  /** How often to look while waiting for a holder that is not an fslock process (default 100). */
  pollPeriod?: number | undefined;
  /** A lock file older than this (ms) may be taken over, as upstream. */
  stale?: number | undefined;
  /** Extra attempts after a failed one. */
  retries?: number | undefined;
  /** Milliseconds between retries. */
  retryWait?: number | undefined;
}

/** As @types/lockfile types it, so callbacks written against it fit. */
type Callback = (err: Error | null) => void;
type CheckCallback = (err: Error | null, isLocked: boolean) => void;

const locks = new Map<string, FileLock>();

function isStale(stat: () => fs.Stats, stale: number | undefined): boolean {
  if (!stale) return false;
  try {
    // read from the module object at call time: callers may set lockfile.filetime, as upstream allows
    return Date.now() - stat()[lockfile.filetime].getTime() > stale;
  } catch {
    return false;
  }
}

/**
 * Whether a lock file nobody holds may be taken over: a dead fslock holder's
 * (it carries our record) at once, a real lockfile user's once stale. Judged
 * through the probe's descriptor, never by name (the name may hold another
 * file by now); on Windows the staleness by name, where the descriptor is a
 * HANDLE that fs.fstat cannot take.
 */
function mayTakeOver(path: string, probe: FileLock, stale: number | undefined): boolean {
  if (descriptorHoldsOwnRecord(probe.fd, probe.identity)) return true;
  return isStale(() => (platform().nodeFdIsHandle ? fs.fstatSync(probe.fd) : fs.statSync(path)), stale);
}

/**
 * One try's outcome: taken, or held (by an fslock process or someone else)
 * with the error to report, or `again`: the file went away meanwhile, try
 * again at once (not counted as a retry).
 */
type TryOutcome = { ok: true } | { ok: false; fslock: boolean; err: Error; again?: boolean };

/** The error upstream's open(path, 'wx') gives: EEXIST, syscall 'open', the lock path. */
function existsError(path: string): Error {
  return Object.assign(new Error(`EEXIST: file already exists, open '${path}'`), {
    errno: -17,
    code: 'EEXIST',
    syscall: 'open',
    path,
  });
}

// The lock file is placed from a file this layer creates with Node's fs
// (an anonymous one in the lock file's directory where the OS has them, else
// a temporary file opened 'wx', as upstream opens the lock file itself), so
// code that hooks fs.open / fs.openSync (tests injecting failures,
// instrumentation) sees each attempt as it would upstream: lockSync through
// fs.openSync, lock through fs.open. Not on Windows, where fslock locks a
// HANDLE and Node's descriptors are the C runtime's: null there, and the file
// is created by placeLocked itself.
//
// lock() opens through fs.open only while someone has replaced it since this
// module loaded. Node's own fs.open would only add a threadpool round trip
// to every attempt (bench/dropins.js --handoff shows its share of a
// hand-off); unhooked, lock() opens synchronously, as
// fslock's own lock() does, with Node's openSync as it was at load (so a hook
// on fs.openSync, meant for lockSync, is not called by lock(), as upstream's
// lock never calls it).
const nodeOpen = fs.open;
const nodeOpenSync = fs.openSync;

function createTempWith(path: string, open: (p: string, flags: string | number) => number): CreatedTemp | null {
  if (!platform().nodeFdIsHandle) return null;
  const anonymous = createAnonymousSync(path, open);
  if (anonymous) return anonymous;
  for (let i = 1; ; i++) {
    const tmp = tempNameFor(path);
    try {
      return { tmp, fd: open(tmp, 'wx') };
    } catch (err) {
      if (i >= NAME_ATTEMPTS || errorCode(err) !== 'EEXIST') throw err; // a planted name: take another
    }
  }
}

function createTempSync(path: string): CreatedTemp | null {
  return createTempWith(path, (p, flags) => fs.openSync(p, flags));
}

function openAsync(p: string, flags: string | number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(p, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
}

async function createTemp(path: string): Promise<CreatedTemp | null> {
  if (!platform().nodeFdIsHandle || fs.open === nodeOpen) return createTempWith(path, nodeOpenSync);
  const anonymous = await createAnonymous(path, openAsync);
  if (anonymous) return anonymous;
  for (let i = 1; ; i++) {
    const tmp = tempNameFor(path);
    try {
      return { tmp, fd: await openAsync(tmp, 'wx') };
    } catch (err) {
      if (i >= NAME_ATTEMPTS || errorCode(err) !== 'EEXIST') throw err; // a planted name: take another
    }
  }
}

/**
 * One try with a freshly created temporary file. Upstream retries any
 * failure to open the lock file (ENOENT while its directory does not exist
 * yet, say), not only EEXIST: so do we.
 */
function attempt(path: string, opts: Options, created: CreatedTemp | null): TryOutcome {
  try {
    return attemptWith(path, opts, created);
  } catch (err) {
    return { ok: false, fslock: false, err: err as Error };
  }
}

function attemptWith(path: string, opts: Options, created: CreatedTemp | null): TryOutcome {
  return attemptPlacing(path, opts, () => placeLocked(path, 'link', true, created));
}

/** One try that places the lock file with `place` (EEXIST when one is there). */
function attemptPlacing(path: string, opts: Options, place: () => FileLock): TryOutcome {
  try {
    locks.set(path, place());
    installCleanup();
    return { ok: true };
  } catch (linkErr) {
    if (errorCode(linkErr) !== 'EEXIST') throw linkErr;
    const err = existsError(path);
    const probe = probeMarker(path);
    if (probe.state === 'absent') return { ok: false, fslock: false, err, again: true }; // released meanwhile
    if (probe.state === 'live') return { ok: false, fslock: true, err };
    // Not a lock file anyone can hold (a dangling symlink): EEXIST, as upstream says.
    if (probe.state === 'foreign') return { ok: false, fslock: false, err };
    // Nobody holds it in the kernel: delete the very file judged (the one the
    // probe locked), not whatever the name holds by now.
    let removed = false;
    try {
      if (mayTakeOver(path, probe.lock!, opts.stale)) removed = unlinkIfHeld(path, probe.lock!.identity, true);
    } finally {
      probe.lock!.release();
    }
    return { ok: false, fslock: false, err, again: removed };
  }
}

function trySync(path: string, opts: Options): TryOutcome {
  for (;;) {
    let a: TryOutcome;
    try {
      a = attempt(path, opts, createTempSync(path));
    } catch (err) {
      return { ok: false, fslock: false, err: err as Error };
    }
    if (a.ok || !a.again) return a;
  }
}

async function tryAsync(path: string, opts: Options): Promise<TryOutcome> {
  for (;;) {
    let a: TryOutcome;
    try {
      a = attempt(path, opts, await createTemp(path));
    } catch (err) {
      return { ok: false, fslock: false, err: err as Error };
    }
    if (a.ok || !a.again) return a;
  }
}

/**
 * One try with the waiter's spare (see Spare), or null when there is none or
 * it cannot be linked here (then the usual try).
 */
function attemptSpare(path: string, opts: Options, spare: Spare): TryOutcome | null {
  if (!spare.held) return null;
  let taken: FileLock | null = null;
  const madeAt = spare.madeAt;
  let a: TryOutcome;
  try {
    a = attemptPlacing(path, opts, () => {
      taken = spare.take(path);
      if (!taken) throw NO_SPARE;
      return taken;
    });
  } catch (err) {
    if (err === NO_SPARE) return null;
    return { ok: false, fslock: false, err: err as Error }; // as attempt() reports it
  }
  // a spare made for this very try carries the right time already
  if (a.ok && taken && performance.now() - madeAt >= 1) refreshRecordSoon(path, taken);
  return a;
}

const NO_SPARE = new Error('no spare');

/**
 * The spare's record was written when it was made; once the lock is
 * taken, it is written again with the time it was taken (the same length: a
 * reader never sees a shorter one), after the caller has been told, and only
 * while this very lock is still held (its descriptor is then still its own).
 */
function refreshRecordSoon(path: string, held: FileLock): void {
  setImmediate(() => {
    if (held.released || locks.get(path) !== held) return;
    try {
      writeRecordIntoOwnFile(held.fd, held.identity);
    } catch {
      // the record is a courtesy
    }
  });
}

/**
 * One try of lock(): with the spare (made now if there is none), so a try
 * that finds the lock taken keeps its file for the next one instead of
 * making and freeing one each time; else the usual way. Not while fs.open is
 * hooked: then each try opens through it, as upstream's would.
 */
async function tryOnce(path: string, opts: Options, spare: Spare): Promise<TryOutcome> {
  if (fs.open === nodeOpen) {
    spare.ready(path, undefined, nodeOpenSync); // Node's own, as lock() opens (see above)
    for (;;) {
      const a = attemptSpare(path, opts, spare);
      if (a === null) break; // no spare here: the usual way
      if (a.ok || !a.again) return a;
    }
  }
  return tryAsync(path, opts);
}

async function lockAsync(path: string, opts: Options): Promise<void> {
  let retries = typeof opts.retries === 'number' && opts.retries > 0 ? opts.retries : 0;
  const spare = new Spare(true);
  try {
    for (;;) {
      const end = Date.now() + (typeof opts.wait === 'number' && opts.wait > 0 ? opts.wait : 0);
      let a = await tryOnce(path, opts, spare);
      while (!a.ok && Date.now() < end) {
        const left = end - Date.now();
        if (a.fslock) await waitForRelease(path, left);
        else await sleep(Math.min(left, opts.pollPeriod || 100));
        a = await tryOnce(path, opts, spare);
      }
      if (a.ok) return;
      if (retries-- <= 0) throw a.err;
      if (opts.retryWait) await sleep(opts.retryWait);
    }
  } finally {
    spare.drop();
  }
}

function lock(path: string, opts: Options | Callback, cb?: Callback): void {
  if (typeof opts === 'function') {
    cb = opts;
    opts = {};
  }
  const done = cb ?? (() => undefined);
  lockAsync(path, { ...(opts ?? {}) }).then(
    () => done(null),
    (err: Error) => done(err),
  );
}

function lockSync(path: string, opts?: Options): void {
  const o = { ...(opts ?? {}) };
  if (o.wait || o.retryWait) throw new Error('opts.wait not supported sync for obvious reasons');
  let retries = typeof o.retries === 'number' && o.retries > 0 ? o.retries : 0;
  for (;;) {
    const a = trySync(path, o);
    if (a.ok) return;
    if (retries-- <= 0) throw a.err;
  }
}

function unlockSync(path: string): void {
  const held = locks.get(path);
  locks.delete(path);
  if (held) {
    try {
      // only if the name still holds our file (checked after an atomic move
      // aside, so nobody can swap it in between), moved off the name while
      // still held; let go then, before its aside name is unlinked
      unlinkIfHeld(path, held.identity, true, () => held.release());
    } catch {
      // best effort, as upstream
    }
    held.release();
    return;
  }
  // Not ours: upstream deletes it regardless; we only delete it when no live
  // process holds it, so one holder can never break another's lock.
  if (isHeld(path)) return;
  try {
    fs.unlinkSync(path);
  } catch {
    // best effort
  }
}

function unlock(path: string, cb?: Callback): void {
  unlockSync(path);
  if (cb) process.nextTick(() => cb(null));
}

function checkSync(path: string, opts?: Options): boolean {
  const o = opts ?? {};
  if (o.wait) throw new Error('opts.wait not supported sync for obvious reasons');
  if (!fs.existsSync(path)) return false;
  if (isHeld(path)) return true;
  if (fileHoldsRecord(path)) return false; // its holder died
  if (!o.stale) return true;
  return !isStale(() => fs.statSync(path), o.stale);
}

function check(path: string, opts: Options | CheckCallback, cb?: CheckCallback): void {
  if (typeof opts === 'function') {
    cb = opts;
    opts = {};
  }
  const { wait: _ignored, ...rest } = opts ?? {};
  void _ignored;
  let result: boolean;
  try {
    result = checkSync(path, rest);
  } catch (err) {
    process.nextTick(() => cb?.(err as Error, false));
    return;
  }
  process.nextTick(() => cb?.(null, result));
}

// Release everything on exit and on SIGINT, SIGTERM and SIGHUP, as upstream
// does, so processes still running the real lockfile never see a leftover.
let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  cleanupOnExit(() => {
    for (const path of [...locks.keys()]) unlockSync(path);
  });
}

/**
 * The module is what `require('lockfile')` returns, a plain object (no
 * __esModule marker), so every import style upstream supports works:
 * `require`, `import lockFile from` (esModuleInterop), `import * as`, and
 * named imports; the types accept code written against @types/lockfile.
 */
const lockfile = {
  lock,
  lockSync,
  unlock,
  unlockSync,
  check,
  checkSync,
  /** Which timestamp decides staleness, as upstream: ctime, mtime on Windows. */
  filetime: platform().staleTimestamp as 'ctime' | 'mtime',
};
// eslint-disable-next-line @typescript-eslint/no-namespace -- the types of an `export =` module
declare namespace lockfile {
  export type { Options, Callback, CheckCallback };
}
export = lockfile;
