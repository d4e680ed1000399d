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
 * Serializability: random transactions over a small tree (two directories,
 * three keys in each) run concurrently with outside single writes under a
 * random schedule. Gets, sets that create parents, listings and recursive
 * deletes. The committed ones, replayed serially in commit order on a naive
 * model, must give every response each saw, and the same final state.
 */
test('transactions: committed transactions are serializable in commit order', async () => {
  let totalCommitted = 0;
  let totalConflicts = 0;
  let totalReplays = 0;
  type TxOp =
    | { t: 'get'; p: string }
    | { t: 'set'; p: string; v: number }
    | { t: 'ls'; p: string }
    | { t: 'del'; p: string }
    | { t: 'seq'; p: string };
  const dir = fc.constantFrom('/d0', '/d1');
  const node = fc.oneof(dir, fc.tuple(dir, fc.constantFrom('k0', 'k1', 'k2')).map(([d, k]) => `${d}/${k}`));
  const op: fc.Arbitrary<TxOp> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ t: fc.constant('get' as const), p: node }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('set' as const), p: node, v: fc.integer({ min: 0, max: 2 }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('ls' as const), p: dir }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('del' as const), p: node }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('seq' as const), p: dir }) },
  );
  const job = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('tx' as const), ops: fc.array(op, { minLength: 1, maxLength: 5 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('outside' as const), ops: fc.tuple(op.filter((o) => o.t === 'set' || o.t === 'del')) }) },
  );

  /**
   * The naive model: path → value; parents implied and created by set. A
   * sequential create's number is reserved, not the model's to choose: the
   * model takes the name the transaction got and checks it was free then.
   */
  const apply = (m: Map<string, string>, o: TxOp, got: string): string => {
    switch (o.t) {
      case 'seq': {
        assert.match(got, new RegExp(`^${o.p}/s-\\d{10}$`));
        if (m.has(got)) return `${got} exists already`;
        if (!m.has(o.p)) m.set(o.p, '');
        m.set(got, 'q');
        return got;
      }
      case 'get': return m.get(o.p) ?? '<none>';
      case 'set': {
        const i = o.p.indexOf('/', 1);
        if (i > 0 && !m.has(o.p.slice(0, i))) m.set(o.p.slice(0, i), '');
        m.set(o.p, String(o.v));
        return 'ok';
      }
      case 'ls': return m.has(o.p) ? [...m.keys()].filter((k) => k.startsWith(o.p + '/')).map((k) => k.slice(o.p.length + 1)).sort().join(',') : 'NOT_FOUND';
      case 'del': {
        if (!m.has(o.p)) return 'false';
        for (const k of [...m.keys()]) if (k === o.p || k.startsWith(o.p + '/')) m.delete(k);
        return 'true';
      }
    }
  };

  await fc.assert(fc.asyncProperty(fc.array(job, { minLength: 2, maxLength: 12 }), fc.scheduler(), async (jobs, sched) => {
    const s: Store = await open();
    const committed: Array<{ rev: number; writes: boolean; responses: string[]; ops: TxOp[] }> = [];
    await sched.waitFor(Promise.all(jobs.map(async (j) => {
      await sched.schedule(Promise.resolve());
      if (j.kind === 'outside') {
        const o = j.ops[0];
        const r = await s.multi([o.t === 'set' ? { op: 'set', path: o.p, value: String(o.v) } : { op: 'delete', path: o.p, recursive: true }]);
        const resp = o.t === 'set' ? 'ok' : String(r.results[0]);
        committed.push({ rev: r.revision, writes: resp !== 'false', responses: [resp], ops: [o] });
        return;
      }
      const tx = s.begin();
      const responses: string[] = [];
      for (const o of j.ops) {
        await sched.schedule(Promise.resolve());
        if (o.t === 'get') responses.push((await tx.get(o.p))?.text() ?? '<none>');
        else if (o.t === 'set') { await tx.set(o.p, String(o.v)); responses.push('ok'); }
        else if (o.t === 'ls') responses.push(await tx.list(o.p).then((l) => l.join(','), (e: unknown) => (LatchkeyError.is(e) ? e.code : 'error')));
        else if (o.t === 'seq') responses.push(await tx.create(`${o.p}/s-`, 'q', { sequential: true }));
        else responses.push(String(await tx.delete(o.p, { recursive: true })));
      }
      await sched.schedule(Promise.resolve());
      try {
        const r = await tx.commit();
        // A delete that found nothing wrote nothing: such a commit reflects the state at its revision.
        const wrote = j.ops.some((o, i) => o.t === 'set' || o.t === 'seq' || (o.t === 'del' && responses[i] === 'true'));
        committed.push({ rev: r.revision, writes: wrote, responses, ops: j.ops });
        totalCommitted++;
        if (r.replayed) totalReplays++;
      } catch (e) {
        if (!conflict(e)) throw e;
        // Reserved numbers: transactions that only create sequential children never conflict.
        assert.ok(!j.ops.every((o) => o.t === 'seq'), `a transaction of sequential creates conflicted: ${String(e)}`);
        totalConflicts++;
      }
    })));
    // Serial order: by revision; a commit that wrote nothing reflects the state after the commit of its revision.
    const writers = new Set(committed.filter((c) => c.writes).map((c) => c.rev));
    committed.sort((a, b) => a.rev - b.rev || Number(!(a.writes && writers.has(a.rev))) - Number(!(b.writes && writers.has(b.rev))));
    const state = new Map<string, string>();
    for (const c of committed) {
      const want = c.ops.map((o, i) => apply(state, o, c.responses[i]!));
      assert.deepEqual(c.responses, want, `responses must match the serial order (rev ${c.rev})`);
    }
    for (const p of ['/d0', '/d1', '/d0/k0', '/d0/k1', '/d0/k2', '/d1/k0', '/d1/k1', '/d1/k2']) {
      assert.equal((await s.get(p))?.text(), state.get(p), p);
    }
    for (const d of ['/d0', '/d1']) {
      const names = state.has(d) ? [...state.keys()].filter((k) => k.startsWith(d + '/')).map((k) => k.slice(d.length + 1)).sort() : undefined;
      assert.deepEqual(await s.list(d).then((l) => [...l].sort(), () => undefined), names, d);
    }
  }), { numRuns: 300 });
  // the property is only worth something if every outcome happened
  assert.ok(totalCommitted > 0 && totalConflicts > 0 && totalReplays > 0, `committed ${totalCommitted}, conflicts ${totalConflicts}, replays ${totalReplays}`);
});

