/**
 * Which lock primitives this platform has, and which one `primitive: 'auto'`
 * resolves to. The facts behind the choice are in docs/platforms.md ("Choosing a
 * primitive"): on Linux flock and OFD/POSIX locks do not see each other, so a
 * whole-file lock that must exclude every other locker holds both.
 */
import { readFileSync } from 'fs';
import { release } from 'os';
import { binding, C } from './binding.js';
import { platform } from './platform.js';

/**
 * The one table of primitives a caller can ask for (besides 'auto'): each
 * name with its number in the native module (native/platform/platform.h).
 */
export const PRIMITIVES = Object.freeze({
  flock: C.FLOCK,
  ofd: C.OFD,
  posix: C.POSIX,
  windows: C.WINDOWS,
} as const);
/** A primitive a caller can ask for. */
export type PrimitiveName = keyof typeof PRIMITIVES;
/** The primitives a caller can ask for, in the table's order. */
export const PRIMITIVE_NAMES: readonly PrimitiveName[] = Object.freeze(Object.keys(PRIMITIVES) as PrimitiveName[]);

/**
 * The one validator of a requested primitive: 'auto' or a name of the table.
 * `fail(expected)` builds the caller's error (an argument error, a usage error).
 */
export function parsePrimitive(value: unknown, fail: (expected: string) => Error): 'auto' | PrimitiveName {
  if (value === undefined || value === 'auto') return 'auto';
  if (typeof value === 'string' && Object.hasOwn(PRIMITIVES, value)) return value as PrimitiveName;
  throw fail(`one of 'auto', ${PRIMITIVE_NAMES.map((n) => `'${n}'`).join(', ')}`);
}
/**
 * What a lock actually uses. `'flock+ofd-readonly'`: an exclusive lock on a
 * file that could only be opened read-only (see docs/platforms.md "Read-only lock
 * files"): flock exclusive, and a shared OFD lock, the strongest OFD lock a
 * read-only descriptor can take — OFD and POSIX lockers can still take shared
 * (read) locks, never exclusive ones.
 */
export type ResolvedPrimitive = 'flock+ofd' | 'flock+ofd-readonly' | 'flock' | 'ofd' | 'posix' | 'windows';

export interface PrimitiveReport {
  platform: NodeJS.Platform;
  /** Kernel/OS release, as os.release() reports it. */
  release: string;
  /** Windows Subsystem for Linux version 1, where fcntl locks are unreliable. */
  wsl1: boolean;
  available: Record<PrimitiveName, boolean>;
  /** What `'auto'` uses for whole-file locks. */
  auto: ResolvedPrimitive;
  /** What `'auto'` uses for byte-range locks. */
  autoRange: ResolvedPrimitive;
  /** Whether contended waits block in the kernel on a native thread (else: polling). */
  kernelWait: boolean;
}

let cached: PrimitiveReport | undefined;

function isWsl1(): boolean {
  if (platform().name !== 'linux') return false;
  try {
    const osrelease = readFileSync('/proc/sys/kernel/osrelease', 'utf8');
    return /Microsoft/.test(osrelease) && !/microsoft-standard/i.test(osrelease);
  } catch {
    return false;
  }
}

/**
 * Probes the running kernel once: flock and OFD queries on a file every
 * process can read (the node binary), so nothing is created or changed.
 */
function probe(): Record<PrimitiveName, boolean> {
  if (platform().name === 'win32') return { flock: false, ofd: false, posix: false, windows: true };
  const available = { flock: false, ofd: false, posix: false, windows: false };
  let fd = -1;
  try {
    fd = binding.open(process.execPath, 0);
  } catch {
    return { flock: true, ofd: false, posix: true, windows: false };
  }
  try {
    try {
      binding.lock(C.FLOCK, fd, C.SHARED, 0, 0, false);
      binding.lock(C.FLOCK, fd, C.UNLOCK, 0, 0, false);
      available.flock = true;
    } catch {
      available.flock = false;
    }
    try {
      binding.query(C.OFD, fd, C.SHARED, 0, 0);
      available.ofd = true;
    } catch {
      available.ofd = false; // EINVAL before Linux 3.15, ENOTSUP where undefined
    }
    try {
      binding.query(C.POSIX, fd, C.SHARED, 0, 0);
      available.posix = true;
    } catch {
      available.posix = false;
    }
  } finally {
    binding.close(fd);
  }
  return available;
}

export function primitives(): PrimitiveReport {
  if (cached) return { ...cached, available: { ...cached.available } };
  const wsl1 = isWsl1();
  const available = probe();
  if (wsl1) available.ofd = false; // WSL1 accepts fcntl locks without enforcing them
  let auto: ResolvedPrimitive;
  let autoRange: ResolvedPrimitive;
  switch (platform().name) {
    case 'win32':
      auto = autoRange = 'windows';
      break;
    case 'linux':
      auto = available.ofd && available.flock ? 'flock+ofd' : available.flock ? 'flock' : 'posix';
      autoRange = available.ofd ? 'ofd' : 'posix';
      break;
    case 'darwin':
    case 'sunos':
      auto = available.ofd ? 'ofd' : available.flock ? 'flock' : 'posix';
      autoRange = available.ofd ? 'ofd' : 'posix';
      break;
    default:
      auto = available.flock ? 'flock' : 'posix';
      autoRange = 'posix';
  }
  if (wsl1) auto = 'flock';
  cached = {
    platform: platform().name,
    release: release(),
    wsl1,
    available,
    auto,
    autoRange,
    kernelWait: C.NATIVE_WAIT,
  };
  return primitives();
}
