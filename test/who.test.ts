// Who holds, who waits: inspect().holders and .queue against foreign
// lockers (util-linux flock(1), Python's lockf) and fslock itself, and
// `fslock inspect --watch`.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { inspect, lock } from '../src/index.js';
import { attach, cleanupTempDirs, sleep, tempDir, untilBlocked } from './helpers.js';

afterAll(cleanupTempDirs);

const linux = process.platform === 'linux';
const BIN = resolve(__dirname, '..', 'bin', 'fslock.js');

describe.runIf(linux)('holders and queue', () => {
  it('a holder, then a flock(1) waiter and a python lockf waiter, each named with its kind and mode', async () => {
    const p = join(tempDir(), 'q.lock');
    const held = await lock(p);
    const fl = spawn('flock', [p, 'true'], { stdio: 'ignore' });
    await untilBlocked(p, 1);
    const py = spawn(
      'python3',
      ['-c', `import fcntl,os\nfd=os.open(${JSON.stringify(p)}, os.O_RDWR)\nfcntl.lockf(fd, fcntl.LOCK_SH)`],
      { stdio: 'ignore' },
    );
    await untilBlocked(p, 2);
    try {
      const info = await inspect(p);
      expect(info.holders.map((h) => [h.pid, h.kind, h.mode])).toEqual([
        [process.pid, 'flock', 'exclusive'],
        [process.pid, 'ofd', 'exclusive'],
      ]);
      const byPid = [...info.queue].sort((a, b) => (a.pid === fl.pid ? -1 : b.pid === fl.pid ? 1 : 0));
      expect(byPid.map((w) => [w.pid, w.kind, w.mode, w.argv[0]])).toEqual([
        [fl.pid, 'flock', 'exclusive', 'flock'],
        [py.pid, 'posix', 'shared', expect.stringContaining('python')],
      ]);
      expect(info.waiters).toBe(2);
    } finally {
      held.release();
    }
    await Promise.all([new Promise((r) => fl.on('exit', r)), new Promise((r) => py.on('exit', r))]);
    const after = await inspect(p);
    expect(after.queue).toEqual([]);
    expect(after.holders).toEqual([]);
  });

  it('fslock inspect --watch redraws as the lock is taken, waited for and let go', async () => {
    const p = join(tempDir(), 'w.lock');
    const w = attach(spawn(process.execPath, [BIN, 'inspect', '--watch', p], { stdio: ['ignore', 'pipe', 'inherit'] }));
    try {
      await w.waitFor(/no such file/);
      const l = await lock(p);
      await w.waitFor(/held exclusive/);
      const fl = spawn('flock', [p, 'true'], { stdio: 'ignore' });
      await w.waitFor(new RegExp(`waiting: pid ${fl.pid} \\(flock exclusive\\): flock`));
      l.release();
      await new Promise((r) => fl.on('exit', r));
      await w.waitFor(/: free$/);
      expect(w.lines.filter((x) => x.startsWith('--- ')).length).toBeGreaterThanOrEqual(4);
    } finally {
      w.child.kill();
    }
    await sleep(0);
  });
});
