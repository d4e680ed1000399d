/**
 * `npm run bench -- cache-policy`: the value cache's eviction policies
 * (storage/value-cache.ts), LRU against S3-FIFO, on the same traces.
 *
 * Each access is what `ValueStore` does on a read: look the key up, and on
 * a miss keep the value (4 KiB each, charged 4 KiB plus the per-entry
 * overhead, so a cache of C bytes holds C / entryCost values). Traces, seeded and the same for both policies:
 * - zipf: 100,000 keys, Zipf(0.99) popularity, 2,000,000 accesses;
 * - zipf 0.8: flatter popularity, same sizes;
 * - scan-polluted: the zipf trace with, after every 20,000 accesses, a scan
 *   of 20,000 keys never read before or after (a one-pass read of a large
 *   directory: a third of all accesses);
 * at caches of 1% and 10% of the distinct keys of the Zipf part.
 * Reported: hit ratio of the Zipf accesses, and CPU per access (process.cpuUsage around the
 * replay, the two policies alternated over rounds; the median of rounds).
 * `--quick`: 10,000 keys and 100,000 accesses, one round.
 */
import os from 'node:os';
import { type CachePolicy, entryCost, makeValueCache } from '../../src/storage/value-cache.js';
import { type BenchOptions, fmt, median, note, table } from '../util.js';

const VALUE = new Uint8Array(4096);

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

/** `count` draws of keys in [0, n) with Zipf(alpha) popularity; rank r is key (r * 7919) % n, so popular keys are spread out. */
function zipf(n: number, alpha: number, count: number, seed: number): Float64Array {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / Math.pow(i + 1, alpha);
  for (let i = 0; i < n; i++) cdf[i]! /= sum;
  const r = rng(seed);
  const out = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    const u = r();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    out[k] = (lo * 7919) % n;
  }
  return out;
}

/** The zipf trace with a scan of `scanLen` fresh keys (never seen elsewhere) after every `every` accesses. */
function polluted(base: Float64Array, n: number, every: number, scanLen: number): Float64Array {
  const out: number[] = [];
  let fresh = n;
  for (let k = 0; k < base.length; k++) {
    out.push(base[k]!);
    if ((k + 1) % every === 0) for (let j = 0; j < scanLen; j++) out.push(fresh++);
  }
  return Float64Array.from(out);
}

function replay(policy: CachePolicy, limitBytes: number, trace: Float64Array, n: number): { hits: number; cpuUs: number } {
  const c = makeValueCache(policy, limitBytes);
  let hits = 0;
  const t0 = process.cpuUsage();
  for (let k = 0; k < trace.length; k++) {
    const key = trace[k]!;
    if (c.get(key) !== undefined) {
      if (key < n) hits++;
    }
    else c.set(key, VALUE);
  }
  const t = process.cpuUsage(t0);
  return { hits, cpuUs: t.user + t.system };
}

export default async function cachePolicy(o: BenchOptions): Promise<void> {
  const n = o.quick ? 10_000 : 100_000;
  const count = o.quick ? 100_000 : 2_000_000;
  const rounds = o.quick ? 1 : 5;
  const traces: [string, Float64Array][] = [];
  const z = zipf(n, 0.99, count, 42);
  traces.push(['zipf 0.99', z]);
  traces.push(['zipf 0.8', zipf(n, 0.8, count, 43)]);
  traces.push(['zipf 0.99 + scans (1/3 of accesses)', polluted(z, n, 20_000, o.quick ? 2_000 : 20_000)]);
  const rows: (string | number)[][] = [];
  const policies: CachePolicy[] = ['lru', 's3fifo'];
  for (const [name, trace] of traces) {
    for (const pct of [1, 10]) {
      const limit = Math.floor((n * pct) / 100) * entryCost(VALUE); // values and the per-entry charge
      let zipfAccesses = 0;
      for (let k = 0; k < trace.length; k++) if (trace[k]! < n) zipfAccesses++;
      const hits = new Map<CachePolicy, number>();
      const cpu = new Map<CachePolicy, number[]>(policies.map((p) => [p, []]));
      for (let r = 0; r < rounds; r++) {
        // Alternate which goes first, so load drifts hit both alike.
        for (const p of r % 2 === 0 ? policies : [...policies].reverse()) {
          const res = replay(p, limit, trace, n);
          hits.set(p, res.hits);
          cpu.get(p)!.push((res.cpuUs * 1000) / trace.length);
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      const ratio = (p: CachePolicy): string => `${fmt((hits.get(p)! / zipfAccesses) * 100, 2)}%`;
      rows.push([name, `${pct}%`, ratio('lru'), ratio('s3fifo'), fmt(median(cpu.get('lru')!), 0), fmt(median(cpu.get('s3fifo')!), 0), os.loadavg()[0]!.toFixed(1)]);
    }
  }
  table(`cache-policy: LRU against S3-FIFO, ${n.toLocaleString('en-US')} keys of 4 KiB, ${count.toLocaleString('en-US')} Zipf accesses (median of ${rounds} alternated rounds for CPU)`,
    ['trace', 'cache (of keys)', 'LRU hit ratio', 'S3-FIFO hit ratio', 'LRU CPU (ns/access)', 'S3-FIFO CPU (ns/access)', 'load avg'], rows);
  note('An access is a lookup and, on a miss, an insertion (what ValueStore does on a read). Hit ratio: hits among the Zipf accesses (the scans\' keys are never read twice, so never hit); CPU per access counts every access, scans included. Hit ratios do not depend on load; CPU per access is process CPU time, not wall time.');
}
