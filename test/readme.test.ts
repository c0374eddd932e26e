import { afterAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import ts from 'typescript';
import { cleanupTempDirs, run, tempDir } from './helpers.js';

// Examples of fslock/postgres get a real server: a throwaway cluster, started on first use.
type Cluster = { reason?: string; config: { host: string; port: number }; stop(): void };
let cluster: Cluster | null = null;
function databaseUrl(): string {
  cluster ??= (createRequire(__filename)('../scripts/pg-cluster.js') as { startCluster(): Cluster }).startCluster();
  if (cluster.reason) throw new Error(`a PostgreSQL example needs a server: ${cluster.reason}`);
  const { host, port } = cluster.config;
  return `postgresql://postgres@/postgres?host=${encodeURIComponent(host)}&port=${port}`;
}

afterAll(() => {
  if (cluster && !cluster.reason) cluster.stop();
  cleanupTempDirs();
});

const ROOT = resolve(__dirname, '..');
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((f) => f.endsWith('.md'));
const blocks = DOCS.flatMap((doc) =>
  [...readFileSync(join(ROOT, doc), 'utf8').matchAll(/```(js|mjs|ts)\n([\s\S]*?)```/g)].map((m, i) => ({
    doc,
    lang: m[1]!,
    code: m[2]!,
    i,
  })),
);

/** A scratch project where `fslock` resolves to this checkout, as after `npm install /path/to/checkout`. */
function project(): string {
  const d = tempDir('fslock-readme-');
  mkdirSync(join(d, 'node_modules'));
  symlinkSync(ROOT, join(d, 'node_modules', 'fslock'), 'dir');
  // what the examples import besides fslock (docs/api.md's OpenTelemetry exporter)
  symlinkSync(join(ROOT, 'node_modules', '@opentelemetry'), join(d, 'node_modules', '@opentelemetry'), 'dir');
  return d;
}

describe('every example in the README and docs/ runs as written', () => {
  it('the README has examples in ESM, CommonJS and TypeScript, and is short', () => {
    expect(new Set(blocks.filter((b) => b.doc === 'README.md').map((b) => b.lang))).toEqual(
      new Set(['js', 'mjs', 'ts']),
    );
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length).toBeLessThan(250);
  });

  it('every relative link in the README and docs/ points at a file that exists', () => {
    for (const doc of DOCS) {
      const text = readFileSync(join(ROOT, doc), 'utf8');
      for (const m of text.matchAll(/\]\(([^)#:]+)(#[^)]*)?\)/g)) {
        const target = join(ROOT, doc.includes('/') ? 'docs' : '', m[1]!);
        expect(() => readFileSync(target), `${doc} links to ${m[1]}`).not.toThrow();
      }
    }
  });

  it.each(blocks.map((b) => [`${b.doc} #${b.i} (${b.lang})`, b] as const))('example %s', async (_name, b) => {
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
    const env = b.code.includes('DATABASE_URL') ? `DATABASE_URL='${databaseUrl()}' ` : '';
    const r = await run('sh', ['-c', `cd ${d} && ${env}${process.execPath} ${file}`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(0);
  });
});
