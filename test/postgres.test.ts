// fslock/postgres against a real PostgreSQL server (a throwaway cluster on a
// Unix socket, started here with Debian's postgresql programs; .ci/run
// installs them), with real processes where the behaviour is the point.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { connectLocks, lockKey, type Locks, type PgLock } from '../src/postgres/index.js';
import { attach, cleanupTempDirs, FIXTURES, tempDir } from './helpers.js';

const { startCluster } = createRequire(__filename)('../scripts/pg-cluster.js') as {
  startCluster(): {
    reason?: string;
    config: Record<string, unknown>;
    restart(): void;
    stop(): void;
  };
};

const cluster = process.platform === 'win32' ? null : startCluster();
const available = cluster !== null && cluster.reason === undefined;
if (!available) console.warn(`fslock/postgres tests skipped: ${cluster?.reason ?? 'not on Windows'}`);
// CI must run them: there, a missing server is a failure, not a skip
if (process.env.CI && process.platform === 'linux' && !available) throw new Error(`PostgreSQL: ${cluster?.reason}`);

let locks: Locks;
beforeAll(async () => {
  if (available) locks = await connectLocks(cluster!.config);
});
afterAll(async () => {
  await locks?.close();
  if (available) cluster!.stop();
  cleanupTempDirs();
});

function worker(args: string[]) {
  return attach(
    spawn(process.execPath, [join(FIXTURES, 'pg-worker.cjs'), ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: { ...process.env, FSLOCK_PG: JSON.stringify(cluster!.config) },
    }),
  );
}

