/** Exit codes of the fslock command (README, "Exit codes"). */
export const EXIT = Object.freeze({
  OK: 0,
  /** fslock run: the lock was held (-n) or the wait timed out (-w); change with -E. */
  CONFLICT: 1,
  /** Bad command line. */
  USAGE: 2,
  /** Something failed: the lock file cannot be opened, a directory cannot be read, … */
  FAILURE: 3,
  /** fslock run: the command was found but could not be executed. */
  CANNOT_EXECUTE: 126,
  /** fslock run: the command was not found. */
  NOT_FOUND: 127,
  /** fslock run: the command was killed by signal N → 128 + N. */
  SIGNAL_BASE: 128,
});

/** A command-line mistake: printed with the subcommand's usage, exit 2. */
export class UsageError extends Error {
  readonly code = 'ERR_USAGE';
}
