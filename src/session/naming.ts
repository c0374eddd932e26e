/**
 * On-disk names, exactly as the compiler's incremental cache writes them:
 *
 *   s-{timestamp}-{random}-working     a session being worked on
 *   s-{timestamp}-{random}-{tag}       a finalized session (the compiler's tag is the crate's SVH)
 *   s-{timestamp}-{random}.lock        the lock file of both
 *
 * timestamp: microseconds since the Unix epoch in lower-case base 36, padded
 * to the 13 digits a u64 needs, with the three leading zeros dropped (10 chars
 * until the year 5188). random: a u32 in base 36 padded to 7 digits.
 */
import { randomBytes } from 'node:crypto';

export const LOCK_SUFFIX = '.lock';
export const WORKING_TAG = 'working';
const TS_WIDTH = 13;
const RANDOM_WIDTH = 7;
export const TAG_PATTERN = /^[0-9a-z]+$/;

export function encodeTimestamp(micros: bigint): string {
  const s = micros.toString(36).padStart(TS_WIDTH, '0');
  if (!s.startsWith('000')) throw new RangeError(`timestamp ${micros} µs is too far in the future to encode`);
  return s.slice(3);
}

export function decodeTimestamp(s: string): bigint | null {
  if (!/^[0-9a-z]+$/.test(s)) return null;
  let v = 0n;
  for (const ch of s) v = v * 36n + BigInt(parseInt(ch, 36));
  return v;
}

export function encodeRandom(n: number): string {
  return (n >>> 0).toString(36).padStart(RANDOM_WIDTH, '0');
}

export function randomU32(): number {
  return randomBytes(4).readUInt32LE(0);
}

export interface ParsedName {
  /** "s-{timestamp}-{random}": the lock file's stem, shared by working and finalized names. */
  prefix: string;
  /** Microseconds since the epoch. */
  micros: bigint;
  /** "working" or the finalized tag. */
  tag: string;
}

/** Parses a session directory name; null for anything else (lock files included). */
export function parseSessionDir(name: string): ParsedName | null {
  if (!name.startsWith('s-') || name.endsWith(LOCK_SUFFIX)) return null;
  const parts = name.split('-');
  if (parts.length !== 4) return null;
  const micros = decodeTimestamp(parts[1] as string);
  if (micros === null || !parts[2] || !parts[3]) return null;
  return { prefix: `s-${parts[1]}-${parts[2]}`, micros, tag: parts[3] };
}

/** Parses a lock file name; null for anything else. */
export function parseLockFile(name: string): { prefix: string; micros: bigint } | null {
  if (!name.startsWith('s-') || !name.endsWith(LOCK_SUFFIX)) return null;
  const prefix = name.slice(0, -LOCK_SUFFIX.length);
  const parts = prefix.split('-');
  if (parts.length !== 3 || !parts[2]) return null;
  const micros = decodeTimestamp(parts[1] as string);
  if (micros === null) return null;
  return { prefix, micros };
}

export function isFinalized(p: ParsedName): boolean {
  return p.tag !== WORKING_TAG;
}

export function newPrefix(micros: bigint, random = randomU32()): string {
  return `s-${encodeTimestamp(micros)}-${encodeRandom(random)}`;
}
