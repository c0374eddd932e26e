/**
 * The one seam to the native module: everything else imports it from here,
 * so tests can substitute it. node-gyp-build loads a matching prebuild from
 * prebuilds/<platform>-<arch>/ or the local build in build/Release.
 */
import { existsSync, readFileSync } from 'fs';
import { dirname, join } from 'path';

/** Numbers shared with native/platform/platform.h. */
export interface BindingConstants {
  FLOCK: 1;
  OFD: 2;
  POSIX: 3;
  WINDOWS: 4;
  UNLOCK: 0;
  SHARED: 1;
  EXCLUSIVE: 2;
  OPEN_WRITE: 1;
  OPEN_CREATE: 2;
  /** Fail with ELOOP when the last component is a symlink (Unix). */
  OPEN_NOFOLLOW: 4;
  /** With OPEN_CREATE: fail with EEXIST when anything (a symlink too) is there. */
  OPEN_EXCLUSIVE: 8;
  /** acquire(): the lock may be released with keepOpen (remember its path). */
  ACQUIRE_KEEP: 256;
  /** open(2) flags creating an anonymous file in a directory (O_TMPFILE|O_RDWR), or 0 where the OS has none. */
  ANONYMOUS_FILE: number;
  /** Whether blocking waits can run on an interruptible native thread. */
  NATIVE_WAIT: boolean;
}

export interface QueryResult {
  type: 0 | 1 | 2;
  start: number;
  len: number;
  pid: number;
}

/** Opaque handle of a wait running on a native thread. */
export type WaitHandle = { readonly __brand: 'fslock.WaitHandle' };
/** Opaque handle of a synchronous wait running on a native thread. */
export type SyncWaitHandle = { readonly __brand: 'fslock.SyncWaitHandle' };

/** What `waitCancel` and `syncWaitCancel` report. */
export const CancelOutcome = {
  Interrupted: 0,
  Granted: 1,
  Stuck: 2,
  AlreadyFinished: -1,
} as const;
export type CancelOutcome = (typeof CancelOutcome)[keyof typeof CancelOutcome];

export interface Binding {
  constants: BindingConstants;
  /** Hash of native/ sources this binary was built from. */
  sourceHash: string;
  open(path: string, flags: number): number;
  /** Closes through the POSIX registry so a close never drops a registry lock. */
  close(fd: number): void;
  /** Makes a descriptor opened elsewhere one of this thread's (closed at teardown like open()'s). */
  adopt(fd: number): void;
  /** "dev:ino" of an open file. */
  identity(fd: number): string;
  /** "dev:ino" of the file at path, or null when there is none. */
  pathIdentity(path: string): string | null;
  fsInfo(fd: number): { type: number; name: string };
  writeAt(fd: number, data: Buffer, offset: number): number;
  readAt(fd: number, data: Buffer, offset: number): number;
  /** rename that fails with EEXIST instead of replacing; ENOSYS where it cannot. */
  renameNoReplace(from: string, to: string): void;
  /**
   * Renames `path` to `aside` (a fresh name beside it) and lstats what was
   * moved: null when nothing was at `path`; identity null when the moved
   * entry could not be lstat'ed. Not on Windows (ENOTSUP).
   */
  moveAside(path: string, aside: string): { identity: string | null; size: number } | null;
  /**
   * Deletes `path` (a directory with everything in it) by directory
   * descriptors, never following a symlink or leaving the tree; returns how
   * many entries it deleted (0: nothing was there). ENOTSUP on Windows.
   */
  removeTree(path: string): number;
  /**
   * Names the anonymous file open as `fd` (opened with ANONYMOUS_FILE):
   * EEXIST when anything is at `to`; ENOSYS where that cannot be done.
   */
  linkAnonymous(fd: number, to: string): void;
  /**
   * Registers a list of steps (primitive, start, len triples) for acquire()
   * and release(): returns its plan number (negative), or 0 when this thread
   * has registered too many (then pass the steps themselves).
   */
  plan(steps: number, ...triples: number[]): number;
  /**
   * Fast path: opens `path` (read-write, never following or creating through a
   * symlink; OPEN_CREATE creates a missing file with O_EXCL), takes the steps
   * (a plan number, or their count and triples) in order without waiting, and
   * checks the file is still the one at `path`. Returns its identity; `out[0]`
   * is the descriptor, `out[1]` -1 when every step was taken, else the
   * contended step (the descriptor stays open holding the earlier ones).
   */
  acquire(path: string, flags: number, type: number, planOrSteps: number, ...triples: number[]): string;
  /**
   * Fast path: unlocks the steps in reverse order, then closes — or, with
   * `keepOpen`, keeps the descriptor open (unlocked) for the next acquire() of
   * the path it was acquired by.
   */
  release(fd: number, keepOpen: boolean, planOrSteps: number, ...triples: number[]): void;
  /** Closes kept-open descriptors idle for `idleMs` (0: all); returns how many stay. */
  sweepCache(idleMs: number): number;
  /** Results of acquire(): [descriptor, contended step or -1]. */
  out: Float64Array;
  /** One lock system call; false when contended (never for unlock). */
  lock(primitive: number, fd: number, type: number, start: number, len: number, wait: boolean): boolean;
  query(primitive: number, fd: number, type: number, start: number, len: number): QueryResult;
  /**
   * Waits on a native thread. Given `verifyPath`, `reusable` (a read-write
   * descriptor release() may keep open) and the steps after this one
   * (0 for none, a plan, or count + triples), that thread also takes those and
   * checks the file's identity once granted; the callback then receives
   * `state` (-1 whole, with `identity`; k: then-step k is contended; -2: the
   * file at the path was replaced).
   */
  waitStart(
    primitive: number,
    fd: number,
    type: number,
    start: number,
    len: number,
    callback: (err: Error | null, state?: number, identity?: string, grantMs?: number) => void,
    verifyPath?: string,
    reusable?: boolean,
    ...thenSteps: number[]
  ): WaitHandle;
  waitCancel(handle: WaitHandle, budgetMs: number): CancelOutcome;
  /**
   * A kernel wait on a pool thread, waited for in slices by syncWaitFor; end
   * it with syncWaitCancel unless syncWaitFor returned 1 or threw.
   */
  syncWaitStart(primitive: number, fd: number, type: number, start: number, len: number): SyncWaitHandle;
  /** Blocks up to timeoutMs: 1 granted, 0 still waiting; throws the wait's error. */
  syncWaitFor(handle: SyncWaitHandle, timeoutMs: number): 0 | 1;
  /** 0 interrupted, 1 granted, 2 stuck (the fd now belongs to the waiter thread), -1 already ended. */
  syncWaitCancel(handle: SyncWaitHandle, budgetMs: number): CancelOutcome;
  /** Holder id, or null when contended (in this process or another). */
  registryLock(fd: number, type: number, start: number, len: number): number | null;
  registryChange(holder: number, type: number): boolean;
  registryUnlock(holder: number): void;
  /** Process-wide (all worker threads) set of marks. */
  mark(key: string, add: boolean): void;
  isMarked(key: string): boolean;
}

/** The directory holding fslock's package.json, from src/ or dist/cjs/. */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'fslock') return dir;
      } catch {
        // keep walking up
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`fslock: cannot find its package.json above ${__dirname}`);
    dir = parent;
  }
}

function load(): Binding {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => Binding;
  return nodeGypBuild(packageRoot());
}

export const binding: Binding = load();
export const C = binding.constants;