test('transactions: two transactions each creating their own sequential child of /q both commit (numbers are reserved); an aborted one leaves a gap', async () => {
  const s = await open();
  await s.set('/q', '');
  const a = s.begin();
  const b = s.begin();
  const c = s.begin();
  assert.equal(await a.create('/q/job-', 'a', { sequential: true }), '/q/job-0000000000');
  assert.equal(await b.create('/q/job-', 'b', { sequential: true }), '/q/job-0000000001');
  assert.equal(await c.create('/q/job-', 'c', { sequential: true }), '/q/job-0000000002');
  assert.equal(await b.create('/q/job-', 'b2', { sequential: true }), '/q/job-0000000003');
  await b.commit(); // out of reservation order
  await a.commit();
  await c.abort(); // its number stays unused: a gap
  assert.equal(await s.create('/q/job-', 'plain', { sequential: true }), '/q/job-0000000004');
  const d = s.begin();
  assert.equal(await d.create('/q/job-', 'd', { sequential: true }), '/q/job-0000000005');
  assert.equal(await s.create('/q/job-', 'plain2', { sequential: true }), '/q/job-0000000006', 'a plain create skips numbers reserved by open transactions');
  await d.commit();
  assert.deepEqual([...(await s.list('/q'))], ['job-0000000000', 'job-0000000001', 'job-0000000003', 'job-0000000004', 'job-0000000005', 'job-0000000006']);
  assert.equal((s.stats() as unknown as { conflicts: number }).conflicts, 0);
});

test('transactions: the sequential counter survives a restart after numbers committed out of order', async () => {
  const { removeDir, tempDir } = await import('../storage/helpers.js');
  const dir = (await tempDir()).path;
  try {
    let s = await open(dir);
    const a = s.begin();
    const b = s.begin();
    await a.create('/q/j-', 'a', { sequential: true });
    await b.create('/q/j-', 'b', { sequential: true });
    await b.commit();
    await a.commit();
    await s.close();
    s = await open(dir);
    assert.equal(await s.create('/q/j-', 'c', { sequential: true }), '/q/j-0000000002');
    await s.snapshot();
    await s.close();
    s = await open(dir);
    assert.equal(await s.create('/q/j-', 'd', { sequential: true }), '/q/j-0000000003');
    await s.close();
  } finally {
    await removeDir(dir);
  }
});

/*
 * A transaction writes at a provisional revision (snapshot + 1), which the
 * next real commit also carries. Reads of the transaction's own writes must
 * never be taken as unchanged because of that coincidence (found by the
 * XenStore adapter's interleaving property test).
 */
test('transactions: a listing of a directory the transaction created is compared at head', async () => {
  const s = await open();
  const tx = s.begin();
  await s.set('/a/a', '1'); // commit at snapshot + 1: creates /a with childrenRev = snapshot + 1
  await tx.set('/a', '1'); // in the transaction, /a is created at the same provisional revision
  assert.deepEqual([...(await tx.list('/a'))], []);
  await assert.rejects(tx.commit(), (e: unknown) => conflict(e) && (e as LatchkeyError).path === '/a');
});

test('transactions: a read of a parent the transaction created is compared at head', async () => {
  const s = await open();
  const tx = s.begin();
  await s.set('/p', 'outside'); // commit at snapshot + 1
  await tx.set('/p/c', 'x'); // creates /p ('' value) at the provisional revision
  assert.equal((await tx.get('/p'))!.text(), '');
  await assert.rejects(tx.commit(), (e: unknown) => conflict(e) && (e as LatchkeyError).path === '/p');
  // and when the outside commit leaves the same answers, replay commits
  const tx2 = s.begin();
  await s.set('/q/other', '1');
  await tx2.set('/q', '');
  assert.equal((await tx2.get('/q'))!.text(), '');
  await tx2.set('/q/mine', '2');
  assert.equal((await tx2.commit()).revision, s.revision);
  assert.deepEqual([...(await s.list('/q'))], ['mine', 'other']);
});
