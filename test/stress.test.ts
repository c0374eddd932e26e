import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { run } from './helpers.js';

const STRESS = join(__dirname, '..', 'scripts', 'stress.js');

describe('npm run stress (small configuration)', () => {
  it.each([
    ['auto', []],
    ['posix', []],
    ['auto', ['--unlink']],
  ])('%s %s: processes × worker threads lose no increment', async (primitive, extra) => {
    const r = await run(
      process.execPath,
      [STRESS, '-p', '3', '-t', '2', '-n', '60', '--primitive', primitive, ...extra],
      {
        timeoutMs: 120_000,
      },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('count 360 of 360');
  });
});
