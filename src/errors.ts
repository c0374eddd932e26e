/**
 * Errors fslock throws: every factory lives here. Every error has a stable
 * `code`; test `err.code`, never `instanceof` (two copies of the package make
 * two classes). docs/api.md's error table lists the same codes.
 *
 * | code | meaning |
 * |---|---|
 * | ELOCKED | held by someone else and the call was not allowed to wait |
 * | ETIMEDOUT | the wait reached `timeout` |
 * | ABORT_ERR | the wait was aborted through `signal` (name `AbortError`) |
 * | EDEADLK | a synchronous wait for a lock this very thread holds |
 * | EBADF | an exclusive lock on a file that could only be opened read-only |
 * | ENOTSUP | the primitive or the filesystem cannot lock |
 * | ERR_UNSAFE_SYMLINK | a symlink at the lock path that another user planted (open.ts) |
 * | ERR_LOCK_RELEASED | downgrade/upgrade after release |
 * | ERR_SESSION_CLOSED / ERR_SESSION_BUSY | finalize/abandon on a closed or busy session |
 * | ERR_SESSION_CLOCK | a clock no session name can encode (a RangeError) |
 * | ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE | bad arguments or options (TypeError, as Node's) |
 * | errno codes | from the operating system, with `syscall` and `path` |
 */

import { hostname } from 'os';

export interface FslockErrorFields {
  path?: string;
  syscall?: string;
  errno?: number;
  holder?: HolderRecordLike | null;
  cause?: unknown;
}

/** The subset of a holder record that error messages use. */
export interface HolderRecordLike {
  pid: number;
  argv?: string[];
  hostname?: string;
  /** The holder is this process itself. */
  self?: boolean;
}

/** The `code` of an error-like value, or undefined. */
export function errorCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null | undefined)?.code;
  return typeof c === 'string' ? c : undefined;
}

/**
 * Makes text from a file name, a record or /proc safe to print: control
 * characters (C0, DEL, C1) and Unicode direction overrides are shown as
 * visible escapes (\n, \t, \x1b, \u202e), so nothing read from disk can
 * move the cursor, clear the screen, retitle the terminal or fake a line.
 */
export function escapeText(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (ch) => {
    switch (ch) {
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default: {
        const code = ch.charCodeAt(0);
        return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
      }
    }
  });
}

export class FslockError extends Error {
  code: string;
  path?: string;
  syscall?: string;
  errno?: number;
  holder?: HolderRecordLike | null;

  constructor(code: string, message: string, fields: FslockErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = code === 'ABORT_ERR' ? 'AbortError' : 'Error';
    this.code = code;
    if (fields.path !== undefined) this.path = fields.path;
    if (fields.syscall !== undefined) this.syscall = fields.syscall;
    if (fields.errno !== undefined) this.errno = fields.errno;
    if (fields.holder !== undefined) this.holder = fields.holder;
  }
}

/** "held by pid 1234: ./x tidy" (or "held by pid 1234 on host"), or "" when unknown. */
export function describeHolder(holder: HolderRecordLike | null | undefined): string {
  if (!holder) return '';
  if (holder.self) return `held by this process (pid ${holder.pid})`;
  let s = `held by pid ${holder.pid}`;
  if (holder.hostname && holder.hostname !== hostnameCache()) s += ` on another host, ${escapeText(holder.hostname)}`;
  if (holder.argv && holder.argv.length > 0) s += `: ${escapeText(holder.argv.join(' '))}`;
  return s;
}

let cachedHostname: string | undefined;
function hostnameCache(): string {
  if (cachedHostname === undefined) cachedHostname = hostname();
  return cachedHostname;
}

export function lockedError(path: string, holder?: HolderRecordLike | null): FslockError {
  const who = describeHolder(holder);
  return new FslockError(
    'ELOCKED',
    `ELOCKED: lock is held by another holder${who ? ` (${who})` : ''}, '${path}'. ` +
      'Wait for it (omit `timeout` or give a longer one) or try again later.',
    { path, holder: holder ?? null },
  );
}

export function timeoutError(path: string, timeout: number, holder?: HolderRecordLike | null): FslockError {
  const who = describeHolder(holder);
  return new FslockError(
    'ETIMEDOUT',
    `ETIMEDOUT: lock not acquired within ${timeout} ms${who ? ` (${who})` : ''}, '${path}'. ` +
      'Raise `timeout`, or find out who holds it with `fslock inspect`.',
    { path, holder: holder ?? null },
  );
}

