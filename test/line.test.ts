// Asynchronous waits of one thread for one lock stand in a line: one kernel
// waiter, the rest first come first served, handed the lock at release.
import { afterAll, describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { lock, lockSync, tryLock } from '../src/index.js';
import { lines } from '../src/lock/line.js';
import { cleanupTempDirs, since, startNode, tempDir, untilBlocked } from './helpers.js';

afterAll(cleanupTempDirs);

const threads = () => readdirSync('/proc/self/task').length;

describe.runIf(process.platform === 'linux')('waiting in line', () => {
  it('2,000 pending waits on one path cost O(1) threads, are served first come first served, one at a time', async () => {
    const p = join(tempDir(), 'line.lock');
    const h = startNode('hold.cjs', [p]); // held by another process: the first waiter blocks in the kernel
    await h.waitFor('locked');
    const before = threads();
    let inside = 0;
    let maxInside = 0;
    const order: number[] = [];
    const pending = Array.from({ length: 2000 }, (_, i) =>
      lock(p).then(async (l) => {
        inside++;
        maxInside = Math.max(maxInside, inside);
        order.push(i);
        await null;
        inside--;
        l.release();
      }),
    );
    await untilBlocked(p); // the first of the line waits in the kernel now; the others wait in line
    expect(threads() - before).toBeLessThanOrEqual(2); // one kernel waiter (plus at most one pooled thread)
    h.send('release');
    await Promise.all(pending);
    expect(maxInside).toBe(1);
    expect(order).toEqual(order.slice().sort((a, b) => a - b)); // FIFO
    h.child.kill();
    await h.exited;
  });

  it('a waiter in line times out or is aborted alone; the kernel waiter giving up hands over to the next', async () => {
    const p = join(tempDir(), 'line2.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    const first = lock(p, { timeout: 150 }).then(
      () => 'granted',
      (e) => e.code,
    ); // the kernel waiter
    const ac = new AbortController();
    const aborted = lock(p, { signal: ac.signal }).then(
      () => 'granted',
      (e) => e.code,
    );
    const timed = lock(p, { timeout: 50 }).then(
      () => 'granted',
      (e) => e.code,
    );
    const patient = lock(p);
    setTimeout(() => ac.abort(), 20);
    const t0 = performance.now();
    expect(await aborted).toBe('ABORT_ERR');
    expect(await timed).toBe('ETIMEDOUT');
    expect(await first).toBe('ETIMEDOUT');
    expect(since(t0)).toBeLessThan(2000);
    h.send('release'); // the patient one took over the kernel wait and gets it now
    const l = await patient;
    expect(l.released).toBe(false);
    expect(tryLock(p)).toBeNull();
    l.release();
    h.child.kill();
    await h.exited;
  });

  it('shared waiters in line come in together; an exclusive one after them waits for all', async () => {
    const p = join(tempDir(), 'line3.lock');
    const ex = await lock(p);
    const shared = [lock(p, { mode: 'shared' }), lock(p, { mode: 'shared' }), lock(p, { mode: 'shared' })];
    const exclusive = lock(p);
    let exGranted = false;
    void exclusive.then(() => (exGranted = true));
    ex.release();
    const got = await Promise.all(shared);
    expect(got.map((l) => l.mode)).toEqual(['shared', 'shared', 'shared']);
    // served lock holders are delivered on the next turn of the event loop: two turns are enough to see a wrong grant
    for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
    expect(exGranted).toBe(false);
    for (const l of got) l.release();
    (await exclusive).release();
  });

  it('a lock handed over by another process is held the moment the caller resumes; the line goes on', async () => {
    const p = join(tempDir(), 'line4.lock');
    for (let round = 0; round < 3; round++) {
      const h = startNode('hold.cjs', [p]);
      await h.waitFor('locked');
      const waited = lock(p);
      await untilBlocked(p);
      h.send('release');
      const l = await waited;
      // still the turn of the grant: this thread holds it, a synchronous wait on it could never end
      expect(() => lockSync(p, { timeout: 5000 })).toThrow(expect.objectContaining({ code: 'EDEADLK' }));
      expect(tryLock(p)).toBeNull();
      // waits of this thread made in the same turn stand in line behind it and are served in order
      const order: string[] = [];
      const again = lock(p).then((x) => (order.push('again'), x));
      const behind = lock(p).then((x) => (order.push('behind'), x));
      l.release();
      const l2 = await again;
      expect(tryLock(p)).toBeNull();
      l2.release();
      (await behind).release();
      expect(order).toEqual(['again', 'behind']);
      h.child.kill();
      await h.exited;
    }
  });

  it('lines left behind by hand-offs on many files stay few, and each file can be waited for again', async () => {
    const dir = tempDir();
    const files = Array.from({ length: 150 }, (_, i) => join(dir, `many-${i}.lock`));
    for (const f of files) {
      const mine = lockSync(f); // held by this thread on another descriptor: the wait below blocks in the kernel
      const waited = lock(f);
      await untilBlocked(f);
      mine.release();
      (await waited).release(); // granted in the wait's callback
    }
    expect(lines.size).toBeLessThanOrEqual(65);
    for (const f of files.slice(-3)) {
      const mine = lockSync(f);
      const waited = lock(f);
      const behind = lock(f);
      await untilBlocked(f);
      mine.release();
      const l = await waited;
      expect(tryLock(f)).toBeNull();
      l.release();
      (await behind).release();
    }
    const free = files.map((f) => tryLock(f));
    expect(free.every((l) => l !== null)).toBe(true);
    for (const l of free) l!.release();
  });

  it('shared waiters in line behind a shared hand-off from another process come in with it', async () => {
    const p = join(tempDir(), 'line5.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    const shared = [lock(p, { mode: 'shared' }), lock(p, { mode: 'shared' }), lock(p, { mode: 'shared' })];
    await untilBlocked(p);
    h.send('release');
    const got = await Promise.all(shared);
    expect(got.map((l) => l.mode)).toEqual(['shared', 'shared', 'shared']);
    expect(tryLock(p, { mode: 'shared' })?.release()).toBeUndefined(); // shared with them
    expect(tryLock(p)).toBeNull();
    for (const l of got) l.release();
    const x = tryLock(p);
    expect(x).not.toBeNull();
    x!.release();
    h.child.kill();
    await h.exited;
  });
});
