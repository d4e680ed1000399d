/**
 * `npm run bench -- bigdata`: data larger than memory (issue 15).
 *
 * 1. A dataset of 128 Ki values of 256 KiB under 1,024 directories (32 GiB;
 *    `--bigdata-gib=N` scales it) written durably (16 sets in flight, group
 *    commit), reopened, read at random (cold: the page cache is dropped
 *    first when this process may, and latchkey's cache is far smaller than
 *    the data) and scanned in order — each beside the raw file system on a
 *    plain file of the same size (write + fdatasync per group of 16 blocks;
 *    pread of random blocks; sequential read) and beside lmdb-js
 *    (`--bigdata-lmdb-gib=N`, default 4: it is written and deleted at that
 *    size so the shared disk keeps room). RSS is sampled every 100 ms.
 * 2. Small nodes (100-byte values, 16-byte names): RSS once open and reopen
 *    time (`--bigdata-nodes=N`, default 10,000,000).
 * 3. Sustained overwrite (`--bigdata-overwrite-s=S`, default 300): 64 MiB of
 *    live values overwritten again and again while compaction runs; disk
 *    bytes / live bytes sampled over time and commit latency p99.
 * 4. Tree memory (with `small`, or `--bigdata-only=tree`): heap bytes per
 *    node of 16-byte names, values excluded (target ≤ 150).
 * `--quick` runs them all at toy sizes in a few seconds.
 */
import { execFile } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, read, readSync, rmSync, statSync, readdirSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EMPTY_VALUE, type Mutation, applyMutations, emptyRoot, putNode } from '../../src/core/tree.js';
import { open } from '../../src/index.js';
import { MiB, RssWatch, block, dropCaches, keyOf, pool, shuffled } from '../bigdata-common.js';
import type { ReaderResult } from '../bigdata-child.js';
import { forgetTempDirLater, tempDir } from '../peers/server.js';
import { type BenchOptions, fmt, note, part, percentile, table } from '../util.js';

function argNum(args: readonly string[], name: string, dflt: number): number {
  const a = args.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? dflt : Number(a.slice(name.length + 3));
}

/** A phase's figures on stderr as soon as they are known (a run cut short by --timeout keeps them). */
function phase(text: string): void {
  process.stderr.write(`bigdata: ${text}\n`);
}

function dirBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) n += statSync(path.join(dir, f)).size;
  return n;
}

