/**
 * The contract suite: behaviour every Store implementation must share
 * (embedded in memory, embedded on disk, remote over a Unix socket or TCP).
 * A backend calls `contractSuite(name, factory)`; each test gets a fresh,
 * empty store from the factory and closes it after.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError, type MultiOp, type Store, type WatchEvent } from '../../src/index.js';

export interface Backend {
  store: Store;
  /** Releases whatever the backend set up (servers, directories). */
  cleanup(): Promise<void>;
  /**
   * Durable backends: crashes the server — its directory as a crash leaves
   * it (what reached the files), the process gone — and starts a new one on
   * it. Returns the store to use from then on (a remote client reconnects).
   */
  crash?(): Promise<Store>;
}

const is = (code: string, re?: RegExp) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code && (re === undefined || re.test(e.message));

async function next(it: AsyncIterator<WatchEvent>): Promise<string> {
  const r = await it.next();
  assert.equal(r.done, false);
  const e = r.value;
  return `${e.type} ${e.path}${e.value !== undefined ? `=${Buffer.from(e.value).toString()}` : ''}`;
}

/** A test-declaring function: each test gets a fresh store from `make`, closed and cleaned up after. */
export function backendTest(label: string, make: () => Promise<Backend>): (title: string, fn: (s: Store, b: Backend) => Promise<void>) => void {
  return (title, fn) => {
    test(`${label}: ${title}`, async () => {
      const b = await make();
      try {
        await fn(b.store, b);
      } finally {
        await b.store.close().catch(() => {});
        await b.cleanup();
      }
    });
  };
}

