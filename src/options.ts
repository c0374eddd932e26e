/**
 * The one options parser of the lock family (lock, tryLock, lockSync,
 * withLock, upgrade). Unknown or misspelled options are rejected.
 */
import { invalidArgType, invalidArgValue } from './errors.js';
import { parsePrimitive, type PrimitiveName } from './primitives.js';

export type LockMode = 'exclusive' | 'shared';

export interface LockRange {
  /** First byte. */
  offset: number;
  /** Number of bytes; 0 means "to the end of the file, however far it grows". */
  length: number;
}

export interface LockOptions {
  /** `'exclusive'` (default) or `'shared'`. */
  mode?: LockMode;
  /** Milliseconds to wait. Default: forever. 0: a single try. */
  timeout?: number;
  /** Aborts a pending wait; the promise rejects with an `AbortError` (code `ABORT_ERR`). */
  signal?: AbortSignal;
  /** `'auto'` (default) picks the strongest primitive here; see `primitives()`. */
  primitive?: 'auto' | PrimitiveName;
  /** Lock a byte range instead of the whole file (OFD, POSIX or Windows only). */
  range?: LockRange;
  /** Create the lock file when missing (default true). With false a missing file is ENOENT. */
  create?: boolean;
  /** Exclusive only: take the lock file off its name while still holding it, release, then delete it (only if the path still names the held file, and it is empty). */
  unlinkOnRelease?: boolean;
  /**
   * true: an exclusive whole-file holder writes one JSON line describing
   * itself (pid, hostname, startedAt) into a sidecar file it creates,
   * `<path>.fslock-holder`, and removes it on release, so `inspect` and
   * waiting messages can name it on any platform and across hosts. The lock
   * file itself is never written. No command line is recorded unless given:
   * `{ argv }` records exactly that (mind secrets in arguments).
   * Default false: on Linux the kernel's lock table already names the holder.
   */
  record?: boolean | { argv: string[] };
  /**
   * Follow a symbolic link at `path` even where the kernel's protected_symlinks
   * rule would not: in a sticky, world-writable directory (/tmp), a link owned
   * by someone other than you or the directory's owner. Default false: such a
   * link is refused with ERR_UNSAFE_SYMLINK. A file is never created through
   * a link either way.
   */
  allowUnsafeSymlink?: boolean;
  /**
   * Opt-in: after release, keep the descriptor open (unlocked) for the next
   * lock of the same path in this thread, for at most KEEP_OPEN_IDLE_MS
   * (500 ms), so repeated locking skips open() and close(). Until it is
   * closed the file stays open: its filesystem cannot be unmounted ("target
   * is busy") and a deleted lock file keeps its inode. Default false: release
   * closes at once. Not on Windows. `closeIdleDescriptors()` closes all kept ones.
   */
  keepOpen?: boolean;
  /**
   * While waiting, look for a cycle of waits through this process (Linux:
   * the kernel's lock table, ten looks a second; nothing while not
   * waiting): a wait that would never end fails with EDEADLK. Default true.
   */
  deadlock?: boolean;
}

/** Documented defaults. */
export const DEFAULT_LOCK_OPTIONS = Object.freeze({
  mode: 'exclusive' as LockMode,
  timeout: Infinity,
  primitive: 'auto' as const,
  create: true,
  unlinkOnRelease: false,
  record: false,
  allowUnsafeSymlink: false,
  keepOpen: false,
  deadlock: true,
});

export interface ParsedLockOptions {
  mode: LockMode;
  timeout: number;
  signal: AbortSignal | undefined;
  primitive: 'auto' | PrimitiveName;
  range: LockRange | undefined;
  create: boolean;
  unlinkOnRelease: boolean;
  record: boolean;
  /** Command line to record (none when undefined). */
  recordArgv: string[] | undefined;
  allowUnsafeSymlink: boolean;
  keepOpen: boolean;
  deadlock: boolean;
  /** @internal the file must be created by this call (O_EXCL) */
  createNew?: boolean;
  /**
   * @internal The compatibility layers' wait for a holder to let go: when
   * the file is deleted or replaced while waiting, that is the release
   * waited for, and acquire() resolves null instead of starting over.
   */
  untilReleased?: boolean;
}

