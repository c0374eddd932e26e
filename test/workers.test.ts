import { afterAll, describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { once } from 'node:events';
import { join } from 'node:path';
import { lock, tryLock } from '../src/index.js';
import { blockedCounter, cleanupTempDirs, FIXTURES, since, tempDir, untilBlocked } from './helpers.js';

afterAll(cleanupTempDirs);

type Msg = { got?: boolean; released?: boolean; waiting?: boolean; error?: string };

function startWorker(op: string, path: string, options: object = {}) {
  const w = new Worker(join(FIXTURES, 'worker-lock.cjs'), { workerData: { op, path, options } });
  const queue: Msg[] = [];
  const waiters: Array<(m: Msg) => void> = [];
  w.on('message', (m: Msg) => {
    const waiter = waiters.shift();
    if (waiter) waiter(m);
    else queue.push(m);
  });
  const exited = once(w, 'exit');
  return {
    w,
    exited,
    /** The next message not yet consumed. */
    next: (): Promise<Msg> => {
      const m = queue.shift();
      return m ? Promise.resolve(m) : new Promise((r) => waiters.push(r));
    },
  };
}

describe.each(['auto', 'flock', 'ofd', 'posix'] as const)('worker threads (%s)', (primitive) => {
  it('a worker is excluded while the main thread holds the lock', async () => {
    const p = join(tempDir(), 'w.lock');
    const l = await lock(p, { primitive });
    const { next, exited } = startWorker('tryLock', p, { primitive });
    expect(await next()).toEqual({ got: false });
    await exited;
    l.release();
    const { next: next2, exited: exited2 } = startWorker('tryLock', p, { primitive });
    expect(await next2()).toEqual({ got: true });
    await exited2;
  });

  it('the main thread is excluded while a worker holds the lock', async () => {
    const p = join(tempDir(), 'w2.lock');
    const { w, next } = startWorker('hold', p, { primitive });
    expect(await next()).toEqual({ got: true });
    expect(tryLock(p, { primitive })).toBeNull();
    w.postMessage('release');
    expect(await next()).toEqual({ released: true });
    const l = tryLock(p, { primitive });
    expect(l).not.toBeNull();
    l!.release();
    await w.terminate();
  });

  it('terminating a worker that holds a lock releases it', async () => {
    const p = join(tempDir(), 'w3.lock');
    const { w, next } = startWorker('hold', p, { primitive });
    expect(await next()).toEqual({ got: true });
    expect(tryLock(p, { primitive })).toBeNull();
    await w.terminate();
    const l = tryLock(p, { primitive });
    expect(l).not.toBeNull();
    l!.release();
  });
});

describe('worker threads and waits', () => {
  it('worker.terminate() is not blocked by a pending wait, and the wait leaves nothing held', async () => {
    const p = join(tempDir(), 'wt.lock');
    const l = await lock(p);
    const { w, next } = startWorker('wait', p);
    expect(await next()).toEqual({ waiting: true });
    if (process.platform === 'linux') await untilBlocked(p); // the worker's wait is in the kernel
    const t0 = performance.now();
    await w.terminate();
    expect(since(t0)).toBeLessThan(3000);
    l.release();
    // the terminated worker's wait left nothing held: free at once (a lock would show in /proc/locks)
    const again = tryLock(p);
    expect(again).not.toBeNull();
    again!.release();
  });

  it.runIf(process.platform === 'linux')(
    'terminating a worker in lockSync (waiting in slices, looking for cycles) ends its kernel wait',
    async () => {
      const p = join(tempDir(), 'ws.lock');
      const l = await lock(p);
      const { w, next } = startWorker('waitSync', p);
      expect(await next()).toEqual({ waiting: true });
      await untilBlocked(p);
      // JavaScript stops between two slices; the environment's teardown ends the wait
      await w.terminate();
      expect(blockedCounter(p)()).toBe(0);
      l.release();
      const again = tryLock(p);
      expect(again).not.toBeNull();
      again!.release();
    },
  );

  it('a worker waiting on a lock gets it when the main thread releases', async () => {
    const p = join(tempDir(), 'wg.lock');
    const l = await lock(p);
    const { next, exited } = startWorker('wait', p);
    expect(await next()).toEqual({ waiting: true });
    if (process.platform === 'linux') await untilBlocked(p);
    l.release();
    expect(await next()).toEqual({ got: true });
    await exited;
  });

  it('the addon loads in several workers at once', async () => {
    const d = tempDir();
    const workers = Array.from({ length: 6 }, (_, i) => startWorker('tryLock', join(d, `${i}.lock`)));
    const results = await Promise.all(workers.map((x) => x.next()));
    expect(results.every((r) => r.got === true)).toBe(true);
    await Promise.all(workers.map((x) => x.exited));
  });
});
