import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Store, WatchEvent } from '../../src/api.js';
import { open } from '../../src/index.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import type { XenstoreLimits } from '../../src/xenstore/limits.js';
import { type XenstoreServer, startXenstoreServer } from '../../src/xenstore/server.js';
import { XsType, encodePacket, fromUtf8, nulTerminated, splitStrings, utf8 } from '../../src/xenstore/wire.js';
import { XsClient, XsReplyError } from './client.js';

interface Fixture {
  store: Store;
  server: XenstoreServer;
  socketPath: string;
  client(): Promise<XsClient>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function fixture(limits: Partial<XenstoreLimits> = {}): Promise<Fixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xs-'));
  const socketPath = path.join(dir, 'xs.sock');
  const store = await open();
  const logs: string[] = [];
  const server = await startXenstoreServer(store, { socketPath, limits, log: (m) => logs.push(m) });
  const clients: XsClient[] = [];
  return {
    store, server, socketPath,
    async client() {
      const c = await XsClient.connect(socketPath);
      clients.push(c);
      return c;
    },
    async [Symbol.asyncDispose]() {
      for (const c of clients) if (!c.closed) await c.close();
      await server.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
      assert.ok(!logs.some((l) => l.includes('bug')), logs.join('\n'));
    },
  };
}

async function rejectsWith(p: Promise<unknown>, errno: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof XsReplyError && e.errno === errno);
}

test('xenstore: WRITE creates parents, READ returns the bytes, relative paths live under /local/domain/0', async () => {
  await using f = await fixture();
  const c = await f.client();
  await c.write('/a/b/c', 'hello');
  assert.equal(await c.read('/a/b/c'), 'hello');
  assert.equal(await c.read('/a/b'), '');
  await c.write('rel/x', Uint8Array.of(0, 1, 2, 0));
  assert.deepEqual([...(await c.request(XsType.READ, nulTerminated(['/local/domain/0/rel/x'])))], [0, 1, 2, 0]);
  assert.deepEqual(await c.directory('/local/domain/0'), ['rel']);
  assert.equal((await f.store.get('/a/b/c'))?.text(), 'hello');
  await rejectsWith(c.read('/nope'), 'ENOENT');
});

test('xenstore: invalid paths and oversized values are EINVAL and E2BIG; the connection carries on', async () => {
  await using f = await fixture();
  const c = await f.client();
  for (const p of ['/a b', '/a//b', '/a/', '', '/x.y', '/' + 'a'.repeat(3072)]) await rejectsWith(c.write(p, 'v'), 'EINVAL');
  await rejectsWith(c.read('/bad!'), 'EINVAL');
  await c.write('/v', 'x'.repeat(2048));
  await rejectsWith(c.write('/v', 'x'.repeat(2049)), 'E2BIG');
  assert.equal((await c.read('/v')).length, 2048);
});

test('xenstore: MKDIR leaves existing values; RM removes subtrees, is OK for a missing node, ENOENT without its parent', async () => {
  await using f = await fixture();
  const c = await f.client();
  await c.write('/m', 'keep');
  await c.mkdir('/m');
  assert.equal(await c.read('/m'), 'keep');
  await c.mkdir('/m/n/o');
  assert.deepEqual(await c.directory('/m/n'), ['o']);
  await c.rm('/m/n');
  await rejectsWith(c.read('/m/n/o'), 'ENOENT');
  await c.rm('/m/n'); // missing, parent exists
  await rejectsWith(c.rm('/m/n/o'), 'ENOENT'); // missing, and so is its parent
  await rejectsWith(c.rm('/'), 'EINVAL');
});

