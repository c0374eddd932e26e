/** fslock inspect, fslock sessions and fslock gc. */
import { lstat, readdir } from 'fs/promises';
import { join } from 'path';
import { inspect } from '../inspect.js';
import { collectGarbage, listSessions } from '../session/gc.js';
import { parse, parseSeconds, type OptionSpec } from './args.js';
import { EXIT, UsageError } from './errors.js';
import { escapeText } from '../errors.js';
import { formatAge, formatBytes, paint, table, useColor, type Io } from './format.js';

export const INSPECT_USAGE = `usage: fslock inspect [--json] [--watch] <lockfile>

Shows whether <lockfile> is held, in which mode, by whom (each live process
holding it, on Linux; the record of an exclusive fslock holder where it can be
checked), and each lock the kernel reports on it (Linux). A lock taken
through fslock/proper-lockfile is found on its marker in <lockfile>.lock/.
Never creates or locks the file. --watch redraws whenever any of it changes
(four looks a second) until interrupted: leave it open while a build hangs.`;

export const SESSIONS_USAGE = `usage: fslock sessions [--json] <crateDir>

Lists the session directories of a crate directory (fslock/session, or the
Rust compiler's target/*/incremental/<crate>): name, state, age, size, held.`;

export const GC_USAGE = `usage: fslock gc [--dry-run] [--age <seconds>] [--json] <crateDir>

Collects garbage in a crate directory: dead working sessions older than
--age (default 10), orphan lock files, and all finalized sessions but the
newest. Sessions in use are never touched, and only entries named exactly as
the protocol names them (s-<10 base-36>-<7 base-36>-working|-<tag>|.lock) are
considered. A directory with no session lock file is not a crate directory:
nothing in it is changed, and subdirectories that are crate directories are
named. --dry-run deletes nothing and lists what it would delete.
Exit status 0, or 3 if some entries could not be removed.`;

const JSON_HELP: OptionSpec = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } };
const INSPECT_OPTIONS: OptionSpec = { ...JSON_HELP, watch: { type: 'boolean' } };
const WATCH_MS = 250;

function one(positionals: string[], what: string): string {
  if (positionals.length !== 1)
    throw new UsageError(positionals.length ? `expected one ${what}, got ${positionals.length}` : `missing ${what}`);
  return positionals[0] as string;
}

export async function inspectCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, INSPECT_OPTIONS);
  if (values.help) return (io.stdout.write(`${INSPECT_USAGE}\n`), EXIT.OK);
  const path = one(positionals, '<lockfile>');
  const render = async () =>
    values.json ? `${JSON.stringify(await inspect(path), null, 2)}\n` : describe(path, await inspect(path), io);
  if (!values.watch) {
    io.stdout.write(await render());
    return EXIT.OK;
  }
  // Until interrupted: a terminal is redrawn in place; a pipe gets each new state once.
  const tty = Boolean(io.stdout.isTTY);
  let last = '';
  for (;;) {
    const now = await render();
    if (now !== last) {
      io.stdout.write(tty ? `\u001b[H\u001b[2J${now}` : `--- ${new Date().toISOString()}\n${now}`);
      last = now;
    }
    await new Promise((r) => setTimeout(r, WATCH_MS));
  }
}

function describe(path: string, info: Awaited<ReturnType<typeof inspect>>, io: Io): string {
  const color = useColor(io.stdout);
  const shown = escapeText(path);
  if (!info.exists) return `${shown}: no such file (not held)\n`;
  const state = info.held ? paint(color, 'yellow', `held ${info.mode}`) : paint(color, 'green', 'free');
  const lines = [`${shown}: ${state}`];
  if (info.artefact) lines.push(`  through: fslock/proper-lockfile, on ${escapeText(info.artefact)}`);
  if (info.holder) {
    const h = info.holder;
    const since = h.startedAt ? `, since ${escapeText(h.startedAt)}` : '';
    const from =
      info.holderSource === 'kernel'
        ? ' (from the kernel lock table)'
        : info.holderRemote
          ? ' (recorded by a holder on another host: not checked)'
          : info.source === 'proc-locks'
            ? ' (recorded by the holder, confirmed by the kernel)'
            : ' (recorded by the holder)';
    lines.push(`  holder: pid ${h.pid} on ${escapeText(h.hostname)}${since}${from}`);
    if (h.argv.length) lines.push(`  command: ${escapeText(h.argv.join(' '))}`);
  }
  const byPid = new Map<number, typeof info.holders>();
  for (const h of info.holders) byPid.set(h.pid, [...(byPid.get(h.pid) ?? []), h]);
  for (const [pid, hs] of byPid) {
    const argv = hs[0]!.argv;
    const cmd = argv.length ? `: ${escapeText(argv.join(' '))}` : '';
    lines.push(`  held by: pid ${pid} (${hs.map((h) => `${h.kind} ${h.mode}`).join(', ')})${cmd}`);
  }
  for (const w of info.queue) {
    const cmd = w.argv.length ? `: ${escapeText(w.argv.join(' '))}` : '';
    lines.push(`  waiting: pid ${w.pid} (${w.kind} ${w.mode})${cmd}`);
  }
  const unnamed = info.waiters - info.queue.length;
  if (unnamed > 0) lines.push(`  waiting: ${unnamed}${info.queue.length ? ' more' : ''}`);
  for (const l of info.locks) {
    const range = l.start === 0 && l.end === null ? 'whole file' : `bytes ${l.start}..${l.end ?? 'EOF'}`;
    lines.push(`  kernel: ${l.kind} ${l.mode}, ${range}${l.pid === null ? '' : `, pid ${l.pid}`}`);
  }
  return `${lines.join('\n')}\n`;
}

