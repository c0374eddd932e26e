#!/usr/bin/env node
'use strict';
const cli = require('../dist/cjs/cli/main.js');

cli.main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  // fslock run received INT, TERM, HUP or QUIT and has let go: die from that
  // signal, as flock(1) does, so a calling shell sees "killed by SIGINT" and
  // stops the script (it does not stop on an exit status of 130).
  const sig = cli.exitSignal();
  if (sig) {
    process.removeAllListeners(sig);
    process.kill(process.pid, sig);
    setTimeout(() => process.exit(code), 1000).unref();
  }
});