test('xenstore: DIRECTORY beyond one payload is E2BIG; DIRECTORY_PART pages through it by byte offset', async () => {
  await using f = await fixture();
  const c = await f.client();
  const names = Array.from({ length: 700 }, (_, i) => `child-${String(i).padStart(5, '0')}`);
  await f.store.multi(names.map((n) => ({ op: 'set' as const, path: `/big/${n}`, value: '' })));
  await rejectsWith(c.directory('/big'), 'E2BIG');
  const collected: string[] = [];
  let offset = 0;
  let gen: string | undefined;
  let pages = 0;
  for (;;) {
    const r = await c.request(XsType.DIRECTORY_PART, nulTerminated(['/big', String(offset)]));
    assert.ok(r.length <= 4096);
    const nul = r.indexOf(0);
    const g = fromUtf8(r.subarray(0, nul));
    gen ??= g;
    assert.equal(g, gen);
    const body = r.subarray(nul + 1);
    pages++;
    const done = body.length >= 2 && body[body.length - 1] === 0 && body[body.length - 2] === 0;
    collected.push(...splitStrings(done ? body.subarray(0, body.length - 1) : body));
    offset += done ? body.length - 1 : body.length;
    if (done) break;
  }
  assert.ok(pages >= 3);
  assert.deepEqual(collected, names);
  // The generation moves when the children change.
  await c.write('/big/zzz', '');
  const r = await c.request(XsType.DIRECTORY_PART, nulTerminated(['/big', '0']));
  assert.notEqual(fromUtf8(r.subarray(0, r.indexOf(0))), gen);
});

test('xenstore: GET_PERMS defaults to n0; SET_PERMS validates, stores, and new children inherit', async () => {
  await using f = await fixture();
  const c = await f.client();
  await c.write('/p', '');
  assert.deepEqual(await c.getPerms('/p'), ['n0']);
  await c.setPerms('/p', ['n5', 'r7', 'b9']);
  assert.deepEqual(await c.getPerms('/p'), ['n5', 'r7', 'b9']);
  assert.deepEqual((await f.store.get('/p'))?.stat.perms, ['n5', 'r7', 'b9']);
  await c.write('/p/q/r', 'x');
  assert.deepEqual(await c.getPerms('/p/q'), ['n5', 'r7', 'b9']);
  assert.deepEqual(await c.getPerms('/p/q/r'), ['n5', 'r7', 'b9']);
  await rejectsWith(c.setPerms('/p', ['x1']), 'EINVAL');
  await rejectsWith(c.setPerms('/p', []), 'EINVAL');
  await rejectsWith(c.setPerms('/missing', ['n0']), 'ENOENT');
  await rejectsWith(c.getPerms('/missing'), 'ENOENT');
});

test('xenstore: a watch fires once when set, then for changes at or below it, perms included', async () => {
  await using f = await fixture();
  const w = await f.client();
  const c = await f.client();
  await c.write('/w', '');
  await w.watch('/w', 'tok');
  assert.deepEqual(await w.nextEvent(), { path: '/w', token: 'tok' });
  await c.write('/w/x', '1');
  assert.deepEqual(await w.nextEvent(), { path: '/w/x', token: 'tok' });
  await c.write('/other', '1');
  await c.setPerms('/w/x', ['b3']);
  assert.deepEqual(await w.nextEvent(), { path: '/w/x', token: 'tok' });
  await c.rm('/w/x');
  assert.deepEqual(await w.nextEvent(), { path: '/w/x', token: 'tok' });
  await w.unwatch('/w', 'tok');
  await c.write('/w/y', '1');
  await w.sync();
  await c.sync();
  assert.deepEqual(w.takeEvents(), []);
  await rejectsWith(w.unwatch('/w', 'tok'), 'ENOENT');
});

test('xenstore: removing an ancestor reports the watched path; relative watches get relative paths', async () => {
  await using f = await fixture();
  const w = await f.client();
  const c = await f.client();
  await w.watch('/anc/b/c', 'deep');
  assert.deepEqual(await w.nextEvent(), { path: '/anc/b/c', token: 'deep' });
  await c.write('/anc/b/x', '1'); // a sibling: no event for the watch
  await c.rm('/anc');
  assert.deepEqual(await w.nextEvent(), { path: '/anc/b/c', token: 'deep' });
  await w.watch('dev', 'rel');
  assert.deepEqual(await w.nextEvent(), { path: 'dev', token: 'rel' });
  await c.write('/local/domain/0/dev/vbd', '1');
  assert.deepEqual(await w.nextEvent(), { path: 'dev', token: 'rel' }); // dev itself was created
  assert.deepEqual(await w.nextEvent(), { path: 'dev/vbd', token: 'rel' });
  await w.sync();
  assert.deepEqual(w.takeEvents(), []);
});

