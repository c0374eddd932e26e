/**
 * fslock: real operating-system file locks for Node.js.
 *
 *   import { lock } from 'fslock';
 *   await using l = await lock('build.lock');
 */
export { lock, tryLock, lockSync, withLock, FileLock, readHolderRecord } from './lock.js';
export type { HolderRecord, UpgradeOptions, UpgradeResult } from './lock.js';
export { inspect, inspectSync } from './inspect.js';
export type { LockInfo, KernelLock } from './inspect.js';
export { primitives } from './primitives.js';
export type { PrimitiveName, PrimitiveReport, ResolvedPrimitive } from './primitives.js';
export { DEFAULT_LOCK_OPTIONS } from './options.js';
export { WINDOWS_LOCK_OFFSET, KEEP_OPEN_IDLE_MS, closeIdleDescriptors } from './strategy.js';
export type { LockOptions, LockMode, LockRange } from './options.js';
export { FslockError } from './errors.js';
