'use strict';
// The contenders, each behind the same small interface:
//   acquire(path, { shared }) -> Promise<release>   (waits until acquired)
//   cycle(path, { shared })   -> void | Promise     (uncontended acquire + release by path)
// `waits` says how the contender waits for a held lock.
const fs = require('node:fs');
const { promisify } = require('node:util');
const fslock = require('../dist/cjs/index.js');

function optional(name) {
  try {
    return require(name);
  } catch {
    return null;
  }
}
const fsExt = optional('fs-ext');
const osLock = optional('os-lock');
const fne = optional('fs-native-extensions');
const properLockfile = optional('proper-lockfile');
const lockfile = optional('lockfile');
const plCompat = require('../dist/cjs/compat/proper-lockfile.js');
const lfCompat = require('../dist/cjs/compat/lockfile.js');

const openFd = (p) => fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_CREAT);

const contenders = {
  fslock: {
    waits: 'kernel wait on a native thread (flock + OFD)',
    shared: true,
    cycle: (p, o) => fslock.lockSync(p, { mode: o.shared ? 'shared' : 'exclusive' }).release(),
    acquire: async (p) => {
      const l = await fslock.lock(p);
      return async () => l.release();
    },
  },
  'fslock (async)': {
    waits: 'kernel wait on a native thread (flock + OFD)',
    shared: true,
    cycle: async (p, o) => (await fslock.lock(p, { mode: o.shared ? 'shared' : 'exclusive' })).release(),
  },
  'fslock (keepOpen: true)': {
    waits: 'kernel wait on a native thread (flock + OFD)',
    shared: true,
    cycle: (p, o) => fslock.lockSync(p, { mode: o.shared ? 'shared' : 'exclusive', keepOpen: true }).release(),
  },
  'fslock (record: true)': {
    waits: 'kernel wait on a native thread (flock + OFD), writing a holder record',
    shared: false,
    cycle: (p) => fslock.lockSync(p, { record: true }).release(),
    acquire: async (p) => {
      const l = await fslock.lock(p, { record: true });
      return async () => l.release();
    },
  },
  'fslock/proper-lockfile': {
    waits: 'kernel wait on the marker, bounded by the retry budget',
    shared: false,
    cycle: async (p) => {
      const release = await plCompat.lock(p, { realpath: false });
      await release();
    },
    acquire: async (p) => plCompat.lock(p, { realpath: false, retries: { forever: true, minTimeout: 1000 } }),
  },
  'fslock/lockfile': {
    waits: 'kernel wait on the lock file, bounded by `wait`',
    shared: false,
    cycle: (p) => {
      lfCompat.lockSync(p);
      lfCompat.unlockSync(p);
    },
    acquire: (p) =>
      new Promise((resolve, reject) =>
        lfCompat.lock(p, { wait: 1e9, pollPeriod: 1 }, (err) =>
          err ? reject(err) : resolve(async () => lfCompat.unlockSync(p)),
        ),
      ),
  },
  'fs-ext': fsExt && {
    waits: 'blocking flock() in the libuv threadpool',
    shared: true,
    cycle: (p, o) => {
      const fd = openFd(p);
      fsExt.flockSync(fd, o.shared ? 'sh' : 'ex');
      fsExt.flockSync(fd, 'un');
      fs.closeSync(fd);
    },
    acquire: async (p) => {
      const fd = openFd(p);
      await promisify(fsExt.flock)(fd, 'ex');
      return async () => {
        fsExt.flockSync(fd, 'un');
        fs.closeSync(fd);
      };
    },
  },
  'os-lock': osLock && {
    waits: 'blocking fcntl(F_SETLKW) in the libuv threadpool',
    shared: true,
    cycle: async (p, o) => {
      const fd = openFd(p);
      await osLock.lock(fd, { exclusive: !o.shared, immediate: true });
      await osLock.unlock(fd);
      fs.closeSync(fd);
    },
    acquire: async (p) => {
      const fd = openFd(p);
      await osLock.lock(fd, { exclusive: true });
      return async () => {
        await osLock.unlock(fd);
        fs.closeSync(fd);
      };
    },
  },
  'fs-native-extensions': fne && {
    waits: 'waitForLock() (blocking lock in a worker)',
    shared: true,
    cycle: (p, o) => {
      const fd = openFd(p);
      if (!fne.tryLock(fd, { shared: o.shared })) throw new Error('fne: not granted');
      fne.unlock(fd);
      fs.closeSync(fd);
    },
    acquire: async (p) => {
      const fd = openFd(p);
      await fne.waitForLock(fd);
      return async () => {
        fne.unlock(fd);
        fs.closeSync(fd);
      };
    },
  },
  'proper-lockfile': properLockfile && {
    waits: 'polling: retries { forever, minTimeout: 1, maxTimeout: 1 } (its fastest)',
    shared: false,
    cycle: async (p) => {
      const release = await properLockfile.lock(p, { realpath: false });
      await release();
    },
    acquire: async (p) =>
      properLockfile.lock(p, {
        realpath: false,
        retries: { forever: true, retries: 1, factor: 1, minTimeout: 1, maxTimeout: 1 },
      }),
  },
  lockfile: lockfile && {
    waits: 'polling: wait + pollPeriod 1 ms (its fastest)',
    shared: false,
    cycle: (p) => {
      lockfile.lockSync(p);
      lockfile.unlockSync(p);
    },
    acquire: (p) =>
      new Promise((resolve, reject) =>
        lockfile.lock(p, { wait: 1e9, pollPeriod: 1 }, (err) =>
          err ? reject(err) : resolve(async () => lockfile.unlockSync(p)),
        ),
      ),
  },
};

