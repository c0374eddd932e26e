import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync, cpSync } from 'node:fs';
import { join, basename } from 'node:path';
import { execFileSync } from 'node:child_process';
import { homedir } from 'node:os';
import {
  openLatest,
  openSession,
  collectGarbage,
  listSessions,
  encodeTimestamp,
  decodeTimestamp,
  parseSessionDir,
} from '../src/session/index.js';
import { internals } from '../src/session/gc.js';
import { fsops } from '../src/session/fsops.js';
import { tryLock } from '../src/index.js';
import { binding, C } from '../src/binding.js';
import { cleanupTempDirs, mountOverlay, run, startNode, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const realFsops = { ...fsops };
const realInternals = { ...internals };
afterEach(() => {
  Object.assign(fsops, realFsops);
  Object.assign(internals, realInternals);
});

const MIN = 60_000;
const entries = (d: string) => readdirSync(d).sort();

describe('naming', () => {
  it('encodes timestamps as the compiler does', () => {
    // a directory the compiler wrote: s-hodwjbmth9-12axta5-<svh>
    expect(decodeTimestamp('hodwjbmth9')).toBe(1795315460707773n);
    expect(encodeTimestamp(1795315460707773n)).toBe('hodwjbmth9');
    expect(encodeTimestamp(0n)).toBe('0000000000');
    expect(parseSessionDir('s-hodwjbmth9-12axta5-1lu42ddkpoiza00nagvw8ypv6')).toEqual({
      prefix: 's-hodwjbmth9-12axta5',
      micros: 1795315460707773n,
      tag: '1lu42ddkpoiza00nagvw8ypv6',
    });
    expect(parseSessionDir('s-hodwjbmth9-12axta5.lock')).toBeNull();
    expect(parseSessionDir('s-x-y')).toBeNull();
    expect(parseSessionDir('target')).toBeNull();
  });
});

describe('the session life cycle', () => {
  it('opens a locked working directory, finalizes by rename, seeds the next session by hard links', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    expect(basename(s.path)).toMatch(/^s-[0-9a-z]{10}-[0-9a-z]{7}-working$/);
    expect(existsSync(s.lockFile)).toBe(true);
    expect(s.source).toBeNull();
    expect(tryLock(s.lockFile)).toBeNull(); // held
    writeFileSync(join(s.path, 'a.bin'), 'A');
    mkdirSync(join(s.path, 'sub'));
    writeFileSync(join(s.path, 'sub', 'b.bin'), 'B');
    const listed = await listSessions(crate);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ state: 'working', held: true, lockFile: s.lockFile, tag: 'working' });

    const final = await s.finalize('abc123');
    expect(basename(final)).toBe(`${s.prefix}-abc123`);
    expect(existsSync(final)).toBe(true);
    expect(s.state).toBe('finalized');
    expect((await listSessions(crate))[0]).toMatchObject({ state: 'finalized', held: false });

    const s2 = await openSession(crate);
    expect(s2.source).toBe(final);
    expect(s2.stats).toEqual({ linked: 2, copied: 0, skipped: 0 });
    expect(statSync(join(s2.path, 'a.bin')).ino).toBe(statSync(join(final, 'a.bin')).ino);
    expect(readFileSync(join(s2.path, 'sub', 'b.bin'), 'utf8')).toBe('B');
    const f2 = await s2.finalize('def');
    // the older finalized version is collected by s2's finalize
    expect(s2.gcReport?.deleted).toContain(final);
    expect(existsSync(final)).toBe(false);
    expect(existsSync(join(crate, `${s.prefix}.lock`))).toBe(false);
    expect(entries(crate)).toEqual([basename(f2), `${s2.prefix}.lock`].sort());
  });

  it("copy: 'copy' copies instead of linking", async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    writeFileSync(join(s.path, 'a.bin'), 'A');
    const final = await s.finalize('x1');
    const s2 = await openSession(crate, { copy: 'copy' });
    expect(s2.stats).toEqual({ linked: 0, copied: 1, skipped: 0 });
    expect(statSync(join(s2.path, 'a.bin')).ino).not.toBe(statSync(join(final, 'a.bin')).ino);
    await s2.abandon();
  });

  it('falls back to copying when hard links fail', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    writeFileSync(join(s.path, 'a.bin'), 'A');
    writeFileSync(join(s.path, 'b.bin'), 'B');
    await s.finalize('x1');
    fsops.link = async () => {
      throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
    };
    const s2 = await openSession(crate);
    expect(s2.stats).toEqual({ linked: 0, copied: 2, skipped: 0 });
    await s2.abandon();
  });

  it('abandon removes the directory and the lock file', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    writeFileSync(join(s.path, 'x'), 'x');
    await s.abandon();
    expect(entries(crate)).toEqual([]);
    await expect(s.finalize('a')).rejects.toMatchObject({ code: 'ERR_SESSION_CLOSED' });
    await expect(s.abandon()).rejects.toMatchObject({ code: 'ERR_SESSION_CLOSED' });
  });

  it('await using abandons a session that was not finalized', async () => {
    const crate = join(tempDir(), 'crate');
    {
      await using s = await openSession(crate);
      writeFileSync(join(s.path, 'x'), 'x');
    }
    expect(entries(crate)).toEqual([]);
  });

  it('rejects bad tags and options', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    for (const tag of ['ABC', 'a-b', '', 'working', 'a.b', 42]) {
      await expect(s.finalize(tag as string)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    }
    expect(s.state).toBe('working');
    await s.abandon();
    await expect(openSession(crate, { gcAge: -1 })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(openSession(crate, { copy: 'link' as never })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
    });
    await expect(openSession(crate, { nope: 1 } as never)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
    await expect(openSession(crate, { now: 5 as never })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
    await expect(collectGarbage(crate, { copy: 'copy' } as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_ARG_VALUE',
    });
    expect(entries(crate)).toEqual([]);
  });
});

