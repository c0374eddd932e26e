/**
 * The one place that asks which operating system this is. Everything else
 * asks for a capability by its name, so the reason for each branch is in
 * its name, and tests can pretend to be another platform (overridePlatform),
 * as rimraf's tests do. What each primitive does is decided in strategy.ts
 * and primitives.ts, from the facts probed there; this module holds the
 * facts about the rest of the system.
 */

export interface Platform {
  /** process.platform. */
  readonly name: NodeJS.Platform;
  /** The kernel's lock table is readable: /proc/locks, /proc/<pid>/fdinfo, /proc/<pid>/status (Linux). */
  readonly lockTable: boolean;
  /** Files have owners, and a process an effective uid, to compare (not Windows, where stat reports uid 0). */
  readonly fileOwners: boolean;
  /**
   * Deleting and renaming follow POSIX: a name goes at once, open or not, and
   * directories are walked by descriptors (not Windows). So: released
   * descriptors may be kept open for reuse, a file is moved aside in one
   * native call, trees are removed by directory descriptors, and a lock file
   * may be created anonymously and named later.
   */
  readonly posixFiles: boolean;
  /** Node's descriptors are the native handles the addon takes (not Windows, where they are the C runtime's). */
  readonly nodeFdIsHandle: boolean;
  /** A child process can be handed a locked descriptor, and a directory can be opened to lock (not Windows). */
  readonly unixDescriptors: boolean;
  /** The timestamp lockfile's staleness uses, as upstream: ctime, mtime on Windows. */
  readonly staleTimestamp: 'ctime' | 'mtime';
  /** Signals that end a process and can be listened to: the drop-ins clean up on them. */
  readonly exitSignals: readonly NodeJS.Signals[];
  /** Signals `fslock run` passes on to its command. */
  readonly forwardedSignals: readonly NodeJS.Signals[];
}

function detect(name: NodeJS.Platform): Platform {
  const windows = name === 'win32';
  return {
    name,
    lockTable: name === 'linux',
    fileOwners: !windows,
    posixFiles: !windows,
    nodeFdIsHandle: !windows,
    unixDescriptors: !windows,
    staleTimestamp: windows ? 'mtime' : 'ctime',
    exitSignals: windows ? ['SIGINT', 'SIGTERM'] : ['SIGINT', 'SIGTERM', 'SIGHUP'],
    forwardedSignals: windows ? ['SIGINT', 'SIGHUP'] : ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'],
  };
}

let current: Platform = detect(process.platform);

/** This platform's capabilities (read at each use: overridePlatform applies at once). */
export function platform(): Platform {
  return current;
}

/**
 * For tests: pretend to be `name` (its capabilities), or change some
 * capabilities of this one. Returns the function that restores the real one.
 */
export function overridePlatform(change: NodeJS.Platform | Partial<Platform>): () => void {
  const before = current;
  current = typeof change === 'string' ? detect(change) : { ...current, ...change };
  return () => {
    current = before;
  };
}
