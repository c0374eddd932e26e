import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { inspect, inspectSync, lock } from '../src/index.js';
import { formatRecord, parseRecord } from '../src/holder.js';
import { parseProcLocks } from '../src/lock-table.js';
import { attach, cleanupTempDirs, startNode, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

describe('holder records', () => {
  it('are the JSON of their fields, one line, read back as written', () => {
    const long = ['tool', 'x'.repeat(5000)];
    for (const argv of [undefined, [], ['node', 'build.js', 'a "quoted" \\ arg'], long]) {
      const buf = formatRecord('2049:1234567', argv);
      const text = buf.toString('utf8');
      expect(text.endsWith('\n')).toBe(true);
      const fields = JSON.parse(text);
      const expected: Record<string, unknown> = {
        fslock: 1,
        pid: process.pid,
        hostname: hostname(),
        startedAt: fields.startedAt,
        file: '2049:1234567',
      };
      if (argv && argv.length > 0) expected.argv = argv === long ? ['tool'] : argv; // capped: the command's name only
      expect(text).toBe(`${JSON.stringify(expected)}\n`); // the same bytes, fields in the same order
      expect(Date.now() - Date.parse(fields.startedAt)).toBeLessThan(60_000);
      expect(parseRecord(buf)).toMatchObject({ pid: process.pid, file: '2049:1234567' });
    }
  });
});

describe('inspect', () => {
  it('a missing file is reported, not created', async () => {
    const p = join(tempDir(), 'none.lock');
    const info = await inspect(p);
    expect(info).toMatchObject({ exists: false, held: false, mode: null, holder: null });
    expect(existsSync(p)).toBe(false);
  });

  it('free, then held exclusively by another process with its record, then shared', async () => {
    const p = join(tempDir(), 'i.lock');
    const h = startNode('hold.cjs', [p, JSON.stringify({ record: true })]);
    await h.waitFor('locked');
    const info = await inspect(p);
    expect(info.holderSource).toBe('record');
    expect(info.held).toBe(true);
    expect(info.mode).toBe('exclusive');
    expect(info.holder?.pid).toBe(h.child.pid);
    expect(info.holder?.argv).toEqual([]); // a record holds no command line unless given one
    if (process.platform === 'linux') {
      expect(info.source).toBe('proc-locks');
      expect(info.locks.map((l) => l.kind).sort()).toEqual(['flock', 'ofd']);
      expect(info.locks.find((l) => l.kind === 'flock')?.pid).toBe(h.child.pid);
    }
    h.send('release');
    await h.waitFor('released');
    expect(inspectSync(p)).toMatchObject({ exists: true, held: false, mode: null, holder: null, holderSource: null });
    const s = await lock(p, { mode: 'shared' });
    expect(inspectSync(p)).toMatchObject({ held: true, mode: 'shared', holder: null });
    s.release();
    h.send('exit');
    await h.exited;
  });

  it('sees a foreign flock(1) holder and counts waiters', async () => {
    if (process.platform !== 'linux') return;
    const p = join(tempDir(), 'f.lock');
    // -o: the command does not inherit the lock, so killing flock(1) frees it
    const h = attach(
      spawn('flock', ['-o', p, 'sh', '-c', 'echo $$; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] }),
    );
    const commandPid = Number(await h.waitFor(/^\d+$/));
    const waiter = lock(p).catch(() => null);
    await new Promise((r) => setTimeout(r, 50));
    const info = await inspect(p);
    // flock(1) records nothing; the kernel's lock table still names it
    expect(info).toMatchObject({ held: true, mode: 'exclusive', holderSource: 'kernel', holder: { pid: h.child.pid } });
    expect(info.holder?.argv.slice(0, 2)).toEqual(['flock', '-o']);
    expect(info.locks[0]).toMatchObject({ kind: 'flock', mode: 'exclusive', pid: h.child.pid });
    expect(info.waiters).toBeGreaterThanOrEqual(1);
    h.child.kill('SIGKILL');
    const l = await waiter;
    l?.release();
    process.kill(commandPid, 'SIGKILL');
  });

  it('parses /proc/locks lines, matching device numbers and skipping others', () => {
    // st_dev 0xfd01 (major 253, minor 1), inode 42
    const text = [
      '1: FLOCK  ADVISORY  WRITE 1234 fd:01:42 0 EOF',
      '1: -> FLOCK  ADVISORY  WRITE 999 fd:01:42 0 EOF',
      '2: OFDLCK ADVISORY  READ  -1 fd:01:42 10 19',
      '3: POSIX  ADVISORY  WRITE 77 fd:02:42 0 EOF',
      '4: POSIX  ADVISORY  WRITE 78 fd:01:43 0 EOF',
      '5: LEASE  ACTIVE    READ 1 fd:01:42 0 EOF',
    ].join('\n');
    const { locks, blocked } = parseProcLocks(text, `${0xfd01}:42`);
    expect(blocked).toEqual([{ kind: 'flock', mode: 'exclusive', pid: 999, start: 0, end: null }]);
    expect(locks).toEqual([
      { kind: 'flock', mode: 'exclusive', pid: 1234, start: 0, end: null },
      { kind: 'ofd', mode: 'shared', pid: null, start: 10, end: 19 },
    ]);
  });
});