async function treeSize(path: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(path, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(path, e.name);
    if (e.isDirectory()) total += await treeSize(p);
    else total += (await lstat(p).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

export async function sessionsCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, JSON_HELP);
  if (values.help) return (io.stdout.write(`${SESSIONS_USAGE}\n`), EXIT.OK);
  const dir = one(positionals, '<crateDir>');
  const sessions = await listSessions(dir);
  const sizes = await Promise.all(sessions.map((s) => treeSize(s.path)));
  if (values.json) {
    const out = sessions.map((s, i) => ({ ...s, createdAt: s.createdAt.toISOString(), size: sizes[i] }));
    io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return EXIT.OK;
  }
  if (sessions.length === 0) {
    io.stdout.write(`no session directories in ${escapeText(dir)}\n`);
    return EXIT.OK;
  }
  const color = useColor(io.stdout);
  const now = Date.now();
  const rows = [
    ['NAME', 'STATE', 'AGE', 'SIZE', 'HELD'],
    ...sessions.map((s, i) => [
      escapeText(s.name),
      s.lockFile ? s.state : `${s.state} (no lock file)`,
      formatAge(now - s.createdAt.getTime()),
      formatBytes(sizes[i] ?? 0),
      s.held ? { text: 'yes', style: 'yellow' as const } : 'no',
    ]),
  ];
  io.stdout.write(`${table(rows, color)}\n`);
  return EXIT.OK;
}

export async function gcCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, {
    ...JSON_HELP,
    'dry-run': { type: 'boolean' },
    age: { type: 'string' },
  });
  if (values.help) return (io.stdout.write(`${GC_USAGE}\n`), EXIT.OK);
  const dir = one(positionals, '<crateDir>');
  const gcAge = values.age === undefined ? undefined : parseSeconds(values.age as string, '--age') * 1000;
  const report = await collectGarbage(dir, {
    dryRun: Boolean(values['dry-run']),
    ...(gcAge === undefined ? {} : { gcAge }),
  });
  const dryRun = Boolean(values['dry-run']);
  if (values.json) {
    const { deleted, wouldDelete, ...restOfReport } = report;
    io.stdout.write(
      `${JSON.stringify(dryRun ? { dryRun, wouldDelete, ...restOfReport } : { dryRun, deleted, ...restOfReport }, null, 2)}\n`,
    );
  } else if (report.skipped !== null) {
    io.stderr.write(`fslock gc: ${escapeText(report.skipped)}\n`);
  } else {
    const color = useColor(io.stdout);
    const verb = dryRun ? 'would delete' : 'deleted';
    const removed = dryRun ? report.wouldDelete : report.deleted;
    const lines: string[] = [];
    const width = Math.max(verb.length, 'in use'.length);
    const show = (label: string, list: string[], style?: 'green' | 'yellow' | 'red') => {
      const padded = label.padEnd(width);
      for (const p of list) lines.push(`${style ? paint(color, style, padded) : padded}  ${escapeText(p)}`);
    };
    show(verb, removed, 'green');
    show('in use', report.inUse, 'yellow');
    show('kept', report.kept);
    for (const e of report.errors)
      lines.push(`${paint(color, 'red', 'error'.padEnd(width))}  ${escapeText(e.path)}: ${escapeText(e.message)}`);
    lines.push(
      `${removed.length} ${verb}, ${report.inUse.length} in use, ${report.kept.length} kept, ${report.errors.length} errors`,
    );
    io.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.errors.length > 0 ? EXIT.FAILURE : EXIT.OK;
}
