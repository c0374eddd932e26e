// Cycles of waits between processes are broken: exactly one wait in a cycle
// fails with EDEADLK, the others proceed once it lets go; a cycle through a
// process that does not use fslock is found too; waits in one global order
// never see EDEADLK.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { lock } from '../src/index.js';
import { attach, blockedCounter, cleanupTempDirs, startNode, tempDir, untilBlocked } from './helpers.js';

afterAll(cleanupTempDirs);

const linux = process.platform === 'linux';

async function cycleOf(n: number, how: 'async' | 'sync') {
  const d = tempDir();
  const files = Array.from({ length: n }, (_, i) => join(d, `c${i}.lock`));
  const members = files.map((f, i) => startNode('cycle.cjs', [how, f, files[(i + 1) % n]!]));
  for (const m of members) await m.waitFor('held');
  // all but the last wait first (a chain); the last one closes the cycle
  for (let i = 0; i < n - 1; i++) {
    members[i]!.send('go');
    await untilBlocked(files[i + 1]!, 1);
  }
  const t0 = performance.now();
  members[n - 1]!.send('go');
  const outcomes = await Promise.all(members.map((m) => m.waitFor(/^(acquired|error)/)));
  const firstError = members.findIndex((m) => m.lines.some((l) => l.startsWith('error')));
  return { outcomes, ms: performance.now() - t0, message: members[firstError]?.lines.at(-1) ?? '', files };
}

describe.runIf(linux)('cycles of waits', () => {
  for (const [n, how] of [
    [2, 'async'],
    [3, 'async'],
    [8, 'async'],
    [2, 'sync'],
  ] as const) {
    it(`a cycle of ${n} processes (${how === 'sync' ? 'lockSync' : 'lock'}): exactly one EDEADLK, the others acquire`, async () => {
      const { outcomes, message, files } = await cycleOf(n, how);
      expect(outcomes.filter((o) => o === 'error EDEADLK')).toHaveLength(1);
      expect(outcomes.filter((o) => o === 'acquired')).toHaveLength(n - 1);
      // the message lists the cycle: pids and the paths waited for
      expect(message).toMatch(/waits for '.*c\d\.lock' held by pid \d+/);
      expect(message).toContain(files[0]!.split('/').pop()!.replace('.lock', ''));
    }, 60_000);
  }

  it('a lockSync wait stays in the kernel lock table between its looks for cycles', async () => {
    // Other members of a cycle find this wait only in the table: a wait that
    // left it between looks could, in step with another such wait, never be
    // seen (two lockSync members then waited for ever).
    const d = tempDir();
    const mine = join(d, 'm.lock');
    const held = await lock(mine);
    const other = startNode('cycle.cjs', ['sync', join(d, 't.lock'), mine]);
    await other.waitFor('held');
    other.send('go');
    await untilBlocked(mine, 1);
    const count = blockedCounter(mine);
    let reads = 0;
    let missing = 0;
    // sample the table over at least a second (about ten of its looks) and at
    // least 300 reads, however slowly a busy machine serves them
    const end = performance.now() + 1000;
    for (; reads < 300 || performance.now() < end; reads++) if (count() === 0) missing++;
    held.release();
    expect(await other.waitFor(/^(acquired|error)/)).toBe('acquired');
    expect(missing).toBe(0);
  }, 30_000);

  it('a cycle through util-linux flock(1), which detects nothing, is broken by the fslock side', async () => {
    const d = tempDir();
    const x = join(d, 'x.lock');
    const y = join(d, 'y.lock');
    const ours = startNode('cycle.cjs', ['async', x, y]);
    await ours.waitFor('held');
    // flock(1) holds y, then waits for x
    const theirs = attach(
      spawn('flock', [y, 'sh', '-c', `echo holding; flock ${x} echo got-x`], { stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    await theirs.waitFor('holding');
    await untilBlocked(x, 1);
    ours.send('go');
    expect(await ours.waitFor(/^(acquired|error)/)).toBe('error EDEADLK');
    await theirs.waitFor('got-x'); // once we let go, flock(1) proceeds
  }, 60_000);

  it('a member that does not look (deadlock: false) is passed over: the next one down gives up', async () => {
    const d = tempDir();
    const x = join(d, 'x.lock');
    const y = join(d, 'y.lock');
    const other = startNode('cycle.cjs', ['async', y, x, 'nodetect']); // started after us: the higher pid
    await other.waitFor('held');
    const mine = await lock(x);
    other.send('go');
    await untilBlocked(x, 1);
    await expect(lock(y)).rejects.toMatchObject({ code: 'EDEADLK' });
    mine.release();
    expect(await other.waitFor(/^(acquired|error)/)).toBe('acquired');
  }, 30_000);

  it('deadlock: false on both sides waits regardless (here, until a timeout)', async () => {
    const d = tempDir();
    const x = join(d, 'x.lock');
    const y = join(d, 'y.lock');
    const other = startNode('cycle.cjs', ['async', y, x, 'nodetect']);
    await other.waitFor('held');
    const mine = await lock(x);
    other.send('go');
    await untilBlocked(x, 1);
    await expect(lock(y, { deadlock: false, timeout: 1500 })).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    mine.release();
    expect(await other.waitFor(/^(acquired|error)/)).toBe('acquired');
  }, 30_000);

  it('no false positives: 6 processes taking several locks in one global order, with waits, timeouts and aborts', async () => {
    const d = tempDir();
    const ps = Array.from({ length: 6 }, () => startNode('soak.cjs', [d, '60']));
    const results = await Promise.all(ps.map((p) => p.waitFor(/^\{/).then((l) => JSON.parse(l))));
    const total = results.reduce((a, r) => a + r.deadlocks, 0);
    expect(total).toBe(0);
    expect(results.reduce((a, r) => a + r.acquired, 0)).toBeGreaterThan(100);
  }, 120_000);
});
