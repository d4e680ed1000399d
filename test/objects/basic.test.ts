import assert from 'node:assert/strict';
import { test } from 'node:test';
import { open } from '../../src/index.js';
import {
  Counter, GhostError, NotSerializableError, ObjectDB, PBTree, PList, PMap, Persistent, UnknownClassError, isGhost, oidOf, persistent,
} from '../../src/objects/index.js';

@persistent('test.Account')
class Account extends Persistent {
  owner = '';
  balance = 0;
  tags: string[] = [];
  history = new PList<number>();
}

test('objects: the issue example — PBTree of accounts, assignment is saved, a fresh connection sees it', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store, { prefix: '/objects', cacheSize: 100 });
  await db.transaction(async (root) => {
    const accounts = (root.accounts ??= new PBTree<string, Account>()) as PBTree<string, Account>;
    const a = (await accounts.get('alice')) ?? (await accounts.set('alice', new Account()));
    a.owner = 'alice';
    a.balance += 10;
    await a.history.append(10);
  });
  await db.transaction(async (root) => {
    const a = (await (root.accounts as PBTree<string, Account>).get('alice'))!;
    a.balance += 5;
  });
  await using conn = db.connect();
  const bal = await conn.transaction(async (root) => {
    const a = (await (await root.get('accounts') as PBTree<string, Account>).get('alice'))!;
    assert.deepEqual(await a.history.toArray(), [10]);
    return a.balance;
  });
  assert.equal(bal, 15);
});

test('objects: a ghost field read throws GhostError, never an empty value; load() makes it whole', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => {
    const a = new Account();
    a.owner = 'bob';
    root.bob = a;
  });
  await using conn = db.connect();
  await conn.transaction(async (root) => {
    const a = root.bob as Account;
    assert.equal(isGhost(a), true);
    assert.throws(() => a.owner, GhostError);
    assert.throws(() => { a.owner = 'x'; }, GhostError);
    await a.load();
    assert.equal(a.owner, 'bob');
    assert.ok(oidOf(a));
  });
});

test('objects: references are shared, cycles work, identity map gives one object per oid', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => {
    const a = new Account();
    const b = new PMap();
    b.self = b;
    b.acct = a;
    root.x = b;
    root.y = a;
  });
  await using conn = db.connect();
  await conn.transaction(async (root) => {
    const b = await (root.x as PMap).load();
    assert.equal(b.self, b);
    assert.equal(b.acct, root.y);
  });
});

test('objects: in-place mutation needs changed(); assignment does not', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.a = new Account(); });
  await using c1 = db.connect();
  await using c2 = db.connect();
  const read = (c: typeof c1): Promise<string[]> => c.transaction(async (root) => [...(await (root.a as Account).load()).tags]);
  await c1.transaction(async (root) => {
    const a = await (root.a as Account).load();
    a.tags.push('unsaved');
  });
  assert.deepEqual(await read(c2), [], 'a mutation the proxy cannot see is not saved');
  await c1.transaction(async (root) => {
    const a = await (root.a as Account).load();
    a.tags = ['assigned'];
  });
  assert.deepEqual(await read(c2), ['assigned']);
  await c1.transaction(async (root) => {
    const a = await (root.a as Account).load();
    a.tags.push('kept');
    a.changed();
  });
  assert.deepEqual(await read(c2), ['assigned', 'kept']);
});

test('objects: a non-serializable field fails at commit naming its path, and writes nothing', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.a = new Account(); });
  const before = store.revision;
  await assert.rejects(db.transaction(async (root) => {
    const a = await (root.a as Account).load();
    a.balance = 3;
    (a as unknown as { cb: unknown }).cb = { inner: [1, () => 2] };
  }), (e: unknown) => e instanceof NotSerializableError && /test\.Account\(\w+\)\.cb\.inner\[1\]/.test(e.path ?? '') && e.code === 'INVALID_ARGUMENT');
  assert.equal(store.revision, before);
  const bal = await db.transaction(async (root) => (await (root.a as Account).load()).balance);
  assert.equal(bal, 0);
});

