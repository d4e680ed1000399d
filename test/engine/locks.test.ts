import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError, open, type Session, type Store } from '../../src/index.js';

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code;

/** Lets every queued microtask and macrotask run, then says whether `p` has settled. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return done;
}

/** Ends a session as if its connection died (no clean close). */
function kill(s: Session): Promise<void> {
  return (s as unknown as { end(died: boolean): Promise<void> }).end(true);
}

async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const store = await open();
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

test('locks: acquire, inspect, release (idempotent); mode defaults to exclusive', () => withStore(async (store) => {
  const s = store.session({ name: 'worker' });
  const l = await s.lock('/jobs/42');
  assert.equal(l.mode, 'exclusive');
  assert.equal(l.held, true);
  assert.equal(l.ownerDied, false);
  assert.equal(l.path, '/jobs/42');
  assert.deepEqual(s.locks().map((i) => [i.path, i.mode, i.session, i.token]), [['/jobs/42', 'exclusive', s.id, l.token]]);
  assert.deepEqual(store.lockTable().held.map((i) => i.path), ['/jobs/42']);
  const l2 = await store.lock('/jobs/43', { mode: 'shared' });
  assert.ok(l2.token > l.token, 'tokens strictly increase');
  await l.release();
  await l.release();
  assert.equal(l.held, false);
  assert.equal(l.signal.aborted, false, 'a voluntary release is not a loss');
  assert.deepEqual(s.locks(), []);
  await assert.rejects(store.lock('/x', { mode: 'bogus' as 'shared' }), is('INVALID_ARGUMENT'));
  await assert.rejects(store.lock('relative'), is('INVALID_PATH'));
}));

test('locks: await using releases at the end of the scope', () => withStore(async (store) => {
  const s = store.session();
  {
    await using l = await s.lock('/scoped');
    assert.equal(l.held, true);
    assert.equal(s.locks().length, 1);
  }
  assert.equal(s.locks().length, 0);
  const other = await store.lock('/scoped', { wait: false });
  assert.equal(other.ownerDied, false, 'leaving the scope hands on clean');
}));

test('locks: wait:false fails LOCKED at once; shared locks coexist; whole-store lock freezes writes', () => withStore(async (store) => {
  const a = store.session();
  const b = store.session();
  await a.lock('/r', { mode: 'shared' });
  await b.lock('/r/sub', { mode: 'shared' });
  await assert.rejects(b.lock('/r', { wait: false }), is('LOCKED'));
  assert.deepEqual(store.lockTable().waiting, [], 'no side effects');
  const freeze = await a.lock('/', { mode: 'shared' });
  await assert.rejects(b.set('/anywhere', 'x', { wait: false }), is('LOCKED'));
  assert.equal(await b.get('/anywhere'), undefined, 'reads never wait');
  await freeze.release();
}));

test('locks: FIFO handoff — an exclusive waiter is not starved by later shared requests', () => withStore(async (store) => {
  const [a, b, c] = [store.session(), store.session(), store.session()];
  const la = await a.lock('/q', { mode: 'shared' });
  const pb = b.lock('/q');
  const pc = c.lock('/q', { mode: 'shared' });
  assert.equal(await settled(pb), false);
  assert.equal(await settled(pc), false, 'a shared request queues behind the exclusive waiter');
  assert.deepEqual(store.lockTable().waiting.map((w) => [w.path, w.mode, w.session]), [['/q', 'exclusive', b.id], ['/q', 'shared', c.id]]);
  assert.deepEqual(store.lockTable().held.map((h) => [h.path, h.session, h.waiters]), [['/q', a.id, 1]], 'c waits for b, not for a');
  await la.release();
  const lb = await pb;
  assert.equal(await settled(pc), false);
  await lb.release();
  const lc = await pc;
  assert.equal(lc.mode, 'shared');
}));

