/**
 * The contract suite: one set of behaviours every Store implementation must
 * show, run against each backend (embedded, remote over Unix, remote over
 * TCP). A backend is a factory giving a fresh store and a way to dispose of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Store, WatchEvent } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';

export interface Backend {
  readonly name: string;
  open(): Promise<{ store: Store; close(): Promise<void> }>;
}

type Body = (store: Store) => Promise<void>;

function code(c: string, re?: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof LatchkeyError, `expected a LatchkeyError, got ${String(e)}`);
    assert.equal(e.code, c, e.message);
    if (re) assert.match(e.message, re);
    return true;
  };
}

async function locksAvailable(store: Store): Promise<boolean> {
  try {
    const l = await store.lock('/__probe');
    await l.release();
    return true;
  } catch (e) {
    if (LatchkeyError.is(e, 'INTERNAL') && /not implemented/.test(e.message)) return false;
    throw e;
  }
}

async function next(it: AsyncIterator<WatchEvent>): Promise<string> {
  const r = await it.next();
  assert.equal(r.done, false);
  const e = r.value;
  return `${e.type} ${e.path}${e.value !== undefined ? `=${Buffer.from(e.value).toString()}` : ''}`;
}

export function contract(backend: Backend): void {
  const t = (name: string, body: Body, opts: { locks?: boolean } = {}): void => {
    test(`contract[${backend.name}]: ${name}`, async (ctx) => {
      const { store, close } = await backend.open();
      try {
        if (opts.locks && !(await locksAvailable(store))) {
          ctx.skip('locks are not implemented in this build');
          return;
        }
        await body(store);
      } finally {
        await close();
      }
    });
  };

  t('set, get, exists and list reflect writes, with revisions', async (s) => {
    const r1 = await s.set('/a/b', 'hello');
    assert.ok(r1 >= 1);
    const e = await s.get('/a/b');
    assert.ok(e !== undefined);
    assert.equal(e.text(), 'hello');
    assert.deepEqual(Array.from(e.value), Array.from(Buffer.from('hello')));
    assert.equal(e.path, '/a/b');
    assert.equal(e.stat.version, 1);
    assert.equal(e.stat.createRev, r1);
    assert.equal(e.stat.modRev, r1);
    assert.ok(e.revision >= r1);
    assert.equal(await s.exists('/a'), true);
    assert.equal(await s.exists('/nope'), false);
    assert.equal(await s.get('/nope'), undefined);
    const r2 = await s.set('/a/b', JSON.stringify({ n: 2 }));
    assert.ok(r2 > r1);
    const e2 = await s.get('/a/b');
    assert.deepEqual(e2?.json(), { n: 2 });
    assert.equal(e2?.stat.version, 2);
    assert.ok(s.revision >= r2);
    const l = await s.list('/a');
    assert.deepEqual([...l], ['b']);
    assert.equal(l.more, false);
    assert.ok(l.revision >= r2);
  });

  t('binary values round trip byte for byte', async (s) => {
    const v = new Uint8Array(256).map((_, i) => i);
    await s.set('/bin', v);
    assert.deepEqual(Array.from((await s.get('/bin'))!.value), Array.from(v));
    await s.set('/empty', new Uint8Array(0));
    assert.equal((await s.get('/empty'))!.value.length, 0);
  });

  t('list pages with after and limit, in name order', async (s) => {
    for (const n of ['c', 'a', 'e', 'b', 'd']) await s.set(`/dir/${n}`, n);
    const p1 = await s.list('/dir', { limit: 2 });
    assert.deepEqual([...p1], ['a', 'b']);
    assert.equal(p1.more, true);
    const p2 = await s.list('/dir', { after: p1.at(-1)!, limit: 2 });
    assert.deepEqual([...p2], ['c', 'd']);
    const p3 = await s.list('/dir', { after: 'd', limit: 2 });
    assert.deepEqual([...p3], ['e']);
    assert.equal(p3.more, false);
    await assert.rejects(s.list('/missing'), code('NOT_FOUND'));
  });

  t('create, delete and their errors', async (s) => {
    assert.equal(await s.create('/c', 'x'), '/c');
    await assert.rejects(s.create('/c', 'y'), code('EXISTS'));
    await s.set('/c/child', '1');
    await assert.rejects(s.delete('/c'), code('NOT_EMPTY'));
    assert.equal(await s.delete('/c', { recursive: true }), true);
    assert.equal(await s.delete('/c'), false);
    assert.equal(await s.exists('/c/child'), false);
  });

  t('conditional writes: ifVersion, ifModRev, ifAbsent', async (s) => {
    const r = await s.set('/k', 'v1');
    await s.set('/k', 'v2', { ifVersion: 1 });
    await assert.rejects(s.set('/k', 'v3', { ifVersion: 1 }), code('CONFLICT'));
    await assert.rejects(s.set('/k', 'v3', { ifModRev: r }), code('CONFLICT'));
    await assert.rejects(s.set('/k', 'v3', { ifAbsent: true }), code('CONFLICT'));
    await s.set('/new', 'x', { ifAbsent: true });
    await assert.rejects(s.delete('/k', { ifVersion: 7 }), code('CONFLICT'));
    assert.equal((await s.get('/k'))!.text(), 'v2');
  });

  t('invalid paths and arguments fail with the same codes', async (s) => {
    await assert.rejects(s.get('relative'), code('INVALID_PATH', /absolute/));
    await assert.rejects(s.set('/a//b', 'x'), code('INVALID_PATH'));
    await assert.rejects(s.set('/a/../b', 'x'), code('INVALID_PATH'));
    await assert.rejects(s.set('/' + 'x'.repeat(256), 'x'), code('INVALID_PATH'));
    await assert.rejects(s.list('/', { limit: 0 }), code('INVALID_ARGUMENT'));
    await assert.rejects(s.delete('/'), code('INVALID_ARGUMENT'));
  });

  t('a value over 1 MiB is TOO_LARGE and changes nothing', async (s) => {
    await assert.rejects(s.set('/big', new Uint8Array(1024 * 1024 + 1)), code('TOO_LARGE'));
    assert.equal(await s.exists('/big'), false);
    await s.set('/big', new Uint8Array(1024 * 1024));
    assert.equal((await s.get('/big'))!.value.length, 1024 * 1024);
  });

  t('multi is atomic: all ops or none', async (s) => {
    const r = await s.multi([
      { op: 'set', path: '/m/a', value: '1' },
      { op: 'create', path: '/m/b', value: '2' },
      { op: 'check', path: '/m/a', exists: true },
      { op: 'delete', path: '/m/none' },
    ]);
    assert.deepEqual(r.results, [undefined, '/m/b', undefined, false]);
    assert.ok(r.revision >= 1);
    await assert.rejects(s.multi([
      { op: 'set', path: '/m/c', value: '3' },
      { op: 'create', path: '/m/b', value: 'again' },
    ]), code('EXISTS'));
    assert.equal(await s.exists('/m/c'), false);
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
    await assert.rejects(tx.get('/y'), code('CLOSED'));
  });

  t('a transaction whose reads changed gets CONFLICT; transaction() retries it', async (s) => {
    await s.set('/n', '0');
    const tx = s.begin();
    const v = Number((await tx.get('/n'))!.text());
    await s.set('/n', '5');
    await tx.set('/n', String(v + 1));
    await assert.rejects(tx.commit(), code('CONFLICT'));
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
    await assert.rejects(tx.set('/gone', '2'), code('ABORTED'));
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
    await assert.rejects(sess.get('/'), code('SESSION_EXPIRED'));
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

  t('locks: exclusive excludes, release hands over, tokens increase', async (s) => {
    const a = s.session({ name: 'a' });
    const b = s.session({ name: 'b' });
    const la = await a.lock('/res');
    assert.equal(la.held, true);
    await assert.rejects(b.lock('/res', { wait: false }), code('LOCKED'));
    const pb = b.lock('/res');
    await la.release();
    const lb = await pb;
    assert.ok(lb.token > la.token);
    assert.equal(lb.ownerDied, false);
    await lb.release();
    await a.close();
    await b.close();
  }, { locks: true });

  t('locks: a session closing while holding hands the lock on with ownerDied', async (s) => {
    const a = s.session();
    const b = s.session();
    await a.lock('/od');
    const pb = b.lock('/od');
    await a.close();
    const lb = await pb;
    assert.equal(lb.ownerDied, true);
    await lb.release();
    await b.close();
  }, { locks: true });
}
