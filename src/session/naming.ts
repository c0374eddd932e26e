/**
 * On-disk names, exactly as the compiler's incremental cache writes them:
 *
 *   s-{timestamp}-{random}-working     a session being worked on
 *   s-{timestamp}-{random}-{tag}       a finalized session (the compiler's tag is the crate's SVH)
 *   s-{timestamp}-{random}.lock        the lock file of both
 *
 * timestamp: microseconds since the Unix epoch in lower-case base 36, padded
 * to the 13 digits a u64 needs, with the three leading zeros dropped: always
 * exactly 10 characters, which holds until 36^10 µs after the epoch,
 * 2085-11-09T15:34:00Z. A clock past that cannot name a session (openSession
 * fails with ERR_SESSION_CLOCK). random: a u32 in base 36 padded to 7 digits.
 *
 * Only names of exactly this shape are sessions: `s-` + 10 base-36 characters
 * + `-` + 7 base-36 characters, then `-working`, `-{tag}` or `.lock`. Anything
 * else in a crate directory (s-2024-photos-raw, s-my-old-backup) is somebody
 * else's and is never listed, locked or collected.
 */
import { randomBytes } from 'crypto';

export const LOCK_SUFFIX = '.lock';
export const WORKING_TAG = 'working';
const TS_WIDTH = 13;
const RANDOM_WIDTH = 7;
export const TAG_PATTERN = /^[0-9a-z]+$/;

/** The first instant (µs since the epoch) that no session name can encode. */
export const MAX_MICROS = 36n ** 10n;

export function encodeTimestamp(micros: bigint): string {
  if (micros < 0n || micros >= MAX_MICROS) {
    const when = new Date(Number(micros / 1000n));
    const shown = Number.isNaN(when.getTime()) ? `${micros} µs after the epoch` : when.toISOString();
    const err = new RangeError(
      `ERR_SESSION_CLOCK: the clock says ${shown}, ` +
        'which a session name cannot encode (10 base-36 digits of microseconds since 1970 last until 2085-11-09T15:34:00Z). ' +
        'Check the system clock, or the `now` option.',
    );
    (err as RangeError & { code: string }).code = 'ERR_SESSION_CLOCK';
    throw err;
  }
  return micros.toString(36).padStart(TS_WIDTH, '0').slice(3);
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

const SESSION_DIR = /^(s-([0-9a-z]{10})-[0-9a-z]{7})-([0-9a-z]+)$/;
const SESSION_LOCK = /^(s-([0-9a-z]{10})-[0-9a-z]{7})\.lock$/;

/** Parses a session directory name of the exact shape; null for anything else (lock files included). */
export function parseSessionDir(name: string): ParsedName | null {
  const m = SESSION_DIR.exec(name);
  if (!m) return null;
  return { prefix: m[1] as string, micros: decodeTimestamp(m[2] as string) as bigint, tag: m[3] as string };
}

/** Parses a session lock file name of the exact shape; null for anything else. */
export function parseLockFile(name: string): { prefix: string; micros: bigint } | null {
  const m = SESSION_LOCK.exec(name);
  if (!m) return null;
  return { prefix: m[1] as string, micros: decodeTimestamp(m[2] as string) as bigint };
}

export function isFinalized(p: ParsedName): boolean {
  return p.tag !== WORKING_TAG;
}

export function newPrefix(micros: bigint, random = randomU32()): string {
  return `s-${encodeTimestamp(micros)}-${encodeRandom(random)}`;
}
