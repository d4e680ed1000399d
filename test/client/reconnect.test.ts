/**
 * Connection loss, for real: the client talks to the server through a TCP
 * proxy the test can cut. In-flight requests fail CONNECTION_LOST, what the
 * lost sessions owned is gone, the store reconnects, and a watch resumes from
 * the revision after its last one — no gap, no duplicate.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { type ConnectOptions, type RemoteStore, connect } from '../../src/client/store.js';
import { type LatchkeyServer, type ServeOptions, serve } from '../../src/server/server.js';
import { LatchkeyError } from '../../src/core/errors.js';
import type { WatchEvent } from '../../src/api.js';
import { removeDir, tempDir } from '../storage/helpers.js';

/** The client may not have noticed the cut yet: a write on the dead link fails CONNECTION_LOST; try again on the next. */
async function setOnceReconnected(store: { set(p: string, v: string): Promise<number>; ready(): Promise<void> }, path: string): Promise<void> {
  for (;;) {
    await store.ready();
    try {
      await store.set(path, 'v');
      return;
    } catch (e) {
      if (!LatchkeyError.is(e, 'CONNECTION_LOST')) throw e;
    }
  }
}

async function paths(it: AsyncIterator<WatchEvent>, until: string): Promise<string[]> {
  const out: string[] = [];
  for (;;) {
    const r = await it.next();
    assert.equal(r.done, false);
    out.push(`${r.value.type} ${r.value.path}`);
    if (r.value.path === until) return out;
  }
}

/** A TCP proxy whose connections can be held (stop forwarding to the server) and cut. */
class Proxy {
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  private readonly server: net.Server;
  holding = false;
  /** Server → client bytes are dropped (replies and pushes that never arrive). */
  holdingReplies = false;
  port = 0;

