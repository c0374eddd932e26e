/** The options parser of the session family (openSession, collectGarbage). */
import { performance } from 'perf_hooks';
import { checkOptionsObject } from '../options.js';
import { invalidArgType, invalidArgValue } from '../errors.js';
import { parsePrimitive, type PrimitiveName } from '../primitives.js';

/** Documented defaults. */
export const DEFAULT_SESSION_OPTIONS = Object.freeze({
  /** Working directories and orphan lock files younger than this are never collected (ms). */
  gcAge: 10_000,
  strict: false,
  copy: 'auto' as const,
  primitive: 'auto' as const,
});

export interface SessionOptions {
  /** Age (ms) before an unlocked working directory or orphan lock file may be collected. Default 10 s. */
  gcAge?: number;
  /** Clock: milliseconds since the epoch (fractions allowed). Default: the system clock. */
  now?: () => number;
  /** Lock primitive for session lock files (default 'auto'). */
  primitive?: 'auto' | PrimitiveName;
  /** Throw ENOTSUP on filesystems where locks are unreliable instead of warning. */
  strict?: boolean;
  /** 'auto' hard-links files from the source session and copies where links fail; 'copy' always copies. */
  copy?: 'auto' | 'copy';
}

export interface GcOptions {
  gcAge?: number;
  now?: () => number;
  /** Report what would be deleted, delete nothing. */
  dryRun?: boolean;
  primitive?: 'auto' | PrimitiveName;
}

export interface ParsedSessionOptions {
  gcAge: number;
  now: () => number;
  primitive: 'auto' | PrimitiveName;
  strict: boolean;
  copy: 'auto' | 'copy';
  dryRun: boolean;
}

/** Wall clock with microsecond resolution. */
export function systemClock(): number {
  return performance.timeOrigin + performance.now();
}

/** gcAge: milliseconds, finite, >= 0. */
export function parseGcAge(value: unknown): number {
  if (value === undefined) return DEFAULT_SESSION_OPTIONS.gcAge;
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidArgType('options.gcAge', 'of type number', value);
  if (value < 0 || value === Infinity) {
    throw invalidArgValue(
      'options.gcAge',
      value,
      `must be a finite number of milliseconds >= 0 (omit it for the default, ${DEFAULT_SESSION_OPTIONS.gcAge})`,
    );
  }
  return value;
}

export function parseSessionOptions(options: unknown, names: string[]): ParsedSessionOptions {
  const o = checkOptionsObject(options, new Set(names));
  const gcAge = parseGcAge(o.gcAge);
  if (o.now !== undefined && typeof o.now !== 'function')
    throw invalidArgType('options.now', 'of type function', o.now);
  const now = (o.now as (() => number) | undefined) ?? systemClock;
  const primitive = parsePrimitive(o.primitive, (expected) =>
    invalidArgValue('options.primitive', o.primitive, `must be ${expected}`),
  );
  for (const k of ['strict', 'dryRun'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalidArgType(`options.${k}`, 'of type boolean', o[k]);
  }
  if (o.copy !== undefined && o.copy !== 'auto' && o.copy !== 'copy') {
    throw invalidArgValue('options.copy', o.copy, "must be 'auto' or 'copy'");
  }
  return {
    gcAge,
    now,
    primitive,
    strict: (o.strict as boolean | undefined) ?? false,
    copy: (o.copy as 'auto' | 'copy' | undefined) ?? 'auto',
    dryRun: (o.dryRun as boolean | undefined) ?? false,
  };
}

/** Reads the injected clock, checking what it returns. */
export function nowMicros(now: () => number): bigint {
  const ms = now();
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
    throw invalidArgValue('options.now', ms, 'must return milliseconds since the epoch');
  }
  return BigInt(Math.floor(ms * 1000));
}