// What any drop-in must do at least, because processes running the upstream
// packages look for it: create and delete the artefact (uncontended only).
contenders['artefact floor: mkdir, stat, rmdir (proper-lockfile)'] = {
  shared: false,
  cycle: (p) => {
    fs.mkdirSync(`${p}.lock`);
    fs.statSync(`${p}.lock`);
    fs.rmdirSync(`${p}.lock`);
  },
};
contenders['artefact floor: open wx, close, unlink (lockfile)'] = {
  shared: false,
  cycle: (p) => {
    fs.closeSync(fs.openSync(p, 'wx'));
    fs.unlinkSync(p);
  },
};

// Across machines: fslock/postgres on a local server, when bench/run.js
// started one (FSLOCK_BENCH_PG holds its connection config): a lock name per
// path. The price of crossing machines, beside the file lock's.
if (process.env.FSLOCK_BENCH_PG) {
  let locks = null;
  const pg = () =>
    (locks ??= require('../dist/cjs/postgres/index.js').connectLocks({
      ...JSON.parse(process.env.FSLOCK_BENCH_PG),
      idleTimeoutMillis: 1000,
      allowExitOnIdle: true,
    }));
  const nameOf = (p) => require('node:path').basename(p);
  contenders['fslock/postgres (local server)'] = {
    waits: "the server's lock queue (pg_advisory_lock on a connection of its own)",
    shared: true,
    cycle: async (p, o) => {
      const l = await (await pg()).lock(nameOf(p), { mode: o.shared ? 'shared' : 'exclusive' });
      await l.release();
    },
    acquire: async (p) => {
      const l = await (await pg()).lock(nameOf(p));
      return () => l.release();
    },
  };
}

for (const k of Object.keys(contenders)) if (!contenders[k]) delete contenders[k];

/** The path each contender locks: proper-lockfile and lockfile make their own artefacts. */
function lockPathFor(name, base) {
  if (name === 'lockfile' || name === 'fslock/lockfile' || name.endsWith('(lockfile)')) return `${base}.lf`;
  return base;
}

module.exports = { contenders, lockPathFor };
