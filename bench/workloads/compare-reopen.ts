/**
 * `npm run bench -- compare-reopen`: time to reopen, and memory once open,
 * for 1,000,000 nodes (1,000 directories × 1,000 children, 16-byte names,
 * 100-byte values) — latchkey open(dir) from its snapshot in a fresh
 * process, lmdb-js in a fresh process, etcd and Redis restarted on their
 * data directories. "Open" means ready to serve: the store answered a read.
 *
 * The systems keep their data differently, so the figures mean different
 * things and the notes say so: latchkey loads its snapshot into memory,
 * lmdb-js maps its file (RSS counts only pages touched), etcd replays its
 * WAL from the last snapshot into an mmapped bbolt file, Redis replays its AOF.
 */
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { MultiOp } from '../../src/api.js';
import { open } from '../../src/index.js';
import { startEtcd } from '../peers/etcd.js';
import { openLmdb } from '../peers/lmdb.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { startRedis } from '../peers/redis.js';
import { forgetTempDirLater, rssMiB, tempDir } from '../peers/server.js';
import { type BenchOptions, type Cell, note, peerInfo, progress, ratio, table } from '../util.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const VALUE = 'x'.repeat(100);

const name16 = (prefix: string, i: number): string => prefix + String(i).padStart(15, '0');
const keyOf = (d: number, c: number): string => `/${name16('d', d)}/${name16('n', c)}`;

interface Reopen {
  loadS: number;
  openMs: number;
  rssMiB: number;
}