describe('garbage collection rules', () => {
  it('orphan lock files: deleted once older than gcAge, kept before', async () => {
    const crate = join(tempDir(), 'crate');
    mkdirSync(crate);
    const t = Date.now();
    const old = `s-${encodeTimestamp(BigInt(t - 60_000) * 1000n)}-0000001.lock`;
    const young = `s-${encodeTimestamp(BigInt(t) * 1000n)}-0000002.lock`;
    writeFileSync(join(crate, old), '');
    writeFileSync(join(crate, young), '');
    const r = await collectGarbage(crate, { now: () => t });
    expect(r.deleted).toEqual([join(crate, old)]);
    expect(r.kept).toEqual([join(crate, young)]);
    expect(entries(crate)).toEqual([young]);
  });

  it('session directories without a lock file are deleted; unknown entries are left alone', async () => {
    const crate = join(tempDir(), 'crate');
    mkdirSync(join(crate, 's-0000000001-0000001-working'), { recursive: true });
    mkdirSync(join(crate, 's-0000000002-0000002-abc'));
    mkdirSync(join(crate, 'not-a-session'));
    writeFileSync(join(crate, 'README'), '');
    const young = markCrate(crate);
    const r = await collectGarbage(crate);
    expect(r.deleted.sort()).toEqual([
      join(crate, 's-0000000001-0000001-working'),
      join(crate, 's-0000000002-0000002-abc'),
    ]);
    expect(entries(crate)).toEqual(['README', 'not-a-session', young]);
  });

  it('finalized: all but the newest are deleted, and never one being read (shared lock)', async () => {
    const crate = join(tempDir(), 'crate');
    const names: string[] = [];
    let t = Date.now() - 10 * MIN;
    for (const tag of ['a', 'b', 'c']) {
      const s = await openSession(crate, { now: () => (t += 1000) });
      names.push(await s.finalize(tag));
    }
    // finalizing c collected a and b already; make two more old ones by hand
    expect(entries(crate).filter((e) => !e.endsWith('.lock'))).toEqual([basename(names[2]!)]);
    const mk = (ts: number, tag: string) => {
      const prefix = `s-${encodeTimestamp(BigInt(ts) * 1000n)}-0000009`;
      mkdirSync(join(crate, `${prefix}-${tag}`));
      writeFileSync(join(crate, `${prefix}.lock`), '');
      return { dir: join(crate, `${prefix}-${tag}`), lock: join(crate, `${prefix}.lock`) };
    };
    const older = mk(Date.now() - 20 * MIN, 'old1');
    const read = mk(Date.now() - 30 * MIN, 'old2');
    const reader = tryLock(read.lock, { mode: 'shared' })!;
    const r = await collectGarbage(crate);
    expect(r.deleted).toEqual([older.dir]);
    expect(r.inUse).toEqual([read.dir]);
    expect(r.kept).toEqual([names[2]]);
    reader.release();
    const r2 = await collectGarbage(crate);
    expect(r2.deleted).toEqual([read.dir]);
    expect(existsSync(names[2]!)).toBe(true);
  });

  it('dryRun reports what it would delete and deletes nothing', async () => {
    const crate = join(tempDir(), 'crate');
    mkdirSync(join(crate, 's-0000000001-0000001-working'), { recursive: true });
    const young = markCrate(crate);
    const r = await collectGarbage(crate, { dryRun: true });
    expect(r.wouldDelete).toEqual([join(crate, 's-0000000001-0000001-working')]);
    expect(r.deleted).toEqual([]);
    expect(entries(crate)).toEqual(['s-0000000001-0000001-working', young]);
  });

  it('a missing crate directory is ENOENT with the path', async () => {
    const d = join(tempDir(), 'nope');
    await expect(collectGarbage(d)).rejects.toMatchObject({ code: 'ENOENT', path: d });
  });
});

