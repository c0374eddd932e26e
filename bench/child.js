'use strict';
// A process in a cross-process scenario, driven over IPC by bench/run.js.
//   role hold:      {acquire} -> 'held'; {release} -> { t: release time (ns, CLOCK_MONOTONIC) }
//   role wait:      {go} -> 'waiting'; when acquired -> { t }, then releases
//   role counter:   increments a counter file under the lock until a deadline
//   role eventloop: measures event-loop delay and readFile latency with 100 pending waits
const fs = require('node:fs');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { contenders, lockPathFor } = require('./contenders.js');

const [role, name, base, extra] = process.argv.slice(2);
const c = contenders[name];
const p = lockPathFor(name, base);
const now = () => process.hrtime.bigint();
const send = (m) => process.send(m);

if (role === 'hold' || role === 'wait') {
  let release = null;
  process.on('message', async (m) => {
    if (m.acquire) {
      release = await c.acquire(p);
      send({ held: true });
    } else if (m.release) {
      const t = now();
      await release();
      release = null;
      send({ t: String(t) });
    } else if (m.go) {
      const pending = c.acquire(p);
      send({ waiting: true });
      const r = await pending;
      const t = now();
      await r();
      send({ t: String(t) });
    } else if (m.exit) {
      process.exit(0);
    }
  });
} else if (role === 'counter') {
  const { seconds, counter } = JSON.parse(extra);
  (async () => {
    let mine = 0;
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      const release = await c.acquire(p);
      const n = Number(fs.readFileSync(counter, 'utf8') || '0');
      fs.writeFileSync(counter, String(n + 1));
      mine++;
      await release();
    }
    send({ mine });
    setTimeout(() => process.exit(0), 10);
  })();
} else if (role === 'eventloop') {
  const { data, waits } = JSON.parse(extra);
  (async () => {
    const readLatency = async () => {
      const out = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        const r = await Promise.race([
          fs.promises.readFile(data),
          new Promise((res) => setTimeout(res, 2000, 'blocked')),
        ]);
        out.push(r === 'blocked' ? Infinity : performance.now() - t0);
        await new Promise((res) => setTimeout(res, 10));
      }
      return out.sort((a, b) => a - b)[10];
    };
    const h0 = monitorEventLoopDelay({ resolution: 1 });
    h0.enable();
    const idleRead = await readLatency();
    await new Promise((res) => setTimeout(res, 300));
    h0.disable();
    for (let i = 0; i < waits; i++)
      c.acquire(p).then(
        (r) => r(),
        () => {},
      );
    await new Promise((res) => setTimeout(res, 200));
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const busyRead = await readLatency();
    await new Promise((res) => setTimeout(res, 1000));
    h.disable();
    send({
      idleReadMs: idleRead,
      busyReadMs: busyRead === Infinity ? null : busyRead,
      idleDelayP99Ms: h0.percentile(99) / 1e6,
      delayP99Ms: h.percentile(99) / 1e6,
    });
  })();
  process.on('message', (m) => {
    if (m.exit) process.exit(0);
  });
}
