/**
 * fslock/proper-lockfile: the API of proper-lockfile 4.x on real kernel locks.
 *
 * The on-disk artefact stays upstream's — a `<file>.lock` directory whose
 * mtime is refreshed while held — so processes still running the real
 * proper-lockfile and processes using this module exclude each other. Inside
 * it sits `.fslock`, a marker file that its holder keeps locked in the kernel
 * (it is renamed into place already locked). Between fslock users that
 * changes everything:
 *
 * - a holder that crashed or was SIGKILLed never blocks anyone: its marker
 *   can be locked, which proves it dead, and the artefact is taken over at once;
 * - `retries` is a real wait in the kernel, bounded by the total time the
 *   retry schedule would have allowed; the waiter gets the lock the moment it
 *   is released;
 * - `onCompromised` is only called when the artefact really was removed or
 *   replaced, never because the event loop was slow;
 * - a real proper-lockfile process can never take a lock held here, even when
 *   our mtime looks stale: its rmdir fails on the non-empty directory.
 */
import { platform } from '../platform.js';
import { performance } from 'perf_hooks';
import { errorCode } from '../errors.js';
import { checkPath } from '../options.js';
import { PROPER_LOCKFILE_MARKER } from '../inspect.js';
import * as nodeFs from 'fs';
import { dirname, join, resolve } from 'path';
import type { FileLock } from '../lock.js';
import { unlinkIfHeld } from '../unlink.js';
import {
  cleanupOnExit,
  isHeld,
  pathIdentity,
  placeLocked,
  Spare,
  probeMarker,
  retryBudgetMs,
  sleep,
  waitForRelease,
  type RetryOptions,
} from './shared.js';

type FsLike = Partial<typeof nodeFs>;

interface LockOptions {
  stale?: number;
  update?: number | null;
  retries?: number | RetryOptions;
  realpath?: boolean;
  fs?: FsLike;
  onCompromised?: (err: Error) => void;
  lockfilePath?: string;
}
interface UnlockOptions {
  realpath?: boolean;
  fs?: FsLike;
  lockfilePath?: string;
}
interface CheckOptions {
  stale?: number;
  realpath?: boolean;
  fs?: FsLike;
  lockfilePath?: string;
}

/** The file inside `<file>.lock` that carries the kernel lock. */
const MARKER = PROPER_LOCKFILE_MARKER;
/** How often a waiter looks again at an artefact held by a real proper-lockfile process. */
const UPSTREAM_POLL_MS = 25;

interface Held {
  dir: string;
  marker: string;
  kernel: FileLock;
  identity: string;
  options: Normalized;
  timer: NodeJS.Timeout | null;
  released: boolean;
  /** Which methods of the `fs` option it uses: those of the API that took it. */
  mode: Mode;
}

interface Normalized {
  stale: number;
  update: number;
  retries: RetryOptions;
  realpath: boolean;
  fs: FsLike;
  onCompromised: (err: Error) => void;
  lockfilePath: string | undefined;
}

const locks = new Map<string, Held>();

function withCode(err: Error, code: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(err, { code }, extra);
}

function normalize(options: LockOptions | undefined): Normalized {
  const o = {
    stale: 10000,
    update: null as number | null | undefined,
    realpath: true,
    retries: 0 as number | RetryOptions | undefined,
    fs: nodeFs as FsLike,
    onCompromised: (err: Error) => {
      throw err;
    },
    ...options,
  };
  const retries = o.retries || 0;
  const retryOptions: RetryOptions = typeof retries === 'number' ? { retries } : retries;
  const stale = Math.max(o.stale || 0, 2000);
  let update = o.update == null ? stale / 2 : o.update || 0;
  update = Math.max(Math.min(update, stale / 2), 1000);
  return {
    stale,
    update,
    retries: retryOptions,
    realpath: o.realpath !== false,
    fs: o.fs ?? nodeFs,
    onCompromised: o.onCompromised,
    lockfilePath: o.lockfilePath,
  };
}

