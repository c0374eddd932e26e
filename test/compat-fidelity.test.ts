// The drop-ins behave as upstream where a migrating user steps first: a
// dangling symlink at the lock path, lockfile's errors and retries, cleanup on
// signals, unref'd retries, every import style, and loading under test
// runners that predate `node:` specifiers and the `performance` global.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import pl from '../src/compat/proper-lockfile.js';
import lf from '../src/compat/lockfile.js';
import { attach, cleanupTempDirs, run, since, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const ROOT = resolve(__dirname, '..');
const DIST = join(ROOT, 'dist', 'cjs');

describe('a dangling symlink at the lock path', () => {
  it('fslock/proper-lockfile answers ELOCKED at once, as upstream (no spin, no blocked event loop)', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'f'), '');
    symlinkSync(join(d, 'missing'), join(d, 'f.lock'));
    const t0 = performance.now();
    await expect(pl.lock(join(d, 'f'))).rejects.toMatchObject({ code: 'ELOCKED' });
    expect(since(t0)).toBeLessThan(1000);
  });

  it('fslock/lockfile answers EEXIST at once, as upstream', async () => {
    const d = tempDir();
    symlinkSync(join(d, 'missing'), join(d, 'g.lock'));
    const t0 = performance.now();
    const err = await new Promise<Error | null>((r) => lf.lock(join(d, 'g.lock'), (e) => r(e)));
    expect(err).toMatchObject({ code: 'EEXIST' });
    expect(since(t0)).toBeLessThan(1000);
  });
});

describe('fslock/lockfile errors and retries as upstream', () => {
  it("EEXIST says code, syscall 'open', the lock path and upstream's message", () => {
    const p = join(tempDir(), 'x.lock');
    lf.lockSync(p);
    let err: (Error & { code?: string; syscall?: string; path?: string }) | null = null;
    try {
      lf.lockSync(p);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err).toMatchObject({
      code: 'EEXIST',
      syscall: 'open',
      path: p,
      message: `EEXIST: file already exists, open '${p}'`,
    });
    lf.unlockSync(p);
  });

  it('lockfile.filetime set by the caller decides staleness, as upstream (read at call time)', () => {
    const p = join(tempDir(), 'old.lock');
    writeFileSync(p, ''); // a real lockfile holder's leftover
    const old = new Date(Date.now() - 60_000);
    utimesSync(p, old, old);
    const before = lf.filetime;
    lf.filetime = 'mtime';
    try {
      expect(lf.checkSync(p, { stale: 10_000 })).toBe(false);
      lf.lockSync(p, { stale: 10_000 }); // taken over: stale by mtime
      lf.unlockSync(p);
    } finally {
      lf.filetime = before;
    }
  });

  it('retries any failure to open, not only EEXIST (ENOENT until the directory exists)', async () => {
    const d = join(tempDir(), 'later');
    const p = join(d, 'x.lock');
    setTimeout(() => mkdirSync(d), 150);
    const err = await new Promise<Error | null>((r) => lf.lock(p, { retries: 20, retryWait: 50 }, (e) => r(e)));
    expect(err).toBeNull();
    expect(existsSync(p)).toBe(true);
    lf.unlockSync(p);
  });

  it('unlockSync never deletes a file of somebody else that replaced the lock file meanwhile', () => {
    const dir = tempDir();
    const p = join(dir, 'r.lock');
    lf.lockSync(p);
    writeFileSync(join(dir, 'theirs'), 'their data');
    renameSync(join(dir, 'theirs'), p); // someone else's file now has the lock file's name
    lf.unlockSync(p);
    expect(readFileSync(p, 'utf8')).toBe('their data');
  });

  it('opens through fs.openSync (lockSync) and fs.open (lock), so hooks on them see and can fail every attempt', async () => {
    const dir = tempDir();
    // a CommonJS program, as users and upstream's tests load it: hooks on the fs module object apply
    const script = `
      const fs = require('fs');
      const lockFile = require(${JSON.stringify(join(DIST, 'compat', 'lockfile.js'))});
      const out = {};
      let fails = 4;
      const realSync = fs.openSync;
      fs.openSync = (p, mode) => {
        if (fails-- > 0) throw Object.assign(new Error('injected'), { code: fails % 2 ? 'EEXIST' : 'ENOENT' });
        return realSync(p, mode);
      };
      lockFile.lockSync(${JSON.stringify(join(dir, 'a.lock'))}, { retries: 4 });
      out.syncFailsLeft = fails;
      out.syncExists = fs.existsSync(${JSON.stringify(join(dir, 'a.lock'))});
      lockFile.unlockSync(${JSON.stringify(join(dir, 'a.lock'))});
      fs.openSync = realSync;
      let asyncFails = 2;
      const real = fs.open;
      fs.open = (p, mode, cb) => {
        if (asyncFails-- > 0) return process.nextTick(cb, Object.assign(new Error('injected'), { code: 'ENOENT' }));
        return real(p, mode, cb);
      };
      lockFile.lock(${JSON.stringify(join(dir, 'b.lock'))}, { retries: 1 }, (err) => {
        out.asyncFirst = err ? err.message : null; // one retry is not enough for two failures
        lockFile.lock(${JSON.stringify(join(dir, 'b.lock'))}, { retries: 1 }, (err2) => {
          out.asyncSecond = err2 ? err2.message : null;
          out.asyncFailsLeft = asyncFails;
          lockFile.unlockSync(${JSON.stringify(join(dir, 'b.lock'))});
          out.left = fs.readdirSync(${JSON.stringify(dir)});
          console.log(JSON.stringify(out));
        });
      });`;
    const r = await run(process.execPath, ['-e', script]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      syncFailsLeft: -1, // four injected failures, retried, then the real open
      syncExists: true,
      asyncFirst: 'injected',
      asyncSecond: null,
      asyncFailsLeft: -1,
      left: [], // no temporary file or lock file left behind
    });
  });

  it('lock() with fs.open not hooked makes no threadpool round trip: it opens at once, as fslock does', async () => {
    const dir = tempDir();
    const p = JSON.stringify(join(dir, 'c.lock'));
    // counts Node's asynchronous fs requests made while lock() runs
    const script = `
      const asyncHooks = require('async_hooks');
      const fs = require('fs');
      const lockFile = require(${JSON.stringify(join(DIST, 'compat', 'lockfile.js'))});
      let fsRequests = 0;
      const hook = asyncHooks.createHook({ init(id, type) { if (type === 'FSREQCALLBACK') fsRequests++; } });
      hook.enable();
      lockFile.lock(${p}, { wait: 1000 }, (err) => {
        hook.disable();
        const out = { err: err && err.message, fsRequests, exists: fs.existsSync(${p}) };
        lockFile.unlockSync(${p});
        out.left = fs.readdirSync(${JSON.stringify(dir)});
        console.log(JSON.stringify(out));
      });`;
    const r = await run(process.execPath, ['-e', script]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ err: null, fsRequests: 0, exists: true, left: [] });
  });
});

