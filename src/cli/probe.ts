/**
 * fslock probe: the command line and the rendering of the probe's results
 * (the experiments are in src/probe/lab.ts).
 */
import { resolve } from 'path';
import { OWNERSHIP_ROWS, probe, type Prim, type ProbeResult } from '../probe/lab.js';
import { parse } from './args.js';
import { EXIT, UsageError } from './errors.js';
import { paint, table, useColor, type Cell, type Io } from './format.js';

export const PROBE_USAGE = `usage: fslock probe [--json] [dir]

Measures the lock semantics of this OS and of the filesystem holding [dir]
(default: the current directory): which primitives exist, what 'auto' uses,
whether each primitive excludes a second open() in the same process, another
worker thread, another process; what fork/exec inheritance, closing another
descriptor, read-only and directory descriptors, byte ranges and a failed
upgrade do; and which primitives see each other. Works in a temporary
directory inside [dir] and removes it.`;

/** Bad outcomes, highlighted in the table. */
const BAD = new Set(['not excluded', 'lost', 'shared lock lost', "drops parent's lock"]);

export function renderProbe(r: ProbeResult, color: boolean): string {
  const style = (v: string): Cell => (BAD.has(v) ? { text: v, style: 'red' } : v);
  const name = (p: Prim) => (p === 'posix' ? 'posix (raw)' : p);
  const lines: string[] = [];
  const avail = (Object.entries(r.primitives.available) as Array<[Prim, boolean]>)
    .filter(([p]) => p !== 'windows' || r.os.type.startsWith('Windows'))
    .map(([p, ok]) => `${p} ${ok ? 'yes' : 'no'}`)
    .join(', ');
  lines.push(paint(color, 'bold', `fslock probe: ${r.os.type} ${r.os.release} ${r.os.arch}`));
  const magic = r.filesystem.magic ? ` (f_type 0x${r.filesystem.magic.toString(16)})` : '';
  lines.push(`directory:  ${r.dir} on ${r.filesystem.name}${magic}`);
  lines.push(`primitives: ${avail}`);
  lines.push(
    `auto:       ${r.primitives.auto} for whole files, ${r.primitives.autoRange} for byte ranges; waits ${r.primitives.kernelWait ? 'block in the kernel on a native thread' : 'poll with backoff'}`,
  );
  lines.push('');
  lines.push(paint(color, 'bold', 'Who owns a lock (the holder has an exclusive whole-file lock)'));
  lines.push(
    table(
      [
        ['scenario', ...r.tested.map(name)],
        ...OWNERSHIP_ROWS.map(([key, label]) => [label, ...r.tested.map((p) => style(r.ownership[key]?.[p] ?? '?'))]),
      ],
      color,
    ),
  );
  lines.push('');
  lines.push(paint(color, 'bold', 'Which primitives see each other (holder \\ contender, another process)'));
  lines.push(
    table(
      [
        ['holder \\ contender', ...r.tested.map(name)],
        ...r.tested.map((h) => [name(h), ...r.tested.map((c) => r.crossPrimitive[h]?.[c] ?? '?')]),
      ],
      color,
    ),
  );
  for (const w of r.warnings) {
    lines.push('');
    lines.push(paint(color, 'yellow', `warning: locks are unreliable on ${w.kind}: ${w.why}.`));
  }
  lines.push('');
  lines.push(paint(color, 'dim', `measured in ${r.elapsedMs} ms`));
  return lines.join('\n');
}

export async function probeCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    io.stdout.write(`${PROBE_USAGE}\n`);
    return EXIT.OK;
  }
  if (positionals.length > 1) throw new UsageError(`expected at most one [dir], got ${positionals.length}`);
  const dir = resolve(positionals[0] ?? '.');
  const result = await probe(dir);
  io.stdout.write(
    values.json ? `${JSON.stringify(result, null, 2)}\n` : `${renderProbe(result, useColor(io.stdout))}\n`,
  );
  return EXIT.OK;
}
