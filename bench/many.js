'use strict';
// Scenario 7: <n> pending lock() calls on one path in one process, the lock
// held by another process until they are all queued. Prints threads added,
// RSS, the time from release until all are served (each releases at once),
// event-loop delay p99 meanwhile, and whether they were served in order.
// argv: <lockfile> <n>
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const fslock = require('../dist/cjs/index.js');

const [p, nArg] = process.argv.slice(2);
const n = Number(nArg);
const threads = () => fs.readdirSync('/proc/self/task').length;
(async () => {
  const holder = spawn('flock', [p, 'sh', '-c', 'echo held; read x'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise((r) => holder.stdout.once('data', r));
  // libuv's pool (4 threads, shared by every fs call of the process, and by
  // the cycle watch's read of /proc/locks) is started before counting, as in
  // any program that has read a file: what is counted is what the waits add.
  await fs.promises.readFile(__filename);
  const before = threads();
  const order = [];
  const pending = [];
  for (let i = 0; i < n; i++)
    pending.push(
      fslock.lock(p).then((l) => {
        order.push(i);
        l.release();
      }),
    );
  await new Promise((r) => setTimeout(r, 100));
  const addedThreads = threads() - before;
  const rssMB = process.memoryUsage().rss / 2 ** 20;
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t0 = performance.now();
  holder.stdin.end('go\n');
  await Promise.all(pending);
  const drainMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 20));
  h.disable();
  process.stdout.write(
    JSON.stringify({
      n,
      addedThreads,
      rssMB,
      drainMs,
      delayP99Ms: h.percentile(99) / 1e6,
      fifo: order.every((v, i) => v === i),
    }),
  );
  process.exit(0);
})();
