/**
 * The served-store seam (src/server/served.ts): the generic ServedStore over
 * a Store's public API (what `serve --backend etcd` uses), its watches'
 * bounded queues, its session list, its refusal of scoped tokens (it cannot
 * guard a commit's writes); and the client given several front-ends of one
 * store (`tcp://a,b`), moving to the next when its server goes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { connect } from '../../src/client/store.js';
import { parseAddresses } from '../../src/client/link.js';
import { AuthTable } from '../../src/server/auth.js';
import { IterableWatch, type ServedStore, servedStore } from '../../src/server/served.js';
import { serve } from '../../src/server/server.js';
import { LatchkeyError } from '../../src/core/errors.js';
import type { WatchEvent } from '../../src/api.js';

function generic(s: EmbeddedStore): ServedStore {
  return servedStore(s, { ownedSession: (o) => s.ownedSession(o), ephemeralCounts: () => new Map([[s.id, 7]]) });
}

test('served: an IterableWatch queues whole revisions and ends with a resumable QUOTA past its bound; its filter drops paths', async () => {
  const s = (await open()) as EmbeddedStore;
  try {
    const from = s.revision + 1;
    const w = new IterableWatch(s.watch('/', { recursive: true, fromRevision: from }), '/', from, { maxQueue: 3, filter: (p) => !p.startsWith('/hidden') });
    assert.equal(w.startRevision, from);
    await s.multi([{ op: 'set', path: '/a', value: '1' }, { op: 'set', path: '/hidden/x', value: 'h' }, { op: 'set', path: '/b', value: '2' }]);
    const r2 = (await s.multi([{ op: 'set', path: '/c', value: '3' }, { op: 'set', path: '/d', value: '4' }])).revision;
    const first = await w.take();
    assert.deepEqual(first.map((e) => e.path), ['/a', '/b'], 'the first revision, filtered');
    // The second revision (2 events) would have made 4 > 3 only if the first were still queued: it was taken, so it comes.
    await new Promise((r) => setTimeout(r, 50));
    const second = await w.take();
    assert.deepEqual(second.map((e) => e.path), ['/c', '/d']);
    // Now fill the queue without taking: revision 1 (2 events) fits, revision 2 (2 more) does not.
    await s.multi([{ op: 'set', path: '/e', value: '5' }, { op: 'set', path: '/f', value: '6' }]);
    await new Promise((r) => setTimeout(r, 50));
    const r4 = (await s.multi([{ op: 'set', path: '/g', value: '7' }, { op: 'set', path: '/h', value: '8' }])).revision;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(w.queued, 2);
    assert.ok(w.queuedBytes > 0);
    assert.deepEqual((await w.take()).map((e) => e.path), ['/e', '/f'], 'what was queued before the overflow is delivered');
    await assert.rejects(w.take(), (e: unknown) => LatchkeyError.is(e, 'QUOTA') && e.info?.resumeFrom === r4);
    assert.ok(r2 < r4);
    await w.return();
  } finally {
    await s.close();
  }
});

test('served: listSessions over the generic store lists the served sessions with their origin, locks and ephemerals', async () => {
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(generic(backing), { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${server.tcpAddress!.port}`, { name: 'lister' });
  try {
    await c.lock('/jobs/1');
    const rows = await c.fetchSessions();
    const me = rows.find((r) => r.name === 'lister');
    assert.ok(me !== undefined, JSON.stringify(rows));
    assert.equal(me.transport, 'tcp');
    assert.match(me.address ?? '', /^127\.0\.0\.1:\d+$/);
    assert.equal(me.locksHeld, 1);
    assert.equal(rows[0]!.id, backing.id, 'the store\'s own session first');
    assert.equal(rows[0]!.ephemerals, 7, 'ephemerals come from the backend\'s counts');
  } finally {
    await c.close();
    await server.close();
    await backing.close();
  }
  // Once the connection is gone, its session leaves the list.
  const again = generic((await open()) as EmbeddedStore);
  assert.equal(again.sessionList().length, 1);
});

test('served: a store that cannot guard its commits (no guardWrites) refuses a token that may write below / only with AUTH, and serves one granted / and a read-only one', async () => {
  const backing = (await open()) as EmbeddedStore;
  const auth = AuthTable.fromJson(JSON.stringify({ tokens: [
    { token: 'scoped-token-0123456789', name: 'jobs', grants: [{ prefix: '/jobs', access: 'write' }] },
    { token: 'admin-token-0123456789', name: 'admin', grants: [{ prefix: '/', access: 'admin' }] },
    { token: 'reader-token-0123456789', name: 'reader', grants: [{ prefix: '/jobs', access: 'read' }] },
  ] }));
  const server = await serve(generic(backing), { listen: { host: '127.0.0.1', port: 0 }, auth });
  const url = `tcp://127.0.0.1:${server.tcpAddress!.port}`;
  try {
    await assert.rejects(connect(url, { token: 'scoped-token-0123456789', reconnect: false }), (e: unknown) => LatchkeyError.is(e, 'AUTH') && /may write only below \//.test(e.message));
    const admin = await connect(url, { token: 'admin-token-0123456789', reconnect: false });
    await admin.set('/x', 'y');
    assert.equal((await admin.get('/x'))!.text(), 'y');
    await admin.close();
    // A token that may only read writes nothing: served, and its writes refused before they run.
    const reader = await connect(url, { token: 'reader-token-0123456789', reconnect: false });
    await assert.rejects(reader.set('/jobs/x', 'y'), (e: unknown) => LatchkeyError.is(e, 'PERMISSION'));
    assert.equal(await reader.get('/jobs/none'), undefined);
    await reader.close();
  } finally {
    await server.close();
    await backing.close();
  }
});

test('client: tcp://a,b names several front-ends; bad lists are INVALID_ARGUMENT', () => {
  assert.deepEqual(parseAddresses('tcp://127.0.0.1:1,localhost:2'), [
    { kind: 'tcp', host: '127.0.0.1', port: 1, tls: false }, { kind: 'tcp', host: 'localhost', port: 2, tls: false },
  ]);
  assert.deepEqual(parseAddresses('tls://a:1,b:2/').map((a) => a.kind === 'tcp' && a.tls), [true, true]);
  assert.deepEqual(parseAddresses('unix:///tmp/x.sock'), [{ kind: 'unix', path: '/tmp/x.sock' }]);
  for (const bad of ['tcp://a:1,', 'tcp://a:1,b', 'tcp://,a:1']) {
    assert.throws(() => parseAddresses(bad), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'), bad);
  }
});

test('client: with two front-ends of one store, the client moves to the second when its first shuts down, and its watch goes on with no gap', async () => {
  const backing = (await open()) as EmbeddedStore;
  const a = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const b = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  try {
    assert.equal(a.connectionCount, 1);
    const from = (await c.set('/w/0', '0')) + 1;
    const seen: WatchEvent[] = [];
    const watching = (async () => {
      for await (const e of c.watch('/w', { recursive: true, fromRevision: from })) {
        seen.push(e);
        if (e.path === '/w/3') return;
      }
    })();
    await backing.set('/w/1', '1');
    while (seen.length < 1) await new Promise((r) => setTimeout(r, 10));
    await a.close();
    await backing.set('/w/2', '2'); // while the client is between front-ends
    await c.ready();
    await c.set('/w/3', '3');
    await watching;
    assert.equal(b.connectionCount, 1, 'the client is on the second front-end');
    assert.deepEqual(seen.map((e) => e.path), ['/w/1', '/w/2', '/w/3']);
  } finally {
    await c.close();
    await b.close();
    await backing.close();
  }
});

test('client: the first connection tries each front-end in turn', async () => {
  const backing = (await open()) as EmbeddedStore;
  const b = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const down = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const downPort = down.tcpAddress!.port;
  await down.close(); // nothing listens there now
  try {
    const c = await connect(`tcp://127.0.0.1:${downPort},127.0.0.1:${b.tcpAddress!.port}`);
    await c.set('/k', 'v');
    assert.equal((await backing.get('/k'))!.text(), 'v');
    await c.close();
    await assert.rejects(connect(`tcp://127.0.0.1:${downPort},127.0.0.1:${downPort}`, { reconnect: false }), (e: unknown) => LatchkeyError.is(e, 'CONNECTION_LOST'));
  } finally {
    await b.close();
    await backing.close();
  }
});
