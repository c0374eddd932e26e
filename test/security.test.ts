// Hostile neighbours: another user (uid 4242, through setpriv) plants symlinks,
// records and trash in a shared sticky directory; a racer swaps the lock
// path; holders carry terminal escapes in their command lines.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { hostname } from 'node:os';
import { inspect, lock, lockSync, tryLock } from '../src/index.js';
import { collectGarbage, openSession } from '../src/session/index.js';
import { escapeText } from '../src/errors.js';
import pl from '../src/compat/proper-lockfile.js';
import * as lf from '../src/compat/lockfile.js';
import { attach, cleanupTempDirs, FIXTURES, run, startNode, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const BIN = resolve(__dirname, '..', 'bin', 'fslock.js');
const fslock = (args: string[]) => run(process.execPath, [BIN, ...args]);
const canSwitchUser = process.platform === 'linux' && process.getuid?.() === 0;
const OTHER = 4242;

/** Runs a command as uid/gid 4242 (the "other user"). */
function asOther(cmd: string, args: string[]): string {
  return execFileSync('setpriv', [`--reuid=${OTHER}`, `--regid=${OTHER}`, '--clear-groups', cmd, ...args]).toString();
}

/** A directory like /tmp: sticky and world-writable, owned by root. */
function stickyDir(): string {
  const d = tempDir('fslock-sticky-');
  chmodSync(d, 0o1777);
  return d;
}

const protectedSymlinks = (() => {
  try {
    return readFileSync('/proc/sys/fs/protected_symlinks', 'utf8').trim() === '1';
  } catch {
    return false;
  }
})();

describe.runIf(canSwitchUser)('symlinks planted at the lock path', () => {
  it('a dangling link planted by another user: no call creates a file at the target, and each says why', async () => {
    const d = stickyDir();
    const target = join(tempDir('fslock-root-only-'), 'created-by-root');
    const link = join(d, 'x.lock');
    asOther('ln', ['-s', target, link]);
    const attempts: Array<[string, () => unknown]> = [
      ['lock', () => lock(link)],
      ['tryLock', () => tryLock(link)],
      ['lockSync record', () => lockSync(link, { record: true })],
    ];
    for (const [name, call] of attempts) {
      const err = await Promise.resolve()
        .then(call)
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err, name).toMatchObject({ code: 'ERR_UNSAFE_SYMLINK', path: link });
      expect((err as Error).message).toContain(`uid ${OTHER}`);
      expect(existsSync(target), name).toBe(false);
    }
    const cli = await fslock(['run', link, 'true']);
    expect(cli.code).toBe(66); // flock(1)'s EX_NOINPUT: the lock file cannot be opened
    expect(cli.stderr).toContain('ERR_UNSAFE_SYMLINK');
    expect(existsSync(target)).toBe(false);
    // even when the user allows following, nothing is created through the link
    const allowed = await lock(link, { allowUnsafeSymlink: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(allowed).toMatchObject({ code: 'ENOENT' });
    expect((allowed as Error).message).toContain('never creates a file through a symbolic link');
    expect(existsSync(target)).toBe(false);
  });

  it('a link to an existing file planted by another user is refused; an empty target gets no record', async () => {
    const d = stickyDir();
    const target = join(tempDir('fslock-root-only-'), 'empty-root-file');
    writeFileSync(target, '');
    const link = join(d, 'y.lock');
    asOther('ln', ['-s', target, link]);
    await expect(lock(link, { record: true })).rejects.toMatchObject({ code: 'ERR_UNSAFE_SYMLINK' });
    expect(readFileSync(target, 'utf8')).toBe('');
    // explicitly allowed: followed (unless the kernel's own protection refuses), and the target stays empty
    const l = await lock(link, { allowUnsafeSymlink: true, record: true }).then(
      (x) => x,
      (e: { code?: string }) => e,
    );
    if (protectedSymlinks) {
      expect(l).toMatchObject({ code: 'EACCES' });
    } else {
      expect((l as { release(): void }).release).toBeTypeOf('function');
      (l as { release(): void }).release();
    }
    expect(readFileSync(target, 'utf8')).toBe('');
  });

  it("one's own link keeps working, in a private directory and in a sticky one; a dangling own link is ENOENT, not a new file", async () => {
    for (const d of [tempDir(), stickyDir()]) {
      const target = join(tempDir(), 'real.lock');
      writeFileSync(target, 'data');
      const link = join(d, 'mine.lock');
      execFileSync('ln', ['-s', target, link]);
      const l = await lock(link);
      expect(statSync(target).ino).toBe(statSync(link).ino);
      l.release();
      expect(readFileSync(target, 'utf8')).toBe('data');
      const dangling = join(d, 'dangling.lock');
      execFileSync('ln', ['-s', join(d, 'missing-target'), dangling]);
      await expect(lock(dangling)).rejects.toMatchObject({ code: 'ENOENT', path: dangling });
      expect(existsSync(join(d, 'missing-target'))).toBe(false);
    }
  });
});

/**
 * Runs `cycle` (a lock and its release) for 3 s while a racer swaps
 * `racePath` (a lock file, or proper-lockfile's marker) with another file in
 * `d`, and checks that the other file was never deleted and nothing was left
 * aside. With `mayFail`, a cycle that finds the other file in place may fail
 * (EEXIST, ELOCKED), as it should: it is not ours to take.
 */
/**
 * Runs `cycle` beside a racer swapping `racePath` with another file, sized by
 * events rather than wall time: the racer starts on its "ready" line, and the
 * cycles go on until both sides have done at least 150 of theirs.
 */
async function underRacer(d: string, racePath: string, cycle: () => Promise<void>, mayFail = false) {
  const other = join(d, 'precious');
  const racer = attach(
    spawn('python3', [join(FIXTURES, 'exchange-racer.py'), racePath, other, '600'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    }),
  );
  await racer.waitFor('ready');
  let cycles = 0;
  const racerSwaps = () =>
    Number(
      racer.lines
        .filter((l) => l.startsWith('swaps '))
        .pop()
        ?.slice(6) ?? 0,
    );
  while (cycles < 150 || racerSwaps() < 150) {
    try {
      await cycle();
    } catch (err) {
      if (!mayFail) throw err;
    } finally {
      cycles++;
    }
    if (cycles % 50 === 0) await new Promise((r) => setImmediate(r)); // let the racer's lines in
  }
  racer.child.stdin!.end();
  const { swaps, deleted } = JSON.parse(await racer.waitFor(/^\{/));
  expect(swaps).toBeGreaterThanOrEqual(150);
  expect(deleted).toBe(0);
  // nothing left aside under a hidden name either
  expect(readdirSync(d).filter((n) => n.includes('fslock-unlink'))).toEqual([]);
}

describe('unlinkOnRelease never deletes a file it did not hold', () => {
  it.runIf(process.platform === 'linux')(
    'under a racer swapping the lock path with another file (RENAME_EXCHANGE), zero foreign files deleted',
    () => {
      const d = tempDir();
      const p = join(d, 'u.lock');
      return underRacer(d, p, async () => {
        const l = await lock(p, { unlinkOnRelease: true });
        l.release();
      });
    },
    30_000,
  );
});

describe('the drop-ins never delete a file that replaced their own lock file', () => {
  it.runIf(process.platform === 'linux')(
    'fslock/lockfile unlockSync under a RENAME_EXCHANGE racer: zero foreign files deleted',
    () => {
      const d = tempDir();
      const p = join(d, 'l.lock');
      return underRacer(
        d,
        p,
        async () => {
          lf.lockSync(p);
          lf.unlockSync(p);
        },
        true,
      );
    },
    30_000,
  );

  it.runIf(process.platform === 'linux')(
    "fslock/proper-lockfile's release under a RENAME_EXCHANGE racer on its marker: zero foreign files deleted",
    () => {
      const d = tempDir();
      const f = join(d, 'data');
      writeFileSync(f, 'data');
      return underRacer(
        d,
        join(`${f}.lock`, '.fslock'),
        async () => {
          const release = await pl.lock(f, { realpath: false });
          await release();
        },
        true,
      );
    },
    30_000,
  );
});

describe('holder names cannot be spoofed or used to inject terminal escapes', () => {
  it.runIf(canSwitchUser)(
    "a record planted by another user naming pid 1 is not believed: the kernel's holder is shown",
    async () => {
      const d = stickyDir();
      const p = join(d, 'held.lock');
      const h = startNode('hold.cjs', [p]);
      await h.waitFor('locked');
      const st = statSync(p, { bigint: true });
      const fake = {
        fslock: 1,
        pid: 1,
        hostname: hostname(),
        startedAt: new Date().toISOString(),
        file: `${st.dev}:${st.ino}`,
        argv: ['backup-daemon', '--harmless'],
      };
      writeFileSync(join(d, 'fake.json'), `${JSON.stringify(fake)}\n`);
      chmodSync(join(d, 'fake.json'), 0o644);
      asOther('cp', [join(d, 'fake.json'), `${p}.fslock-holder`]);
      const info = await inspect(p);
      expect(info.holder?.pid).toBe(h.child.pid);
      expect(info.holderSource).toBe('kernel');
      const cli = await fslock(['inspect', p]);
      expect(cli.stdout).not.toContain('backup-daemon');
      expect(cli.stdout).toContain(`pid ${h.child.pid}`);
      const err = await lock(p, { timeout: 0 }).catch((e) => e);
      expect(err.message).not.toContain('backup-daemon');
      h.child.kill();
      await h.exited;
    },
  );

  it.runIf(canSwitchUser)(
    'a record planted inside the lock file by the user who created it is not believed either',
    async () => {
      const d = stickyDir();
      const p = join(d, 'planted.lock');
      const fake = {
        fslock: 1,
        pid: 1,
        hostname: hostname(),
        startedAt: new Date().toISOString(),
        argv: ['backup-daemon', '--harmless'],
      };
      writeFileSync(join(d, 'fake.json'), `${JSON.stringify(fake)}\n`);
      chmodSync(join(d, 'fake.json'), 0o644);
      asOther('cp', [join(d, 'fake.json'), p]); // the other user's file, holding a fake record
      const h = startNode('hold.cjs', [p]);
      await h.waitFor('locked');
      const info = await inspect(p);
      expect(info.holder?.pid).toBe(h.child.pid);
      const cli = await fslock(['inspect', p]);
      expect(cli.stdout).not.toContain('backup-daemon');
      expect(cli.stdout).not.toMatch(/pid 1\b/);
      h.child.kill();
      await h.exited;
    },
  );

  it('a record from another host is labelled as such, not presented as a local process', async () => {
    const d = tempDir();
    const p = join(d, 'nfs.lock');
    writeFileSync(p, '');
    const st = statSync(p, { bigint: true });
    // a holder on another host: the local kernel sees nothing on the file
    const rec = {
      fslock: 1,
      pid: 4321,
      hostname: 'build-07.example',
      startedAt: new Date().toISOString(),
      file: `${st.dev}:${st.ino}`,
    };
    writeFileSync(`${p}.fslock-holder`, `${JSON.stringify(rec)}\n`);
    const l = startNode('hold.cjs', [p, JSON.stringify({ primitive: 'ofd' })]); // OFD locks carry no pid in the kernel table
    await l.waitFor('locked');
    const info = await inspect(p);
    expect(info).toMatchObject({
      holderSource: 'record',
      holderRemote: true,
      holder: { pid: 4321, hostname: 'build-07.example' },
    });
    const err = await lock(p, { timeout: 0 }).catch((e) => e);
    expect(err.message).toContain('held by pid 4321 on another host, build-07.example');
    const cli = await fslock(['inspect', p]);
    expect(cli.stdout).toContain('another host');
    l.child.kill();
    await l.exited;
  });

  it('a holder whose argv carries newlines and escape sequences cannot fake lines or drive the terminal', async () => {
    const p = join(tempDir(), 'esc.lock');
    const evil = '\n  holder: pid 1 on host, since 2020 /sbin/init\u001b[2J\u001b]0;pwned\u0007\u202e';
    const h = attach(
      spawn(process.execPath, [join(FIXTURES, 'hold.cjs'), p, '{}', evil], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    await h.waitFor('locked');
    const outputs: string[] = [];
    outputs.push((await fslock(['inspect', p])).stdout);
    outputs.push((await fslock(['run', '-n', p, 'true'])).stderr);
    outputs.push((await fslock(['run', '-w', '0.1', p, 'true'])).stderr);
    outputs.push((await lock(p, { timeout: 0 }).catch((e) => e)).message);
    outputs.push((await lock(p, { timeout: 50 }).catch((e) => e)).message);
    for (const out of outputs) {
      // eslint-disable-next-line no-control-regex -- looking for exactly these
      expect(out).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
      expect(out).not.toMatch(/^\s*holder: pid 1 /m);
      expect(out).toContain('\\x1b[2J');
    }
    // --json stays exact
    const json = JSON.parse((await fslock(['inspect', '--json', p])).stdout);
    expect(json.holder.argv).toContain(evil);
    h.child.kill();
    await h.exited;
  });

  it('escapeText shows every control character visibly', () => {
    expect(escapeText('a\nb\tc\u001b[0m\u0007\u009b\u202ed')).toBe('a\\nb\\tc\\x1b[0m\\x07\\x9b\\u202ed');
    expect(escapeText('plain ascii ünïcode')).toBe('plain ascii ünïcode');
  });
});

describe('a SIGURG listener in the program', () => {
  it.runIf(process.platform === 'linux')(
    'costs no signal storm, no delay and no stuck thread when waits are cancelled',
    async () => {
      const p = join(tempDir(), 'urg.lock');
      const h = startNode('hold.cjs', [p]);
      await h.waitFor('locked');
      const r = await run(process.execPath, [join(FIXTURES, 'sigurg-listener.cjs'), p]);
      expect(r.code, r.stderr).toBe(0);
      const j = JSON.parse(r.stdout);
      // the wake signal is a real-time signal here: the listener never hears it
      expect(j.calls).toBe(0);
      expect(j.abort).toBe('ABORT_ERR');
      for (const ms of j.durations) expect(ms).toBeLessThan(900); // 100 ms timeouts, 50 ms abort: no +1 s
      // no descriptor of the lock file left behind by a stuck waiter thread
      expect(j.extra.filter((x: string) => x.includes('urg.lock'))).toEqual([]);
      h.child.kill();
      await h.exited;
    },
  );
});

describe.runIf(canSwitchUser)('trash in a crate directory', () => {
  it("only trash of fslock's own making (a directory of the exact shape, owned by us) is removed", async () => {
    const d = stickyDir();
    const crate = join(d, 'crate');
    const s = await openSession(crate);
    await s.finalize('abc');
    chmodSync(crate, 0o1777);
    const planted = [
      '.fslock-trash-s-0000000001-0000001-working-0a0b0c0d',
      '.fslock-trash-evil',
      '.fslock-trash-s-0000000002-0000002-x-11223344',
    ];
    asOther('mkfifo', [join(crate, planted[0]!)]);
    asOther('touch', [join(crate, planted[1]!)]);
    asOther('mkdir', [join(crate, planted[2]!)]);
    const ours = '.fslock-trash-s-0000000003-0000003-working-aabbccdd';
    mkdirSync(join(crate, ours));
    writeFileSync(join(crate, ours, 'f'), '');
    const r = await collectGarbage(crate);
    expect(r.deleted).toEqual([join(crate, ours)]);
    for (const name of planted) expect(existsSync(join(crate, name)), name).toBe(true);
  });
});
