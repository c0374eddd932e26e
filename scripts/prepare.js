#!/usr/bin/env node
// npm's `prepare`: builds dist/ with TypeScript. When fslock is installed from
// a checkout (`npm install /path/to/fslock`) whose devDependencies were never
// installed, there is no tsc: use the dist/ that is there, or say what to do.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!fs.existsSync(tsc)) {
  if (fs.existsSync(path.join(root, 'dist', 'cjs', 'index.js'))) process.exit(0);
  console.error(
    'fslock: this checkout has no dist/ and no TypeScript to build it.\n' +
      `Run \`npm ci\` in ${root} first (it builds dist/), or install the tarball \`npm pack\` makes there.`,
  );
  process.exit(1);
}
execFileSync('npm', ['run', 'build:ts'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