async function child(script: string, args: readonly string[]): Promise<{ ms: number; rssMiB: number }> {
  const { stdout } = await run(process.execPath, ['--expose-gc', script, ...args], { maxBuffer: 1 << 20, timeout: 300_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!) as { ms: number; rssMiB: number };
}

export default async function compareReopen(o: BenchOptions): Promise<void> {
  const dirs = o.quick ? 20 : 1000;
  const per = 1000;
  const total = dirs * per;
  const skipped: Missing = { missing: 'skipped (--quick)' };
  const bar = progress('compare-reopen', 4 * dirs);
  const rows = new Map<string, Reopen | Missing>();
  const probeKey = keyOf(dirs - 1, per - 1);

  {
    const dir = tempDir('latchkey-reopen');
    forgetTempDirLater(dir);
    try {
      const t0 = performance.now();
      const s = await open(dir, { snapshotEveryBytes: Number.MAX_SAFE_INTEGER, snapshotEveryRecords: Number.MAX_SAFE_INTEGER });
      for (let d = 0; d < dirs; d++) {
        const ops: MultiOp[] = [];
        for (let c = 0; c < per; c++) ops.push({ op: 'set', path: keyOf(d, c), value: VALUE });
        await s.multi(ops);
        bar.tick();
      }
      await s.snapshot();
      await s.close();
      const loadS = (performance.now() - t0) / 1000;
      const r = await child(path.join(here, '..', 'durability-reopen.js'), [dir]);
      rows.set('latchkey (snapshot, fresh process)', { loadS, openMs: r.ms, rssMiB: r.rssMiB });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  if (o.quick) rows.set('lmdb-js (fresh process)', skipped);
  else {
    const l = await openLmdb();
    if (isMissing(l)) rows.set('lmdb-js (fresh process)', l);
    else {
      const t0 = performance.now();
      for (let d = 0; d < dirs; d++) {
        for (let c = 0; c < per; c++) void l.db.put(keyOf(d, c), VALUE);
        await l.db.flushed;
        bar.tick();
      }
      await l.close();
      const loadS = (performance.now() - t0) / 1000;
      const r = await child(path.join(here, '..', 'peers', 'reopen-child.js'), [l.path, probeKey]);
      rows.set('lmdb-js (fresh process)', { loadS, openMs: r.ms, rssMiB: r.rssMiB });
      peerInfo('lmdb-js', l.version, l.settings);
    }
  }

  if (o.quick) rows.set('etcd (restart)', skipped);
  else {
    const dir = tempDir('etcd-reopen');
    forgetTempDirLater(dir);
    const etcd = await startEtcd(dir);
    if (isMissing(etcd)) rows.set('etcd (restart)', etcd);
    else {
      peerInfo('etcd', etcd.version, etcd.settings);
      const clients = Array.from({ length: 8 }, () => etcd.client());
      const t0 = performance.now();
      // etcd caps a Txn at 128 operations (--max-txn-ops); 8 in flight
      let next = 0;
      const batches = Math.ceil(per / 125);
      await Promise.all(clients.map(async (c) => {
        for (let b = next++; b < dirs * batches; b = next++) {
          const d = Math.floor(b / batches);
          const first = (b % batches) * 125;
          const success = Array.from({ length: Math.min(125, per - first) }, (_, i) => ({ request_put: { key: Buffer.from(keyOf(d, first + i)), value: Buffer.from(VALUE) } }));
          await c.kv.txn({ compare: [], success, failure: [] });
          if (b % batches === batches - 1) bar.tick();
        }
      }));
      const loadS = (performance.now() - t0) / 1000;
      await etcd.stop();
      const t1 = performance.now();
      const again = await startEtcd(dir, 300_000);
      if (isMissing(again)) rows.set('etcd (restart)', again);
      else {
        const c = again.client();
        const got = await c.get(probeKey).string();
        const openMs = performance.now() - t1;
        rows.set('etcd (restart)', got === null ? { missing: 'failed: key missing after restart' } : { loadS, openMs, rssMiB: rssMiB(again.pid) });
        await again.stop();
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }

  if (o.quick) rows.set('redis (restart, AOF)', skipped);
  else {
    const dir = tempDir('redis-reopen');
    forgetTempDirLater(dir);
    const redis = await startRedis(true, dir);
    if (isMissing(redis)) rows.set('redis (restart, AOF)', redis);
    else {
      peerInfo('redis', redis.version, redis.settings);
      const r = redis.client();
      const t0 = performance.now();
      for (let d = 0; d < dirs; d++) {
        const p = r.pipeline();
        for (let c = 0; c < per; c++) p.set(keyOf(d, c), VALUE);
        await p.exec();
        bar.tick();
      }
      const loadS = (performance.now() - t0) / 1000;
      await redis.stop();
      const t1 = performance.now();
      const again = await startRedis(true, dir, 300_000);
      if (isMissing(again)) rows.set('redis (restart, AOF)', again);
      else {
        const got = await again.client().get(probeKey);
        const openMs = performance.now() - t1;
        rows.set('redis (restart, AOF)', got === null ? { missing: 'failed: key missing after restart' } : { loadS, openMs, rssMiB: rssMiB(again.pid) });
        await again.stop();
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  bar.done();

  const lk = rows.get('latchkey (snapshot, fresh process)');
  const lkOpen = lk && !isMissing(lk) ? lk.openMs : undefined;
  const lkRss = lk && !isMissing(lk) ? lk.rssMiB : undefined;
  const out: Cell[][] = [...rows].map(([name, r]) => (isMissing(r)
    ? [name, r.missing, '', '', '', '']
    : [name, r.openMs, r.rssMiB, r.loadS, name.startsWith('latchkey') ? '' : ratio(lkOpen, r.openMs), name.startsWith('latchkey') ? '' : ratio(lkRss, r.rssMiB)]));
  table(`reopen ${total.toLocaleString('en-US')} nodes (16-byte names, 100-byte values)`, ['system', 'reopen ms', 'RSS MiB once open', 'load s', 'latchkey/peer (reopen)', 'latchkey/peer (RSS)'], out, { chart: { columns: [1, 2], unit: 'ms and MiB (lower is better)', log: true } });
  note('Reopen: latchkey is open(dir) in a fresh child (it has loaded the snapshot and serves reads when open resolves); lmdb-js is open plus one read in a fresh child (Node start-up excluded: timed inside the child); etcd and Redis from spawning the server to the first read answered (their process start included).');
  note('RSS: the process holding the data once open — the latchkey or lmdb-js child (Node itself is ~40 MiB of it), the etcd or Redis server. lmdb-js maps its file and counts only pages touched.');
  note('Load: time to write the nodes — latchkey in 1,000-set multi() batches then a snapshot; lmdb-js puts flushed per 1,000; etcd Txns of 125 puts, 8 in flight; Redis pipelines of 1,000 SETs (appendfsync always).');
}
