/**
 * fslock run: run a command while holding a lock, like util-linux flock(1),
 * saying once (cargo-style) when it has to wait and for whom.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'child_process';
import { fstatSync } from 'fs';
import { platform } from '../platform.js';
import { performance } from 'perf_hooks';
import { binding, C } from '../binding.js';
import { constants } from 'os';
import { lock, tryLock, type FileLock } from '../lock.js';
import { strategyFor } from '../strategy.js';
import { inspectSync } from '../inspect.js';
import { describeHolder, errorCode, escapeText } from '../errors.js';
import { parsePrimitive, type PrimitiveName } from '../primitives.js';
import { parse, parseExitCode, parseSeconds, splitAtFirstPositional, type OptionSpec } from './args.js';
import { EXIT, openFailureStatus, UsageError } from './errors.js';
import { paint, useColor, type Io } from './format.js';

export const RUN_USAGE = `usage: fslock run [options] <lockfile> <command> [args...]
       fslock run [options] <lockfile> -c '<shell command>'
       fslock run [options] <fd>
       (or without 'run', as flock(1) is typed: fslock [options] <lockfile|fd> ...)

Runs a command while holding a lock on <lockfile> (created if missing; a
directory works too), waiting for the lock if someone else holds it. As with
flock(1), the command inherits the locked descriptor (as fd 3), so the lock
lasts as long as the command does, even if fslock itself is killed; -o stops
that. The file's contents are never touched: lock the very file the command
writes, as with flock(1).

With a number instead of a file, locks (or with -u unlocks) that inherited
descriptor with flock(2) and exits, as flock(1) does in scripts:
  ( fslock -n 9 || exit 1; ...commands... ) 9>/var/lock/mylock

options (flock(1)'s):
  -x, -e, --exclusive            exclusive lock (the default)
  -s, --shared                   shared lock
  -u, --unlock                   remove a lock (with <fd> only: a lock on a file
                                 ends when its command exits)
  -n, --nb, --nonblock           do not wait: exit with the conflict code if held
  -w, --wait, --timeout <secs>   wait at most this long, then exit with the conflict code
  -E, --conflict-exit-code <n>   exit status for -n and -w (default 1)
  -o, --close                    do not pass the locked descriptor to the command
  -c, --command <string>         run <string> with the shell (/bin/sh -c)
  -F, --no-fork                  accepted for flock(1) compatibility: Node cannot exec
                                 in place, so the command runs as a child, holding the
                                 lock through the inherited descriptor all the same
      --verbose                  say how long getting the lock took and what runs
  -V, --version                  print the version
options of fslock's own:
      --primitive <name>         auto (default), flock, ofd, posix, windows
      --allow-unsafe-symlink     follow a symlink at <lockfile> that another user
                                 planted in a sticky directory such as /tmp
  -q, --quiet                    no waiting or conflict messages
  -h, --help                     this help

Signals (INT, TERM, HUP, QUIT, USR1, USR2) sent to fslock are passed on to the
command. When fslock itself gets INT, TERM, HUP or QUIT (Ctrl-C in a
script), it lets go once the command has exited, or at once while waiting,
and then dies from that same signal, as flock(1) does: the calling shell
stops the script.

exit status (flock(1)'s): the command's own; 128+N if the command was killed
by signal N; the conflict code (-E, default 1) when -n or -w gave up;
64 bad command line; 65 <fd> is not an open descriptor passed to fslock;
66 the lock file cannot be opened (73 on a read-only filesystem or with no
space, 71 out of descriptors or memory); 69 the command cannot be executed;
70 any other failure.`;

const RUN_OPTIONS: OptionSpec = {
  exclusive: { type: 'boolean', short: 'x' },
  e: { type: 'boolean', short: 'e' },
  shared: { type: 'boolean', short: 's' },
  unlock: { type: 'boolean', short: 'u' },
  nonblock: { type: 'boolean', short: 'n' },
  nb: { type: 'boolean' },
  timeout: { type: 'string', short: 'w' },
  wait: { type: 'string' },
  'conflict-exit-code': { type: 'string', short: 'E' },
  close: { type: 'boolean', short: 'o' },
  'no-fork': { type: 'boolean', short: 'F' },
  verbose: { type: 'boolean' },
  version: { type: 'boolean', short: 'V' },
  command: { type: 'string', short: 'c' },
  primitive: { type: 'string' },
  'allow-unsafe-symlink': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
};

/** Signals whose default action ends a process: fslock dies from them too (once it has let go). */
const TERMINATING = new Set<NodeJS.Signals>(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']);

/**
 * How long after INT, TERM, HUP or QUIT fslock waits before passing it on to
 * a command that is still running (see SignalRelay).
 */
const FORWARD_GRACE_MS = 1000;

/** How long fslock waits for its own copy of a signal that killed the command (see runChild). */
const GROUP_SIGNAL_GRACE_MS = 100;

/** The terminating signal this process received during `fslock run` (see receivedSignal). */
let received: NodeJS.Signals | null = null;

/**
 * The terminating signal fslock run received, which the process must die
 * from once everything is let go (bin/fslock.js re-raises it with the default
 * action), or null.
 */
export function receivedSignal(): NodeJS.Signals | null {
  return received;
}

/**
 * -x/-e/--exclusive and -s/--shared may both be given: as with flock(1), the
 * last one wins. `own` holds fslock's own arguments (before the lock file).
 */
function lastMode(own: string[]): 'shared' | 'exclusive' {
  let mode: 'shared' | 'exclusive' = 'exclusive';
  for (let i = 0; i < own.length; i++) {
    const a = own[i] as string;
    if (a === '--shared') mode = 'shared';
    else if (a === '--exclusive') mode = 'exclusive';
    else if (/^-[a-zA-Z]+$/.test(a)) {
      for (const ch of a.slice(1)) {
        if (ch === 's') mode = 'shared';
        else if (ch === 'x' || ch === 'e') mode = 'exclusive';
        if (ch === 'w' || ch === 'E' || ch === 'c') break; // the rest is that option's value
      }
    }
  }
  return mode;
}

/** Signals passed on to the command (SIGUSR1 too: with a listener, Node does not open its inspector). */
const FORWARDED = platform().forwardedSignals;

function holderText(path: string): string {
  try {
    const info = inspectSync(path);
    const who = describeHolder(info.holder);
    return who ? ` (${who})` : '';
  } catch {
    return '';
  }
}

/** The lock could not be taken for a reason other than a conflict: flock(1)'s message and status. */
function cannotOpen(path: string, err: unknown, io: Io): number {
  const code = errorCode(err);
  io.stderr.write(`fslock: cannot open lock file ${escapeText(path)}: ${(err as Error).message}\n`);
  if (code === 'ENOTSUP' || code?.startsWith('ERR_INVALID_ARG')) return code === 'ENOTSUP' ? EXIT.SOFTWARE : EXIT.USAGE;
  return openFailureStatus(code);
}

const signalExit = (sig: NodeJS.Signals) =>
  EXIT.SIGNAL_BASE + ((constants.signals as Record<string, number>)[sig] ?? 0);

/**
 * Signals for the whole run, installed before anything else: while waiting
 * for the lock a signal ends the wait (exit 128+N); once the command runs it
 * is passed on to it. Nothing is left to Node's defaults, which would kill
 * fslock and orphan the command.
 */
class SignalRelay {
  readonly waitAbort = new AbortController();
  pending: NodeJS.Signals | null = null;
  #child: ChildProcess | null = null;
  #handlers: Array<[NodeJS.Signals, () => void]> = [];
  /** Signals to pass on to the command unless it has exited by then (see #receive). */
  #forwards = new Map<NodeJS.Signals, NodeJS.Timeout>();
  /** Who waits for a terminating signal (see signalled). */
  #waiting: Array<() => void> = [];

  constructor() {
    for (const sig of FORWARDED) {
      const h = () => this.#receive(sig);
      try {
        process.on(sig, h);
        this.#handlers.push([sig, h]);
      } catch {
        // not a signal this platform can listen to
      }
    }
  }

  #receive(sig: NodeJS.Signals): void {
    if (TERMINATING.has(sig)) {
      received ??= sig;
      for (const r of this.#waiting.splice(0)) r();
    }
    const c = this.#child;
    if (c && c.exitCode === null && c.signalCode === null) {
      if (!TERMINATING.has(sig)) {
        c.kill(sig);
        return;
      }
      // Sent to the process group (Ctrl-C), the signal has reached the
      // command already, and a second copy would cut short a command that
      // cleans up on the first; sent to fslock alone, it has not. Which one
      // cannot be told from here, so it is passed on only if the command is
      // still running a moment later: a command never outlives fslock.
      if (!this.#forwards.has(sig)) {
        const t = setTimeout(() => {
          if (c.exitCode === null && c.signalCode === null) c.kill(sig);
        }, FORWARD_GRACE_MS);
        this.#forwards.set(sig, t);
      }
      return;
    }
    this.pending ??= sig;
    this.waitAbort.abort(new Error(`received ${sig}`));
  }

  attach(child: ChildProcess): void {
    this.#child = child;
  }

  /** Resolves once fslock has received a terminating signal, or after `ms`. */
  signalled(ms: number): Promise<void> {
    if (received) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiting = this.#waiting.filter((r) => r !== done);
        resolve();
      }, ms);
      this.#waiting.push(done);
    });
  }

  dispose(): void {
    for (const [sig, h] of this.#handlers) process.off(sig, h);
    this.#handlers = [];
    for (const t of this.#forwards.values()) clearTimeout(t);
    this.#forwards.clear();
  }
}

/** What `fslock run <file> <command>` was asked to do, read from its command line. */
interface RunPlan {
  lockPath: string;
  mode: 'shared' | 'exclusive';
  /** The command and its arguments, or [] with `shell`. */
  command: string[];
  /** -c's shell command. */
  shell: string | undefined;
  conflictCode: number;
  /** -n: never wait. */
  nonblock: boolean;
  timeoutS: number | undefined;
  primitive: 'auto' | PrimitiveName;
  quiet: boolean;
  /** flock(1)'s --verbose lines. */
  verbose: boolean;
  close: boolean;
  allowUnsafeSymlink: boolean;
}

/** The command to run: `<command> [args]`, `-- <command>`, or `-c '<shell command>'` after the file or before it. */
function commandOf(rest: string[], shellOption: string | undefined): { command: string[]; shell: string | undefined } {
  let command = rest.slice(1);
  if (command[0] === '--') command = command.slice(1);
  let shell = shellOption;
  if (command[0] === '-c' || command[0] === '--command') {
    if (shell !== undefined) throw new UsageError('-c given twice');
    if (command.length !== 2) throw new UsageError('-c takes exactly one argument: the shell command, quoted');
    shell = command[1];
    command = [];
  }
  if (shell !== undefined && command.length > 0) throw new UsageError('give either -c <string> or a command, not both');
  if (shell === undefined && command.length === 0) throw new UsageError('missing <command>');
  return { command, shell };
}

function runPlan(lockPath: string, rest: string[], values: Record<string, unknown>, mode: RunPlan['mode']): RunPlan {
  if (values.unlock)
    throw new UsageError('-u/--unlock works on an inherited <fd>: a lock on a file ends when its command exits');
  const { command, shell } = commandOf(rest, values.command as string | undefined);
  return {
    lockPath,
    mode,
    command,
    shell,
    conflictCode:
      values['conflict-exit-code'] === undefined
        ? EXIT.CONFLICT
        : parseExitCode(values['conflict-exit-code'] as string, '--conflict-exit-code'),
    nonblock: Boolean(values.nonblock),
    timeoutS: values.timeout === undefined ? undefined : parseSeconds(values.timeout as string, '--timeout'),
    primitive: parsePrimitive(
      values.primitive,
      (expected) => new UsageError(`--primitive must be ${expected}; got ${JSON.stringify(values.primitive)}`),
    ),
    quiet: Boolean(values.quiet),
    verbose: Boolean(values.verbose),
    close: Boolean(values.close),
    allowUnsafeSymlink: Boolean(values['allow-unsafe-symlink']),
  };
}

export async function runCommand(argv: string[], io: Io): Promise<number> {
  const { own, rest } = splitAtFirstPositional(argv, RUN_OPTIONS);
  const { values } = parse(own, RUN_OPTIONS);
  if (values.help) {
    io.stdout.write(`${RUN_USAGE}\n`);
    return EXIT.OK;
  }
  if (values.version) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    io.stdout.write(`fslock ${(require('./version.js') as typeof import('./version.js')).version()}\n`);
    return EXIT.OK;
  }
  // flock(1)'s aliases
  if (values.e) values.exclusive = true;
  if (values.nb) values.nonblock = true;
  if (values.wait !== undefined) {
    if (values.timeout !== undefined) throw new UsageError('give -w/--wait/--timeout once');
    values.timeout = values.wait;
  }
  const mode = lastMode(own);
  const lockPath = rest[0];
  if (lockPath === undefined) throw new UsageError('missing <lockfile> (or <fd>)');
  if (/^\d+$/.test(lockPath) && rest.length === 1 && values.command === undefined) {
    return lockDescriptor(Number(lockPath), values, mode, io);
  }
  const plan = runPlan(lockPath, rest, values, mode);
  const started = performance.now();
  const relay = new SignalRelay();
  try {
    const held = await takeLock(plan, relay, io);
    if (typeof held === 'number') return held; // an exit status: not held
    if (plan.verbose && !plan.quiet) {
      io.stderr.write(`fslock: getting lock took ${((performance.now() - started) / 1000).toFixed(6)} seconds\n`);
      io.stderr.write(`fslock: executing ${escapeText(plan.shell ?? plan.command.join(' '))}\n`);
    }
    try {
      if (relay.pending) return signalExit(relay.pending); // signalled just as the lock came: do not start
      return await runChild(plan.shell, plan.command, plan.close ? null : held.fd, relay, io);
    } finally {
      // The command has exited. Close without an explicit unlock, as flock(1)
      // does: a process the command left running in the background with the
      // descriptor keeps the lock (pass -o to prevent that).
      if (plan.close) held.release();
      else held.closeKeepingInherited();
    }
  } finally {
    relay.dispose();
  }
}

