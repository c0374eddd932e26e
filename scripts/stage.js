'use strict';
// Stages the package as it is installed on another platform: package.json,
// dist/, one prebuilt binary under prebuilds/<platform>/, the runtime
// dependencies, and a folder of tests. Used by test-windows.js and test-arm64.js.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');

/** The runtime dependencies of package.json and theirs, as installed in node_modules. */
function runtimeDeps() {
  const seen = new Set();
  const visit = (pkgDir) => {
    const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
    for (const name of Object.keys(pkg.dependencies ?? {})) {
      if (seen.has(name)) continue;
      seen.add(name);
      visit(path.join(root, 'node_modules', name));
    }
  };
  visit(root);
  // node-addon-api is a build-time dependency (headers), not needed to load the binary
  seen.delete('node-addon-api');
  return [...seen];
}

function stagePackage({ platform, binary, tests }) {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), `fslock-${platform}-stage-`));
  const copy = (from) =>
    fs.cpSync(path.join(root, from), path.join(stage, from), { recursive: true, dereference: true });
  copy('package.json');
  copy('dist');
  copy(tests);
  for (const dep of runtimeDeps()) copy(`node_modules/${dep}`);
  fs.mkdirSync(path.join(stage, 'prebuilds', platform), { recursive: true });
  fs.copyFileSync(binary, path.join(stage, 'prebuilds', platform, 'fslock.node'));
  const files = fs
    .readdirSync(path.join(stage, tests))
    .filter((f) => f.endsWith('.test.cjs'))
    .map((f) => path.join(tests, f));
  return { stage, files };
}

/** Fetches a Node build for another platform from npm (`npm pack` skips npm's platform check). */
function fetchNode(pkg, version, cacheDir, exeRelative) {
  const { execFileSync } = require('node:child_process');
  const dir = path.join(cacheDir, `${pkg}-${version}`);
  const exe = path.join(dir, 'package', exeRelative);
  if (!fs.existsSync(exe)) {
    console.log(`fetching ${pkg}@${version} from npm`);
    fs.mkdirSync(dir, { recursive: true });
    const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir, `${pkg}@${version}`])
      .toString()
      .trim()
      .split('\n')
      .pop();
    execFileSync('tar', ['xzf', path.join(dir, packed), '-C', dir]);
    fs.rmSync(path.join(dir, packed));
    if (!fs.existsSync(exe)) throw new Error(`${pkg} did not provide ${exe}`);
  }
  return exe;
}

module.exports = { stagePackage, fetchNode };
