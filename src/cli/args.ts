/**
 * Argument parsing on top of util.parseArgs. `fslock run` needs the options
 * that come before the lock file only: everything after it belongs to the
 * command being run, so the split is done here first.
 */
import { parseArgs, type ParseArgsConfig } from 'util';
import { UsageError } from './errors.js';
import { errorCode } from '../errors.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: OptionSpec) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(usageMessage(err as Error));
  }
}

/** parseArgs' errors, said the way command-line users expect. */
function usageMessage(err: Error): string {
  const quoted = /'([^']*)'/.exec(err.message)?.[1];
  const code = errorCode(err);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && quoted) return `unknown option ${quoted}`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && quoted) {
    return /argument missing/.test(err.message)
      ? `option ${quoted.replace(/ <value>$/, '')} needs a value`
      : `bad value for ${quoted}`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') return `unexpected argument ${quoted ?? ''}`.trim();
  return err.message;
}

/**
 * Splits `[options] first rest...` at the first positional argument (or
 * after `--`), so options of a wrapped command are left alone.
 */
export function splitAtFirstPositional(argv: string[], options: OptionSpec): { own: string[]; rest: string[] } {
  const takesValue = new Set<string>();
  for (const [name, spec] of Object.entries(options)) {
    if (spec.type === 'string') {
      takesValue.add(`--${name}`);
      if (spec.short) takesValue.add(`-${spec.short}`);
    }
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '--') return { own: argv.slice(0, i), rest: argv.slice(i + 1) };
    if (!a.startsWith('-') || a === '-') return { own: argv.slice(0, i), rest: argv.slice(i) };
    if (takesValue.has(a)) {
      i++; // its value
    } else if (/^-[a-zA-Z]+$/.test(a) && a.length > 2) {
      // grouped short flags: the last one may take the next argument as its value
      if (takesValue.has(`-${a[a.length - 1]}`)) i++;
    }
  }
  return { own: argv, rest: [] };
}

/** The one message for a bad number on the command line. */
function badNumber(name: string, value: string, expected: string): UsageError {
  return new UsageError(`invalid ${name} value ${JSON.stringify(value)}: expected ${expected}`);
}

export function parseSeconds(value: string, name: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw badNumber(name, value, 'a number of seconds, 0 or more');
  return n;
}

export function parseExitCode(value: string, name: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 255) {
    throw badNumber(name, value, 'an integer from 0 to 255');
  }
  return n;
}
