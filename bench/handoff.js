#!/usr/bin/env node
'use strict';
// node bench/handoff.js [--rounds N] [--against <dir>]
//
// Where a hand-off's time goes, and whether a change moved it. One process
// holds a lock, another waits for it; the holder releases and each side
// stamps CLOCK_MONOTONIC. Printed per contender, as p50 / p90 / p99 µs after
// the holder starts its release:
//   release   the holder's release call returns
//   callback  the waiter's JavaScript first runs (the wait's callback)
//   resolved  the waiter's `await` continues with the lock
// Contenders, interleaved round by round so machine noise hits them alike:
//   fslock        lock() / release() of this checkout (dist/, build/ or prebuilds/)
//   against       the same of another checkout (--against: a built copy, e.g. a
//                 `git worktree` of an older commit), for before/after
//   native wait   this checkout's native wait with a bare callback: what
//                 fslock's JavaScript adds on top is the difference to fslock
//   fs-ext        blocking flock() in the libuv pool (needs `npm run bench` once)
// A diagnostic, not a target: `npm run bench` holds the targets.
const { fork } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');

const now = () => process.hrtime.bigint();

function stamp(t0, t) {
  return t ? Number(BigInt(t) - BigInt(t0)) / 1000 : null;
}

function summary(values) {
  const v = values.filter((x) => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return '—';
  const q = (p) => v[Math.min(v.length - 1, Math.floor(p * v.length))].toFixed(1);
  return `${q(0.5)} / ${q(0.9)} / ${q(0.99)}`;
}

// A child process for one contender: it holds or waits as its messages say.
function child(name, root, file) {
  let callbackAt = null;
  let impl;
  if (name === 'fs-ext') {
    const fsExt = require(path.join(__dirname, 'node_modules', 'fs-ext'));
    impl = (p) =>
      new Promise((resolve, reject) => {
        const fd = fs.openSync(p, 'r+');
        fsExt.flock(fd, 'ex', (err) => {
          callbackAt = now();
          if (err) return reject(err);
          resolve(() => {
            fsExt.flockSync(fd, 'un');
            fs.closeSync(fd);
          });
        });
      });
  } else if (name === 'native wait') {
    const { binding, C } = require(path.join(root, 'dist/cjs/binding.js'));
    const steps = [2, C.FLOCK, 0, 0, C.OFD, 0, 0];
    impl = (p) =>
      new Promise((resolve, reject) => {
        const fd = binding.open(p, C.OPEN_WRITE);
        const release = () => binding.release(fd, false, ...steps);
        if (binding.lock(C.FLOCK, fd, C.EXCLUSIVE, 0, 0, false)) {
          binding.lock(C.OFD, fd, C.EXCLUSIVE, 0, 0, false);
          return resolve(release);
        }
        // the waiter thread takes the OFD step and checks the file, as fslock's waits do
        binding.waitStart(
          C.FLOCK,
          fd,
          C.EXCLUSIVE,
          0,
          0,
          (err) => {
            callbackAt = now();
            if (err) reject(err);
            else resolve(release);
          },
          p,
          true,
          1,
          C.OFD,
          0,
          0,
        );
      });
  } else {
    const fslock = require(path.join(root, 'dist/cjs/index.js'));
    const { binding } = require(path.join(root, 'dist/cjs/binding.js'));
    // stamp the wait's callback as the native side calls it
    const waitStart = binding.waitStart;
    binding.waitStart = function (...args) {
      const i = args.findIndex((a) => typeof a === 'function');
      const cb = args[i];
      args[i] = (...r) => {
        callbackAt = now();
        return cb(...r);
      };
      return waitStart.apply(this, args);
    };
    impl = async (p) => {
      const l = await fslock.lock(p);
      return () => l.release();
    };
  }
  let release = null;
  process.on('message', async (m) => {
    if (m.acquire) {
      release = await impl(file);
      process.send({});
    } else if (m.release) {
      const t0 = now();
      release();
      const t1 = now();
      release = null;
      process.send({ t0: String(t0), t1: String(t1) });
    } else if (m.go) {
      callbackAt = null;
      const pending = impl(file);
      process.send({});
      const r = await pending;
      const t = now();
      r();
      process.send({ t: String(t), callback: callbackAt === null ? null : String(callbackAt) });
    } else if (m.exit) {
      process.exit(0);
    }
  });
}

async function main() {
  const { values: args } = parseArgs({
    options: { rounds: { type: 'string', default: '6' }, against: { type: 'string' } },
  });
  const here = path.resolve(__dirname, '..');
  const contenders = [['fslock', here]];
  if (args.against) contenders.push(['against', path.resolve(args.against)]);
  contenders.push(['native wait', here]);
  if (fs.existsSync(path.join(__dirname, 'node_modules', 'fs-ext'))) contenders.push(['fs-ext', here]);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-handoff-'));
  const rows = {};
  try {
    for (let round = 0; round < Number(args.rounds); round++) {
      for (const [name, root] of contenders) {
        const file = path.join(work, name.replace(/\W+/g, '_'));
        fs.writeFileSync(file, '');
        const spawn = () => {
          const c = fork(__filename, ['--child', name, root, file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
          const queue = [];
          c.on('message', (m) => queue.shift()?.(m));
          const next = () => new Promise((resolve) => queue.push(resolve));
          return { c, next, ask: (m) => (c.send(m), next()) };
        };
        const holder = spawn();
        const waiter = spawn();
        const r = (rows[name] ??= { release: [], callback: [], resolved: [] });
        for (let i = 0; i < 150; i++) {
          await holder.ask({ acquire: true });
          await waiter.ask({ go: true });
          await new Promise((res) => setTimeout(res, 5)); // let the waiter settle into its wait
          const acquired = waiter.next();
          const { t0, t1 } = await holder.ask({ release: true });
          const { t, callback } = await acquired;
          r.release.push(stamp(t0, t1));
          r.callback.push(stamp(t0, callback));
          r.resolved.push(stamp(t0, t));
        }
        holder.c.send({ exit: true });
        waiter.c.send({ exit: true });
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  console.log(`hand-off, µs after the holder starts releasing (p50 / p90 / p99; ${args.rounds} rounds × 150)\n`);
  console.log('| contender | release returns | waiter callback | waiter resolved |');
  console.log('|---|---|---|---|');
  for (const [name, r] of Object.entries(rows)) {
    console.log(`| ${name} | ${summary(r.release)} | ${summary(r.callback)} | ${summary(r.resolved)} |`);
  }
}

if (process.argv[2] === '--child') child(...process.argv.slice(3));
else main();
