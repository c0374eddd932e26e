/**
 * fslock run: run a command while holding a lock, like util-linux flock(1),
 * saying once (cargo-style) when it has to wait and for whom.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { lock, tryLock, type FileLock } from '../lock.js';
import { inspectSync } from '../inspect.js';
import { describeHolder } from '../errors.js';
import type { PrimitiveName } from '../primitives.js';
import { parse, parseExitCode, parseSeconds, splitAtFirstPositional, type OptionSpec } from './args.js';
import { EXIT, UsageError } from './errors.js';
import { paint, useColor, type Out } from './format.js';

export const RUN_USAGE = `usage: fslock run [options] <lockfile> <command> [args...]
       fslock run [options] <lockfile> -c '<shell command>'

Runs a command while holding a lock on <lockfile> (created if missing), waiting
for the lock if someone else holds it. The lock is released when the command
exits and is not inherited by it.

options:
  -x, --exclusive                exclusive lock (the default)
  -s, --shared                   shared lock
  -n, --nonblock                 do not wait: exit with the conflict code if held
  -w, --timeout <seconds>        wait at most this long, then exit with the conflict code
  -E, --conflict-exit-code <n>   exit status for -n and -w (default 1)
  -c, --command <string>         run <string> with the shell (/bin/sh -c)
      --primitive <name>         auto (default), flock, ofd, posix, windows
  -q, --quiet                    no waiting or conflict messages
  -h, --help                     this help

exit status: the command's own, 128+N if it was killed by signal N, the
conflict code when -n/-w gave up, 126/127 when it cannot be run or found,
2 for a bad command line, 3 when the lock file cannot be opened.`;

const RUN_OPTIONS: OptionSpec = {
  exclusive: { type: 'boolean', short: 'x' },
  shared: { type: 'boolean', short: 's' },
  nonblock: { type: 'boolean', short: 'n' },
  timeout: { type: 'string', short: 'w' },
  'conflict-exit-code': { type: 'string', short: 'E' },
  command: { type: 'string', short: 'c' },
  primitive: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
};

interface RunIo {
  stdout: Out;
  stderr: Out;
}

function holderText(path: string): string {
  try {
    const info = inspectSync(path);
    const who = describeHolder(info.holder);
    return who ? ` (${who})` : '';
  } catch {
    return '';
  }
}

export async function runCommand(argv: string[], io: RunIo): Promise<number> {
  const { own, rest } = splitAtFirstPositional(argv, RUN_OPTIONS);
  const { values } = parse(own, RUN_OPTIONS);
  if (values.help) {
    io.stdout.write(`${RUN_USAGE}\n`);
    return EXIT.OK;
  }
  if (values.shared && values.exclusive) throw new UsageError('--shared and --exclusive exclude each other');
  const lockPath = rest[0];
  if (lockPath === undefined) throw new UsageError('missing <lockfile>');
  let command = rest.slice(1);
  if (command[0] === '--') command = command.slice(1);
  let shell = values.command as string | undefined;
  if (command[0] === '-c' || command[0] === '--command') {
    if (shell !== undefined) throw new UsageError('-c given twice');
    if (command.length !== 2) throw new UsageError('-c takes exactly one argument: the shell command, quoted');
    shell = command[1];
    command = [];
  }
  if (shell !== undefined && command.length > 0) throw new UsageError('give either -c <string> or a command, not both');
  if (shell === undefined && command.length === 0) throw new UsageError('missing <command>');
  const conflictCode = values['conflict-exit-code'] === undefined ? EXIT.CONFLICT : parseExitCode(values['conflict-exit-code'] as string, '--conflict-exit-code');
  const timeoutS = values.timeout === undefined ? undefined : parseSeconds(values.timeout as string, '--timeout');
  const primitive = (values.primitive as string | undefined) ?? 'auto';
  if (!['auto', 'flock', 'ofd', 'posix', 'windows'].includes(primitive)) {
    throw new UsageError(`--primitive must be auto, flock, ofd, posix or windows, got ${JSON.stringify(primitive)}`);
  }
  const quiet = Boolean(values.quiet);
  const color = useColor(io.stderr);
  const recordArgv = shell !== undefined ? [shell] : command;
  const opts = {
    mode: values.shared ? ('shared' as const) : ('exclusive' as const),
    primitive: primitive as 'auto' | PrimitiveName,
    record: { argv: recordArgv },
  };

  let held: FileLock | null = tryLock(lockPath, opts);
  if (!held) {
    if (values.nonblock || timeoutS === 0) {
      if (!quiet) io.stderr.write(`fslock: ${lockPath} is locked${holderText(lockPath)}\n`);
      return conflictCode;
    }
    if (!quiet) {
      io.stderr.write(`${paint(color, 'bold', 'Blocking')} waiting for file lock on ${lockPath}${holderText(lockPath)}\n`);
    }
    try {
      held = await lock(lockPath, timeoutS === undefined ? opts : { ...opts, timeout: timeoutS * 1000 });
    } catch (err) {
      if ((err as { code?: string }).code === 'ETIMEDOUT') {
        if (!quiet) io.stderr.write(`fslock: gave up waiting for ${lockPath} after ${timeoutS} s${holderText(lockPath)}\n`);
        return conflictCode;
      }
      throw err;
    }
  }
  try {
    return await runChild(shell, command, io);
  } finally {
    held.release();
  }
}

function runChild(shell: string | undefined, command: string[], io: RunIo): Promise<number> {
  return new Promise((resolve) => {
    const child =
      shell !== undefined
        ? spawn(shell, { stdio: 'inherit', shell: true })
        : spawn(command[0] as string, command.slice(1), { stdio: 'inherit' });
    const forward = (sig: NodeJS.Signals) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    };
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((sig) => [sig, forward(sig)] as const);
    for (const [sig, h] of handlers) process.on(sig, h);
    const done = (code: number) => {
      for (const [sig, h] of handlers) process.off(sig, h);
      resolve(code);
    };
    child.on('error', (err: Error & { code?: string }) => {
      const name = shell ?? command[0];
      if (err.code === 'ENOENT') {
        io.stderr.write(`fslock: ${name}: command not found\n`);
        done(EXIT.NOT_FOUND);
      } else {
        io.stderr.write(`fslock: cannot run ${name}: ${err.message}\n`);
        done(EXIT.CANNOT_EXECUTE);
      }
    });
    child.on('exit', (code, signal) => {
      if (signal) done(EXIT.SIGNAL_BASE + ((constants.signals as Record<string, number>)[signal] ?? 0));
      else done(code ?? EXIT.FAILURE);
    });
  });
}
