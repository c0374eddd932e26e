#!/usr/bin/env node
// Prints a short hash of the native sources. binding.gyp compiles it into the
// addon (binding.sourceHash) so a test can tell when a shipped prebuild is
// older than the sources next to it.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

function nativeSources(root) {
  const out = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.(cc|h)$/.test(entry.name)) out.push(full);
    }
  };
  walk(path.join(root, 'native'));
  return out.sort();
}

function sourceHash(root) {
  const hash = crypto.createHash('sha256');
  for (const file of nativeSources(root)) {
    hash.update(path.relative(root, file).split(path.sep).join('/'));
    hash.update('\0');
    // Line endings must not change the hash (a Windows checkout).
    hash.update(fs.readFileSync(file, 'utf8').replace(/\r\n/g, '\n'));
    hash.update('\0');
  }
  return hash.digest('hex').slice(0, 16);
}

module.exports = { sourceHash };
if (require.main === module) process.stdout.write(sourceHash(path.join(__dirname, '..')));
