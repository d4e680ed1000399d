/**
 * `npm run bench -- compare-durable`: durable commits per second at 1, 10,
 * 100 and 1,000 concurrent committers — latchkey's server (its own process,
 * over TCP and over its Unix socket) beside etcd and Redis with appendfsync
 * always, each acknowledging only after an fsync, every one reached over the
 * same number of client connections — with latency percentiles and commits
 * per fsync where the system tells (latchkey's stats, etcd's WAL fsync
 * counter on /metrics; Redis exposes none). latchkey embedded (open(dir), no
 * network) is shown for context only: no ratio is taken against it.
 *
 * Every committer loops: write a 100-byte value to one of 16 keys of its own,
 * await the acknowledgement, repeat. The raw fsync rate of this machine,
 * measured at the start of the run, is the ceiling for one committer.
 */
import type { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import type { Store } from '../../src/api.js';
import { startEtcd } from '../peers/etcd.js';
import { openDurable, startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { startRedis } from '../peers/redis.js';
import { forgetTempDirLater, tempDir } from '../peers/server.js';
import { alternate, type BenchOptions, type Cell, cellOf, median, note, peerInfo, percentile, progress, ratio, roundPlan, type Side, table } from '../util.js';

const VALUE = 'v'.repeat(100);
/** Client connections per system (committers share them round-robin). */
const CONNS = 8;

const committers = (n: number): string => `${n.toLocaleString('en-US')} committer${n === 1 ? '' : 's'}`;

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

interface Detail {
  p50: number[];
  p99: number[];
  commits: number;
  syncs: number;
}

async function etcdFsyncs(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^etcd_disk_wal_fsync_duration_seconds_count\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

interface System {
  name: string;
  /** Runs n committers for ms; may count fsyncs. */
  run: ((n: number, ms: number) => Promise<{ perSec: number; p50: number; p99: number; count: number; syncs?: number }>) | Missing;
}

export default async function compareDurable(o: BenchOptions): Promise<void> {
  const levels = o.quick ? [1, 10, 100] : [1, 10, 100, 1000];
  const ms = o.quick ? 150 : 1000;
  const plan = roundPlan(o);
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const bar = progress('compare-durable', levels.length);

  const server = await startLatchkeyServer();
  peerInfo('latchkey server', undefined, [server.settings]);
  const remote = async (transport: 'unix' | 'tcp'): Promise<System> => {
    const conns: Store[] = [];
    for (let c = 0; c < CONNS; c++) conns.push(await server.connect(transport));
    const syncs = async (): Promise<number> => Number((await (conns[0] as unknown as { fetchStats(): Promise<{ groupSyncs?: number }> }).fetchStats()).groupSyncs ?? NaN);
    return {
      name: `latchkey (${transport === 'tcp' ? 'TCP' : 'Unix socket'})`,
      run: async (n, t) => {
        const s0 = await syncs();
        const r = await drive(n, t, (i, k) => conns[i % CONNS]!.set(`/c/${transport}/${i}/${k % 16}`, VALUE));
        return { ...r, syncs: (await syncs()) - s0 };
      },
    };
  };
  const dir = tempDir('latchkey-durable');
  forgetTempDirLater(dir);
  const embedded = await openDurable(dir);
  const etcd = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);
  const redis = o.quick ? skipped : await startRedis(true);
  if (!isMissing(redis)) peerInfo('redis', redis.version, redis.settings);
  const etcdClients: Etcd3[] = isMissing(etcd) ? [] : Array.from({ length: CONNS }, () => etcd.client());
  const redisConns: Redis[] = isMissing(redis) ? [] : Array.from({ length: CONNS }, () => redis.client());

  const systems: System[] = [
    await remote('tcp'),
    await remote('unix'),
    {
      name: 'etcd',
      run: isMissing(etcd) ? etcd : async (n, t) => {
        const s0 = await etcdFsyncs(etcd.url);
        const r = await drive(n, t, (i, k) => etcdClients[i % CONNS]!.put(`/c/${i}/${k % 16}`).value(VALUE).exec());
        return { ...r, syncs: (await etcdFsyncs(etcd.url)) - s0 };
      },
    },
    {
      name: 'redis (appendfsync always)',
      run: isMissing(redis) ? redis : (n, t) => drive(n, t, (i, k) => redisConns[i % CONNS]!.set(`/c/${i}/${k % 16}`, VALUE)),
    },
    {
      name: 'latchkey embedded (context)',
      run: async (n, t) => {
        const syncs = (): number => Number((embedded.stats() as { groupSyncs?: unknown }).groupSyncs ?? NaN);
        const s0 = syncs();
        const r = await drive(n, t, (i, k) => embedded.set(`/c/${i}/${k % 16}`, VALUE));
        return { ...r, syncs: syncs() - s0 };
      },
    },
  ];

  const rows: Cell[][] = [];
  const details = new Map<string, Detail>();
  for (const n of levels) {
    const sides: Side[] = systems.map((s) => {
      const d: Detail = { p50: [], p99: [], commits: 0, syncs: 0 };
      details.set(`${s.name}|${n}`, d);
      const run = s.run;
      return {
        name: s.name,
        run: isMissing(run) ? run : async (round: number) => {
          const r = await run(n, ms);
          if (round >= 0) {
            d.p50.push(r.p50);
            d.p99.push(r.p99);
            d.commits += r.count;
            d.syncs += r.syncs ?? NaN;
          }
          return r.perSec;
        },
      };
    });
    const r = await alternate(committers(n), sides, plan);
    const [t, u, e, d, emb] = systems.map((s) => cellOf(r.get(s.name)));
    rows.push([committers(n), t!, u!, e!, ratio(t, e), d!, ratio(t, d), emb!]);
    bar.tick();
  }
  bar.done();
  for (const c of etcdClients) c.close();
  for (const c of redisConns) c.disconnect();
  await embedded.close();
  await Promise.all([server.stop(), isMissing(etcd) ? undefined : etcd.stop(), isMissing(redis) ? undefined : redis.stop()]);

  table('durable commits/s (fsync before acknowledgement)', ['concurrent committers', 'latchkey server (TCP)', 'latchkey server (Unix socket)', 'etcd', 'latchkey TCP/etcd', 'redis (appendfsync always)', 'latchkey TCP/redis', 'latchkey embedded (context, no network)'], rows, { chart: { columns: [1, 2, 3, 5], unit: 'durable commits/s (higher is better)', log: true } });

  const lat: Cell[][] = [];
  for (const s of systems) {
    levels.forEach((n) => {
      const d = details.get(`${s.name}|${n}`)!;
      if (isMissing(s.run)) {
        if (s.run.missing !== skipped.missing) lat.push([`${s.name}, ${committers(n)}`, s.run.missing, '', '']);
        return;
      }
      lat.push([`${s.name}, ${committers(n)}`, median(d.p50), median(d.p99), Number.isFinite(d.syncs) && d.syncs > 0 ? d.commits / d.syncs : 'n/a']);
    });
  }
  table('durable commit latency and group commit', ['system, committers', 'p50 ms (median of rounds)', 'p99 ms (median of rounds)', 'commits per fsync'], lat, { chart: false });
  note(`Each committer awaits its own 100-byte write before the next; ${ms} ms per round. Every networked system is reached over ${CONNS} client connections (committers share them round-robin; with fewer committers than connections some stay idle); latchkey embedded has no connection and is context only.`);
  note('Ratios use latchkey over TCP, like etcd and Redis (127.0.0.1). Durability is the same on every side: latchkey fdatasync per commit group, etcd WAL fsync (raft batching), Redis appendfsync always (AOF fsync before replies, once per event-loop turn).');
  note('Commits per fsync: latchkey from its server\'s stats (groupSyncs; the server is shared by the TCP and Unix rows, each counts its own rounds); etcd from etcd_disk_wal_fsync_duration_seconds_count on its /metrics; Redis does not report its AOF fsyncs (n/a).');
}
