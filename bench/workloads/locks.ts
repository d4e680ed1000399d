/**
 * `npm run bench -- locks`: the lock service in process. Uncontended
 * acquire+release pairs; FIFO handoffs between 2, 8 and 64 contenders (rate
 * and latency from the release call to the next holder running); the TDB
 * herd: 7,000 waiters on 7,000 records behind an exclusive whole-store lock.
 * The bare lock table (no promises) is measured beside the Store API.
 */
import { open, type Lock, type Session } from '../../src/index.js';
import { LockTable } from '../../src/core/lock-table.js';
import { type BenchOptions, now, percentile, rate, table } from '../util.js';

async function handoffs(contenders: number, ms: number, privateLocks = false): Promise<{ perSec: number; p50: number; p99: number; count: number }> {
  const store = await open();
  const sessions: Session[] = Array.from({ length: contenders }, () => store.session());
  // Each contender may also hold a lock of its own elsewhere (a worker's membership, say).
  if (privateLocks) for (let i = 0; i < contenders; i++) await sessions[i]!.lock(`/workers/w${i}`);
  const lat: number[] = [];
  let releasedAt = -1;
  let count = 0;
  let stop = false;
  const t0 = now();
  await Promise.all(sessions.map(async (s) => {
    while (!stop) {
      const l = await s.lock('/hot');
      if (releasedAt >= 0) lat.push((now() - releasedAt) * 1000);
      count++;
      if (now() - t0 > ms) stop = true;
      releasedAt = now();
      await l.release();
    }
  }));
  const secs = (now() - t0) / 1000;
  await store.close();
  lat.sort((a, b) => a - b);
  return { perSec: count / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), count };
}

async function herd(n: number): Promise<{ ms: number; wakeups: number; granted: number }> {
  const store = await open();
  const freezer = await store.lock('/', { mode: 'exclusive' });
  const sessions = Array.from({ length: n }, () => store.session());
  let last = 0;
  let granted = 0;
  const waits = sessions.map((s, i) => s.lock(`/db/rec${i}`).then((l: Lock) => { last = now(); granted++; return l; }));
  // Let every request reach the queue.
  await new Promise((r) => setImmediate(r));
  const before = store.stats().lockWakeups as number;
  const t0 = now();
  await freezer.release();
  await Promise.all(waits);
  const ms = last - t0;
  const wakeups = (store.stats().lockWakeups as number) - before;
  await store.close();
  return { ms, wakeups, granted };
}

function tableHerd(n: number): { ms: number; wakeups: number } {
  const t = new LockTable();
  const all = t.lock('freezer', '/', 'exclusive');
  for (let i = 0; i < n; i++) t.lock(`s${i}`, `/db/rec${i}`, 'exclusive');
  const t0 = now();
  const g = t.release(all);
  return { ms: now() - t0, wakeups: g.length };
}

export default async function locks(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 200 : 2000;

  const store = await open();
  let i = 0;
  const pairs = await rate(async () => {
    const l = await store.lock(`/u/k${i++ & 127}`);
    await l.release();
  }, ms);
  const s2 = store.session();
  await s2.lock('/elsewhere', { mode: 'shared' });
  const pairsBusy = await rate(async () => {
    const l = await store.lock(`/u/k${i++ & 127}`);
    await l.release();
  }, ms);
  await store.close();

  const bare = new LockTable();
  let j = 0;
  const tablePairs = await rate(() => {
    const r = bare.lock('s', `/u/k${j++ & 127}`, 'exclusive');
    bare.release(r);
  }, ms, 10_000);

  table('uncontended acquire + release', ['what', 'pairs/s', 'µs/pair'], [
    ['store.lock + release', pairs.perSec, 1e6 / pairs.perSec],
    ['same, another session holding a lock elsewhere', pairsBusy.perSec, 1e6 / pairsBusy.perSec],
    ['bare LockTable (no promises)', tablePairs.perSec, 1e6 / tablePairs.perSec],
  ]);

  const rows: (string | number)[][] = [];
  for (const n of [2, 8, 64]) {
    const h = await handoffs(n, ms);
    rows.push([n, h.perSec, h.p50.toFixed(1), h.p99.toFixed(1), h.count]);
  }
  for (const n of [64, 512]) {
    const h = await handoffs(n, ms, true);
    rows.push([`${n}, each holding another lock`, h.perSec, h.p50.toFixed(1), h.p99.toFixed(1), h.count]);
  }
  table('FIFO handoff of one exclusive lock', ['contenders', 'handoffs/s', 'p50 µs', 'p99 µs', 'handoffs'], rows);

  const herdRows: (string | number)[][] = [];
  const runs = o.quick ? 2 : 5;
  for (let r = 0; r < runs; r++) {
    const h = await herd(7000);
    const b = tableHerd(7000);
    herdRows.push([r + 1, h.ms.toFixed(2), h.wakeups, h.granted, b.ms.toFixed(2), b.wakeups]);
  }
  table('herd: 7,000 waiters on 7,000 records behind lock("/", exclusive); release → last grant', [
    'run', 'store ms', 'wakeups', 'granted', 'bare table ms', 'table grants',
  ], herdRows);
  console.log('(run 1 is cold: the JIT has not seen the release path yet)');
}
