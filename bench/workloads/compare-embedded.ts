/**
 * `npm run bench -- compare-embedded`: latchkey embedded beside lmdb-js, the
 * embedded store a Node user would otherwise pick, like with like: both on
 * disk in a temp directory with commits written but not synced (latchkey
 * `open(dir, { durability: 'none' })`, lmdb-js `noSync: true`: each survives
 * the process being killed, not an OS crash), then both synced (latchkey
 * 'fsync' against lmdb-js putSync). Same keys, same values, same process,
 * in alternating rounds; latchkey in memory (`open()`) is shown for context.
 *
 * lmdb-js keeps a flat sorted key space; a "directory listing" there is a
 * range scan over the keys under `dir/`, which is how one would model it.
 */
import type { Store } from '../../src/api.js';
import { open } from '../../src/index.js';
import { openDurable } from '../peers/latchkey.js';
import { openLmdb } from '../peers/lmdb.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { forgetTempDirLater, tempDir } from '../peers/server.js';
import { alternate, type BenchOptions, type Cell, cellOf, note, now, peerInfo, progress, rate, ratio, roundPlan, type Side, table } from '../util.js';

const VALUE = 'value-0123456789';

/**
 * `rate` for a synchronous call: a plain loop, no await per call. Awaiting
 * a synchronous result costs a microtask turn, which for a read of well
 * under a microsecond is most of what `rate` would measure, on both sides.
 */
async function rateSync(fn: () => unknown, ms: number): Promise<number> {
  const start = now();
  let ops = 0;
  while (now() - start < ms) {
    for (let i = 0; i < 1000; i++) fn();
    ops += 1000;
    await Promise.resolve(); // let timers and I/O of the other side run between slices, as rate does
  }
  return ops / ((now() - start) / 1000);
}

interface Ops {
  get(k: string): unknown;
  /** A synchronous reader (latchkey: `store.view()`, one pinned snapshot; lmdb-js: its get, synchronous already). */
  reader(): { get(k: string): unknown; close(): void };
  set(k: string, v: string): Promise<unknown>;
  setMany(ks: readonly string[]): Promise<unknown>;
  list(dir: string, after: string | undefined, limit: number): Promise<unknown> | unknown;
  txn(a: string, b: string): Promise<unknown> | unknown;
}

function latchkeyOps(s: Store): Ops {
  return {
    get: (k) => s.get(k),
    reader: () => s.view!(),
    set: (k, v) => s.set(k, v),
    setMany: (ks) => Promise.all(ks.map((k) => s.set(k, VALUE))),
    list: (dir, after, limit) => s.list(dir, after === undefined ? { limit } : { after, limit }),
    txn: async (a, b) => {
      const t = s.begin();
      const v = await t.get(a);
      await t.set(b, v!.value);
      await t.commit();
    },
  };
}

type LmdbDb = Exclude<Awaited<ReturnType<typeof openLmdb>>, Missing>['db'];

function lmdbOps(db: LmdbDb): Ops {
  return {
    get: (k) => db.get(k),
    reader: () => ({ get: (k) => db.get(k), close: () => {} }),
    set: (k, v) => db.put(k, v),
    setMany: (ks) => Promise.all(ks.map((k) => db.put(k, VALUE))),
    list: (dir, after, limit) => {
      // keys under dir/ only: stop at the next sibling prefix ('/' + 1 = '0')
      const out: string[] = [];
      for (const k of db.getKeys({ start: after === undefined ? `${dir}/` : `${dir}/${after}\u0000`, end: `${dir}0`, limit })) out.push(k.slice(dir.length + 1));
      return out;
    },
    txn: (a, b) => db.transactionSync(() => {
      const v = db.get(a);
      void db.put(b, v ?? VALUE);
    }),
  };
}

