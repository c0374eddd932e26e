/**
 * File operations of the session protocol: the filesystem calls it makes,
 * behind one object so tests can inject failures (EPERM/EACCES/EBUSY as
 * Windows produces them) without mocking node:fs for everything else, and the
 * removal helpers built on them (used by the protocol and the collector).
 */
import { platform } from '../platform.js';
import { constants, promises as fsp } from 'fs';
import { basename, dirname, join } from 'path';
import fse from 'fs-extra';
import { binding } from '../binding.js';
import { errorCode } from '../errors.js';
import { NAME_ATTEMPTS, nameTaken, randomTag, renameFresh } from '../names.js';
import { retryTransient } from '../retry.js';

/**
 * Recursive removal that never leaves the tree: the native walk by directory
 * descriptors (see binding.removeTree). Windows has no such walk here:
 * Node's fs.rm, which checks each entry (never descending into a symlink or
 * junction) and removes it by path; see the threat model in docs/security.md.
 */
async function removeTree(path: string): Promise<void> {
  if (!platform().posixFiles) {
    await fsp.rm(path, { recursive: true, force: true, maxRetries: 0 });
    return;
  }
  binding.removeTree(path);
}

export const fsops = {
  /** Never replaces anything at `to` (EEXIST) where the OS can refuse; the protocol's targets are fresh names. */
  rename: async (from: string, to: string): Promise<void> => renameFresh(from, to),
  /** Recursive removal by directory descriptors, never leaving the tree; a missing path is not an error. */
  remove: removeTree,
  unlink: (path: string): Promise<void> => fsp.unlink(path),
  link: (from: string, to: string): Promise<void> => fsp.link(from, to),
  /**
   * Copies one entry. Regular files: copyFile (a reflink where the filesystem
   * offers one, never overwriting); anything else (symlinks, …): fs-extra.
   */
  copy: async (from: string, to: string): Promise<void> => {
    const st = await fsp.lstat(from);
    if (st.isFile()) {
      await fsp.copyFile(from, to, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      await fsp.utimes(to, st.atime, st.mtime);
      return;
    }
    await fse.copy(from, to, { preserveTimestamps: true, errorOnExist: true, overwrite: false });
  },
  mkdir: async (path: string, recursive = false): Promise<void> => {
    await fsp.mkdir(path, { recursive });
  },
  readdir: (path: string) => fsp.readdir(path, { withFileTypes: true }),
  realpath: (path: string): Promise<string> => fsp.realpath(path),
  lstat: (path: string) => fsp.lstat(path),
  stat: (path: string) => fsp.stat(path),
};

/** Prefix of temporary names used to remove directories atomically. */
export const TRASH_PREFIX = '.fslock-trash-';
/**
 * Exactly what removeDirAtomically names its trash (16 random hex digits;
 * 8 before version 0.2): anything else is not ours.
 */
export const TRASH_NAME = /^\.fslock-trash-s-[0-9a-z]{10}-[0-9a-z]{7}-[0-9a-z]+-(?:[0-9a-f]{8}|[0-9a-f]{16})$/;

/**
 * Removes a directory without ever leaving a half-deleted one under a session
 * name: rename it to a hidden trash name first (atomic), then delete that.
 * Both steps retry the transient errors Windows produces. Returns false when
 * the directory was not there (ENOENT): nothing was removed.
 */
export async function removeDirAtomically(dir: string): Promise<boolean> {
  for (let i = 1; ; i++) {
    const trash = join(dirname(dir), `${TRASH_PREFIX}${basename(dir)}-${randomTag()}`);
    try {
      await retryTransient(() => fsops.rename(dir, trash));
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ENOENT') return false;
      if (i < NAME_ATTEMPTS && nameTaken(code)) continue; // a planted name: take another
      throw err;
    }
    await removeTrash(trash);
    return true;
  }
}

/** Deletes trash left by removeDirAtomically. */
export async function removeTrash(trash: string): Promise<void> {
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
