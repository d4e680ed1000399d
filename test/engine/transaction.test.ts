import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LatchkeyError, open, type Store } from '../../src/index.js';

const conflict = (e: unknown): boolean => LatchkeyError.is(e, 'CONFLICT');

test('replay (a): read x, write y; x rewritten with the same value meanwhile → commits via replay', async () => {
  const s = await open();
  await s.set('/x', 'same');
  const tx = s.begin();
  assert.equal((await tx.get('/x'))!.text(), 'same');
  await tx.set('/y', 'from-tx');
  await s.set('/x', 'same'); // a new modRev, the same bytes
  const r = await tx.commit();
  assert.equal(r.replayed, true);
  assert.equal((await s.get('/y'))!.text(), 'from-tx');
  assert.equal(s.stats().replays, 1);
  assert.equal(s.stats().conflicts, 0);
});

test('replay (b): write skew → exactly one CONFLICT', async () => {
  const s = await open();
  await s.multi([{ op: 'set', path: '/x', value: '0' }, { op: 'set', path: '/y', value: '0' }]);
  const t1 = s.begin();
  const t2 = s.begin();
  await t1.get('/x'); await t1.set('/y', '1');
  await t2.get('/y'); await t2.set('/x', '1');
  await t1.commit();
  await assert.rejects(t2.commit(), (e: unknown) => conflict(e) && (e as LatchkeyError).path === '/y');
  assert.equal(t2.state, 'aborted');
  assert.equal((await s.get('/x'))!.text(), '0');
  assert.equal(s.stats().conflicts, 1);
});

test('replay (c): blind write vs an outside write to the same node → commits, last writer wins', async () => {
  const s = await open();
  const tx = s.begin();
  await tx.set('/n', 'tx');
  await s.set('/n', 'outside');
  const r = await tx.commit();
  assert.equal(r.replayed, false);
  assert.equal((await s.get('/n'))!.text(), 'tx');
});

test('replay (d): read of a missing node that is created before commit → CONFLICT', async () => {
  const s = await open();
  const tx = s.begin();
  assert.equal(await tx.get('/m'), undefined);
  await tx.set('/other', '1');
  await s.set('/m', 'now here');
  await assert.rejects(tx.commit(), conflict);
  assert.equal(await s.get('/other'), undefined);
});

test('replay (e): 300 transactions creating disjoint subtrees under one parent → 0 conflicts', async () => {
  const s = await open();
  const txs = Array.from({ length: 300 }, () => s.begin());
  await Promise.all(txs.map(async (tx, i) => {
    await tx.set(`/vm/${i}/x`, String(i)); // creates /vm when missing: a read of its absence that replay re-answers identically
    await tx.create(`/vm/${i}/y`, 'y');
  }));
  const results = await Promise.all(txs.map((t) => t.commit()));
  assert.equal(results.length, 300);
  assert.equal(s.stats().conflicts, 0);
  assert.equal((await s.list('/vm')).length, 300);
  // the first commit went straight in; every later one was validated against a moved head
  assert.equal(s.stats().validations, 299);
});

test('transactions: a listed directory that changes → CONFLICT; one that changes back is fine', async () => {
  const s = await open();
  await s.set('/d/a', '');
  const tx = s.begin();
  assert.deepEqual([...(await tx.list('/d'))], ['a']);
  await tx.set('/out', 'x');
  await s.create('/d/b');
  await assert.rejects(tx.commit(), conflict);

  const tx2 = s.begin();
  assert.deepEqual([...(await tx2.list('/d'))], ['a', 'b']);
  await tx2.set('/out', 'y');
  await s.create('/d/c');
  await s.delete('/d/c');
  const r = await tx2.commit();
  assert.equal(r.replayed, true);
});

test('transactions: snapshot reads, own writes, read-only commit, abort, dispose', async () => {
  const s = await open();
  await s.set('/k', 'v1');
  const tx = s.begin();
  await s.set('/k', 'v2');
  assert.equal((await tx.get('/k'))!.text(), 'v1', 'reads come from the snapshot');
  await tx.set('/k2', 'mine');
  assert.equal((await tx.get('/k2'))!.text(), 'mine');
  assert.equal(await s.get('/k2'), undefined, 'nothing visible before commit');
  await tx.abort();
  await assert.rejects(tx.get('/k'), (e: unknown) => LatchkeyError.is(e, 'ABORTED'));
  assert.equal(await s.get('/k2'), undefined);

  const ro = s.begin();
  await ro.get('/k');
  await s.set('/k', 'v3');
  assert.deepEqual(await ro.commit(), { revision: ro.snapshotRevision, replayed: false });

  {
    await using t = s.begin();
    await t.set('/disposed', 'x');
  }
  assert.equal(await s.get('/disposed'), undefined);
  assert.equal(s.stats().openTransactions, 0);
});

