/**
 * `npm run bench -- compare-remote`: get and set over the network stack on
 * one machine — latchkey's server (its own process) over TCP and over its
 * Unix socket, etcd over gRPC, Redis over RESP, all on loopback — with 1, 8
 * and 64 client connections, each keeping 16 requests in flight (pipelined)
 * on every system; then one request at a time, against the echo floor: a raw
 * Node echo server in its own process over the same socket kind.
 *
 * Sets are durable on every side (latchkey fdatasync, etcd's WAL fsync,
 * Redis appendfsync always); gets read a key set written beforehand (1,000
 * keys, 100-byte values) and are linearizable on every side (etcd's default
 * ReadIndex read; latchkey and Redis are single servers reading their
 * latest commit). Ratios compare latchkey over TCP with the peers over TCP.
 */
import type { Store } from '../../src/api.js';
import { type EchoPeer, startEcho } from '../peers/echo.js';
import { startEtcd } from '../peers/etcd.js';
import { type LatchkeyServerPeer, startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { startRedis } from '../peers/redis.js';
import { alternate, type BenchOptions, type Cell, cellOf, note, peerInfo, progress, ratio, roundPlan, type Side, table } from '../util.js';

const KEYS = 1000;
const DEPTH = 16;
const VALUE = 'v'.repeat(100);
/** Bytes the echo floor sends and gets back per round trip: about a get request and its 100-byte answer. */
const ECHO_BYTES = 128;

interface Conn {
  get(k: string): Promise<unknown>;
  set(k: string, v: string): Promise<unknown>;
  close(): void;
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

/** Mean µs of one sequential round trip over `ms`. */
async function sequential(ms: number, op: (i: number) => Promise<unknown>): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    for (let k = 0; k < 50; k++) await op(n++);
  }
  return ((performance.now() - t0) * 1000) / n;
}

const key = (i: number): string => `/r/k${i % KEYS}`;

type Opener = (() => Promise<Conn>) | Missing;

