/** The fslock command: dispatch, --help, --version, and error reporting. */
import { EXIT, UsageError } from './errors.js';
import { version } from './version.js';
import { escapeText } from '../errors.js';
import type { Io } from './format.js';
import { runCommand, RUN_USAGE } from './run.js';
import { probeCommand, PROBE_USAGE } from './probe.js';
import { gcCommand, GC_USAGE, inspectCommand, INSPECT_USAGE, sessionsCommand, SESSIONS_USAGE } from './commands.js';

export const USAGE = `usage: fslock <command> [options]

commands:
  run [options] <lockfile> <command...>   run a command under a lock (like flock(1))
  probe [dir]                             measure the lock semantics of this OS and filesystem
  inspect <lockfile>                      is it held, in which mode, by whom
  sessions <crateDir>                     list session directories
  gc <crateDir>                           collect garbage in a crate directory

options:
  -h, --help      help (also: fslock <command> --help)
  -v, --version   print the version

exit status: 0 ok, 1 lock conflict (run -n / -w), 2 bad command line,
3 failure; run passes on its command's status (128+N for signal N).`;

type Command = (argv: string[], io: Io) => Promise<number>;

const COMMANDS: Record<string, { run: Command; usage: string }> = {
  run: { run: runCommand, usage: RUN_USAGE },
  probe: { run: probeCommand, usage: PROBE_USAGE },
  inspect: { run: inspectCommand, usage: INSPECT_USAGE },
  sessions: { run: sessionsCommand, usage: SESSIONS_USAGE },
  gc: { run: gcCommand, usage: GC_USAGE },
};

/** `fslock -n 9`, `fslock x.lock make`: flock(1)'s form, starting with an option, a number or a path. */
function looksLikeFlock(argv: string[]): boolean {
  const first = argv[0] as string;
  return first.startsWith('-') || /^\d+$/.test(first) || first.includes('/') || first.includes('.');
}

export { version };

export async function main(
  argv: string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const [first, ...rest] = argv;
  if (first === 'help' && rest[0] !== undefined && COMMANDS[rest[0]]) {
    io.stdout.write(`${COMMANDS[rest[0]]!.usage}\n`); // fslock help run
    return EXIT.OK;
  }
  if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
    (first === undefined ? io.stderr : io.stdout).write(`${USAGE}\n`);
    return first === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (first === '-v' || first === '-V' || first === '--version') {
    io.stdout.write(`fslock ${version()}\n`);
    return EXIT.OK;
  }
  // flock(1)'s command line: `fslock [options] <file|fd> ...` means `fslock run ...`
  const name = COMMANDS[first] ? first : looksLikeFlock(argv) ? 'run' : undefined;
  const cmd = name ? COMMANDS[name] : undefined;
  if (!cmd || !name) {
    io.stderr.write(`fslock: unknown command '${escapeText(first)}'\nTry 'fslock --help' for more information.\n`);
    return EXIT.USAGE;
  }
  const args = name === first ? rest : argv;
  try {
    return await cmd.run(args, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`fslock ${name}: ${err.message}\nTry 'fslock ${name} --help' for more information.\n`);
      return EXIT.USAGE;
    }
    const e = err as Error & { code?: string };
    io.stderr.write(`fslock ${first}: ${e.message}\n`);
    return e.code?.startsWith('ERR_INVALID_ARG') ? EXIT.USAGE : EXIT.FAILURE;
  }
}
