#!/usr/bin/env node
'use strict';
// npm run bench [-- --quick] [--only 1,2,...] [--name <results name>] [--save] [--skip-postgres]
//
// Measures fslock side by side with its peers and with a C program making
// the raw system calls, in one run, interleaving the contenders over several
// rounds so machine noise hits them alike. Prints the tables and every target
// of bench/TARGETS.md as met or missed with its ratio. Only with --save does
// it (re)write bench/results/<name>.json, <name>.md and the SVG charts: the
// committed results change only when asked. Not part of `npm test`.
const { execFileSync, fork, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
// fslock/postgres joins the contenders when a throwaway local server can be
// started (Debian's postgresql programs; see scripts/pg-cluster.js).
const pgCluster = (() => {
  if (process.env.FSLOCK_BENCH_PG || process.platform === 'win32') return null;
  if (process.argv.includes('--skip-postgres')) return null;
  const c = require('../scripts/pg-cluster.js').startCluster();
  if (c.reason) {
    console.log(`(fslock/postgres not measured: ${c.reason})`);
    return null;
  }
  process.env.FSLOCK_BENCH_PG = JSON.stringify(c.config); // children inherit it
  process.on('exit', () => c.stop());
  return c;
})();
if (pgCluster) console.log(`fslock/postgres: a local server on ${pgCluster.config.host}`);
const { contenders, lockPathFor } = require('./contenders.js');
const { barChart } = require('./svg.js');

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    name: { type: 'string', default: 'linux-x64' },
    save: { type: 'boolean', default: false },
    'skip-postgres': { type: 'boolean', default: false },
  },
});
const QUICK = args.quick;
const ONLY = args.only ? new Set(args.only.split(',').map(Number)) : null;
// Rounds of the latency scenarios (1, 2, 6), contenders interleaved in each:
// the targets compare medians over at least 10 (see bench/TARGETS.md).
const ROUNDS = QUICK ? 1 : 10;
const RESULTS = path.join(__dirname, 'results');
const WORK = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-bench-'));
process.on('exit', () => fs.rmSync(WORK, { recursive: true, force: true }));

// ---------------------------------------------------------------------------
/**
 * One contender's samples, a list per round: p50 is the median of the rounds'
 * own medians (a round the machine slowed down moves it least, and every
 * contender met the same rounds); p90 and p99 are of every sample pooled (a
 * tail needs them all).
 */
function stats(rounds) {
  const sorted = (a) => [...a].sort((x, y) => x - y);
  const q = (s, p) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
  const all = sorted(rounds.flat());
  const medians = sorted(rounds.map((r) => q(sorted(r), 50)));
  const mid = medians.length >> 1;
  const p50 = medians.length % 2 ? medians[mid] : (medians[mid - 1] + medians[mid]) / 2;
  return { n: all.length, rounds: rounds.length, p50, p90: q(all, 90), p99: q(all, 99) };
}
const us = (ns) => ns / 1000;
const fmt = (x, digits = 1) => (x === null || x === undefined ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(digits));
const log = (...a) => console.log(...a);

function compileFloor() {
  const out = path.join(WORK, 'floor');
  execFileSync(process.env.CC || 'cc', ['-O2', '-o', out, path.join(__dirname, 'floor.c')]);
  return out;
}

function floor(bin, ...a) {
  return JSON.parse(execFileSync(bin, a.map(String), { maxBuffer: 256 * 1024 * 1024 }).toString()).samples_ns;
}

function rotate(list, r) {
  return list.slice(r % list.length).concat(list.slice(0, r % list.length));
}