export const LOCK_OPTION_NAMES: ReadonlySet<string> = new Set([
  'mode',
  'timeout',
  'signal',
  'primitive',
  'range',
  'create',
  'unlinkOnRelease',
  'record',
  'allowUnsafeSymlink',
  'keepOpen',
  'deadlock',
]);

export function checkPath(path: unknown, name = 'path'): string {
  if (typeof path !== 'string') throw invalidArgType(name, 'of type string', path);
  if (path.length === 0) throw invalidArgValue(name, path, 'must be a non-empty string');
  if (path.includes('\0')) throw invalidArgValue(name, path, 'must not contain null bytes');
  return path;
}

const NO_OPTIONS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

export function checkOptionsObject(
  options: unknown,
  allowed: ReadonlySet<string>,
  name = 'options',
): Record<string, unknown> {
  if (options === undefined) return NO_OPTIONS;
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalidArgType(name, 'of type object', options);
  }
  for (const key of Object.keys(options)) {
    if (!allowed.has(key)) {
      throw invalidArgValue(
        `${name}.${key}`,
        (options as Record<string, unknown>)[key],
        `is not a known option (known: ${[...allowed].join(', ')})`,
      );
    }
  }
  return options as Record<string, unknown>;
}

export function parseTimeout(value: unknown, name = 'options.timeout'): number {
  if (value === undefined) return Infinity;
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidArgType(name, 'of type number', value);
  if (value < 0) throw invalidArgValue(name, value, 'must be >= 0 (milliseconds; omit it to wait forever)');
  return value;
}

export function parseSignal(value: unknown, name = 'options.signal'): AbortSignal | undefined {
  if (value === undefined) return undefined;
  // Duck-typed: test environments that replace globals (Jest's, for one) may
  // have another AbortSignal class than Node's own, or none at all.
  const v = value as Partial<AbortSignal> | null;
  if (
    v === null ||
    typeof v !== 'object' ||
    typeof v.aborted !== 'boolean' ||
    typeof v.addEventListener !== 'function'
  ) {
    throw invalidArgType(name, 'an instance of AbortSignal', value);
  }
  return value as AbortSignal;
}

function parseBool(value: unknown, name: string, dflt: boolean): boolean {
  if (value === undefined) return dflt;
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value);
  return value;
}

function parseRange(value: unknown): LockRange | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object') throw invalidArgType('options.range', 'of type object', value);
  const r = checkOptionsObject(value, new Set(['offset', 'length']), 'options.range');
  for (const k of ['offset', 'length'] as const) {
    const v = r[k];
    if (typeof v !== 'number') throw invalidArgType(`options.range.${k}`, 'of type number', v);
    if (!Number.isSafeInteger(v) || v < 0) {
      throw invalidArgValue(`options.range.${k}`, v, 'must be a non-negative integer');
    }
  }
  return { offset: r.offset as number, length: r.length as number };
}

/** The parsed defaults: the fast path for a call without options (never mutated). */
let parsedDefaults: ParsedLockOptions | undefined;

/**
 * The last options object parsed whose values are all primitives (a copy),
 * and what it parsed to (frozen): a loop that passes the same literal each
 * time (`lock(p, { mode: 'shared' })`) parses it once. Objects among the
 * values (signal, range, record) are never cached: they may change between calls.
 */
const recent = new Map<ReadonlySet<string>, { raw: Record<string, unknown>; parsed: ParsedLockOptions }>();

function samePrimitives(o: Record<string, unknown>, raw: Record<string, unknown>): boolean {
  let n = 0;
  for (const k in o) {
    if (!Object.prototype.hasOwnProperty.call(o, k)) return false;
    if (o[k] !== raw[k] || !Object.prototype.hasOwnProperty.call(raw, k)) return false;
    n++;
  }
  return n === Object.keys(raw).length;
}