test('locks: owner died — the next waiter is told, the lost lock aborts its signal', () => withStore(async (store) => {
  const dying = store.session();
  const next = store.session();
  const l = await dying.lock('/leader');
  const signal = l.signal;
  const p = next.lock('/leader');
  await kill(dying);
  const got = await p;
  assert.equal(got.ownerDied, true);
  assert.equal(l.held, false);
  assert.equal(signal.aborted, true);
  assert.ok(is('LOCK_LOST')(signal.reason));
  // Not yet vouched for: the next one is told too, until a told holder marks it consistent.
  const third = store.session();
  const p3 = third.lock('/leader');
  await kill(next);
  assert.equal((await p3).ownerDied, true);
  await (await p3).markConsistent();
  await (await p3).release();
  assert.equal((await store.lock('/leader')).ownerDied, false);
}));

test('locks: a closed session hands its locks on with ownerDied; an explicit release hands on clean', () => withStore(async (store) => {
  const a = store.session();
  const b = store.session();
  await a.lock('/k');
  const p = b.lock('/k');
  await a.close();
  assert.equal((await p).ownerDied, true);
  const c = store.session();
  const lc = await c.lock('/m');
  const pd = store.lock('/m');
  await lc.release();
  assert.equal((await pd).ownerDied, false);
}));

test('locks: fencing — a write carrying a lock no longer held fails LOCK_LOST', () => withStore(async (store) => {
  const a = store.session();
  const b = store.session();
  const l = await a.lock('/res');
  await a.set('/res/v', '1', { fence: l });
  await a.set('/res/v', '2', { fence: l.token });
  await assert.rejects(b.set('/elsewhere', 'x', { fence: l }), is('LOCK_LOST'), 'another session cannot use it');
  const tx = a.begin();
  await tx.set('/res/w', 'x');
  await tx.commit({ fence: l });
  await l.release();
  await assert.rejects(a.set('/res/v', '3', { fence: l }), is('LOCK_LOST'));
  await assert.rejects(a.set('/res/v', '3', { fence: 12345 }), is('LOCK_LOST'));
  assert.equal((await a.get('/res/v'))!.text(), '2');
  const la = await a.lock('/res2', { mode: 'shared' });
  const old = la.token;
  await la.upgrade();
  assert.ok(la.token > old, 'an upgrade is a new grant with a new token');
  await assert.rejects(a.set('/res2/x', '1', { fence: old }), is('LOCK_LOST'));
  await a.set('/res2/x', '1', { fence: la });
}));

test('locks: deadlock — the wait that closes a cycle fails DEADLOCK naming it', () => withStore(async (store) => {
  const a = store.session({ name: 'A' });
  const b = store.session({ name: 'B' });
  const lx = await a.lock('/x');
  await b.lock('/y');
  const pa = a.lock('/y');
  let err: unknown;
  try { await b.lock('/x'); } catch (e) { err = e; }
  assert.ok(is('DEADLOCK')(err));
  const cycle = (err as LatchkeyError).info!.cycle as { session: string; waitsFor: string }[];
  assert.deepEqual(cycle.map((c) => [c.session, c.waitsFor]), [[b.id, a.id], [a.id, b.id]]);
  // A write that would close a cycle fails the same way.
  await assert.rejects(b.set('/x/v', '1'), is('DEADLOCK'));
  await lx.release();
  await b.close();
  assert.equal((await pa).held, true);
}));

test('locks: upgrade — two shared holders both upgrading: one gets DEADLOCK; downgrade lets readers in', () => withStore(async (store) => {
  const a = store.session();
  const b = store.session();
  const la = await a.lock('/doc', { mode: 'shared' });
  const lb = await b.lock('/doc', { mode: 'shared' });
  const up = la.upgrade();
  assert.equal(await settled(up), false);
  await assert.rejects(lb.upgrade(), is('DEADLOCK'));
  assert.equal(lb.mode, 'shared');
  await lb.release();
  await up;
  assert.equal(la.mode, 'exclusive');
  const reader = store.session().lock('/doc', { mode: 'shared' });
  assert.equal(await settled(reader), false);
  await la.downgrade();
  assert.equal((await reader).mode, 'shared');
  await assert.rejects(la.upgrade({ wait: false }), is('LOCKED'));
}));