export default async function compareEmbedded(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 60 : 400;
  const keys = o.quick ? 2_000 : 10_000;
  const plan = roundPlan(o);
  const bar = progress('compare-embedded', 8);

  const lkDir = tempDir('latchkey-embedded');
  forgetTempDirLater(lkDir);
  const lkDisk = await openDurable(lkDir, { durability: 'none' });
  const lkMem = await open();
  const lmdb = o.quick ? ({ missing: 'skipped (--quick)' } as Missing) : await openLmdb({ noSync: true });
  if (!isMissing(lmdb)) peerInfo('lmdb-js', lmdb.version, lmdb.settings);

  const systems: [string, Ops | Missing][] = [
    ["latchkey (disk, durability 'none')", latchkeyOps(lkDisk)],
    ['lmdb-js (disk, noSync)', isMissing(lmdb) ? lmdb : lmdbOps(lmdb.db)],
    ['latchkey in memory (context)', latchkeyOps(lkMem)],
  ];
  const k = (i: number): string => `/bench/k${i % keys}`;
  for (const [, side] of systems) {
    if (isMissing(side)) continue;
    for (let i = 0; i < keys; i += 1000) await side.setMany(Array.from({ length: Math.min(1000, keys - i) }, (_, j) => k(i + j)));
    for (let d = 0; d < 100; d++) await side.set(`/dir/d${String(d).padStart(3, '0')}`, '');
  }

  const window = 1000;
  const operations: [string, (s: Ops, next: () => number) => Promise<number>][] = [
    ['get', async (s, next) => (await rate(() => s.get(k(next())), ms)).perSec],
    ['get, synchronous, not awaited (latchkey store.view().get)', async (s, next) => {
      const r = s.reader();
      try {
        return await rateSync(() => r.get(k(next())), ms);
      } finally {
        r.close();
      }
    }],
    ['set, awaited one at a time', async (s, next) => (await rate(() => s.set(k(next()), VALUE), ms, 100)).perSec],
    [`set, ${window.toLocaleString('en-US')} in flight`, async (s, next) => (await rate(() => s.setMany(Array.from({ length: window }, () => k(next()))), ms, 1)).perSec * window],
    ['list 100 children', async (s) => (await rate(() => s.list('/dir', undefined, 1000), ms, 100)).perSec],
    [`list page of 100 (${keys.toLocaleString('en-US')} dir)`, async (s, next) => (await rate(() => s.list('/bench', `k${next() % keys}`, 100), ms, 100)).perSec],
    ['transaction: get + set + commit', async (s, next) => (await rate(() => s.txn(k(next()), k(next())), ms, 100)).perSec],
  ];
  const rows: Cell[][] = [];
  for (const [op, measure] of operations) {
    const sides: Side[] = systems.map(([name, s]) => {
      let i = 0;
      return { name, run: isMissing(s) ? s : () => measure(s, () => i++) };
    });
    const r = await alternate(op, sides, plan);
    const [a, b, c] = systems.map(([name]) => cellOf(r.get(name)));
    rows.push([op, a!, b!, ratio(a, b), c!]);
    bar.tick();
  }
  await lkDisk.close();
  await lkMem.close();
  if (!isMissing(lmdb)) await lmdb.close();

  // Synced single writes: latchkey 'fsync' against lmdb-js putSync (a synced transaction each).
  const dmS = o.quick ? 60 : 400;
  const fsDir = tempDir('latchkey-fsync');
  forgetTempDirLater(fsDir);
  const lkSync = await openDurable(fsDir);
  const synced = o.quick ? ({ missing: 'skipped (--quick)' } as Missing) : await openLmdb();
  if (!isMissing(synced)) peerInfo('lmdb-js', synced.version, [...(isMissing(lmdb) ? [] : lmdb.settings), ...synced.settings]);
  let di = 0;
  const d = await alternate('synced set', [
    { name: 'latchkey', run: async () => (await rate(() => lkSync.set(`/d/k${di++ % 1000}`, VALUE), dmS, 10)).perSec },
    { name: 'lmdb-js', run: isMissing(synced) ? synced : async () => (await rate(() => synced.db.putSync(`/d/k${di++ % 1000}`, VALUE), dmS, 10)).perSec },
  ], plan);
  bar.tick();
  bar.done();
  await lkSync.close();
  if (!isMissing(synced)) await synced.close();
  const [da, db] = [cellOf(d.get('latchkey')), cellOf(d.get('lmdb-js'))];
  rows.push(["synced set, awaited one at a time (latchkey 'fsync' / lmdb-js putSync)", da, db, ratio(da, db), '']);

  table('embedded: latchkey vs lmdb-js (ops/s, one process, both on disk)', ['operation', "latchkey ops/s (durability 'none')", 'lmdb-js ops/s (noSync)', 'latchkey/lmdb-js', 'latchkey in memory (context)'], rows, { chart: { columns: [1, 2], unit: 'ops/s (higher is better)', log: true } });
  note("Like with like: latchkey open(dir, { durability: 'none' }) writes each commit group to its log with write(2) and no fdatasync; lmdb-js with noSync writes its commits to its file without syncing. Both survive the process being killed, neither an OS crash. The last row syncs on both sides: latchkey fdatasync per commit group, lmdb-js putSync (LMDB syncs its data pages, then its meta page, per transaction).");
  note('Sets in flight: latchkey\'s plain sets of one commit group join a burst (one mutable path copy of the tree for the group; each set still its own commit, revision, log record and acknowledgement: docs/architecture.md, "Bursts"); lmdb-js\'s async puts queue a key and value for its writer thread, which commits them in one transaction.');
  note('Reads: the "get" row is each API as an application awaits it: latchkey\'s get returns a Promise (awaited); lmdb-js get is synchronous (awaited too, as the loop awaits every call, which costs it a microtask turn it would not pay in a plain loop). The synchronous row compares like with like: latchkey through one `store.view()` per round (a pinned snapshot, no promise per read) against lmdb-js get, both called in a plain loop with no await (earlier runs of this row awaited every call on both sides, which measured mostly the await). lmdb-js "list" is a key-range scan over `dir/…` (a flat key space has no directories); its transaction is transactionSync(get, put).');
}