  constructor(public target: number) {
    this.server = net.createServer((c) => {
      const u = net.connect({ host: '127.0.0.1', port: this.target });
      const pair: [net.Socket, net.Socket] = [c, u];
      this.pairs.add(pair);
      c.on('data', (d) => { if (!this.holding) u.write(d); });
      u.on('data', (d) => { if (!this.holdingReplies) c.write(d); });
      const end = (): void => {
        c.destroy();
        u.destroy();
        this.pairs.delete(pair);
      };
      c.on('close', end).on('error', end);
      u.on('close', end).on('error', end);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  cut(): void {
    for (const [c, u] of this.pairs) {
      c.destroy();
      u.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A server on an in-memory store, a fault proxy in front of it, and a client through the proxy; disposed in reverse. */
async function proxied(serveOptions: Partial<ServeOptions>, connectOptions: ConnectOptions): Promise<{
  backing: EmbeddedStore; server: LatchkeyServer; proxy: Proxy; store: RemoteStore; [Symbol.asyncDispose](): Promise<void>;
}> {
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ...serveOptions });
  const proxy = new Proxy(server.tcpAddress!.port);
  await proxy.start();
  const store = await connect(`tcp://127.0.0.1:${proxy.port}`, connectOptions);
  return {
    backing, server, proxy, store,
    async [Symbol.asyncDispose]() {
      proxy.holding = false;
      proxy.holdingReplies = false;
      await store.close();
      await proxy.close();
      await server.close();
      await backing.close();
    },
  };
}

test('reconnect: in-flight requests fail CONNECTION_LOST, owned things end, the store reconnects, watches resume gaplessly', async () => {
  await using f = await proxied({ ttlMs: 300 }, { minBackoffMs: 5, maxBackoffMs: 50 });
  const { backing, server, proxy, store } = f;
  const it = store.watch('/w', { recursive: true })[Symbol.asyncIterator]();
  await store.set('/w/0', '0');
  const seen: string[] = [];
  const take = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const r = await it.next();
      const e = r.value as WatchEvent;
      seen.push(`${e.revision} ${e.type} ${e.path}`);
    }
  };
  await take(2); // put /w, put /w/0
  const sess = store.session({ name: 'doomed' });
  await sess.create('/eph', 'x', { ephemeral: true });
  const tx = store.begin();
  await tx.set('/tx', 'never');
  const firstSession = store.id;

  // A request the server will never see: held in the proxy, then the connection is cut.
  proxy.holding = true;
  const inflight = store.set('/lost', 'maybe');
  await new Promise((r) => setTimeout(r, 20));
  proxy.cut();
  proxy.holding = false;
  await assert.rejects(inflight, (e: unknown) => LatchkeyError.is(e, 'CONNECTION_LOST'));

  // Meanwhile others write; the watch must see these after it resumes.
  for (let i = 1; i <= 5; i++) await backing.set(`/w/${i}`, String(i));

  // The lost connection's session ends on the server once its lease runs out (a close the client did
  // not announce may be a cut it has not seen): then its ephemeral node is gone and it refuses work.
  await store.ready();
  assert.notEqual(store.id, firstSession, 'a new connection is a new session');
  for (let i = 0; i < 500 && await store.exists('/eph'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(await store.exists('/eph'), false);
  await assert.rejects(sess.get('/'), (e: unknown) => LatchkeyError.is(e, 'SESSION_EXPIRED'));
  assert.equal(tx.state, 'aborted');
  await assert.rejects(tx.get('/tx'), (e: unknown) => LatchkeyError.is(e, 'ABORTED'));
  assert.equal(await store.exists('/tx'), false);
  assert.equal(await store.exists('/lost'), false, 'never resent');

  await store.set('/w/6', '6');
  await take(6);
  const revs = seen.map((s) => Number(s.split(' ')[0]));
  assert.deepEqual(seen.slice(2).map((s) => s.split(' ').slice(1).join(' ')), ['put /w/1', 'put /w/2', 'put /w/3', 'put /w/4', 'put /w/5', 'put /w/6']);
  for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! >= revs[i - 1]!, 'revision order');
  assert.equal(new Set(seen).size, seen.length, 'no duplicates');
  await it.return!();
});

test('reconnect: with reconnect off, a loss fails later calls CONNECTION_LOST', async () => {
  await using f = await proxied({}, { reconnect: false });
  const { proxy, store } = f;
  await store.set('/a', '1');
  proxy.cut();
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(store.get('/a'), (e: unknown) => LatchkeyError.is(e, 'CONNECTION_LOST'));
});

test('reconnect: a TCP session whose client goes silent expires after its lease', async () => {
  await using f = await proxied({ ttlMs: 150 }, { minBackoffMs: 5 });
  const { backing, proxy, store } = f;
  const s = store.session();
  await s.create('/lease', 'x', { ephemeral: true });
  // A partition: the proxy drops everything the client sends (pings too), the connection stays up.
  proxy.holding = true;
  const gone = (async () => {
    for (const ev of [backing.watch('/lease', { fromRevision: backing.revision + 1 })]) {
      for await (const e of ev) if (e.type === 'delete') return true;
    }
    return false;
  })();
  assert.equal(await gone, true, 'the ephemeral node of the silent session is deleted');
});

test('reconnect: a lock asked for while reconnecting belongs to the new connection, and its release frees it', async () => {
  await using f = await proxied({}, { minBackoffMs: 100, maxBackoffMs: 200 });
  const { backing, server, proxy, store } = f;
  await store.set('/a', '1');
  proxy.cut();
  for (let i = 0; i < 500 && store.connected; i++) await new Promise((r) => setTimeout(r, 2));
  assert.equal(store.connected, false, 'the loss is noticed');
  // Asked for with no connection up: it waits for the next one and is granted there.
  const lock = await store.lock('/r');
  assert.equal(lock.held, true);
  await store.set('/r/x', 'fenced', { fence: lock });
  await lock.release();
  // Released on the server too: another session gets it at once.
  const other = await backing.lock('/r', { wait: false });
  await other.release();
});

test('reconnect: a watch whose reply never arrived resumes from the revision it asked for, not from a later "now"', async () => {
  await using f = await proxied({}, { minBackoffMs: 5, maxBackoffMs: 50 });
  const { backing, server, proxy, store } = f;
  await store.set('/w/0', '0');
  proxy.holdingReplies = true;
  const it = store.watch('/w', { recursive: true })[Symbol.asyncIterator]();
  // The server has the watch (its reply and events are held in the proxy).
  while (backing.internals.watches.size === 0) await new Promise((r) => setTimeout(r, 5));
  await backing.set('/w/1', '1');
  await backing.set('/w/2', '2');
  proxy.cut();
  proxy.holdingReplies = false;
  await backing.set('/w/3', '3'); // while the client is away
  await setOnceReconnected(store, '/w/4');
  assert.deepEqual(await paths(it, '/w/4'), ['put /w/1', 'put /w/2', 'put /w/3', 'put /w/4']);
  await it.return!();
});

test('reconnect: a watch resumes across a server restart with no gap (events committed but never delivered before the restart come from the rebuilt history)', async () => {
  const dir = (await tempDir()).path;
  let backing = (await open(dir)) as EmbeddedStore;
  let server = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
  const proxy = new Proxy(server.tcpAddress!.port);
  await proxy.start();
  const store = await connect(`tcp://127.0.0.1:${proxy.port}`, { minBackoffMs: 5, maxBackoffMs: 50 });
  try {
    const it = store.watch('/r', { recursive: true })[Symbol.asyncIterator]();
    await store.set('/r/0', '0');
    assert.deepEqual(await paths(it, '/r/0'), ['put /r', 'put /r/0']);
    // Committed and durable, but their events never reach the client.
    proxy.holdingReplies = true;
    await backing.set('/r/1', '1');
    await backing.delete('/r/0');
    await server.close();
    await backing.close();
    proxy.cut();
    proxy.holdingReplies = false;
    // The restarted server (a new process would do the same: it recovers from the directory).
    backing = (await open(dir)) as EmbeddedStore;
    await backing.set('/r/2', '2');
    server = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true });
    proxy.target = server.tcpAddress!.port;
    await setOnceReconnected(store, '/r/3');
    assert.deepEqual(await paths(it, '/r/3'), ['put /r/1', 'delete /r/0', 'put /r/2', 'put /r/3']);
    await it.return!();
  } finally {
    await store.close();
    await proxy.close();
    await server.close();
    await backing.close();
    await removeDir(dir);
  }
});

/** Until the client has noticed its link is gone (bounded). */
async function disconnected(store: { readonly connected: boolean }): Promise<void> {
  for (let i = 0; i < 500 && store.connected; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(store.connected, false);
}

test('reconnect: a call made while the server is gone waits for the next connection; closing the store meanwhile fails it CLOSED', async () => {
  const backing = (await open()) as EmbeddedStore;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-reconnect-'));
  const socket = path.join(dir, 's.sock');
  let server = await serve(backing, { socket });
  const store = await connect(`unix://${socket}`, { minBackoffMs: 5, maxBackoffMs: 20 });
  try {
    await store.set('/a', 'before');
    await server.close(); // the client is told bye CLOSED and keeps trying to reconnect, in vain
    await disconnected(store);
    await backing.set('/a', 'while away');
    let settled = false;
    const waiting = store.get('/a').finally(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(settled, false, 'the call waits for a connection');
    server = await serve(backing, { socket });
    assert.equal((await waiting)?.text(), 'while away');

    await server.close();
    await disconnected(store);
    let pendingError: unknown;
    const pending = store.exists('/a').catch((e: unknown) => { pendingError = e; });
    await new Promise((r) => setTimeout(r, 50));
    await store.close();
    await pending;
    assert.ok(LatchkeyError.is(pendingError, 'CLOSED'), `got ${String(pendingError)}`);
  } finally {
    await store.close();
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
