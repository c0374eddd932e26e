/**
 * Names of fslock's transient files: temporary files placed by the drop-ins
 * and records, the aside names of a safe delete, session trash. Each carries
 * 64 random bits, so nobody who watches the directory (inotify shows every
 * name) can predict the next one and plant something there. Random bytes are
 * drawn in blocks and turned into hex digits a block at a time (a draw per
 * name cost about 8 µs, a tenth of a drop-in's release; turning 8 bytes into
 * hex per name, 30-110 µs in a process woken from idle, on a hand-off's
 * path). Callers create each name without replacing anything (O_EXCL,
 * RENAME_NOREPLACE) and pick another on the rare collision.
 */
import { renameSync } from 'fs';
import { binding } from './binding.js';
import { errorCode } from './errors.js';

const BLOCK = 4096;
/** The tags still to hand out, as hex digits (a block of random bytes at a time). */
let pool = '';
let used = 0;

/** 16 hex digits: 64 random bits, never the same bits twice. */
export function randomTag(): string {
  if (used + 16 > pool.length) {
    // loaded on first use: a CLI run that never makes a transient name does not pay for crypto
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    pool = (require('crypto') as typeof import('crypto')).randomBytes(BLOCK).toString('hex');
    used = 0;
  }
  const tag = pool.slice(used, used + 16);
  used += 16;
  return tag;
}

/**
 * Renames to a fresh name without replacing whatever may appear there
 * meanwhile (EEXIST), where the OS and filesystem can refuse; a plain rename
 * elsewhere.
 */
export function renameFresh(from: string, to: string): void {
  try {
    binding.renameNoReplace(from, to);
  } catch (err) {
    if (errorCode(err) !== 'ENOSYS') throw err;
    renameSync(from, to);
  }
}

/** How many fresh names a caller tries before reporting the last collision. */
export const NAME_ATTEMPTS = 8;

/** Errors of a create-or-rename that mean "that name is taken": try another. */
export function nameTaken(code: string | undefined): boolean {
  return code === 'EEXIST' || code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'ENOTDIR';
}
