// Windows tests: run by scripts/test-windows.js with a real Windows node.exe
// under Wine, against the MinGW-built addon loaded from prebuilds/win32-x64
// (node:test, because this runs inside a staged copy of the package).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const fslock = require('../../dist/cjs/index.js');
const { binding } = require('../../dist/cjs/binding.js');
const { openSession, collectGarbage } = require('../../dist/cjs/session/index.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-win-'));
let n = 0;
const file = () => path.join(dir, `f${n++}.lock`);
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs a child node.exe that tries the lock; resolves with its report. */
function childTry(p, opts = {}) {
  const code = `const f = require(${JSON.stringify(path.resolve(__dirname, '../../dist/cjs/index.js'))});
    const l = f.tryLock(${JSON.stringify(p)}, ${JSON.stringify(opts)});
    process.stdout.write(l ? 'got' : 'busy'); if (l) l.release();`;
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('exit', () => resolve(out));
  });
}

function childHold(p, ms) {
  const code = `const f = require(${JSON.stringify(path.resolve(__dirname, '../../dist/cjs/index.js'))});
    const l = f.lockSync(${JSON.stringify(p)}); process.stdout.write('held');
    setTimeout(() => process.exit(0), ${ms});`;
  const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const held = new Promise((resolve) => c.stdout.once('data', () => resolve()));
  const exited = new Promise((resolve) => c.on('exit', resolve));
  return { c, held, exited };
}

test('the binary is the MinGW build of these sources, and auto resolves to LockFileEx', () => {
  assert.equal(process.platform, 'win32');
  assert.equal(binding.sourceHash, process.env.FSLOCK_EXPECTED_SOURCE_HASH);
  const r = fslock.primitives();
  assert.equal(r.auto, 'windows');
  assert.deepEqual(r.available, { flock: false, ofd: false, posix: false, windows: true });
  assert.equal(r.kernelWait, false); // waits poll: see README "Platforms"
});

test('exclusive excludes a second handle in the same process; shared locks coexist', async () => {
  const p = file();
  const l = await fslock.lock(p);
  assert.equal(l.primitive, 'windows');
  assert.equal(fslock.tryLock(p), null);
  assert.equal(fslock.tryLock(p, { mode: 'shared' }), null);
  l.release();
  const s1 = fslock.tryLock(p, { mode: 'shared' });
  const s2 = fslock.tryLock(p, { mode: 'shared' });
  assert.ok(s1 && s2);
  assert.equal(fslock.tryLock(p), null);
  s1.release();
  s2.release();
  const x = fslock.tryLock(p);
  assert.ok(x);
  x.release();
});

test('another process is excluded while held, and gets it after release', async () => {
  const p = file();
  const l = fslock.lockSync(p);
  assert.equal(await childTry(p), 'busy');
  l.release();
  assert.equal(await childTry(p), 'got');
});

test('a holder that exits releases; a handle closed by release releases', async () => {
  const p = file();
  const h = childHold(p, 300);
  await h.held;
  assert.equal(fslock.tryLock(p), null);
  await h.exited;
  const l = fslock.tryLock(p);
  assert.ok(l, 'the lock of an exited process must be free');
  l.release();
});

test('timeout 0 is ELOCKED; a timed wait is ETIMEDOUT; abort is ABORT_ERR', async () => {
  const p = file();
  const l = fslock.lockSync(p);
  await assert.rejects(fslock.lock(p, { timeout: 0 }), { code: 'ELOCKED' });
  assert.throws(() => fslock.lockSync(p, { timeout: 0 }), { code: 'ELOCKED' });
  const t0 = Date.now();
  await assert.rejects(fslock.lock(p, { timeout: 150 }), { code: 'ETIMEDOUT' });
  assert.ok(Date.now() - t0 >= 140);
  // a synchronous wait for a lock this thread holds could never end
  assert.throws(() => fslock.lockSync(p, { timeout: 100 }), { code: 'EDEADLK' });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(fslock.lock(p, { signal: ac.signal }), { code: 'ABORT_ERR', name: 'AbortError' });
  l.release();
});

test('a waiter gets the lock when another process releases it', async () => {
  const p = file();
  const h = childHold(p, 200);
  await h.held;
  const l = await fslock.lock(p, { timeout: 10_000 });
  l.release();
  await h.exited;
});

