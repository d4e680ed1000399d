/**
 * `npm run bench -- objects`: the object layer (latchkey/objects) beside
 * plain latchkey get/set on the same store — the floor, since every object
 * operation becomes store operations — on an embedded in-memory store (no
 * fsync on either side, one process). Realm JS, the peer the issue names,
 * does not install here: its Node binary is a prebuild fetched from
 * static.realm.io at install time (not reachable from this machine) and the
 * npm package carries no sources to build it; the rows say so.
 *
 *  1. warm attribute reads/s: `acct.balance` on loaded objects in one
 *     transaction, beside `tx.get` + decode of the same record;
 *  2. cold loads/s: ghosts loaded one by one in a new connection, beside
 *     `tx.get` + msgpack decode of the same records;
 *  3. commit of 10,000 changed objects, beside one transaction setting
 *     10,000 paths to bytes of the same size;
 *  4. PBTree at 1,000,000 entries (100,000 with --quick): inserts (10,000 per
 *     transaction), random lookups in a warm connection, range scan —
 *     beside the same keys as store paths (`set` in 10,000-op transactions,
 *     `get`, `list` pages);
 *  5. concurrent increments from 8 connections of one Counter (merged by
 *     resolveConflict) and of a plain number field (conflict → re-run),
 *     beside store.add and read-modify-write store transactions.
 * Pairs run alternately (ABAB), 3 rounds (1 with --quick), medians printed.
 * Figures are only as good as the machine was quiet: the load average is
 * printed, and this machine was shared and loaded when they were taken.
 */
import os from 'node:os';
import { Packr } from 'msgpackr';
import { open } from '../../src/index.js';
import type { Store } from '../../src/api.js';
import { Counter, ObjectDB, PBTree, Persistent, persistent } from '../../src/objects/index.js';
import { type BenchOptions, type Cell, fmt, note, ratio, table } from '../util.js';

@persistent('bench.Account')
class Account extends Persistent {
  owner = 'someone';
  balance = 0;
  tags: string[] = ['a', 'b'];
}

@persistent('bench.Plain')
class PlainNumber extends Persistent {
  value = 0;
}

const packr = new Packr({ useRecords: false });
const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const REALM = 'not installed: prebuilt binary download (static.realm.io) unreachable';

async function abab(rounds: number, a: () => Promise<number>, b: () => Promise<number>): Promise<[number, number]> {
  const xa: number[] = [];
  const xb: number[] = [];
  for (let r = 0; r < rounds; r++) {
    xa.push(await a());
    xb.push(await b());
  }
  return [median(xa), median(xb)];
}

const yieldLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

