import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { binding } from '../src/binding.js';
import { cleanupTempDirs, run, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const ROOT = resolve(__dirname, '..');
const { sourceHash } = require('../scripts/source-hash.js') as { sourceHash(root: string): string };

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
