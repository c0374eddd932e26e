/**
 * The probe's laboratory: measures what each lock primitive really does on
 * this OS and on the filesystem holding a directory, with fslock's own native
 * calls, in a temporary directory that is removed afterwards. Nothing here is
 * taken from a table: every cell is an experiment. `fslock probe` (cli/probe.ts)
 * parses its command line and renders the result.
 */
import { performance } from 'perf_hooks';
import { spawn, type ChildProcess } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'fs';
import { arch, release, type as osType } from 'os';
import { join } from 'path';
import { Worker } from 'worker_threads';
import { binding, C, packageRoot } from '../binding.js';
import { errorCode } from '../errors.js';
import { platform } from '../platform.js';
import { PRIMITIVE_NAMES, PRIMITIVES, primitives, type PrimitiveName, type PrimitiveReport } from '../primitives.js';
import { describeFs, type FsWarning } from '../fstype.js';
import type { HelperReply, HelperRequest } from './helper.js';

type Prim = PrimitiveName;

export type Outcome = string;
export type { Prim };
export interface ProbeResult {
  os: { type: string; release: string; arch: string };
  dir: string;
  filesystem: { name: string; magic: number };
  primitives: PrimitiveReport;
  /** Tested primitives, in table order. 'posix' is the raw, process-scoped fcntl lock. */
  tested: Prim[];
  ownership: Record<string, Record<string, Outcome>>;
  crossPrimitive: Record<string, Record<string, Outcome>>;
  warnings: FsWarning[];
  elapsedMs: number;
}

export const OWNERSHIP_ROWS: Array<[key: string, label: string]> = [
  ['secondOpen', 'second open() of the file, same process'],
  ['worker', 'another worker thread, its own open()'],
  ['otherProcess', 'another process'],
  ['inheritedChild', 'child inherits the fd, parent closes its copy'],
  ['childUnlock', 'that child unlocks its inherited fd'],
  ['closeOther', 'holder opens and closes another fd of the file'],
  ['readOnlyExclusive', 'exclusive lock on a read-only fd'],
  ['directory', 'directory fd'],
  ['ranges', 'byte ranges'],
  ['failedUpgrade', 'failed SH→EX upgrade while another SH holder exists'],
];

// ---------------------------------------------------------------------------
// The helper (helper.ts) runs lock requests elsewhere: another process or a worker.

type Req = HelperRequest;
type Rep = HelperReply;

/** The compiled helper, run by node as a child process or a worker. */
function helperPath(): string {
  return join(packageRoot(), 'dist', 'cjs', 'probe', 'helper.js');
}

interface Helper {
  call(req: Req): Promise<Rep>;
  close(): Promise<void>;
}

function processHelper(extraFd?: number): { helper: Helper; child: ChildProcess } {
  const stdio: Array<'pipe' | 'inherit' | number> = ['pipe', 'pipe', 'inherit'];
  if (extraFd !== undefined) stdio.push(extraFd); // becomes INHERITED_FD in the child, inherited as fork+exec would
  const child = spawn(process.execPath, [helperPath()], { stdio });
  const queue: Array<(r: Rep) => void> = [];
  let buf = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      queue.shift()?.(JSON.parse(line) as Rep);
    }
  });
  return {
    child,
    helper: {
      call: (req) =>
        new Promise((res) => {
          queue.push(res);
          child.stdin!.write(`${JSON.stringify(req)}\n`);
        }),
      close: async () => {
        child.stdin!.end();
        if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      },
    },
  };
}

function workerHelper(): Helper {
  const w = new Worker(helperPath());
  const queue: Array<(r: Rep) => void> = [];
  w.on('message', (m: Rep) => queue.shift()?.(m));
  return {
    call: (req) =>
      new Promise((res) => {
        queue.push(res);
        w.postMessage(req);
      }),
    close: async () => {
      await w.terminate();
    },
  };
}

// ---------------------------------------------------------------------------

class Lab {
  private n = 0;
  constructor(readonly dir: string) {}

  file(): string {
    const p = join(this.dir, `f${this.n++}`);
    writeFileSync(p, '');
    return p;
  }

  /** Opens `path` and takes a lock; returns the fd. */
  hold(prim: Prim, path: string, type: number = C.EXCLUSIVE, start = 0, len = 0): number {
    const fd = binding.open(path, C.OPEN_WRITE);
    if (!binding.lock(PRIMITIVES[prim], fd, type, start, len, false)) {
      binding.close(fd);
      throw new Error(`probe: could not take a ${prim} lock on a fresh file`);
    }
    return fd;
  }

