'use strict';
// A throwaway PostgreSQL cluster for the tests and the bench of
// fslock/postgres: initdb in a fresh temporary directory, a server listening
// only on a Unix socket in that directory (no TCP), trust authentication,
// fsync off. Debian's `postgresql` package provides the programs (.ci/run
// installs it). As root the server runs as the `postgres` user (PostgreSQL
// refuses to run as root).
//
//   const c = startCluster();   // null, with c.reason, when it cannot run here
//   c.config                    // { host: <socket dir>, port, user: 'postgres', database: 'postgres' }
//   c.restart(); c.stop();
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function binDir() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  try {
    return execFileSync('pg_config', ['--bindir'], { stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
  } catch {
    // Debian keeps the server programs out of PATH
  }
  const base = '/usr/lib/postgresql';
  if (!fs.existsSync(base)) return null;
  const versions = fs
    .readdirSync(base)
    .filter((v) => fs.existsSync(path.join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length ? path.join(base, versions[0], 'bin') : null;
}

/** The uid/gid to run the server as: ourselves, or `postgres` when we are root. */
function runAs() {
  if (process.getuid?.() !== 0) return { prefix: [], uid: null };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    return { prefix: ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups'], uid, gid };
  } catch {
    return null;
  }
}

function startCluster() {
  const bin = binDir();
  if (!bin) return { reason: 'no PostgreSQL server programs (install Debian package postgresql, or set PG_BIN)' };
  const as = runAs();
  if (!as) return { reason: 'running as root and there is no postgres user to run the server as' };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fslock-pg-'));
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  if (as.uid !== null) fs.chownSync(dir, as.uid, as.gid);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const run = (prog, args) => {
    const [cmd, ...rest] = [...as.prefix, path.join(bin, prog), ...args];
    return execFileSync(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
  };
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const opts = `-k ${dir} -p ${port} -c listen_addresses= -c fsync=off -c max_connections=300`;
  const start = () => run('pg_ctl', ['-D', data, '-l', log, '-o', opts, '-w', '-t', '60', 'start']);
  start();
  return {
    config: { host: dir, port, user: 'postgres', database: 'postgres' },
    dir,
    /** Restarts the server (its sessions end, so every advisory lock goes). */
    restart() {
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
      start();
    },
    stop() {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

module.exports = { startCluster };
