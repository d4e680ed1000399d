/**
 * Seed 003 (ZODB-Dev, 2005): unghostify() marked an object loaded before its
 * state was set, so a second thread saw a ghost bucket with len 0
 * ("Bucket length < 1"). In JavaScript the window is an await inside a load.
 *
 * The scenario: reader connections run transactions in which many tasks
 * touch the same PBTree buckets at once (`await bucket.load()` then read it),
 * with a cache far smaller than the tree (LRU eviction all the time) while a
 * writer connection keeps rewriting buckets (invalidations arriving at every
 * boundary). Every touch checks the whole state: at least one key (the
 * seed's assertion), as many values as keys, and every value stamped with
 * the same version (state from one write, not a mix). One million touches,
 * zero anomalies. The regression test turns on the seed's ordering (status
 * first, state after an await) and shows the same checker catches it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { open } from '../../src/index.js';
import type { Store } from '../../src/api.js';
import { BTreeBucket, BTreeNode, ObjectDB, PBTree, Persistent, isGhost } from '../../src/objects/index.js';
import { __testing } from '../../src/objects/persistent.js';

const KEYS = 20_000;
const STAMP = 1e7;

async function buildTree(db: ObjectDB): Promise<void> {
  for (let base = 0; base < KEYS; base += 5000) {
    await db.transaction(async (root) => {
      const t = (root.tree ??= new PBTree<number, number>()) as PBTree<number, number>;
      for (let k = base; k < base + 5000; k++) await t.set(k, k * 2);
    });
  }
}

/** The buckets of the tree, as ghosts of this connection (nodes loaded, buckets not). */
async function bucketsOf(root: Persistent & Record<string, unknown>): Promise<BTreeBucket<number, number>[]> {
  const out: BTreeBucket<number, number>[] = [];
  const t = await (root.tree as PBTree<number, number>).load();
  const visit = async (n: Persistent): Promise<void> => {
    if (n instanceof BTreeNode) {
      await n.load();
      for (const c of n.children) await visit(c);
    } else {
      out.push(n as BTreeBucket<number, number>);
    }
  };
  await visit(t.root);
  return out;
}

interface Figures { touches: number; anomalies: number; ghostTouches: number; loads: number; evictions: number; invalidations: number; writes: number; firstAnomaly?: string }

function check(b: BTreeBucket<number, number>): string | undefined {
  try {
    const keys = b.keys;
    const values = b.values;
    const n = keys.length;
    if (n < 1) return `bucket length ${n} < 1`;
    if (values.length !== n) return `${n} keys, ${values.length} values`;
    const stamp = values[0]! - keys[0]! * 2;
    for (let i = 1; i < n; i++) if (values[i]! - keys[i]! * 2 !== stamp) return `values from two states in one bucket`;
    return undefined;
  } catch (e) {
    return `touching a loaded bucket threw ${(e as Error).message}`;
  }
}

