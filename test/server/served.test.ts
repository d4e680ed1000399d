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
import { randomBytes } from 'node:crypto';
import { Link, parseAddresses } from '../../src/client/link.js';
import type { ClientConnection } from '../../src/client/connection.js';
import { AuthTable } from '../../src/server/auth.js';
import { IterableWatch, type ServedSession, type ServedStore, servedStore } from '../../src/server/served.js';
import { serve } from '../../src/server/server.js';
import { LatchkeyError } from '../../src/core/errors.js';
import type { Lock, LockOptions, WatchEvent } from '../../src/api.js';

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

/**
 * A ServedBackend over the embedded store that resumes sessions, to test the
 * resume protocol through the adapter with no etcd: it hands the live
 * session object (still lingering on the first server: its TCP lease is
 * long) and the Lock objects it granted, by token, to the second server.
 * The etcd backend does the same by adopting the lease (test/integration/etcd-serve.ts).
 */
function resumableGeneric(s: EmbeddedStore, resumeMs = 5000): { store: ServedStore; ended: Set<string>; unreachable: Map<string, number> } {
  type Wait = { path: string; mode: string; result: Promise<Lock>; ctl: AbortController; failed: boolean };
  const live = new Map<string, { session: ServedSession; secret?: string; locks: Map<number, Lock>; waits: Wait[] }>();
  const ended = new Set<string>();
  /** Sessions whose resume fails as with the store unreachable (CONNECTION_LOST), with the count of such failures. */
  const unreachable = new Map<string, number>();
  const store = servedStore(s, {
    ownedSession: (o) => {
      const sess = s.ownedSession(o) as unknown as ServedSession & { lockNow?: unknown; resumeMs?: number };
      const entry = { session: sess as ServedSession, locks: new Map<number, Lock>(), waits: [] as Wait[] };
      const lock = sess.lock.bind(sess);
      sess.lockNow = undefined; // every grant through lock(), recorded
      sess.lock = (async (p: string, opt: LockOptions = {}) => {
        // A wait outlives its request's connection (as an etcd queue entry outlives its dead front-end): a
        // loss of the connection (CONNECTION_LOST) leaves it waiting for a resume; a cancel withdraws it.
        const ctl = new AbortController();
        const w: Wait = { path: p, mode: opt.mode ?? 'exclusive', ctl, failed: false, result: lock(p, { ...opt, signal: ctl.signal }) };
        w.result.catch(() => { w.failed = true; });
        w.result.then((l) => entry.locks.set(l.token, l), () => {});
        entry.waits.push(w);
        return new Promise<Lock>((resolve, reject) => {
          w.result.then(resolve, reject);
          opt.signal?.addEventListener('abort', () => {
            const why = opt.signal!.reason as unknown;
            if (LatchkeyError.is(why, 'CONNECTION_LOST')) reject(why);
            else ctl.abort(why);
          }, { once: true });
        });
      }) as typeof sess.lock;
      sess.resumeMs = resumeMs;
      live.set(sess.id, entry);
      return sess;
    },
    resumable: async (sess) => {
      const secret = randomBytes(16).toString('hex');
      live.get(sess.id)!.secret = secret;
      (sess as { secret?: string }).secret = secret;
      return secret;
    },
    resumeSession: async (id, secret, claims, waitClaims = []) => {
      const e = live.get(id);
      const n = unreachable.get(id);
      if (n !== undefined) {
        unreachable.set(id, n + 1);
        throw new LatchkeyError('CONNECTION_LOST', 'the store is unreachable');
      }
      if (e === undefined || e.session.closed || ended.has(id)) throw new LatchkeyError('SESSION_EXPIRED', `session ${id} has ended`);
      if (e.secret !== secret) throw new LatchkeyError('AUTH', `not the secret of session ${id}`);
      const locks = new Map<number, Lock>();
      for (const c of claims) {
        const l = e.locks.get(c.token);
        if (l !== undefined && l.held) locks.set(c.handle, l);
      }
      const waits = new Map<number, { result: Promise<Lock>; abort(reason?: unknown): void }>();
      // As rebuildLocks on etcd: each claimed wait still in the queue is carried over (again at each resume), every other is withdrawn.
      const claimed = new Set<Wait>();
      for (const c of waitClaims) {
        const w = e.waits.find((x) => !x.failed && !claimed.has(x) && x.path === c.path && x.mode === c.mode);
        if (w === undefined) continue;
        claimed.add(w);
        waits.set(c.handle, { result: w.result, abort: (r) => w.ctl.abort(r) });
      }
      for (const w of e.waits) if (!claimed.has(w)) w.ctl.abort(new LatchkeyError('ABORTED', 'withdrawn: not claimed by the resume'));
      e.waits = [...claimed];
      return { session: e.session, locks, waits };
    },
  });
  return { store, ended, unreachable };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Cuts the client's link as a dead front-end would (no goodbye): the server keeps the session for its TCP lease. */
const cut = (c: unknown): void => {
  (c as { conn: ClientConnection }).conn.link!.rawSocket.destroy();
};

test('resume: a client whose link is cut resumes its session on the other front-end: same id, its lock still held (not aborted), a waiter does not get it until the release, then with ownerDied false', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  // A long TCP lease on the first server: the cut session lingers there, as on a dead etcd front-end whose lease etcd keeps.
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  const other = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  try {
    const id = c.id;
    const lock = await c.lock('/r');
    const eph = await c.create('/eph', 'e', { ephemeral: true });
    cut(c);
    await sleep(20);
    await c.ready();
    assert.equal(b.connectionCount, 2, 'the client is on the second front-end');
    assert.equal(c.id, id, 'the same session');
    assert.equal(lock.signal.aborted, false, 'the lock was not lost');
    assert.equal(lock.held, true);
    assert.ok((await c.get(eph)) !== undefined, 'its ephemeral is there');
    await assert.rejects(other.lock('/r', { wait: false }), (e: unknown) => LatchkeyError.is(e, 'LOCKED'));
    const waiting = other.lock('/r');
    await sleep(50);
    await lock.release(); // goes to the second front-end, which now holds the lock
    const got = await waiting;
    assert.equal(got.ownerDied, false, 'a release, not a death');
    assert.ok(got.token > lock.token);
    await got.release();
  } finally {
    await c.close();
    await other.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});

test('resume: a session that ended meanwhile is refused SESSION_EXPIRED in the welcome; the client\'s lock aborts LOCK_LOST and it goes on with a new session', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store, ended } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  try {
    const id = c.id;
    const lock = await c.lock('/r');
    ended.add(id);
    cut(c);
    await sleep(20);
    await c.ready();
    assert.notEqual(c.id, id, 'a new session');
    assert.equal(lock.signal.aborted, true);
    assert.ok(LatchkeyError.is(lock.signal.reason, 'LOCK_LOST'), String(lock.signal.reason));
    assert.match((lock.signal.reason as Error).message, /could not be resumed/);
    await c.set('/after', 'x');
  } finally {
    await c.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});

