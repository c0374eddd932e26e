import { afterAll, describe, expect, it } from 'vitest';
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { lock } from '../src/index.js';
import { openSession } from '../src/session/index.js';
import { createRequire } from 'node:module';
import { attach, cleanupTempDirs, mountOverlay, run, since, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

// The CLI loads its subcommands with require(): run the built one in-process.
const { main } = createRequire(__filename)('../dist/cjs/cli/main.js') as typeof import('../src/cli/main.js');

const BIN = resolve(__dirname, '..', 'bin', 'fslock.js');
const fslock = (args: string[], opts: { timeoutMs?: number } = {}) => run(process.execPath, [BIN, ...args], opts);

function capture(isTTY = false) {
  let text = '';
  return {
    stream: { write: (s: string) => void (text += s), isTTY },
    get text() {
      return text;
    },
  };
}

describe('fslock (top level)', () => {
  it('--version, --help, unknown commands, and --help on every subcommand', async () => {
    const pkg = JSON.parse(readFileSync(resolve(__dirname, '..', 'package.json'), 'utf8'));
    expect((await fslock(['--version'])).stdout).toBe(`fslock ${pkg.version}\n`);
    expect((await fslock(['--help'])).stdout).toContain('usage: fslock <command>');
    const none = await fslock([]);
    expect(none.code).toBe(64);
    // not a command name: a lock file, as flock(1) reads it (and then a command is missing)
    const bad = await fslock(['frobnicate']);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('missing <command>');
    expect(bad.stderr).toContain("Try 'fslock --help'");
    for (const sub of ['run', 'probe', 'inspect', 'sessions', 'gc']) {
      const r = await fslock([sub, '--help']);
      expect(r.code, sub).toBe(0);
      expect(r.stdout).toContain(`usage: fslock ${sub}`);
    }
  });

  it('a bad option is a usage error (exit 64, as flock(1)) that names it', async () => {
    const r = await fslock(['run', '--bogus', 'x.lock', 'true']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--bogus');
    expect((await fslock(['run', '-w', 'soon', 'x.lock', 'true'])).code).toBe(64);
    expect((await fslock(['run', 'x.lock'])).stderr).toContain('missing <command>');
  });
});

describe('fslock run', () => {
  it('two concurrent invocations serialize: no overlap, the second says it waits and for whom', async () => {
    const d = tempDir();
    const lockFile = join(d, 'build.lock');
    const log = join(d, 'log');
    const script = `echo "start $$" >> ${log}; sleep 0.4; echo "end $$" >> ${log}`;
    const [a, b] = await Promise.all([
      fslock(['run', lockFile, '--', 'sh', '-c', script]),
      fslock(['run', lockFile, '--', 'sh', '-c', script]),
    ]);
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(4);
    const pid = (l: string) => l.split(' ')[1];
    expect(lines[0]).toMatch(/^start/);
    expect(lines[1]).toBe(`end ${pid(lines[0]!)}`);
    expect(lines[2]).toMatch(/^start/);
    expect(lines[3]).toBe(`end ${pid(lines[2]!)}`);
    const waited = [a, b].filter((r) => r.stderr.includes('Blocking waiting for file lock'));
    expect(waited).toHaveLength(1);
    // the kernel names the holder: the other fslock run, with its command line from /proc
    expect(waited[0]!.stderr).toMatch(
      new RegExp(`Blocking waiting for file lock on ${lockFile} \\(held by pid \\d+: \\S*node\\S* \\S*fslock\\S* run`),
    );
    expect(waited[0]!.stderr.match(/Blocking/g)).toHaveLength(1); // said once
  });

  it("passes on the command's exit status, and 128+N for a signal", async () => {
    const l = join(tempDir(), 'x.lock');
    expect((await fslock(['run', l, 'sh', '-c', 'exit 7'])).code).toBe(7);
    expect((await fslock(['run', l, '-c', 'kill -TERM $$'])).code).toBe(143);
    expect((await fslock(['run', l, '-c', 'echo hi'])).stdout).toBe('hi\n');
    const nf = await fslock(['run', l, 'definitely-not-a-command-xyz']);
    expect(nf.code).toBe(69); // flock(1): EX_UNAVAILABLE
    expect(nf.stderr).toContain('failed to execute definitely-not-a-command-xyz');
  });

  it('-n exits with the conflict code at once; -E changes it; -w gives up after the timeout', async () => {
    const l = join(tempDir(), 'n.lock');
    const held = await lock(l);
    let t0 = performance.now();
    const n = await fslock(['run', '-n', l, 'true']);
    expect(n.code).toBe(1);
    expect(n.stderr).toContain(`held by pid ${process.pid}`);
    expect(since(t0)).toBeLessThan(3000);
    expect((await fslock(['run', '-n', '-E', '42', l, 'true'])).code).toBe(42);
    expect((await fslock(['run', '-nq', l, 'true'])).stderr).toBe('');
    t0 = performance.now();
    const w = await fslock(['run', '-w', '0.3', l, 'true']);
    expect(w.code).toBe(1);
    expect(since(t0)).toBeGreaterThanOrEqual(300);
    expect(w.stderr).toContain('gave up waiting');
    held.release();
    expect((await fslock(['run', '-n', l, 'true'])).code).toBe(0);
  });

  it('shared runs overlap; an exclusive run waits for them', async () => {
    const d = tempDir();
    const l = join(d, 's.lock');
    const log = join(d, 'log');
    const script = `echo start >> ${log}; sleep 0.3; echo end >> ${log}`;
    await Promise.all([fslock(['run', '-s', l, '-c', script]), fslock(['run', '-s', l, '-c', script])]);
    expect(readFileSync(log, 'utf8').trim().split('\n')).toEqual(['start', 'start', 'end', 'end']);
  });

  it('SIGTERM to fslock is forwarded to the command; once it has exited fslock dies from SIGTERM', async () => {
    const l = join(tempDir(), 't.lock');
    const h = attach(
      spawn(process.execPath, [BIN, 'run', l, '-c', 'echo ready; exec sleep 30'], {
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    await h.waitFor('ready');
    h.child.kill('SIGTERM');
    expect(await h.exited).toEqual({ code: null, signal: 'SIGTERM' });
  });
});

describe('fslock probe', () => {
  const checkLinuxCells = (j: any) => {
    expect(j.tested).toEqual(['flock', 'ofd', 'posix']);
    const o = j.ownership;
    expect(o.secondOpen).toEqual({ flock: 'excluded', ofd: 'excluded', posix: 'not excluded' });
    expect(o.worker).toEqual({ flock: 'excluded', ofd: 'excluded', posix: 'not excluded' });
    expect(o.otherProcess).toEqual({ flock: 'excluded', ofd: 'excluded', posix: 'excluded' });
    expect(o.closeOther).toEqual({ flock: 'kept', ofd: 'kept', posix: 'lost' });
    expect(o.inheritedChild.posix).toBe('not inherited');
    expect(o.inheritedChild.flock).toBe('child holds the lock');
    expect(o.readOnlyExclusive).toEqual({ flock: 'allowed', ofd: 'EBADF', posix: 'EBADF' });
    expect(o.ranges).toEqual({ flock: 'no (whole file)', ofd: 'yes', posix: 'yes' });
    expect(o.failedUpgrade).toEqual({ flock: 'shared lock lost', ofd: 'shared lock kept', posix: 'shared lock kept' });
    expect(o.directory.flock).toBe('shared and exclusive');
    expect(o.directory.ofd).toMatch(/^shared only/);
    expect(j.crossPrimitive).toEqual({
      flock: { flock: 'conflict', ofd: 'no conflict', posix: 'no conflict' },
      ofd: { flock: 'no conflict', ofd: 'conflict', posix: 'conflict' },
      posix: { flock: 'no conflict', ofd: 'conflict', posix: 'conflict' },
    });
  };

  it.runIf(process.platform === 'linux')(
    'on the local filesystem the measured cells are what each primitive is known to do',
    async () => {
      const d = tempDir();
      const r = await fslock(['probe', '--json', d]);
      expect(r.code).toBe(0);
      const j = JSON.parse(r.stdout);
      checkLinuxCells(j);
      expect(j.primitives.auto).toBe('flock+ofd');
      expect(j.warnings).toEqual([]);
      expect(execFileSync('ls', ['-A', d]).toString()).toBe(''); // cleaned up
    },
  );

  it.runIf(process.platform === 'linux' && process.getuid?.() === 0)('on a tmpfs mount too', async () => {
    const d = tempDir();
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', d]);
    try {
      const j = JSON.parse((await fslock(['probe', '--json', d])).stdout);
      expect(j.filesystem.name).toBe('tmpfs');
      checkLinuxCells(j);
    } finally {
      execFileSync('umount', [d]);
    }
  });

  it.runIf(process.platform === 'linux' && process.getuid?.() === 0)('warns on an overlay mount', async () => {
    const { merged, unmount } = mountOverlay();
    try {
      const r = await fslock(['probe', merged]);
      expect(r.stdout).toContain('warning: locks are unreliable on overlay');
    } finally {
      unmount();
    }
  });

  it('prints aligned tables; colour only on a TTY and never with NO_COLOR', async () => {
    const d = tempDir();
    const plain = capture(false);
    await main(['probe', d], { stdout: plain.stream, stderr: capture().stream });
    expect(plain.text).toContain('Who owns a lock');
    expect(plain.text).not.toContain('\u001b[');
    const tty = capture(true);
    await main(['probe', d], { stdout: tty.stream, stderr: capture().stream });
    expect(tty.text).toContain('\u001b[');
    process.env.NO_COLOR = '1';
    try {
      const nc = capture(true);
      await main(['probe', d], { stdout: nc.stream, stderr: capture().stream });
      expect(nc.text).not.toContain('\u001b[');
    } finally {
      delete process.env.NO_COLOR;
    }
  });
});

describe('fslock inspect, sessions, gc', () => {
  it('inspect shows the holder of a held lock, and free once released', async () => {
    const l = join(tempDir(), 'i.lock');
    const held = await lock(l);
    const r = await fslock(['inspect', l]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('held exclusive');
    expect(r.stdout).toContain(`pid ${process.pid}`);
    const j = JSON.parse((await fslock(['inspect', '--json', l])).stdout);
    expect(j).toMatchObject({ held: true, mode: 'exclusive', holder: { pid: process.pid } });
    held.release();
    expect((await fslock(['inspect', l])).stdout).toBe(`${l}: free\n`);
    expect((await fslock(['inspect', join(tempDir(), 'none')])).stdout).toContain('no such file');
  });

  it('sessions lists a crate directory and gc collects it', async () => {
    const crate = join(tempDir(), 'crate');
    const old = await openSession(crate, { now: () => Date.now() - 60_000 });
    writeFileSync(join(old.path, 'data.bin'), Buffer.alloc(2048));
    const oldPath = await old.finalize('aaa');
    const live = await openSession(crate);
    const s = await fslock(['sessions', crate]);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/NAME\s+STATE\s+AGE\s+SIZE\s+HELD/);
    expect(s.stdout).toMatch(new RegExp(`${old.prefix}-aaa\\s+finalized\\s+1m0\\ds\\s+2.0 KiB\\s+no`));
    expect(s.stdout).toMatch(new RegExp(`${live.prefix}-working\\s+working\\s+\\d+s\\s+2.0 KiB\\s+yes`));
    const j = JSON.parse((await fslock(['sessions', '--json', crate])).stdout);
    expect(j.map((x: { state: string }) => x.state)).toEqual(['finalized', 'working']);
    const newer = await openSession(crate);
    await newer.finalize('bbb'); // its own collection removes the older finalized version
    expect((await fslock(['gc', '--dry-run', '--age', '0', crate])).stdout).toContain(
      '0 would delete, 1 in use, 1 kept, 0 errors',
    );
    const g = await fslock(['gc', '--json', '--age', '0', crate]);
    expect(g.code).toBe(0);
    expect(JSON.parse(g.stdout)).toMatchObject({ inUse: [live.path], deleted: [] });
    expect(oldPath).not.toBe(newer.path);
    await live.abandon();
  });
});

describe("flock(1)'s command line", () => {
  const sh = (script: string) => run('sh', ['-c', script]);
  it('accepts its whole option set: -e, --nb, --wait, -o, -F, --verbose, -V, and the form without "run"', async () => {
    const d = tempDir();
    const l = join(d, 'o.lock');
    const held = await lock(l);
    expect((await fslock(['run', '-e', '--nb', l, 'true'])).code).toBe(1);
    expect((await fslock(['--nb', l, 'true'])).code).toBe(1); // flock(1)'s form, without 'run'
    expect((await fslock(['run', '--wait', '0.1', l, 'true'])).code).toBe(1);
    expect((await fslock(['run', '-E', '7', '-n', l, 'true'])).code).toBe(7);
    held.release();
    const v = await fslock(['run', '--verbose', '-F', '-o', l, 'echo', 'hi']);
    expect(v.code).toBe(0);
    expect(v.stdout).toBe('hi\n');
    expect(v.stderr).toMatch(/getting lock took [\d.]+ seconds/);
    expect(v.stderr).toContain('executing echo hi');
    expect((await fslock(['-V'])).stdout).toMatch(/^fslock \d/);
    expect((await fslock(['run', '-V'])).stdout).toMatch(/^fslock \d/);
  });

  it('the descriptor form: ( fslock -n 9 || exit 1; ... ) 9>file holds the lock for the subshell; -u unlocks', async () => {
    const d = tempDir();
    const f = join(d, 'fd.lock');
    const a = await sh(`( ${process.execPath} ${BIN} -n 9 || exit 1; flock -n ${f} true; echo "foreign $?" ) 9>${f}`);
    expect(a.stdout).toBe('foreign 1\n'); // held by the subshell's descriptor after fslock exited
    const b = await sh(
      `( ${process.execPath} ${BIN} 9; ${process.execPath} ${BIN} -u 9; flock -n ${f} true; echo "after unlock $?" ) 9>${f}`,
    );
    expect(b.stdout).toBe('after unlock 0\n');
    const c = await sh(
      `flock ${f} sh -c 'touch ${f}.held; sleep 1' & while [ ! -e ${f}.held ]; do sleep 0.01; done; ` +
        `( ${process.execPath} ${BIN} -n 9; echo "busy $?" ) 9>${f}; wait`,
    );
    expect(c.stdout).toBe('busy 1\n');
  });

  it("a usage error is one line saying what is wrong and how to see help; fslock help run prints run's help", async () => {
    const r = await fslock(['run', '--bogus', 'x.lock', 'true']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe("fslock run: unknown option --bogus\nTry 'fslock run --help' for more information.\n");
    const w = await fslock(['run', '-w']);
    expect(w.code).toBe(64);
    expect(w.stderr).toBe(
      "fslock run: option -w, --timeout needs a value\nTry 'fslock run --help' for more information.\n",
    );
    const help = await fslock(['help', 'run']);
    expect(help.stdout).toContain('usage: fslock run');
    expect((await fslock(['frobnicate'])).stderr.split('\n').filter(Boolean)).toHaveLength(2);
  });

  it('locks a directory, as flock(1) does', async () => {
    const dir = tempDir();
    const r = await sh(`${process.execPath} ${BIN} run ${dir} sh -c 'flock -n ${dir} true; echo "inside $?"'`);
    expect(r.stdout).toBe('inside 1\n');
  });
});
