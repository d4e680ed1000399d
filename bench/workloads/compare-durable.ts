/**
 * `npm run bench -- compare-durable`: durable commits per second at 1, 10,
 * 100 and 1,000 concurrent committers — latchkey open(dir) beside etcd and
 * Redis with appendfsync always, each acknowledging only after an fsync —
 * with latency percentiles and commits per fsync where the system tells
 * (latchkey's stats, etcd's WAL fsync counter on /metrics; Redis exposes none).
 *
 * Every committer loops: write a 100-byte value to one of 16 keys of its own,
 * await the acknowledgement, repeat. The raw fsync rate of this machine,
 * measured at the start of the run, is the ceiling for one committer.
 */
import { rmSync } from 'node:fs';
import type { Store } from '../../src/api.js';
import { type EtcdPeer, startEtcd } from '../peers/etcd.js';
import { openDurable } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { type RedisPeer, startRedis } from '../peers/redis.js';
import { tempDir } from '../peers/server.js';
import { type BenchOptions, type Cell, note, peerInfo, percentile, progress, ratio, table } from '../util.js';

const VALUE = 'v'.repeat(100);

const committers = (n: number): string => `${n.toLocaleString('en-US')} committer${n === 1 ? '' : 's'}`;

interface Curve {
  perSec: number;
  p50: number;
  p99: number;
  /** Commits per fsync, when the system reports its fsyncs. */
  perSync: number | undefined;
}

/** n committers, each awaiting its own write, for `ms`; `put(i, k)` is committer i's k-th write. */
async function drive(n: number, ms: number, put: (i: number, k: number) => Promise<unknown>): Promise<{ perSec: number; p50: number; p99: number; count: number }> {
  const lat: number[] = [];
  let stop = false;
  const t0 = performance.now();
  const timer = setTimeout(() => {
    stop = true;
  }, ms);
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    for (let k = 0; !stop; k++) {
      const t = performance.now();
      await put(i, k);
      lat.push(performance.now() - t);
    }
  }));
  clearTimeout(timer);
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  return { perSec: lat.length / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), count: lat.length };
}

async function latchkeyCurve(store: Store, n: number, ms: number): Promise<Curve> {
  const syncs = (): number => Number((store.stats() as { groupSyncs?: unknown }).groupSyncs ?? NaN);
  const s0 = syncs();
  const r = await drive(n, ms, (i, k) => store.set(`/c/${i}/${k % 16}`, VALUE));
  const ds = syncs() - s0;
  return { ...r, perSync: Number.isFinite(ds) && ds > 0 ? r.count / ds : undefined };
}

async function etcdFsyncs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^etcd_disk_wal_fsync_duration_seconds_count\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

async function etcdCurve(etcd: EtcdPeer, n: number, ms: number): Promise<Curve> {
  const clients = Array.from({ length: Math.min(n, 8) }, () => etcd.client());
  const s0 = await etcdFsyncs(etcd.url);
  const r = await drive(n, ms, (i, k) => clients[i % clients.length]!.put(`/c/${i}/${k % 16}`).value(VALUE).exec());
  const ds = (await etcdFsyncs(etcd.url)) - s0;
  for (const c of clients) c.close();
  return { ...r, perSync: Number.isFinite(ds) && ds > 0 ? r.count / ds : undefined };
}

async function redisCurve(redis: RedisPeer, n: number, ms: number): Promise<Curve> {
  const conns = Array.from({ length: Math.min(n, 8) }, () => redis.client());
  const r = await drive(n, ms, (i, k) => conns[i % conns.length]!.set(`/c/${i}/${k % 16}`, VALUE));
  for (const c of conns) c.disconnect();
  return { ...r, perSync: undefined };
}

export default async function compareDurable(o: BenchOptions): Promise<void> {
  const levels = o.quick ? [1, 10, 100] : [1, 10, 100, 1000];
  const ms = o.quick ? 200 : 2500;
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const bar = progress('compare-durable', levels.length * 3);

  const results: Record<'latchkey' | 'etcd' | 'redis', (Curve | Missing)[]> = { latchkey: [], etcd: [], redis: [] };

  const dir = tempDir('latchkey-durable');
  try {
    for (const n of levels) {
      // a fresh directory per level, so no level pays for the previous one's log
      rmSync(dir, { recursive: true, force: true });
      const store = await openDurable(dir);
      results.latchkey.push(await latchkeyCurve(store, n, ms));
      await store.close();
      bar.tick();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const etcd = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);
  for (const n of levels) {
    results.etcd.push(isMissing(etcd) ? etcd : await etcdCurve(etcd, n, ms));
    bar.tick();
  }
  if (!isMissing(etcd)) await etcd.stop();

  const redis = o.quick ? skipped : await startRedis(true);
  if (!isMissing(redis)) peerInfo('redis', redis.version, redis.settings);
  for (const n of levels) {
    results.redis.push(isMissing(redis) ? redis : await redisCurve(redis, n, ms));
    bar.tick();
  }
  if (!isMissing(redis)) await redis.stop();
  bar.done();

  const cell = (c: Curve | Missing | undefined, f: (c: Curve) => number | undefined): Cell => (c === undefined ? '' : isMissing(c) ? c.missing : (f(c) ?? 'n/a'));
  const rows = levels.map((n, i) => {
    const l = cell(results.latchkey[i], (c) => c.perSec);
    const e = cell(results.etcd[i], (c) => c.perSec);
    const r = cell(results.redis[i], (c) => c.perSec);
    return [committers(n), l, e, ratio(l, e), r, ratio(l, r)];
  });
  table('durable commits/s (fsync before acknowledgement)', ['concurrent committers', 'latchkey', 'etcd', 'latchkey/etcd', 'redis (appendfsync always)', 'latchkey/redis'], rows, { chart: { columns: [1, 2, 4], unit: 'durable commits/s (higher is better)', log: true } });

  const lat: Cell[][] = [];
  for (const [name, curves] of Object.entries(results)) {
    levels.forEach((n, i) => {
      const c = curves[i];
      lat.push([`${name}, ${committers(n)}`, cell(c, (x) => x.p50), cell(c, (x) => x.p99), cell(c, (x) => x.perSync)]);
    });
  }
  // In a quick run the peers did not run: leave their rows out of the detail table.
  const shown = lat.filter((row) => !row.slice(1).every((c) => c === 'skipped (--quick)'));
  table('durable commit latency and group commit', ['system, committers', 'p50 ms', 'p99 ms', 'commits per fsync'], shown, { chart: false });
  note(`Each committer awaits its own 100-byte write before the next; ${ms} ms per point; etcd and Redis requests are spread over up to 8 client connections.`);
  note('Commits per fsync: latchkey from stats().groupSyncs; etcd from etcd_disk_wal_fsync_duration_seconds_count on its /metrics; Redis does not report its AOF fsyncs (n/a).');
}
