/**
 * `npm run bench -- compare-embedded`: latchkey embedded (in memory) beside
 * lmdb-js, the embedded store a Node user would otherwise pick. Same keys,
 * same values, same process, one after the other.
 *
 * lmdb-js keeps a flat sorted key space; a "directory listing" there is a
 * range scan over the keys under `dir/`, which is how one would model it.
 * The in-memory rows run lmdb-js with noSync (its commits skip the sync, as
 * latchkey's in-memory store has none); the durable row uses lmdb-js's
 * synced putSync against latchkey's open(dir).
 */
import { rmSync } from 'node:fs';
import type { Store } from '../../src/api.js';
import { open } from '../../src/index.js';
import { openDurable } from '../peers/latchkey.js';
import { openLmdb } from '../peers/lmdb.js';
import { isMissing, type Missing } from '../peers/peer.js';
import { tempDir } from '../peers/server.js';
import { type BenchOptions, type Cell, note, peerInfo, progress, rate, ratio, table } from '../util.js';

const VALUE = 'value-0123456789';

interface Side {
  get(k: string): unknown;
  set(k: string, v: string): Promise<unknown>;
  setMany(ks: readonly string[]): Promise<unknown>;
  list(dir: string, after: string | undefined, limit: number): Promise<unknown> | unknown;
  txn(a: string, b: string): Promise<unknown> | unknown;
}

function latchkeySide(s: Store): Side {
  return {
    get: (k) => s.get(k),
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

export default async function compareEmbedded(o: BenchOptions): Promise<void> {
  const ms = o.quick ? 100 : 1500;
  const keys = o.quick ? 2_000 : 10_000;
  const bar = progress('compare-embedded', 2);
  const lk = await open();
  const lmdb = o.quick ? ({ missing: 'skipped (--quick)' } as Missing) : await openLmdb({ noSync: true });
  if (!isMissing(lmdb)) peerInfo('lmdb-js', lmdb.version, lmdb.settings);

  const lmdbSide = (db: NonNullable<Exclude<typeof lmdb, Missing>>['db']): Side => ({
    get: (k) => db.get(k),
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
  });

  const sides: [string, Side | Missing][] = [['latchkey', latchkeySide(lk)], ['lmdb-js', isMissing(lmdb) ? lmdb : lmdbSide(lmdb.db)]];
  const results = new Map<string, Map<string, Cell>>();
  for (const [name, side] of sides) {
    const r = new Map<string, Cell>();
    results.set(name, r);
    if (isMissing(side)) {
      bar.tick();
      continue;
    }
    const k = (i: number): string => `/bench/k${i % keys}`;
    for (let i = 0; i < keys; i += 1000) await side.setMany(Array.from({ length: Math.min(1000, keys - i) }, (_, j) => k(i + j)));
    for (let d = 0; d < 100; d++) await side.set(`/dir/d${String(d).padStart(3, '0')}`, '');
    let i = 0;
    r.set('get', (await rate(() => side.get(k(i++)), ms)).perSec);
    r.set('set, awaited one at a time', (await rate(() => side.set(k(i++), VALUE), ms, 100)).perSec);
    const window = 1000;
    const many = await rate(() => side.setMany(Array.from({ length: window }, () => k(i++))), ms, 1);
    r.set('set, 1,000 in flight', many.perSec * window);
    r.set('list 100 children', (await rate(() => side.list('/dir', undefined, 1000), ms, 100)).perSec);
    r.set(`list page of 100 (${keys.toLocaleString('en-US')} dir)`, (await rate(() => side.list('/bench', `k${i++ % keys}`, 100), ms, 100)).perSec);
    r.set('transaction: get + set + commit', (await rate(() => side.txn(k(i++), k(i)), ms, 100)).perSec);
    bar.tick();
  }
  bar.done();

  // Durable single writes: latchkey open(dir) (fsync) against lmdb-js putSync (a synced transaction each).
  const durable = new Map<string, Cell>();
  const dmS = o.quick ? 100 : 1500;
  const dir = tempDir('latchkey-durable');
  try {
    const d = await openDurable(dir);
    let i = 0;
    durable.set('latchkey', (await rate(() => d.set(`/d/k${i++ % 1000}`, VALUE), dmS, 10)).perSec);
    await d.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (o.quick) durable.set('lmdb-js', 'skipped (--quick)');
  else {
    const synced = await openLmdb();
    if (isMissing(synced)) durable.set('lmdb-js', synced.missing);
    else {
      let i = 0;
      durable.set('lmdb-js', (await rate(() => synced.db.putSync(`/d/k${i++ % 1000}`, VALUE), dmS, 10)).perSec);
      await synced.close();
    }
  }

  const lkr = results.get('latchkey')!;
  const lmr = results.get('lmdb-js')!;
  const lmdbMissing = isMissing(lmdb) ? lmdb.missing : undefined;
  const rows: Cell[][] = [...lkr.keys()].map((op) => {
    const a = lkr.get(op);
    const b = lmdbMissing ?? lmr.get(op);
    return [op, a ?? '', b ?? '', ratio(a, b)];
  });
  rows.push(['durable set, awaited one at a time', durable.get('latchkey')!, durable.get('lmdb-js')!, ratio(durable.get('latchkey'), durable.get('lmdb-js'))]);
  table('embedded: latchkey vs lmdb-js (ops/s, one process)', ['operation', 'latchkey ops/s', 'lmdb-js ops/s', 'latchkey/lmdb-js'], rows, { chart: { columns: [1, 2], unit: 'ops/s (higher is better)', log: true } });
  note('lmdb-js "list" is a key-range scan over `dir/…` (a flat key space has no directories); its transaction is transactionSync(get, put).');
  note('In-memory rows: latchkey open() vs lmdb-js with noSync; durable row: latchkey open(dir) (fsync per commit group) vs lmdb-js putSync (synced).');
  await lk.close();
  if (!isMissing(lmdb)) await lmdb.close();
}
