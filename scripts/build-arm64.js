#!/usr/bin/env node
// npm run build:arm64 — cross-compiles the addon for linux-arm64 with Debian's
// aarch64-linux-gnu toolchain and node-gyp, in a scratch copy of the sources
// (so build/ keeps this machine's own build). Writes build/linux-arm64/fslock.node.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const CROSS = process.env.ARM64_CROSS_PREFIX || 'aarch64-linux-gnu-';
if (spawnSync('sh', ['-c', `command -v ${CROSS}g++`]).status !== 0) {
  console.error(`build:arm64: ${CROSS}g++ is missing: apt-get install g++-aarch64-linux-gnu`);
  process.exit(1);
}
const nodedir = process.env.npm_config_nodedir || path.dirname(path.dirname(process.execPath));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-arm64-'));
try {
  for (const f of ['native', 'binding.gyp', 'package.json', 'scripts/source-hash.js', 'node_modules/node-addon-api']) {
    fs.cpSync(path.join(root, f), path.join(work, f), { recursive: true });
  }
  const r = spawnSync(path.join(root, 'node_modules', '.bin', 'node-gyp'), ['rebuild', '--arch=arm64'], {
    cwd: work,
    encoding: 'utf8',
    env: {
      ...process.env,
      CC: `${CROSS}gcc`,
      CXX: `${CROSS}g++`,
      LINK: `${CROSS}g++`,
      AR: `${CROSS}ar`,
      npm_config_nodedir: nodedir,
    },
  });
  if (r.status !== 0) {
    process.stderr.write(`${r.stdout}${r.stderr}`);
    console.error('build:arm64: node-gyp failed');
    process.exit(1);
  }
  const out = path.join(root, 'build', 'linux-arm64');
  fs.mkdirSync(out, { recursive: true });
  fs.copyFileSync(path.join(work, 'build', 'Release', 'fslock.node'), path.join(out, 'fslock.node'));
  execFileSync(`${CROSS}strip`, [path.join(out, 'fslock.node')]);
  console.log(
    `build:arm64: wrote build/linux-arm64/fslock.node (${fs.statSync(path.join(out, 'fslock.node')).size} bytes)`,
  );
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
