/**
 * The filesystem calls the session protocol makes, behind one object so
 * tests can inject failures (EPERM/EACCES/EBUSY as Windows produces them)
 * without mocking node:fs for everything else.
 */
import { constants, promises as fsp } from 'node:fs';
import fse from 'fs-extra';

export const fsops = {
  rename: (from: string, to: string): Promise<void> => fsp.rename(from, to),
  /** Recursive removal; a missing path is not an error. */
  remove: (path: string): Promise<void> => fsp.rm(path, { recursive: true, force: true, maxRetries: 0 }),
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