test('locks: releasing a lock with an upgrade pending abandons the upgrade (dispose while busy)', () => withStore(async (store) => {
  const a = store.session();
  const la = await a.lock('/u', { mode: 'shared' });
  await store.session().lock('/u', { mode: 'shared' });
  const up = la.upgrade();
  await la[Symbol.asyncDispose]();
  await assert.rejects(up, is('ABORTED'));
  await la[Symbol.asyncDispose]();
  assert.equal(la.held, false);
  await assert.rejects(la.upgrade(), is('LOCK_LOST'));
}));

test('locks: cancellation by timeout and by signal leaves the queue and hands on to those behind', () => withStore(async (store) => {
  const a = store.session();
  const la = await a.lock('/c', { mode: 'shared' });
  const pb = assert.rejects(store.session().lock('/c', { timeoutMs: 5 }), is('TIMEOUT'));
  const pc = store.session().lock('/c', { mode: 'shared' });
  await pb;
  assert.equal((await pc).mode, 'shared', 'the shared request behind the timed-out one is granted');
  const ac = new AbortController();
  const pd = store.session().lock('/c', { signal: ac.signal });
  assert.equal(await settled(pd), false);
  ac.abort();
  await assert.rejects(pd, is('ABORTED'));
  assert.deepEqual(store.lockTable().waiting, []);
  await assert.rejects(store.lock('/c', { signal: AbortSignal.abort() }), is('ABORTED'));
  await la.release();
}));

test('locks: a waiter whose session ends fails SESSION_EXPIRED; a closed session cannot lock', () => withStore(async (store) => {
  await store.lock('/w');
  const s = store.session();
  const p = s.lock('/w');
  await s.close();
  await assert.rejects(p, is('SESSION_EXPIRED'));
  await assert.rejects(s.lock('/z'), is('SESSION_EXPIRED'));
}));

test('locks: mandatory — another session\'s writes and commits wait in the queue; the holder\'s own pass', () => withStore(async (store) => {
  const owner = store.session();
  const other = store.session();
  const l = await owner.lock('/cfg');
  await owner.set('/cfg/a', 'mine');
  const w = other.set('/cfg/a', 'theirs');
  const tx = other.begin();
  await tx.set('/cfg/b', 'tx');
  const c = tx.commit();
  assert.equal(await settled(w), false);
  assert.equal(await settled(c), false);
  assert.equal((await other.get('/cfg/a'))!.text(), 'mine', 'reads do not wait');
  assert.deepEqual(store.lockTable().waiting.map((x) => x.mode), ['write', 'write']);
  await assert.rejects(other.set('/cfg/a', 'x', { wait: false }), is('LOCKED'));
  await assert.rejects(other.delete('/cfg', { recursive: true, wait: false }), is('LOCKED'));
  await other.set('/elsewhere', 'free');
  await other.set('/', 'a plain write of an ancestor does not touch the locked subtree');
  // A lock queued behind the writes waits for them to apply.
  const third = store.session().lock('/cfg', { mode: 'shared' });
  await l.release();
  await w;
  await c;
  const l3 = await third;
  assert.equal((await store.get('/cfg/a'))!.text(), 'theirs');
  assert.equal((await store.get('/cfg/b'))!.text(), 'tx');
  // A recursive delete above a lock waits for it.
  const rm = store.delete('/cfg', { recursive: true });
  assert.equal(await settled(rm), false);
  await l3.release();
  assert.equal(await rm, true);
}));

