/** Terminal output: aligned tables, colour only on a TTY and never with NO_COLOR. */

export interface Out {
  write(s: string): void;
  isTTY?: boolean;
}

/** Where a command writes. */
export interface Io {
  stdout: Out;
  stderr: Out;
}

export function useColor(stream: Out): boolean {
  return Boolean(stream.isTTY) && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';
}

export type Style = 'bold' | 'dim' | 'red' | 'green' | 'yellow';
const CODES: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
};

export function paint(on: boolean, style: Style, s: string): string {
  if (!on) return s;
  const [a, b] = CODES[style];
  return `\u001b[${a}m${s}\u001b[${b}m`;
}

/** A cell: plain text, optionally styled when colour is on. */
export type Cell = string | { text: string; style?: Style };

const text = (c: Cell) => (typeof c === 'string' ? c : c.text);

export function table(rows: Cell[][], color: boolean, header = true): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, text(c).length)));
  return rows
    .map((r, ri) =>
      r
        .map((c, i) => {
          const t = text(c);
          const padded = i === r.length - 1 ? t : t.padEnd(widths[i] ?? 0);
          const style = ri === 0 && header ? 'bold' : typeof c === 'string' ? undefined : c.style;
          return style ? paint(color, style, padded) : padded;
        })
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}
