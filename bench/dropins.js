#!/usr/bin/env node
'use strict';
// node bench/dropins.js [--rounds N] [--against <dir>]
//
// Uncontended lock + unlock through the drop-ins, this checkout against
// another built one (--against: e.g. a `git worktree` of an older commit
// after `npm ci && npm run build`), for a before/after of a change to them.
// Interleaved in small batches, order alternating round by round, so machine
// noise hits both alike; prints p50 / p90 µs per side and in how many rounds
// this checkout's median was the lower. Without --against, this checkout
// alone. A diagnostic, not a target: `npm run bench` holds the targets.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '30' }, against: { type: 'string' } },
});
const rounds = Number(args.rounds);
const sides = [['this', path.resolve(__dirname, '..')]];
if (args.against) sides.push(['against', path.resolve(args.against)]);
const load = (root) => ({
  lockfile: require(path.join(root, 'dist/cjs/compat/lockfile.js')),
  'proper-lockfile': require(path.join(root, 'dist/cjs/compat/proper-lockfile.js')),
});
const mods = Object.fromEntries(sides.map(([name, root]) => [name, load(root)]));

const cycles = {
  // lockSync + unlockSync, as the bench's S1 row
  lockfile: (m, p) => {
    m.lockSync(p);
    m.unlockSync(p);
  },
  // lock + release, as the bench's S1 row
  'proper-lockfile': async (m, p) => {
    const release = await m.lock(p, { realpath: false });
    await release();
  },
};
const batch = { lockfile: 300, 'proper-lockfile': 150 };

const q = (v, p) => v[Math.min(v.length - 1, Math.floor(p * v.length))];

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-dropins-'));
  const all = {};
  const lower = {};
  try {
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 ? [...sides].reverse() : sides;
      for (const api of Object.keys(cycles)) {
        const median = {};
        for (const [name] of order) {
          const p = path.join(work, `${name}-${api}`);
          if (api === 'proper-lockfile' && !fs.existsSync(p)) fs.writeFileSync(p, '');
          const t = [];
          for (let i = 0; i < batch[api]; i++) {
            const t0 = process.hrtime.bigint();
            await cycles[api](mods[name][api], p);
            t.push(Number(process.hrtime.bigint() - t0) / 1000);
          }
          t.sort((a, b) => a - b);
          median[name] = q(t, 0.5);
          (all[`${api} ${name}`] ??= []).push(...t);
        }
        if (median.against !== undefined && median.this < median.against) lower[api] = (lower[api] ?? 0) + 1;
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`drop-ins, uncontended lock + unlock, µs (${rounds} rounds, interleaved)\n`);
  console.log('| drop-in | checkout | p50 | p90 |');
  console.log('|---|---|---|---|');
  for (const [key, t] of Object.entries(all)) {
    t.sort((a, b) => a - b);
    const [api, name] = key.split(' ');
    console.log(`| ${api} | ${name} | ${q(t, 0.5).toFixed(1)} | ${q(t, 0.9).toFixed(1)} |`);
  }
  if (args.against) {
    console.log();
    for (const api of Object.keys(cycles)) {
      console.log(`${api}: this checkout's median lower in ${lower[api] ?? 0} of ${rounds} rounds`);
    }
  }
}

main();
