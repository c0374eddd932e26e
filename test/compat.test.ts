import { afterAll, describe, expect, it } from 'vitest';
import {
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  rmSync,
  watch,
  writeFileSync,
  readdirSync,
} from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import pl from '../src/compat/proper-lockfile.js';
import * as lf from '../src/compat/lockfile.js';
import { placeLocked, retryBudgetMs, Spare, tempNameFor } from '../src/compat/shared.js';
import { execFileSync, spawn } from 'node:child_process';
import { inspect } from '../src/index.js';
import { waitUntilReleased } from '../src/lock.js';
import { lines } from '../src/lock/line.js';
import { attach, cleanupTempDirs, fdCount, sleep, startNode, tempDir, untilBlocked, type Holder } from './helpers.js';

afterAll(cleanupTempDirs);
const require_ = createRequire(__filename);
const retry = require_('retry') as { timeouts(o: object): number[] };

const hold = (impl: 'real' | 'fslock', api: 'proper-lockfile' | 'lockfile', file: string, opts: object = {}) =>
  startNode('compat-hold.cjs', [impl, api, file, JSON.stringify(opts)]);

function target(): string {
  const f = join(tempDir(), 'data.json');
  writeFileSync(f, '{}');
  return f;
}

describe('fslock/proper-lockfile: the proper-lockfile 4.x API', () => {
  it('lock → release; a second lock is ELOCKED; the .lock directory exists while held', async () => {
    const f = target();
    const release = await pl.lock(f);
    expect(existsSync(`${f}.lock`)).toBe(true);
    const err = await pl.lock(f).catch((e) => e);
    expect(err).toMatchObject({ code: 'ELOCKED', message: 'Lock file is already being held', file: f });
    expect(await pl.check(f)).toBe(true);
    await release();
    expect(existsSync(`${f}.lock`)).toBe(false);
    expect(await pl.check(f)).toBe(false);
    await expect(release()).rejects.toMatchObject({ code: 'ERELEASED', message: 'Lock is already released' });
  });

  it('unlock: ENOTACQUIRED when not held here; releases when held', async () => {
    const f = target();
    await expect(pl.unlock(f)).rejects.toMatchObject({
      code: 'ENOTACQUIRED',
      message: 'Lock is not acquired/owned by you',
    });
    await pl.lock(f);
    await pl.unlock(f);
    expect(existsSync(`${f}.lock`)).toBe(false);
    expect(() => pl.unlockSync(f)).toThrow(expect.objectContaining({ code: 'ENOTACQUIRED' }));
  });

  it('sync API: lockSync/unlockSync/checkSync, and ESYNC for retries', () => {
    const f = target();
    const release = pl.lockSync(f);
    expect(pl.checkSync(f)).toBe(true);
    expect(() => pl.lockSync(f)).toThrow(expect.objectContaining({ code: 'ELOCKED' }));
    release();
    expect(() => release()).toThrow(expect.objectContaining({ code: 'ERELEASED' }));
    expect(pl.checkSync(f)).toBe(false);
    expect(() => pl.lockSync(f, { retries: 2 })).toThrow(
      expect.objectContaining({ code: 'ESYNC', message: 'Cannot use retries with the sync api' }),
    );
    expect(() => pl.lockSync(f, { retries: { retries: 1 } })).toThrow(expect.objectContaining({ code: 'ESYNC' }));
    pl.lockSync(f, { retries: 0 });
    pl.unlockSync(f);
  });

  it('realpath (default true) needs the file; realpath: false and lockfilePath work without it', async () => {
    const d = tempDir();
    const missing = join(d, 'missing');
    await expect(pl.lock(missing)).rejects.toMatchObject({ code: 'ENOENT' });
    const r = await pl.lock(missing, { realpath: false });
    expect(existsSync(`${missing}.lock`)).toBe(true);
    await r();
    const custom = join(d, 'custom.lock');
    const r2 = await pl.lock(missing, { realpath: false, lockfilePath: custom });
    expect(existsSync(custom)).toBe(true);
    expect(await pl.check(missing, { realpath: false, lockfilePath: custom })).toBe(true);
    await r2();
    expect(existsSync(custom)).toBe(false);
  });

  it('stale is clamped to at least 2000 ms, as upstream; a stale upstream artefact is taken over', async () => {
    const f = target();
    const { mkdirSync, utimesSync } = await import('node:fs');
    mkdirSync(`${f}.lock`); // a real proper-lockfile holder's artefact (no marker)
    const ago = (ms: number) => new Date(Date.now() - ms);
    utimesSync(`${f}.lock`, ago(1500), ago(1500));
    await expect(pl.lock(f, { stale: 1 })).rejects.toMatchObject({ code: 'ELOCKED' }); // 1 → 2000: not stale yet
    expect(pl.checkSync(f, { stale: 1 })).toBe(true);
    utimesSync(`${f}.lock`, ago(2500), ago(2500));
    expect(pl.checkSync(f, { stale: 1 })).toBe(false);
    const release = await pl.lock(f, { stale: 1 });
    await release();
  });

  it('uses the fs option for the artefact, as upstream', async () => {
    const f = target();
    const nodeFs = await import('node:fs');
    const calls: string[] = [];
    const spy = new Proxy(nodeFs, {
      get(t, k: string) {
        const v = (t as unknown as Record<string, unknown>)[k];
        return typeof v === 'function'
          ? (...a: unknown[]) => (calls.push(k), (v as (...x: unknown[]) => unknown)(...a))
          : v;
      },
    });
    // the asynchronous API calls the callback methods, as upstream does
    const release = await pl.lock(f, { fs: spy as typeof nodeFs });
    await release();
    expect(calls).toEqual(['realpath', 'mkdir', 'stat', 'rmdir']);
    expect(await pl.check(f, { fs: spy as typeof nodeFs })).toBe(false);
    expect(calls.slice(4)).toEqual(['realpath', 'stat']);
    // and the synchronous API their *Sync twins
    calls.length = 0;
    const releaseSync = pl.lockSync(f, { fs: spy as typeof nodeFs });
    expect(pl.checkSync(f, { fs: spy as typeof nodeFs })).toBe(true);
    releaseSync();
    expect(calls).toEqual(['realpathSync', 'mkdirSync', 'statSync', 'realpathSync', 'statSync', 'rmdirSync']);
    // an injected failure comes back as is
    const failing = {
      ...nodeFs,
      mkdir: (_p: unknown, cb: (e: Error) => void) => cb(Object.assign(new Error('injected'), { code: 'EIO' })),
    };
    await expect(pl.lock(f, { fs: failing as unknown as typeof nodeFs })).rejects.toMatchObject({
      message: 'injected',
      code: 'EIO',
    });
  });

  it('retries is bounded by the time the retry schedule allows (computed as the retry package does)', () => {
    const sum = (o: object) => retry.timeouts(o).reduce((a, b) => a + b, 0);
    expect(retryBudgetMs({ retries: 3 })).toBe(sum({ retries: 3 }));
    expect(retryBudgetMs({ retries: 5, minTimeout: 10, maxTimeout: 50, factor: 3 })).toBe(
      sum({ retries: 5, minTimeout: 10, maxTimeout: 50, factor: 3 }),
    );
    expect(retryBudgetMs({ retries: 0 })).toBe(0);
    expect(retryBudgetMs({ retries: 10, maxRetryTime: 500 })).toBe(500);
    expect(retryBudgetMs({ forever: true })).toBe(Infinity);
  });

  it('a waiter with retries gets the lock the moment it is released, not at the next poll', async () => {
    const f = target();
    const h = hold('fslock', 'proper-lockfile', f);
    await h.waitFor('locked');
    const pending = pl.lock(f, { retries: { retries: 3, minTimeout: 10_000 } }); // upstream: next look in 10 s
    await sleep(200);
    h.send('release');
    const releasedAt = Number((await h.waitFor(/^released/)).split(' ')[1]);
    const release = await pending;
    expect(Date.now() - releasedAt).toBeLessThan(2000);
    await release();
    h.send('exit');
  });

  it('gives up with ELOCKED once the retry budget is spent', async () => {
    const f = target();
    const release = await pl.lock(f);
    const t0 = Date.now();
    const err = await pl.lock(f, { retries: { retries: 2, minTimeout: 100, factor: 1 } }).catch((e) => e);
    expect(err.code).toBe('ELOCKED');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    await release();
  });

  it('a holder killed with SIGKILL blocks nobody: the next lock succeeds at once', async () => {
    const f = target();
    const h = hold('fslock', 'proper-lockfile', f);
    await h.waitFor('locked');
    expect(await pl.check(f)).toBe(true);
    h.child.kill('SIGKILL');
    await h.exited;
    expect(existsSync(`${f}.lock`)).toBe(true); // the artefact is still there …
    expect(await pl.check(f)).toBe(false); // … but known dead
    const release = await pl.lock(f); // no retries, no staleness wait
    await release();
  });

  it('onCompromised is not called for a slow event loop, only when the artefact is really lost', async () => {
    const f = target();
    const calls: Error[] = [];
    const release = await pl.lock(f, { stale: 2000, update: 1000, onCompromised: (e) => calls.push(e) });
    const until = Date.now() + 2600; // block the event loop past the stale threshold
    while (Date.now() < until) {
      /* busy */
    }
    await sleep(1200);
    expect(calls).toEqual([]);
    rmSync(`${f}.lock`, { recursive: true, force: true }); // someone removes it behind our back
    for (let i = 0; i < 30 && calls.length === 0; i++) await sleep(100);
    expect(calls).toHaveLength(1);
    expect((calls[0] as Error & { code: string }).code).toBe('ECOMPROMISED');
    await expect(release()).rejects.toMatchObject({ code: 'ERELEASED' });
  });

  it('coexists with the real proper-lockfile, in both directions', async () => {
    const f = target();
    // fslock holds → the real package cannot acquire
    const release = await pl.lock(f);
    const real = hold('real', 'proper-lockfile', f);
    expect(await real.waitFor(/^error|^locked/)).toBe('error ELOCKED');
    await real.exited;
    await release();
    // the real package holds → fslock cannot acquire, then gets it when released
    const h = hold('real', 'proper-lockfile', f);
    await h.waitFor('locked');
    await expect(pl.lock(f)).rejects.toMatchObject({ code: 'ELOCKED' });
    expect(await pl.check(f)).toBe(true);
    const pending = pl.lock(f, { retries: { retries: 50, minTimeout: 100, factor: 1 } });
    await sleep(100);
    h.send('release');
    await h.waitFor(/^released/);
    const r2 = await pending;
    await r2();
    h.send('exit');
  });

  it('keeps the mtime fresh so a real proper-lockfile process never sees a live lock as stale', async () => {
    const f = target();
    const release = await pl.lock(f, { stale: 2000 });
    await sleep(3200);
    const real = hold('real', 'proper-lockfile', f, { stale: 2000 });
    expect(await real.waitFor(/^error|^locked/)).toBe('error ELOCKED');
    await real.exited;
    await release();
  });
});

