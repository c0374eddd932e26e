import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { binding } from '../src/binding.js';
import { cleanupTempDirs, run, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const ROOT = resolve(__dirname, '..');
const { sourceHash } = require('../scripts/source-hash.js') as { sourceHash(root: string): string };

// What Node 20's oldest supported Linux (glibc 2.28, RHEL 8 with GCC 8's
// libstdc++) provides: a binary that needs a newer version does not load there.
const FLOOR: Record<string, number[]> = {
  GLIBC: [2, 28],
  GLIBCXX: [3, 4, 25],
  CXXABI: [1, 3, 11],
  GCC: [8, 0, 0],
};
const ALLOWED_NEEDED = new Set([
  'libc.so.6',
  'libpthread.so.0',
  'libm.so.6',
  'libdl.so.2',
  'libstdc++.so.6',
  'libgcc_s.so.1',
  'ld-linux-x86-64.so.2',
  'ld-linux-aarch64.so.1',
]);

function newer(a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return false;
}

/** The libraries and symbol versions an ELF shared object needs that glibc 2.28 systems lack. */
function aboveFloor(file: string): { needed: string[]; tooNew: string[]; versions: number } {
  const dyn = execFileSync('readelf', ['-W', '-d', file]).toString();
  const needed = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const syms = execFileSync('readelf', ['-W', '--dyn-syms', file]).toString();
  const tooNew: string[] = [];
  let versions = 0;
  for (const line of syms.split('\n')) {
    const m = /\sUND\s+(\S+)@(GLIBC|GLIBCXX|CXXABI|GCC)_([\d.]+)/.exec(line);
    if (!m) continue;
    versions++;
    if (newer(m[3].split('.').map(Number), FLOOR[m[2]])) tooNew.push(`${m[1]}@${m[2]}_${m[3]}`);
  }
  return { needed: needed.filter((n) => !ALLOWED_NEEDED.has(n)), tooNew, versions };
}

describe("Linux binaries load on glibc 2.28 (Node 20's oldest supported Linux)", () => {
  it('the check catches what a plain build on this machine needs (pthread_create@GLIBC_2.34, GCC 12 libstdc++)', () => {
    const dir = tempDir('fslock-floor-');
    writeFileSync(
      join(dir, 'plain.cc'),
      '#include <pthread.h>\n#include <condition_variable>\n#include <vector>\n' +
        'static void* f(void*) { return nullptr; }\n' +
        'extern "C" int start(std::condition_variable* cv, std::unique_lock<std::mutex>* lk, size_t n) {\n' +
        '  pthread_t t; std::vector<int> v(n); cv->wait(*lk); return pthread_create(&t, nullptr, f, nullptr) + v[0]; }\n',
    );
    execFileSync('g++', ['-shared', '-fPIC', '-O2', '-o', join(dir, 'plain.so'), join(dir, 'plain.cc')]);
    const { tooNew, versions } = aboveFloor(join(dir, 'plain.so'));
    expect(versions).toBeGreaterThan(0);
    expect(tooNew).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^pthread_create@GLIBC_2\.34$/),
        expect.stringMatching(/^_ZNSt18condition_variable4wait.*@GLIBCXX_3\.4\.30$/),
      ]),
    );
  });

  for (const platform of ['linux-x64', 'linux-arm64']) {
    it(`prebuilds/${platform} needs no symbol version and no library beyond glibc 2.28 and GCC 8's libstdc++`, () => {
      const { needed, tooNew, versions } = aboveFloor(join(ROOT, 'prebuilds', platform, 'fslock.node'));
      expect(versions).toBeGreaterThan(20);
      expect(tooNew).toEqual([]);
      expect(needed).toEqual([]);
    });
  }
});

describe('shipped prebuilt binaries', () => {
  const expected = ['linux-x64', 'linux-arm64', 'win32-x64'];

  it('exist for linux-x64, linux-arm64 and win32-x64 and were built from the current native sources', () => {
    const hash = sourceHash(ROOT);
    for (const platform of expected) {
      const file = join(ROOT, 'prebuilds', platform, 'fslock.node');
      expect(existsSync(file), `${file} is missing: run npm run build:prebuilds`).toBe(true);
      // binding.gyp and build-win.js compile the hash in as a string constant
      expect(
        readFileSync(file).includes(Buffer.from(hash)),
        `prebuilds/${platform} is stale: run npm run build:prebuilds and commit it`,
      ).toBe(true);
    }
  });

  it('the locally built addon reports the same source hash', () => {
    expect(binding.sourceHash).toBe(sourceHash(ROOT));
  });

  it('the packed tarball installs without a compiler, loads the prebuilt binary and takes a lock', async () => {
    const work = tempDir('fslock-pack-');
    // dist/ is already built by `npm test`; packing must not rebuild it under running tests
    const npmCli =
      process.env.npm_execpath && process.env.npm_execpath.endsWith('.js')
        ? process.env.npm_execpath
        : realpathSync(execFileSync('sh', ['-c', 'command -v npm']).toString().trim());
    const packed = execFileSync(
      process.execPath,
      [npmCli, 'pack', '--ignore-scripts', '--json', '--pack-destination', work],
      { cwd: ROOT },
    ).toString();
    const info = JSON.parse(packed.slice(packed.indexOf('[')))[0] as {
      filename: string;
      files: Array<{ path: string }>;
    };
    const files = info.files.map((f) => f.path);
    expect(files).toContain('prebuilds/linux-x64/fslock.node');
    expect(files).toContain('prebuilds/win32-x64/fslock.node');
    expect(files).toContain('prebuilds/linux-arm64/fslock.node');
    expect(files.some((f) => f.startsWith('build/'))).toBe(false);
    expect(files).toContain('dist/cjs/index.js');
    expect(files).toContain('proper-lockfile/package.json');

    // a PATH with node and sh only: no cc, g++, make or python to fall back on
    const bin = join(work, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    symlinkSync('/bin/sh', join(bin, 'sh'));
    const proj = join(work, 'project');
    mkdirSync(proj);
    writeFileSync(join(proj, 'package.json'), '{ "name": "consumer", "version": "1.0.0", "private": true }');
    const inst = await run(
      'sh',
      [
        '-c',
        `cd ${proj} && PATH=${bin} ${process.execPath} ${npmCli} install --no-audit --no-fund --prefer-offline ${join(work, info.filename)}`,
      ],
      { timeoutMs: 180_000 },
    );
    expect(inst.stderr.replace(/npm warn[^\n]*\n/g, '')).not.toMatch(/gyp|error/i);
    expect(inst.code).toBe(0);
    expect(existsSync(join(proj, 'node_modules', 'fslock', 'build'))).toBe(false);
    const check = `
      const path = require('node:path');
      const root = path.dirname(require.resolve('fslock/package.json'));
      const loaded = require('node-gyp-build').path(root);
      const { lockSync, tryLock } = require('fslock');
      const l = lockSync('x.lock');
      console.log(JSON.stringify({ loaded: path.relative(root, loaded), excluded: tryLock('x.lock') === null }));
      l.release();`;
    const r = await run('sh', ['-c', `cd ${proj} && PATH=${bin} node -e "${check.replace(/"/g, '\\"')}"`]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ loaded: join('prebuilds', 'linux-x64', 'fslock.node'), excluded: true });
  }, 240_000);
});