export function contractSuite(name: string, make: () => Promise<Backend>): void {
  const t = backendTest(`contract[${name}]`, make);

  t('set creates parents; get returns value, text, json and stat', async (s) => {
    const rev = await s.set('/a/b', 'hello');
    const e = (await s.get('/a/b'))!;
    assert.equal(e.text(), 'hello');
    assert.deepEqual([...e.value], [...Buffer.from('hello')]);
    assert.equal(e.stat.version, 1);
    assert.equal(e.stat.createRev, rev);
    assert.equal(e.stat.modRev, rev);
    assert.ok(e.revision >= rev);
    assert.equal((await s.get('/a'))!.stat.numChildren, 1);
    await s.set('/j', JSON.stringify({ n: [1, 2] }));
    assert.deepEqual((await s.get('/j'))!.json(), { n: [1, 2] });
    await s.set('/bin', new Uint8Array([0, 255, 7]));
    assert.deepEqual([...(await s.get('/bin'))!.value], [0, 255, 7]);
    assert.equal(await s.get('/missing'), undefined);
    assert.equal(await s.exists('/a'), true);
    assert.equal(await s.exists('/nope'), false);
    assert.equal(s.revision, (await s.get('/bin'))!.revision);
  });

  t('values are copied in and out', async (s) => {
    const buf = new Uint8Array([1, 2, 3]);
    await s.set('/c', buf);
    buf[0] = 9;
    const e = (await s.get('/c'))!;
    e.value[1] = 9;
    assert.deepEqual([...(await s.get('/c'))!.value], [1, 2, 3]);
  });

  t('list is sorted by bytes and pages with after/limit', async (s) => {
    const names = ['b', 'a', 'é', 'Z', 'a0', '\u{1F600}', '\uffff'];
    for (const n of names) await s.set(`/d/${n}`, n);
    const all = await s.list('/d');
    assert.deepEqual([...all], [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
    assert.equal(all.more, false);
    assert.ok(all.revision >= 1);
    const page1 = await s.list('/d', { limit: 3 });
    assert.equal(page1.more, true);
    const page2 = await s.list('/d', { after: page1.at(-1)!, limit: 10 });
    assert.deepEqual([...page1, ...page2], [...all]);
    assert.equal(page2.more, false);
    await assert.rejects(s.list('/nowhere'), is('NOT_FOUND'));
    assert.deepEqual([...(await s.list('/'))], ['d']);
  });

  t('create, delete, conditional writes', async (s) => {
    assert.equal(await s.create('/x/c', 'x'), '/x/c');
    await assert.rejects(s.create('/x/c', 'y'), is('EXISTS'));
    await assert.rejects(s.delete('/x'), is('NOT_EMPTY'));
    assert.equal(await s.delete('/x/nope'), false);
    await s.set('/x/c', 'v2', { ifVersion: 1 });
    await assert.rejects(s.set('/x/c', 'v3', { ifVersion: 1 }), is('CONFLICT'));
    await assert.rejects(s.set('/x/c', 'v3', { ifAbsent: true }), is('CONFLICT'));
    const mod = (await s.get('/x/c'))!.stat.modRev;
    await s.set('/x/c', 'v3', { ifModRev: mod });
    assert.equal((await s.get('/x/c'))!.text(), 'v3');
    assert.equal(await s.delete('/x', { recursive: true }), true);
    assert.equal(await s.get('/x/c'), undefined);
    const seq1 = await s.create('/q/job-', 'a', { sequential: true });
    const seq2 = await s.create('/q/job-', 'b', { sequential: true });
    assert.match(seq1, /^\/q\/job-\d{10}$/);
    assert.ok(seq2 > seq1);
  });

  t('bad input gets typed errors and changes nothing', async (s) => {
    const before = s.revision;
    for (const p of ['', 'rel', '/a/', '/a//b', '/a/../b', '/nul\0', '/' + 'x'.repeat(300)]) {
      await assert.rejects(s.set(p, 'v'), is('INVALID_PATH'), p);
      await assert.rejects(s.get(p), is('INVALID_PATH'), p);
    }
    await assert.rejects(s.set('/big', new Uint8Array(2 * 1024 * 1024)), is('TOO_LARGE'));
    await assert.rejects(s.delete('/'), is('INVALID_ARGUMENT'));
    await assert.rejects(s.set('/v', 42 as unknown as string), is('INVALID_ARGUMENT'));
    await assert.rejects(s.list('/', { limit: 0 }), is('INVALID_ARGUMENT'));
    assert.equal(s.revision, before);
  });

  t('every entry point checks its arguments the same way (the API edge), and changes nothing when they are bad', async (s) => {
    const before = s.revision;
    const big = new Uint8Array(1024 * 1024 + 1);
    const tooLarge = (e: unknown): boolean => is('TOO_LARGE')(e)
      && (e as LatchkeyError).message === `value for /big is ${big.length} bytes; the limit is ${1024 * 1024}`
      && (e as LatchkeyError).info?.size === big.length && (e as LatchkeyError).info?.limit === 1024 * 1024;
    await assert.rejects(s.set('/big', big), tooLarge);
    await assert.rejects(s.create('/big', big), tooLarge);
    await assert.rejects(s.multi([{ op: 'set', path: '/big', value: big }]), tooLarge);
    await assert.rejects(s.multi([{ op: 'set', path: '/m', value: '1' }, null as unknown as MultiOp]), (e: unknown) => is('INVALID_ARGUMENT')(e) && /multi op 1/.test((e as Error).message));
    await assert.rejects(s.multi([{ op: 'frob', path: '/m' } as unknown as MultiOp]), is('INVALID_ARGUMENT'));
    await assert.rejects(s.multi([{ op: 'set', path: 'rel', value: '1' }]), is('INVALID_PATH'));
    await assert.rejects(s.multi('nope' as unknown as MultiOp[]), is('INVALID_ARGUMENT'));
    await assert.rejects(s.lock('rel'), is('INVALID_PATH'));
    const tx = s.begin();
    await assert.rejects(tx.set('/big', big), tooLarge);
    await assert.rejects(tx.set('rel', 'v'), is('INVALID_PATH'));
    await assert.rejects(tx.list('/', { limit: 0 }), is('INVALID_ARGUMENT'));
    await assert.rejects(tx.check('/x', null as unknown as { exists: boolean }), is('INVALID_ARGUMENT'));
    await tx.abort();
    assert.equal(s.revision, before);
    // Options given as undefined are options not given; the caller's bytes are copied.
    const bytes = new TextEncoder().encode('mine');
    await s.set('/copied', bytes, { ifVersion: undefined, ifModRev: undefined, ifAbsent: undefined });
    bytes[0] = 0x4d;
    assert.equal((await s.get('/copied'))!.text(), 'mine');
  });

  t('multi is atomic', async (s) => {
    const r = await s.multi([
      { op: 'set', path: '/m/a', value: '1' },
      { op: 'create', path: '/m/b', value: '2' },
      { op: 'check', path: '/m/a', exists: true },
    ]);
    assert.equal(r.results[1], '/m/b');
    const rev = s.revision;
    await assert.rejects(s.multi([
      { op: 'set', path: '/m/a', value: 'changed' },
      { op: 'create', path: '/m/b', value: 'dup' },
    ]), (e: unknown) => is('EXISTS')(e) && (e as LatchkeyError).info?.index === 1);
    assert.equal((await s.get('/m/a'))!.text(), '1');
    assert.equal(s.revision, rev);
  });

  t('transactions: snapshot, replay and conflict', async (s) => {
    await s.set('/t/x', '0');
    const t1 = s.begin();
    const t2 = s.begin();
    await t1.get('/t/x'); await t1.set('/t/y', '1');
    await t2.get('/t/y'); await t2.set('/t/x', '1');
    await t1.commit();
    await assert.rejects(t2.commit(), is('CONFLICT'));
    const got = await s.transaction(async (tx) => {
      const v = Number((await tx.get('/t/x'))!.text());
      await tx.set('/t/x', String(v + 1));
      return v + 1;
    });
    assert.equal(got, 1);
    assert.equal((await s.get('/t/x'))!.text(), '1');
  });

  t('stats count commits and conflicts', async (s) => {
    await s.set('/s', '1');
    // stats() is synchronous in api.ts; a remote store answers it from its last fetch, so ask it for fresh figures.
    const remote = s as Store & { fetchStats?: () => Promise<ReturnType<Store['stats']>> };
    const st = remote.fetchStats !== undefined ? await remote.fetchStats() : s.stats();
    assert.equal(typeof st.revision, 'number');
    assert.ok(st.commits >= 1);
    assert.equal(typeof st.conflicts, 'number');
  });

  t('a closed store refuses work with CLOSED', async (s) => {
    await s.close();
    await assert.rejects(s.get('/'), is('CLOSED'));
    await assert.rejects(s.set('/a', 'b'), is('CLOSED'));
    await s.close(); // idempotent
  });

  // Lock cases: every backend has locks; a failure here is a regression, never a skip.
  const tl = (title: string, fn: (s: Store) => Promise<void>): void => {
    test(`contract[${name}]: ${title}`, async () => {
      const b = await make();
      try {
        await fn(b.store);
      } finally {
        await b.store.close().catch(() => {});
        await b.cleanup();
      }
    });
  };

  t('a value over 1 MiB is TOO_LARGE and changes nothing', async (s) => {
    await assert.rejects(s.set('/big', new Uint8Array(1024 * 1024 + 1)), is('TOO_LARGE'));
    assert.equal(await s.exists('/big'), false);
    await s.set('/big', new Uint8Array(1024 * 1024));
    assert.equal((await s.get('/big'))!.value.length, 1024 * 1024);
  });

  t('transactions read their snapshot plus their own writes, and commit atomically', async (s) => {
    await s.set('/x', '1');
    const ro = s.begin();
    assert.equal((await ro.get('/x'))?.text(), '1');
    await s.set('/other', 'outside');
    assert.equal(await ro.exists('/other'), false);
    const roc = await ro.commit(); // read-only: always commits, at its snapshot
    assert.ok(roc.revision < s.revision);
    const tx = s.begin();
    assert.equal(tx.state, 'open');
    assert.equal((await tx.get('/x'))?.text(), '1');
    await tx.set('/y', '2');
    assert.equal((await tx.get('/y'))?.text(), '2');
    assert.equal(await s.exists('/y'), false);
    const c = await tx.commit();
    assert.equal(tx.state, 'committed');
    assert.ok(c.revision > 0);
    assert.equal((await s.get('/y'))?.text(), '2');
    await assert.rejects(tx.get('/y'), is('CLOSED'));
  });

  t('a transaction whose reads changed gets CONFLICT; transaction() retries it', async (s) => {
    await s.set('/n', '0');
    const tx = s.begin();
    const v = Number((await tx.get('/n'))!.text());
    await s.set('/n', '5');
    await tx.set('/n', String(v + 1));
    await assert.rejects(tx.commit(), is('CONFLICT'));
    assert.equal(tx.state, 'aborted');
    let runs = 0;
    await s.transaction(async (t2) => {
      runs++;
      const n = Number((await t2.get('/n'))!.text());
      if (runs === 1) await s.set('/n', '10');
      await t2.set('/n', String(n + 1));
    });
    assert.equal(runs, 2);
    assert.equal((await s.get('/n'))!.text(), '11');
  });

  t('a read whose value was rewritten with the same bytes commits by replay', async (s) => {
    await s.set('/same', 'v');
    const tx = s.begin();
    await tx.get('/same');
    await tx.set('/out', '1');
    await s.set('/same', 'v');
    const r = await tx.commit();
    assert.equal(r.replayed, true);
  });

  t('abort and dispose end a transaction without writing', async (s) => {
    const tx = s.begin();
    await tx.set('/gone', '1');
    await tx.abort();
    assert.equal(tx.state, 'aborted');
    await assert.rejects(tx.set('/gone', '2'), is('ABORTED'));
    {
      await using tx2 = s.begin();
      await tx2.set('/gone2', '1');
    }
    assert.equal(await s.exists('/gone'), false);
    assert.equal(await s.exists('/gone2'), false);
  });

  t('ephemeral nodes end with their session; sequential names increase', async (s) => {
    const sess = s.session({ name: 'worker' });
    assert.equal(sess.name, 'worker');
    const p = await sess.create('/members/w', 'x', { ephemeral: true });
    assert.equal(p, '/members/w');
    assert.ok((await s.get('/members/w'))!.stat.ephemeralOwner !== undefined);
    const q1 = await s.create('/queue/item-', 'a', { sequential: true });
    const q2 = await s.create('/queue/item-', 'b', { sequential: true });
    assert.ok(q1 < q2, `${q1} < ${q2}`);
    assert.match(q1, /^\/queue\/item-\d{10}$/);
    await sess.close();
    assert.equal(sess.closed, true);
    assert.equal(await s.exists('/members/w'), false);
    await assert.rejects(sess.get('/'), is('SESSION_EXPIRED'));
  });

  t('watch: events after commits, in order; recursive deletes give one event per node', async (s) => {
    const it = s.watch('/w', { recursive: true })[Symbol.asyncIterator]();
    // The subscription may still be on its way: a remote watch starts at the revision the server saw it.
    await s.set('/sync', '1');
    await s.set('/w/a', '1');
    await s.set('/w/b/c', '2');
    await s.delete('/w', { recursive: true });
    const got = [];
    for (let i = 0; i < 8; i++) got.push(await next(it));
    assert.deepEqual(got, ['put /w=', 'put /w/a=1', 'put /w/b=', 'put /w/b/c=2', 'delete /w', 'delete /w/a', 'delete /w/b', 'delete /w/b/c']);
    await it.return!();
  });

  t('watch: fromRevision replays history; a plain watch sees only its node', async (s) => {
    const r1 = await s.set('/h', '1');
    await s.set('/h/child', 'x');
    await s.set('/h', '2');
    const it = s.watch('/h', { fromRevision: r1 })[Symbol.asyncIterator]();
    assert.equal(await next(it), 'put /h=1');
    assert.equal(await next(it), 'put /h=2');
    await s.set('/h', '3');
    assert.equal(await next(it), 'put /h=3');
    await it.return!();
  });

  tl('locks: exclusive excludes, release hands over, tokens increase', async (s) => {
    const a = s.session({ name: 'a' });
    const b = s.session({ name: 'b' });
    const la = await a.lock('/res');
    assert.equal(la.held, true);
    await assert.rejects(b.lock('/res', { wait: false }), is('LOCKED'));
    const pb = b.lock('/res');
    await la.release();
    const lb = await pb;
    assert.ok(lb.token > la.token);
    assert.equal(lb.ownerDied, false);
    await lb.release();
    await a.close();
    await b.close();
  });

  tl('locks: a session closing while holding hands the lock on with ownerDied', async (s) => {
    const a = s.session();
    const b = s.session();
    await a.lock('/od');
    const pb = b.lock('/od');
    await a.close();
    const lb = await pb;
    assert.equal(lb.ownerDied, true);
    await lb.release();
    await b.close();
  });
}
