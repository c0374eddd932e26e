/**
 * One attempt at a lock: open the lock file (O_CLOEXEC, so children never
 * inherit it; see open.ts for symlinks), take each step of the strategy with
 * a non-blocking try, and check that the open file is still the one at the
 * path (a holder may have deleted it while we waited), starting again if not.
 * An attempt ends held (a FileLock) or contended at a step (the caller waits
 * for that step, then continues after the grant).
 */
import { binding, C } from '../binding.js';
import { errorCode, lockedError } from '../errors.js';
import { writeRecord } from '../holder.js';
import { openLockFile } from '../open.js';
import type { ParsedLockOptions } from '../options.js';
import { readOnlyExclusive, typeOf, type LockHandle, type LockStrategy } from '../strategy.js';
import type { WaitFailure, WaitOutcome } from '../wait.js';
import { FileLock } from './file-lock.js';
import { holderOf } from './held.js';

/** An opened lock file with the strategy that will lock it. */
export interface Opened {
  h: LockHandle;
  s: LockStrategy;
}

/** An open lock file that holds nothing yet. */
export function handle(fd: number, writable: boolean): LockHandle {
  return { fd, writable, registryId: null };
}

function openHandle(path: string, options: ParsedLockOptions, strategy: LockStrategy): Opened {
  if (options.createNew) {
    const fd = binding.open(path, C.OPEN_WRITE | C.OPEN_CREATE | C.OPEN_EXCLUSIVE | C.OPEN_NOFOLLOW);
    return { h: handle(fd, true), s: strategy };
  }
  try {
    return { h: handle(openLockFile(path, true, options.create, options.allowUnsafeSymlink), true), s: strategy };
  } catch (err) {
    const code = errorCode(err);
    // Not writable (or a directory): open it read-only. A shared lock needs
    // nothing more; an exclusive one only flock can take on such a descriptor.
    if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM' && code !== 'EISDIR') throw err;
    const fd = openLockFile(path, false, options.create, options.allowUnsafeSymlink);
    try {
      const ro =
        options.mode === 'exclusive' ? readOnlyExclusive(strategy, options.primitive, path, options.range) : strategy;
      return { h: handle(fd, false), s: ro };
    } catch (e) {
      binding.close(fd);
      throw e;
    }
  }
}

/**
 * Gives up an attempt: unlocks what it took and closes the descriptor. With
 * `later`, the close is left to the next turn of the event loop (the locks
 * go now): for a file its holder deleted as it let go, this descriptor is
 * the inode's last reference, and closing it frees the inode (on ext4 about
 * 40-200 µs after an idle wait), time a waiter need not spend before going on.
 */
export function closeAttempt({ h, s }: Opened, later = false): void {
  if (h.fd < 0) return; // belongs to a stuck waiter thread now
  const fd = h.fd;
  try {
    s.unlock(h);
  } catch {
    // closing releases flock, OFD and Windows locks anyway
  } finally {
    h.fd = -1;
    if (later) setImmediate(() => binding.close(fd));
    else binding.close(fd);
  }
}

/** An attempt stopped at a contended step. */
export interface Contended extends Opened {
  step: number;
  /** The file's identity, when the fast path reported it. */
  identity?: string;
}

/** Errors of the native fast path that the general path handles (symlinks, read-only files, directories). */
const SLOW_PATH_CODES = new Set(['ELOOP', 'EMLINK', 'EFTYPE', 'EACCES', 'EROFS', 'EPERM', 'EISDIR']);

export function finishLock(path: string, options: ParsedLockOptions, opened: Opened, identity: string): FileLock {
  const rec =
    options.mode === 'exclusive' && !options.range && options.record
      ? writeRecord(path, identity, options.recordArgv)
      : null;
  return new FileLock(path, opened.h, opened.s, options, identity, rec);
}

/**
 * Takes the steps from `from` on without waiting. Returns the FileLock, the
 * contended step, or null when the file at `path` changed (start again).
 * `named` false: the file has no name yet (an anonymous file), nothing to check.
 */
export function takeSteps(
  path: string,
  options: ParsedLockOptions,
  opened: Opened,
  from: number,
  named = true,
): FileLock | Contended | null {
  const type = typeOf(options.mode);
  const steps = opened.s.steps;
  for (let i = from; i < steps.length; i++) {
    if (!opened.s.tryStep(opened.h, steps[i]!, type)) return { ...opened, step: i };
  }
  const identity = binding.identity(opened.h.fd);
  if (named && identity !== binding.pathIdentity(path)) {
    closeAttempt(opened); // the file was replaced or deleted while we waited: start over
    return null;
  }
  return finishLock(path, options, opened, identity);
}

/** Opens and tries; loops while the file changes under us. */
export function openAndTry(path: string, options: ParsedLockOptions, strategy: LockStrategy): FileLock | Contended {
  if (strategy.fast && !options.createNew) {
    // One native call: open, every step, identity check.
    let result = null;
    try {
      result = strategy.acquireFast(
        path,
        options.create,
        typeOf(options.mode),
        options.keepOpen && !options.unlinkOnRelease,
      );
    } catch (err) {
      if (!SLOW_PATH_CODES.has(errorCode(err) ?? '')) throw err;
    }
    if (result) {
      const opened: Opened = { h: handle(result.fd, true), s: strategy };
      if (result.contended >= 0) return { ...opened, step: result.contended, identity: result.identity };
      try {
        return finishLock(path, options, opened, result.identity);
      } catch (err) {
        closeAttempt(opened);
        throw err;
      }
    }
  }
  for (;;) {
    const opened = openHandle(path, options, strategy);
    try {
      const result = takeSteps(path, options, opened, 0);
      if (result) return result;
    } catch (err) {
      closeAttempt(opened);
      throw err;
    }
  }
}

/**
 * After a granted wait on `c.step`: take the rest, or start over if the file
 * changed. `o`: what the waiter thread found when it took the rest itself
 * (see LockStrategy.waitStep); without it, the rest is taken here.
 */
export function continueAfterGrant(
  path: string,
  options: ParsedLockOptions,
  strategy: LockStrategy,
  contended: Contended,
  opened?: WaitOutcome,
): FileLock | Contended {
  try {
    if (!opened) return takeSteps(path, options, contended, contended.step + 1) ?? openAndTry(path, options, strategy);
    if (opened.state >= 0) return { ...contended, step: contended.step + 1 + opened.state };
    if (opened.state === -1) return finishLock(path, options, contended, opened.identity!);
    closeAttempt(contended); // the file was replaced or deleted while we waited: start over
    return openAndTry(path, options, strategy);
  } catch (err) {
    closeAttempt(contended);
    throw err;
  }
}

/** Cleans up after a failed wait and passes its error on. */
export function endFailedWait(contended: Contended, err: unknown): never {
  if ((err as WaitFailure).stuck) contended.h.fd = -1; // the waiter thread owns the descriptor now
  closeAttempt(contended);
  throw err;
}

export function failHeldElsewhere(path: string, contended: Contended): never {
  const holder = holderOf(contended.h.fd, path);
  closeAttempt(contended);
  throw lockedError(path, holder);
}
