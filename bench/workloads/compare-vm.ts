/**
 * `npm run bench -- compare-vm`: the 300 parallel VM start/shutdowns
 * (seed 002, the shape in the engine issue) on latchkey — in process, on
 * disk, over its socket — and on etcd and Redis, each retrying its
 * transactions on conflict. The peers' modelling of the hierarchy is
 * described in bench/peers/vm-peer.ts.
 */
import { rmSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import { open } from '../../src/index.js';
import { startEtcd } from '../peers/etcd.js';
import { openDurable, startLatchkeyServer } from '../peers/latchkey.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { startRedis } from '../peers/redis.js';
import { tempDir } from '../peers/server.js';
import { etcdKv, peerVmWorkload, redisKv } from '../peers/vm-peer.js';
import { type BenchOptions, type Cell, note, peerInfo, progress, ratio, table } from '../util.js';
import { vmWorkload } from '../vm-workload.js';

interface Row {
  seconds: number;
  transactions: number;
  /** Conflicts the caller saw and retried. */
  retries: number;
}

const VMS = 300;

export default async function compareVm(o: BenchOptions): Promise<void> {
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const rows = new Map<string, Row | Missing>();
  const bar = progress('compare-vm', 6 * VMS);
  const tick = (): void => bar.tick();

  // latchkey in process; one warm-up run first in a full run (the engine benchmark reports cold and warm)
  {
    if (!o.quick) {
      const warm = await open();
      await vmWorkload(warm, VMS);
      await warm.close();
    }
    const s = await open();
    rows.set('latchkey, in process (memory)', await vmWorkload(s, VMS));
    await s.close();
    bar.tick(VMS);
  }
  {
    const dir = tempDir('latchkey-vm');
    try {
      const s = await openDurable(dir);
      rows.set('latchkey, in process (fsync)', await vmWorkload(s, VMS));
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    bar.tick(VMS);
  }
  {
    const server = o.quick ? skipped : await startLatchkeyServer();
    if (isMissing(server)) rows.set('latchkey, remote over Unix socket (fsync)', server);
    else {
      const c = await server.connect();
      rows.set('latchkey, remote over Unix socket (fsync)', await vmWorkload(c, VMS));
      await server.stop();
    }
    bar.tick(VMS);
  }
  {
    const etcd = o.quick ? skipped : await startEtcd();
    if (isMissing(etcd)) {
      rows.set('etcd (fsync)', etcd);
      bar.tick(VMS);
    } else {
      peerInfo('etcd', etcd.version, etcd.settings);
      const clients: Etcd3[] = Array.from({ length: 8 }, () => etcd.client());
      rows.set('etcd (fsync)', await peerVmWorkload(etcdKv(clients), VMS, tick));
      await etcd.stop();
    }
  }
  for (const durable of [true, false]) {
    const label = durable ? 'redis (appendfsync always)' : 'redis (no persistence)';
    const redis = o.quick ? skipped : await startRedis(durable);
    if (isMissing(redis)) {
      rows.set(label, redis);
      bar.tick(VMS);
    } else {
      peerInfo(durable ? 'redis' : 'redis (in memory)', redis.version, redis.settings);
      const pool = Array.from({ length: 32 }, () => redis.client());
      rows.set(label, await peerVmWorkload(redisKv(pool), VMS, tick));
      await redis.stop();
    }
  }
  bar.done();

  const secs = (name: string): number | undefined => {
    const r = rows.get(name);
    return r && !isMissing(r) ? r.seconds : undefined;
  };
  const remoteSecs = secs('latchkey, remote over Unix socket (fsync)');
  const diskSecs = secs('latchkey, in process (fsync)');
  const out: Cell[][] = [...rows].map(([name, r]) => (isMissing(r)
    ? [name, r.missing, '', '', '', '']
    : [name, r.seconds, r.transactions, r.retries, ...(name.startsWith('latchkey') ? ['', ''] : [ratio(remoteSecs, r.seconds), ratio(diskSecs, r.seconds)])]));
  table(`${VMS} parallel VM start/shutdowns`, ['system', 'seconds', 'transactions', 'conflicts retried', 'latchkey remote/peer (time)', 'latchkey in process (fsync)/peer (time)'], out, { chart: { columns: [1], unit: 'seconds (lower is better)', log: true } });
  note('Every system runs the same steps per VM (bench/vm-workload.ts; bench/peers/vm-peer.ts for the peers), all VMs at once, retrying on conflict. latchkey replays a conflicting transaction in the engine, so its callers see few or no conflicts.');
  note('etcd: 8 client connections; each transaction is one Txn comparing the mod_revision of every key it read. Redis: 32 pooled connections (WATCH is per connection); MULTI/WATCH with a Lua recursive delete over a sorted-set index of paths.');
}