test('resume: a window that passes before the resume gives the lock up with SESSION_EXPIRED (lease safety); a graceful close (bye CLOSED) resumes nothing', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing, 400);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const bPort = b.tcpAddress!.port;
  await b.close(); // nothing answers at the second address for now
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${bPort}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  try {
    const lock = await c.lock('/r');
    await a.close(); // graceful: bye CLOSED ends the session cleanly: no resume
    await sleep(20);
    assert.equal(lock.signal.aborted, true, 'a graceful close ends the session: nothing to resume');
    // Now a cut with nowhere to go: the window (400 ms less slack) passes.
  } finally {
    await c.close();
    await backing.close();
  }
  const backing2 = (await open()) as EmbeddedStore;
  const r2 = resumableGeneric(backing2, 400);
  const a2 = await serve(r2.store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const c2 = await connect(`tcp://127.0.0.1:${a2.tcpAddress!.port},127.0.0.1:${bPort}`, { minBackoffMs: 2000, maxBackoffMs: 2000 });
  try {
    const lock = await c2.lock('/r');
    assert.equal(lock.signal.aborted, false);
    cut(c2);
    await new Promise<void>((resolve) => lock.signal.addEventListener('abort', () => resolve(), { once: true }));
    assert.ok(LatchkeyError.is(lock.signal.reason, 'SESSION_EXPIRED'), String(lock.signal.reason));
    assert.match((lock.signal.reason as Error).message, /not resumed within/);
  } finally {
    await c2.close();
    await a2.close();
    await backing2.close();
  }
});

