import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { cleanupTempDirs, run, tempDir } from './helpers.js';

afterAll(cleanupTempDirs);

const ROOT = resolve(__dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const blocks = [...README.matchAll(/```(js|mjs|ts)\n([\s\S]*?)```/g)].map((m, i) => ({ lang: m[1]!, code: m[2]!, i }));

/** A scratch project where `fslock` resolves to this checkout, as after `npm install /path/to/checkout`. */
function project(): string {
  const d = tempDir('fslock-readme-');
  mkdirSync(join(d, 'node_modules'));
  symlinkSync(ROOT, join(d, 'node_modules', 'fslock'), 'dir');
  return d;
}

describe('every example in the README runs as written', () => {
  it('has examples in ESM, CommonJS and TypeScript', () => {
    expect(new Set(blocks.map((b) => b.lang))).toEqual(new Set(['js', 'mjs', 'ts']));
  });

  it.each(blocks.map((b) => [`#${b.i} (${b.lang})`, b] as const))('example %s', async (_name, b) => {
    const d = project();
    let file: string;
    if (b.lang === 'ts') {
      const out = ts.transpileModule(b.code, {
        compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      });
      file = join(d, 'example.cjs');
      writeFileSync(file, out.outputText);
    } else {
      file = join(d, b.lang === 'mjs' ? 'example.mjs' : 'example.cjs');
      writeFileSync(file, b.code);
    }
    const r = await run('sh', ['-c', `cd ${d} && ${process.execPath} ${file}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(0);
  });
});
