/**
 * `npm run bench -- compare-remote`: get and set over the network stack on
 * one machine — latchkey's server over its Unix socket, etcd over gRPC,
 * Redis over RESP, all on loopback — with 1, 8 and 64 client connections,
 * each keeping 16 requests in flight (pipelined).
 *
 * Sets are durable on every side (latchkey fsync, etcd's WAL fsync, Redis
 * appendfsync always), so the set rows compare like with like; gets read a
 * key set written beforehand (1,000 keys, 100-byte values).
 */
import type { Store } from '../../src/api.js';
import { type EtcdPeer, startEtcd } from '../peers/etcd.js';
import { startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { type RedisPeer, startRedis } from '../peers/redis.js';
import { type BenchOptions, type Cell, note, peerInfo, progress, ratio, table } from '../util.js';

const KEYS = 1000;
const DEPTH = 16;
const VALUE = 'v'.repeat(100);

interface Conn {
  get(k: string): Promise<unknown>;
  set(k: string, v: string): Promise<unknown>;
}

async function drive(conns: readonly Conn[], ms: number, op: (c: Conn, i: number) => Promise<unknown>): Promise<number> {
  let stop = false;
  let n = 0;
  const t0 = performance.now();
  const timer = setTimeout(() => {
    stop = true;
  }, ms);
  await Promise.all(conns.flatMap((c, ci) => Array.from({ length: DEPTH }, async (_, j) => {
    for (let i = ci * DEPTH + j; !stop; i += 7919) {
      await op(c, i);
      n++;
    }
  })));
  clearTimeout(timer);
  return n / ((performance.now() - t0) / 1000);
}

const key = (i: number): string => `/r/k${i % KEYS}`;

export default async function compareRemote(o: BenchOptions): Promise<void> {
  const levels = o.quick ? [1, 8] : [1, 8, 64];
  const ms = o.quick ? 150 : 2000;
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const results = new Map<string, Map<string, Cell>>();
  const bar = progress('compare-remote', 4 * levels.length);

  async function measure(name: string, open: (() => Promise<Conn>) | Missing): Promise<void> {
    const r = new Map<string, Cell>();
    results.set(name, r);
    for (const c of levels) {
      if (isMissing(open)) {
        r.set(`get, ${c}`, open.missing);
        r.set(`set, ${c}`, open.missing);
      } else {
        const conns = await Promise.all(Array.from({ length: c }, () => open()));
        if (c === levels[0]) for (let i = 0; i < KEYS; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => conns[0]!.set(key(i + j), VALUE)));
        r.set(`get, ${c}`, await drive(conns, ms, (x, i) => x.get(key(i))));
        r.set(`set, ${c}`, await drive(conns, ms, (x, i) => x.set(key(i), VALUE)));
      }
      bar.tick();
    }
  }

  for (const transport of ['unix', 'tcp'] as const) {
    // a fresh server per transport, so the second does not read the first one's log
    const server = o.quick ? skipped : await startLatchkeyServer();
    await measure(`latchkey ${transport}`, isMissing(server) ? server : async () => {
      const s: Store = await server.connect(transport);
      return { get: (k) => s.get(k), set: (k, v) => s.set(k, v) };
    });
    if (!isMissing(server)) await server.stop();
  }

  const etcd: EtcdPeer | Missing = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);
  await measure('etcd', isMissing(etcd) ? etcd : async () => {
    const c = etcd.client();
    return { get: (k) => c.get(k).string(), set: (k, v) => c.put(k).value(v).exec() };
  });
  if (!isMissing(etcd)) await etcd.stop();

  const redis: RedisPeer | Missing = o.quick ? skipped : await startRedis(true);
  if (!isMissing(redis)) peerInfo('redis', redis.version, redis.settings);
  await measure('redis', isMissing(redis) ? redis : async () => {
    const c = redis.client();
    return { get: (k) => c.get(k), set: (k, v) => c.set(k, v) };
  });
  if (!isMissing(redis)) await redis.stop();
  bar.done();

  const u = results.get('latchkey unix')!;
  const l = results.get('latchkey tcp')!;
  const e = results.get('etcd')!;
  const r = results.get('redis')!;
  const rows = [...l.keys()].map((k) => {
    const [op, c] = k.split(', ');
    return [`${op}, ${c} connection${c === '1' ? '' : 's'}`, u.get(k)!, l.get(k)!, e.get(k)!, ratio(l.get(k), e.get(k)), r.get(k)!, ratio(l.get(k), r.get(k))];
  });
  table('remote get/set ops/s (loopback, 16 in flight per connection)', ['operation, connections', 'latchkey (Unix socket)', 'latchkey (TCP)', 'etcd', 'latchkey TCP/etcd', 'redis', 'latchkey TCP/redis'], rows, { chart: { columns: [1, 2, 3, 5], unit: 'ops/s (higher is better)', log: true } });
  note('Sets are durable on every side: latchkey fsync, etcd WAL fsync, Redis appendfsync always. Ratios use latchkey over TCP, like etcd and Redis (127.0.0.1); the Unix socket is latchkey\'s default transport.');
  note('etcd gets are linearizable (its default), so each one confirms leadership (a ReadIndex round) before answering.');
}