/**
 * Takes the lock as `plan` says: at once, or after saying (cargo-style) that
 * it waits and for whom. Returns the lock, or the exit status when it was not
 * taken (a conflict, a timeout, a signal, a lock file that cannot be opened).
 */
async function takeLock(plan: RunPlan, relay: SignalRelay, io: Io): Promise<FileLock | number> {
  const { lockPath, quiet, timeoutS } = plan;
  const shown = escapeText(lockPath);
  const opts = {
    mode: plan.mode,
    primitive: plan.primitive,
    allowUnsafeSymlink: plan.allowUnsafeSymlink,
    // On Linux the kernel's lock table names the holder; elsewhere a sidecar
    // record names the command, by its name only (arguments can hold secrets).
    ...(platform().lockTable
      ? {}
      : { record: { argv: [plan.shell !== undefined ? 'sh' : (plan.command[0] as string)] } }),
  };
  let held: FileLock | null;
  try {
    held = tryLock(lockPath, opts);
  } catch (err) {
    return cannotOpen(lockPath, err, io);
  }
  if (held) return held;
  if (plan.timeoutS === 0 || plan.nonblock) {
    if (!quiet) io.stderr.write(`fslock: ${shown} is locked${holderText(lockPath)}\n`);
    if (plan.verbose) io.stderr.write('fslock: failed to get lock\n');
    return plan.conflictCode;
  }
  if (!quiet) {
    const blocking = paint(useColor(io.stderr), 'bold', 'Blocking');
    io.stderr.write(`${blocking} waiting for file lock on ${shown}${holderText(lockPath)}\n`);
  }
  try {
    return await lock(lockPath, {
      ...opts,
      signal: relay.waitAbort.signal,
      ...(timeoutS === undefined ? {} : { timeout: timeoutS * 1000 }),
    });
  } catch (err) {
    if (relay.pending) return signalExit(relay.pending);
    if (errorCode(err) === 'ETIMEDOUT') {
      if (!quiet) io.stderr.write(`fslock: gave up waiting for ${shown} after ${timeoutS} s${holderText(lockPath)}\n`);
      if (plan.verbose) io.stderr.write('fslock: timeout while waiting to get lock\n');
      return plan.conflictCode;
    }
    return cannotOpen(lockPath, err, io);
  }
}