describe('a process never collects a session it holds itself (the seed bug)', () => {
  it('a live session that looks minutes old survives collection from the same process and a second session', async () => {
    const crate = join(tempDir(), 'crate');
    const live = await openSession(crate);
    writeFileSync(join(live.path, 'dep-graph.part.bin'), 'in progress');
    const later = () => Date.now() + 10 * MIN; // the slow-machine clock: "live" looks 10 minutes old
    const r = await collectGarbage(crate, { now: later });
    expect(r.inUse).toEqual([live.path]);
    expect(r.deleted).toEqual([]);
    // a second session in the same process finalizes and collects with that clock
    const second = await openSession(crate, { now: later });
    await second.finalize('b2');
    expect(second.gcReport?.inUse).toEqual([live.path]);
    expect(second.gcReport?.deleted).toEqual([]);
    expect(readFileSync(join(live.path, 'dep-graph.part.bin'), 'utf8')).toBe('in progress');
    // and the live session finalizes normally
    const final = await live.finalize('a1');
    expect(live.state).toBe('finalized');
    expect(live.gcReport?.errors).toEqual([]);
    // b2 carries the later timestamp, so a1 is obsolete as soon as it is
    // published and its own collection retires it: the newest version wins
    expect(live.gcReport?.deleted).toEqual([final]);
    expect(live.gcReport?.kept).toEqual([second.path]);
  });

  it('each guarantee holds alone: the lock without the live marks, the marks without a real lock', async () => {
    const crate = join(tempDir(), 'crate');
    const live = await openSession(crate);
    const later = () => Date.now() + 10 * MIN;
    internals.respectLiveMarks = false; // only the lock protects it now
    expect((await collectGarbage(crate, { now: later })).inUse).toEqual([live.path]);
    internals.respectLiveMarks = true;
    internals.lockForCollection = rawPosixLock; // a lock that does not exclude this process
    expect((await collectGarbage(crate, { now: later })).inUse).toEqual([live.path]);
    expect(existsSync(live.path)).toBe(true);
    await live.abandon();
  });

  it('with process-scoped POSIX locks and no marks, the same scenario deletes the live session', async () => {
    const crate = join(tempDir(), 'crate');
    // the compiler's situation: the session's own lock is a process-scoped fcntl lock
    const live = await openSession(crate, { primitive: 'posix' });
    writeFileSync(join(live.path, 'dep-graph.part.bin'), 'in progress');
    internals.respectLiveMarks = false;
    internals.lockForCollection = rawPosixLock;
    const r = await collectGarbage(crate, { now: () => Date.now() + 10 * MIN });
    expect(r.deleted).toEqual([live.path]);
    expect(existsSync(live.path)).toBe(false); // what the compiler did to itself
  });
});

/** A compiler-style lock: classic fcntl(F_SETLK), owned by the process. */
function rawPosixLock(path: string) {
  let fd: number;
  try {
    fd = binding.open(path, C.OPEN_WRITE);
  } catch {
    return null;
  }
  if (!binding.lock(C.POSIX, fd, C.EXCLUSIVE, 0, 0, false)) {
    binding.close(fd);
    return null;
  }
  return { release: () => binding.close(fd) };
}

describe('crashes and concurrency', () => {
  it('a session SIGKILLed mid-way is collected after gcAge, with its lock file', async () => {
    const crate = join(tempDir(), 'crate');
    mkdirSync(crate);
    const h = startNode('session-hold.cjs', [crate]);
    const path = await h.waitFor(/working$/);
    expect((await collectGarbage(crate, { now: () => Date.now() + 60_000 })).inUse).toEqual([path]);
    h.child.kill('SIGKILL');
    await h.exited;
    const young = await collectGarbage(crate); // not old enough yet
    expect(young.kept).toEqual([path]);
    const r = await collectGarbage(crate, { now: () => Date.now() + 60_000 });
    expect(r.deleted).toEqual([path]);
    expect(entries(crate)).toEqual([]);
  });

  it('six processes open, verify, modify, finalize or abandon and collect at once without a failure', async () => {
    const crate = join(tempDir(), 'crate');
    mkdirSync(crate);
    const kids = Array.from({ length: 6 }, (_, i) => startNode('session-worker.cjs', [crate, '12', String(i)]));
    const results = await Promise.all(kids.map((k) => k.exited));
    expect(results).toEqual(Array(6).fill({ code: 0, signal: null }));
    const r = await collectGarbage(crate, { gcAge: 0 });
    expect(r.errors).toEqual([]);
    const left = await listSessions(crate);
    expect(left.map((s) => s.state)).toEqual(['finalized']);
    expect(entries(crate)).toHaveLength(2); // the directory and its lock file
  }, 120_000);
});