test('objects: an unknown class name on load is a typed error naming it', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  class Unregistered extends Persistent { v = 1; }
  @persistent('test.WillVanish')
  class WillVanish extends Persistent { v = 1; }
  await db.transaction(async (root) => { root.w = new WillVanish(); });
  // Rewrite the stored class name as another program would have written it.
  const listing = await store.list('/objects/o');
  for (const oid of listing) {
    const e = (await store.get(`/objects/o/${oid}`))!;
    const text = Buffer.from(e.value).toString('latin1');
    if (text.includes('test.WillVanish')) await store.set(`/objects/o/${oid}`, Buffer.from(text.replace('test.WillVanish', 'test.Nowhere!!!'), 'latin1'));
  }
  await using conn = db.connect();
  await assert.rejects(conn.transaction(async (root) => { await (root.w as Persistent).load(); }),
    (e: unknown) => e instanceof UnknownClassError && e.className === 'test.Nowhere!!!' && /test\.Nowhere!!!/.test(e.message));
  await assert.rejects(db.transaction(async (root) => { root.u = new Unregistered(); }), NotSerializableError);
});

test('objects: schema evolution — missing field gets the class default, migrate() runs first', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store, { prefix: '/evo' });
  @persistent('test.V1')
  class V1 extends Persistent { name = 'x'; }
  await db.transaction(async (root) => { const v = new V1(); v.name = 'old'; root.v = v; });
  // The same stored object now read by a newer class under another registered name.
  @persistent('test.V2')
  class V2 extends Persistent {
    name = '';
    email = 'none';
    history = new PList<string>();
    static migrate(state: Record<string, unknown>): Record<string, unknown> {
      return { ...state, name: String(state.name).toUpperCase() };
    }
  }
  for (const oid of await store.list('/evo/o')) {
    const e = (await store.get(`/evo/o/${oid}`))!;
    const text = Buffer.from(e.value).toString('latin1');
    if (text.includes('test.V1')) await store.set(`/evo/o/${oid}`, Buffer.from(text.replace('test.V1', 'test.V2'), 'latin1'));
  }
  await using conn = db.connect();
  await conn.transaction(async (root) => {
    const v = await (root.v as V2).load();
    assert.ok(v instanceof V2);
    assert.equal(v.name, 'OLD');
    assert.equal(v.email, 'none');
    await v.history.append('a');
  });
  const h = await conn.transaction(async (root) => (await (root.v as V2).load()).history.toArray());
  assert.deepEqual(h, ['a']);
});

test('objects: Counter — concurrent increments from many connections all count, merged by resolveConflict', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.c = new Counter(); });
  const conns = Array.from({ length: 8 }, () => db.connect());
  await Promise.all(conns.map(async (c) => {
    for (let i = 0; i < 25; i++) {
      await c.transaction(async (root) => { (await (root.c as Counter).load()).add(1); });
    }
  }));
  const v = await db.transaction(async (root) => (await (root.c as Counter).load()).value);
  assert.equal(v, 200);
  const st = db.stats();
  assert.ok(st.resolved > 0, `some conflicts were resolved (${JSON.stringify(st)})`);
  for (const c of conns) await c.close();
});

test('objects: invalidation — another connection\'s commit turns exactly that object into a ghost at the next boundary', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.a = new Account(); root.b = new Account(); });
  await using c1 = db.connect();
  await using c2 = db.connect();
  const [a1, b1] = await c1.transaction(async (root) => [await (root.a as Account).load(), await (root.b as Account).load()] as const);
  await c2.transaction(async (root) => { (await (root.a as Account).load()).balance = 7; });
  await c1.transaction(async (root) => {
    assert.equal(root.a, a1);
    assert.equal(isGhost(a1), true);
    assert.equal(isGhost(b1), false);
    assert.equal((await a1.load()).balance, 7);
  });
  assert.equal(c1.stats().invalidations, 1);
});

