#!/usr/bin/env node
// npm run build:win — cross-compiles the addon for win32-x64 with MinGW-w64
// from the same native sources (native/platform/win32.cc instead of the posix_*.cc files).
//
// Needs Debian's g++-mingw-w64-x86-64-posix and binutils-mingw-w64-x86-64
// (.ci/run installs them). The posix-threads compiler is used by name: the
// default alternative may be the win32-threads one, which has no std::mutex.
// Node-API functions are imported from node.exe through an import library made
// from node-api-headers' .def file; everything else is linked statically.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { sourceHash } = require('./source-hash.js');

const root = path.join(__dirname, '..');
const out = path.join(root, 'build', 'win32-x64');
const CXX = process.env.MINGW_CXX || 'x86_64-w64-mingw32-g++-posix';
const DLLTOOL = process.env.MINGW_DLLTOOL || 'x86_64-w64-mingw32-dlltool';
const headers = path.dirname(require.resolve('node-api-headers/package.json'));
const addonApi = path.dirname(require.resolve('node-addon-api/package.json'));

/** The sources binding.gyp compiles for Windows: the common list plus the OS=='win' condition's. */
function windowsSources() {
  // gyp files are JSON plus '#' comment lines
  const text = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8').replace(/^\s*#.*$/gm, '');
  const gyp = JSON.parse(text);
  const target = gyp.targets.find((t) => t.target_name === 'fslock');
  const win = target.conditions.find((c) => c[0] === "OS=='win'");
  return [...target.sources, ...win[1].sources];
}

function run(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: 'inherit', cwd: root });
  } catch (err) {
    if (err.code === 'ENOENT') {
      console.error(
        `build:win: ${cmd} not found. Install it with: apt-get install g++-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64`,
      );
    }
    process.exit(1);
  }
}

fs.mkdirSync(out, { recursive: true });
const implib = path.join(out, 'libnode_api.a');
run(DLLTOOL, ['-d', path.join(headers, 'def', 'node_api.def'), '-l', implib, '-D', 'node.exe']);
const target = path.join(out, 'fslock.node');
run(CXX, [
  '-std=c++17',
  '-O2',
  '-Wall',
  '-Wextra',
  '-shared',
  '-DNAPI_VERSION=8',
  '-DNAPI_CPP_EXCEPTIONS',
  '-DWIN32_LEAN_AND_MEAN',
  '-DNOMINMAX',
  '-D_WIN32_WINNT=0x0A00',
  `-DFSLOCK_SOURCE_HASH="${sourceHash(root)}"`,
  '-I',
  path.join(headers, 'include'),
  '-I',
  addonApi,
  ...windowsSources(),
  '-o',
  target,
  '-L',
  out,
  '-lnode_api',
  '-static',
  '-static-libgcc',
  '-static-libstdc++',
  '-s',
]);
console.log(`build:win: wrote ${path.relative(root, target)} (${fs.statSync(target).size} bytes)`);
