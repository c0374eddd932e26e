'use strict';
// A process in a cross-process scenario, driven over IPC by bench/run.js.
//   role hold:      {acquire} -> 'held'; {release} -> { t: release time (ns, CLOCK_MONOTONIC) }
//   role wait:      {go} -> 'waiting'; when acquired -> { t }, then releases
//   role counter:   increments a counter file under the lock until a deadline
//   role eventloop: measures event-loop delay and readFile latency with 100 pending waits
//   role pipe-wait / pipe-poke: the Node floor of a hand-off (a pipe wakes an idle event loop)
const fs = require('node:fs');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { contenders, lockPathFor } = require('./contenders.js');

const [role, name, base, extra] = process.argv.slice(2);
const c = name === 'Node floor' ? null : contenders[name];
const p = lockPathFor(name, base);
const now = () => process.hrtime.bigint();
const send = (m) => process.send(m);

if (role === 'pipe-wait' || role === 'pipe-poke') {
  // The Node floor of a hand-off: one process wakes another's idle event loop
  // through a pipe (a FIFO at `base`), the least any wait that ends in
  // JavaScript can cost. pipe-wait stamps each byte's arrival; pipe-poke
  // stamps, then writes one byte, on {poke}.
  let fd = null;
  if (role === 'pipe-wait' && extra === 'socket') {
    // the event loop's own poll wakes on the pipe (a net.Socket's 'data')
    const net = require('node:net');
    fd = fs.openSync(base, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const sock = new net.Socket({ fd, readable: true, writable: false });
    sock.on('data', (chunk) => {
      const t = now();
      for (let i = 0; i < chunk.length; i++) send({ t: String(t) });
    });
    send({ ready: true });
  } else if (role === 'pipe-wait') {
    // a blocking read on another thread (libuv's pool), whose end wakes the
    // event loop: how a native lock's wait ends, with the least JavaScript
    fd = fs.openSync(base, fs.constants.O_RDWR); // a FIFO opened read-write never sees EOF
    const buf = Buffer.alloc(1);
    const read = () =>
      fs.read(fd, buf, 0, 1, null, (err) => {
        const t = now();
        if (err) throw err;
        send({ t: String(t) });
        read();
      });
    read();
    send({ ready: true });
  }
  process.on('message', (m) => {
    if (m.poke) {
      fd ??= fs.openSync(base, fs.constants.O_WRONLY);
      const t = now();
      fs.writeSync(fd, 'x');
      send({ t: String(t) });
    } else if (m.exit) {
      process.exit(0);
    }
  });
} else if (role === 'hold' || role === 'wait') {
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
