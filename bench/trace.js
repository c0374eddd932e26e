#!/usr/bin/env node
'use strict';
// node bench/trace.js --against <dir> [--rounds N]
//
// What tracing (node:diagnostics_channel, docs/api.md "Tracing") costs when
// nobody subscribes: uncontended lockSync + release and lock() + release by
// path on the defaults, this checkout against another built one without
// tracing (a `git worktree` of the commit before it, after npm ci && npm run
// build), interleaved in batches with the order alternating round by round.
// Prints p50 per side and the ratio; the budget is 1.02 (2 %).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '20' }, against: { type: 'string' } },
});
if (!args.against) {
  console.error('usage: node bench/trace.js --against <built checkout without tracing> [--rounds N]');
  process.exit(64);
}
const sides = [
  ['this', require(path.join(__dirname, '..', 'dist/cjs/index.js'))],
  ['against', require(path.join(path.resolve(args.against), 'dist/cjs/index.js'))],
];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-trace-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const BATCH = 2000;
const q = (v, p) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(p * v.length))];

async function batch(m, p, kind) {
  const samples = [];
  for (let i = 0; i < BATCH; i++) {
    const t0 = process.hrtime.bigint();
    if (kind === 'lockSync') m.lockSync(p).release();
    else (await m.lock(p)).release();
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  return q(samples, 0.5);
}

(async () => {
  for (const kind of ['lockSync', 'lock']) {
    const medians = { this: [], against: [] };
    for (const [, m] of sides) await batch(m, path.join(dir, 'warm.lock'), kind); // warm up
    for (let r = 0; r < Number(args.rounds); r++) {
      const order = r % 2 ? [...sides].reverse() : sides;
      for (const [name, m] of order) medians[name].push(await batch(m, path.join(dir, `${name}.lock`), kind));
    }
    const a = q(medians.this, 0.5);
    const b = q(medians.against, 0.5);
    const ratio = a / b;
    console.log(
      `${kind.padEnd(8)} + release, no subscriber: this ${a.toFixed(2)} µs, without tracing ${b.toFixed(2)} µs: ` +
        `${ratio.toFixed(3)}× (${ratio <= 1.02 ? 'within' : 'OVER'} the 2 % budget)`,
    );
  }
})();
