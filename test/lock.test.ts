import { afterAll, describe, expect, it } from 'vitest';
import {
  existsSync,
  lstatSync,
  symlinkSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
  mkdirSync,
  chmodSync,
  statSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { hostname } from 'node:os';
import {
  closeIdleDescriptors,
  inspect,
  KEEP_OPEN_IDLE_MS,
  lock,
  tryLock,
  lockSync,
  lockSync as lockNow,
  withLock,
  primitives,
  type LockOptions,
} from '../src/index.js';
import { binding } from '../src/binding.js';
import { cleanupTempDirs, distForOtherUsers, since, sleep, startNode, tempDir, untilBlocked } from './helpers.js';

afterAll(cleanupTempDirs);

const PRIMS = ['auto', 'flock', 'ofd', 'posix'] as const;

describe.each(PRIMS)('primitive %s: exclusion inside one process', (primitive) => {
  const opts = { primitive } as const;

  it('a second handle in the same thread is excluded', async () => {
    const p = join(tempDir(), 'a.lock');
    const l = await lock(p, opts);
    expect(tryLock(p, opts)).toBeNull();
    expect(tryLock(p, { ...opts, mode: 'shared' })).toBeNull();
    l.release();
    const again = tryLock(p, opts);
    expect(again).not.toBeNull();
    again!.release();
  });

  it('shared locks coexist and exclude an exclusive one', () => {
    const p = join(tempDir(), 'b.lock');
    const s1 = tryLock(p, { ...opts, mode: 'shared' })!;
    const s2 = tryLock(p, { ...opts, mode: 'shared' })!;
    expect(s1).not.toBeNull();
    expect(s2).not.toBeNull();
    expect(tryLock(p, opts)).toBeNull();
    s1.release();
    expect(tryLock(p, opts)).toBeNull(); // s2 still holds
    s2.release();
    const x = tryLock(p, opts);
    expect(x?.mode).toBe('exclusive');
    x!.release();
  });

  it('closing another descriptor of the file does not drop the lock', async () => {
    const p = join(tempDir(), 'c.lock');
    const l = await lock(p, opts);
    // a failed tryLock opens and closes a second descriptor; so does readFile
    expect(tryLock(p, opts)).toBeNull();
    await readFile(p);
    expect(tryLock(p, opts)).toBeNull();
    l.release();
  });
});

describe('lock API', () => {
  it('reports the primitive it used', async () => {
    const p = join(tempDir(), 'x.lock');
    const l = await lock(p);
    expect(l.primitive).toBe(primitives().auto);
    if (process.platform === 'linux') expect(l.primitive).toBe('flock+ofd');
    expect(l.mode).toBe('exclusive');
    expect(l.path).toBe(p);
    expect(typeof l.fd).toBe('number');
    l.release();
  });

  it('release is idempotent and disposal releases', async () => {
    const p = join(tempDir(), 'r.lock');
    const l = await lock(p);
    l.release();
    l.release();
    expect(l.released).toBe(true);
    {
      using held = lockSync(p);
      expect(tryLock(p)).toBeNull();
      expect(held.released).toBe(false);
    }
    const after = tryLock(p);
    expect(after).not.toBeNull();
    after!.release();
    {
      await using held2 = await lock(p);
      expect(held2.mode).toBe('exclusive');
      expect(tryLock(p)).toBeNull();
    }
    tryLock(p)!.release();
  });

  it('withLock releases after success and after a throw', async () => {
    const p = join(tempDir(), 'w.lock');
    const v = await withLock(p, (l) => {
      expect(tryLock(p)).toBeNull();
      return l.mode;
    });
    expect(v).toBe('exclusive');
    await expect(withLock(p, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    tryLock(p)!.release();
  });

  it('timeout 0 is a single try that throws ELOCKED naming the holder', async () => {
    const p = join(tempDir(), 't.lock');
    const l = await lock(p);
    const err = await lock(p, { timeout: 0 }).catch((e) => e);
    expect(err.code).toBe('ELOCKED');
    expect(err.path).toBe(p);
    expect(err.message).toContain(`held by this process (pid ${process.pid})`);
    expect(() => lockSync(p, { timeout: 0 })).toThrow(expect.objectContaining({ code: 'ELOCKED' }));
    l.release();
  });

  it('waiting on yourself: a synchronous wait that could never end is EDEADLK at once; an async one says "this process"', async () => {
    const p = join(tempDir(), 'self.lock');
    const l = lockSync(p);
    for (const timeout of [undefined, 60_000]) {
      const t0 = performance.now();
      expect(() => lockSync(p, timeout === undefined ? {} : { timeout })).toThrow(
        expect.objectContaining({
          code: 'EDEADLK',
          path: p,
          message: expect.stringContaining('held by this thread itself'),
        }),
      );
      expect(since(t0)).toBeLessThan(1000);
    }
    const err = await lock(p, { timeout: 50 }).catch((e) => e);
    expect(err.code).toBe('ETIMEDOUT');
    expect(err.message).toContain('held by this process');
    l.release();
    lockSync(p).release(); // free again once released
  });

  it("a lock handed over by a kernel wait is this thread's: EDEADLK for lockSync while held, free once released", async () => {
    const p = join(tempDir(), 'handed.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    const waiting = lock(p);
    while ((await inspect(p)).waiters < 1) await sleep(5); // blocked in the kernel now
    h.send('release');
    const l = await waiting;
    expect(() => lockSync(p, { timeout: 2000 })).toThrow(expect.objectContaining({ code: 'EDEADLK' }));
    l.release();
    lockSync(p, { timeout: 2000 }).release();
    h.send('exit');
    await h.exited;
  });

  it('a timed-out wait rejects with ETIMEDOUT promptly and holds nothing', async () => {
    const p = join(tempDir(), 'to.lock');
    const l = await lock(p);
    const t0 = performance.now();
    const err = await lock(p, { timeout: 100 }).catch((e) => e);
    expect(err.code).toBe('ETIMEDOUT');
    expect(since(t0)).toBeGreaterThanOrEqual(95);
    expect(since(t0)).toBeLessThan(1000);
    l.release();
    tryLock(p)!.release();
  });

  it('lockSync honours its timeout (holder in another process)', async () => {
    const p = join(tempDir(), 'ts.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    const t0 = performance.now();
    expect(() => lockSync(p, { timeout: 80 })).toThrow(expect.objectContaining({ code: 'ETIMEDOUT' }));
    expect(since(t0)).toBeGreaterThanOrEqual(75);
    expect(since(t0)).toBeLessThan(1000);
    h.child.kill();
    await h.exited;
  });

  it('an AbortSignal ends a wait with AbortError, promptly', async () => {
    const p = join(tempDir(), 'ab.lock');
    const l = await lock(p);
    const ac = new AbortController();
    const t0 = performance.now();
    setTimeout(() => ac.abort(new Error('stop')), 50);
    const err = await lock(p, { signal: ac.signal }).catch((e) => e);
    expect(err.code).toBe('ABORT_ERR');
    expect(err.name).toBe('AbortError');
    expect(since(t0)).toBeLessThan(1000);
    // an already aborted signal rejects before touching the disk
    const q = join(tempDir(), 'never.lock');
    const err2 = await lock(q, { signal: AbortSignal.abort() }).catch((e) => e);
    expect(err2.code).toBe('ABORT_ERR');
    expect(existsSync(q)).toBe(false);
    l.release();
    tryLock(p)!.release();
  });

  it('a waiter gets the lock as soon as the holder releases', async () => {
    const p = join(tempDir(), 'h.lock');
    const l = await lock(p);
    let got = false;
    const pending = lock(p).then((x) => {
      got = true;
      return x;
    });
    if (process.platform === 'linux') await untilBlocked(p);
    else await sleep(50);
    expect(got).toBe(false);
    l.release();
    const l2 = await pending;
    expect(l2.mode).toBe('exclusive');
    l2.release();
  });

  it('a wait cancelled at the instant it is granted never leaves a lock held', async () => {
    const p = join(tempDir(), 'race.lock');
    for (let i = 0; i < 150; i++) {
      const l = await lock(p);
      const ac = new AbortController();
      const pending = lock(p, { signal: ac.signal }).then(
        (x) => x,
        () => null,
      );
      // release and abort at (nearly) the same instant, in varying order
      await new Promise((r) => setImmediate(r));
      if (i % 2) {
        l.release();
        ac.abort();
      } else {
        ac.abort();
        l.release();
      }
      const got = await pending;
      if (got) got.release();
      const probe = tryLock(p);
      expect(probe, `iteration ${i}: the lock is still held by a cancelled wait`).not.toBeNull();
      probe!.release();
    }
  });

  it('create: false on a missing file is ENOENT and creates nothing', async () => {
    const p = join(tempDir(), 'missing.lock');
    const err = await lock(p, { create: false }).catch((e) => e);
    expect(err.code).toBe('ENOENT');
    expect(err.path).toBe(p);
    expect(err.syscall).toBe('open');
    expect(existsSync(p)).toBe(false);
  });

  it('errno errors carry code, syscall and path', async () => {
    const d = tempDir();
    const missingDir = join(d, 'no', 'such', 'dir', 'x.lock');
    await expect(lock(missingDir)).rejects.toMatchObject({ code: 'ENOENT', syscall: 'open', path: missingDir });
    mkdirSync(join(d, 'adir'));
    // OFD cannot lock a directory exclusively (read-only descriptor): EBADF with the path
    await expect(lock(join(d, 'adir'), { primitive: 'ofd' })).rejects.toMatchObject({
      code: 'EBADF',
      path: join(d, 'adir'),
    });
    writeFileSync(join(d, 'file'), '');
    await expect(lock(join(d, 'file', 'x.lock'))).rejects.toMatchObject({ code: 'ENOTDIR' });
  });

  it.runIf(process.platform === 'linux')(
    'locks a directory as flock(1) does: flock on a directory descriptor',
    async () => {
      const dir = join(tempDir(), 'adir');
      mkdirSync(dir);
      const l = await lock(dir);
      // OFD cannot lock a directory exclusively: flock exclusive, OFD shared (where auto takes OFD too)
      expect(l.primitive).toBe(primitives().auto === 'flock+ofd' ? 'flock+ofd-readonly' : 'flock');
      expect(
        execFileSync('sh', ['-c', `flock -n "${dir}" true; echo $?`])
          .toString()
          .trim(),
      ).toBe('1');
      expect(tryLock(dir)).toBeNull();
      l.release();
      expect(
        execFileSync('sh', ['-c', `flock -n "${dir}" true; echo $?`])
          .toString()
          .trim(),
      ).toBe('0');
      const s = await lock(dir, { mode: 'shared' });
      expect(s.primitive).toBe('flock+ofd'); // shared locks need no write access
      s.release();
    },
  );

  it.runIf(process.platform === 'linux')(
    'an exclusive lock on a file one may read but not write: flock exclusive (as flock(1) does) plus a shared OFD lock; OFD alone says EBADF',
    async () => {
      const d = tempDir();
      chmodSync(d, 0o755);
      const p = join(d, 'readonly.lock');
      writeFileSync(p, 'script');
      chmodSync(p, 0o444);
      const script = `
      const f = require(${JSON.stringify(process.getuid?.() === 0 ? distForOtherUsers() : resolve(__dirname, '../dist/cjs/index.js'))});
      (async () => {
        const l = await f.lock(${JSON.stringify(p)});
        const out = { primitive: l.primitive };
        out.flock = require('node:child_process').spawnSync('flock', ['-n', ${JSON.stringify(p)}, 'true']).status;
        l.release();
        out.ofd = await f.lock(${JSON.stringify(p)}, { primitive: 'ofd' }).then(() => 'granted', (e) => e.code + ' ' + /read-only/.test(e.message));
        console.log(JSON.stringify(out));
      })();`;
      // root may open anything for writing: run as another user when we are root
      const cmd =
        process.getuid?.() === 0
          ? ['setpriv', '--reuid=4242', '--regid=4242', '--clear-groups', process.execPath]
          : [process.execPath];
      const out = JSON.parse(execFileSync(cmd[0]!, [...cmd.slice(1), '-e', script]).toString());
      expect(out).toEqual({ primitive: 'flock+ofd-readonly', flock: 1, ofd: 'EBADF true' });
      expect(readFileSync(p, 'utf8')).toBe('script');
    },
  );

  it('rejects bad arguments and unknown options without touching the disk', async () => {
    const d = tempDir();
    const p = join(d, 'bad.lock');
    const cases: Array<[unknown, string]> = [
      [{ mode: 'exclusiv' }, 'ERR_INVALID_ARG_VALUE'],
      [{ timeout: -1 }, 'ERR_INVALID_ARG_VALUE'],
      [{ timeout: '10' }, 'ERR_INVALID_ARG_TYPE'],
      [{ signal: {} }, 'ERR_INVALID_ARG_TYPE'],
      [{ primitive: 'fcntl' }, 'ERR_INVALID_ARG_VALUE'],
      [{ range: { offset: -1, length: 1 } }, 'ERR_INVALID_ARG_VALUE'],
      [{ range: { offset: 0, length: 1, extra: 1 } }, 'ERR_INVALID_ARG_VALUE'],
      [{ primitive: 'flock', range: { offset: 0, length: 1 } }, 'ERR_INVALID_ARG_VALUE'],
      [{ mode: 'shared', unlinkOnRelease: true }, 'ERR_INVALID_ARG_VALUE'],
      [{ create: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
      [{ timout: 5 }, 'ERR_INVALID_ARG_VALUE'],
      [null, 'ERR_INVALID_ARG_TYPE'],
      [{ primitive: 'windows' }, 'ENOTSUP'],
    ];
    for (const [options, code] of cases) {
      await expect(lock(p, options as LockOptions), JSON.stringify(options)).rejects.toMatchObject({ code });
      // lockSync cannot be aborted: `signal` is an unknown option there
      const syncCode = options && typeof options === 'object' && 'signal' in options ? 'ERR_INVALID_ARG_VALUE' : code;
      expect(() => lockSync(p, options as LockOptions)).toThrow(expect.objectContaining({ code: syncCode }));
    }
    await expect(lock(42 as unknown as string)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(lock('')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    expect(() => tryLock(p, { timeout: 5 } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }),
    );
    await expect(withLock(p, 'nope' as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    expect(existsSync(p)).toBe(false);
  });

  it('a shared lock can be taken on a read-only file', () => {
    if (process.getuid?.() === 0) return; // root can write anything: nothing to show
    const p = join(tempDir(), 'ro.lock');
    writeFileSync(p, '');
    chmodSync(p, 0o444);
    const s = tryLock(p, { mode: 'shared' });
    expect(s).not.toBeNull();
    s!.release();
  });
});

describe('options passed again and again (parsed once, still checked every call)', () => {
  it('a repeated literal keeps its meaning, and a changed, unknown or misplaced option is still refused', async () => {
    const p = join(tempDir(), 'opts.lock');
    for (let i = 0; i < 3; i++) {
      const a = lockSync(p, { mode: 'shared' });
      const b = lockSync(p, { mode: 'shared' });
      expect([a.mode, b.mode]).toEqual(['shared', 'shared']);
      a.release();
      b.release();
    }
    const ex = lockSync(p, { mode: 'exclusive' });
    expect(ex.mode).toBe('exclusive'); // not the cached 'shared'
    ex.release();
    expect(() => lockSync(p, { mode: 'bogus' as 'shared' })).toThrow(/options\.mode/);
    expect(() => lockSync(p, { mode: 'shared', bogus: 1 } as LockOptions)).toThrow(/options\.bogus/);
    // lock() knows `timeout`; tryLock does not, whatever lock() parsed before
    (await lock(p, { timeout: 50 })).release();
    expect(() => tryLock(p, { timeout: 50 } as LockOptions)).toThrow(/options\.timeout/);
    // objects among the values are read afresh each time
    const ac = new AbortController();
    const opts = { signal: ac.signal, timeout: 1000 };
    const held = lockSync(p);
    const first = lock(p, opts);
    ac.abort();
    await expect(first).rejects.toMatchObject({ code: 'ABORT_ERR' });
    await expect(lock(p, { signal: new AbortController().signal, timeout: 50 })).rejects.toMatchObject({
      code: 'ETIMEDOUT',
    });
    held.release();
  });
});

describe('keepOpen: a released descriptor kept for the next lock of the path', () => {
  const fds = () => readdirSync('/proc/self/fd').length;
  it.runIf(process.platform === 'linux')('off by default: release() closes the descriptor at once', async () => {
    const p = join(tempDir(), 'closed.lock');
    const open = () =>
      readdirSync('/proc/self/fd').filter((f) => {
        try {
          return readlinkSync(`/proc/self/fd/${f}`) === p;
        } catch {
          return false;
        }
      }).length;
    lockSync(p).release();
    (await lock(p)).release();
    expect(open()).toBe(0); // the code before this change kept one open for 500 ms
  });

  it.runIf(process.platform === 'linux')(
    'is reused, closed by closeIdleDescriptors or after the idle time, and never with keepOpen: false',
    async () => {
      const p = join(tempDir(), 'k.lock');
      closeIdleDescriptors();
      const before = fds();
      const lockSync = (path: string, o: { keepOpen?: boolean } = {}) => lockNow(path, { keepOpen: true, ...o });
      lockSync(p).release();
      expect(fds()).toBe(before + 1); // kept, unlocked
      expect(
        execFileSync('sh', ['-c', `flock -n "${p}" true; echo $?`])
          .toString()
          .trim(),
      ).toBe('0'); // and not locked
      for (let i = 0; i < 100; i++) lockSync(p).release();
      expect(fds()).toBe(before + 1); // the same one, reused
      closeIdleDescriptors();
      expect(fds()).toBe(before);
      lockSync(p, { keepOpen: false }).release();
      expect(fds()).toBe(before);
      lockSync(p).release();
      expect(fds()).toBe(before + 1);
      const t0 = performance.now();
      while (fds() !== before && since(t0) < 20 * KEEP_OPEN_IDLE_MS) await sleep(50);
      expect(fds()).toBe(before); // swept once idle
      expect(since(t0)).toBeGreaterThanOrEqual(KEEP_OPEN_IDLE_MS * 0.9); // and not before
    },
  );

  it.runIf(process.platform === 'linux')(
    'a file replaced or deleted meanwhile is never locked through the kept descriptor',
    () => {
      const lockSync = (path: string) => lockNow(path, { keepOpen: true });
      const d = tempDir();
      const p = join(d, 'r.lock');
      lockSync(p).release(); // kept
      writeFileSync(join(d, 'new'), '');
      renameSync(join(d, 'new'), p); // replaced
      const l = lockSync(p);
      expect(
        execFileSync('sh', ['-c', `flock -n "${p}" true; echo $?`])
          .toString()
          .trim(),
      ).toBe('1'); // the new file is the one held
      l.release();
      rmSync(p);
      const l2 = lockSync(p); // deleted: created afresh
      expect(existsSync(p)).toBe(true);
      expect(
        execFileSync('sh', ['-c', `flock -n "${p}" true; echo $?`])
          .toString()
          .trim(),
      ).toBe('1');
      l2.release();
      closeIdleDescriptors();
    },
  );
});

describe('holder records', () => {
  it('record: true writes the holder into a sidecar (never the lock file) and removes it on release', async () => {
    const p = join(tempDir(), 'rec.lock');
    const l = await lock(p, { record: true });
    expect(readFileSync(p, 'utf8')).toBe('');
    const rec = JSON.parse(readFileSync(`${p}.fslock-holder`, 'utf8'));
    expect(rec).toMatchObject({ fslock: 1, pid: process.pid });
    expect(rec.argv).toBeUndefined(); // no command line unless given
    expect(new Date(rec.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    l.release();
    expect(existsSync(`${p}.fslock-holder`)).toBe(false);
  });

  it('by default nothing is written; timeouts still name the holder (the kernel lock table)', async () => {
    const p = join(tempDir(), 'norec.lock');
    const l = await lock(p);
    expect(readFileSync(p, 'utf8')).toBe('');
    expect(existsSync(`${p}.fslock-holder`)).toBe(false);
    const err = await lock(p, { timeout: 0 }).catch((e) => e);
    expect(err.message).toContain(`held by this process (pid ${process.pid})`);
    l.release();
    const s = await lock(p, { mode: 'shared', record: true });
    expect(existsSync(`${p}.fslock-holder`)).toBe(false); // shared holders never record
    s.release();
  });

  it('record { argv } names the given command', async () => {
    const p = join(tempDir(), 'argv.lock');
    const l = await lock(p, { record: { argv: ['./x', 'tidy'] } });
    const info = await inspect(p);
    expect(info.holder).toMatchObject({ pid: process.pid, argv: ['./x', 'tidy'] });
    expect(info.holderSource).toBe('record');
    l.release();
  });

  it('ignores a record left by a holder that died, or one that names another file', async () => {
    const p = join(tempDir(), 'stale.lock');
    const l = await lock(p);
    const id = `${statSync(p, { bigint: true }).dev}:${statSync(p, { bigint: true }).ino}`;
    const ghost = {
      fslock: 1,
      pid: 2 ** 22 + 12345,
      hostname: hostname(),
      startedAt: new Date().toISOString(),
      file: id,
      argv: ['ghost'],
    };
    writeFileSync(`${p}.fslock-holder`, `${JSON.stringify(ghost)}\n`);
    let err = await lock(p, { timeout: 0 }).catch((e) => e);
    expect(err.message).not.toContain('ghost');
    writeFileSync(`${p}.fslock-holder`, `${JSON.stringify({ ...ghost, pid: process.pid, file: '1:2' })}\n`);
    err = await lock(p, { timeout: 0 }).catch((e) => e);
    expect(err.message).not.toContain('ghost');
    l.release();
    const r = await lock(p, { record: true }); // a recorder replaces the stale record
    expect(JSON.parse(readFileSync(`${p}.fslock-holder`, 'utf8')).pid).toBe(process.pid);
    r.release();
    expect(existsSync(`${p}.fslock-holder`)).toBe(false);
  });

  it('never writes into a file that holds other data', async () => {
    const p = join(tempDir(), 'data.json');
    writeFileSync(p, '{"important":true}');
    const l = await lock(p, { record: true });
    expect(readFileSync(p, 'utf8')).toBe('{"important":true}');
    l.release();
    expect(readFileSync(p, 'utf8')).toBe('{"important":true}');
  });

  it("a file of the user's that happens to have the sidecar's name is never replaced", async () => {
    const p = join(tempDir(), 'mine.txt');
    writeFileSync(`${p}.fslock-holder`, 'my own notes');
    const l = await lock(p, { record: true });
    writeFileSync(p, 'user data');
    l.release();
    expect(readFileSync(p, 'utf8')).toBe('user data');
    expect(readFileSync(`${p}.fslock-holder`, 'utf8')).toBe('my own notes');
  });

  it('a symlink at the sidecar name is never replaced either', async () => {
    const d = tempDir();
    const p = join(d, 'mine.lock');
    writeFileSync(join(d, 'notes'), 'kept');
    symlinkSync(join(d, 'notes'), `${p}.fslock-holder`);
    const l = await lock(p, { record: true });
    l.release();
    expect(lstatSync(`${p}.fslock-holder`).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(d, 'notes'), 'utf8')).toBe('kept');
  });
});

describe('unlinkOnRelease', () => {
  it('deletes the file while holding it, then releases', async () => {
    const p = join(tempDir(), 'u.lock');
    const l = await lock(p, { unlinkOnRelease: true });
    expect(existsSync(p)).toBe(true);
    l.release();
    expect(existsSync(p)).toBe(false);
  });

  it('a waiter whose file was deleted under it retries on the new file', async () => {
    const p = join(tempDir(), 'u2.lock');
    const l = await lock(p, { unlinkOnRelease: true });
    const waiting = lock(p);
    await untilBlocked(p);
    l.release(); // deletes p; the waiter was granted the orphaned inode
    const w = await waiting;
    // the waiter must hold the file that is at `p` now, so a newcomer is excluded
    expect(existsSync(p)).toBe(true);
    expect(binding.identity(w.fd)).toBe(binding.pathIdentity(p));
    expect(tryLock(p)).toBeNull();
    w.release();
  });

  it('does not delete a file that replaced ours', async () => {
    const p = join(tempDir(), 'u3.lock');
    const l = await lock(p, { unlinkOnRelease: true });
    const { renameSync } = await import('node:fs');
    renameSync(p, `${p}.old`);
    writeFileSync(p, 'someone else');
    l.release();
    expect(readFileSync(p, 'utf8')).toBe('someone else');
  });

  it('leaves its own file in place once someone wrote data into it', async () => {
    const p = join(tempDir(), 'u4.lock');
    const l = await lock(p, { unlinkOnRelease: true });
    writeFileSync(p, 'not a bare lock file any more');
    l.release();
    expect(readFileSync(p, 'utf8')).toBe('not a bare lock file any more');
    expect(readdirSync(dirname(p))).toEqual(['u4.lock']); // put back, nothing left aside
  });

  it('never deletes a symlink put in its place, even one to the very file it holds', async () => {
    const p = join(tempDir(), 'u5.lock');
    const l = await lock(p, { unlinkOnRelease: true });
    renameSync(p, `${p}.real`);
    symlinkSync(`${p}.real`, p); // following it would find the held file
    l.release();
    expect(lstatSync(p).isSymbolicLink()).toBe(true);
    expect(existsSync(`${p}.real`)).toBe(true);
    expect(readdirSync(dirname(p)).sort()).toEqual(['u5.lock', 'u5.lock.real']);
  });

  it('releases quietly when its file was deleted meanwhile', async () => {
    const p = join(tempDir(), 'u6.lock');
    const l = await lock(p, { unlinkOnRelease: true });
    rmSync(p);
    l.release();
    expect(readdirSync(dirname(p))).toEqual([]);
    expect(l.released).toBe(true);
  });
});

describe('byte ranges', () => {
  it.each(['ofd', 'posix'] as const)('%s: disjoint ranges coexist, overlapping ones conflict', (primitive) => {
    const p = join(tempDir(), `range-${primitive}.lock`);
    const a = tryLock(p, { primitive, range: { offset: 0, length: 10 } })!;
    expect(a).not.toBeNull();
    const b = tryLock(p, { primitive, range: { offset: 10, length: 10 } });
    expect(b).not.toBeNull();
    expect(tryLock(p, { primitive, range: { offset: 5, length: 10 } })).toBeNull();
    const s = tryLock(p, { primitive, range: { offset: 30, length: 0 }, mode: 'shared' });
    expect(s).not.toBeNull();
    expect(tryLock(p, { primitive, range: { offset: 100, length: 1 } })).toBeNull();
    a.release();
    b!.release();
    s!.release();
    const whole = tryLock(p, { primitive, range: { offset: 0, length: 0 } });
    expect(whole).not.toBeNull();
    whole!.release();
  });

  it('posix registry: releasing one shared holder keeps the other overlapping one', () => {
    const p = join(tempDir(), 'overlap.lock');
    const a = tryLock(p, { primitive: 'posix', mode: 'shared', range: { offset: 0, length: 10 } })!;
    const b = tryLock(p, { primitive: 'posix', mode: 'shared', range: { offset: 5, length: 10 } })!;
    a.release();
    // [5,15) must still be read-locked at the kernel level: an OFD writer (which
    // sees POSIX locks) is refused there but not on [0,5)
    expect(tryLock(p, { primitive: 'ofd', range: { offset: 6, length: 2 } })).toBeNull();
    const free = tryLock(p, { primitive: 'ofd', range: { offset: 0, length: 5 } });
    expect(free).not.toBeNull();
    free!.release();
    b.release();
  });
});

describe('downgrade and upgrade', () => {
  it.each(['auto', 'flock', 'ofd', 'posix'] as const)(
    '%s: downgrade lets other shared holders in',
    async (primitive) => {
      const p = join(tempDir(), `dg-${primitive}.lock`);
      const l = await lock(p, { primitive });
      expect(tryLock(p, { primitive, mode: 'shared' })).toBeNull();
      l.downgrade();
      expect(l.mode).toBe('shared');
      const other = tryLock(p, { primitive, mode: 'shared' });
      expect(other).not.toBeNull();
      expect(tryLock(p, { primitive })).toBeNull();
      other!.release();
      l.release();
    },
  );

  it.each(['ofd', 'posix'] as const)('%s: a refused upgrade keeps the shared lock (atomic)', async (primitive) => {
    const p = join(tempDir(), `ug-${primitive}.lock`);
    const a = await lock(p, { primitive, mode: 'shared' });
    const b = await lock(p, { primitive, mode: 'shared' });
    await expect(a.upgrade({ timeout: 0 })).rejects.toMatchObject({ code: 'ELOCKED' });
    expect(a.mode).toBe('shared');
    b.release();
    // a still holds its shared lock: an exclusive request is refused
    expect(tryLock(p, { primitive })).toBeNull();
    await expect(a.upgrade({ timeout: 1000 })).resolves.toEqual({ atomic: true });
    expect(a.mode).toBe('exclusive');
    expect(tryLock(p, { primitive, mode: 'shared' })).toBeNull();
    a.release();
  });

  it('flock: an upgrade that has to wait says it was not atomic', async () => {
    const p = join(tempDir(), 'ug-flock.lock');
    const a = await lock(p, { primitive: 'flock', mode: 'shared' });
    const b = await lock(p, { primitive: 'flock', mode: 'shared' });
    const up = a.upgrade({ timeout: 5000 });
    await untilBlocked(p);
    b.release();
    await expect(up).resolves.toEqual({ atomic: false });
    expect(a.mode).toBe('exclusive');
    a.release();
  });

  it('flock: an uncontended upgrade is atomic', async () => {
    const p = join(tempDir(), 'ug-flock2.lock');
    const a = await lock(p, { primitive: 'flock', mode: 'shared' });
    await expect(a.upgrade()).resolves.toEqual({ atomic: true });
    a.release();
  });

  it('auto: upgrade waits for shared holders and excludes OFD/POSIX lockers throughout', async () => {
    const p = join(tempDir(), 'ug-auto.lock');
    const a = await lock(p, { mode: 'shared' });
    const b = await lock(p, { mode: 'shared' });
    const err = await a.upgrade({ timeout: 50 }).catch((e) => e);
    expect(err.code).toBe('ETIMEDOUT');
    expect(err.lost).toBeUndefined();
    expect(a.mode).toBe('shared');
    expect(a.released).toBe(false);
    // the shared lock survived the failed upgrade on both primitives
    expect(tryLock(p, { primitive: 'flock' })).toBeNull();
    expect(tryLock(p, { primitive: 'ofd' })).toBeNull();
    const up = a.upgrade();
    await untilBlocked(p);
    b.release();
    const r = await up;
    expect(a.mode).toBe('exclusive');
    // OFD converted in place while waiting; flock, free by then, was granted without being dropped
    expect(r).toEqual({ atomic: true });
    expect(tryLock(p, { mode: 'shared' })).toBeNull();
    a.release();
  });

  it('upgrade and downgrade of a released lock throw', async () => {
    const p = join(tempDir(), 'rel.lock');
    const a = await lock(p);
    a.release();
    expect(() => a.downgrade()).toThrow(expect.objectContaining({ code: 'ERR_LOCK_RELEASED' }));
    await expect(a.upgrade()).rejects.toMatchObject({ code: 'ERR_LOCK_RELEASED' });
  });
});
