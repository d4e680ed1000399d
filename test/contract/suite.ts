/**
 * The contract suite: behaviour every Store implementation must share
 * (embedded in memory, embedded on disk, remote over a Unix socket or TCP).
 * A backend calls `contractSuite(name, factory)`; each test gets a fresh,
 * empty store from the factory and closes it after.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError, type Store } from '../../src/index.js';

export interface Backend {
  store: Store;
  /** Releases whatever the backend set up (servers, directories). */
  cleanup(): Promise<void>;
}

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code;

export function contractSuite(name: string, make: () => Promise<Backend>): void {
  const t = (title: string, fn: (s: Store) => Promise<void>): void => {
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
    const st = s.stats();
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
}
