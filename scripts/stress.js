#!/usr/bin/env node
// npm run stress -- [--processes P] [--threads T] [--iterations N] [--primitive auto|flock|ofd|posix] [--unlink]
//
// P processes × T worker threads each increment one counter file N times
// under an exclusive lock. Lost updates mean the lock failed to exclude
// someone; the run fails unless the final count is exactly P × T × N.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values } = parseArgs({
  options: {
    processes: { type: 'string', short: 'p', default: '4' },
    threads: { type: 'string', short: 't', default: '4' },
    iterations: { type: 'string', short: 'n', default: '500' },
    primitive: { type: 'string', default: 'auto' },
    unlink: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(
    'usage: npm run stress -- [--processes P] [--threads T] [--iterations N] [--primitive auto|flock|ofd|posix] [--unlink]',
  );
  process.exit(0);
}
const P = Number(values.processes);
const T = Number(values.threads);
const N = Number(values.iterations);
for (const [k, v] of Object.entries({ processes: P, threads: T, iterations: N })) {
  if (!Number.isSafeInteger(v) || v < 1) {
    console.error(`stress: --${k} must be a positive integer`);
    process.exit(2);
  }
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-stress-'));
const lockPath = path.join(dir, 'counter.lock');
const counter = path.join(dir, 'counter');
const options = JSON.stringify({ primitive: values.primitive, ...(values.unlink ? { unlinkOnRelease: true } : {}) });
const script = path.join(__dirname, '..', 'test', 'fixtures', 'counter.cjs');
const t0 = performance.now();
const kids = Array.from(
  { length: P },
  () =>
    new Promise((resolve) => {
      const c = spawn(process.execPath, [script, lockPath, counter, String(N), options, String(T)], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      c.on('exit', (code) => resolve(code));
    }),
);
Promise.all(kids).then((codes) => {
  const ms = performance.now() - t0;
  const expected = P * T * N;
  let got = NaN;
  try {
    got = Number(fs.readFileSync(counter, 'utf8'));
  } catch {
    got = -1; // no counter file: reported as a failure below
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const failedKids = codes.filter((c) => c !== 0).length;
  const rate = Math.round((got / ms) * 1000);
  console.log(
    `${P} processes × ${T} threads × ${N} iterations, primitive ${values.primitive}${values.unlink ? ', unlinkOnRelease' : ''}`,
  );
  console.log(`count ${got} of ${expected} in ${ms.toFixed(0)} ms (${rate} locked increments/s)`);
  if (failedKids || got !== expected) {
    console.error(`FAIL: ${expected - got} lost updates, ${failedKids} failed processes`);
    process.exit(1);
  }
  console.log('ok: no lost updates');
});