// ---------------------------------------------------------------------------
// 1. Uncontended acquire + release by path
const FLOOR_OWN = "C floor of fslock's calls (open, flock+OFD, fstat, stat, unlocks, close)";
const FLOOR_KEPT = 'C floor of keepOpen (flock+OFD, stat, unlocks)';
async function scenario1(bin) {
  const out = {};
  const N = QUICK ? 2000 : 3000; // per round
  const slowN = QUICK ? 300 : 500;
  for (const mode of ['exclusive', 'shared']) {
    const shared = mode === 'shared';
    const rows = {};
    const names = Object.keys(contenders).filter((n) => !shared || contenders[n].shared);
    for (let r = 0; r < ROUNDS; r++) {
      const floorPrim = 'flock+ofd';
      (rows['C floor (open, flock+OFD, unlock, close)'] ??= []).push(
        floor(bin, 'uncontended', path.join(WORK, 'floor.lock'), N, floorPrim, shared ? 'sh' : 'ex'),
      );
      (rows['C floor (open, flock, unlock, close)'] ??= []).push(
        floor(bin, 'uncontended', path.join(WORK, 'floor.lock'), N, 'flock', shared ? 'sh' : 'ex'),
      );
      // fslock's own calls: the identity check (fstat, stat) and explicit unlocks included
      (rows[FLOOR_OWN] ??= []).push(
        floor(bin, 'uncontended', path.join(WORK, 'floor.lock'), N, 'flock+ofd+verify', shared ? 'sh' : 'ex'),
      );
      (rows[FLOOR_KEPT] ??= []).push(
        floor(bin, 'kept', path.join(WORK, 'floor.lock'), N, 'flock+ofd+verify', shared ? 'sh' : 'ex'),
      );
      for (const name of rotate(names, r)) {
        const c = contenders[name];
        const p = lockPathFor(name, path.join(WORK, `u-${name.replace(/\W+/g, '_')}`));
        const slow = /proper-lockfile|lockfile|postgres/.test(name) && !name.startsWith('fslock (');
        const n = slow ? slowN : N;
        const samples = [];
        for (let i = 0; i < Math.min(200, n); i++) await c.cycle(p, { shared }); // warm up
        for (let i = 0; i < n; i++) {
          const t0 = process.hrtime.bigint();
          const ret = c.cycle(p, { shared });
          if (ret && typeof ret.then === 'function') await ret;
          samples.push(Number(process.hrtime.bigint() - t0));
        }
        (rows[name] ??= []).push(samples);
      }
    }
    out[mode] = Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, stats(v.map((r) => r.map(us)))]));
  }
  return out;
}

// ---------------------------------------------------------------------------
// 2. Hand-off latency between processes
function child(role, name, base, extra) {
  const c = fork(path.join(__dirname, 'child.js'), [role, name, base, extra ?? ''], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const queue = [];
  c.on('message', (m) => queue.shift()?.(m));
  return {
    c,
    ask: (m) =>
      new Promise((res) => {
        queue.push(res);
        c.send(m);
      }),
    next: () => new Promise((res) => queue.push(res)),
    kill: () => c.kill('SIGKILL'),
  };
}

// Hand-offs made and not counted before each round's own: every round starts
// two fresh processes, whose first hand-offs load and compile code (several
// milliseconds for a drop-in), which is start-up, not a hand-off.
const WARM_HANDOFFS = 5;

async function handoff(name, rounds) {
  const base = path.join(WORK, `h-${name.replace(/\W+/g, '_')}`);
  if (name !== 'lockfile') fs.writeFileSync(base, '');
  const holder = child('hold', name, base);
  const waiter = child('wait', name, base);
  const samples = [];
  try {
    for (let i = 0; i < WARM_HANDOFFS + rounds; i++) {
      await holder.ask({ acquire: true });
      await waiter.ask({ go: true });
      await new Promise((r) => setTimeout(r, 5)); // let the waiter settle into its wait
      const done = waiter.next();
      const { t: released } = await holder.ask({ release: true });
      const { t: acquired } = await done;
      if (i >= WARM_HANDOFFS) samples.push(Number(BigInt(acquired) - BigInt(released)));
    }
  } finally {
    holder.kill();
    waiter.kill();
  }
  return samples;
}

// The Node floor: one Node process wakes another's idle event loop through a
// pipe (a FIFO), as often and as spaced out as the hand-offs.
async function nodeFloor(rounds, how) {
  const fifo = path.join(WORK, `floor-${process.hrtime.bigint()}.fifo`);
  execFileSync('mkfifo', [fifo]);
  const waiter = child('pipe-wait', 'Node floor', fifo, how);
  await waiter.next(); // its end is open
  const poker = child('pipe-poke', 'Node floor', fifo);
  const samples = [];
  try {
    for (let i = 0; i < WARM_HANDOFFS + rounds; i++) {
      await new Promise((r) => setTimeout(r, 5)); // idle, like a waiter in its wait
      const arrived = waiter.next();
      const { t: sent } = await poker.ask({ poke: true });
      const { t: got } = await arrived;
      if (i >= WARM_HANDOFFS) samples.push(Number(BigInt(got) - BigInt(sent)));
    }
  } finally {
    poker.kill();
    waiter.kill();
    fs.rmSync(fifo, { force: true });
  }
  return samples;
}

const NODE_FLOOR = 'Node floor (a blocking read on a pipe, in the libuv pool, wakes an idle event loop)';
const NODE_FLOOR_SOCKET = 'Node floor (a pipe, polled by the event loop itself: a net.Socket)';

async function scenario2(bin) {
  const rounds = QUICK ? 40 : 50; // hand-offs per round
  const names = Object.keys(contenders).filter((n) => contenders[n].acquire);
  const rows = {};
  for (let r = 0; r < ROUNDS; r++) {
    (rows['C floor (flock+OFD, fork)'] ??= []).push(
      floor(bin, 'handoff', path.join(WORK, 'floor-h.lock'), rounds, 'flock+ofd'),
    );
    (rows[NODE_FLOOR] ??= []).push(await nodeFloor(rounds, 'thread'));
    (rows[NODE_FLOOR_SOCKET] ??= []).push(await nodeFloor(rounds, 'socket'));
    for (const name of rotate(names, r)) (rows[name] ??= []).push(await handoff(name, rounds));
  }
  return {
    rows: Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, stats(v.map((r) => r.map(us)))])),
    waits: {
      'C floor (flock+OFD, fork)': 'blocking flock + F_OFD_SETLKW',
      [NODE_FLOOR]: 'a byte through a FIFO, read on a pool thread (fs.read)',
      [NODE_FLOOR_SOCKET]: "a byte through a FIFO, a net.Socket's 'data'",
      ...Object.fromEntries(names.map((n) => [n, contenders[n].waits])),
    },
  };
}