  /** A non-blocking try on an fd: 'granted', 'refused' or an error code. */
  tryFd(prim: Prim, fd: number, type: number, start = 0, len = 0): string {
    try {
      return binding.lock(PRIMITIVES[prim], fd, type, start, len, false) ? 'granted' : 'refused';
    } catch (err) {
      return errorCode(err) ?? 'error';
    }
  }
}

const asExclusion = (r: Rep): Outcome => (r.error ? r.error : r.ok ? 'not excluded' : 'excluded');

/** Who a held lock excludes: a second open() here, a worker thread, another process. */
async function exclusion(prim: Prim, lab: Lab, other: Helper, worker: Helper): Promise<Record<string, Outcome>> {
  const P = PRIMITIVES[prim];
  const out: Record<string, Outcome> = {};
  const EX = C.EXCLUSIVE;
  {
    const f = lab.file();
    const fd1 = lab.hold(prim, f);
    const fd2 = binding.open(f, C.OPEN_WRITE);
    const r = lab.tryFd(prim, fd2, EX);
    out.secondOpen = r === 'granted' ? 'not excluded' : r === 'refused' ? 'excluded' : r;
    binding.close(fd2);
    binding.close(fd1);
  }
  // Each cell gets a fresh file and holder: with process-scoped POSIX locks a
  // probe that closes its own descriptor releases the holder's lock too.
  {
    const f = lab.file();
    const fd = lab.hold(prim, f);
    out.worker = asExclusion(await worker.call({ op: 'try', primitive: P, path: f, type: EX }));
    binding.close(fd);
  }
  {
    const f = lab.file();
    const fd = lab.hold(prim, f);
    out.otherProcess = asExclusion(await other.call({ op: 'try', primitive: P, path: f, type: EX }));
    binding.close(fd);
  }
  return out;
}

/** What a child that inherits the locked descriptor holds, and what its unlock does. */
async function inheritance(prim: Prim, lab: Lab, other: Helper): Promise<Record<string, Outcome>> {
  const P = PRIMITIVES[prim];
  const out: Record<string, Outcome> = {};
  const EX = C.EXCLUSIVE;
  if (platform().unixDescriptors) {
    {
      const f = lab.file();
      const fd = lab.hold(prim, f);
      const { helper: child } = processHelper(fd);
      await child.call({ op: 'try', primitive: P, path: lab.dir, type: 0 }).catch(() => undefined); // wait until it runs
      binding.close(fd); // the parent lets go of its descriptor without unlocking
      const r = await other.call({ op: 'try', primitive: P, path: f, type: EX });
      out.inheritedChild = r.error ? r.error : r.ok ? 'not inherited' : 'child holds the lock';
      await child.close();
    }
    {
      const f = lab.file();
      const fd = lab.hold(prim, f);
      const { helper: child } = processHelper(fd);
      await child.call({ op: 'unlockInherited', primitive: P });
      const r = await other.call({ op: 'try', primitive: P, path: f, type: EX });
      out.childUnlock = r.error ? r.error : r.ok ? "drops parent's lock" : "parent's lock kept";
      await child.close();
      binding.close(fd);
    }
  } else {
    out.inheritedChild = 'n/a';
    out.childUnlock = 'n/a';
  }
  return out;
}

/** Closing another descriptor of the file, read-only and directory descriptors. */
async function descriptorRules(prim: Prim, lab: Lab, other: Helper): Promise<Record<string, Outcome>> {
  const P = PRIMITIVES[prim];
  const out: Record<string, Outcome> = {};
  const EX = C.EXCLUSIVE;
  const SH = C.SHARED;
  {
    const f = lab.file();
    const fd1 = lab.hold(prim, f);
    binding.close(binding.open(f, 0));
    const r = await other.call({ op: 'try', primitive: P, path: f, type: EX });
    out.closeOther = r.error ? r.error : r.ok ? 'lost' : 'kept';
    binding.close(fd1);
  }
  {
    const f = lab.file();
    const fd = binding.open(f, 0);
    const r = lab.tryFd(prim, fd, EX);
    out.readOnlyExclusive = r === 'granted' ? 'allowed' : r;
    binding.close(fd);
  }
  if (platform().unixDescriptors) {
    const d = join(lab.dir, `d${prim}`);
    mkdirSync(d);
    const fd = binding.open(d, 0);
    const sh = lab.tryFd(prim, fd, SH);
    if (sh === 'granted') binding.lock(P, fd, C.UNLOCK, 0, 0, false);
    const ex = lab.tryFd(prim, fd, EX);
    binding.close(fd);
    out.directory =
      sh === 'granted' && ex === 'granted'
        ? 'shared and exclusive'
        : sh === 'granted'
          ? `shared only (exclusive: ${ex})`
          : `no (${sh})`;
  } else {
    out.directory = 'n/a';
  }
  return out;
}