describe('Windows behaviour, by injection', () => {
  const transient = (code: string) => Object.assign(new Error(`${code}: injected`), { code });

  it('finalize retries a rename that fails with EPERM/EACCES/EBUSY', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    let calls = 0;
    fsops.rename = async (a, b) => {
      calls++;
      if (calls <= 3) throw transient(['EPERM', 'EACCES', 'EBUSY'][calls - 1]!);
      return realFsops.rename(a, b);
    };
    const final = await s.finalize('ok');
    expect(calls).toBe(4);
    expect(existsSync(final)).toBe(true);
  });

  it('a rename that keeps failing leaves the session open and whole', async () => {
    const crate = join(tempDir(), 'crate');
    const s = await openSession(crate);
    writeFileSync(join(s.path, 'keep'), 'data');
    fsops.rename = async () => {
      throw transient('EACCES');
    };
    const err = await s.finalize('ok').catch((e) => e);
    expect(err.code).toBe('EACCES');
    expect(err.message).toContain('still open');
    expect(s.state).toBe('working');
    expect(tryLock(s.lockFile)).toBeNull();
    expect(readFileSync(join(s.path, 'keep'), 'utf8')).toBe('data');
    fsops.rename = realFsops.rename;
    expect(existsSync(await s.finalize('ok'))).toBe(true);
  }, 20_000);

  it('collection retries removals that fail transiently, and reports ones that do not recover', async () => {
    const crate = join(tempDir(), 'crate');
    mkdirSync(join(crate, 's-0000000001-0000001-working'), { recursive: true });
    mkdirSync(join(crate, 's-0000000002-0000002-working'));
    const young = markCrate(crate);
    let calls = 0;
    fsops.remove = async (p) => {
      calls++;
      if (calls === 1) throw transient('EBUSY');
      if (p.includes('0000002')) throw transient('ENOTEMPTY');
      return realFsops.remove(p);
    };
    const r = await collectGarbage(crate);
    expect(r.deleted).toContain(join(crate, 's-0000000001-0000001-working'));
    expect(r.errors.map((e) => e.code)).toEqual(['ENOTEMPTY']);
    // the failed removal left trash, never a half-deleted session; a later pass removes it
    expect(entries(crate).every((e) => e.startsWith('.fslock-trash-') || e === young)).toBe(true);
    fsops.remove = realFsops.remove;
    const r2 = await collectGarbage(crate);
    expect(r2.errors).toEqual([]);
    expect(entries(crate)).toEqual([young]);
  });
});

describe('filesystems where locks are unreliable', () => {
  const canMount = process.platform === 'linux' && process.getuid?.() === 0;

  it.runIf(canMount)('an overlay mount warns by default and is refused with strict', async () => {
    const { merged, unmount } = mountOverlay();
    try {
      const warnings: Array<{ code?: string; message: string }> = [];
      const onWarning = (w: Error & { code?: string }) => warnings.push(w);
      process.on('warning', onWarning);
      const s = await openSession(join(merged, 'crate'));
      await new Promise((r) => setImmediate(r));
      process.off('warning', onWarning);
      expect(warnings.map((w) => w.code)).toContain('FSLOCK_UNRELIABLE_FS');
      expect(warnings[0]?.message).toContain('overlayfs');
      await s.abandon();
      const err = await openSession(join(merged, 'crate'), { strict: true }).catch((e) => e);
      expect(err.code).toBe('ENOTSUP');
      expect(entries(join(merged, 'crate'))).toEqual([]); // nothing left behind
    } finally {
      unmount();
    }
  });
});