test('data stays readable while held (the locked byte is far past it); the record is a sidecar', async () => {
  const p = file();
  fs.writeFileSync(p, 'user data');
  const l = await fslock.lock(p, { record: true });
  assert.equal(fs.readFileSync(p, 'utf8'), 'user data'); // another handle reads the file
  const rec = JSON.parse(fs.readFileSync(`${p}.fslock-holder`, 'utf8'));
  assert.equal(rec.pid, process.pid);
  const info = await fslock.inspect(p);
  assert.equal(info.held, true);
  assert.equal(info.mode, 'exclusive');
  assert.equal(info.holder.pid, process.pid);
  l.release();
  assert.equal(fs.readFileSync(p, 'utf8'), 'user data');
  assert.equal(fs.existsSync(`${p}.fslock-holder`), false);
  assert.equal((await fslock.inspect(p)).held, false);
});

test('inspect sees a shared holder too', async () => {
  const p = file();
  const s = await fslock.lock(p, { mode: 'shared' });
  const info = await fslock.inspect(p);
  assert.equal(info.held, true);
  assert.equal(info.mode, 'shared');
  s.release();
  assert.equal((await fslock.inspect(p)).held, false);
});

test('a lock file can be deleted and renamed while held (FILE_SHARE_DELETE)', async () => {
  const p = file();
  const l = await fslock.lock(p);
  fs.renameSync(p, `${p}.moved`);
  fs.unlinkSync(`${p}.moved`);
  assert.equal(fs.existsSync(p), false);
  l.release();
  const u = await fslock.lock(p, { unlinkOnRelease: true });
  u.release();
  assert.equal(fs.existsSync(p), false);
});

test('byte ranges; downgrade keeps the lock; upgrade says it was not atomic', async () => {
  const p = file();
  const a = fslock.tryLock(p, { range: { offset: 0, length: 10 } });
  const b = fslock.tryLock(p, { range: { offset: 10, length: 10 } });
  assert.ok(a && b);
  assert.equal(fslock.tryLock(p, { range: { offset: 5, length: 10 } }), null);
  a.release();
  b.release();
  const l = await fslock.lock(p);
  l.downgrade();
  const other = fslock.tryLock(p, { mode: 'shared' });
  assert.ok(other);
  assert.equal(fslock.tryLock(p), null);
  other.release();
  assert.deepEqual(await l.upgrade({ timeout: 1000 }), { atomic: false });
  assert.equal(fslock.tryLock(p, { mode: 'shared' }), null);
  l.release();
});

test('sessions: finalize renames, collection removes, for real', async () => {
  const crate = path.join(dir, 'crate');
  const s1 = await openSession(crate);
  fs.writeFileSync(path.join(s1.path, 'a.bin'), 'A');
  const f1 = await s1.finalize('one');
  const s2 = await openSession(crate);
  assert.equal(s2.source, f1);
  assert.equal(fs.readFileSync(path.join(s2.path, 'a.bin'), 'utf8'), 'A');
  const f2 = await s2.finalize('two');
  assert.deepEqual(s2.gcReport.errors, []);
  assert.ok(!fs.existsSync(f1), 'the older version is collected');
  assert.ok(fs.existsSync(f2));
  const r = await collectGarbage(crate);
  assert.deepEqual(r.kept, [f2]);
});

test('the drop-ins: a lock file placed from a temporary file, excluded while held, gone after', async () => {
  assert.equal(binding.constants.ANONYMOUS_FILE, 0);
  const lf = require('../../dist/cjs/compat/lockfile.js');
  const pl = require('../../dist/cjs/compat/proper-lockfile.js');
  const sub = fs.mkdtempSync(path.join(dir, 'compat-'));
  const p = path.join(sub, 'x.lock');
  for (let i = 0; i < 3; i++) {
    lf.lockSync(p);
    assert.match(fs.readFileSync(p, 'utf8'), /"fslock":1/);
    assert.throws(() => lf.lockSync(p), { code: 'EEXIST' });
    lf.unlockSync(p);
  }
  const data = path.join(sub, 'data');
  fs.writeFileSync(data, 'keep');
  const release = await pl.lock(data);
  await assert.rejects(pl.lock(data), { code: 'ELOCKED' });
  await release();
  assert.deepEqual(fs.readdirSync(sub), ['data']);
  assert.equal(fs.readFileSync(data, 'utf8'), 'keep');
});