// ---------------------------------------------------------------------------
// The `fs` option, as upstream uses it: the asynchronous API calls its
// callback methods (mkdir, stat, rmdir, utimes, realpath), the synchronous API
// their *Sync twins. Each operation on the artefact is written once, as a
// generator that yields the filesystem calls it needs; a driver runs them
// with one kind or the other.

type FsOp = ['mkdir' | 'stat' | 'rmdir' | 'realpath', string] | ['utimes', string, Date, Date];
type FsRun<T> = Generator<FsOp, T, unknown>;
type Mode = 'sync' | 'async';

function callSync(fs: FsLike, [name, ...args]: FsOp): unknown {
  const fn = ((fs as Record<string, unknown>)[`${name}Sync`] ?? (nodeFs as Record<string, unknown>)[`${name}Sync`]) as (
    ...a: unknown[]
  ) => unknown;
  return fn.apply(fs, args);
}

function callAsync(fs: FsLike, [name, ...args]: FsOp): Promise<unknown> {
  const fn = ((fs as Record<string, unknown>)[name] ?? (nodeFs as Record<string, unknown>)[name]) as (
    ...a: unknown[]
  ) => void;
  return new Promise((res, rej) => fn.call(fs, ...args, (err: Error | null, v: unknown) => (err ? rej(err) : res(v))));
}

function runSync<T>(g: FsRun<T>, fs: FsLike): T {
  let step = g.next();
  for (;;) {
    if (step.done) return step.value;
    let v: unknown;
    try {
      v = callSync(fs, step.value);
    } catch (err) {
      step = g.throw(err);
      continue;
    }
    step = g.next(v);
  }
}

async function runAsync<T>(g: FsRun<T>, fs: FsLike): Promise<T> {
  // No `fs` of the caller's to honour: the same calls on Node's fs, made
  // synchronously (a few microseconds each) instead of a threadpool round
  // trip each; the API stays asynchronous.
  if (fs === nodeFs) return runSync(g, fs);
  let step = g.next();
  for (;;) {
    if (step.done) return step.value;
    let v: unknown;
    try {
      v = await callAsync(fs, step.value);
    } catch (err) {
      step = g.throw(err);
      continue;
    }
    step = g.next(v);
  }
}

function runIn<T>(mode: Mode, g: FsRun<T>, fs: FsLike): T | Promise<T> {
  return mode === 'sync' ? runSync(g, fs) : runAsync(g, fs);
}

function* canonicalG(file: string, realpath: boolean): FsRun<string> {
  // the typed error of the rest of fslock (upstream: a TypeError from deep inside, or ENOENT for '[object Object]')
  checkPath(file, 'file');
  if (!realpath) return resolve(file);
  return (yield ['realpath', file]) as string;
}

function lockDir(file: string, o: { lockfilePath?: string | undefined }): string {
  return o.lockfilePath || `${file}.lock`;
}

function upstreamLockedError(file: string): Error {
  return withCode(new Error('Lock file is already being held'), 'ELOCKED', { file });
}

/** One try's outcome: taken, or busy (held by an fslock process, with its marker, or by upstream). */
type TryOutcome = { held: Held } | { busy: 'fslock'; marker: string } | { busy: 'upstream' };

/** One non-blocking attempt; takes over artefacts of dead or stale holders. */
function* attemptG(file: string, o: Normalized, mode: Mode, spare?: Spare): FsRun<TryOutcome> {
  const dir = lockDir(file, o);
  const marker = join(dir, MARKER);
  // Set when the directory vanished while its staleness was being checked:
  // the next EEXIST is final (upstream retries once, without a staleness check).
  let recheck = false;
  for (;;) {
    try {
      yield ['mkdir', dir];
    } catch (err) {
      if (errorCode(err) !== 'EEXIST') throw err;
      const probe = probeMarker(marker);
      if (probe.state === 'live') return { busy: 'fslock', marker };
      if (probe.state === 'dead') {
        if (!(yield* takeOverDeadG(dir, marker, probe.lock!))) return { busy: 'upstream' };
        continue;
      }
      // No marker: a real proper-lockfile holder (or an fslock one an instant
      // before it places its marker). Upstream's staleness rule applies.
      if (recheck) return { busy: 'upstream' };
      const stale = yield* upstreamStaleG(dir, o);
      if (stale === 'fresh') return { busy: 'upstream' };
      if (stale === 'vanished') recheck = true;
      continue;
    }
    const held = yield* placeMarkerG(dir, marker, o, mode, spare);
    if (held) return { held };
  }
}

