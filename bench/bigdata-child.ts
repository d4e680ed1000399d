/**
 * The reader process of `npm run bench -- bigdata` (bench/workloads/bigdata.ts):
 * opens the data directory the writer closed, reads values at random, then
 * scans them all, each phase with its own peak RSS. Prints one JSON object
 * (ReaderResult) on stdout; the argument is a JSON ReaderArgs.
 */
import os from 'node:os';
import { open } from '../src/index.js';
import { MiB, RssWatch, dropCaches, keyOf, pool, shuffled } from './bigdata-common.js';

export interface ReaderPhase { name: string; peakMiB: number; breakdown: string; figure: string; load: string }
export interface ReaderResult {
  reopenMs: number;
  getS: number;
  scanS: number;
  scanned: number;
  /** CPU time of the reader process (user + system) per random get and per scanned value (µs). */
  getCpuUs: number;
  scanCpuUs: number;
  phases: ReaderPhase[];
  stats: { cacheHits?: number; cacheMisses?: number; cacheEvictions?: number; cacheLimit?: number };
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]!) as { dir: string; count: number; perDir: number; valueBytes: number; reads: number; dirs: number; cold: boolean; cacheBytes?: number };
  const load = (): string => os.loadavg()[0]!.toFixed(1);
  const phases: ReaderPhase[] = [];
  const done = (w: RssWatch, name: string, figure: string): void => {
    const peakMiB = w.stop();
    phases.push({ name, peakMiB, breakdown: w.breakdown(), figure, load: load() });
    process.stderr.write(`bigdata reader: ${name} ${figure}, peak RSS ${peakMiB.toFixed(0)} MiB (${w.breakdown()})\n`);
  };

  let w = new RssWatch();
  if (a.cold) dropCaches();
  let t0 = performance.now();
  const s = await open(a.dir, a.cacheBytes === undefined ? {} : { cacheBytes: a.cacheBytes });
  const cpuUs = (c: NodeJS.CpuUsage): number => c.user + c.system;
  const reopenMs = performance.now() - t0;
  done(w, 'reopen', `${reopenMs.toFixed(1)} ms`);

  w = new RssWatch();
  const picks = shuffled(a.count, a.reads);
  t0 = performance.now();
  let c0 = process.cpuUsage();
  await pool(a.reads, 16, async (k) => {
    const e = await s.get(keyOf(picks[k]!, a.perDir));
    if (e === undefined || e.value.length !== a.valueBytes) throw new Error('bigdata: a value is missing');
  });
  const getS = (performance.now() - t0) / 1000;
  const getCpuUs = cpuUs(process.cpuUsage(c0)) / a.reads;
  done(w, 'random gets', `${(a.reads / getS).toFixed(0)} values/s, ${getCpuUs.toFixed(0)} µs CPU per get`);

  w = new RssWatch();
  if (a.cold) dropCaches();
  t0 = performance.now();
  c0 = process.cpuUsage();
  let scanned = 0;
  for (let d = 0; d < a.dirs; d++) {
    const dname = `/d${String(d).padStart(15, '0')}`;
    if (!(await s.exists(dname))) continue;
    const names = await s.list(dname);
    // Not `scanned += await …`: that reads `scanned` before the await, so
    // the 8 reads in flight overwrite each other's sums.
    await pool(names.length, 8, async (j) => {
      const e = await s.get(`${dname}/${names[j]}`);
      scanned += e!.value.length;
    });
  }
  const scanS = (performance.now() - t0) / 1000;
  const scanCpuUs = cpuUs(process.cpuUsage(c0)) / (scanned / a.valueBytes);
  done(w, 'scan', `${(scanned / MiB / scanS).toFixed(0)} MB/s, ${scanCpuUs.toFixed(0)} µs CPU per value`);
  const st = s.stats();
  await s.close();
  const out: ReaderResult = { reopenMs, getS, scanS, scanned, getCpuUs, scanCpuUs, phases, stats: { cacheHits: st.cacheHits, cacheMisses: st.cacheMisses, cacheEvictions: st.cacheEvictions, cacheLimit: st.cacheLimit } };
  process.stdout.write(JSON.stringify(out));
}

main().catch((e: unknown) => {
  process.stderr.write(`bigdata reader: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