test('xenstore: duplicate watches are EEXIST; special @ watches fire once when set; dom0 is not held to the watch quota', async () => {
  await using f = await fixture({ maxWatches: 3 });
  const w = await f.client();
  await w.watch('/a', 't');
  await rejectsWith(w.watch('/a', 't'), 'EEXIST');
  await w.watch('/a', 'u');
  await w.watch('@releaseDomain', 'r');
  await rejectsWith(w.watch('/bad path', 'z'), 'EINVAL');
  const evs = [await w.nextEvent(), await w.nextEvent(), await w.nextEvent()];
  assert.deepEqual(evs, [{ path: '/a', token: 't' }, { path: '/a', token: 'u' }, { path: '@releaseDomain', token: 'r' }]);
  // Socket connections are dom0: the watch quota (3 here) is for guests (test/xenstore/domains.test.ts).
  await Promise.all(Array.from({ length: 300 }, (_, i) => w.watch(`/many/${i}`, 't')));
  assert.equal(f.server.stats().watches, 302);
  w.takeEvents();
  await w.request(XsType.RESET_WATCHES, nulTerminated(['']));
  await w.watch('/b', 't');
  assert.deepEqual(await w.nextEvent(), { path: '/b', token: 't' });
});

test('xenstore: transactions read their start snapshot; writes are invisible and fire no watch until commit', async () => {
  await using f = await fixture();
  const c = await f.client();
  const w = await f.client();
  await c.write('/t/x', 'a');
  await w.watch('/t', 'tk');
  await w.nextEvent();
  // The snapshot: an outside change is not seen inside (and, read there, makes the commit EAGAIN).
  const t1 = await c.start();
  assert.ok(t1 > 0);
  await c.write('/t/x', 'b');
  assert.deepEqual(await w.nextEvent(), { path: '/t/x', token: 'tk' });
  assert.equal(await c.read('/t/x', t1), 'a');
  await c.write('/t/w', 'from t1', t1);
  await rejectsWith(c.end(t1), 'EAGAIN');
  await rejectsWith(c.read('/t/w'), 'ENOENT');
  // Writes inside: invisible outside, no event until the commit.
  const tx = await c.start();
  await c.write('/t/y', 'tx', tx);
  assert.equal(await c.read('/t/y', tx), 'tx');
  await rejectsWith(c.read('/t/y'), 'ENOENT');
  await c.write('/t/x/z', 'outside');
  assert.deepEqual(await w.nextEvent(), { path: '/t/x/z', token: 'tk' });
  await w.sync();
  assert.deepEqual(w.takeEvents(), []);
  await c.end(tx); // disjoint from the outside write: commits through replay
  assert.deepEqual(await w.nextEvent(), { path: '/t/y', token: 'tk' });
  assert.equal(await c.read('/t/y'), 'tx');
  assert.ok(f.store.stats().validations >= 2); // both commits were checked against a moved head
  assert.equal(f.store.stats().conflicts, 1);
});