/** Byte ranges, and what a refused shared-to-exclusive upgrade leaves. */
async function rangesAndUpgrades(prim: Prim, lab: Lab, other: Helper): Promise<Record<string, Outcome>> {
  const P = PRIMITIVES[prim];
  const out: Record<string, Outcome> = {};
  const EX = C.EXCLUSIVE;
  const SH = C.SHARED;
  {
    const f = lab.file();
    const fd = lab.hold(prim, f, EX, 0, 10);
    const r = await other.call({ op: 'try', primitive: P, path: f, type: EX, start: 20, len: 10 });
    out.ranges = r.error ? r.error : r.ok ? 'yes' : 'no (whole file)';
    binding.close(fd);
  }
  {
    const f = lab.file();
    const fd = lab.hold(prim, f, SH);
    const theirs = await other.call({ op: 'try', primitive: P, path: f, type: SH, hold: true });
    const up = lab.tryFd(prim, fd, EX);
    if (theirs.id !== undefined) await other.call({ op: 'release', id: theirs.id });
    if (up === 'refused') {
      const r = await other.call({ op: 'try', primitive: P, path: f, type: EX });
      out.failedUpgrade = r.error ? r.error : r.ok ? 'shared lock lost' : 'shared lock kept';
    } else {
      out.failedUpgrade = up === 'granted' ? 'upgrade was not refused' : up;
    }
    binding.close(fd);
  }
  return out;
}

/** What a lock of `prim` does, cell by cell (each cell with a fresh file and holder). */
async function ownership(prim: Prim, lab: Lab, other: Helper, worker: Helper): Promise<Record<string, Outcome>> {
  return {
    ...(await exclusion(prim, lab, other, worker)),
    ...(await inheritance(prim, lab, other)),
    ...(await descriptorRules(prim, lab, other)),
    ...(await rangesAndUpgrades(prim, lab, other)),
  };
}

async function crossPrimitive(
  prims: Prim[],
  lab: Lab,
  other: Helper,
): Promise<Record<string, Record<string, Outcome>>> {
  const out: Record<string, Record<string, Outcome>> = {};
  for (const holder of prims) {
    out[holder] = {};
    for (const contender of prims) {
      const f = lab.file();
      const fd = lab.hold(holder, f);
      const r = await other.call({ op: 'try', primitive: PRIMITIVES[contender], path: f, type: C.EXCLUSIVE });
      out[holder]![contender] = r.error ? r.error : r.ok ? 'no conflict' : 'conflict';
      binding.close(fd);
    }
  }
  return out;
}

export async function probe(dir: string): Promise<ProbeResult> {
  const t0 = performance.now();
  const report = primitives();
  const tested: Prim[] = PRIMITIVE_NAMES.filter((p) => report.available[p]);
  const lab = new Lab(mkdtempSync(join(dir, '.fslock-probe-')));
  const { helper: other } = processHelper();
  const worker = workerHelper();
  try {
    const fd = binding.open(lab.file(), 0);
    const fs = describeFs(fd);
    binding.close(fd);
    const own: Record<string, Record<string, Outcome>> = {};
    for (const [key] of OWNERSHIP_ROWS) own[key] = {};
    for (const prim of tested) {
      const cells = await ownership(prim, lab, other, worker);
      for (const [key, v] of Object.entries(cells)) own[key]![prim] = v;
    }
    const cross = await crossPrimitive(tested, lab, other);
    return {
      os: { type: osType(), release: release(), arch: arch() },
      dir,
      filesystem: { name: fs.name, magic: fs.magic },
      primitives: report,
      tested,
      ownership: own,
      crossPrimitive: cross,
      warnings: fs.warning ? [fs.warning] : [],
      elapsedMs: Math.round(performance.now() - t0),
    };
  } finally {
    await Promise.all([other.close(), worker.close()]);
    rmSync(lab.dir, { recursive: true, force: true });
  }
}