export default async function compareRemote(o: BenchOptions): Promise<void> {
  const levels = o.quick ? [1, 8] : [1, 8, 64];
  const ms = o.quick ? 100 : 700;
  const plan = roundPlan(o);
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const bar = progress('compare-remote', 2 * levels.length + 1);

  // Every server runs for the whole workload, so their rounds can alternate.
  const server: LatchkeyServerPeer = await startLatchkeyServer();
  peerInfo('latchkey server', undefined, [server.settings]);
  const echo: EchoPeer = await startEcho();
  const etcd = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);
  const redis = o.quick ? skipped : await startRedis(true);
  if (!isMissing(redis)) peerInfo('redis', redis.version, redis.settings);

  const lk = (transport: 'unix' | 'tcp'): Opener => async () => {
    const s: Store = await server.connect(transport);
    return { get: (k) => s.get(k), set: (k, v) => s.set(k, v), close: () => void s.close() };
  };
  const systems: [string, Opener][] = [
    ['latchkey (TCP)', lk('tcp')],
    ['latchkey (Unix socket)', lk('unix')],
    ['etcd', isMissing(etcd) ? etcd : async () => {
      const c = etcd.client();
      return { get: (k) => c.get(k).string(), set: (k, v) => c.put(k).value(v).exec(), close: () => c.close() };
    }],
    ['redis', isMissing(redis) ? redis : async () => {
      const c = redis.client();
      return { get: (k) => c.get(k), set: (k, v) => c.set(k, v), close: () => c.disconnect() };
    }],
  ];
  // the key set every get reads (latchkey's two transports share one server)
  for (const [name, open] of systems) {
    if (isMissing(open) || name === 'latchkey (Unix socket)') continue;
    const c = await open();
    for (let i = 0; i < KEYS; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => c.set(key(i + j), VALUE)));
    c.close();
  }

  const rows: Cell[][] = [];
  for (const n of levels) {
    const conns = new Map<string, Conn[]>();
    for (const [name, open] of systems) if (!isMissing(open)) conns.set(name, await Promise.all(Array.from({ length: n }, () => open())));
    for (const op of ['get', 'set'] as const) {
      const sides: Side[] = systems.map(([name, open]) => ({
        name,
        run: isMissing(open) ? open : () => drive(conns.get(name)!, ms, (c, i) => (op === 'get' ? c.get(key(i)) : c.set(key(i), VALUE))),
      }));
      const r = await alternate(`${op}, ${n} conn`, sides, plan);
      const [t, u, e, d] = systems.map(([name]) => cellOf(r.get(name)));
      rows.push([`${op}, ${n} connection${n === 1 ? '' : 's'}`, t!, u!, e!, ratio(t, e), d!, ratio(t, d)]);
      bar.tick();
    }
    for (const cs of conns.values()) for (const c of cs) c.close();
  }
  table(`remote get/set ops/s (loopback, ${DEPTH} in flight per connection on every system)`, ['operation, connections', 'latchkey (TCP)', 'latchkey (Unix socket)', 'etcd', 'latchkey TCP/etcd', 'redis', 'latchkey TCP/redis'], rows, { chart: { columns: [1, 2, 3, 5], unit: 'ops/s (higher is better)', log: true } });

  // The floor: one request at a time, latchkey get against a raw echo over the same socket kind.
  const lkUnix = await server.connect('unix');
  const lkTcp = await server.connect('tcp');
  const echoUnix = await echo.connect('unix', ECHO_BYTES);
  const echoTcp = await echo.connect('tcp', ECHO_BYTES);
  const redisSeq = isMissing(redis) ? undefined : redis.client();
  const seqMs = o.quick ? 100 : 500;
  const seq = await alternate('sequential round trips', [
    { name: 'echo unix', run: () => sequential(seqMs, () => echoUnix.roundTrip()) },
    { name: 'latchkey unix', run: () => sequential(seqMs, (i) => lkUnix.get(key(i))) },
    { name: 'echo tcp', run: () => sequential(seqMs, () => echoTcp.roundTrip()) },
    { name: 'latchkey tcp', run: () => sequential(seqMs, (i) => lkTcp.get(key(i))) },
    { name: 'redis tcp', run: redisSeq === undefined ? (redis as Missing) : () => sequential(seqMs, (i) => redisSeq.get(key(i))) },
  ], plan);
  bar.tick();
  bar.done();
  const s = (k: string): Cell => cellOf(seq.get(k));
  table('one request at a time: mean round trip µs (lower is better), against the echo floor', ['socket', 'raw Node echo', 'latchkey get', 'latchkey/echo', 'redis GET', 'latchkey/redis'], [
    ['Unix socket', s('echo unix'), s('latchkey unix'), ratio(s('latchkey unix'), s('echo unix')), '', ''],
    ['TCP (127.0.0.1)', s('echo tcp'), s('latchkey tcp'), ratio(s('latchkey tcp'), s('echo tcp')), s('redis tcp'), ratio(s('latchkey tcp'), s('redis tcp'))],
  ], { chart: { columns: [1, 2, 4], unit: 'µs per round trip (lower is better)' } });
  echoUnix.close();
  echoTcp.close();
  await lkUnix.close();
  await lkTcp.close();
  await Promise.all([server.stop(), echo.stop(), isMissing(etcd) ? undefined : etcd.stop(), isMissing(redis) ? undefined : redis.stop()]);

  note(`Connections: each system gets the same n client connections, each with ${DEPTH} requests in flight (etcd: one etcd3 client, its own HTTP/2 connection, per connection; Redis: one ioredis connection each, no auto-pipelining; latchkey: one client each). Ratios use latchkey over TCP, like etcd and Redis; the Unix socket (latchkey's default transport) is shown beside it.`);
  note('Sets are durable on every side: latchkey fdatasync (group commit), etcd WAL fsync, Redis appendfsync always. etcd gets are linearizable (a ReadIndex round each), the same guarantee latchkey\'s and Redis\'s single-server gets give.');
  note(`Echo floor: a raw Node echo server (net.createServer writing every chunk back, in its own process) answering a ${ECHO_BYTES}-byte message, one at a time over one connection; latchkey get is one request at a time over one connection to its server (a 100-byte value), on the same socket kind in the same rounds. The goal of issue 14 is latchkey/echo ≤ 1.2×.`);
}