test('objects: isolation — loads later in a transaction come from its first snapshot', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.a = new Account(); root.b = new Account(); });
  await using c1 = db.connect();
  await using c2 = db.connect();
  let seen = -1;
  await c1.transaction(async (root) => {
    await (root.a as Account).load();
    await c2.transaction(async (r2) => { (await (r2.b as Account).load()).balance = 99; });
    seen = (await (root.b as Account).load()).balance;
  });
  assert.equal(seen, 0);
});

test('objects: write-write conflict re-runs the function and the result is serial', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.a = new Account(); });
  await Promise.all(Array.from({ length: 10 }, () => db.transaction(async (root) => {
    const a = await (root.a as Account).load();
    a.balance += 1;
  })));
  assert.equal(await db.transaction(async (root) => (await (root.a as Account).load()).balance), 10);
  assert.ok(db.stats().retries > 0);
});

test('objects: LRU eviction back to ghosts above cacheSize, never a changed object', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store, { cacheSize: 10 });
  await db.transaction(async (root) => {
    const l = new PList<Account>();
    for (let i = 0; i < 50; i++) await l.append(new Account());
    root.l = l;
  });
  await using conn = db.connect({ cacheSize: 10 });
  await conn.transaction(async (root) => { for await (const a of root.l as PList<Account>) assert.equal(a.balance, 0); });
  await conn.transaction(async (root) => {
    const l = root.l as PList<Account>;
    for (let i = 0; i < 50; i++) (await l.get(i))!.balance = i;
    assert.ok(conn.stats().cached >= 50, 'changed objects stay loaded');
  });
  assert.ok(conn.stats().evictions > 0);
  await conn.transaction(async () => {});
  assert.ok(conn.stats().cached <= 10);
  const sum = await conn.transaction(async (root) => {
    let s = 0;
    for await (const a of root.l as PList<Account>) s += a.balance;
    return s;
  });
  assert.equal(sum, (49 * 50) / 2);
});

test('objects: pack removes unreachable objects, keeps reachable ones', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => {
    root.keep = new Account();
    root.drop = new Account();
  });
  await db.transaction(async (root) => { delete root.drop; });
  const r = await db.pack();
  assert.equal(r.removed, 2, JSON.stringify(r)); // the account and its history list
  assert.equal(r.reachable, 3);
  const r2 = await db.pack();
  assert.equal(r2.removed, 0);
  const bal = await db.transaction(async (root) => (await (root.keep as Account).load()).balance);
  assert.equal(bal, 0);
});

test('objects: changing an object outside a transaction is an error', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  const a = await db.transaction(async (root) => { root.a = new Account(); return root.a as Account; });
  assert.throws(() => { a.balance = 5; }, /outside a transaction/);
});

test('objects: pack runs while writers keep committing; nothing reachable is lost', async () => {
  await using store = await open();
  await using db = await ObjectDB.open(store);
  await db.transaction(async (root) => { root.list = new PList<Account>(); root.c = new Counter(); });
  let stop = false;
  let commits = 0;
  const writers = Array.from({ length: 3 }, async () => {
    while (!stop) {
      await db.transaction(async (root) => {
        const l = root.list as PList<Account>;
        // Add one account, drop the oldest once there are 5: garbage appears all the time.
        await l.append(new Account());
        if ((await l.length()) > 5) await l.splice(0, 1);
        (await (root.c as Counter).load()).add(1);
      }, { timeoutMs: 60_000 });
      commits++;
      await new Promise((r) => setImmediate(r));
    }
  });
  let removed = 0;
  for (let i = 0; i < 5; i++) {
    removed += (await db.pack({ attempts: 200 })).removed;
    await new Promise((r) => setTimeout(r, 5));
  }
  stop = true;
  await Promise.all(writers);
  assert.ok(removed > 0 && commits > 0, `removed ${removed}, ${commits} commits`);
  await using conn = db.connect();
  const [n, c] = await conn.transaction(async (root) => {
    let k = 0;
    for await (const a of root.list as PList<Account>) { await a.history.load(); k++; }
    return [k, (await (root.c as Counter).load()).value] as const;
  });
  assert.equal(n, Math.min(5, commits));
  assert.equal(c, commits);
});
