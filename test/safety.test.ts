// Nothing a user owns is ever lost: the lock file's contents, files that look
// like sessions, the cache a session seeds from, and the lock of a running command.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { lock, lockSync, tryLock } from '../src/index.js';
import { collectGarbage, openSession } from '../src/session/index.js';
import { recordPath } from '../src/holder.js';
import { attach, cleanupTempDirs, DIST, run, since, sleep, startNode, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const BIN = resolve(__dirname, '..', 'bin', 'fslock.js');
const fslock = (args: string[]) => run(process.execPath, [BIN, ...args]);
const isRoot = process.getuid?.() === 0;

describe('the lock file belongs to the user: fslock never writes, truncates or empties it', () => {
  it('fslock run on the file the command appends to leaves exactly what flock(1) leaves (12 alternating runs)', async () => {
    const d = tempDir();
    const ours = join(d, 'ours.log');
    const theirs = join(d, 'theirs.log');
    for (let i = 0; i < 12; i++) {
      const line = `line ${i}`;
      // first run creates the file, as in the repro
      const a = await fslock(['run', ours, 'sh', '-c', `echo "${line}" >> "${ours}"`]);
      expect(a.code).toBe(0);
      execFileSync('flock', [theirs, 'sh', '-c', `echo "${line}" >> "${theirs}"`]);
      if (i % 4 === 3) expect((await fslock(['run', ours, 'true'])).code).toBe(0); // a run that writes nothing
    }
    expect(readFileSync(ours)).toEqual(readFileSync(theirs));
    expect(readdirSync(d).sort()).toEqual(['ours.log', 'theirs.log']); // no sidecar left behind
  });

  it('record: true on a missing file, then appending, then release leaves exactly what was appended', () => {
    const p = join(tempDir(), 'data.log');
    const l = lockSync(p, { record: true });
    appendFileSync(p, 'appended\n');
    l.release();
    expect(readFileSync(p, 'utf8')).toBe('appended\n');
  });

  it('record: true on a data file never changes it, even one that starts like an old in-file record', async () => {
    const p = join(tempDir(), 'data.json');
    const content = '{"fslock":1,"pid":1,"hostname":"x"}\nuser data after what looks like a record\n';
    writeFileSync(p, content);
    const l = await lock(p, { record: true });
    expect(readFileSync(p, 'utf8')).toBe(content);
    l.release();
    expect(readFileSync(p, 'utf8')).toBe(content);
    const e = await lock(p, { record: true });
    e.downgrade();
    e.release();
    expect(readFileSync(p, 'utf8')).toBe(content);
  });

  it('a record names the holder without its command line, lives beside the file, and goes on release at any size', async () => {
    const p = join(tempDir(), 'x.lock');
    const l = await lock(p, { record: true });
    const side = recordPath(p);
    const rec = JSON.parse(readFileSync(side, 'utf8'));
    expect(rec).toMatchObject({ fslock: 1, pid: process.pid });
    expect(rec.argv).toBeUndefined();
    expect(readFileSync(side, 'utf8')).not.toContain(process.argv[1]);
    l.release();
    expect(existsSync(side)).toBe(false);
    // a long command line given explicitly is capped so the record stays one small line, and still removed
    const big = await lock(p, { record: { argv: ['tool', 'x'.repeat(5000)] } });
    expect(statSync(side).size).toBeLessThan(4096);
    big.release();
    expect(existsSync(side)).toBe(false);
    expect(readFileSync(p, 'utf8')).toBe('');
  });

  it('a stale record of a holder that died is never believed, and replaced by the next recorder', async () => {
    const p = join(tempDir(), 'x.lock');
    const h = startNode('hold.cjs', [p, JSON.stringify({ record: true })]);
    await h.waitFor('locked');
    h.child.kill('SIGKILL');
    await h.exited;
    expect(existsSync(recordPath(p))).toBe(true); // a crash leaves it
    const next = await lock(p, { record: true });
    expect(JSON.parse(readFileSync(recordPath(p), 'utf8')).pid).toBe(process.pid);
    next.release();
    expect(existsSync(recordPath(p))).toBe(false);
  });

  it('fslock run and the compat layers record no command-line arguments', async () => {
    const d = tempDir();
    const p = join(d, 'secret.lock');
    const r = await fslock(['run', p, 'sh', '-c', `ls -a "${d}"; echo 'Authorization: Bearer s3cr3t' > /dev/null`]);
    expect(r.code).toBe(0);
    for (const name of readdirSync(d)) expect(readFileSync(join(d, name), 'utf8')).not.toContain('s3cr3t');
    const pl = require(resolve(__dirname, '../dist/cjs/compat/proper-lockfile.js'));
    const target = join(d, 'data');
    writeFileSync(target, '');
    const release = await pl.lock(target);
    for (const name of readdirSync(`${target}.lock`)) {
      expect(readFileSync(join(`${target}.lock`, name), 'utf8')).not.toContain('"argv"');
    }
    await release();
  });
});

describe('fslock run keeps the lock as long as the command runs', () => {
  it('SIGKILL to fslock run: the command keeps the lock (it inherited the descriptor), as with flock(1)', async () => {
    const l = join(tempDir(), 'k.lock');
    const first = attach(
      spawn(process.execPath, [BIN, 'run', l, '-c', 'echo running $$; exec sleep 30'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    const commandPid = Number((await first.waitFor(/^running \d+$/)).split(' ')[1]);
    first.child.kill('SIGKILL');
    await first.exited;
    const beside = await fslock(['run', '-n', l, 'echo', 'ran beside it']);
    expect(beside.code).toBe(1);
    expect(beside.stdout).toBe('');
    process.kill(commandPid, 'SIGKILL');
    await sleep(100);
    const after = await fslock(['run', '-n', l, 'echo', 'after']);
    expect(after.stdout).toBe('after\n');
  });

  it('-o: the command does not get the descriptor, so killing fslock frees the lock', async () => {
    const l = join(tempDir(), 'o.lock');
    const first = attach(
      spawn(process.execPath, [BIN, 'run', '-o', l, '-c', 'echo running $$; exec sleep 30'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    const commandPid = Number((await first.waitFor(/^running \d+$/)).split(' ')[1]);
    first.child.kill('SIGKILL');
    await first.exited;
    const t0 = performance.now();
    const r = await fslock(['run', '-n', l, 'echo', 'second']);
    expect(r.stdout).toBe('second\n');
    expect(since(t0)).toBeLessThan(5000);
    process.kill(commandPid, 'SIGKILL');
  });

  it('SIGTERM at any moment: fslock dies from it (as flock(1) does), and the command never outlives fslock', async () => {
    const d = tempDir();
    const l = join(d, 't.lock');
    for (let i = 0; i < 30; i++) {
      const marker = join(d, `started-${i}`);
      const child = spawn(process.execPath, [BIN, 'run', l, 'sh', '-c', `echo $$ > ${marker}; exec sleep 30`], {
        stdio: 'ignore',
      });
      const exited = new Promise<[number | null, string | null]>((res) => child.on('exit', (c, s) => res([c, s])));
      // even runs: signal once the command has started (passed on after
      // fslock's grace of 1 s, as the command may have it from its group
      // already; then fslock dies from it once the command has exited); odd
      // runs: at an arbitrary early moment (Node may still be starting up:
      // its default action)
      const afterStart = i % 2 === 0;
      if (afterStart) {
        const t0 = performance.now();
        while (!(existsSync(marker) && readFileSync(marker, 'utf8').trim() !== '') && since(t0) < 20_000)
          await sleep(5);
      } else {
        await sleep(i * 5);
      }
      child.kill('SIGTERM');
      const [code, signal] = await exited;
      expect([code, signal], `run ${i}`).toEqual([null, 'SIGTERM']);
      const pid = existsSync(marker) ? Number(readFileSync(marker, 'utf8').trim()) : 0;
      // (an empty marker means the shell had not written its pid yet; never signal pid 0: that is our own group)
      if (Number.isSafeInteger(pid) && pid > 1) {
        let alive = true;
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
        if (alive) process.kill(pid, 'SIGKILL');
        expect(alive, `run ${i}: the command outlived fslock`).toBe(false);
      }
    }
  }, 120_000);

  it('SIGUSR1 is passed on to the command, not taken by Node as "start the debugger"', async () => {
    const l = join(tempDir(), 'u.lock');
    const h = attach(
      spawn(
        process.execPath,
        [BIN, 'run', l, 'sh', '-c', `trap 'echo got-usr1; exit 0' USR1; echo ready; while :; do sleep 0.05; done`],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      ),
    );
    let stderr = '';
    h.child.stderr!.on('data', (c) => (stderr += c));
    await h.waitFor('ready');
    h.child.kill('SIGUSR1');
    await h.waitFor('got-usr1');
    const { code } = await h.exited;
    expect(code).toBe(0);
    expect(stderr).not.toContain('Debugger listening');
  });
});

describe('garbage collection touches only what the protocol made', () => {
  it('look-alike names, files named like directories and directories named like lock files are left alone', async () => {
    const d = join(tempDir(), 'd');
    mkdirSync(join(d, 's-my-old-backup'), { recursive: true });
    writeFileSync(join(d, 's-my-old-backup', 'data.txt'), 'precious');
    mkdirSync(join(d, 's-2024-photos-raw'));
    writeFileSync(join(d, 's-2023-q4-report.pdf'), 'pdf');
    writeFileSync(join(d, 's-draft-v2.lock'), '');
    const r = await fslock(['gc', d]);
    expect(r.code).toBe(0);
    expect(readdirSync(d).sort()).toEqual([
      's-2023-q4-report.pdf',
      's-2024-photos-raw',
      's-draft-v2.lock',
      's-my-old-backup',
    ]);
    expect(r.stdout).not.toContain('deleted  ');
    expect(r.stderr).toContain('not a crate directory');
    // and inside a real crate directory, only exact shapes of the right type count
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    await s.finalize('abc');
    writeFileSync(join(crate, 's-0000000001-0000001-working'), 'a file, not a session'); // file named like a dir
    mkdirSync(join(crate, 's-0000000002-0000002.lock')); // dir named like a lock file
    mkdirSync(join(crate, 's-000000001-0000003-working')); // 9 timestamp digits
    mkdirSync(join(crate, 's-0000000001-00000004-working')); // 8 random digits
    mkdirSync(join(crate, 's-0000000001-0000005-Tag')); // upper case
    const before = readdirSync(crate).sort();
    const rep = await collectGarbage(crate, { gcAge: 0 });
    expect(rep.deleted).toEqual([]);
    expect(readdirSync(crate).sort()).toEqual(before);
  });

  it('a parent of crate directories is not collected; the report names the crate directories', async () => {
    const top = join(tempDir(), 'incremental');
    const a = await openSession(join(top, 'crate-a'));
    await a.finalize('x');
    const b = await openSession(join(top, 'crate-b'));
    await b.finalize('y');
    mkdirSync(join(top, 's-0000000001-0000001-working'));
    const r = await collectGarbage(top, { gcAge: 0 });
    expect(r.deleted).toEqual([]);
    expect(r.crateDirs).toEqual([join(top, 'crate-a'), join(top, 'crate-b')].map((p) => p));
    expect(r.skipped).toContain('crate-a');
    expect(existsSync(join(top, 's-0000000001-0000001-working'))).toBe(true);
    const cli = await fslock(['gc', top]);
    expect(cli.stderr).toContain(join(top, 'crate-b'));
  });

  it('gc --dry-run --json says "wouldDelete", not "deleted", and deletes nothing', async () => {
    const crate = join(tempDir(), 'crate');
    const s1 = await openSession(crate, { now: () => Date.now() - 60_000 });
    await s1.finalize('old');
    const s2 = await openSession(crate);
    writeFileSync(join(s2.path, 'f'), '');
    await s2.finalize('new'); // collects s1
    mkdirSync(join(crate, 's-0000000001-0000001-working')); // no lock file: garbage
    const r = await fslock(['gc', '--dry-run', '--json', crate]);
    const j = JSON.parse(r.stdout);
    expect(j.deleted).toBeUndefined();
    expect(j.wouldDelete).toEqual([join(crate, 's-0000000001-0000001-working')]);
    expect(existsSync(join(crate, 's-0000000001-0000001-working'))).toBe(true);
  });
});

describe('sessions never start empty while a finalized session exists', () => {
  it('a collector removing 40 dead sessions beside 4 processes opening sessions: zero empty starts', async () => {
    const crate = join(tempDir(), 'crate');
    const first = await openSession(crate);
    for (let i = 0; i < 50; i++) writeFileSync(join(first.path, `f${i}`), `content ${i}`);
    await first.finalize('good');
    // 40 dead working directories with their lock files, each holding files to remove
    const dead = await run(process.execPath, [
      resolve(__dirname, 'fixtures', 'dead-sessions.cjs'),
      crate,
      '40',
      String(Date.now() - 3_600_000),
    ]);
    expect(dead.code, dead.stderr).toBe(0);
    expect(readdirSync(crate).filter((n) => n.endsWith('-working'))).toHaveLength(40);
    const procs = Array.from({ length: 4 }, (_, i) =>
      run(process.execPath, [resolve(__dirname, 'fixtures', 'seed-churn.cjs'), crate, String(i), '25']),
    );
    const collector = run(process.execPath, [
      '-e',
      `
      const { collectGarbage } = require(${JSON.stringify(resolve(DIST, '../session/index.js'))});
      (async () => { for (let i = 0; i < 5; i++) { await collectGarbage(${JSON.stringify(crate)}, { gcAge: 0 }); } })();
    `,
    ]);
    const results = await Promise.all(procs);
    await collector;
    let opened = 0;
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout);
      opened += j.opened;
      expect(j.empty, `empty starts in ${r.stdout}`).toBe(0);
    }
    expect(opened).toBe(100);
  }, 120_000);

  it.runIf(isRoot)(
    'a seed that fails (ENOSPC on a full filesystem) rejects with ENOSPC, leaves no session, and changes no other session',
    async () => {
      const mnt = tempDir('fslock-full-');
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
      try {
        const crate = join(mnt, 'crate');
        const s = await openSession(crate);
        for (let i = 0; i < 6; i++) writeFileSync(join(s.path, `f${i}`), Buffer.alloc(120 * 1024, i));
        const good = await s.finalize('good');
        const before = readdirSync(crate).sort();
        const err = await openSession(crate, { copy: 'copy' }).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toMatchObject({ code: 'ENOSPC' });
        expect((err as Error).message).toContain('no existing session was changed');
        expect(readdirSync(crate).sort()).toEqual(before); // no working dir, no lock file, no trash
        expect(readdirSync(good).length).toBe(6);
        // and a hard-linking seed still works on the same full disk
        const linked = await openSession(crate);
        expect(linked.stats).toEqual({ linked: 6, copied: 0, skipped: 0 });
        await linked.abandon();
      } finally {
        execFileSync('umount', ['-l', mnt]);
      }
    },
  );

  it.runIf(isRoot)('creating the crate directory on a full filesystem reports ENOSPC, not ENOENT', async () => {
    const mnt = tempDir('fslock-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,nr_inodes=4', 'tmpfs', mnt]);
    try {
      let i = 0;
      try {
        for (; ; i++) mkdirSync(join(mnt, `fill${i}`));
      } catch {
        // full
      }
      await expect(openSession(join(mnt, 'a', 'b', 'crate'))).rejects.toMatchObject({ code: 'ENOSPC' });
    } finally {
      execFileSync('umount', ['-l', mnt]);
    }
  });
});

describe('smaller, same theme', () => {
  it('huge timeouts never give up early (lockSync 1e13 ms, Number.MAX_VALUE; lock() beyond 2^31-1 ms)', async () => {
    const p = join(tempDir(), 'h.lock');
    // a child that says when it starts waiting, then waits with a huge timeout
    const waiter = (timeout: number) =>
      attach(
        spawn(
          process.execPath,
          [
            '-e',
            `const { lockSync } = require(${JSON.stringify(DIST)});
             console.log('waiting');
             try { lockSync(${JSON.stringify(p)}, { timeout: ${timeout} }).release(); console.log('granted'); }
             catch (e) { console.log(e.code); }`,
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        ),
      );
    for (const timeout of [1e13, Number.MAX_VALUE, 2 ** 31 + 5]) {
      const h = startNode('hold.cjs', [p]);
      await h.waitFor('locked');
      const w = waiter(timeout);
      await w.waitFor('waiting');
      const ac = new AbortController();
      let settled: string | null = null;
      const pending = lock(p, { timeout, signal: ac.signal }).then(
        () => (settled = 'granted'),
        (e: { code: string }) => (settled = e.code),
      );
      await sleep(300); // the bug gave up after 7-20 ms
      expect(w.lines).toEqual(['waiting']); // still waiting
      expect(settled).toBeNull();
      ac.abort();
      expect(await pending).toBe('ABORT_ERR');
      h.send('release'); // and it is granted once the lock is free
      expect(await w.waitFor(/^(granted|E[A-Z_]+)$/)).toBe('granted');
      await w.exited;
      h.child.kill();
      await h.exited;
    }
  });

  it('FileLock.fd is -1 once released', async () => {
    const l = await lock(join(tempDir(), 'f.lock'));
    expect(l.fd).toBeGreaterThanOrEqual(0);
    l.release();
    expect(l.fd).toBe(-1);
    const t = tryLock(join(tempDir(), 'g.lock'))!;
    t[Symbol.dispose]();
    expect(t.fd).toBe(-1);
  });

  it('a clock past 2085-11-09 is a typed error that says why', async () => {
    const crate = join(tempDir(), 'crate');
    const err = await openSession(crate, { now: () => Date.UTC(2085, 10, 10) }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RangeError);
    expect(err).toMatchObject({ code: 'ERR_SESSION_CLOCK' });
    expect((err as Error).message).toContain('2085-11-09');
    expect(readdirSync(crate)).toEqual([]);
    const ok = await openSession(crate, { now: () => Date.UTC(2085, 10, 9) });
    await ok.abandon();
  });
});
