/**
 * unlinkOnRelease: delete a lock file only if it is provably the one held.
 *
 * Checking the path and then unlinking it would be two steps a racer can
 * separate (swapping another file in between), so the path is first moved
 * aside to a unique name in one atomic rename, the moved file is checked, and
 * a file that is not the held one is put back without replacing anything that
 * appeared at the path meanwhile. fslock never writes into lock files, so a
 * lock file is empty: a file with data in it is somebody's and is never
 * deleted either. The one exception is asked for (`withData`) by the
 * compatibility layers for their own lock files, which they create with
 * O_EXCL and write a holder record into.
 */
import { platform } from './platform.js';
import { existsSync, linkSync, lstatSync, renameSync, unlinkSync } from 'fs';
import { basename, dirname, join } from 'path';
import { binding } from './binding.js';
import { errorCode } from './errors.js';
import { NAME_ATTEMPTS, nameTaken, randomTag } from './names.js';

/**
 * Deletes the file at `path` if it is the file with `identity` ("dev:ino") and
 * empty (or, with `withData`, whatever it holds). False when a file is left
 * there (not that one); true when it was deleted, or nothing was there.
 * `letGo`: called once the file is off `path` and proven the held one, before
 * its unique name is unlinked (a holder lets go of its lock there, so a
 * waiter's hand-off does not wait for the unlink).
 */
export function unlinkIfHeld(path: string, identity: string, withData = false, letGo?: () => void): boolean {
  let aside = '';
  let moved: ReturnType<typeof moveAside> | undefined;
  // A name someone planted (they cannot predict it, but may be lucky) is
  // never replaced: another name is tried.
  for (let i = 1; moved === undefined; i++) {
    aside = join(dirname(path), `.${basename(path)}.fslock-unlink-${randomTag()}`);
    try {
      moved = moveAside(path, aside);
    } catch (err) {
      if (i >= NAME_ATTEMPTS || !nameTaken(errorCode(err))) throw err;
    }
  }
  if (moved === null) return true; // already gone
  if (moved.identity === identity && (withData || moved.size === 0)) {
    try {
      letGo?.();
    } finally {
      unlinkSync(aside);
    }
    return true;
  }
  putBack(aside, path);
  return false;
}

/**
 * Renames `path` to `aside` and looks at what was moved (lstat: a symlink is
 * never taken for its target); null when nothing was at `path`. One native
 * call where it can (a release's cost is mostly these steps); Node's fs on
 * Windows.
 */
function moveAside(path: string, aside: string): { identity: string | null; size: number } | null {
  if (platform().posixFiles) return binding.moveAside(path, aside);
  // Windows: Node's rename would replace a file planted at the aside name; look first (the name is unguessable)
  if (existsSync(aside)) throw Object.assign(new Error(`EEXIST: ${aside}`), { code: 'EEXIST' });
  try {
    renameSync(path, aside);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return null;
    throw err;
  }
  try {
    const st = lstatSync(aside, { bigint: true });
    return { identity: `${st.dev}:${st.ino}`, size: Number(st.size) };
  } catch {
    return { identity: null, size: 0 };
  }
}

/** Renames `from` back to `to` without replacing anything now at `to`. */
function putBack(from: string, to: string): void {
  try {
    binding.renameNoReplace(from, to);
    return;
  } catch (err) {
    if (errorCode(err) !== 'ENOSYS') return warnLeftAside(from, to, err);
  }
  try {
    linkSync(from, to); // no atomic no-replace rename here: link fails on EEXIST
    unlinkSync(from);
  } catch (err) {
    warnLeftAside(from, to, err);
  }
}

function warnLeftAside(from: string, to: string, err: unknown): void {
  if (errorCode(err) === 'ENOENT') return;
  process.emitWarning(
    `fslock: a file that replaced the lock file '${to}' while it was being released could not be put ` +
      `back (${errorCode(err) ?? 'error'}: another file is there now); it was left, untouched, at '${from}'`,
    { code: 'FSLOCK_LEFT_ASIDE', type: 'FslockWarning' },
  );
}
