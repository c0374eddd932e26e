#!/usr/bin/env node
'use strict';
// node bench/startup.js [--rounds N]
//
// Start-up of the command line, as a shell script taking a lock in a loop
// pays it: `fslock run <file> true` (node bin/fslock.js, no npx) against
// `node -e 0` (Node's own start-up, the floor for any Node CLI) and
// util-linux `flock <file> true`, interleaved round by round in one run.
// Prints medians in ms and the ratio to `node -e 0`; `run.js` (scenario 8)
// uses measure() for its table and target.
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const BIN = path.join(__dirname, '..', 'bin', 'fslock.js');

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(cmd, args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}`);
  return ms;
}

/** { 'node -e 0': ms, 'fslock run f true': ms, 'flock f true': ms | null } medians over `rounds` interleaved runs. */
function measure(rounds = 20) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-startup-'));
  const file = path.join(dir, 'f.lock');
  const hasFlock = spawnSync('flock', ['--version'], { stdio: 'ignore' }).status === 0;
  const rows = { 'node -e 0': [], 'fslock run f true': [], 'flock f true': [] };
  try {
    for (let i = 0; i < 3; i++) time(process.execPath, [BIN, 'run', file, 'true']); // warm the page cache
    for (let r = 0; r < rounds; r++) {
      const order = [
        ['node -e 0', () => time(process.execPath, ['-e', '0'])],
        ['fslock run f true', () => time(process.execPath, [BIN, 'run', file, 'true'])],
        ...(hasFlock ? [['flock f true', () => time('flock', [file, 'true'])]] : []),
      ];
      for (let k = 0; k < order.length; k++) {
        const [name, fn] = order[(k + r) % order.length];
        rows[name].push(fn());
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const out = {};
  for (const [name, xs] of Object.entries(rows)) out[name] = xs.length ? median(xs) : null;
  return out;
}

module.exports = { measure };

if (require.main === module) {
  const i = process.argv.indexOf('--rounds');
  const m = measure(i > 0 ? Number(process.argv[i + 1]) : 20);
  const base = m['node -e 0'];
  for (const [name, ms] of Object.entries(m)) {
    if (ms === null) continue;
    console.log(`${name.padEnd(20)} ${ms.toFixed(1).padStart(7)} ms  ${(ms / base).toFixed(2)}× node -e 0`);
  }
}
