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
import { linkSync, lstatSync, renameSync, unlinkSync } from 'fs';
import { randomBytes } from 'crypto';
import { basename, dirname, join } from 'path';
import { binding } from './binding.js';
import { errorCode } from './errors.js';

// Names of fslock's own transient files: unique in this process by the
// counter, among processes by pid and salt (random bytes per call cost ~8 µs,
// a tenth of a drop-in's whole release).
const salt = randomBytes(6).toString('hex');
let counter = 0;

/** A tag no other name of fslock's carries: "<pid>-<salt><counter>". */
export function uniqueTag(): string {
  return `${process.pid}-${salt}${(counter++).toString(36)}`;
}

/**
 * Deletes the file at `path` if it is the file with `identity` ("dev:ino") and
 * empty (or, with `withData`, whatever it holds). False when a file is left
 * there (not that one); true when it was deleted, or nothing was there.
 */
export function unlinkIfHeld(path: string, identity: string, withData = false): boolean {
  const aside = join(dirname(path), `.${basename(path)}.fslock-unlink-${uniqueTag()}`);
  const moved = moveAside(path, aside);
  if (moved === null) return true; // already gone
  if (moved.identity === identity && (withData || moved.size === 0)) {
    unlinkSync(aside);
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
  if (process.platform !== 'win32') return binding.moveAside(path, aside);
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
