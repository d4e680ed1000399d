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
 * Every system is reached over loopback TCP, and every write is durable:
 * latchkey fsync, etcd WAL fsync, Redis appendfsync always. The four run in
 * alternating rounds (bench/util.ts, `alternate`); figures are the median
 * increments per second; every round's final counter is checked against the
 * increments acknowledged.
 */
import type { Store } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { type EtcdPeer, startEtcd } from '../peers/etcd.js';
import { startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { type RedisPeer, startRedis } from '../peers/redis.js';
import { alternate, type BenchOptions, type Cell, cellOf, fmt, note, peerInfo, progress, ratio, roundPlan, type Side, table } from '../util.js';

interface Counter {
  /** One increment, retried as the system needs; true once acknowledged, false when the client gave up (nothing written). */
  inc(): Promise<boolean>;
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
      if (await c.inc()) acked++;
    }
  }));
  clearTimeout(timer);
  const perSec = acked / ((performance.now() - t0) / 1000);
  return { perSec, acked, final: (await clients[0]!.read()) - start };
}

export default async function counter(o: BenchOptions): Promise<void> {
  const levels = o.quick ? [1, 8] : [1, 8, 64];
  const ms = o.quick ? 150 : 700;
  const plan = roundPlan(o);
  const checks: string[] = [];
  const bar = progress('counter', levels.length);
  const skipped: Missing = { missing: 'skipped (--quick)' };

  const server = await startLatchkeyServer();
  peerInfo('latchkey server', undefined, [server.settings]);
  const redis: RedisPeer | Missing = o.quick ? skipped : await startRedis(true);
  if (!isMissing(redis)) peerInfo('redis', redis.version, redis.settings);
  const etcd: EtcdPeer | Missing = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);

  const stores: Store[] = [];
  const readLk = async (s: Store, p: string): Promise<number> => Number((await s.get(p))?.text() ?? '0');
  let etcdRetries = 0;
  let etcdIncs = 0;
  const systems: [string, (() => Promise<Counter>) | Missing][] = [
    ['latchkey read-modify-write transaction', async () => {
      const s = await server.connect('tcp');
      stores.push(s);
      return {
        // a transaction that gives up (the retry policy's deadline) wrote nothing: counted in txGaveUp, not acknowledged
        inc: () => s.transaction(async (tx) => {
          const n = Number((await tx.get('/rmw'))?.text() ?? '0');
          await tx.set('/rmw', String(n + 1));
        }).then(() => true, (e: unknown) => {
          if (LatchkeyError.is(e, 'CONFLICT')) return false;
          throw e;
        }),
        read: () => readLk(s, '/rmw'),
      };
    }],
    ['latchkey add', async () => {
      const s = await server.connect('tcp');
      stores.push(s);
      return { inc: async () => { await s.add('/add', 1); return true; }, read: () => readLk(s, '/add') };
    }],
    ['Redis INCR', isMissing(redis) ? redis : async () => {
      const c = redis.client();
      return { inc: async () => { await c.incr('ctr'); return true; }, read: async () => Number((await c.get('ctr')) ?? '0') };
    }],
    ['etcd Txn CAS loop', isMissing(etcd) ? etcd : async () => {
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
          return true;
        },
        read: async () => (await read()).n,
      };
    }],
  ];

  const results = new Map<number, Map<string, Cell>>();
  for (const c of levels) {
    const clients = new Map<string, Counter[]>();
    for (const [name, open] of systems) if (!isMissing(open)) clients.set(name, await Promise.all(Array.from({ length: c }, () => open())));
    const sides: Side[] = systems.map(([name, open]) => ({
      name,
      run: isMissing(open) ? open : async () => {
        const row = await drive(clients.get(name)!, ms);
        if (row.final !== row.acked) checks.push(`${name}, ${c} clients: counter moved by ${row.final}, ${row.acked} increments acknowledged`);
        return row.perSec;
      },
    }));
    const r = await alternate(`${c} client${c === 1 ? '' : 's'}`, sides, plan);
    results.set(c, new Map(systems.map(([name]) => [name, cellOf(r.get(name))])));
    bar.tick();
  }
  bar.done();
  const txFigures = stores.reduce((a, s) => {
    const st = s.stats();
    return { runs: a.runs + (st.txRuns ?? 0), retries: a.retries + (st.txRetries ?? 0), gaveUp: a.gaveUp + (st.txGaveUp ?? 0) };
  }, { runs: 0, retries: 0, gaveUp: 0 });
  for (const s of stores) await s.close();
  await Promise.all([server.stop(), isMissing(redis) ? undefined : redis.stop(), isMissing(etcd) ? undefined : etcd.stop()]);

  const rows = levels.map((c) => {
    const g = (n: string): Cell => results.get(c)!.get(n)!;
    const [rmw, add, redisR, etcdR] = [g('latchkey read-modify-write transaction'), g('latchkey add'), g('Redis INCR'), g('etcd Txn CAS loop')];
    return [`${c} client${c === 1 ? '' : 's'}`, rmw, add, redisR, etcdR, ratio(add, rmw), ratio(add, redisR), ratio(add, etcdR)];
  });
  table('contended counter: increments/s, one key, each client one increment at a time', [
    'clients', 'latchkey RMW transaction', 'latchkey add', 'Redis INCR', 'etcd Txn CAS loop', 'add/RMW', 'add/Redis', 'add/etcd',
  ], rows, { chart: { columns: [1, 2, 3, 4], unit: 'increments/s (higher is better)', log: true } });
  note('Every system over loopback TCP, each client its own connection; all durable (latchkey fdatasync per commit group, etcd WAL fsync, Redis appendfsync always).');
  note(`latchkey RMW: ${fmt(txFigures.runs)} transaction() calls re-ran ${fmt(txFigures.retries)} times after CONFLICT, ${fmt(txFigures.gaveUp)} gave up; etcd: ${fmt(etcdRetries)} failed compare-and-swaps for ${fmt(etcdIncs)} increments (warm-up rounds included).`);
  note(checks.length === 0 ? 'Every counter moved by exactly the increments acknowledged, in every round.' : `COUNT MISMATCH: ${checks.join('; ')}`);
}