async function scenario(store: Store, totalTouches: number): Promise<Figures> {
  await using db = await ObjectDB.open(store, { cacheSize: 60 });
  await buildTree(db);
  const readers = Array.from({ length: 3 }, () => db.connect({ cacheSize: 60 }));
  const writer = db.connect({ cacheSize: 60 });
  const f: Figures = { touches: 0, anomalies: 0, ghostTouches: 0, loads: 0, evictions: 0, invalidations: 0, writes: 0 };
  let done = false;
  const TASKS = 100;
  const PER_TASK = 100;

  const writing = (async () => {
    let version = 0;
    const buckets = await writer.transaction(async (root) => bucketsOf(root));
    while (!done) {
      version++;
      await writer.transaction(async () => {
        for (let j = 0; j < 3; j++) {
          const b = await buckets[Math.floor(Math.random() * buckets.length)]!.load();
          b.values = b.keys.map((k) => k * 2 + version * STAMP);
        }
      });
      f.writes++;
      await new Promise((r) => setImmediate(r));
    }
  })();

  await Promise.all(readers.map(async (conn) => {
    const buckets = await conn.transaction(async (root) => bucketsOf(root));
    while (f.touches < totalTouches) {
      await conn.transaction(async () => {
        // A small hot window per transaction: many tasks land on the same ghosts at once.
        const start = Math.floor(Math.random() * buckets.length);
        const window = Array.from({ length: 24 }, (_, i) => buckets[(start + i) % buckets.length]!);
        await Promise.all(Array.from({ length: TASKS }, async () => {
          for (let i = 0; i < PER_TASK && f.touches < totalTouches; i++) {
            const b = window[(Math.random() * window.length) | 0]!;
            if (isGhost(b)) f.ghostTouches++;
            f.touches++;
            await b.load();
            const bad = check(b);
            if (bad !== undefined) {
              f.anomalies++;
              f.firstAnomaly ??= bad;
            }
          }
        }));
      });
      // An embedded store answers in microtasks: let the writer's timers and the watch run between transactions.
      await new Promise((r) => setImmediate(r));
    }
  }));
  done = true;
  await writing;
  for (const c of [...readers, writer]) {
    const s = c.stats();
    f.loads += s.loads;
    f.evictions += s.evictions;
    f.invalidations += s.invalidations;
    await c.close();
  }
  return f;
}

test('objects, seed 003: 1,000,000 touches of shared ghosts under eviction and invalidation, 0 anomalies', async () => {
  await using store = await open();
  const t0 = performance.now();
  const f = await scenario(store, 1_000_000);
  console.log(`seed 003 scenario: ${JSON.stringify(f)} in ${Math.round(performance.now() - t0)} ms`);
  assert.equal(f.touches, 1_000_000);
  assert.equal(f.anomalies, 0, `first anomaly: ${f.firstAnomaly}`);
  // The scenario exercised what it claims to: ghosts touched concurrently (more ghost touches than loads:
  // waiters shared one load), evictions and invalidations while it ran.
  assert.ok(f.ghostTouches > f.loads, JSON.stringify(f));
  assert.ok(f.evictions > 1000, JSON.stringify(f));
  assert.ok(f.invalidations > 10, JSON.stringify(f));
  assert.ok(f.writes > 10, JSON.stringify(f));
});

test('objects, seed 003 regression: marking loaded before installing the state is caught by the same checker', async () => {
  await using store = await open();
  __testing.markLoadedBeforeInstall = true;
  let f: Figures;
  try {
    f = await scenario(store, 50_000);
  } finally {
    __testing.markLoadedBeforeInstall = false;
  }
  console.log(`seed 003 with the faulty ordering: ${JSON.stringify(f)}`);
  assert.ok(f.anomalies > 0, `the faulty ordering went unnoticed: ${JSON.stringify(f)}`);
  assert.match(f.firstAnomaly!, /threw|< 1/);
});

test('objects: a failed load leaves a ghost and rejects every waiter; the next load succeeds', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.t = new PBTree<number, number>(); await (root.t as PBTree<number, number>).set(1, 2); });
  const paths = (await store.list('/objects/o')).map((o) => `/objects/o/${o}`);
  const saved = new Map<string, Uint8Array>();
  for (const p of paths) saved.set(p, (await store.get(p))!.value);
  await using conn = db.connect();
  const t = await conn.transaction(async (root) => root.t as PBTree<number, number>);
  // Damage every object but the root, so the tree's load fails.
  for (const p of paths) if (!p.endsWith('/0')) await store.set(p, new Uint8Array([0xc1]));
  await conn.transaction(async () => {
    const waiters = Array.from({ length: 10 }, () => t.load());
    const results = await Promise.allSettled(waiters);
    assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'CORRUPT'), JSON.stringify(results));
    assert.equal(isGhost(t), true);
  });
  for (const [p, v] of saved) if (!p.endsWith('/0')) await store.set(p, v);
  const v = await conn.transaction(async () => (await t.load()).get(1));
  assert.equal(v, 2);
});
