#!/usr/bin/env node
// Bundles `fslock run` (dist/cjs/cli/run.js and everything it loads) into one
// file, dist/cjs/cli/run.bundle.js, which bin/fslock.js loads for `run`: a
// script taking a lock in a loop pays Node's start-up plus one file, not the
// resolution and reading of some 45 modules (bench/startup.js: about 1.4x
// `node -e 0` unbundled, 1.25x bundled). Only the command-line process loads
// the bundle; the library's entry points stay unbundled (one module instance).
// The native addon and pg stay outside it.
'use strict';
const path = require('node:path');

let esbuild;
try {
  esbuild = require('esbuild');
} catch {
  // no bundler here (its binary did not install): bin/fslock.js loads run.js and its modules instead
  console.warn('build-cli: esbuild is not available; fslock run starts unbundled (slower by about 10 ms)');
  process.exit(0);
}

const root = path.join(__dirname, '..');
esbuild.buildSync({
  entryPoints: [path.join(root, 'dist', 'cjs', 'cli', 'run.js')],
  outfile: path.join(root, 'dist', 'cjs', 'cli', 'run.bundle.js'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['*.node', 'pg'],
  minifySyntax: true,
  logLevel: 'warning',
});