test('resume: the hello\'s resume answered in the welcome: AUTH for a wrong secret, SESSION_EXPIRED for an unknown session or a server that resumes nothing; a malformed claim is bye PROTOCOL', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const plain = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const handlers = { push: () => {}, lost: () => {} };
  const at = (port: number) => ({ kind: 'tcp' as const, host: '127.0.0.1', port, tls: false });
  try {
    const first = await Link.open(at(a.tcpAddress!.port), {}, handlers);
    assert.ok(first.welcome.secret !== undefined && first.welcome.secret.length > 0, 'a resumable session has a secret');
    assert.equal(first.welcome.resumeMs, 5000);
    const id = first.welcome.session;
    const wrong = await Link.open(at(a.tcpAddress!.port), { resume: { session: id, secret: 'not-it', locks: [] } }, handlers);
    assert.equal(wrong.welcome.resumeError?.code, 'AUTH');
    assert.notEqual(wrong.welcome.session, id, 'a new session instead');
    const right = await Link.open(at(a.tcpAddress!.port), { resume: { session: id, secret: first.welcome.secret!, locks: [{ l: 9, token: 123456 }] } }, handlers);
    assert.equal(right.welcome.resumed, true);
    assert.equal(right.welcome.session, id);
    assert.deepEqual(right.welcome.locks, [], 'a lock it does not hold is not given back');
    const unknown = await Link.open(at(a.tcpAddress!.port), { resume: { session: 'nope', secret: 'x', locks: [] } }, handlers);
    assert.equal(unknown.welcome.resumeError?.code, 'SESSION_EXPIRED');
    const embedded = await Link.open(at(plain.tcpAddress!.port), { resume: { session: id, secret: first.welcome.secret!, locks: [] } }, handlers);
    assert.equal(embedded.welcome.secret, undefined, 'the embedded server gives no secret');
    assert.equal(embedded.welcome.resumeError?.code, 'SESSION_EXPIRED');
    assert.match(embedded.welcome.resumeError?.message ?? '', /does not resume/);
    await assert.rejects(Link.open(at(a.tcpAddress!.port), { resume: { session: id, secret: 'x', locks: [{ l: -1, token: 1 }] } }, handlers), (e: unknown) => LatchkeyError.is(e, 'PROTOCOL'));
    for (const l of [first, wrong, right, unknown, embedded]) l.close();
  } finally {
    await a.close();
    await plain.close();
    await backing.close();
  }
});

test('resume: every session of the connection resumes (extra sessions too, each with its secret): a held lock stays held, a wait in flight goes on in its FIFO place and is granted on the release; locks() lists kept locks while the link is down', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  const other = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  const third = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  try {
    const s1 = c.session({ name: 'holder' });
    const s2 = c.session({ name: 'waiter' });
    const held = await s1.lock('/r');
    const eph = await s1.create('/eph1', 'e', { ephemeral: true });
    const id1 = s1.id;
    const id2 = s2.id;
    const theirs = await other.lock('/w');
    const waiting = s2.lock('/w');
    await sleep(50);
    const later = third.lock('/w'); // queued after s2's wait: FIFO says s2 first
    await sleep(50);
    cut(c);
    assert.deepEqual(s1.locks().map((l) => l.path), ['/r'], 'a kept lock is listed while the link is down');
    assert.equal(held.held, true);
    await sleep(20);
    await c.ready();
    await s1.get('/r'); // the session's first request after the resume
    assert.equal(s1.id, id1, 'the extra session resumed: same id');
    assert.equal(s2.id, id2);
    assert.equal(held.signal.aborted, false, 'its lock was not lost');
    assert.ok((await s1.get(eph)) !== undefined, 'its ephemeral is there');
    await assert.rejects(other.lock('/r', { wait: false }), (e: unknown) => LatchkeyError.is(e, 'LOCKED'));
    await theirs.release();
    const got = await waiting;
    assert.equal(got.ownerDied, false);
    assert.ok(got.token > theirs.token);
    assert.deepEqual(s2.locks().map((l) => l.path), ['/w']);
    await got.release(); // on the second front-end: then the third client's wait, behind it, is granted
    const after = await later;
    assert.ok(after.token > got.token, 'FIFO: the resumed wait was granted before the one queued after it');
    await after.release();
    await held.release();
    await s1.close();
    await s2.close();
  } finally {
    await c.close();
    await other.close();
    await third.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});