describe('cleanup on SIGINT, SIGTERM and SIGHUP, as upstream', () => {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${sig}: both drop-ins remove their artefacts and the process still dies of the signal`, async () => {
      const d = tempDir();
      const file = join(d, 'data');
      writeFileSync(file, '');
      const script = `
        const pl = require(${JSON.stringify(join(DIST, 'compat', 'proper-lockfile.js'))});
        const lf = require(${JSON.stringify(join(DIST, 'compat', 'lockfile.js'))});
        lf.lockSync(${JSON.stringify(join(d, 'other.lock'))});
        pl.lock(${JSON.stringify(file)}).then(() => { console.log('locked'); setInterval(() => {}, 1000); });`;
      const h = attach(spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }));
      await h.waitFor('locked');
      expect(readdirSync(d).sort()).toEqual(['data', 'data.lock', 'other.lock']);
      h.child.kill(sig);
      const { signal } = await h.exited;
      expect(signal).toBe(sig);
      expect(readdirSync(d)).toEqual(['data']);
    });
  }
});

describe('retries: { unref: true }', () => {
  it('a wait with unref retries does not keep the process alive, as upstream', async () => {
    const d = tempDir();
    const file = join(d, 'data');
    writeFileSync(file, '');
    const release = await pl.lock(file);
    const script = `
      const pl = require(${JSON.stringify(join(DIST, 'compat', 'proper-lockfile.js'))});
      pl.lock(${JSON.stringify(file)}, { retries: { retries: 1000, minTimeout: 50, maxTimeout: 50, unref: true } })
        .then(() => console.log('locked'), (e) => console.log('error', e.code));`;
    const t0 = performance.now();
    const r = await run(process.execPath, ['-e', script], { timeoutMs: 20_000 });
    expect(r.signal).toBeNull(); // exited on its own, long before 1000 × 50 ms
    expect(r.stdout).toBe('');
    expect(since(t0)).toBeLessThan(10_000);
    await release();
  });
});

describe('every import style upstream supports, and code typed against @types', () => {
  it('TypeScript compiled to CommonJS (esModuleInterop) and to nodenext runs with default, namespace and named imports', () => {
    const d = tempDir();
    mkdirSync(join(d, 'node_modules', '@types'), { recursive: true });
    symlinkSync(ROOT, join(d, 'node_modules', 'fslock'));
    symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(d, 'node_modules', '@types', 'node'));
    const lockPath = join(d, 'x.lock');
    writeFileSync(
      join(d, 'main.ts'),
      `import lockFile from 'fslock/lockfile';
import * as lockNs from 'fslock/lockfile';
import { lockSync, unlockSync, type Options } from 'fslock/lockfile';
import properLockfile from 'fslock/proper-lockfile';
import { type LockOptions, type CheckOptions, type UnlockOptions } from 'fslock/proper-lockfile';
// callbacks written against @types/lockfile
const cb: (err: Error | null) => void = (err) => { if (err) throw err; };
const checkCb: (err: Error | null, isLocked: boolean) => void = () => undefined;
const opts: Options = { stale: 1000 };
const lo: LockOptions = { realpath: false };
const co: CheckOptions = { realpath: false };
const uo: UnlockOptions = { realpath: false };
lockFile.lockSync(${JSON.stringify(lockPath)}, opts);
lockNs.unlockSync(${JSON.stringify(lockPath)});
lockSync(${JSON.stringify(lockPath)});
unlockSync(${JSON.stringify(lockPath)});
lockFile.lock(${JSON.stringify(lockPath)}, cb);
lockFile.check(${JSON.stringify(lockPath)}, checkCb);
lockFile.unlock(${JSON.stringify(lockPath)}, cb);
void properLockfile.checkSync(${JSON.stringify(lockPath)}, co);
void lo; void uo;
console.log('ok');
`,
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    for (const flags of [
      ['--module', 'commonjs', '--moduleResolution', 'node10', '--esModuleInterop'],
      ['--module', 'nodenext', '--moduleResolution', 'nodenext'],
    ]) {
      const out = join(d, `out-${flags[1]}`);
      execFileSync(
        process.execPath,
        [
          tsc,
          '--strict',
          '--skipLibCheck',
          '--target',
          'es2022',
          '--types',
          'node',
          ...flags,
          '--outDir',
          out,
          join(d, 'main.ts'),
        ],
        { cwd: d },
      );
      expect(
        execFileSync(process.execPath, [join(out, 'main.js')], { cwd: d })
          .toString()
          .trim(),
      ).toBe('ok');
    }
  });
});

describe('loading where test runners of legacy projects run', () => {
  it('loads without `node:` specifiers (Jest < 27.1) and without the global `performance` and `AbortSignal` (Jest < 28)', () => {
    const script = `
      const Module = require('module');
      const orig = Module._resolveFilename;
      Module._resolveFilename = function (request, ...rest) {
        if (request.startsWith('node:')) { const e = new Error("Cannot find module '" + request + "'"); e.code = 'MODULE_NOT_FOUND'; throw e; }
        return orig.call(this, request, ...rest);
      };
      delete globalThis.performance;
      delete globalThis.AbortSignal;
      const lf = require(${JSON.stringify(join(DIST, 'compat', 'lockfile.js'))});
      const pl = require(${JSON.stringify(join(DIST, 'compat', 'proper-lockfile.js'))});
      const p = require('path').join(require('os').tmpdir(), 'fslock-legacy-' + process.pid);
      lf.lockSync(p + '.lock'); lf.unlockSync(p + '.lock');
      require('fs').writeFileSync(p, '');
      pl.lock(p, { retries: 1 }).then((release) => release()).then(() => { require('fs').rmSync(p); console.log('ok'); });`;
    expect(execFileSync(process.execPath, ['-e', script]).toString().trim()).toBe('ok');
  });
});

describe('a dependency tree that uses proper-lockfile switches with npm overrides', () => {
  it('the README recipe: npm installs a dependency that requires proper-lockfile onto the drop-in (offline, real npm)', () => {
    const d = tempDir();
    // a published-style dependency that uses proper-lockfile, unchanged, as a tarball
    const dep = join(d, 'uses-pl');
    mkdirSync(dep);
    writeFileSync(
      join(dep, 'package.json'),
      JSON.stringify({
        name: 'uses-pl',
        version: '1.0.0',
        main: 'index.js',
        dependencies: { 'proper-lockfile': '^4.1.2' },
      }),
    );
    writeFileSync(join(dep, 'index.js'), "module.exports = require('proper-lockfile');\n");
    execFileSync('npm', ['pack', '--silent'], { cwd: dep, stdio: 'ignore' });
    // the app, with the README's two-file shim and its overrides entry
    const app = join(d, 'app');
    mkdirSync(join(app, 'vendor', 'proper-lockfile'), { recursive: true });
    writeFileSync(
      join(app, 'vendor', 'proper-lockfile', 'package.json'),
      JSON.stringify({ name: 'proper-lockfile', version: '4.1.2', main: 'index.js' }),
    );
    writeFileSync(
      join(app, 'vendor', 'proper-lockfile', 'index.js'),
      "module.exports = require('fslock/proper-lockfile');\n",
    );
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({
        name: 'app',
        version: '1.0.0',
        private: true,
        dependencies: { fslock: `file:${ROOT}`, 'uses-pl': `file:${join(dep, 'uses-pl-1.0.0.tgz')}` },
        overrides: { 'proper-lockfile': 'file:./vendor/proper-lockfile' },
      }),
    );
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], {
      cwd: app,
      stdio: 'ignore',
    });
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `
      const lockfile = require('uses-pl');
      const f = require('path').join(${JSON.stringify(app)}, 'data'); require('fs').writeFileSync(f, '');
      lockfile.lock(f).then(async (release) => {
        console.log(require('fs').existsSync(f + '.lock/.fslock') ? 'kernel-locked drop-in' : 'upstream');
        await release();
      });`,
      ],
      { cwd: app },
    )
      .toString()
      .trim();
    expect(out).toBe('kernel-locked drop-in');
  });
});
