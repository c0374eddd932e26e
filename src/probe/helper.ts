/**
 * The probe's helper: runs lock requests in another process (over stdin and
 * stdout, one JSON line each) or in a worker thread (over messages), so the
 * probe can ask "does this exclude someone else?". Started by lab.ts; holds
 * what it locks until told to release it.
 */
import { createInterface } from 'readline';
import { isMainThread, parentPort } from 'worker_threads';
import { binding, C } from '../binding.js';
import { errorCode } from '../errors.js';

/** A lock request the probe sends. */
export interface HelperRequest {
  /** try: open `path`, take a lock without waiting; release: close a held one; unlockInherited: unlock the descriptor inherited as fd 3. */
  op: 'try' | 'release' | 'unlockInherited';
  primitive?: number;
  path?: string;
  type?: number;
  start?: number;
  len?: number;
  /** Keep a granted lock (answer with its id). */
  hold?: boolean;
  id?: number;
}

export interface HelperReply {
  ok?: boolean;
  id?: number;
  error?: string;
}

/** The descriptor a child inherits the probe's locked file as (the fourth stdio slot). */
export const INHERITED_FD = 3;

const held = new Map<number, number>();
let nextId = 1;

function handle(req: HelperRequest): HelperReply {
  try {
    if (req.op === 'release') {
      binding.close(held.get(req.id as number) as number);
      held.delete(req.id as number);
      return { ok: true };
    }
    if (req.op === 'unlockInherited') {
      binding.lock(req.primitive as number, INHERITED_FD, C.UNLOCK, 0, 0, false);
      return { ok: true };
    }
    const fd = binding.open(req.path as string, C.OPEN_WRITE);
    let ok: boolean;
    try {
      ok = binding.lock(req.primitive as number, fd, req.type as number, req.start ?? 0, req.len ?? 0, false);
    } catch (err) {
      binding.close(fd);
      return { error: errorCode(err) ?? String(err) };
    }
    if (ok && req.hold) {
      const id = nextId++;
      held.set(id, fd);
      return { ok, id };
    }
    binding.close(fd);
    return { ok };
  } catch (err) {
    return { error: errorCode(err) ?? String(err) };
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  port.on('message', (m: HelperRequest) => port.postMessage(handle(m)));
} else if (require.main === module) {
  createInterface({ input: process.stdin }).on('line', (line) => {
    process.stdout.write(`${JSON.stringify(handle(JSON.parse(line) as HelperRequest))}\n`);
  });
}