test('locks: a write waiting on a lock is cancelled by its signal', () => withStore(async (store) => {
  const l = await store.session().lock('/s');
  const ac = new AbortController();
  const w = store.set('/s/x', '1', { signal: ac.signal });
  assert.equal(await settled(w), false);
  ac.abort();
  await assert.rejects(w, is('ABORTED'));
  await l.release();
  assert.equal(await store.get('/s/x'), undefined);
}));

test('sessions: ending a session deletes its ephemeral nodes in one commit and aborts its transactions', () => withStore(async (store) => {
  const s = store.session();
  await store.set('/members/keep', 'x');
  await s.create('/members/a', 'a', { ephemeral: true });
  await s.create('/members/b', 'b', { ephemeral: true });
  assert.equal((await store.get('/members/a'))!.stat.ephemeralOwner, s.id);
  const tx = s.begin();
  await tx.set('/t', 'never');
  const before = store.revision;
  await kill(s);
  assert.equal(store.revision, before + 1, 'one commit removes both');
  assert.deepEqual([...(await store.list('/members'))], ['keep']);
  await assert.rejects(tx.commit(), is('ABORTED'));
  assert.equal(await store.get('/t'), undefined);
}));

test('sessions: sequential names increase per parent, also across sessions and deletions', () => withStore(async (store) => {
  const a = store.session();
  const b = store.session();
  const n1 = await a.create('/election/n-', '', { sequential: true, ephemeral: true });
  const n2 = await b.create('/election/n-', '', { sequential: true, ephemeral: true });
  assert.equal(n1, '/election/n-0000000000');
  assert.equal(n2, '/election/n-0000000001');
  await a.close();
  assert.deepEqual([...(await store.list('/election'))], ['n-0000000001']);
  const n3 = await store.create('/election/n-', '', { sequential: true });
  assert.equal(n3, '/election/n-0000000002', 'a counter never reuses a name');
}));

test('locks: store.close rejects waiters and releases everything', async () => {
  const store = await open();
  await store.lock('/a');
  const s = store.session();
  const p = s.lock('/a');
  await store.close();
  await assert.rejects(p, (e) => LatchkeyError.is(e));
});

test('locks: herd through the store — one release of "/" wakes 7,000 waiters on 7,000 records, each once', () => withStore(async (store) => {
  const freeze = await store.lock('/', { mode: 'exclusive' });
  const granted = new Set<number>();
  const waits = Array.from({ length: 7000 }, (_, i) => store.session().lock(`/db/rec${i}`).then((l) => {
    assert.ok(!granted.has(i), 'granted twice');
    granted.add(i);
    return l;
  }));
  assert.equal(await settled(Promise.race(waits)), false);
  assert.equal(store.lockTable().waiting.length, 7000);
  const before = store.stats().lockWakeups as number;
  await freeze.release();
  const locks = await Promise.all(waits);
  assert.equal(granted.size, 7000);
  assert.equal((store.stats().lockWakeups as number) - before, 7000);
  assert.ok(locks.every((l) => l.held && !l.ownerDied));
}));

test('locks: mandatory under load — an exclusive holder never sees another session\'s write in its subtree', () => withStore(async (store) => {
  const sessions = Array.from({ length: 6 }, (_, i) => store.session({ name: `s${i}` }));
  let seed = 42;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  let violations = 0;
  let lockedRounds = 0;
  await Promise.all(sessions.map(async (s, si) => {
    for (let round = 0; round < 60; round++) {
      const k = `/k${rnd(3)}`;
      const choice = rnd(3);
      if (choice === 0) {
        const l = await s.lock(k, { timeoutMs: 5000 });
        lockedRounds++;
        const mine = `${si}:${round}`;
        await s.set(`${k}/v`, mine, { fence: l });
        for (let t = 0; t < rnd(4) + 1; t++) {
          await new Promise((r) => setImmediate(r));
          if ((await s.get(`${k}/v`))?.text() !== mine) violations++;
        }
        await l.release();
      } else if (choice === 1) {
        await s.set(`${k}/v`, `plain ${si}:${round}`);
      } else {
        const l = await s.lock(k, { mode: 'shared' });
        const seen = (await s.get(`${k}/v`))?.text();
        await new Promise((r) => setImmediate(r));
        if ((await s.get(`${k}/v`))?.text() !== seen) violations++;
        await l.release();
      }
    }
  }));
  assert.ok(lockedRounds > 0);
  assert.equal(violations, 0);
  assert.deepEqual(store.lockTable(), { held: [], waiting: [] });
}));