function runChild(
  shell: string | undefined,
  command: string[],
  lockFd: number | null,
  relay: SignalRelay,
  io: Io,
): Promise<number> {
  return new Promise((resolve) => {
    const stdio: StdioOptions = lockFd === null ? 'inherit' : ['inherit', 'inherit', 'inherit', lockFd];
    const child =
      shell !== undefined
        ? spawn(shell, { stdio, shell: true })
        : spawn(command[0] as string, command.slice(1), { stdio });
    relay.attach(child);
    child.on('error', (err: Error & { code?: string }) => {
      // flock(1): "failed to execute <cmd>: <reason>", EX_UNAVAILABLE, whatever the reason
      const name = escapeText(shell ?? (command[0] as string));
      const why =
        errorCode(err) === 'ENOENT'
          ? 'No such file or directory'
          : errorCode(err) === 'EACCES'
            ? 'Permission denied'
            : err.message;
      io.stderr.write(`fslock: failed to execute ${name}: ${why}\n`);
      resolve(EXIT.UNAVAILABLE);
    });
    child.on('exit', (code, signal) => {
      if (!signal) return resolve(code ?? EXIT.SOFTWARE);
      if (!TERMINATING.has(signal)) return resolve(signalExit(signal));
      // Killed by INT, TERM, HUP or QUIT. Sent to the whole process group
      // (Ctrl-C), the signal reaches fslock too, and fslock must die of it
      // (receivedSignal) or the calling shell goes on with its script; but the
      // command can die and be reaped before fslock's copy is dispatched
      // (the kernel signals a group's members one by one). So wait a moment
      // for it; a command killed alone makes fslock exit 128+N that much later.
      void relay.signalled(GROUP_SIGNAL_GRACE_MS).then(() => resolve(signalExit(signal)));
    });
  });
}