/** EDEADLK: a synchronous wait for a lock this very thread holds. */
export function deadlockError(path: string): FslockError {
  return new FslockError(
    'EDEADLK',
    `EDEADLK: the lock is held by this thread itself, and a synchronous wait here ` +
      `could never end (the only code that could release it is blocked waiting), '${path}'. Release the other ` +
      'FileLock first, use tryLock, or wait asynchronously with lock().',
    { path, holder: { pid: process.pid, self: true } },
  );
}

/** EBADF: an exclusive lock on a file that could only be opened read-only (`what` locks it). */
/** EDEADLK: a wait that closed a cycle of waits between processes (see deadlock.ts). */
export function deadlockCycleError(path: string, cycle: string): FslockError {
  return new FslockError(
    'EDEADLK',
    `EDEADLK: waiting for the lock on '${escapeText(path)}' would never end: ${escapeText(cycle)}. ` +
      'This wait was chosen to break the cycle; release what this process holds and retry, ' +
      'or take locks in one global order (pass deadlock: false to wait regardless).',
    { path },
  );
}

export function readOnlyError(path: string, what: string): FslockError {
  return new FslockError(
    'EBADF',
    `EBADF: the lock file could only be opened read-only (it is not writable, or it is a directory), so ${what} ` +
      `cannot lock it exclusively, '${path}'. Make it writable, lock it in shared mode, or use primitive 'flock' (which can).`,
    { path },
  );
}

/** ERR_UNSAFE_SYMLINK: a symlink another user planted in a sticky, world-writable directory (open.ts). */
export function unsafeSymlinkError(
  path: string,
  dir: string,
  linkUid: number,
  dirUid: number,
  euid: number,
): FslockError {
  return new FslockError(
    'ERR_UNSAFE_SYMLINK',
    `ERR_UNSAFE_SYMLINK: the lock path is a symbolic link owned by uid ${linkUid} in the sticky, world-writable ` +
      `directory '${escapeText(dir)}' (owned by uid ${dirUid}), and following it would let that user ` +
      `choose which file this process (uid ${euid}) locks or creates, open '${path}'. Use a lock path in a ` +
      'directory only you can write, remove the link, or pass allowUnsafeSymlink: true if you trust it.',
    { path, syscall: 'open' },
  );
}

/** ENOENT for a symlink whose target is missing: fslock never creates a file through one. */
export function danglingSymlinkError(path: string): FslockError {
  return new FslockError(
    'ENOENT',
    `ENOENT: the lock path is a symbolic link to a missing file, and fslock never creates a file through a ` +
      `symbolic link, open '${path}'. Create the link's target first, or remove the link.`,
    { path, syscall: 'open' },
  );
}

/** ABORT_ERR (name AbortError): aborted before the lock was requested, or while waiting for it. */
export function abortError(path: string, reason: unknown, when: 'before' | 'while' = 'while'): FslockError {
  const what = when === 'before' ? 'before the lock on' : 'while waiting for the lock on';
  return new FslockError('ABORT_ERR', `The operation was aborted ${what} '${path}'`, { path, cause: reason });
}

export function notSupportedError(path: string | undefined, what: string, hint: string): FslockError {
  return new FslockError('ENOTSUP', `ENOTSUP: ${what}${path === undefined ? '' : `, '${path}'`}. ${hint}`, {
    ...(path === undefined ? {} : { path }),
  });
}

/** A TypeError with a `code`, as Node's own argument errors are. */
export class FslockTypeError extends TypeError {
  code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

export function invalidArgType(name: string, expected: string, actual: unknown): FslockTypeError {
  return new FslockTypeError(
    'ERR_INVALID_ARG_TYPE',
    `The "${name}" argument must be ${expected}. Received ${describeValue(actual)}`,
  );
}

export function invalidArgValue(name: string, actual: unknown, reason: string): FslockTypeError {
  return new FslockTypeError(
    'ERR_INVALID_ARG_VALUE',
    `The ${name.includes('.') ? 'property' : 'argument'} '${name}' ${reason}. Received ${describeValue(actual)}`,
  );
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'function') return `function ${v.name || '<anonymous>'}`;
  if (typeof v === 'object') return `an instance of ${v.constructor?.name ?? 'Object'}`;
  if (typeof v === 'string') return `type string (${JSON.stringify(v.length > 28 ? `${v.slice(0, 25)}...` : v)})`;
  return `type ${typeof v} (${String(v)})`;
}

/** Adds `path` to a native errno error that lacks one, keeping code/errno/syscall. */
export function withPath<E>(err: E, path: string): E {
  if (err && typeof err === 'object' && 'code' in err && !('path' in err)) {
    const e = err as unknown as { path: string; message: string };
    e.path = path;
    e.message = `${e.message} '${path}'`;
  }
  return err;
}