export default async function objects(o: BenchOptions): Promise<void> {
  const rounds = o.quick ? 1 : 3;
  const nObjects = o.quick ? 2_000 : 10_000;
  const nTree = o.quick ? 100_000 : 1_000_000;
  const loadBefore = load();
  const store = await open();
  const db = await ObjectDB.open(store, { cacheSize: 2 * nTree });

  // ---- setup: accounts, and the same records as plain paths ----
  await db.transaction(async (root) => {
    const list: Account[] = [];
    for (let i = 0; i < nObjects; i++) list.push(new Account());
    root.accounts = list;
  }, { timeoutMs: 120_000 });
  const sample = await store.list('/objects/o', { limit: 10 });
  const sizes = await Promise.all(sample.map(async (oid) => (await store.get(`/objects/o/${oid}`))!.value.length));
  const recordBytes = { length: Math.min(...sizes) }; // an Account (the root, holding the list, is the big one)
  await store.transaction(async (tx) => {
    for (let i = 0; i < nObjects; i++) await tx.set(`/plain/acct/${i}`, packr.pack({ owner: 'someone', balance: 0, tags: ['a', 'b'] }));
  }, { timeoutMs: 120_000 });

  // 1. warm attribute reads
  const reads = o.quick ? 200_000 : 2_000_000;
  const [warmObj, warmPlain] = await abab(rounds, async () => {
    return db.transaction(async (root) => {
      const accts = root.accounts as Account[];
      for (const a of accts) await a.load();
      const t0 = performance.now();
      let s = 0;
      for (let i = 0; i < reads; i++) s += accts[i % accts.length]!.balance;
      if (s !== 0) throw new Error('bad sum');
      return reads / ((performance.now() - t0) / 1000);
    });
  }, async () => {
    const tx = store.begin();
    const n = Math.min(reads, o.quick ? 50_000 : 200_000);
    const t0 = performance.now();
    let s = 0;
    for (let i = 0; i < n; i++) s += (packr.unpack((await tx.get(`/plain/acct/${i % nObjects}`))!.value) as { balance: number }).balance;
    await tx.abort();
    if (s !== 0) throw new Error('bad sum');
    return n / ((performance.now() - t0) / 1000);
  });
  const plainJs = (() => {
    const arr = Array.from({ length: nObjects }, () => ({ balance: 0 }));
    const t0 = performance.now();
    let s = 0;
    for (let i = 0; i < reads; i++) s += arr[i % arr.length]!.balance;
    return s === 0 ? reads / ((performance.now() - t0) / 1000) : 0;
  })();

  // 2. cold loads
  const [coldObj, coldPlain] = await abab(rounds, async () => {
    const conn = db.connect({ cacheSize: nObjects * 2 });
    try {
      return await conn.transaction(async (root) => {
        const accts = root.accounts as Account[];
        const t0 = performance.now();
        for (const a of accts) await a.load();
        return accts.length / ((performance.now() - t0) / 1000);
      });
    } finally {
      await conn.close();
    }
  }, async () => {
    const tx = store.begin();
    const t0 = performance.now();
    for (let i = 0; i < nObjects; i++) packr.unpack((await tx.get(`/plain/acct/${i}`))!.value);
    await tx.abort();
    return nObjects / ((performance.now() - t0) / 1000);
  });

  // 3. commit of 10,000 changed objects
  let bump = 0;
  const [commitObj, commitPlain] = await abab(rounds, async () => {
    bump++;
    return db.transaction(async (root) => {
      const accts = root.accounts as Account[];
      for (const a of accts) (await a.load()).balance = bump;
      const t0 = performance.now();
      return { t0 };
    }).then(({ t0 }) => performance.now() - t0);
  }, async () => {
    bump++;
    const t0 = performance.now();
    await store.transaction(async (tx) => {
      for (let i = 0; i < nObjects; i++) await tx.set(`/plain/acct/${i}`, packr.pack({ owner: 'someone', balance: bump, tags: ['a', 'b'] }));
    }, { timeoutMs: 120_000 });
    return performance.now() - t0;
  });

  table(`objects: ${fmt(nObjects)} Account objects (record ${recordBytes.length} bytes) vs plain latchkey, embedded in-memory; load ${loadBefore}`, ['operation', 'latchkey/objects', 'plain latchkey (floor)', 'objects / floor', 'Realm JS'], [
    ['warm attribute reads/s (loaded object; floor: tx.get + decode)', warmObj, warmPlain, ratio(warmObj, warmPlain), REALM],
    ['  (a plain JS object property read, for scale)', plainJs, '', '', ''],
    ['cold loads/s (ghost → loaded; floor: tx.get + decode)', coldObj, coldPlain, ratio(coldObj, coldPlain), REALM],
    [`commit of ${fmt(nObjects)} changed objects, ms (floor: ${fmt(nObjects)} tx.set + commit)`, commitObj, commitPlain, ratio(commitObj, commitPlain), REALM],
  ]);

  // 4. PBTree at nTree entries
  const BATCH = 10_000;
  const keyOf = (i: number): string => `k${String((i * 7919) % nTree).padStart(8, '0')}`;
  let t0 = performance.now();
  for (let base = 0; base < nTree; base += BATCH) {
    await db.transaction(async (root) => {
      const t = (root.tree ??= new PBTree<string, number>()) as PBTree<string, number>;
      for (let i = base; i < base + BATCH; i++) await t.set(keyOf(i), i);
    }, { timeoutMs: 120_000 });
    await yieldLoop();
  }
  const treeInsert = nTree / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let base = 0; base < nTree; base += BATCH) {
    await store.transaction(async (tx) => {
      for (let i = base; i < base + BATCH; i++) await tx.set(`/plain/tree/${keyOf(i)}`, String(i));
    }, { timeoutMs: 120_000 });
    await yieldLoop();
  }
  const plainInsert = nTree / ((performance.now() - t0) / 1000);
  const lookups = o.quick ? 20_000 : 200_000;
  const [treeGet, plainGet] = await abab(rounds, async () => db.transaction(async (root) => {
    const t = root.tree as PBTree<string, number>;
    const s = performance.now();
    for (let i = 0; i < lookups; i++) if ((await t.get(keyOf((i * 31337) % nTree))) === undefined) throw new Error('missing key');
    return lookups / ((performance.now() - s) / 1000);
  }, { timeoutMs: 120_000 }), async () => {
    const tx = store.begin();
    const s = performance.now();
    for (let i = 0; i < lookups; i++) if ((await tx.get(`/plain/tree/${keyOf((i * 31337) % nTree)}`)) === undefined) throw new Error('missing key');
    await tx.abort();
    return lookups / ((performance.now() - s) / 1000);
  });
  const [treeRange, plainRange] = await abab(rounds, async () => db.transaction(async (root) => {
    const t = root.tree as PBTree<string, number>;
    const s = performance.now();
    let n = 0;
    for await (const _ of t.range()) n++;
    if (n !== nTree) throw new Error(`range saw ${n}`);
    return n / ((performance.now() - s) / 1000);
  }, { timeoutMs: 120_000 }), async () => {
    const tx = store.begin();
    const s = performance.now();
    let n = 0;
    for (let after: string | undefined; ;) {
      const page = await tx.list('/plain/tree', { limit: 1000, ...(after !== undefined ? { after } : {}) });
      n += page.length;
      if (!page.more) break;
      after = page.at(-1);
    }
    await tx.abort();
    if (n !== nTree) throw new Error(`list saw ${n}`);
    return n / ((performance.now() - s) / 1000);
  });
  // Cold: a fresh connection, lookups loading only the buckets they touch.
  const coldConn = db.connect({ cacheSize: 100_000 });
  const coldLookups = o.quick ? 1_000 : 5_000;
  const [coldGet, coldLoads] = await coldConn.transaction(async (root) => {
    const t = root.tree as PBTree<string, number>;
    const s = performance.now();
    for (let i = 0; i < coldLookups; i++) await t.get(keyOf((i * 104729) % nTree));
    return [coldLookups / ((performance.now() - s) / 1000), coldConn.stats().loads] as const;
  }, { timeoutMs: 120_000 });
  await coldConn.close();
  table(`objects: PBTree<string, number> at ${fmt(nTree)} entries vs the same keys as store paths; load ${load()}`, ['operation', 'PBTree', 'plain latchkey (floor)', 'PBTree / floor', 'Realm JS'], [
    [`inserts/s (${fmt(BATCH)} per transaction)`, treeInsert, plainInsert, ratio(treeInsert, plainInsert), REALM],
    ['random lookups/s, warm connection (floor: tx.get)', treeGet, plainGet, ratio(treeGet, plainGet), REALM],
    [`random lookups/s, cold connection (${fmt(coldLookups)} lookups loaded ${fmt(coldLoads)} objects)`, coldGet, '', '', ''],
    ['range scan entries/s, whole tree (floor: list pages of 1,000)', treeRange, plainRange, ratio(treeRange, plainRange), REALM],
  ]);

  // 5. concurrent increments, 8 connections, for a fixed time each
  const ms = o.quick ? 400 : 3000;
  const clients = 8;
  await db.transaction(async (root) => { root.counter = new Counter(); root.plain = new PlainNumber(); });
  const conns = Array.from({ length: clients }, () => db.connect({ cacheSize: 1000 }));
  async function drive(inc: (i: number) => Promise<void>): Promise<{ rate: number; n: number }> {
    let stop = false;
    let n = 0;
    const timer = setTimeout(() => { stop = true; }, ms);
    const s = performance.now();
    await Promise.all(Array.from({ length: clients }, async (_, i) => {
      while (!stop) {
        await inc(i);
        n++;
        await yieldLoop();
      }
    }));
    clearTimeout(timer);
    return { rate: n / ((performance.now() - s) / 1000), n };
  }
  const statsOf = (): { resolved: number; retries: number } => conns.reduce((a, c) => ({ resolved: a.resolved + c.stats().resolved, retries: a.retries + c.stats().retries }), { resolved: 0, retries: 0 });
  const before = statsOf();
  const counter = await drive((i) => conns[i]!.transaction(async (root) => { (await (root.counter as Counter).load()).add(1); }, { timeoutMs: 60_000 }));
  const mid = statsOf();
  const plain = await drive((i) => conns[i]!.transaction(async (root) => { (await (root.plain as PlainNumber).load()).value += 1; }, { timeoutMs: 60_000 }));
  const after = statsOf();
  const { rate: addRate } = await drive(async () => { await store.add('/plain/ctr', 1); });
  const { rate: rmwRate } = await drive(async () => {
    await store.transaction(async (tx) => {
      const n = Number((await tx.get('/plain/rmw'))?.text() ?? '0');
      await tx.set('/plain/rmw', String(n + 1));
    }, { timeoutMs: 60_000 });
  });
  const [finalCounter, finalPlain] = await db.transaction(async (root) => [(await (root.counter as Counter).load()).value, (await (root.plain as PlainNumber).load()).value]);
  table(`objects: one counter, ${clients} connections incrementing at once (${ms} ms each); load ${load()}`, ['workload', 'increments/s', 'merged by resolveConflict', 're-runs', 'Realm JS'], [
    ['Counter (resolveConflict)', counter.rate, mid.resolved - before.resolved, mid.retries - before.retries, REALM],
    ['plain number field (conflict → re-run)', plain.rate, after.resolved - mid.resolved, after.retries - mid.retries, REALM],
    ['floor: store.add (atomic op)', addRate, '', '', ''],
    ['floor: store read-modify-write transaction', rmwRate, '', '', ''],
  ] as Cell[][]);
  // Every acknowledged increment must have landed, once: a lost or doubled one fails the run.
  if (finalCounter !== counter.n || finalPlain !== plain.n) {
    throw new Error(`objects: acknowledged increments lost or doubled: Counter ${finalCounter} of ${counter.n}, plain field ${finalPlain} of ${plain.n}`);
  }
  note(`objects: final Counter ${finalCounter} = its ${counter.n} acknowledged increments; plain field ${finalPlain} = its ${plain.n} (checked).`);
  note(`objects: load average before ${loadBefore}, after ${load()}; Realm JS ${REALM}.`);
  for (const c of conns) await c.close();
  await db.close();
  await store.close();
}