test('locks: random sessions that lock, upgrade, write, time out, abort and die — every promise settles and the table empties', { timeout: 20_000 }, () => withStore(async (store) => {
  let seed = 7;
  const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
  const paths = ['/', '/a', '/a/b', '/a/c', '/b'];
  const codes = new Map<string, number>();
  const note = (e: unknown): void => {
    if (!LatchkeyError.is(e)) throw e;
    codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
  };
  const worker = async (w: number): Promise<void> => {
    for (let life = 0; life < 4; life++) {
      const s = store.session({ name: `w${w}.${life}` });
      const dieAfter = rnd(12) + 2;
      for (let step = 0; step < dieAfter; step++) {
        const p = paths[rnd(paths.length)]!;
        try {
          switch (rnd(6)) {
            case 0:
            case 1: {
              const l = await s.lock(p, { mode: rnd(2) === 0 ? 'shared' : 'exclusive', timeoutMs: rnd(3) === 0 ? 1 : 500 });
              if (l.mode === 'shared' && rnd(2) === 0) await l.upgrade({ timeoutMs: 50 });
              await s.set(`${p === '/' ? '' : p}/v${w}`, String(step), { fence: l });
              await new Promise((r) => setTimeout(r, rnd(3)));
              if (rnd(4) > 0) await l.release();
              break;
            }
            case 2:
              await s.set(`${p === '/' ? '' : p}/x`, String(step), { signal: AbortSignal.timeout(100) });
              break;
            case 3: {
              const ac = new AbortController();
              const pl = s.lock(p, { signal: ac.signal });
              setTimeout(() => ac.abort(), rnd(2));
              (await pl.catch((e: unknown) => { note(e); return undefined; }))?.release();
              break;
            }
            default:
              await s.create(`${p === '/' ? '' : p}/e${w}-`, '', { ephemeral: true, sequential: true });
          }
        } catch (e) {
          note(e);
        }
      }
      await kill(s);
    }
  };
  await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)));
  if (process.env.LT_VERBOSE) console.log(codes, store.stats());
  assert.deepEqual(store.lockTable(), { held: [], waiting: [] });
  for (const c of codes.keys()) assert.ok(['TIMEOUT', 'ABORTED', 'DEADLOCK', 'LOCK_LOST', 'LOCKED'].includes(c), `unexpected ${c}`);
  const left = [];
  for (const p of ['/', '/a', '/a/b', '/a/c', '/b']) {
    if (await store.exists(p)) for (const n of await store.list(p)) if (n.startsWith('e')) left.push(`${p}/${n}`);
  }
  assert.deepEqual(left, [], 'every ephemeral node went with its session');
}));

test('locks: a timeout beyond what timers can hold is refused, not turned into 1 ms', () => withStore(async (store) => {
  const holder = await store.lock('/t');
  const other = store.session();
  await assert.rejects(other.lock('/t', { timeoutMs: 2 ** 31 }), is('INVALID_ARGUMENT'));
  await assert.rejects(other.lock('/t', { timeoutMs: Number.NaN }), is('INVALID_ARGUMENT'));
  const waiting = other.lock('/t', { timeoutMs: 2 ** 31 - 1 });
  await holder.release();
  const l = await waiting;
  assert.equal(l.held, true);
  await other.close();
}));