async function bigValues(o: BenchOptions): Promise<void> {
  const gib = o.quick ? 1 / 256 : argNum(o.args, 'bigdata-gib', 32);
  const valueBytes = o.quick ? 64 * 1024 : 256 * 1024;
  const count = Math.round((gib * 1024 * MiB) / valueBytes);
  const dirs = o.quick ? 8 : 1024;
  const perDir = Math.ceil(count / dirs);
  const reads = o.quick ? 64 : 4096;
  const rows: (string | number)[][] = [];
  const rss: (string | number)[][] = [];
  const cold = !o.quick && dropCaches();
  // `--bigdata-cache-mib=N`: the value cache of the writer and the reader (default: the store's, 256 MiB).
  const cacheMiB = argNum(o.args, 'bigdata-cache-mib', 0);
  const cacheBytes = cacheMiB > 0 ? cacheMiB * MiB : undefined;
  const load = (): string => os.loadavg()[0]!.toFixed(1);

  // latchkey
  const dir = tempDir('bigdata');
  forgetTempDirLater(dir);
  try {
    const w = new RssWatch();
    let t0 = performance.now();
    const s = await open(dir, cacheBytes === undefined ? {} : { cacheBytes });
    const wc0 = process.cpuUsage();
    // One buffer per writer, refilled for each value: set copies it before it returns, so the
    // bench's own values are not 32 GiB of garbage in the process it measures.
    const bufs = Array.from({ length: 16 }, () => new Uint8Array(valueBytes));
    await pool(count, 16, (i, k) => s.set(keyOf(i, perDir), block(i, valueBytes, bufs[k])));
    const writeS = (performance.now() - t0) / 1000;
    const wcpu = process.cpuUsage(wc0);
    const setCpuUs = (wcpu.user + wcpu.system) / count;
    await s.close();
    const diskBytes = dirBytes(dir);
    rss.push(['latchkey write', fmt(w.stop()), w.breakdown()]);
    const total = count * valueBytes;
    rows.push(['write, durable (MB/s)', fmt(total / MiB / writeS), '', '', load()]);
    phase(`latchkey write ${fmt(total / MiB / writeS)} MB/s durable, ${fmt(setCpuUs)} µs CPU per set, peak RSS ${rss.at(-1)![1]} MiB, load ${load()}`);

    // Reopened in a process of its own: the writer's garbage (its closed
    // store's cache, the values this bench made) is not counted against the
    // reader, as it would not be in a server restarted on its data.
    const r = await readInChild({ dir, count, perDir, valueBytes, reads, dirs, cold, cacheBytes });
    for (const p of r.phases) {
      rss.push([`latchkey ${p.name}`, fmt(p.peakMiB), p.breakdown]);
      phase(`latchkey ${p.name}: ${p.figure}, peak RSS ${fmt(p.peakMiB)} MiB (${p.breakdown}), load ${p.load}`);
    }
    rows.push(['reopen (ms)', fmt(r.reopenMs, 1), '', '', r.phases[0]!.load]);
    rows.push(['CPU per set / random get / scanned value (µs, this process)', `${fmt(setCpuUs)} / ${fmt(r.getCpuUs)} / ${fmt(r.scanCpuUs)}`, '', '', '']);
    const getS = r.getS;
    const scanS = r.scanS;
    const scanned = r.scanned;
    if (scanned !== total) throw new Error(`bigdata: the scan read ${scanned} bytes of ${total}`);
    const picks = shuffled(count, reads);
    const st = r.stats;
    rmSync(dir, { recursive: true, force: true });

    // The raw file system: one plain file of the same size.
    const raw = path.join(tempDir('bigdata-raw'), 'plain');
    forgetTempDirLater(path.dirname(raw));
    const fd = openSync(raw, 'w+');
    try {
      const wbuf = new Uint8Array(valueBytes);
      t0 = performance.now();
      for (let i = 0; i < count; i++) {
        writeSync(fd, block(i, valueBytes, wbuf), 0, valueBytes, i * valueBytes);
        if (i % 16 === 15 || i === count - 1) fdatasyncSync(fd);
      }
      const rawWriteS = (performance.now() - t0) / 1000;
      if (cold) dropCaches();
      const buf = new Uint8Array(valueBytes);
      t0 = performance.now();
      // 16 readers in flight, as for latchkey: async reads through the pool.
      await pool(reads, 16, (k) => new Promise<void>((resolve, reject) => {
        read(fd, new Uint8Array(valueBytes), 0, valueBytes, picks[k]! * valueBytes, (e) => (e ? reject(e) : resolve()));
      }));
      const rawGetS = (performance.now() - t0) / 1000;
      if (cold) dropCaches();
      t0 = performance.now();
      for (let i = 0; i < count; i++) readSync(fd, buf, 0, valueBytes, i * valueBytes);
      const rawScanS = (performance.now() - t0) / 1000;
      rows[0]!.splice(2, 1, fmt(total / MiB / rawWriteS));
      rows.push(['random get (values/s, 16 in flight)', fmt(reads / getS), fmt(reads / rawGetS), '', load()]);
      rows.push(['sequential scan (MB/s)', fmt(scanned / MiB / scanS), fmt(total / MiB / rawScanS), '', load()]);
    } finally {
      closeSync(fd);
      rmSync(path.dirname(raw), { recursive: true, force: true });
    }

    // lmdb-js, at its own (smaller) size.
    const lgib = o.quick ? 0 : argNum(o.args, 'bigdata-lmdb-gib', 4);
    if (lgib > 0) {
      const lcount = Math.round((lgib * 1024 * MiB) / valueBytes);
      const lmdb = await import('lmdb');
      const ldir = tempDir('bigdata-lmdb');
      forgetTempDirLater(ldir);
      try {
        const db = lmdb.open<Uint8Array, string>({ path: ldir, encoding: 'binary', mapSize: (lgib + 2) * 1024 * MiB });
        t0 = performance.now();
        for (let i = 0; i < lcount; i += 16) {
          for (let j = i; j < Math.min(lcount, i + 16); j++) void db.put(keyOf(j, perDir), block(j, valueBytes));
          await db.flushed;
        }
        const lw = (performance.now() - t0) / 1000;
        if (cold) dropCaches();
        const lpicks = shuffled(lcount, reads);
        t0 = performance.now();
        for (const k of lpicks) if (db.getBinary(keyOf(k, perDir)) === undefined) throw new Error('lmdb: missing');
        const lg = (performance.now() - t0) / 1000;
        if (cold) dropCaches();
        t0 = performance.now();
        let lbytes = 0;
        for (const { value } of db.getRange({})) lbytes += (value as Uint8Array).length;
        const ls = (performance.now() - t0) / 1000;
        await db.close();
        // by the row's measure, not its place (a row added above must not shift lmdb-js's figures)
        const row = (measure: string): (string | number)[] => {
          const r = rows.find((x) => String(x[0]).startsWith(measure));
          if (r === undefined) throw new Error(`bigdata: no row '${measure}'`);
          return r;
        };
        row('write, durable').splice(3, 1, `${fmt(lcount * valueBytes / MiB / lw)} (${lgib} GiB)`);
        row('random get').splice(3, 1, `${fmt(reads / lg)} (${lgib} GiB, sync reads)`);
        row('sequential scan').splice(3, 1, `${fmt(lbytes / MiB / ls)} (${lgib} GiB)`);
      } finally {
        rmSync(ldir, { recursive: true, force: true });
      }
    }
    table(`bigdata: ${count} values of ${valueBytes / 1024} KiB (${fmt(total / 1024 / MiB, 2)} GiB) under ${dirs} directories`,
      ['measure', 'latchkey', 'raw file (same size)', 'lmdb-js', 'load avg'], rows);
    table('bigdata: peak RSS (MiB) per phase (target ≤ 512; reopen and reads in a fresh process)', ['phase', 'peak RSS', 'at the peak (MiB)'], rss);
    note(`latchkey's data directory held ${fmt(diskBytes / MiB)} MiB for ${fmt(total / MiB)} MiB of values; cache hits ${String(st.cacheHits)}, misses ${String(st.cacheMisses)}, evictions ${String(st.cacheEvictions)} (limit ${fmt((st.cacheLimit ?? 0) / MiB)} MiB). Page cache ${cold ? 'dropped before each read phase (cold reads)' : 'not dropped (not root, or --quick): reads may be warm'}.`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function smallNodes(o: BenchOptions): Promise<void> {
  const n = o.quick ? 20_000 : argNum(o.args, 'bigdata-nodes', 10_000_000);
  const per = 1000;
  const dir = tempDir('bigdata-small');
  forgetTempDirLater(dir);
  try {
    const value = 'x'.repeat(100);
    let s = await open(dir, { snapshotEveryBytes: Number.MAX_SAFE_INTEGER, snapshotEveryRecords: Number.MAX_SAFE_INTEGER });
    for (let d = 0; d * per < n; d++) {
      const ops = [];
      for (let c = 0; c < per && d * per + c < n; c++) ops.push({ op: 'set' as const, path: `/${'d'.padEnd(16 - String(d).length, '0')}${d}/${'n'.padEnd(16 - String(c).length, '0')}${c}`, value });
      await s.multi(ops);
    }
    await s.snapshot();
    await s.close();
    (globalThis as { gc?: () => void }).gc?.();
    const rss0 = process.memoryUsage.rss();
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    s = await open(dir);
    const reopenMs = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    (globalThis as { gc?: () => void }).gc?.();
    const rss1 = process.memoryUsage.rss();
    const heap = process.memoryUsage().heapUsed;
    await s.close();
    table(`bigdata: ${n} small nodes (16-byte names, 100-byte values), reopened from a snapshot`, ['measure', 'latchkey', 'load avg'], [
      ['reopen (ms)', fmt(reopenMs, 1), os.loadavg()[0]!.toFixed(1)],
      // CPU time of this process during the open (GC threads included): what load does not stretch.
      ['reopen CPU, user + system (ms)', fmt((cpu.user + cpu.system) / 1000, 1), ''],
      ['RSS once open (MiB)', fmt(rss1 / MiB), ''],
      ['RSS added by the open store (bytes/node)', fmt((rss1 - rss0) / n), ''],
      ['heap used once open (bytes/node, values included)', fmt(heap / n), ''],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Heap per tree node, values left out: 201 directories of 1,000 nodes of
 * 16-byte names (201,202 nodes with the root), one shared empty value,
 * built by putNode one by one and by replay of one `multi` per directory;
 * heap used after a full GC, before and after, over the node count.
 */
async function treeMemory(o: BenchOptions): Promise<void> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed; };
  const dirs = o.quick ? 20 : 201;
  const rows: (string | number)[][] = [];
  // Each tree is kept until the end: one freed during the next one's measure would count against it.
  const kept: unknown[] = [];
  for (const how of ['putNode', 'multi (replay)'] as const) {
    const h0 = heap();
    let root = emptyRoot();
    let rev = 1;
    for (let d = 0; d < dirs; d++) {
      const dn = `d${String(d).padStart(15, '0')}`;
      root = putNode(root, [dn], rev++, EMPTY_VALUE);
      if (how === 'putNode') {
        for (let c = 0; c < 1000; c++) root = putNode(root, [dn, `n${String(c).padStart(15, '0')}`], rev++, EMPTY_VALUE);
      } else {
        const muts: Mutation[] = [];
        for (let c = 0; c < 1000; c++) muts.push({ op: 'put', path: `/${dn}/n${String(c).padStart(15, '0')}`, value: EMPTY_VALUE });
        root = applyMutations(root, rev++, muts);
      }
    }
    rows.push([how, root.size, fmt((heap() - h0) / root.size, 1), os.loadavg()[0]!.toFixed(1)]);
    kept.push(root);
  }
  table('bigdata: tree memory, heap bytes per node of 16-byte names, values excluded (target ≤ 150)', ['built by', 'nodes', 'heap bytes/node', 'load avg'], rows);
}

async function overwrite(o: BenchOptions): Promise<void> {
  const seconds = o.quick ? 2 : argNum(o.args, 'bigdata-overwrite-s', 300);
  const valueBytes = 64 * 1024;
  const keys = o.quick ? 64 : 1024; // 64 MiB live
  const dir = tempDir('bigdata-overwrite');
  forgetTempDirLater(dir);
  try {
    const s = await open(dir, { valueFileBytes: 16 * MiB, cacheBytes: 32 * MiB, compaction: { scanEveryBytes: 16 * MiB, intervalMs: 250 } });
    const lat: number[] = [];
    const samples: (string | number)[][] = [];
    let maxAmp = 0;
    const end = performance.now() + seconds * 1000;
    const sampleEvery = Math.max(500, (seconds * 1000) / 12);
    let nextSample = performance.now() + sampleEvery;
    let i = 0;
    const live = keys * valueBytes;
    await pool(1e12, 8, async () => {
      if (performance.now() > end) throw new Error('done');
      const k = i++ % keys;
      const t = performance.now();
      await s.set(`/o/${k}`, block(i, valueBytes));
      lat.push(performance.now() - t);
      if (i > keys && performance.now() >= nextSample) {
        nextSample += sampleEvery;
        const amp = dirBytes(dir) / live;
        maxAmp = Math.max(maxAmp, amp);
        const st = s.stats() as Record<string, number>;
        samples.push([fmt((seconds * 1000 - (end - performance.now())) / 1000, 1), fmt(dirBytes(dir) / MiB), fmt(amp, 2), st['compactionFilesDeleted'] ?? 0, os.loadavg()[0]!.toFixed(1)]);
      }
    }).catch((e: unknown) => { if ((e as Error).message !== 'done') throw e; });
    const st = s.stats() as Record<string, number>;
    await s.close();
    lat.sort((a, b) => a - b);
    table(`bigdata: overwrite ${fmt(live / MiB)} MiB of live 64 KiB values for ${seconds} s (8 in flight), compaction running`,
      ['t (s)', 'data dir (MiB)', 'disk / live', 'files deleted', 'load avg'], samples);
    table('bigdata: overwrite commit latency', ['commits', 'p50 (ms)', 'p99 (ms)', 'max (ms)', 'max disk/live', 'values moved', 'compaction runs'], [
      [lat.length, fmt(percentile(lat, 50), 2), fmt(percentile(lat, 99), 2), fmt(lat.at(-1) ?? 0, 1), fmt(maxAmp, 2), st['compactionValuesMoved'] ?? 0, st['compactionRuns'] ?? 0],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export default async function bigdata(o: BenchOptions): Promise<void> {
  const only = o.args.find((a) => a.startsWith('--bigdata-only='))?.slice('--bigdata-only='.length);
  // each phase is a part of the report (bench/util.ts `part`): a run of one
  // (`--bigdata-only=…`) refreshes its tables and notes and keeps the others
  if (only === undefined || only === 'big') {
    part('big');
    await bigValues(o);
  }
  if (only === undefined || only === 'small' || only === 'tree') {
    part('tree');
    await treeMemory(o);
  }
  if (only === undefined || only === 'small') {
    part('small');
    await smallNodes(o);
  }
  if (only === undefined || only === 'overwrite') {
    part('overwrite');
    await overwrite(o);
  }
  part(undefined);
}

interface ReaderArgs { dir: string; count: number; perDir: number; valueBytes: number; reads: number; dirs: number; cold: boolean; cacheBytes: number | undefined }

/** Runs bench/bigdata-child.js on `a.dir`: reopen, random gets, scan; its figures. */
function readInChild(a: ReaderArgs): Promise<ReaderResult> {
  const child = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../bigdata-child.js');
  return new Promise((resolve, reject) => {
    const p = execFile(process.execPath, [child, JSON.stringify(a)], { maxBuffer: 1 << 20 }, (e, out) => {
      if (e) reject(e);
      else resolve(JSON.parse(out) as ReaderResult);
    });
    p.stderr?.pipe(process.stderr);
  });
}