test('transactions: errors inside are part of the replayed responses', async () => {
  const s = await open();
  await s.set('/e', 'x');
  const tx = s.begin();
  await assert.rejects(tx.create('/e', 'again'), (e: unknown) => LatchkeyError.is(e, 'EXISTS'));
  await tx.set('/f', '1');
  await s.delete('/e');
  await assert.rejects(tx.commit(), conflict, 'create would now succeed: the response differs');
});

test('store.transaction re-runs fn on CONFLICT, bounded by retries and a signal', async () => {
  const s = await open();
  await s.set('/counter', '0');
  let runs = 0;
  const r = await s.transaction(async (tx) => {
    runs++;
    const n = Number((await tx.get('/counter'))!.text());
    if (runs < 3) await s.set('/counter', String(n + 100)); // interfere
    await tx.set('/counter', String(n + 1));
    return n;
  });
  assert.equal(runs, 3);
  assert.equal(r, 200);
  assert.equal((await s.get('/counter'))!.text(), '201');

  let tries = 0;
  await assert.rejects(s.transaction(async (tx) => {
    tries++;
    await tx.get('/counter');
    await s.set('/counter', String(tries));
    await tx.set('/counter', 'never');
  }, { retries: 2 }), conflict);
  assert.equal(tries, 3);

  const ac = new AbortController();
  ac.abort();
  await assert.rejects(s.transaction(async () => 1, { signal: ac.signal }), (e: unknown) => LatchkeyError.is(e, 'ABORTED'));
});

/**
 * Serializability: random transactions over a small key space run
 * concurrently; the committed ones, replayed serially in commit order on a
 * plain map, must produce the same reads each saw and the same final state.
 */
test('transactions: committed transactions are serializable in commit order', async () => {
  let totalCommitted = 0;
  let totalConflicts = 0;
  type TxOp = { t: 'r'; k: number } | { t: 'w'; k: number; v: number } | { t: 'inc'; k: number };
  const op = fc.oneof(
    fc.record({ t: fc.constant('r' as const), k: fc.integer({ min: 0, max: 4 }) }),
    fc.record({ t: fc.constant('w' as const), k: fc.integer({ min: 0, max: 4 }), v: fc.integer({ min: 0, max: 3 }) }),
    fc.record({ t: fc.constant('inc' as const), k: fc.integer({ min: 0, max: 4 }) }),
  );
  await fc.assert(fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 4 }), { minLength: 2, maxLength: 12 }), fc.scheduler(), async (txOps, sched) => {
    const s: Store = await open();
    const committed: Array<{ rev: number; reads: Array<[number, string | undefined]>; ops: TxOp[] }> = [];
    await sched.waitFor(Promise.all(txOps.map(async (ops) => {
      const tx = s.begin();
      const reads: Array<[number, string | undefined]> = [];
      for (const o of ops) {
        await sched.schedule(Promise.resolve());
        if (o.t === 'r') reads.push([o.k, (await tx.get(`/k${o.k}`))?.text()]);
        else if (o.t === 'w') await tx.set(`/k${o.k}`, String(o.v));
        else {
          const cur = (await tx.get(`/k${o.k}`))?.text();
          reads.push([o.k, cur]);
          await tx.set(`/k${o.k}`, String(Number(cur ?? 0) + 1));
        }
      }
      await sched.schedule(Promise.resolve());
      try {
        const r = await tx.commit();
        committed.push({ rev: r.revision, reads, ops });
        totalCommitted++;
      } catch (e) {
        if (!conflict(e)) throw e;
        totalConflicts++;
      }
    })));
    committed.sort((a, b) => a.rev - b.rev);
    const state = new Map<number, string>();
    for (const c of committed) {
      const reads: Array<[number, string | undefined]> = [];
      for (const o of c.ops) {
        if (o.t === 'r') reads.push([o.k, state.get(o.k)]);
        else if (o.t === 'w') state.set(o.k, String(o.v));
        else { const cur = state.get(o.k); reads.push([o.k, cur]); state.set(o.k, String(Number(cur ?? 0) + 1)); }
      }
      assert.deepEqual(c.reads, reads, 'reads must match the serial order');
    }
    for (let k = 0; k < 5; k++) assert.equal((await s.get(`/k${k}`))?.text(), state.get(k));
  }), { numRuns: 150 });
  // the property is only worth something if both outcomes happened
  assert.ok(totalCommitted > 0 && totalConflicts > 0, `committed ${totalCommitted}, conflicts ${totalConflicts}`);
});
