/**
 * The fslock command: dispatch, --help, --version, and error reporting.
 *
 * Each subcommand's module is loaded only when that subcommand runs: a
 * script taking a lock in a loop pays Node's start-up and `fslock run`'s
 * own modules, not the session collector's or the probe's.
 */
import { EXIT } from './errors.js';
import { errorCode, escapeText } from '../errors.js';
import type { Io } from './format.js';

export const USAGE = `usage: fslock <command> [options]
       fslock [options] <lockfile|fd> ...   (flock(1)'s form: the same as fslock run)

commands:
  run [options] <lockfile> <command...>   run a command under a lock (like flock(1))
  probe [dir]                             measure the lock semantics of this OS and filesystem
  inspect <lockfile>                      is it held, in which mode, by whom
  sessions <crateDir>                     list session directories
  gc <crateDir>                           collect garbage in a crate directory

A first argument that is not exactly one of these names is a lock file, as
with flock(1); to lock a file named like a command, write ./probe or
'fslock run probe ...'.

options:
  -h, --help      help (also: fslock <command> --help)
  -V, --version   print the version

exit status: flock(1)'s for run (see 'fslock run --help'); otherwise 0 ok,
64 bad command line, 3 failure.`;

type Command = (argv: string[], io: Io) => Promise<number>;
interface Loaded {
  run: Command;
  usage: string;
}

let runModule: typeof import('./run.js') | undefined;

// require(), not import(): a dynamic import() starts Node's ESM loader, about
// 20 ms of a 90 ms start-up (bench/startup.js).
/* eslint-disable @typescript-eslint/no-require-imports */
// `run` from its one-file bundle where the build made one (scripts/build-cli.js).
const loadRun = (): typeof import('./run.js') => {
  try {
    return require('./run.bundle.js') as typeof import('./run.js');
  } catch {
    return require('./run.js');
  }
};
const loadProbe = (): typeof import('./probe.js') => require('./probe.js');
const loadCommands = (): typeof import('./commands.js') => require('./commands.js');
const loadVersion = (): typeof import('./version.js') => require('./version.js');
/* eslint-enable @typescript-eslint/no-require-imports */

const COMMANDS: Record<string, () => Promise<Loaded>> = {
  run: async () => {
    const m = (runModule = loadRun());
    return { run: m.runCommand, usage: m.RUN_USAGE };
  },
  probe: async () => {
    const m = loadProbe();
    return { run: m.probeCommand, usage: m.PROBE_USAGE };
  },
  inspect: async () => {
    const m = loadCommands();
    return { run: m.inspectCommand, usage: m.INSPECT_USAGE };
  },
  sessions: async () => {
    const m = loadCommands();
    return { run: m.sessionsCommand, usage: m.SESSIONS_USAGE };
  },
  gc: async () => {
    const m = loadCommands();
    return { run: m.gcCommand, usage: m.GC_USAGE };
  },
};

const isCommand = (name: string | undefined): name is string => name !== undefined && Object.hasOwn(COMMANDS, name);

export async function version(): Promise<string> {
  return loadVersion().version();
}

/** The signal `fslock run` received and must die from once it has let go (see bin/fslock.js), or null. */
export function exitSignal(): NodeJS.Signals | null {
  return runModule?.receivedSignal() ?? null;
}

export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'help' && isCommand(rest[0])) {
    io.stdout.write(`${(await COMMANDS[rest[0]]!()).usage}\n`); // fslock help run
    return EXIT.OK;
  }
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    (first === undefined ? io.stderr : io.stdout).write(`${USAGE}\n`);
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === '-v' || first === '-V' || first === '--version') {
    io.stdout.write(`fslock ${await version()}\n`);
    return EXIT.OK;
  }
  // flock(1)'s command line: anything but an exact subcommand name means `fslock run ...`
  const name = isCommand(first) ? first : 'run';
  const args = name === first ? rest : argv;
  let cmd: Loaded | undefined;
  try {
    cmd = await COMMANDS[name]!();
    return await cmd.run(args, io);
  } catch (err) {
    const e = err as Error;
    const code = errorCode(err);
    // by code, not instanceof: `run` comes from its bundle, with a UsageError class of its own
    if (code === 'ERR_USAGE') {
      const what = name === first ? `fslock ${name}` : 'fslock';
      io.stderr.write(`${what}: ${e.message}\nTry '${what} --help' for more information.\n`);
      return EXIT.USAGE;
    }
    io.stderr.write(`fslock ${escapeText(name)}: ${e.message}\n`);
    return code?.startsWith('ERR_INVALID_ARG') ? EXIT.USAGE : name === 'run' ? EXIT.SOFTWARE : EXIT.FAILURE;
  }
}
