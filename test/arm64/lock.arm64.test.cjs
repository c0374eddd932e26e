// linux-arm64 tests: run by scripts/test-arm64.js with an arm64 node under
// qemu-user, against the cross-built addon loaded from prebuilds/linux-arm64.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Worker } = require('node:worker_threads');
const fslock = require('../../dist/cjs/index.js');
const { binding } = require('../../dist/cjs/binding.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-arm64-'));
let n = 0;
const file = () => path.join(dir, `f${n++}.lock`);
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('the arm64 binary of these sources is loaded; auto is flock+ofd', () => {
  assert.equal(process.arch, 'arm64');
  assert.equal(binding.sourceHash, process.env.FSLOCK_EXPECTED_SOURCE_HASH);
  assert.equal(fslock.primitives().auto, 'flock+ofd');
});

test('excludes a second handle, a worker thread, and foreign flock(1) and lockf lockers', async () => {
  const p = file();
  const l = await fslock.lock(p);
  assert.equal(fslock.tryLock(p), null);
  const w = new Worker(
    `const f = require(${JSON.stringify(path.resolve(__dirname, '../../dist/cjs/index.js'))});
    const l = f.tryLock(${JSON.stringify(p)}); require('node:worker_threads').parentPort.postMessage(l !== null);`,
    { eval: true },
  );
  const [got] = await require('node:events').once(w, 'message');
  assert.equal(got, false);
  assert.equal(spawnSync('flock', ['-n', p, 'true']).status, 1);
  const py = `import fcntl, os, sys\nfd = os.open(${JSON.stringify(p)}, os.O_RDWR)\ntry:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(1)`;
  assert.equal(spawnSync('python3', ['-c', py]).status, 1);
  l.release();
  assert.equal(spawnSync('flock', ['-n', p, 'true']).status, 0);
});

test('kernel waits on the native thread: granted on release, ended by timeout and abort', async () => {
  const p = file();
  const l = await fslock.lock(p);
  const t0 = Date.now();
  await assert.rejects(fslock.lock(p, { timeout: 150 }), { code: 'ETIMEDOUT' });
  assert.ok(Date.now() - t0 >= 140);
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(fslock.lock(p, { signal: ac.signal }), { code: 'ABORT_ERR' });
  // this thread holds it: a synchronous wait could never end
  assert.throws(() => fslock.lockSync(p, { timeout: 100 }), { code: 'EDEADLK' });
  // a synchronous kernel wait in a worker thread, ended by its timeout
  const w = new Worker(
    `const f = require(${JSON.stringify(path.resolve(__dirname, '../../dist/cjs/index.js'))});
    let code = 'none'; try { f.lockSync(${JSON.stringify(p)}, { timeout: 100 }); } catch (e) { code = e.code; }
    require('node:worker_threads').parentPort.postMessage(code);`,
    { eval: true },
  );
  const [code] = await require('node:events').once(w, 'message');
  assert.equal(code, 'ETIMEDOUT');
  const pending = fslock.lock(p);
  setTimeout(() => l.release(), 50);
  const l2 = await pending;
  assert.equal(l2.mode, 'exclusive');
  l2.release();
  const free = fslock.tryLock(p);
  assert.ok(free, 'a cancelled wait must not leave the lock held');
  free.release();
});

test('the POSIX registry and byte ranges', () => {
  const p = file();
  const a = fslock.tryLock(p, { primitive: 'posix' });
  assert.ok(a);
  assert.equal(fslock.tryLock(p, { primitive: 'posix' }), null);
  a.release();
  const r1 = fslock.tryLock(p, { range: { offset: 0, length: 4 } });
  const r2 = fslock.tryLock(p, { range: { offset: 4, length: 4 } });
  assert.ok(r1 && r2);
  r1.release();
  r2.release();
});

test('the lockfile drop-in places its lock file from an anonymous file, with no temporary name', () => {
  assert.notEqual(binding.constants.ANONYMOUS_FILE, 0);
  const lf = require('../../dist/cjs/compat/lockfile.js');
  const sub = fs.mkdtempSync(path.join(dir, 'lf-'));
  const p = path.join(sub, 'x.lock');
  const seen = new Set();
  const { link, openSync } = { link: binding.linkAnonymous, openSync: fs.openSync };
  let linked = 0;
  binding.linkAnonymous = (...a) => (linked++, link(...a));
  fs.openSync = (f, ...rest) => (seen.add(path.basename(f)), openSync(f, ...rest));
  try {
    for (let i = 0; i < 5; i++) {
      lf.lockSync(p);
      assert.match(fs.readFileSync(p, 'utf8'), /"fslock":1/);
      lf.unlockSync(p);
    }
  } finally {
    binding.linkAnonymous = link;
    fs.openSync = openSync;
  }
  assert.equal(linked, 5);
  assert.deepEqual([...seen], [path.basename(sub)]);
  assert.deepEqual(fs.readdirSync(sub), []);
});