test('xenstore: EAGAIN only when a replayed response differs', async () => {
  await using f = await fixture();
  const c = await f.client();
  const d = await f.client();
  await c.write('/k', 'a');
  // Read, then someone rewrites the same value: the response is the same → commits.
  let tx = await c.start();
  assert.equal(await c.read('/k', tx), 'a');
  await c.write('/k2', 'v', tx);
  await d.write('/k', 'a');
  await c.end(tx);
  assert.equal(await c.read('/k2'), 'v');
  // Read, then someone changes it: the response would differ → EAGAIN, nothing written.
  tx = await c.start();
  assert.equal(await c.read('/k', tx), 'a');
  await c.write('/k3', 'v', tx);
  await d.write('/k', 'b');
  await rejectsWith(c.end(tx), 'EAGAIN');
  await rejectsWith(c.read('/k3'), 'ENOENT');
  // The transaction is gone after END, whatever its outcome.
  await rejectsWith(c.read('/k', tx), 'ENOENT');
  // A listing that would differ is a differing response too.
  tx = await c.start();
  assert.deepEqual(await c.directory('/', tx), ['k', 'k2']);
  await c.write('/k4', 'v', tx);
  await d.write('/k5', 'v');
  await rejectsWith(c.end(tx), 'EAGAIN');
  // Two transactions creating disjoint children of one parent both commit.
  const t1 = await c.start();
  const t2 = await d.start();
  await c.write('/vm/1/x', '1', t1);
  await d.write('/vm/2/y', '2', t2);
  await c.end(t1);
  await d.end(t2);
  assert.deepEqual(await c.directory('/vm'), ['1', '2']);
});

