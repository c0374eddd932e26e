/**
 * Exit codes of the fslock command (docs/cli.md, "Exit status"). `fslock run`
 * uses util-linux flock(1)'s: the BSD sysexits codes wherever flock(1)
 * defines one, so a script that swaps flock for fslock sees the same status.
 */
export const EXIT = Object.freeze({
  OK: 0,
  /** fslock run: the lock was held (-n) or the wait timed out (-w); change with -E. */
  CONFLICT: 1,
  /** inspect, sessions, gc: something failed (a directory cannot be read, gc could not remove something). */
  FAILURE: 3,
  /** EX_USAGE: bad command line (every subcommand). */
  USAGE: 64,
  /** EX_DATAERR: fslock run's descriptor form on a descriptor that is not open, or not one passed to it. */
  DATAERR: 65,
  /** EX_NOINPUT: fslock run cannot open the lock file (missing directory, permission, symlink refused, …). */
  NOINPUT: 66,
  /** EX_UNAVAILABLE: fslock run cannot execute the command (not found, not executable). */
  UNAVAILABLE: 69,
  /** EX_SOFTWARE: fslock run failed otherwise (an unexpected error, a primitive not available here). */
  SOFTWARE: 70,
  /** EX_OSERR: out of memory or descriptors. */
  OSERR: 71,
  /** EX_CANTCREAT: the lock file is on a read-only filesystem, or there is no space to create it. */
  CANTCREAT: 73,
  /** fslock run: the command was killed by signal N → 128 + N. */
  SIGNAL_BASE: 128,
});

/** A command-line mistake: printed with the subcommand's usage, exit 64. */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}

/** The exit status flock(1) gives when it cannot open the lock file, by error code. */
export function openFailureStatus(code: string | undefined): number {
  switch (code) {
    case 'ENOMEM':
    case 'EMFILE':
    case 'ENFILE':
      return EXIT.OSERR;
    case 'EROFS':
    case 'ENOSPC':
      return EXIT.CANTCREAT;
    default:
      return EXIT.NOINPUT;
  }
}