test('resume: a wait aborted while its link is down ends ABORTED at once, not at the resume, which withdraws it (nothing taken)', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 1500, maxBackoffMs: 1500 });
  const other = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  try {
    const theirs = await other.lock('/w');
    const ctl = new AbortController();
    const aborted = c.lock('/w', { signal: ctl.signal });
    let linkWhenSettled: unknown = 'unsettled';
    const outcome = aborted.then(() => 'granted', (e: unknown) => {
      linkWhenSettled = (c as unknown as { conn: ClientConnection }).conn.link;
      return e;
    });
    await sleep(50);
    cut(c);
    await sleep(20);
    ctl.abort();
    const e = await outcome;
    assert.ok(LatchkeyError.is(e, 'ABORTED'), String(e));
    assert.equal(linkWhenSettled, undefined, 'it ended while the link was down (not when a server answered)');
    await c.ready();
    await theirs.release();
    const next = await other.lock('/w', { wait: false });
    assert.equal(next.ownerDied, false, 'the withdrawn wait took nothing');
    await next.release();
  } finally {
    await c.close();
    await other.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});

test('resume: an extra session that ended meanwhile is refused: it ends SESSION_EXPIRED with its wait, while the connection\'s own session resumes', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store, ended } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  const other = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  try {
    const id = c.id;
    const s1 = c.session();
    const theirs = await other.lock('/w');
    const waiting = s1.lock('/w').then(() => 'granted', (e: unknown) => e);
    await sleep(50);
    ended.add(s1.id);
    cut(c);
    await sleep(20);
    await c.ready();
    assert.equal(c.id, id, 'the connection\'s session resumed');
    const e = await waiting;
    assert.ok(LatchkeyError.is(e, 'SESSION_EXPIRED'), String(e));
    await assert.rejects(s1.get('/x'), (err: unknown) => LatchkeyError.is(err, 'SESSION_EXPIRED'));
    await theirs.release();
  } finally {
    await c.close();
    await other.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});

test('resume: a carried wait survives the next front-end\'s loss too (taken by awaitLock or not yet): after two cuts it keeps its FIFO place and is granted', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  const fe = await Promise.all([0, 1, 2].map(() => serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 })));
  const c = await connect(fe.map((f) => `127.0.0.1:${f.tcpAddress!.port}`).join(',').replace(/^/, 'tcp://'), { minBackoffMs: 10, maxBackoffMs: 50 });
  const other = await connect(`tcp://127.0.0.1:${fe[2]!.tcpAddress!.port}`);
  const third = await connect(`tcp://127.0.0.1:${fe[2]!.tcpAddress!.port}`);
  try {
    const id = c.id;
    const theirs = await other.lock('/w');
    const waiting = c.lock('/w');
    await sleep(50);
    const later = third.lock('/w'); // queued after c's wait: FIFO says c first
    await sleep(50);
    cut(c); // the first front-end goes: the wait is carried to the second (awaitLock)
    await sleep(20);
    await c.ready();
    await c.get('/x');
    await sleep(50);
    cut(c); // and the second goes too: the wait is carried again
    await sleep(20);
    await c.ready();
    await c.get('/x');
    assert.equal(c.id, id, 'the same session');
    await theirs.release();
    const got = await waiting;
    assert.equal(got.ownerDied, false);
    assert.ok(got.token > theirs.token);
    await got.release();
    const after = await later;
    assert.ok(after.token > got.token, 'FIFO: the twice-carried wait was granted before the one queued after it');
    await after.release();
  } finally {
    await c.close();
    await other.close();
    await third.close();
    for (const f of fe) await f.close();
    await backing.close();
  }
});