/**
 * flock(1)'s descriptor form: lock (or unlock) a descriptor this process
 * inherited, with flock(2), and exit. The lock belongs to the open file
 * description the shell holds, so it outlives fslock, as with flock(1).
 */
async function lockDescriptor(
  fd: number,
  values: Record<string, unknown>,
  mode: 'shared' | 'exclusive',
  io: Io,
): Promise<number> {
  const conflictCode =
    values['conflict-exit-code'] === undefined
      ? EXIT.CONFLICT
      : parseExitCode(values['conflict-exit-code'] as string, '--conflict-exit-code');
  const timeoutS = values.timeout === undefined ? undefined : parseSeconds(values.timeout as string, '--timeout');
  const type = values.unlock ? C.UNLOCK : mode === 'shared' ? C.SHARED : C.EXCLUSIVE;
  const quiet = Boolean(values.quiet);
  const problem = notPassed(fd);
  if (problem !== null) {
    io.stderr.write(`fslock: ${problem}\n`);
    return EXIT.DATAERR;
  }
  try {
    if (binding.lock(C.FLOCK, fd, type, 0, 0, false)) return EXIT.OK;
  } catch (err) {
    io.stderr.write(`fslock: ${fd}: ${(err as Error).message}\n`);
    return errorCode(err) === 'EBADF' ? EXIT.DATAERR : EXIT.SOFTWARE;
  }
  if (values.nonblock || timeoutS === 0) {
    if (!quiet) io.stderr.write(`fslock: descriptor ${fd} is locked\n`);
    if (values.verbose) io.stderr.write('fslock: failed to get lock\n');
    return conflictCode;
  }
  const ctx = {
    path: `fd ${fd}`,
    deadline: timeoutS === undefined ? Infinity : performance.now() + timeoutS * 1000,
    timeout: (timeoutS ?? Infinity) * 1000,
    signal: undefined,
    holder: () => null,
  };
  try {
    // flock's strategy knows how this platform waits (in the kernel, or polling)
    const flock = strategyFor('flock', undefined);
    await flock.wait({ fd, writable: true, registryId: null }, flock.steps[0]!, type, ctx);
    return EXIT.OK;
  } catch (err) {
    if (errorCode(err) === 'ETIMEDOUT') {
      if (!quiet) io.stderr.write(`fslock: gave up waiting for descriptor ${fd} after ${timeoutS} s\n`);
      if (values.verbose) io.stderr.write('fslock: timeout while waiting to get lock\n');
      return conflictCode;
    }
    io.stderr.write(`fslock: ${fd}: ${(err as Error).message}\n`);
    return EXIT.SOFTWARE;
  }
}

/**
 * Why descriptor `fd` is not one the caller passed to fslock, or null when
 * it is. Locking a descriptor that Node opened itself would lock nothing the
 * caller holds and still exit 0: that happens under npx and npm exec, which
 * pass on only descriptors 0 to 2, so number 9 is then closed or one of
 * Node's own (its event loop's epoll, eventfd and pipes; /dev/null). A
 * descriptor passed to lock is a regular file or a directory, and Node keeps
 * none of those open.
 */
function notPassed(fd: number): string | null {
  const help =
    'Run fslock without npx or npm exec, which pass on only descriptors 0, 1 and 2: ' +
    `for example $(npm root)/.bin/fslock -n ${fd}.`;
  let st;
  try {
    st = fstatSync(fd);
  } catch {
    return `${fd}: Bad file descriptor (it is not open in fslock's process). ${help}`;
  }
  if (!st.isFile() && !st.isDirectory()) {
    return `descriptor ${fd} is not a file or directory passed to fslock (it is one that Node opened itself). ${help}`;
  }
  return null;
}
