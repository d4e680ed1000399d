/**
 * `npm run bench -- counter`: one contended counter, incremented by 1, 8 and
 * 64 clients at once (each client one increment at a time, its own
 * connection), over the network stack on one machine:
 *  - latchkey read-modify-write: `store.transaction(tx => get, set n+1)`
 *    with the default retry policy (conflicts re-run after a backoff);
 *  - latchkey `store.add(path, 1)`: an atomic op, never conflicts;
 *  - Redis INCR;
 *  - etcd: the usual compare-and-swap loop, a Txn `If(mod_revision == r)
 *    Then(put n+1) Else(get)` retried at once with what Else returned (what
 *    clientv3's STM does).
 * latchkey is reached over its Unix socket (its default transport), the
 * peers over loopback TCP. Every write is durable: latchkey fsync, etcd WAL
 * fsync, Redis appendfsync always. Figures are increments per second; the
 * final counter is checked against the increments acknowledged. The load
 * average before and after is printed: the figures are only as good as the
 * machine was quiet.
 */
import os from 'node:os';
import type { Store } from '../../src/api.js';
import { type EtcdPeer, startEtcd } from '../peers/etcd.js';
import { startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { type RedisPeer, startRedis } from '../peers/redis.js';
import { type BenchOptions, type Cell, fmt, note, peerInfo, progress, ratio, table } from '../util.js';

interface Counter {
  /** One increment, retried as the system needs; resolves once acknowledged. */
  inc(): Promise<void>;
  /** The counter's value now. */
  read(): Promise<number>;
}

interface Row {
  perSec: number;
  acked: number;
  final: number;
}

async function drive(clients: readonly Counter[], ms: number): Promise<Row> {
  let stop = false;
  let acked = 0;
  const start = await clients[0]!.read();
  const t0 = performance.now();
  const timer = setTimeout(() => { stop = true; }, ms);
  await Promise.all(clients.map(async (c) => {
    while (!stop) {
      await c.inc();
      acked++;
    }
  }));
  clearTimeout(timer);
  const perSec = acked / ((performance.now() - t0) / 1000);
  return { perSec, acked, final: (await clients[0]!.read()) - start };
}

const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');

export default async function counter(o: BenchOptions): Promise<void> {
  const levels = o.quick ? [1, 8] : [1, 8, 64];
  const ms = o.quick ? 300 : 3000;
  const results = new Map<string, Map<number, Cell>>();
  const checks: string[] = [];
  const bar = progress('counter', 4 * levels.length);
  const loadBefore = load();

  async function measure(name: string, open: (() => Promise<Counter>) | Missing, close: () => Promise<void> = async () => {}): Promise<void> {
    const r = new Map<number, Cell>();
    results.set(name, r);
    for (const c of levels) {
      if (isMissing(open)) {
        r.set(c, open.missing);
      } else {
        const clients = await Promise.all(Array.from({ length: c }, () => open()));
        const row = await drive(clients, ms);
        r.set(c, row.perSec);
        if (row.final !== row.acked) checks.push(`${name}, ${c} clients: counter moved by ${row.final}, ${row.acked} increments acknowledged`);
      }
      bar.tick();
    }
    await close();
  }

  const server = await startLatchkeyServer();
  const stores: Store[] = [];
  const lkOpen = async (): Promise<Store> => {
    if (isMissing(server)) throw new Error('unreachable');
    const s = await server.connect('unix');
    stores.push(s);
    return s;
  };
  const readLk = async (s: Store, p: string): Promise<number> => Number((await s.get(p))?.text() ?? '0');
  await measure('latchkey read-modify-write transaction', isMissing(server) ? server : async () => {
    const s = await lkOpen();
    return {
      inc: () => s.transaction(async (tx) => {
        const n = Number((await tx.get('/rmw'))?.text() ?? '0');
        await tx.set('/rmw', String(n + 1));
      }),
      read: () => readLk(s, '/rmw'),
    };
  });
  const txFigures = stores.reduce((a, s) => {
    const st = s.stats();
    return { runs: a.runs + (st.txRuns ?? 0), retries: a.retries + (st.txRetries ?? 0), gaveUp: a.gaveUp + (st.txGaveUp ?? 0) };
  }, { runs: 0, retries: 0, gaveUp: 0 });
  await measure('latchkey add', isMissing(server) ? server : async () => {
    const s = await lkOpen();
    return { inc: async () => { await s.add('/add', 1); }, read: () => readLk(s, '/add') };
  }, async () => {
    for (const s of stores) await s.close();
    if (!isMissing(server)) await server.stop();
  });

  const redis: RedisPeer | Missing = o.quick ? { missing: 'skipped (--quick)' } : await startRedis(true);
  if (!isMissing(redis)) peerInfo('redis', redis.version, redis.settings);
  await measure('Redis INCR', isMissing(redis) ? redis : async () => {
    const c = redis.client();
    return { inc: async () => { await c.incr('ctr'); }, read: async () => Number((await c.get('ctr')) ?? '0') };
  }, async () => { if (!isMissing(redis)) await redis.stop(); });

  const etcd: EtcdPeer | Missing = o.quick ? { missing: 'skipped (--quick)' } : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);
  let etcdRetries = 0;
  let etcdIncs = 0;
  await measure('etcd Txn CAS loop', isMissing(etcd) ? etcd : async () => {
    const c = etcd.client();
    const read = async (): Promise<{ n: number; rev: string }> => {
      const r = await c.get('ctr').exec();
      const kv = r.kvs[0];
      return kv === undefined ? { n: 0, rev: '0' } : { n: Number(kv.value.toString()), rev: kv.mod_revision };
    };
    return {
      async inc() {
        let cur = await read();
        for (;;) {
          const t = await c.if('ctr', 'Mod', '==', cur.rev).then(c.put('ctr').value(String(cur.n + 1))).else(c.get('ctr')).commit();
          if (t.succeeded) break;
          etcdRetries++;
          const kv = t.responses[0]?.response_range?.kvs[0];
          cur = kv === undefined ? { n: 0, rev: '0' } : { n: Number(kv.value.toString()), rev: kv.mod_revision };
        }
        etcdIncs++;
      },
      read: async () => (await read()).n,
    };
  }, async () => { if (!isMissing(etcd)) await etcd.stop(); });
  bar.done();

  const rmw = results.get('latchkey read-modify-write transaction')!;
  const add = results.get('latchkey add')!;
  const redisR = results.get('Redis INCR')!;
  const etcdR = results.get('etcd Txn CAS loop')!;
  const rows = levels.map((c) => [
    `${c} client${c === 1 ? '' : 's'}`, rmw.get(c)!, add.get(c)!, redisR.get(c)!, etcdR.get(c)!,
    ratio(add.get(c), rmw.get(c)), ratio(add.get(c), redisR.get(c)), ratio(add.get(c), etcdR.get(c)),
  ]);
  table('contended counter: increments/s, one key, each client one increment at a time', [
    'clients', 'latchkey RMW transaction', 'latchkey add', 'Redis INCR', 'etcd Txn CAS loop', 'add/RMW', 'add/Redis', 'add/etcd',
  ], rows, { chart: { columns: [1, 2, 3, 4], unit: 'increments/s (higher is better)', log: true } });
  note(`latchkey over its Unix socket, Redis and etcd over loopback TCP; all durable (fsync per commit or group). Load average before: ${loadBefore}; after: ${load()} (${os.availableParallelism()} cores).`);
  note(`latchkey RMW: ${fmt(txFigures.runs)} transaction() calls re-ran ${fmt(txFigures.retries)} times after CONFLICT, ${fmt(txFigures.gaveUp)} gave up; etcd: ${fmt(etcdRetries)} failed compare-and-swaps for ${fmt(etcdIncs)} increments.`);
  note(checks.length === 0 ? 'Every counter moved by exactly the increments acknowledged.' : `COUNT MISMATCH: ${checks.join('; ')}`);
}