test('resume: a wait carried to a connection that closes before its awaitLock stays for the next resume', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const other = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  const handlers = { push: () => {}, lost: () => {} };
  const at = (f: typeof a) => ({ kind: 'tcp' as const, host: '127.0.0.1', port: f.tcpAddress!.port, tls: false });
  try {
    const theirs = await other.lock('/w');
    const first = await Link.open(at(a), {}, handlers);
    const pending = first.request('lock', { lock: 1, path: '/w' }).catch((e: unknown) => e);
    await sleep(50);
    first.rawSocket.destroy();
    assert.ok(LatchkeyError.is(await pending, 'CONNECTION_LOST'));
    const resume = { session: first.welcome.session, secret: first.welcome.secret!, locks: [], waits: [{ l: 1, path: '/w', mode: 'exclusive' as const }] };
    const second = await Link.open(at(b), { resume }, handlers);
    assert.deepEqual(second.welcome.waits, [1]);
    second.rawSocket.destroy(); // gone before its client took the wait (no awaitLock)
    await sleep(50);
    const again = await Link.open(at(a), { resume }, handlers);
    assert.deepEqual(again.welcome.waits, [1], 'still carried: the loss did not withdraw it');
    const granted = again.request('awaitLock', { lock: 1 });
    await theirs.release();
    const g = await granted;
    assert.ok(g.token > theirs.token);
    await again.request('release', { lock: 1 });
    again.close();
  } finally {
    await other.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});

test('resume: a carried wait\'s timeout runs while its link is down: TIMEOUT with no server answering, and the next resume withdraws it', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const bPort = b.tcpAddress!.port;
  await b.close(); // nothing answers at the second address
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${bPort}`, { minBackoffMs: 1500, maxBackoffMs: 1500 });
  const other = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port}`);
  try {
    const theirs = await other.lock('/w');
    let linkWhenSettled: unknown = 'unsettled';
    const outcome = c.lock('/w', { timeoutMs: 300 }).then(() => 'granted', (e: unknown) => {
      linkWhenSettled = (c as unknown as { conn: ClientConnection }).conn.link;
      return e;
    });
    await sleep(50);
    cut(c); // reconnects only after its backoff, first to the dead address
    const e = await outcome;
    assert.ok(LatchkeyError.is(e, 'TIMEOUT'), String(e));
    assert.equal(linkWhenSettled, undefined, 'it timed out while the link was down');
    await c.ready();
    await c.get('/x'); // resumed: the wait was not claimed, so withdrawn
    await theirs.release();
    const next = await other.lock('/w', { wait: false });
    assert.equal(next.ownerDied, false, 'the withdrawn wait took nothing');
    await next.release();
  } finally {
    await c.close();
    await other.close();
    await a.close();
    await backing.close();
  }
});

test('resume: an extra session whose resume fails because the store is unreachable fails the hello; the client keeps its claim and resumes it (same id, its lock held) at the next try', async () => {
  const backing = (await open()) as EmbeddedStore;
  const { store, unreachable } = resumableGeneric(backing);
  const a = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const b = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ttlMs: 60_000 });
  const c = await connect(`tcp://127.0.0.1:${a.tcpAddress!.port},127.0.0.1:${b.tcpAddress!.port}`, { minBackoffMs: 10, maxBackoffMs: 50 });
  const other = await connect(`tcp://127.0.0.1:${b.tcpAddress!.port}`);
  try {
    const id = c.id;
    const s1 = c.session({ name: 'extra' });
    const held = await s1.lock('/r');
    const id1 = s1.id;
    unreachable.set(id1, 0);
    cut(c);
    while (unreachable.get(id1)! < 1) await sleep(10);
    unreachable.delete(id1); // the store answers again
    await c.ready();
    await s1.get('/r');
    assert.equal(c.id, id, 'the connection\'s session resumed');
    assert.equal(s1.id, id1, 'the extra session resumed: not ended by the failure');
    assert.equal(held.signal.aborted, false, 'its lock was kept');
    await assert.rejects(other.lock('/r', { wait: false }), (err: unknown) => LatchkeyError.is(err, 'LOCKED'));
    await held.release();
    await s1.close();
  } finally {
    await c.close();
    await other.close();
    await a.close();
    await b.close();
    await backing.close();
  }
});
