/**
 * fslock/session: copy-on-write cache directories with crash-safe garbage
 * collection, compatible with the Rust compiler's incremental directories.
 * The protocol is described in protocol.ts and docs/sessions.md.
 */
export { openLatest, openSession, Session, UNRELIABLE_FS_WARNING } from './protocol.js';
export type { LatestSession, OpenLatestOptions, SessionStats, SessionState } from './protocol.js';
export { collectGarbage, listSessions } from './gc.js';
export type { GcReport, GcError, SessionInfo } from './gc.js';
export { DEFAULT_SESSION_OPTIONS } from './options.js';
export type { SessionOptions, GcOptions } from './options.js';
export { encodeTimestamp, decodeTimestamp, parseSessionDir, parseLockFile } from './naming.js';