function allPrimitives(o: Record<string, unknown>): boolean {
  for (const k in o) {
    const v = o[k];
    if (v !== null && (typeof v === 'object' || typeof v === 'function')) return false;
  }
  return true;
}

/** Parses lock options; `allowed` narrows the known names (tryLock, lockSync). */
export function parseLockOptions(
  options: unknown,
  allowed: ReadonlySet<string> = LOCK_OPTION_NAMES,
): ParsedLockOptions {
  if (options === undefined) return (parsedDefaults ??= Object.freeze(parseLockOptionsSlow({})) as ParsedLockOptions);
  const last = recent.get(allowed);
  if (
    last &&
    options !== null &&
    typeof options === 'object' &&
    samePrimitives(options as Record<string, unknown>, last.raw)
  ) {
    return last.parsed;
  }
  const parsed = parseLockOptionsSlow(checkOptionsObject(options, allowed));
  const o = options as Record<string, unknown>;
  if (allPrimitives(o)) recent.set(allowed, { raw: { ...o }, parsed: Object.freeze(parsed) as ParsedLockOptions });
  return parsed;
}

/** `o` has been checked: an object with known names only. */
function parseLockOptionsSlow(o: Record<string, unknown>): ParsedLockOptions {
  let mode: LockMode = DEFAULT_LOCK_OPTIONS.mode;
  if (o.mode !== undefined) {
    if (o.mode !== 'exclusive' && o.mode !== 'shared') {
      throw invalidArgValue('options.mode', o.mode, "must be 'exclusive' or 'shared'");
    }
    mode = o.mode;
  }
  const timeout = parseTimeout(o.timeout);
  const signal = parseSignal(o.signal);
  const primitive = parsePrimitive(o.primitive, (expected) =>
    invalidArgValue('options.primitive', o.primitive, `must be ${expected}`),
  );
  const range = parseRange(o.range);
  const create = parseBool(o.create, 'options.create', DEFAULT_LOCK_OPTIONS.create);
  const unlinkOnRelease = parseBool(o.unlinkOnRelease, 'options.unlinkOnRelease', DEFAULT_LOCK_OPTIONS.unlinkOnRelease);
  if (unlinkOnRelease && mode !== 'exclusive') {
    throw invalidArgValue(
      'options.unlinkOnRelease',
      true,
      "requires mode 'exclusive' (only a sole holder may delete the file)",
    );
  }
  if (unlinkOnRelease && range) {
    throw invalidArgValue('options.unlinkOnRelease', true, 'cannot be combined with options.range');
  }
  let record: boolean = DEFAULT_LOCK_OPTIONS.record;
  let recordArgv: string[] | undefined;
  if (o.record !== undefined && typeof o.record === 'object' && o.record !== null) {
    const r = checkOptionsObject(o.record, new Set(['argv']), 'options.record');
    if (!Array.isArray(r.argv) || !r.argv.every((a) => typeof a === 'string')) {
      throw invalidArgType('options.record.argv', 'an array of strings', r.argv);
    }
    recordArgv = [...(r.argv as string[])];
    record = true;
  } else {
    record = parseBool(o.record, 'options.record', DEFAULT_LOCK_OPTIONS.record);
  }
  const allowUnsafeSymlink = parseBool(
    o.allowUnsafeSymlink,
    'options.allowUnsafeSymlink',
    DEFAULT_LOCK_OPTIONS.allowUnsafeSymlink,
  );
  return {
    allowUnsafeSymlink,
    keepOpen: parseBool(o.keepOpen, 'options.keepOpen', DEFAULT_LOCK_OPTIONS.keepOpen),
    deadlock: parseBool(o.deadlock, 'options.deadlock', DEFAULT_LOCK_OPTIONS.deadlock),
    mode,
    timeout,
    signal,
    primitive,
    range,
    create,
    unlinkOnRelease,
    record,
    recordArgv,
  };
}
