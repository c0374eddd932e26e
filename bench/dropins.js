#!/usr/bin/env node
'use strict';
// node bench/dropins.js [--rounds N] [--against <dir>] [--handoff]
//
// Uncontended lock + unlock through the drop-ins, this checkout against
// another built one (--against: e.g. a `git worktree` of an older commit
// after `npm ci && npm run build`), for a before/after of a change to them.
// Interleaved in small batches, order alternating round by round, so machine
// noise hits both alike; prints p50 / p90 µs per side and in how many rounds
// this checkout's median was the lower. Without --against, this checkout
// alone. --handoff measures hand-offs instead, the same way: one process
// holds the lock, another waits for it (as the bench's S2 rows wait); the
// time runs from the holder starting its release to the waiter's lock
// settling. A diagnostic, not a target: `npm run bench` holds the targets.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { fork } = require('node:child_process');

const load = (root) => ({
  lockfile: require(path.join(root, 'dist/cjs/compat/lockfile.js')),
  'proper-lockfile': require(path.join(root, 'dist/cjs/compat/proper-lockfile.js')),
});
const isChild = process.argv[2] === '--child';
const { values: args } = isChild
  ? { values: {} }
  : parseArgs({
      options: {
        rounds: { type: 'string', default: '30' },
        against: { type: 'string' },
        handoff: { type: 'boolean', default: false },
      },
    });
const rounds = Number(args.rounds);
const sides = isChild ? [] : [['this', path.resolve(__dirname, '..')]];
if (args.against) sides.push(['against', path.resolve(args.against)]);
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

// --handoff: a holder or waiter process, as its parent's messages say.
function child(api, root, file) {
  const m = load(root)[api];
  const now = () => String(process.hrtime.bigint());
  let release = null;
  const take =
    api === 'lockfile'
      ? (wait) =>
          new Promise((resolve, reject) => {
            if (!wait) return resolve(m.lockSync(file));
            m.lock(file, { wait: 1e9, pollPeriod: 1 }, (err) => (err ? reject(err) : resolve()));
          }).then(() => async () => m.unlockSync(file))
      : (wait) => m.lock(file, { realpath: false, ...(wait ? { retries: { forever: true, minTimeout: 1000 } } : {}) });
  process.on('message', async (msg) => {
    if (msg === 'hold') {
      release = await take(false);
      process.send({});
    } else if (msg === 'release') {
      const t0 = now();
      await release();
      process.send({ t0 });
    } else if (msg === 'wait') {
      const pending = take(true);
      process.send({});
      const r = await pending;
      const t = now();
      await r();
      process.send({ t });
    } else process.exit(0);
  });
}

function spawnChild(api, root, file) {
  const c = fork(__filename, ['--child', api, root, file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const queue = [];
  c.on('message', (m) => queue.shift()?.(m));
  const next = () => new Promise((resolve) => queue.push(resolve));
  return { c, next, ask: (m) => (c.send(m), next()) };
}

/**
 * A holder and a waiter process of one side's drop-in, kept for the whole
 * run (fresh processes would measure V8 warming up), each pair warmed up.
 */
const pairs = new Map();

async function pairFor(api, root, p) {
  let pair = pairs.get(p);
  if (!pair) {
    if (api === 'proper-lockfile' && !fs.existsSync(p)) fs.writeFileSync(p, '');
    pair = { holder: spawnChild(api, root, p), waiter: spawnChild(api, root, p) };
    pairs.set(p, pair);
    await handoffs(pair, 20);
  }
  return pair;
}

/** `n` hand-offs from the pair's holder to its waiter, µs each. */
async function handoffs({ holder, waiter }, n) {
  const t = [];
  for (let i = 0; i < n; i++) {
    await holder.ask('hold');
    await waiter.ask('wait');
    await new Promise((r) => setTimeout(r, 5)); // let the waiter settle into its wait
    const acquired = waiter.next();
    const { t0 } = await holder.ask('release');
    const { t: t1 } = await acquired;
    t.push(Number(BigInt(t1) - BigInt(t0)) / 1000);
  }
  return t;
}

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
          let t = [];
          if (args.handoff) {
            t = await handoffs(await pairFor(api, sides.find(([n]) => n === name)[1], p), 30);
          } else {
            for (let i = 0; i < batch[api]; i++) {
              const t0 = process.hrtime.bigint();
              await cycles[api](mods[name][api], p);
              t.push(Number(process.hrtime.bigint() - t0) / 1000);
            }
          }
          t.sort((a, b) => a - b);
          median[name] = q(t, 0.5);
          (all[`${api} ${name}`] ??= []).push(...t);
        }
        if (median.against !== undefined && median.this < median.against) lower[api] = (lower[api] ?? 0) + 1;
      }
    }
  } finally {
    for (const { holder, waiter } of pairs.values()) {
      holder.c.send('exit');
      waiter.c.send('exit');
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
  const what = args.handoff ? 'hand-off (release → the waiter holds it)' : 'uncontended lock + unlock';
  console.log(`drop-ins, ${what}, µs (${rounds} rounds, interleaved)\n`);
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

if (isChild) child(process.argv[3], process.argv[4], process.argv[5]);
else main();
