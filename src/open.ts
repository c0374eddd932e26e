/**
 * Opening a lock file in a directory other people can write to.
 *
 * Lock files live in shared places (/tmp, a team cache, a CI workspace), so
 * the name may be a symlink somebody planted. Two rules, applied here by
 * fslock itself so they hold even where the kernel's own protection
 * (fs.protected_symlinks) is turned off:
 *
 * - A file is never created through a symlink. A missing file is created
 *   with O_CREAT|O_EXCL|O_NOFOLLOW, which fails on any symlink, dangling or
 *   not; a symlink whose target is missing is an error, not a file to create.
 * - A symlink at the lock path is followed only if the kernel's
 *   protected_symlinks rule would follow it: the directory holding it is not
 *   both sticky and world-writable, or the link belongs to this user or to
 *   the directory's owner. `allowUnsafeSymlink: true` follows it anyway.
 *
 * Locking an existing file through a symlink of one's own keeps working, as
 * it does with flock(1).
 */
import { platform } from './platform.js';
import { lstatSync, statSync } from 'fs';
import { dirname } from 'path';
import { binding, C } from './binding.js';
import { danglingSymlinkError, errorCode, unsafeSymlinkError } from './errors.js';

/** Whether `path` itself (not what it points to) is a symbolic link. */
export function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Throws unless the protected_symlinks rule allows following the link at `path`. */
function checkSymlink(path: string): void {
  if (!platform().fileOwners || typeof process.geteuid !== 'function') return;
  let link;
  let dir;
  try {
    link = lstatSync(path);
    dir = statSync(dirname(path));
  } catch {
    return; // changed meanwhile: the open below reports what is there now
  }
  const sticky = (dir.mode & 0o1000) !== 0;
  const worldWritable = (dir.mode & 0o002) !== 0;
  const euid = process.geteuid();
  if (!sticky || !worldWritable || link.uid === euid || link.uid === dir.uid) return;
  throw unsafeSymlinkError(path, dirname(path), link.uid, dir.uid, euid);
}

/**
 * Opens (and with `create`, creates) the lock file at `path`; read-write
 * unless `write` is false. Returns the descriptor.
 */
export function openLockFile(path: string, write: boolean, create: boolean, allowUnsafeSymlink: boolean): number {
  const base = write ? C.OPEN_WRITE : 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return binding.open(path, base | C.OPEN_NOFOLLOW);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ENOENT' && create) {
        try {
          return binding.open(path, base | C.OPEN_CREATE | C.OPEN_EXCLUSIVE | C.OPEN_NOFOLLOW);
        } catch (err2) {
          // created (or a link planted) since our first look: look again
          if (errorCode(err2) === 'EEXIST' && attempt < 100) continue;
          throw err2;
        }
      }
      // O_NOFOLLOW on a symlink: ELOOP (Linux, macOS), EMLINK (FreeBSD), EFTYPE (NetBSD)
      if ((code === 'ELOOP' || code === 'EMLINK' || code === 'EFTYPE') && isSymlink(path)) {
        if (!allowUnsafeSymlink) checkSymlink(path);
        try {
          return binding.open(path, base); // follows the link; never creates
        } catch (err3) {
          if (errorCode(err3) === 'ENOENT') throw danglingSymlinkError(path);
          throw err3;
        }
      }
      throw err;
    }
  }
}
