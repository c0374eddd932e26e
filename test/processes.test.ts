import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lock, tryLock } from '../src/index.js';
import {
  attach,
  cleanupTempDirs,
  kernelEntries,
  run,
  since,
  sleep,
  startNode,
  tempDir,
  untilBlocked,
} from './helpers.js';

afterAll(cleanupTempDirs);

const pyLockf = (p: string, hold: boolean) =>
  `import fcntl, os, sys, time
fd = os.open(${JSON.stringify(p)}, os.O_RDWR | os.O_CREAT)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
${hold ? "print('locked', flush=True)\ntime.sleep(60)" : 'sys.exit(0)'}`;

describe('foreign lockers', () => {
  it('while fslock holds an auto lock, util-linux flock and python lockf are refused', async () => {
    const p = join(tempDir(), 'f.lock');
    const l = await lock(p);
    expect((await run('flock', ['-n', p, 'true'])).code).toBe(1);
    expect((await run('python3', ['-c', pyLockf(p, false)])).code).toBe(1);
    l.release();
    expect((await run('flock', ['-n', p, 'true'])).code).toBe(0);
    expect((await run('python3', ['-c', pyLockf(p, false)])).code).toBe(0);
  });

  it('while util-linux flock holds the file, tryLock returns null', async () => {
    const p = join(tempDir(), 'g.lock');
    const h = attach(
      spawn('flock', [p, '-c', 'echo locked $$; exec sleep 60'], { stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    const shellPid = Number((await h.waitFor(/^locked \d+$/)).split(' ')[1]);
    expect(tryLock(p)).toBeNull();
    h.child.kill('SIGKILL');
    await h.exited;
    // flock(1) died; the command (sh exec'd into sleep) inherited the lock fd: end it too
    process.kill(shellPid, 'SIGKILL');
    const l = await lock(p, { timeout: 5000 });
    l.release();
  });

  it('while python holds a POSIX lockf lock, tryLock returns null', async () => {
    const p = join(tempDir(), 'h.lock');
    const h = attach(spawn('python3', ['-c', pyLockf(p, true)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await h.waitFor('locked');
    expect(tryLock(p)).toBeNull();
    h.child.kill('SIGKILL');
    await h.exited;
    const l = await lock(p, { timeout: 5000 });
    l.release();
  });

  it('a wait granted flock while python still holds lockf goes on waiting for it, then takes both', async () => {
    if (process.platform !== 'linux') return;
    const p = join(tempDir(), 'k.lock');
    // util-linux flock holds the flock half, python the POSIX half
    const f = attach(
      spawn('flock', [p, '-c', 'echo locked $$; exec sleep 60'], { stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    const shellPid = Number((await f.waitFor(/^locked \d+$/)).split(' ')[1]);
    const py = attach(spawn('python3', ['-c', pyLockf(p, true)], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await py.waitFor('locked');
    let granted = false;
    const pending = lock(p, { timeout: 30_000 }).then((l) => {
      granted = true;
      return l;
    });
    // lock() has started its kernel wait on flock by the time it returns
    f.child.kill('SIGKILL');
    await f.exited;
    process.kill(shellPid, 'SIGKILL'); // the command (sh exec'd into sleep) inherited the lock: end it too
    // the waiter thread gets flock (the kernel names this process as its holder),
    // finds the POSIX lock in the way of OFD, and goes on waiting there
    const ourFlock = () => kernelEntries(p).locks.some((l) => l.kind === 'flock' && l.pid === process.pid);
    const until = Date.now() + 20_000;
    while (!ourFlock() && Date.now() < until) await sleep(10);
    expect(ourFlock()).toBe(true);
    await untilBlocked(p); // its OFD step is a blocked request now: nothing settled it
    expect(granted).toBe(false);
    py.child.kill('SIGKILL');
    await py.exited;
    const l = await pending;
    expect(granted).toBe(true);
    expect((await run('python3', ['-c', pyLockf(p, false)])).code).toBe(1);
    l.release();
    expect((await run('python3', ['-c', pyLockf(p, false)])).code).toBe(0);
  });

  it('with keepOpen, a lock taken after a wait keeps its descriptor for the next lock of the path, as an uncontended one does', async () => {
    const p = join(tempDir(), 'm.lock');
    const holder = startNode('hold.cjs', [p]);
    await holder.waitFor('locked');
    const pending = lock(p, { keepOpen: true }); // contended: waiting in the kernel once this returns
    holder.child.stdin!.write('release\n');
    const first = await pending;
    const fd = first.fd;
    first.release();
    // had the descriptor been closed, this would take its number
    const other = openSync('/dev/null', 'r');
    const again = await lock(p, { keepOpen: true });
    expect(again.fd).toBe(fd); // the same open file, kept for reuse
    again.release();
    closeSync(other);
    holder.child.kill('SIGKILL');
  });

  it('flock alone does not exclude POSIX lockers on Linux (why auto holds both)', async () => {
    if (process.platform !== 'linux') return;
    const p = join(tempDir(), 'i.lock');
    const l = await lock(p, { primitive: 'flock' });
    expect((await run('python3', ['-c', pyLockf(p, false)])).code).toBe(0);
    l.release();
  });
});

describe('other processes', () => {
  it('a lock held in another process excludes; SIGKILL frees it at once', async () => {
    const p = join(tempDir(), 'k.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    expect(tryLock(p)).toBeNull();
    const waiting = lock(p);
    await untilBlocked(p);
    const t0 = performance.now();
    h.child.kill('SIGKILL');
    const l = await waiting;
    // no staleness timeout: the kernel released the lock when the process died
    expect(since(t0)).toBeLessThan(2000);
    l.release();
  });

  it('a child spawned while the lock is held does not inherit it', async () => {
    const p = join(tempDir(), 'c.lock');
    const l = await lock(p);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    await sleep(50);
    l.release();
    expect((await run('flock', ['-n', p, 'true'])).code).toBe(0);
    child.kill('SIGKILL');
  });

  it('process.exit() is not blocked by pending waits', async () => {
    const p = join(tempDir(), 'e.lock');
    const l = await lock(p);
    const h = startNode('wait-then-exit.cjs', [p, 'exit']);
    await h.waitFor('waiting');
    const t0 = performance.now();
    const { code } = await h.exited;
    expect(code).toBe(7);
    expect(since(t0)).toBeLessThan(5000);
    expect(h.lines).not.toContain('granted');
    l.release();
  });

  it('a pending wait keeps the process alive until granted', async () => {
    const p = join(tempDir(), 'n.lock');
    const l = await lock(p);
    const h = startNode('wait-then-exit.cjs', [p, 'natural']);
    await h.waitFor('waiting');
    await sleep(300);
    expect(h.child.exitCode).toBeNull();
    l.release();
    const { code } = await h.exited;
    expect(code).toBe(0);
    expect(h.lines.filter((x) => x === 'granted')).toHaveLength(4);
  });
});

describe('the event loop and the libuv threadpool stay free', () => {
  it('eight pending waits do not delay an unrelated readFile', async () => {
    const d = tempDir();
    const p = join(d, 'busy.lock');
    const data = join(d, 'data.txt');
    await writeFile(data, 'hello');
    const l = await lock(p);
    const ac = new AbortController();
    const waits = Array.from({ length: 8 }, () => lock(p, { signal: ac.signal }).catch((e) => e));
    await sleep(20);
    // With waits parked in the 4-thread libuv pool this read could not run
    // until the lock was released; here the lock stays held throughout.
    const t0 = performance.now();
    const result = await Promise.race([readFile(data, 'utf8'), sleep(5000).then(() => 'timed out')]);
    expect(result).toBe('hello');
    expect(since(t0)).toBeLessThan(1000);
    ac.abort();
    const errs = await Promise.all(waits);
    expect(errs.every((e) => e.code === 'ABORT_ERR')).toBe(true);
    l.release();
  });
});

describe('the unlink race under load', () => {
  it('processes looping lock({unlinkOnRelease}) → increment → release lose no update', async () => {
    const d = tempDir();
    const lockPath = join(d, 'counter.lock');
    const counter = join(d, 'counter');
    const P = 4;
    const N = 150;
    const kids = Array.from({ length: P }, () =>
      startNode('counter.cjs', [lockPath, counter, String(N), JSON.stringify({ unlinkOnRelease: true })]),
    );
    const results = await Promise.all(kids.map((k) => k.exited));
    expect(results.every((r) => r.code === 0)).toBe(true);
    expect(Number(readFileSync(counter, 'utf8'))).toBe(P * N);
  });
});