test('xenstore: TRANSACTION_END F discards; unknown ids are ENOENT; dom0 keeps hundreds of transactions open on one connection', async () => {
  await using f = await fixture({ maxTransactions: 2 });
  const c = await f.client();
  const tx = await c.start();
  await c.write('/gone', 'x', tx);
  await c.end(tx, false);
  await rejectsWith(c.read('/gone'), 'ENOENT');
  await rejectsWith(c.end(tx), 'ENOENT');
  await rejectsWith(c.read('/x', 12345), 'ENOENT');
  const a = await c.start();
  await rejectsWith(c.request(XsType.TRANSACTION_END, nulTerminated(['X']), a), 'EINVAL');
  // As oxenstored: the transaction quota (2 here) is not applied to dom0 (toolstacks open hundreds).
  const many = await Promise.all(Array.from({ length: 400 }, () => c.start()));
  await Promise.all(many.map((t, i) => c.write(`/tx/${i}`, 'v', t)));
  assert.equal(f.store.stats().openTransactions, 401);
  await Promise.all(many.slice(0, 200).map((t) => c.end(t)));
  assert.equal((await c.directory('/tx')).length, 200);
  await c.close();
  // The connection's end drops its transactions.
  for (let i = 0; i < 50 && f.store.stats().openTransactions !== 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(f.store.stats().openTransactions, 0);
});

test('xenstore: it is the same store — native watchers see XenStore writes and XenStore watches see native writes', async () => {
  await using f = await fixture();
  const c = await f.client();
  const it = f.store.watch('/local/domain', { recursive: true })[Symbol.asyncIterator]();
  await c.write('/local/domain/5/name', 'vm5');
  const seen: WatchEvent[] = [];
  while (!seen.some((e) => e.path === '/local/domain/5/name')) seen.push((await it.next()).value as WatchEvent);
  assert.equal(new TextDecoder().decode(seen.at(-1)!.value), 'vm5');
  await it.return?.();
  await c.watch('/native', 'n');
  await c.nextEvent();
  await f.store.set('/native/key', 'v');
  assert.deepEqual(await c.nextEvent(), { path: '/native', token: 'n' }); // created as the parent
  assert.deepEqual(await c.nextEvent(), { path: '/native/key', token: 'n' });
  assert.equal(await c.read('/native/key'), 'v');
  await f.store.delete('/native', { recursive: true });
  assert.deepEqual(await c.nextEvent(), { path: '/native', token: 'n' });
});

test('xenstore: pipelined replies come in order, echoing req_id and tx_id', async () => {
  await using f = await fixture();
  const c = await f.client();
  const tx = await c.start();
  const sent = [
    c.raw(XsType.WRITE, utf8('/p1\0v'), tx),
    c.raw(XsType.READ, nulTerminated(['/p1']), tx),
    c.raw(XsType.READ, nulTerminated(['/p1'])),
    c.raw(XsType.TRANSACTION_END, nulTerminated(['T']), tx),
    c.raw(XsType.READ, nulTerminated(['/p1'])),
    c.raw(77, nulTerminated(['?']), 0),
  ];
  const order: number[] = [];
  sent.forEach((p, i) => void p.then(() => order.push(i)));
  const r = await Promise.all(sent);
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(r.map((p) => p.txId), [tx, tx, 0, tx, 0, 0]);
  assert.deepEqual(r.map((p) => p.type), [XsType.WRITE, XsType.READ, XsType.ERROR, XsType.TRANSACTION_END, XsType.READ, XsType.ERROR]);
  assert.equal(fromUtf8(r[1]!.payload), 'v');
  assert.equal(fromUtf8(r[2]!.payload), 'ENOENT\0');
  assert.equal(fromUtf8(r[4]!.payload), 'v');
  assert.equal(fromUtf8(r[5]!.payload), 'ENOSYS\0');
  const ids = r.map((p) => p.reqId);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
});

test('xenstore: domain path, introduced, control, and unsupported messages', async () => {
  await using f = await fixture();
  const c = await f.client();
  assert.equal(fromUtf8(await c.request(XsType.GET_DOMAIN_PATH, nulTerminated(['7']))), '/local/domain/7\0');
  await rejectsWith(c.request(XsType.GET_DOMAIN_PATH, nulTerminated(['x'])), 'EINVAL');
  assert.equal(fromUtf8(await c.request(XsType.IS_DOMAIN_INTRODUCED, nulTerminated(['0']))), 'T\0');
  assert.equal(fromUtf8(await c.request(XsType.IS_DOMAIN_INTRODUCED, nulTerminated(['3']))), 'F\0');
  assert.equal(fromUtf8(await c.request(XsType.CONTROL, nulTerminated(['quota', '0']))), 'dom0 quota: 0/1000\0');
  assert.match(fromUtf8(await c.request(XsType.CONTROL, nulTerminated(['help']))), /print/);
  assert.equal(fromUtf8(await c.request(XsType.CONTROL, nulTerminated(['check']))), 'OK\0');
  await rejectsWith(c.request(XsType.CONTROL, nulTerminated(['nope'])), 'EINVAL');
  for (const t of [XsType.RESTRICT, XsType.GET_QUOTA, XsType.SET_QUOTA, XsType.GET_FEATURE, XsType.WATCH_EVENT]) {
    await rejectsWith(c.request(t, nulTerminated(['1'])), 'ENOSYS');
  }
  // Domain messages check their arguments (the domain tests are in domains.test.ts).
  for (const [t, args] of [[XsType.INTRODUCE, ['1']], [XsType.INTRODUCE, ['0', '1', '2']], [XsType.RELEASE, ['3']], [XsType.SET_TARGET, ['1']], [XsType.RESUME, ['3']]] as const) {
    await rejectsWith(c.request(t, nulTerminated([...args])), 'EINVAL');
  }
});

test('xenstore: an oversized packet closes only that connection; garbage never stops the server', async () => {
  await using f = await fixture();
  const good = await f.client();
  await good.write('/still', 'here');
  const bad = await f.client();
  const h = encodePacket(XsType.READ, 1, 0, new Uint8Array(0));
  new DataView(h.buffer).setUint32(12, 4097, true);
  bad.socket.write(h);
  await bad.whenClosed();
  // Raw garbage: whatever it decodes to gets ERROR replies or a close, never a crash.
  for (let round = 0; round < 20; round++) {
    const s = net.connect(f.socketPath);
    await new Promise((r) => s.once('connect', r));
    const junk = new Uint8Array(64 + round * 37);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 131 + round * 17) & 0xff;
    // Keep the lengths small so some packets are complete, with random types and payloads.
    for (let i = 12; i + 4 <= junk.length; i += 40) { junk[i] = (i + round) % 30; junk[i + 1] = 0; junk[i + 2] = 0; junk[i + 3] = 0; }
    s.on('error', () => {});
    s.write(junk);
    await new Promise((r) => setTimeout(r, 5));
    s.destroy();
  }
  assert.equal(await good.read('/still'), 'here');
  const again = await f.client();
  assert.equal(await again.read('/still'), 'here');
});

