// Tracing through node:diagnostics_channel: the payloads of fslock:lock,
// fslock:release and the session channels, as a subscriber sees them.
import { afterAll, describe, expect, it } from 'vitest';
import { channel, tracingChannel } from 'node:diagnostics_channel';
import { join } from 'node:path';
import { lock, lockSync, tryLock } from '../src/index.js';
import { openSession } from '../src/session/index.js';
import { cleanupTempDirs, startNode, tempDir, untilBlocked } from './helpers.js';

afterAll(cleanupTempDirs);

type Ctx = { path: string; mode: string; primitive: string; waited: boolean; outcome?: string; lock?: unknown };

function record() {
  const events: Array<[string, Ctx]> = [];
  const handlers = {
    start: (c: unknown) => events.push(['start', { ...(c as Ctx) }]),
    end: (c: unknown) => events.push(['end', { ...(c as Ctx) }]),
    asyncStart: (c: unknown) => events.push(['asyncStart', { ...(c as Ctx) }]),
    asyncEnd: (c: unknown) => events.push(['asyncEnd', { ...(c as Ctx) }]),
    error: (c: unknown) => events.push(['error', { ...(c as Ctx) }]),
  };
  const tc = tracingChannel('fslock:lock');
  tc.subscribe(handlers);
  return { events, stop: () => tc.unsubscribe(handlers) };
}

describe('fslock:lock, fslock:release and the session channels', () => {
  it('an uncontended lock(): start, end, asyncStart, asyncEnd with outcome acquired and the primitive used', async () => {
    const p = join(tempDir(), 't.lock');
    const r = record();
    const releases: unknown[] = [];
    const onRelease = (m: unknown) => releases.push(m);
    channel('fslock:release').subscribe(onRelease);
    try {
      const l = await lock(p, { mode: 'shared' });
      l.release();
    } finally {
      r.stop();
      channel('fslock:release').unsubscribe(onRelease);
    }
    expect(r.events.map(([e]) => e)).toEqual(['start', 'end', 'asyncStart', 'asyncEnd']);
    expect(r.events[0]![1]).toMatchObject({ path: p, mode: 'shared', primitive: 'auto', waited: false });
    expect(r.events[3]![1]).toMatchObject({ outcome: 'acquired', waited: false });
    expect(r.events[3]![1].primitive).toBe(process.platform === 'linux' ? 'flock+ofd' : r.events[3]![1].primitive);
    expect(releases).toHaveLength(1);
    expect(releases[0]).toMatchObject({ path: p, mode: 'shared' });
    expect((releases[0] as { heldMs: number }).heldMs).toBeGreaterThanOrEqual(0);
  });

  it('a wait that times out: waited, outcome timeout, an error event; tryLock on a held lock: busy', async () => {
    const p = join(tempDir(), 'held.lock');
    const h = startNode('hold.cjs', [p]);
    await h.waitFor('locked');
    const r = record();
    try {
      await expect(lock(p, { timeout: 50 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
      expect(tryLock(p)).toBeNull();
      expect(() => lockSync(p, { timeout: 0 })).toThrow(expect.objectContaining({ code: 'ELOCKED' }));
    } finally {
      r.stop();
      h.child.kill('SIGKILL');
    }
    const kinds = r.events.map(([e, c]) => `${e}:${c.outcome ?? ''}:${c.waited}`);
    expect(kinds).toEqual([
      'start::false',
      'end::true',
      'error:timeout:true',
      'asyncStart:timeout:true',
      'asyncEnd:timeout:true',
      'start::false',
      'end:busy:false',
      'start::false',
      'error:locked:false',
      'end:locked:false',
    ]);
  });

  it.runIf(process.platform === 'linux')(
    "a lock granted after a wait: heldMs counts from the grant (the waiter thread's clock)",
    async () => {
      const p = join(tempDir(), 'granted.lock');
      const h = startNode('hold.cjs', [p]);
      await h.waitFor('locked');
      const releases: Array<{ heldMs: number }> = [];
      const onRelease = (m: unknown) => releases.push(m as { heldMs: number });
      channel('fslock:release').subscribe(onRelease);
      let outer = 0;
      let inner = 0;
      try {
        const t0 = performance.now();
        const pending = lock(p);
        await untilBlocked(p, 1);
        h.send('release');
        const l = await pending;
        const t1 = performance.now(); // the grant came before this await resumed
        await new Promise((r) => setTimeout(r, 50));
        const t2 = performance.now(); // release() reads its clock after this
        l.release();
        const t3 = performance.now(); // and before this
        inner = t2 - t1;
        outer = t3 - t0; // the grant came after the wait began
      } finally {
        channel('fslock:release').unsubscribe(onRelease);
        h.child.kill('SIGKILL');
      }
      expect(releases).toHaveLength(1);
      expect(releases[0]!.heldMs).toBeGreaterThanOrEqual(inner - 0.01);
      expect(releases[0]!.heldMs).toBeLessThanOrEqual(outer + 0.01);
    },
  );

  it('session open and finalize, and the collection after it, are published', async () => {
    const seen: Array<[string, unknown]> = [];
    const subs = ['fslock:session:open', 'fslock:session:finalize', 'fslock:gc'].map((name) => {
      const fn = (m: unknown) => seen.push([name, m]);
      channel(name).subscribe(fn);
      return () => channel(name).unsubscribe(fn);
    });
    try {
      const s = await openSession(join(tempDir(), 'crate'));
      await s.finalize('v1');
    } finally {
      for (const u of subs) u();
    }
    expect(seen.map(([n]) => n)).toEqual(['fslock:session:open', 'fslock:session:finalize', 'fslock:gc']);
    expect(seen[0]![1]).toMatchObject({ source: null, stats: { linked: 0, copied: 0, skipped: 0 } });
    expect(seen[1]![1]).toMatchObject({ tag: 'v1' });
    expect(seen[2]![1]).toMatchObject({ dryRun: false, report: { errors: [] } });
  });
});