describe('fslock/lockfile: the lockfile 1.x API', () => {
  const lockP = (p: string, o: lf.Options = {}) =>
    new Promise<void>((res, rej) => lf.lock(p, o, (e) => (e ? rej(e) : res())));
  const checkP = (p: string, o: lf.Options = {}) =>
    new Promise<boolean>((res, rej) => lf.check(p, o, (e, v) => (e ? rej(e) : res(v!))));

  it('lock/unlock/check with callbacks; the file exists exactly while held', async () => {
    const p = join(tempDir(), 'x.lock');
    await lockP(p);
    expect(existsSync(p)).toBe(true);
    expect(await checkP(p)).toBe(true);
    const err = await lockP(p).catch((e) => e);
    expect(err.code).toBe('EEXIST');
    await new Promise<void>((r) => lf.unlock(p, () => r()));
    expect(existsSync(p)).toBe(false);
    expect(await checkP(p)).toBe(false);
    // callback-less forms and the two-argument forms
    await new Promise<void>((r) => lf.lock(p, () => r()));
    lf.unlockSync(p);
  });

  it('sync API, and wait is refused synchronously as upstream does', () => {
    const p = join(tempDir(), 's.lock');
    lf.lockSync(p);
    expect(lf.checkSync(p)).toBe(true);
    expect(() => lf.lockSync(p)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(() => lf.lockSync(p, { wait: 10 })).toThrow('opts.wait not supported sync for obvious reasons');
    expect(() => lf.checkSync(p, { wait: 10 })).toThrow('opts.wait not supported sync for obvious reasons');
    lf.unlockSync(p);
    lf.unlockSync(p); // unlocking twice is a no-op
    expect(lf.checkSync(p)).toBe(false);
  });

  it('wait is a real wait: granted at release even with a huge pollPeriod', async () => {
    const p = join(tempDir(), 'w.lock');
    const h = hold('fslock', 'lockfile', p);
    await h.waitFor('locked');
    const pending = lockP(p, { wait: 20_000, pollPeriod: 10_000 });
    await sleep(200);
    h.send('release');
    const releasedAt = Number((await h.waitFor(/^released/)).split(' ')[1]);
    await pending;
    expect(Date.now() - releasedAt).toBeLessThan(2000);
    lf.unlockSync(p);
    h.send('exit');
  });

  it('a SIGKILLed holder blocks nobody; a stale foreign file is taken over only after stale', async () => {
    const p = join(tempDir(), 'k.lock');
    const h = hold('fslock', 'lockfile', p);
    await h.waitFor('locked');
    h.child.kill('SIGKILL');
    await h.exited;
    expect(existsSync(p)).toBe(true);
    expect(lf.checkSync(p)).toBe(false);
    await lockP(p); // at once
    lf.unlockSync(p);
    // a file written by the real package (no kernel lock): upstream's rule
    writeFileSync(p, '');
    await expect(lockP(p, { stale: 60_000 })).rejects.toMatchObject({ code: 'EEXIST' });
    await sleep(30);
    await lockP(p, { stale: 10 });
    lf.unlockSync(p);
  });

  it("unlock never deletes another live holder's lock file", async () => {
    const p = join(tempDir(), 'o.lock');
    const h = hold('fslock', 'lockfile', p);
    await h.waitFor('locked');
    lf.unlockSync(p);
    expect(existsSync(p)).toBe(true);
    expect(lf.checkSync(p)).toBe(true);
    h.send('exit');
    await h.exited;
  });

  it('retries and retryWait', async () => {
    const p = join(tempDir(), 'r.lock');
    lf.lockSync(p);
    const t0 = Date.now();
    await expect(lockP(p, { retries: 2, retryWait: 50 })).rejects.toMatchObject({ code: 'EEXIST' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(95);
    setTimeout(() => lf.unlockSync(p), 80);
    await lockP(p, { retries: 10, retryWait: 30 });
    lf.unlockSync(p);
  });

  it('coexists with the real lockfile package, in both directions', async () => {
    const p = join(tempDir(), 'c.lock');
    lf.lockSync(p);
    const real = hold('real', 'lockfile', p);
    expect(await real.waitFor(/^error|^locked/)).toBe('error EEXIST');
    await real.exited;
    lf.unlockSync(p);
    const h = hold('real', 'lockfile', p);
    await h.waitFor('locked');
    expect(lf.checkSync(p)).toBe(true);
    await expect(lockP(p)).rejects.toMatchObject({ code: 'EEXIST' });
    const pending = lockP(p, { wait: 10_000, pollPeriod: 20 });
    await sleep(50);
    h.send('release');
    await h.waitFor(/^released/);
    await pending;
    expect(readdirSync(join(p, '..'))).toEqual(['c.lock']); // no temporary files left
    expect(JSON.parse(readFileSync(p, 'utf8'))).toMatchObject({ pid: process.pid });
    lf.unlockSync(p);
    h.send('exit');
  });
});

describe("the drop-ins' wait for a holder to let go (waitUntilReleased)", () => {
  // flock(1) holds the lock on a fresh file; its command waits for a line on
  // stdin, then (optionally) deletes the file while the lock is still held, and exits.
  const heldMarker = async (deleteFirst: boolean) => {
    const p = join(tempDir(), 'marker');
    writeFileSync(p, '');
    const script = `echo ready; read x; ${deleteFirst ? 'rm -f "$0";' : ''} exit 0`;
    const h = attach(spawn('flock', ['-o', p, 'sh', '-c', script, p], { stdio: ['pipe', 'pipe', 'inherit'] }));
    await h.waitFor('ready');
    return { p, h };
  };
  // Starts the wait; lets the holder go once the wait blocks in the kernel
  // (/proc/locks lists it), not after a fixed sleep.
  const waitThenLetGo = async (p: string, h: Holder) => {
    const waiting = waitUntilReleased(p, 30_000);
    while ((await inspect(p)).waiters < 1) await sleep(5);
    h.send('go');
    return waiting;
  };

  it('a holder that deletes the file as it lets go ends the wait with null, creating nothing', async () => {
    if (process.platform !== 'linux') return;
    const { p, h } = await heldMarker(true);
    expect(await waitThenLetGo(p, h)).toBeNull();
    expect(existsSync(p)).toBe(false);
    // the descriptor it waited with is closed by the next turn of the event
    // loop (a leaked one would show as "<p> (deleted)")
    await new Promise((r) => setImmediate(r));
    const open = readdirSync('/proc/self/fd').map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(open.filter((l) => l.startsWith(p))).toEqual([]);
    await h.exited;
  });

  it('a holder that lets go and leaves the file hands over the lock on it', async () => {
    if (process.platform !== 'linux') return;
    const { p, h } = await heldMarker(false);
    const l = await waitThenLetGo(p, h);
    expect(l).not.toBeNull();
    expect((await inspect(p)).holder?.pid).toBe(process.pid);
    l!.release();
    expect((await inspect(p)).held).toBe(false);
    await h.exited;
  });

  it('times out (ETIMEDOUT) while held, and is ENOENT when there is nothing to wait for', async () => {
    if (process.platform !== 'linux') return;
    const { p, h } = await heldMarker(false);
    await expect(waitUntilReleased(p, 50)).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    h.send('go');
    await h.exited;
    await expect(waitUntilReleased(join(tempDir(), 'none'), 50)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe("a waiter's spare: its lock file is made while it waits, and linked when the holder lets go", () => {
  const linux = process.platform === 'linux';
  const lockP = (p: string, o: lf.Options = {}) =>
    new Promise<void>((res, rej) => lf.lock(p, o, (e) => (e ? rej(e) : res())));

  it.runIf(linux)(
    'lockfile: the placed file records when it was taken; a waiter that gives up leaves no file and no descriptor',
    async () => {
      const dir = tempDir();
      const p = join(dir, 'w.lock');
      const h = hold('fslock', 'lockfile', p);
      await h.waitFor('locked');
      const fds = fdCount();
      await expect(lockP(p, { wait: 300 })).rejects.toMatchObject({ code: 'EEXIST' });
      expect(fdCount()).toBe(fds); // the spare went with the wait
      expect(readdirSync(dir)).toEqual(['w.lock']);
      const pending = lockP(p, { wait: 20_000 });
      await untilBlocked(p);
      await sleep(50); // so that the time of the wait and the time of the grant differ
      // the grant comes after this (the holder lets go once told to, and may
      // still be finishing its release when this process holds the lock)
      const askedAt = Date.now();
      h.send('release');
      await pending;
      await new Promise((r) => setImmediate(r)); // the record is brought up to date once the caller is told
      const rec = JSON.parse(readFileSync(p, 'utf8')) as { pid: number; startedAt: string };
      expect(rec.pid).toBe(process.pid);
      expect(Date.parse(rec.startedAt)).toBeGreaterThanOrEqual(askedAt);
      await h.waitFor(/^released/);
      expect((await inspect(p)).holder?.pid).toBe(process.pid);
      lf.unlockSync(p);
      expect(readdirSync(dir)).toEqual([]); // the holder's file, moved aside, was deleted too
      expect(fdCount()).toBe(fds);
      h.send('exit');
    },
  );

  it.runIf(linux && process.getuid?.() === 0)(
    "a spare is made in the lock file's own directory, even when that is another filesystem's mount point",
    () => {
      const dir = join(tempDir(), 'mnt');
      mkdirSync(dir);
      execFileSync('mount', ['-t', 'tmpfs', 'none', dir]);
      try {
        const target = join(dir, 'x.lock');
        const spare = new Spare(false);
        spare.ready(target);
        const taken = spare.take(target); // made beside it: linked; made in the parent: EXDEV, no spare
        expect(taken).not.toBeNull();
        expect(existsSync(target)).toBe(true);
        taken!.release();
      } finally {
        execFileSync('umount', [dir]);
      }
    },
  );

  it.runIf(linux)('100 waits in one process hold at most 64 spares: descriptors stay bounded', async () => {
    const dir = tempDir();
    const p = join(dir, 'many.lock');
    const h = hold('fslock', 'lockfile', p);
    await h.waitFor('locked');
    const fds = fdCount();
    let done = 0;
    const waits = Array.from({ length: 100 }, () =>
      lockP(p, { wait: 60_000 }).then(() => {
        lf.unlockSync(p);
        done++;
      }),
    );
    await untilBlocked(p);
    // every wait has made its first try and waits: one in the kernel, the other 99 in this thread's line
    const inLine = () => [...lines.values()].reduce((n, l) => n + l.tickets.length, 0);
    while (inLine() < 99) await sleep(5);
    const added = fdCount() - fds;
    expect(added).toBeGreaterThanOrEqual(64); // the first 64 waits hold a spare each
    expect(added).toBeLessThanOrEqual(64 + 8); // the other 36 hold none
    h.send('release');
    await Promise.all(waits);
    expect(done).toBe(100);
    expect(readdirSync(dir)).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(fdCount()).toBe(fds);
    h.send('exit');
  });

  it.runIf(linux)(
    'proper-lockfile: the marker is placed from the spare; a waiter that gives up leaves nothing behind',
    async () => {
      const f = target();
      const dir = join(f, '..');
      const h = hold('fslock', 'proper-lockfile', f);
      await h.waitFor('locked');
      const fds = fdCount();
      const err = await pl.lock(f, { retries: { retries: 1, minTimeout: 200 } }).catch((e) => e);
      expect(err).toMatchObject({ code: 'ELOCKED' });
      expect(fdCount()).toBe(fds);
      expect(readdirSync(dir).sort()).toEqual(['data.json', 'data.json.lock']);
      const pending = pl.lock(f, { retries: { forever: true, minTimeout: 10_000 } });
      await untilBlocked(join(`${f}.lock`, '.fslock'));
      h.send('release');
      const release = await pending;
      const info = await inspect(f);
      expect(info.held).toBe(true);
      expect(info.holder?.pid).toBe(process.pid);
      await release();
      expect(readdirSync(dir)).toEqual(['data.json']);
      expect(fdCount()).toBe(fds);
      h.send('exit');
    },
  );
});

describe('both drop-ins: how a lock file comes into place', () => {
  const linux = process.platform === 'linux';
  const tmpNames = (names: string[]) => names.filter((n) => /\.fslock-.*\.tmp$/.test(n));

  it.runIf(linux)('no temporary file ever appears beside it: an anonymous file is linked into place', async () => {
    const dir = tempDir();
    const seen: string[] = [];
    const watcher = watch(dir, (_event, name) => {
      if (name) seen.push(name);
    });
    try {
      const h = startNode('place-loop.cjs', ['cycles', dir]);
      await h.waitFor(/^done \d+$/);
      await h.exited;
      await sleep(50); // let the last events arrive
    } finally {
      watcher.close();
    }
    // the watcher saw the lock files come and go, and nothing else that fslock named
    expect(seen).toContain('x.lock');
    expect(seen).toContain('data.lock');
    expect(tmpNames(seen)).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a temporary file renamed into place never replaces a file someone put there', () => {
    const dir = tempDir();
    const target = join(dir, '.fslock');
    writeFileSync(target, 'not ours');
    const tmp = tempNameFor(target);
    const created = { tmp, fd: openSync(tmp, 'wx') };
    expect(() => placeLocked(target, 'rename', false, created)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(readFileSync(target, 'utf8')).toBe('not ours');
    expect(readdirSync(dir)).toEqual(['.fslock']);
  });

  it('on a filesystem without anonymous files they use a temporary file and leave nothing', async () => {
    const dir = tempDir();
    const h = startNode('place-loop.cjs', ['no-anonymous', dir]);
    const done = await h.waitFor(/^(done|error) /);
    await h.exited;
    expect(done).toMatch(/^done \d+$/);
    // every lock was placed, each after its anonymous open was refused (where the OS has them)
    if (linux) expect(Number(done.split(' ')[1])).toBeGreaterThanOrEqual(60);
    expect(readdirSync(dir)).toEqual([]);
  });

  it.runIf(linux && process.getuid?.() === 0)(
    'without /proc (an anonymous file cannot be linked) they use a temporary file',
    async () => {
      const dir = tempDir();
      const script = join(__dirname, 'fixtures', 'place-loop.cjs');
      const child = spawn(
        'unshare',
        ['-m', 'sh', '-c', 'mount -t tmpfs none /proc && exec "$0" "$@"', process.execPath, script, 'cycles', dir],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      const h = attach(child);
      const done = await h.waitFor(/^(done|error) /);
      await h.exited;
      expect(done).toBe('done 60');
      expect(readdirSync(dir)).toEqual([]);
    },
  );

  it.runIf(linux)(
    'a holder killed while placing or removing one leaves no temporary file, and never blocks',
    async () => {
      const dir = tempDir();
      const p = join(dir, 'x.lock');
      for (let i = 0; i < 6; i++) {
        const h = startNode('place-loop.cjs', ['loop', dir]);
        await h.waitFor('looping');
        await sleep(20 + Math.random() * 60);
        h.child.kill('SIGKILL');
        await h.exited;
        expect(tmpNames(readdirSync(dir))).toEqual([]);
        // whatever it left is a dead holder's: taken over at once
        lf.lockSync(p);
        lf.unlockSync(p);
      }
    },
  );
});