/**
 * A marker whose holder is gone (`probeLock` holds it now): take the
 * artefact over at once, no staleness wait; but delete only a marker (empty,
 * and the very file probed): whatever else is there is not ours, and the
 * lock counts as held (false).
 */
function* takeOverDeadG(dir: string, marker: string, probeLock: FileLock): FsRun<boolean> {
  let removed = false;
  try {
    removed = unlinkIfHeld(marker, probeLock.identity);
    if (removed) yield ['rmdir', dir];
  } catch (e) {
    if (errorCode(e) !== 'ENOENT' && errorCode(e) !== 'ENOTEMPTY') throw e;
  } finally {
    probeLock.release();
  }
  return removed;
}

/**
 * Upstream's staleness rule for a lock directory without a marker: 'fresh'
 * (held), 'removed' (stale, and removed: try again) or 'vanished' (gone while
 * looked at: try once more, without this check).
 */
function* upstreamStaleG(dir: string, o: Normalized): FsRun<'fresh' | 'removed' | 'vanished'> {
  let stat: nodeFs.Stats;
  try {
    stat = (yield ['stat', dir]) as nodeFs.Stats;
  } catch (e) {
    // Something is there that is no directory one can stat (a dangling
    // symlink): held, as upstream answers, never a reason to spin.
    if (errorCode(e) === 'ENOENT') return 'vanished';
    throw e;
  }
  if (stat.mtime.getTime() >= Date.now() - o.stale) return 'fresh';
  try {
    yield ['rmdir', dir];
  } catch (e) {
    if (errorCode(e) !== 'ENOENT' && errorCode(e) !== 'ENOTEMPTY') throw e;
  }
  return 'removed';
}

/**
 * The directory is ours: put the locked marker in it (the waiter's spare,
 * when it has one). Null when it was removed under us (start again).
 */
function* placeMarkerG(dir: string, marker: string, o: Normalized, mode: Mode, spare?: Spare): FsRun<Held | null> {
  let kernel: FileLock;
  try {
    kernel = spare?.take(marker) ?? placeLocked(marker, 'rename', false);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return null;
    try {
      yield ['rmdir', dir];
    } catch {
      // leave it to the staleness rule
    }
    throw err;
  }
  // as upstream, look at the new directory once (its mtime is what a real
  // proper-lockfile process will judge staleness by)
  try {
    yield ['stat', dir];
  } catch {
    // not needed for the lock itself
  }
  return { dir, marker, kernel, identity: kernel.identity, options: o, timer: null, released: false, mode };
}

function compromised(file: string, held: Held, err: Error): void {
  held.released = true;
  if (held.timer) clearTimeout(held.timer);
  if (locks.get(file) === held) locks.delete(file);
  held.kernel.release();
  held.options.onCompromised(withCode(err, 'ECOMPROMISED'));
}

/** Keeps the mtime fresh for real proper-lockfile processes, and notices a lost artefact. */
function scheduleUpdate(file: string, held: Held): void {
  held.timer = setTimeout(() => {
    held.timer = null;
    if (held.released) return;
    if (pathIdentity(held.marker) !== held.identity) {
      // upstream reports the fs error of its failed mtime update: ENOENT for a removed lock
      compromised(
        file,
        held,
        new Error(`ENOENT: the lock artefact was removed or replaced by someone else, '${held.dir}'`),
      );
      return;
    }
    const now = new Date();
    const updated = (err: unknown) => {
      if (held.released) return;
      if (errorCode(err) === 'ENOENT') {
        compromised(file, held, err as Error);
        return;
      }
      // other errors are transient: try again on the next tick; the kernel lock is what counts
      scheduleUpdate(file, held);
    };
    try {
      const r = runIn(held.mode, touchG(held.dir, now), held.options.fs);
      if (r instanceof Promise) r.then(() => updated(null), updated);
      else updated(null);
    } catch (err) {
      updated(err);
    }
  }, held.options.update);
  held.timer.unref?.();
}