describe('a crate directory written by the Rust compiler', () => {
  const cargo = [join(homedir(), '.cargo', 'bin', 'cargo'), 'cargo'].find((c) => {
    try {
      execFileSync(c, ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });

  it('is listed correctly and collected safely, newest kept', async () => {
    expect(cargo, 'cargo is needed for this test (.ci/run installs it)').toBeDefined();
    const d = tempDir();
    execFileSync(cargo!, ['new', '--quiet', '--vcs', 'none', 'crt'], { cwd: d });
    const proj = join(d, 'crt');
    execFileSync(cargo!, ['build', '--quiet', '--offline'], { cwd: proj });
    const incr = join(proj, 'target', 'debug', 'incremental');
    const crateDirs = readdirSync(incr);
    expect(crateDirs).toHaveLength(1);
    const crate = join(incr, crateDirs[0]!);
    const first = await listSessions(crate);
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ state: 'finalized', held: false });
    expect(first[0]!.tag).toMatch(/^[0-9a-z]{25}$/);
    expect(Math.abs(first[0]!.createdAt.getTime() - Date.now())).toBeLessThan(10 * MIN);
    // a second build after a change: the compiler seeds from the first and finalizes a newer one
    writeFileSync(join(proj, 'src', 'main.rs'), 'fn main() { println!("changed"); }\n');
    execFileSync(cargo!, ['build', '--quiet', '--offline'], { cwd: proj });
    // make sure there is an older finalized version to collect, whatever the compiler kept
    const newest = (await listSessions(crate)).at(-1)!;
    const olderPrefix = `s-${encodeTimestamp(BigInt(newest.createdAt.getTime() - 5 * MIN) * 1000n)}-0000abc`;
    cpSync(newest.path, join(crate, `${olderPrefix}-${newest.tag}`), { recursive: true });
    writeFileSync(join(crate, `${olderPrefix}.lock`), '');
    const before = await listSessions(crate);
    expect(before.length).toBeGreaterThanOrEqual(2);
    const r = await collectGarbage(crate);
    expect(r.errors).toEqual([]);
    expect(r.kept).toEqual([before.at(-1)!.path]);
    const after = await listSessions(crate);
    expect(after.map((s) => s.path)).toEqual([before.at(-1)!.path]);
    // the compiler still accepts what is left: an incremental rebuild succeeds
    writeFileSync(join(proj, 'src', 'main.rs'), 'fn main() { println!("again"); }\n');
    const build = await run(cargo!, ['build', '--offline', '--manifest-path', join(proj, 'Cargo.toml')]);
    expect(build.code).toBe(0);
  }, 120_000);
});

/** Makes `crate` a crate directory: a young orphan lock file, which collection keeps. Returns its name. */
function markCrate(crate: string): string {
  const name = `s-${encodeTimestamp(BigInt(Date.now()) * 1000n)}-00000zz.lock`;
  writeFileSync(join(crate, name), '');
  return name;
}

describe('openLatest: readers of a session cache', () => {
  it('resolves null without sessions, then the newest finalized session, held shared until released', async () => {
    const crate = join(tempDir(), 'crate');
    expect(await openLatest(crate)).toBeNull(); // no such directory
    const s = await openSession(crate);
    expect(await openLatest(crate)).toBeNull(); // only a working session
    await s.finalize('v1');
    const s2 = await openSession(crate);
    await s2.finalize('v2');
    const l = await openLatest(crate);
    expect(l?.tag).toBe('v2');
    expect(l?.path).toBe(s2.path);
    // held for reading: a collector (even with gcAge 0) does not delete it once a newer one exists
    const s3 = await openSession(crate);
    await s3.finalize('v3');
    expect(existsSync(l!.path)).toBe(true);
    expect(s3.gcReport?.inUse).toContain(l!.path);
    l!.release();
    expect(l!.released).toBe(true);
    const r = await collectGarbage(crate, { gcAge: 0 });
    expect(r.deleted).toContain(l!.path);
    {
      await using latest = await openLatest(crate);
      expect(latest?.tag).toBe('v3');
    }
  });

  it('beside a writer finalizing and collecting as fast as it can, every version read stays whole while held', async () => {
    const crate = join(tempDir(), 'crate');
    const writer = startNode('latest-writer.cjs', [crate]);
    await writer.waitFor('writing');
    let reads = 0;
    try {
      for (let i = 0; i < 150; i++) {
        const l = await openLatest(crate);
        if (!l) continue;
        try {
          const first = readFileSync(join(l.path, 'data.txt'), 'utf8');
          await new Promise((r) => setImmediate(r)); // the writer finalizes and collects meanwhile
          expect(readFileSync(join(l.path, 'data.txt'), 'utf8')).toBe(first);
          expect(`version ${l.tag.slice(1)}\n`).toBe(first);
          reads++;
        } finally {
          l.release();
        }
      }
    } finally {
      writer.child.stdin!.end();
      await writer.waitFor('stopped');
    }
    expect(reads).toBeGreaterThan(100);
  }, 60_000);
});
