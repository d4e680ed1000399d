/**
 * `npm run bench -- durability`: durable commits per second and commits per
 * fsync at 1, 10, 100 and 1,000 concurrent committers, against this
 * machine's raw fdatasync rate measured in the same run; then reopen time
 * and RSS for 1,000,000 nodes (1,000 × 1,000, 16-byte names, 100-byte
 * values), from the snapshot and from the log alone, each in a fresh process.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, open as fsOpen, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { MultiOp } from '../../src/api.js';
import { open } from '../../src/engine/open.js';
import { type BenchOptions, fmt, now, percentile, table } from '../util.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));

async function tmp(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'latchkey-bench-'));
}

/** Append 100 bytes + fdatasync in a loop: what one durable write costs here. */
async function rawFsync(ms: number): Promise<{ perSec: number; p50: number; p99: number }> {
  const dir = await tmp();
  const fh = await fsOpen(path.join(dir, 'raw'), 'w');
  const buf = Buffer.alloc(100, 7);
  const lat: number[] = [];
  let pos = 0;
  const start = now();
  try {
    while (now() - start < ms) {
      const t = now();
      await fh.write(buf, 0, buf.length, pos);
      pos += buf.length;
      await fh.datasync();
      lat.push(now() - t);
    }
  } finally {
    await fh.close();
    await rm(dir, { recursive: true, force: true });
  }
  lat.sort((a, b) => a - b);
  return { perSec: lat.length / ((now() - start) / 1000), p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

async function committers(n: number, ms: number): Promise<{ perSec: number; perSync: number; p50: number; p99: number }> {
  const dir = await tmp();
  const store = await open(dir);
  const value = 'v'.repeat(100);
  const lat: number[] = [];
  let stop = false;
  const start = now();
  const timer = setTimeout(() => { stop = true; }, ms);
  const st0 = store.stats() as unknown as { groupSyncs: number; commits: number };
  const worker = async (i: number): Promise<void> => {
    let k = 0;
    while (!stop) {
      const t = now();
      await store.set(`/c/${i}/${k++ % 16}`, value);
      lat.push(now() - t);
    }
  };
  await Promise.all(Array.from({ length: n }, (_, i) => worker(i)));
  clearTimeout(timer);
  const secs = (now() - start) / 1000;
  const st = store.stats() as unknown as { groupSyncs: number };
  await store.close();
  await rm(dir, { recursive: true, force: true });
  lat.sort((a, b) => a - b);
  return { perSec: lat.length / secs, perSync: lat.length / (st.groupSyncs - st0.groupSyncs), p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

function name16(prefix: string, i: number): string {
  return prefix + String(i).padStart(15, '0');
}

async function build(dir: string, dirs: number, per: number, snapshot: boolean): Promise<{ ms: number; snapshotMs: number }> {
  const store = await open(dir, { snapshotEveryBytes: Number.MAX_SAFE_INTEGER, snapshotEveryRecords: Number.MAX_SAFE_INTEGER });
  const value = 'x'.repeat(100);
  const t0 = now();
  for (let d = 0; d < dirs; d++) {
    const ops: MultiOp[] = [];
    for (let c = 0; c < per; c++) ops.push({ op: 'set', path: `/${name16('d', d)}/${name16('n', c)}`, value });
    await store.multi(ops);
  }
  const t1 = now();
  if (snapshot) await store.snapshot();
  const snapshotMs = now() - t1;
  await store.close();
  return { ms: now() - t0, snapshotMs };
}

async function reopen(dir: string): Promise<{ ms: number; rssMiB: number; heapMiB: number; nodes: number; replayed: number }> {
  const { stdout } = await run(process.execPath, ['--expose-gc', path.join(here, '..', 'durability-reopen.js'), dir], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { ms: number; rssMiB: number; heapMiB: number; nodes: number; replayed: number };
}

export default async function durability(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 400 : 3000;
  // fsync latency drifts on shared machines: measure it before and after the committers.
  await rawFsync(200); // warm-up: the first fsyncs of a run are much slower
  const rawBefore = await rawFsync(ms);
  const rows: (string | number)[][] = [];
  const results: { n: number; perSec: number }[] = [];
  for (const n of [1, 10, 100, 1000]) {
    const r = await committers(n, ms);
    results.push({ n, perSec: r.perSec });
    rows.push([n, fmt(r.perSec), r.perSync.toFixed(1), r.p50.toFixed(2), r.p99.toFixed(2)]);
  }
  const rawAfter = await rawFsync(ms);
  const raw = (rawBefore.perSec + rawAfter.perSec) / 2;
  table('raw fdatasync on this machine (append 100 B + fdatasync, one at a time)', ['when', 'fsyncs/s', 'p50 ms', 'p99 ms'], [
    ['before', fmt(rawBefore.perSec), rawBefore.p50.toFixed(3), rawBefore.p99.toFixed(3)],
    ['after', fmt(rawAfter.perSec), rawAfter.p50.toFixed(3), rawAfter.p99.toFixed(3)],
  ]);
  table(`durable commits (store.set of 100 B, durability 'fsync', ${ms} ms each)`, ['committers', 'commits/s', 'commits/fsync', 'p50 ms', 'p99 ms'], rows);
  console.log(`\none committer: ${((results[0]!.perSec / raw) * 100).toFixed(0)}% of the raw fsync rate (mean of before/after: ${fmt(raw)}/s)`);

  // The disk's rate drifts from second to second on shared machines:
  // compare one committer with raw fdatasync in alternating short rounds.
  const rounds = o.quick ? 2 : 5;
  const alt: (string | number)[][] = [];
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const r = await rawFsync(ms / 3);
    const c = await committers(1, ms / 3);
    ratios.push(c.perSec / r.perSec);
    alt.push([i + 1, fmt(r.perSec), fmt(c.perSec), `${((c.perSec / r.perSec) * 100).toFixed(0)}%`]);
  }
  ratios.sort((a, b) => a - b);
  table('one committer vs raw fdatasync, alternating rounds', ['round', 'raw fsyncs/s', 'commits/s', 'ratio'], alt);
  console.log(`\nmedian ratio: ${(percentile(ratios, 50) * 100).toFixed(0)}%`);

  const dirs = o.quick ? 20 : 1000;
  const per = o.quick ? 500 : 1000;
  const withSnap = await tmp();
  const logOnly = await tmp();
  try {
    const buildSnap = await build(withSnap, dirs, per, true);
    const fromSnap = await reopen(withSnap);
    const buildLog = await build(logOnly, dirs, per, false);
    const fromLog = await reopen(logOnly);
    table(`reopen ${fmt(dirs * per)} nodes (16-byte names, 100-byte values), fresh process`, ['from', 'build ms', 'snapshot write ms', 'reopen ms', 'RSS MiB', 'heap MiB', 'nodes', 'records replayed'], [
      ['snapshot', fmt(buildSnap.ms), fmt(buildSnap.snapshotMs), fmt(fromSnap.ms), fmt(fromSnap.rssMiB), fmt(fromSnap.heapMiB), fmt(fromSnap.nodes), fromSnap.replayed],
      ['log only', fmt(buildLog.ms), '-', fmt(fromLog.ms), fmt(fromLog.rssMiB), fmt(fromLog.heapMiB), fmt(fromLog.nodes), fromLog.replayed],
    ]);
  } finally {
    await rm(withSnap, { recursive: true, force: true });
    await rm(logOnly, { recursive: true, force: true });
  }
  console.log('\ngoals: >= 20,000 commits/s at >= 100 committers; 1 committer >= 80% of raw fsync rate; reopen 1M < 5 s; RSS <= 600 MB');
}