function* touchG(dir: string, when: Date): FsRun<void> {
  yield ['utimes', dir, when, when];
}

function register(file: string, held: Held): void {
  locks.set(file, held);
  installCleanup();
  // (the rename of the marker has just refreshed the directory's mtime)
  scheduleUpdate(file, held);
}

/** Stops the refresher and forgets the lock; the artefact is removed by releaseG. */
function forget(file: string, held: Held): void {
  if (held.timer) clearTimeout(held.timer);
  held.released = true;
  if (locks.get(file) === held) locks.delete(file);
}

/** Deletes the artefact while still holding the kernel lock, marker first, then the directory. */
function* releaseG(held: Held): FsRun<void> {
  let open = true;
  try {
    unlinkIfHeld(held.marker, held.identity); // only our marker, checked after an atomic move aside
    try {
      yield ['rmdir', held.dir];
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return;
      // Windows without POSIX deletion (older systems, Wine): a deleted file
      // keeps its name until its last handle closes, so the marker goes with the lock.
      if (errorCode(err) !== 'ENOTEMPTY' || platform().posixFiles) throw err;
      open = false;
      held.kernel.release();
      try {
        yield ['rmdir', held.dir];
      } catch (e) {
        if (errorCode(e) !== 'ENOENT') throw e;
      }
    }
  } finally {
    if (open) held.kernel.release();
  }
}

function releaseHeld(file: string, held: Held): void {
  forget(file, held);
  runSync(releaseG(held), held.options.fs);
}

async function releaseHeldAsync(file: string, held: Held, fs: FsLike): Promise<void> {
  forget(file, held);
  await runAsync(releaseG(held), fs);
}

// Release everything on exit and on SIGINT, SIGTERM and SIGHUP, as upstream
// does, so real proper-lockfile processes are not left waiting for staleness.
let cleanupInstalled = false;
function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  cleanupOnExit(() => {
    for (const [file, held] of [...locks]) {
      try {
        releaseHeld(file, held);
      } catch {
        // exiting anyway
      }
    }
  });
}

async function acquire(file: string, o: Normalized): Promise<Held> {
  const budget = retryBudgetMs(o.retries);
  const deadline = performance.now() + budget;
  const spare = new Spare(false);
  try {
    return await acquireWith(file, o, deadline, spare);
  } finally {
    spare.drop();
  }
}

async function acquireWith(file: string, o: Normalized, deadline: number, spare: Spare): Promise<Held> {
  for (;;) {
    const a = await runAsync(attemptG(file, o, 'async', spare), o.fs);
    if ('held' in a) return a.held;
    const left = deadline - performance.now();
    if (left <= 0) throw upstreamLockedError(file);
    if (o.retries.unref) {
      // retries: { unref: true }: like upstream's unref'd retry timers, the
      // wait must not keep the process alive, so poll with unref'd sleeps
      await sleep(Math.min(UPSTREAM_POLL_MS, left), true);
    } else if (a.busy === 'fslock') {
      // a real wait, woken by the kernel when the holder lets go; meanwhile
      // the marker that will be placed is made, beside the lock directory
      spare.ready(a.marker, dirname(lockDir(file, o)));
      if (!(await waitForRelease(a.marker, Math.min(left, 2 ** 31 - 1)))) throw upstreamLockedError(file);
    } else {
      await sleep(Math.min(UPSTREAM_POLL_MS, left));
    }
  }
}

// ---------------------------------------------------------------------------

