/**
 * `npm run bench -- compare-vm`: the 300 parallel VM start/shutdowns
 * (seed 002, the shape in the engine issue) on latchkey's server — durable
 * and `--memory`, over TCP like the peers — and on etcd and Redis (with
 * appendfsync always, and without persistence), each retrying its
 * transactions on conflict; latchkey in process and over its Unix socket
 * for context. Every system gets the same warm-up round and the rounds
 * alternate; the peers' modelling of the hierarchy is described in
 * bench/peers/vm-peer.ts.
 */
import type { Etcd3 } from 'etcd3';
import type { Redis } from 'ioredis';
import type { Store } from '../../src/api.js';
import { open } from '../../src/index.js';
import { startEtcd } from '../peers/etcd.js';
import { openDurable, startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { startRedis } from '../peers/redis.js';
import { forgetTempDirLater, tempDir } from '../peers/server.js';
import { etcdKv, peerVmWorkload, redisKv } from '../peers/vm-peer.js';
import { alternate, type BenchOptions, type Cell, cellOf, note, peerInfo, progress, ratio, roundPlan, type Side, table } from '../util.js';
import { vmWorkload } from '../vm-workload.js';

const VMS = 300;
const ETCD_CONNS = 8;
/** Redis WATCH is per connection: each open transaction needs a connection of its own. */
const REDIS_CONNS = 32;
const LK_CONNS = 8;

interface Row {
  name: string;
  /** Client connections it uses, for the table. */
  connections: string;
  run: (() => Promise<{ seconds: number; transactions: number; retries: number }>) | Missing;
}

export default async function compareVm(o: BenchOptions): Promise<void> {
  const plan = roundPlan(o, { rounds: 5 });
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const bar = progress('compare-vm', 1);

  const durable = await startLatchkeyServer();
  const memory = await startLatchkeyServer({ memory: true });
  peerInfo('latchkey server', undefined, [durable.settings, memory.settings]);
  const connect = async (srv: typeof durable, transport: 'unix' | 'tcp', n: number): Promise<Store[]> => {
    const out: Store[] = [];
    for (let i = 0; i < n; i++) out.push(await srv.connect(transport));
    return out;
  };
  const tcp1 = await connect(durable, 'tcp', 1);
  const tcp8 = await connect(durable, 'tcp', LK_CONNS);
  const unix1 = await connect(durable, 'unix', 1);
  const memTcp1 = await connect(memory, 'tcp', 1);
  const inMem = await open();
  const dir = tempDir('latchkey-vm');
  forgetTempDirLater(dir);
  const inDisk = await openDurable(dir);

  const etcd = o.quick ? skipped : await startEtcd();
  if (!isMissing(etcd)) peerInfo('etcd', etcd.version, etcd.settings);
  const etcdClients: Etcd3[] = isMissing(etcd) ? [] : Array.from({ length: ETCD_CONNS }, () => etcd.client());
  const redisD = o.quick ? skipped : await startRedis(true);
  if (!isMissing(redisD)) peerInfo('redis', redisD.version, redisD.settings);
  const redisM = o.quick ? skipped : await startRedis(false);
  if (!isMissing(redisM)) peerInfo('redis (in memory)', redisM.version, redisM.settings);
  const pool = (r: typeof redisD): Redis[] => (isMissing(r) ? [] : Array.from({ length: REDIS_CONNS }, () => r.client()));
  const poolD = pool(redisD);
  const poolM = pool(redisM);

  const rows: Row[] = [
    { name: 'latchkey server, TCP (fsync)', connections: '1', run: () => vmWorkload(tcp1, VMS) },
    { name: 'latchkey server, TCP (fsync), 8 connections', connections: String(LK_CONNS), run: () => vmWorkload(tcp8, VMS) },
    { name: 'latchkey server, TCP (--memory)', connections: '1', run: () => vmWorkload(memTcp1, VMS) },
    { name: 'etcd (fsync)', connections: String(ETCD_CONNS), run: isMissing(etcd) ? etcd : () => peerVmWorkload(etcdKv(etcdClients), VMS) },
    { name: 'redis (appendfsync always)', connections: String(REDIS_CONNS), run: isMissing(redisD) ? redisD : () => peerVmWorkload(redisKv(poolD), VMS) },
    { name: 'redis (no persistence)', connections: String(REDIS_CONNS), run: isMissing(redisM) ? redisM : () => peerVmWorkload(redisKv(poolM), VMS) },
    { name: 'latchkey server, Unix socket (fsync) (context)', connections: '1', run: () => vmWorkload(unix1, VMS) },
    { name: 'latchkey in process (fsync) (context)', connections: '-', run: () => vmWorkload(inDisk, VMS) },
    { name: 'latchkey in process (memory) (context)', connections: '-', run: () => vmWorkload(inMem, VMS) },
  ];
  const last = new Map<string, { transactions: number; retries: number }>();
  const sides: Side[] = rows.map((r) => {
    const run = r.run;
    return {
      name: r.name,
      run: isMissing(run) ? run : async () => {
        const x = await run();
        last.set(r.name, x);
        return x.seconds;
      },
    };
  });
  const res = await alternate(`${VMS} VMs`, sides, plan);
  bar.tick();
  bar.done();
  for (const c of etcdClients) c.close();
  for (const s of [...tcp1, ...tcp8, ...unix1, ...memTcp1]) await s.close();
  await inMem.close();
  await inDisk.close();
  await Promise.all([durable.stop(), memory.stop(), ...[etcd, redisD, redisM].map((p) => (isMissing(p) ? undefined : p.stop()))]);

  const secs = (name: string): Cell => cellOf(res.get(name));
  // the like-for-like latchkey row of each peer: same durability, same transport (TCP)
  const likeOf: Record<string, string> = {
    'etcd (fsync)': 'latchkey server, TCP (fsync)',
    'redis (appendfsync always)': 'latchkey server, TCP (fsync)',
    'redis (no persistence)': 'latchkey server, TCP (--memory)',
  };
  const out: Cell[][] = rows.map((r) => {
    const a = res.get(r.name)!;
    const l = last.get(r.name);
    const like = likeOf[r.name];
    return [r.name, r.connections, a.median, l?.transactions ?? '', l?.retries ?? '', like === undefined ? '' : like.replace('latchkey server, ', ''), like === undefined ? '' : ratio(secs(like), a.median)];
  });
  table(`${VMS} parallel VM start/shutdowns (seconds, lower is better)`, ['system', 'connections', 'seconds', 'transactions', 'conflicts retried (last round)', 'latchkey row compared', 'latchkey/peer (time)'], out, { chart: { columns: [2], unit: 'seconds (lower is better)', log: true } });
  note('Every system runs the same steps per VM (bench/vm-workload.ts; bench/peers/vm-peer.ts for the peers), all VMs at once, retrying on conflict; latchkey replays a conflicting transaction in the engine, so its callers see few or no conflicts. Each system keeps its data between rounds (every round deletes what it created).');
  note(`Ratios compare each peer with latchkey's server over TCP at the same durability (fsync against etcd and Redis appendfsync always; --memory against Redis without persistence), on 1 connection. Connections: latchkey 1 (its client multiplexes transactions on one connection; an 8-connection row is shown beside it), etcd ${ETCD_CONNS}, Redis ${REDIS_CONNS} (one for the plain writes, ${REDIS_CONNS - 1} pooled for transactions: WATCH is per connection, so each open transaction holds one).`);
  note('etcd: each transaction is one Txn comparing the mod_revision of every key it read. Redis: MULTI/WATCH with a Lua recursive delete over a sorted-set index of paths.');
}