test('xenstore: a client that stops reading its events is disconnected; others are unaffected', async () => {
  await using f = await fixture({ maxQueuedOutputBytes: 64 * 1024 });
  const lazy = await f.client();
  await lazy.watch('/flood', 't');
  await lazy.sync();
  lazy.socket.pause(); // stops reading
  const c = await f.client();
  // Each event carries a ~200-byte path: kernel socket buffers fill, then the server's own queue.
  const big = 'x'.repeat(200);
  for (let i = 0; i < 50_000 && f.server.stats().watches > 0; i++) await c.write(`/flood/${big}${i}`, 'v');
  assert.equal(f.server.stats().watches, 0);
  lazy.socket.resume(); // a paused socket would not notice the close
  await lazy.whenClosed();
  assert.equal(await c.read(`/flood/${big}0`), 'v');
});

test('xenstore: closing the server closes its connections and leaves the store usable', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xs-'));
  const socketPath = path.join(dir, 'xs.sock');
  const store = await open();
  const server = await startXenstoreServer(store, { socketPath });
  const c = await XsClient.connect(socketPath);
  await c.write('/x', '1');
  await server.close();
  await c.whenClosed();
  await server.close(); // twice is fine
  assert.equal((await store.get('/x'))?.text(), '1');
  assert.equal((store as EmbeddedStore).stats().sessions, 1); // only the default session is left
  // The socket path can be served again at once.
  await using again = await startXenstoreServer(store, { socketPath });
  const d = await XsClient.connect(again.socketPath);
  assert.equal(await d.read('/x'), '1');
  await d.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('xenstore: more pipelined requests than maxOutstanding are all answered, in order', async () => {
  await using f = await fixture({ maxOutstanding: 4 });
  const c = await f.client();
  const n = 500;
  const replies = await Promise.all(Array.from({ length: n }, (_, i) => c.raw(XsType.WRITE, utf8(`/po/k${i}\0${i}`))));
  assert.deepEqual(replies.map((r) => r.type), Array(n).fill(XsType.WRITE));
  assert.deepEqual(replies.map((r) => r.reqId), [...replies.map((r) => r.reqId)].sort((a, b) => a - b));
  assert.equal((await c.directory('/po')).length, n);
});

test('xenstore: a write into a subtree a latchkey session has locked waits for the lock', async () => {
  await using f = await fixture();
  const c = await f.client();
  const d = await f.client();
  const lock = await f.store.lock('/local/domain/3');
  let wrote = false;
  let read: string | undefined;
  const w = c.write('/local/domain/3/x', 'after').then(() => { wrote = true; });
  const r = c.read('/local/domain/3/x').then((v) => { read = v; });
  while (f.store.lockTable().waiting.length === 0) await new Promise((res) => setTimeout(res, 1));
  // Another connection is not held up; this one's later requests are (answers come in order).
  await assert.rejects(d.read('/local/domain/3/x'), (e: unknown) => e instanceof XsReplyError && e.errno === 'ENOENT');
  assert.equal(wrote, false);
  assert.equal(read, undefined);
  await lock.release();
  await w;
  await r;
  assert.equal(read, 'after');
});

test('xenstore: connections beyond maxConnections are closed at once; the others carry on', async () => {
  await using f = await fixture({ maxConnections: 2 });
  const a = await f.client();
  const b = await f.client();
  const extra = await f.client();
  await extra.whenClosed();
  await a.write('/mc', '1');
  assert.equal(await b.read('/mc'), '1');
  await a.close();
  for (let i = 0; i < 100 && f.server.stats().connections > 1; i++) await new Promise((r) => setTimeout(r, 5));
  const again = await f.client();
  assert.equal(await again.read('/mc'), '1');
});