describe.runIf(available)('fslock/postgres on a real server', () => {
  it('several processes incrementing a counter file under the lock lose no update', async () => {
    const file = join(tempDir(), 'counter');
    writeFileSync(file, '0');
    const ws = Array.from({ length: 4 }, () => worker(['count', file, '150']));
    for (const w of ws) await w.waitFor('done');
    expect(readFileSync(file, 'utf8')).toBe('600');
  });

  it('a holder killed with SIGKILL frees the lock for the next waiter (within 2 s)', async () => {
    const h = worker(['hold', 'killed']);
    await h.waitFor(/^held /);
    const waiting = locks.lock('killed');
    // the waiter is in the server's queue before the holder dies
    while ((await locks.inspect('killed')).waiting === 0) await new Promise((r) => setTimeout(r, 5));
    const t0 = performance.now();
    h.child.kill('SIGKILL');
    const l = await waiting;
    expect(performance.now() - t0).toBeLessThan(2000);
    expect((await locks.inspect('killed')).holders).toHaveLength(1);
    await l.release();
  });

  it('fencing tokens strictly increase across 10,000 grants in several processes', async () => {
    const held = await locks.lock('tokens'); // the workers start and queue behind it
    const ws = Array.from({ length: 4 }, () => worker(['tokens', '2500']));
    while ((await locks.inspect('tokens')).waiting < 4) await new Promise((r) => setTimeout(r, 5));
    await held.release();
    const lists = await Promise.all(
      ws.map((w) => w.waitFor(/^\[/).then((l) => (JSON.parse(l) as string[]).map(BigInt))),
    );
    for (const list of lists) for (let i = 1; i < list.length; i++) expect(list[i]! > list[i - 1]!).toBe(true);
    const all = lists.flat().sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(new Set(all).size).toBe(10_000);
    expect(all[0]!).toBe(held.token + 1n);
    const after = await locks.lock('tokens');
    expect(after.token).toBe(all[all.length - 1]! + 1n);
    await after.release();
  }, 120_000);

  it('timeout and abort end a wait with ETIMEDOUT / AbortError and leave nothing held or waiting', async () => {
    const l = await locks.lock('busy');
    await expect(locks.lock('busy', { timeout: 100 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    const ac = new AbortController();
    const pending = locks.lock('busy', { signal: ac.signal });
    while ((await locks.inspect('busy')).waiting === 0) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR', name: 'AbortError' });
    // the server saw both waiters go
    for (;;) {
      const info = await locks.inspect('busy');
      if (info.waiting === 0) {
        expect(info.holders).toHaveLength(1);
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    await l.release();
    expect((await locks.inspect('busy')).held).toBe(false);
    await expect(locks.lock('busy', { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ABORT_ERR' });
  });

  it('shared holders coexist and exclude an exclusive one', async () => {
    const a = await locks.lock('reading', { mode: 'shared' });
    const b = await locks.lock('reading', { mode: 'shared' });
    expect(a.token).not.toBe(b.token);
    const info = await locks.inspect('reading');
    expect(info).toMatchObject({ held: true, mode: 'shared', waiting: 0 });
    expect(info.holders).toHaveLength(2);
    expect(await locks.tryLock('reading')).toBeNull();
    await a.release();
    expect(await locks.tryLock('reading')).toBeNull();
    await b.release();
    const x = await locks.tryLock('reading');
    expect(x?.mode).toBe('exclusive');
    await x!.release();
  });

  it('a cycle of two sessions gives exactly one EDEADLK; the other proceeds once it lets go', async () => {
    const other = await connectLocks(cluster!.config);
    type Settled = { l: PgLock } | { e: Error & { code?: string } };
    const settle = (p: Promise<PgLock>): Promise<Settled> =>
      p.then(
        (l) => ({ l }),
        (e) => ({ e }),
      );
    try {
      const a1 = await locks.lock('cycle-a');
      const b1 = await other.lock('cycle-b');
      const aWaits = settle(locks.lock('cycle-b'));
      while ((await locks.inspect('cycle-b')).waiting === 0) await new Promise((r) => setTimeout(r, 5));
      const bWaits = settle(other.lock('cycle-a'));
      // the server looks for cycles after deadlock_timeout (1 s) and breaks one wait
      const [who, first] = await Promise.race([
        aWaits.then((r) => ['a', r] as const),
        bWaits.then((r) => ['b', r] as const),
      ]);
      expect('e' in first && first.e.code).toBe('EDEADLK');
      expect('e' in first && first.e.message).toContain('cycle');
      await (who === 'a' ? a1 : b1).release(); // the broken side lets go of what it holds
      const second = await (who === 'a' ? bWaits : aWaits);
      expect('l' in second).toBe(true); // no second EDEADLK
      if ('l' in second) await second.l.release();
      await (who === 'a' ? b1 : a1).release();
    } finally {
      await other.close();
    }
  });

  it('the server restarting while a lock is held fires `lost`', async () => {
    const mine = await connectLocks(cluster!.config);
    try {
      const l = await mine.lock('restarted');
      const lost = new Promise<unknown>((r) => l.lost.addEventListener('abort', () => r(l.lost.reason)));
      cluster!.restart();
      const reason = (await lost) as Error & { code?: string };
      expect(reason.code).toBe('ECONNRESET');
      expect(reason.message).toContain("'restarted'");
      expect(l.released).toBe(true);
      await l.release(); // nothing to do, no error
    } finally {
      await mine.close();
    }
    // the other connections of `locks` were closed by the restart too: a fresh API works
    await locks.close();
    locks = await connectLocks(cluster!.config);
  });

  it('withLock, await using, and typed errors for bad input', async () => {
    expect(await locks.withLock('w', (l) => `${l.name} ${l.mode}`)).toBe('w exclusive');
    {
      await using l = await locks.lock('disposed');
      expect((await locks.inspect('disposed')).held).toBe(true);
      expect(l.released).toBe(false);
    }
    expect((await locks.inspect('disposed')).held).toBe(false);
    await expect(locks.lock('' as string)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(locks.lock(42 as unknown as string)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(locks.lock('x', { mode: 'both' as 'shared' })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
    });
    await expect(locks.lock('x', { timout: 5 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(connectLocks({ ...cluster!.config, tokenTable: 'x; drop table y' })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
    });
  });
});

describe('the name-to-key hash', () => {
  it('is stable, documented and signed 64-bit', () => {
    expect(lockKey('build-cache')).toBe(lockKey('build-cache'));
    expect(lockKey('a')).not.toBe(lockKey('b'));
    expect(BigInt.asIntN(64, lockKey('x'))).toBe(lockKey('x'));
  });
});
