#!/usr/bin/env node
// npm run build:prebuilds — writes the binaries that ship in the package:
//   prebuilds/linux-x64/fslock.node   (prebuildify, with this machine's compiler)
//   prebuilds/win32-x64/fslock.node   (MinGW-w64 cross-build, scripts/build-win.js)
//   prebuilds/linux-arm64/fslock.node (aarch64-linux-gnu cross-build, scripts/build-arm64.js)
// Both embed the hash of native/ they were built from (binding.sourceHash);
// test/prebuilds.test.ts fails when a shipped one is older than the sources.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);

// Build against the headers of the running Node (node-gyp would otherwise try
// to download them): the Node-API is ABI-stable, so one binary serves every version.
const nodedir = process.env.npm_config_nodedir || path.dirname(path.dirname(process.execPath));
if (!fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) {
  console.error(`prebuild: no Node headers in ${nodedir}; set npm_config_nodedir`);
  process.exit(1);
}
execFileSync(bin('prebuildify'), ['--napi', '--strip', '--target', process.versions.node], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, npm_config_nodedir: nodedir },
});
execFileSync(process.execPath, [path.join(__dirname, 'build-win.js')], { cwd: root, stdio: 'inherit' });
const win = path.join(root, 'prebuilds', 'win32-x64');
fs.mkdirSync(win, { recursive: true });
fs.copyFileSync(path.join(root, 'build', 'win32-x64', 'fslock.node'), path.join(win, 'fslock.node'));
execFileSync(process.execPath, [path.join(__dirname, 'build-arm64.js')], { cwd: root, stdio: 'inherit' });
const arm = path.join(root, 'prebuilds', 'linux-arm64');
fs.mkdirSync(arm, { recursive: true });
fs.copyFileSync(path.join(root, 'build', 'linux-arm64', 'fslock.node'), path.join(arm, 'fslock.node'));
for (const d of fs.readdirSync(path.join(root, 'prebuilds'))) {
  for (const f of fs.readdirSync(path.join(root, 'prebuilds', d))) {
    console.log(`prebuild: prebuilds/${d}/${f} (${fs.statSync(path.join(root, 'prebuilds', d, f)).size} bytes)`);
  }
}