// ---------------------------------------------------------------------------
// 3. Throughput under contention
async function scenario3() {
  const seconds = QUICK ? 1 : 2;
  const names = Object.keys(contenders).filter((n) => contenders[n].acquire);
  const out = {};
  for (const procs of [2, 4, 8]) {
    out[procs] = {};
    for (const name of names) {
      const runs = [];
      for (let r = 0; r < (QUICK ? 1 : 2); r++) {
        const base = path.join(WORK, `t-${procs}-${name.replace(/\W+/g, '_')}-${r}`);
        const counter = `${base}.count`;
        fs.writeFileSync(counter, '0');
        if (name !== 'lockfile') fs.writeFileSync(base, '');
        const kids = Array.from({ length: procs }, () =>
          child('counter', name, base, JSON.stringify({ seconds, counter })),
        );
        const mine = (await Promise.all(kids.map((k) => k.next()))).reduce((a, m) => a + m.mine, 0);
        kids.forEach((k) => k.kill());
        const final = Number(fs.readFileSync(counter, 'utf8'));
        runs.push({ perSecond: final / seconds, lost: mine - final });
      }
      out[procs][name] = {
        perSecond: runs.reduce((a, r) => a + r.perSecond, 0) / runs.length,
        lost: runs.reduce((a, r) => a + r.lost, 0),
      };
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// 4. Event-loop health with 100 pending waits
async function scenario4() {
  const names = Object.keys(contenders).filter((n) => contenders[n].acquire);
  const data = path.join(WORK, 'data.bin');
  fs.writeFileSync(data, Buffer.alloc(64 * 1024, 1));
  const out = {};
  for (const name of names) {
    const base = path.join(WORK, `e-${name.replace(/\W+/g, '_')}`);
    if (name !== 'lockfile') fs.writeFileSync(base, '');
    const holder = child('hold', name, base);
    await holder.ask({ acquire: true });
    const probe = child('eventloop', name, base, JSON.stringify({ data, waits: 100 }));
    out[name] = await probe.next();
    await holder.ask({ release: true }); // let the waits drain before anyone exits
    await new Promise((r) => setTimeout(r, 300));
    probe.kill();
    holder.kill();
  }
  return out;
}

// ---------------------------------------------------------------------------
// 5. Cost over time
async function scenario5() {
  const fslock = require('../dist/cjs/index.js');
  const p = path.join(WORK, 'soak.lock');
  const fdCount = () => fs.readdirSync('/proc/self/fd').length;
  fslock.lockSync(p).release();
  global.gc?.();
  const cold = { rssMB: process.memoryUsage().rss / 2 ** 20, fds: fdCount() };
  // Warm-up: V8's young generation grows to its working size and the code is
  // compiled in the first few thousand cycles (about 7 MB, once: sizing, not a
  // leak). Growth is measured from here, where a leak would go on growing.
  const warm = QUICK ? 10_000 : 100_000;
  for (let i = 0; i < warm; i++) fslock.lockSync(p).release();
  for (let i = 0; i < warm / 10; i++) (await fslock.lock(p)).release();
  global.gc?.();
  const mem = () => {
    const m = process.memoryUsage();
    return { rssMB: m.rss / 2 ** 20, heapMB: m.heapUsed / 2 ** 20 };
  };
  const start = { ...mem(), fds: fdCount() };
  const cycles = QUICK ? 100_000 : 1_000_000;
  const t0 = performance.now();
  for (let i = 0; i < cycles; i++) fslock.lockSync(p).release();
  for (let i = 0; i < cycles / 10; i++) (await fslock.lock(p)).release();
  const ms = performance.now() - t0;
  global.gc?.();
  const end = { ...mem(), fds: fdCount() };
  return { cycles: cycles + cycles / 10, warmCycles: warm + warm / 10, ms, cold, start, end };
}

// ---------------------------------------------------------------------------
// 6. Sessions
async function scenario6() {
  const { openSession, collectGarbage, encodeTimestamp } = require('../dist/cjs/session/index.js');
  const out = { open: {}, gc: null };
  const time = async (fn) => {
    const t0 = performance.now();
    await fn();
    return performance.now() - t0;
  };
  for (const files of QUICK ? [1000] : [1000, 10000]) {
    const crate = path.join(WORK, `crate-${files}`);
    const s = await openSession(crate);
    const chunk = Buffer.alloc(1024, 7);
    for (let i = 0; i < files; i++) fs.writeFileSync(path.join(s.path, `f${i}.bin`), chunk);
    const source = await s.finalize('src');
    const r = { link: [], copy: [], cpal: [], cpa: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of ['link', 'copy']) {
        let sess;
        r[mode].push(
          await time(async () => (sess = await openSession(crate, { copy: mode === 'link' ? 'auto' : 'copy' }))),
        );
        await sess.abandon();
      }
      for (const [k, flags] of [
        ['cpal', '-al'],
        ['cpa', '-a'],
      ]) {
        const dst = path.join(WORK, `cp-${files}-${k}-${round}`);
        r[k].push(await time(async () => spawnSync('cp', [flags, source, dst])));
        fs.rmSync(dst, { recursive: true, force: true });
      }
    }
    const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    out.open[files] = { linkMs: med(r.link), copyMs: med(r.copy), cpAlMs: med(r.cpal), cpAMs: med(r.cpa) };
  }
  const crate = path.join(WORK, 'crate-gc');
  fs.mkdirSync(crate);
  const old = BigInt(Date.now() - 3600_000) * 1000n;
  const n = QUICK ? 200 : 1000;
  for (let i = 0; i < n; i++) {
    const prefix = `s-${encodeTimestamp(old + BigInt(i))}-${String(i).padStart(7, '0')}`;
    fs.mkdirSync(path.join(crate, `${prefix}-working`));
    fs.writeFileSync(path.join(crate, `${prefix}-working`, 'x.bin'), 'x');
    fs.writeFileSync(path.join(crate, `${prefix}.lock`), '');
  }
  let report;
  const ms = await time(async () => (report = await collectGarbage(crate)));
  out.gc = { sessions: n, ms, deleted: report.deleted.length, errors: report.errors.length };
  return out;
}

// ---------------------------------------------------------------------------
// 7. Many pending waits in one process
async function scenario7() {
  const out = {};
  for (const n of QUICK ? [1000, 10000] : [1000, 10000]) {
    const base = path.join(WORK, `many-${n}`);
    fs.writeFileSync(base, '');
    const r = spawnSync(process.execPath, [path.join(__dirname, 'many.js'), base, String(n)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`many.js failed: ${r.stderr}`);
    out[n] = JSON.parse(r.stdout);
  }
  return out;
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// 8. Start-up of `fslock run f true` (no npx) against `node -e 0` and flock(1)
async function scenario8() {
  return require('./startup.js').measure(QUICK ? 5 : 60);
}

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    filesystem: spawnSync('stat', ['-f', '-c', '%T', WORK]).stdout?.toString().trim(),
    date: new Date().toISOString(),
    command: `npm run bench${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  };
}

const NATIVE_PEERS = ['fs-ext', 'fs-native-extensions', 'os-lock'];
const ratio = (a, b) => `${fmt(a / b, 2)}×`;

/** The targets of bench/TARGETS.md, each met or missed with its ratio. */
function summarize(res) {
  const checks = [];
  const check = (ok, text) => checks.push({ ok, text });
  const bestPeer = (rows, key = (v) => v.p50) => {
    const peers = NATIVE_PEERS.filter((n) => rows[n]).map((n) => [n, key(rows[n])]);
    return peers.sort((a, b) => a[1] - b[1])[0] ?? [null, Infinity];
  };
  if (res.s1) {
    for (const mode of ['exclusive', 'shared']) {
      const rows = res.s1[mode];
      if (!rows) continue;
      const f = Math.min(rows.fslock.p50, rows['fslock (async)']?.p50 ?? Infinity);
      const [peer, peerP50] = bestPeer(rows);
      const own = rows[FLOOR_OWN]?.p50;
      const bound = own
        ? `; fslock's own system calls alone take ${fmt(own)} µs in C, so at best ${ratio(own, peerP50)}`
        : '';
      check(
        f <= peerP50,
        `S1 ${mode}: fslock p50 ${fmt(f)} µs at most 1.0× the fastest native peer (${peer} ${fmt(peerP50)} µs): ${ratio(f, peerP50)}${bound}`,
      );
      if (own) {
        check(
          f <= 1.2 * own,
          `S1 ${mode}: fslock p50 ${fmt(f)} µs at most 1.2× the C floor of its own system calls (${fmt(own)} µs): ${ratio(f, own)}`,
        );
      }
      const kept = rows['fslock (keepOpen: true)'];
      if (kept) {
        const keptFloor = rows[FLOOR_KEPT]?.p50;
        check(
          kept.p50 <= 0.7 * peerP50,
          `S1 ${mode}: fslock with keepOpen p50 ${fmt(kept.p50)} µs at most 0.7× the fastest native peer (${peer} ${fmt(peerP50)} µs): ${ratio(kept.p50, peerP50)}` +
            (keptFloor
              ? `; its system calls alone take ${fmt(keptFloor)} µs in C, so at best ${ratio(keptFloor, peerP50)}`
              : ''),
        );
      }
    }
    const ex = res.s1.exclusive;
    for (const [ours, theirs] of [
      ['fslock/proper-lockfile', 'proper-lockfile'],
      ['fslock/lockfile', 'lockfile'],
    ]) {
      const floorRow = Object.entries(ex).find(([k]) => k.startsWith('artefact floor') && k.endsWith(`(${theirs})`));
      if (ex[ours] && floorRow) {
        // A drop-in must create and delete upstream's artefact and take a
        // lock: those two together bound what it can cost at least.
        const least = floorRow[1].p50 + ex.fslock.p50;
        check(
          ex[ours].p50 <= 1.2 * least,
          `S1 ${ours} ${fmt(ex[ours].p50)} µs within 1.2× of the artefact bound: creating and deleting the artefact (${fmt(floorRow[1].p50)} µs) plus a lock (${fmt(ex.fslock.p50)} µs) take ${fmt(least)} µs: ${ratio(ex[ours].p50, least)}` +
            (ex[theirs] ? ` (${theirs}: ${fmt(ex[theirs].p50)} µs)` : ''),
        );
      }
    }
  }
  if (res.s2) {
    const rows = res.s2.rows;
    const f = rows.fslock;
    const floorP50 = rows['C floor (flock+OFD, fork)'].p50;
    const node = rows[NODE_FLOOR];
    const [p50Peer, peerP50] = bestPeer(rows);
    const [p99Peer, peerP99] = bestPeer(rows, (v) => v.p99);
    check(
      f.p50 <= peerP50,
      `S2 hand-off p50 ${fmt(f.p50)} µs at most 1.0× the fastest native peer (${p50Peer} ${fmt(peerP50)} µs): ${ratio(f.p50, peerP50)}`,
    );
    check(
      f.p99 <= peerP99,
      `S2 hand-off p99 ${fmt(f.p99)} µs at most 1.0× the fastest native peer (${p99Peer} ${fmt(peerP99)} µs): ${ratio(f.p99, peerP99)}`,
    );
    if (node) {
      check(
        f.p50 <= 1.2 * node.p50,
        `S2 hand-off p50 ${fmt(f.p50)} µs at most 1.2× the Node floor (${fmt(node.p50)} µs; ${p50Peer}: ${ratio(peerP50, node.p50)}): ${ratio(f.p50, node.p50)}`,
      );
    }
    check(
      f.p50 <= 4 * floorP50,
      `S2 hand-off p50 within 4× of the C floor (${fmt(floorP50)} µs): ${ratio(f.p50, floorP50)}`,
    );
    for (const [ours, theirs] of [
      ['fslock/proper-lockfile', 'proper-lockfile'],
      ['fslock/lockfile', 'lockfile'],
    ]) {
      if (rows[ours] && rows[theirs]) {
        // A drop-in's hand-off is a kernel hand-off plus the artefact's
        // deletion and re-creation: the fastest native hand-off of this run
        // (and S1's artefact floor, when S1 ran too) bounds what any can do.
        const fastest = Math.min(f.p50, peerP50);
        const artefact = res.s1
          ? Object.entries(res.s1.exclusive).find(([k]) => k.startsWith('artefact floor') && k.endsWith(`(${theirs})`))
          : undefined;
        const least = fastest + (artefact ? artefact[1].p50 : 0);
        const what = artefact ? 'the fastest native hand-off plus the artefact floor' : 'the fastest native hand-off';
        check(
          rows[theirs].p50 / rows[ours].p50 >= 2,
          `S2 ${ours} hand-off ${fmt(rows[ours].p50)} µs at least 2× faster than ${theirs} at its fastest (${fmt(rows[theirs].p50)} µs): ${fmt(rows[theirs].p50 / rows[ours].p50)}×; ${what} take ${fmt(least)} µs, so at most ${fmt(rows[theirs].p50 / least)}× is possible`,
        );
      }
    }
  }
  if (res.s3) {
    for (const procs of Object.keys(res.s3)) {
      const row = res.s3[procs];
      check(row.fslock.lost === 0, `S3 ${procs} processes: fslock lost ${row.fslock.lost} updates`);
      const peers = NATIVE_PEERS.filter((n) => row[n])
        .map((n) => [n, row[n].perSecond])
        .sort((a, b) => b[1] - a[1]);
      if (peers[0])
        check(
          row.fslock.perSecond >= peers[0][1],
          `S3 ${procs} processes: fslock ${fmt(row.fslock.perSecond, 0)}/s no lower than the best peer (${peers[0][0]} ${fmt(peers[0][1], 0)}/s): ${ratio(row.fslock.perSecond, peers[0][1])}`,
        );
    }
  }
  if (res.s4) {
    const e = res.s4.fslock;
    check(e.delayP99Ms <= 5, `S4 event-loop delay p99 with 100 waits ${fmt(e.delayP99Ms, 2)} ms <= 5 ms`);
    check(
      e.busyReadMs !== null && e.busyReadMs <= 2 * Math.max(e.idleReadMs, 0.05),
      `S4 readFile ${fmt(e.busyReadMs, 3)} ms vs idle ${fmt(e.idleReadMs, 3)} ms: no more than 2× slower`,
    );
  }
  if (res.s5) {
    const s = res.s5;
    check(s.end.fds === s.start.fds, `S5 fds ${s.start.fds} → ${s.end.fds} over ${s.cycles} cycles`);
    check(
      s.end.rssMB - s.start.rssMB < 10,
      `S5 RSS ${fmt(s.start.rssMB)} → ${fmt(s.end.rssMB)} MB after a ${s.warmCycles}-cycle warm-up (growth under 10 MB)` +
        (s.end.heapMB !== undefined
          ? `; JS heap in use after GC ${fmt(s.start.heapMB, 1)} → ${fmt(s.end.heapMB, 1)} MB`
          : ''),
    );
  }
  if (res.s6) {
    for (const [files, o] of Object.entries(res.s6.open)) {
      check(
        o.linkMs <= 2 * o.cpAlMs,
        `S6 open with ${files} files ${fmt(o.linkMs)} ms within 2× of cp -al (${fmt(o.cpAlMs)} ms): ${fmt(o.linkMs / o.cpAlMs, 2)}×`,
      );
    }
  }
  if (res.s7) {
    const m = res.s7[10000];
    if (m) {
      check(m.drainMs < 1000, `S7 10,000 pending waits drain in ${fmt(m.drainMs, 0)} ms < 1 s`);
      check(m.delayP99Ms < 5, `S7 event-loop delay p99 while they drain ${fmt(m.delayP99Ms, 2)} ms < 5 ms`);
      check(m.addedThreads <= 2, `S7 threads added by 10,000 pending waits: ${m.addedThreads} (O(1))`);
    }
  }
  if (res.s8) {
    const base = res.s8['node -e 0'];
    const ours = res.s8['fslock run f true'];
    check(
      ours <= 1.3 * base,
      `S8 start-up: fslock run f true ${fmt(ours)} ms within 1.3× of node -e 0 (${fmt(base)} ms): ${fmt(ours / base, 2)}×`,
    );
  }
  return checks;
}

function markdown(res) {
  const L = [];
  const m = res.machine;
  L.push(`# fslock benchmarks: ${res.name}`, '');
  L.push(
    `Measured ${m.date} with \`${m.command}\` on ${m.cpu} (${m.cores} cores, ${m.memoryGiB} GiB), ${m.os}, Node ${m.node}, ${m.filesystem}. Scenarios 1, 2 and 6: ${ROUNDS} rounds, contenders interleaved in each; p50 is the median of the rounds' medians, p90 and p99 of every sample. Times in µs unless marked.`,
    '',
  );
  L.push('## Targets', '');
  for (const c of res.summary) L.push(`- ${c.ok ? 'met' : '**missed**'}: ${c.text}`);
  L.push('');
  if (res.s1) {
    for (const mode of Object.keys(res.s1)) {
      const rows = res.s1[mode];
      const floorP50 = rows['C floor (open, flock+OFD, unlock, close)'].p50;
      const peers = Object.entries(rows).filter(
        ([k]) => !k.startsWith('C floor') && !k.startsWith('fslock') && !k.startsWith('artefact floor'),
      );
      const bestPeer = Math.min(...peers.map(([, v]) => v.p50));
      L.push(
        `## 1. Uncontended acquire + release by path (${mode})`,
        '',
        '| contender | p50 | p90 | p99 | × floor | × best peer |',
        '|---|---|---|---|---|---|',
      );
      for (const [k, v] of Object.entries(rows).sort((a, b) => a[1].p50 - b[1].p50)) {
        L.push(
          `| ${k} | ${fmt(v.p50)} | ${fmt(v.p90)} | ${fmt(v.p99)} | ${fmt(v.p50 / floorP50, 2)} | ${fmt(v.p50 / bestPeer, 2)} |`,
        );
      }
      L.push('', `![uncontended ${mode}](s1-${mode}.svg)`, '');
    }
  }
  if (res.s2) {
    L.push(
      '## 2. Hand-off latency: release in one process → acquired in another',
      '',
      '| contender | how it waits | p50 | p90 | p99 |',
      '|---|---|---|---|---|',
    );
    for (const [k, v] of Object.entries(res.s2.rows).sort((a, b) => a[1].p50 - b[1].p50)) {
      L.push(`| ${k} | ${res.s2.waits[k] ?? ''} | ${fmt(v.p50)} | ${fmt(v.p90)} | ${fmt(v.p99)} |`);
    }
    L.push('', '![hand-off](s2-handoff.svg)', '');
  }
  if (res.s3) {
    const names = Object.keys(res.s3[2]);
    L.push(
      '## 3. Throughput under contention (locked increments per second; lost updates)',
      '',
      `| contender | ${Object.keys(res.s3)
        .map((p) => `${p} procs`)
        .join(' | ')} |`,
      `|---|${Object.keys(res.s3)
        .map(() => '---')
        .join('|')}|`,
    );
    for (const n of names) {
      L.push(
        `| ${n} | ${Object.keys(res.s3)
          .map((p) => `${fmt(res.s3[p][n].perSecond, 0)}${res.s3[p][n].lost ? ` (**${res.s3[p][n].lost} lost**)` : ''}`)
          .join(' | ')} |`,
      );
    }
    L.push('', '![throughput](s3-throughput.svg)', '');
  }
  if (res.s4) {
    L.push(
      '## 4. Event-loop health with 100 pending waits (ms)',
      '',
      '| contender | event-loop delay p99 (idle) | with 100 waits | readFile p50 idle | with 100 waits |',
      '|---|---|---|---|---|',
    );
    for (const [k, v] of Object.entries(res.s4)) {
      L.push(
        `| ${k} | ${fmt(v.idleDelayP99Ms, 2)} | ${fmt(v.delayP99Ms, 2)} | ${fmt(v.idleReadMs, 3)} | ${v.busyReadMs === null ? '**blocked (> 2000)**' : fmt(v.busyReadMs, 3)} |`,
      );
    }
    L.push('');
  }
  if (res.s5) {
    const s = res.s5;
    L.push(
      '## 5. Cost over time',
      '',
      `${s.cycles} acquire/release cycles (lockSync, then lock) in ${fmt(s.ms / 1000, 1)} s: open descriptors ${s.start.fds} → ${s.end.fds}, RSS ${fmt(s.start.rssMB)} → ${fmt(s.end.rssMB)} MB` +
        (s.cold ? ` (measured after ${s.warmCycles} warm-up cycles; ${fmt(s.cold.rssMB)} MB before them).` : '.'),
      '',
    );
  }
  if (res.s7) {
    L.push(
      '## 7. Many pending waits on one path in one process',
      '',
      '| pending waits | threads added | RSS (MB) | drain after release (ms) | event-loop delay p99 (ms) | served in order |',
      '|---|---|---|---|---|---|',
    );
    for (const [n, m] of Object.entries(res.s7))
      L.push(
        `| ${n} | ${m.addedThreads} | ${fmt(m.rssMB, 0)} | ${fmt(m.drainMs, 0)} | ${fmt(m.delayP99Ms, 2)} | ${m.fifo ? 'yes' : '**no**'} |`,
      );
    L.push('');
  }
  if (res.s6) {
    L.push(
      '## 6. Sessions (ms)',
      '',
      '| files | openSession (hard links) | openSession (copy) | `cp -al` | `cp -a` |',
      '|---|---|---|---|---|',
    );
    for (const [f, o] of Object.entries(res.s6.open))
      L.push(`| ${f} | ${fmt(o.linkMs)} | ${fmt(o.copyMs)} | ${fmt(o.cpAlMs)} | ${fmt(o.cpAMs)} |`);
    L.push(
      '',
      `Garbage collection of ${res.s6.gc.sessions} dead working sessions: ${fmt(res.s6.gc.ms)} ms (${res.s6.gc.deleted} deleted, ${res.s6.gc.errors} errors).`,
      '',
    );
  }
  if (res.s8) {
    const base = res.s8['node -e 0'];
    L.push('## 8. Command-line start-up (ms, median)', '', '| command | ms | × node -e 0 |', '|---|---|---|');
    for (const [name, ms] of Object.entries(res.s8)) {
      if (ms !== null) L.push(`| \`${name}\` | ${fmt(ms)} | ${fmt(ms / base, 2)} |`);
    }
    L.push('');
  }
  return L.join('\n');
}

async function main() {
  const bin = compileFloor();
  const res = { name: args.name, machine: machine() };
  const want = (n) => !ONLY || ONLY.has(n);
  const scenarios = [
    [1, 'uncontended', () => scenario1(bin)],
    [2, 'hand-off', () => scenario2(bin)],
    [3, 'throughput', scenario3],
    [4, 'event loop', scenario4],
    [5, 'cost over time', scenario5],
    [6, 'sessions', scenario6],
    [7, 'many waits', scenario7],
    [8, 'command-line start-up', scenario8],
  ];
  for (const [n, title, run] of scenarios) {
    if (!want(n)) continue;
    log(`${n}. ${title} …`);
    res[`s${n}`] = await run();
  }
  res.summary = summarize(res);
  log(`\n${markdown(res)}`);
  const missed = res.summary.filter((c) => !c.ok);
  log(
    `\nTargets (bench/TARGETS.md):\n${res.summary.map((c) => `  ${c.ok ? 'met   ' : 'MISSED'}  ${c.text}`).join('\n')}`,
  );
  log(missed.length ? `\n${missed.length} target(s) missed` : '\nall targets met');
  if (!args.save) {
    log('\n(not saved: pass --save to write bench/results/)');
    return;
  }
  fs.mkdirSync(RESULTS, { recursive: true });
  fs.writeFileSync(path.join(RESULTS, `${args.name}.json`), `${JSON.stringify(res, null, 2)}\n`);
  fs.writeFileSync(path.join(RESULTS, `${args.name}.md`), `${markdown(res)}\n`);
  if (res.s1) {
    for (const mode of Object.keys(res.s1)) {
      fs.writeFileSync(
        path.join(RESULTS, `s1-${mode}.svg`),
        barChart(
          `Uncontended acquire + release (${mode}), p50 µs, log scale`,
          Object.entries(res.s1[mode]).map(([k, v]) => ({ label: k, value: v.p50 })),
          { unit: 'µs', log: true },
        ),
      );
    }
  }
  if (res.s2) {
    fs.writeFileSync(
      path.join(RESULTS, 's2-handoff.svg'),
      barChart(
        'Hand-off latency between processes, p50 µs, log scale',
        Object.entries(res.s2.rows).map(([k, v]) => ({ label: k, value: v.p50 })),
        { unit: 'µs', log: true },
      ),
    );
  }
  if (res.s3) {
    fs.writeFileSync(
      path.join(RESULTS, 's3-throughput.svg'),
      barChart(
        'Locked increments per second, 4 processes',
        Object.entries(res.s3[4]).map(([k, v]) => ({ label: k, value: v.perSecond, bad: v.lost > 0 })),
        { unit: '/s', higherIsBetter: true },
      ),
    );
  }
  log(`saved bench/results/${args.name}.{json,md} and the charts`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