function lock(file: string, options?: LockOptions): Promise<() => Promise<void>> {
  return (async () => {
    const o = normalize(options);
    const canon = await runAsync(canonicalG(file, o.realpath), o.fs);
    const held = await acquire(canon, o);
    register(canon, held);
    return async () => {
      if (held.released) throw withCode(new Error('Lock is already released'), 'ERELEASED');
      await releaseHeldAsync(canon, held, o.fs);
    };
  })();
}

function syncOptions<T extends { retries?: number | RetryOptions }>(options: T | undefined): T {
  const o = { ...options } as T;
  const r = o.retries;
  if (
    (typeof r === 'number' && r > 0) ||
    (r && typeof r === 'object' && typeof r.retries === 'number' && r.retries > 0)
  ) {
    throw withCode(new Error('Cannot use retries with the sync api'), 'ESYNC');
  }
  return o;
}

function lockSync(file: string, options?: LockOptions): () => void {
  const o = normalize(syncOptions(options));
  const canon = runSync(canonicalG(file, o.realpath), o.fs);
  const a = runSync(attemptG(canon, o, 'sync'), o.fs);
  if (!('held' in a)) throw upstreamLockedError(canon);
  register(canon, a.held);
  const held = a.held;
  return () => {
    if (held.released) throw withCode(new Error('Lock is already released'), 'ERELEASED');
    releaseHeld(canon, held);
  };
}

function* unlockG(file: string, o: { realpath: boolean }): FsRun<{ canon: string; held: Held }> {
  const canon = yield* canonicalG(file, o.realpath);
  const held = locks.get(canon);
  if (!held) throw withCode(new Error('Lock is not acquired/owned by you'), 'ENOTACQUIRED');
  return { canon, held };
}

function unlockSync(file: string, options?: UnlockOptions): void {
  const o = { realpath: true, fs: nodeFs as FsLike, ...syncOptions(options as LockOptions) };
  const { canon, held } = runSync(unlockG(file, { realpath: o.realpath !== false }), o.fs);
  forget(canon, held);
  runSync(releaseG(held), o.fs);
}

async function unlock(file: string, options?: UnlockOptions): Promise<void> {
  const o = { realpath: true, fs: nodeFs as FsLike, ...options };
  const { canon, held } = await runAsync(unlockG(file, { realpath: o.realpath !== false }), o.fs);
  await releaseHeldAsync(canon, held, o.fs);
}

function* checkG(
  file: string,
  o: { realpath: boolean; stale: number; lockfilePath?: string | undefined },
): FsRun<boolean> {
  const canon = yield* canonicalG(file, o.realpath);
  const dir = lockDir(canon, o);
  let stat: nodeFs.Stats;
  try {
    stat = (yield ['stat', dir]) as nodeFs.Stats;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
  const marker = join(dir, MARKER);
  if (nodeFs.existsSync(marker)) return isHeld(marker); // an fslock holder: alive or not, the kernel knows
  return stat.mtime.getTime() >= Date.now() - o.stale;
}

function checkOptions(options: CheckOptions | undefined) {
  const o = { stale: 10000, realpath: true, fs: nodeFs as FsLike, ...options };
  return { ...o, realpath: o.realpath !== false, stale: Math.max(o.stale || 0, 2000) };
}

function checkSync(file: string, options?: CheckOptions): boolean {
  const o = checkOptions(syncOptions(options as LockOptions) as CheckOptions);
  return runSync(checkG(file, o), o.fs);
}

async function check(file: string, options?: CheckOptions): Promise<boolean> {
  const o = checkOptions(options);
  return runAsync(checkG(file, o), o.fs);
}

lock.lock = lock;
lock.unlock = unlock;
lock.lockSync = lockSync;
lock.unlockSync = unlockSync;
lock.check = check;
lock.checkSync = checkSync;

// The option types under the names @types/proper-lockfile uses, so code typed
// against it compiles unchanged (import { LockOptions } from 'fslock/proper-lockfile').
// eslint-disable-next-line @typescript-eslint/no-namespace -- the types of an `export =` module
declare namespace lock {
  export type { LockOptions, UnlockOptions, CheckOptions };
}

export = lock;
