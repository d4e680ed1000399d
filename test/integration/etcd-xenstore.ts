/**
 * The XenStore socket served from etcd by two front-ends of one prefix
 * (two stores and two XenStore servers in this process, each its own etcd
 * clients and mirror): guest domains shared through the cluster, reads that
 * see another front-end's acknowledged writes (with shared barriers), a
 * write withdrawn with its connection, watches fired across a mirror reload
 * after a compaction, and the adoption of a lease about to expire. Needs a
 * cluster: test/integration/etcd.sh runs it with LK_ETCD_ENDPOINTS set.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { adoptLease, minimumLeftMs } from '../../src/etcd/adopt.js';
import type { EtcdBackend } from '../../src/etcd/backend.js';
import { type EtcdStore, connectEtcd } from '../../src/etcd/store.js';
import { type XenstoreServer, startXenstoreServer } from '../../src/xenstore/server.js';
import { XsType, nulTerminated, splitStrings } from '../../src/xenstore/wire.js';
import { XsClient, XsReplyError } from '../xenstore/client.js';

const endpoints = process.env.LK_ETCD_ENDPOINTS;
if (endpoints === undefined) throw new Error('set LK_ETCD_ENDPOINTS=host:port,host:port,… (test/integration/etcd.sh does)');

interface FrontEnd { store: EtcdStore; server: XenstoreServer; sock: string; domains: string; backend: EtcdBackend }
interface Pair { a: FrontEnd; b: FrontEnd; raw: Etcd3; prefix: string; connect(p: string): Promise<XsClient>; done(): Promise<void> }

const backendOf = (s: EtcdStore): EtcdBackend => (s as unknown as { backend: EtcdBackend }).backend;

async function pair(ttl = 8): Promise<Pair> {
  const prefix = `/lk-xs-${randomBytes(6).toString('hex')}`;
  const url = `etcd://${endpoints}/?prefix=${prefix}&ttl=${ttl}`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-etcdxs-'));
  const logs: string[] = [];
  const front = async (name: string): Promise<FrontEnd> => {
    const store = await connectEtcd(url);
    const sock = path.join(dir, `${name}.sock`);
    const domains = path.join(dir, `${name}-domains`);
    const server = await startXenstoreServer(store, { socketPath: sock, domainDir: domains, log: (m) => logs.push(`${name}: ${m}`) });
    return { store, server, sock, domains, backend: backendOf(store) };
  };
  const a = await front('a');
  const b = await front('b');
  const raw = new Etcd3({ hosts: endpoints!.split(',').map((h) => `http://${h}`) });
  const clients: XsClient[] = [];
  return {
    a, b, raw, prefix,
    async connect(p) {
      const c = await XsClient.connect(p);
      clients.push(c);
      return c;
    },
    async done() {
      for (const c of clients) if (!c.closed) await c.close();
      for (const f of [a, b]) {
        await f.server.close().catch(() => {});
        await f.store.close().catch(() => {});
      }
      await raw.delete().prefix(prefix + '/').exec();
      await raw.delete().key(prefix + '/r').exec();
      raw.close();
      rmSync(dir, { recursive: true, force: true });
      assert.ok(!logs.some((l) => l.includes('bug')), logs.join('\n'));
    },
  };
}

const str = (b: Uint8Array): string => splitStrings(b)[0] ?? '';
const req = (c: XsClient, type: number, ...args: string[]): Promise<Uint8Array> => c.request(type, nulTerminated(args));

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    if (e instanceof XsReplyError) return e.errno;
    throw e;
  }
}

async function until(what: string, f: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Stops a front-end's mirror from hearing etcd (its watch cancelled, not restarted): it then moves only by a barrier's catch-up. */
async function deafen(f: FrontEnd): Promise<void> {
  const m = f.backend.mirror as unknown as { watcher: { cancel(): Promise<void> } | undefined };
  await m.watcher?.cancel();
}

test('guest domains: introduced through one front-end, served, targeted and released through the other', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const a0 = await p.connect(p.a.sock);
    const b0 = await p.connect(p.b.sock);
    await b0.watch('@introduceDomain', 'in');
    assert.deepEqual(await b0.nextEvent(), { path: '@introduceDomain', token: 'in' });
    await a0.watch('@releaseDomain', 'out');
    assert.deepEqual(await a0.nextEvent(), { path: '@releaseDomain', token: 'out' });
    await a0.mkdir('/local/domain/7');
    await a0.setPerms('/local/domain/7', ['n7']);
    await a0.write('/secret', 'dom0 only');

    await req(a0, XsType.INTRODUCE, '7', '1007', '1');
    assert.equal(str(await req(b0, XsType.IS_DOMAIN_INTRODUCED, '7')), 'T', 'B knows the guest A introduced');
    assert.deepEqual(await b0.nextEvent(), { path: '@introduceDomain', token: 'in' }, 'B fires @introduceDomain');
    assert.equal(await errnoOf(req(b0, XsType.INTRODUCE, '7', '9999', '1')), 'EINVAL', 'another mfn, through B');
    assert.equal(str(await req(b0, XsType.INTRODUCE, '7', '1007', '2')), 'OK', 're-INTRODUCE with the same mfn');

    // The guest's socket on each front-end.
    await until('the guest sockets', () => existsSync(path.join(p.a.domains, '7')) && existsSync(path.join(p.b.domains, '7')));
    const gb = await p.connect(path.join(p.b.domains, '7'));
    const ga = await p.connect(path.join(p.a.domains, '7'));
    await gb.write('data', 'from the guest via B');
    assert.equal(await a0.read('/local/domain/7/data'), 'from the guest via B');
    assert.equal(await ga.read('data'), 'from the guest via B');
    assert.equal(await errnoOf(ga.read('/secret')), 'EACCES', 'a guest may not read dom0\'s node');
    assert.equal(str(await req(a0, XsType.CONTROL, 'quota', '7')), `dom7 quota: 2/${p.a.server.limits.maxEntries}`);

    // SET_TARGET through B: the guest's connection on A acts for dom0 (privileged).
    await req(b0, XsType.SET_TARGET, '7', '0');
    assert.equal(await ga.read('/secret'), 'dom0 only', 'the target set through B holds on A');

    // RELEASE through B: the guest's connections on both front-ends close, its nodes go, A fires @releaseDomain.
    await req(b0, XsType.RELEASE, '7');
    await Promise.all([ga.whenClosed(), gb.whenClosed()]);
    assert.deepEqual(await a0.nextEvent(), { path: '@releaseDomain', token: 'out' });
    assert.equal(await errnoOf(a0.read('/local/domain/7')), 'ENOENT', 'the guest\'s nodes are removed');
    assert.equal(str(await req(a0, XsType.IS_DOMAIN_INTRODUCED, '7')), 'F');
    await until('the guest sockets removed', () => !existsSync(path.join(p.a.domains, '7')) && !existsSync(path.join(p.b.domains, '7')));
    assert.equal(await errnoOf(req(a0, XsType.RELEASE, '7')), 'EINVAL', 'released already');
    assert.equal(p.a.server.stats().domains, 0);
    assert.equal(p.b.server.stats().domains, 0);

    // A front-end started later knows the guests introduced before it.
    await req(a0, XsType.INTRODUCE, '9', '1009', '1');
    const lateStore = await connectEtcd(`etcd://${endpoints}/?prefix=${p.prefix}&ttl=8`);
    const lateDir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-etcdxs-late-'));
    try {
      const late = await startXenstoreServer(lateStore, { socketPath: path.join(lateDir, 'xs.sock'), domainDir: path.join(lateDir, 'd') });
      await until('the late front-end\'s guest socket', () => existsSync(path.join(lateDir, 'd', '9')));
      assert.equal(late.stats().domains, 1);
      await late.close();
    } finally {
      await lateStore.close();
      rmSync(lateDir, { recursive: true, force: true });
    }
    await req(b0, XsType.RELEASE, '9');
  } finally {
    await p.done();
  }
});

test('reads through one front-end see writes acknowledged through the other, with barriers shared', { timeout: 120_000 }, async (t) => {
  const p = await pair();
  try {
    const a0 = await p.connect(p.a.sock);
    const b0 = await p.connect(p.b.sock);
    await a0.write('/bar/v', '1');
    assert.equal(await b0.read('/bar/v'), '1');
    // B's mirror no longer hears etcd: only the barrier can bring A's write to B's read.
    await deafen(p.b);
    await a0.write('/bar/v', '2');
    assert.equal(await b0.read('/bar/v'), '2', 'READ after another front-end\'s acknowledged write');
    await a0.write('/bar/w', 'x');
    assert.deepEqual((await b0.directory('/bar')).sort(), ['v', 'w'], 'DIRECTORY too');
    const tx = await b0.start();
    await a0.write('/bar/v', '3');
    await b0.end(tx, false);
    const tx2 = await b0.start();
    assert.equal(await b0.read('/bar/v', tx2), '3', 'a transaction\'s snapshot too');
    await b0.end(tx2, false);

    // 5 connections × 40 pipelined reads arriving together: a few barriers, not one per read.
    const conns = await Promise.all([1, 2, 3, 4, 5].map(() => p.connect(p.b.sock)));
    await a0.write('/bar/v', '4');
    const batch = (p.b.store.xenstoreEngine as unknown as { readBarrier: { count: number } }).readBarrier;
    const before = batch.count;
    const reads = conns.flatMap((c) => Array.from({ length: 40 }, () => c.read('/bar/v')));
    const got = await Promise.all(reads);
    assert.ok(got.every((v) => v === '4'), 'every read sees the write');
    const used = batch.count - before;
    t.diagnostic(`200 pipelined reads on 5 connections: ${used} barriers (load ${os.loadavg()[0]!.toFixed(1)})`);
    assert.ok(used >= 1 && used <= 10, `200 reads took ${used} barriers`);
  } finally {
    await p.done();
  }
});

test('a guest\'s write through a front-end whose head lags: judged on the permissions acknowledged through the other', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const a0 = await p.connect(p.a.sock);
    const b0 = await p.connect(p.b.sock);
    await a0.mkdir('/local/domain/5/data');
    await a0.setPerms('/local/domain/5/data', ['n5', 'w7']);
    await req(a0, XsType.INTRODUCE, '7', '1007', '1');
    await until('B\'s socket for guest 7', () => existsSync(path.join(p.b.domains, '7')));
    const g7 = await p.connect(path.join(p.b.domains, '7'));
    await g7.write('/local/domain/5/data/before', 'allowed');
    assert.deepEqual(await b0.getPerms('/local/domain/5/data'), ['n5', 'w7'], 'B has seen the grant');

    // Revoked through A (acknowledged), while B's mirror hears nothing: B's head still shows the grant.
    await deafen(p.b);
    await a0.setPerms('/local/domain/5/data', ['n5']);
    assert.equal(await errnoOf(g7.write('/local/domain/5/data/x', 'too late')), 'EACCES', 'the revoked write is refused');
    assert.equal(await errnoOf(a0.read('/local/domain/5/data/x')), 'ENOENT', 'and never lands');

    // Granted through A while B hears nothing: EACCES on B's stale head is not the answer.
    await deafen(p.b);
    await a0.setPerms('/local/domain/5/data', ['n5', 'w7']);
    assert.equal(await errnoOf(g7.write('/local/domain/5/data/y', 'granted')), 'OK', 'EACCES is answered only from a fresh head');
    assert.equal(await a0.read('/local/domain/5/data/y'), 'granted');

    // A transaction that wrote while allowed, ended after a revoke acknowledged through A while B hears
    // nothing: its permission re-check at TRANSACTION_END runs on a fresh head (EAGAIN, nothing lands).
    const tx = await g7.start();
    await g7.write('/local/domain/5/data/in-tx', 'allowed at the time', tx);
    await deafen(p.b);
    await a0.setPerms('/local/domain/5/data', ['n5']);
    assert.equal(await errnoOf(g7.end(tx)), 'EAGAIN', 'the transaction\'s revoked write is refused at its end');
    assert.equal(await errnoOf(a0.read('/local/domain/5/data/in-tx')), 'ENOENT', 'and never lands');
    await a0.setPerms('/local/domain/5/data', ['n5', 'w7']);

    // RM of a node whose parent A just made: not ENOENT from B's stale head (the parent is there).
    await deafen(p.b);
    await a0.mkdir('/rmtest/p');
    assert.equal(await errnoOf(b0.rm('/rmtest/p/q')), 'OK', 'ENOENT is answered only from a fresh head');
    await req(a0, XsType.RELEASE, '7');
  } finally {
    await p.done();
  }
});

test('a write waiting on a lock is withdrawn when its connection closes', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const holder = p.a.store.session({ name: 'holder' });
    const lock = await holder.lock('/locked');
    const c = await p.connect(p.b.sock);
    await c.sync();
    let settled = false;
    const w = c.write('/locked/x', 'late').then(() => { settled = true; }, () => { settled = true; });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(settled, false, 'the write waits for the lock');
    c.socket.destroy();
    await c.whenClosed();
    await w;
    await until('the connection\'s session to end', () => p.b.server.stats().connections === 0);
    await lock.release();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await p.a.store.get('/locked/x'), undefined, 'the withdrawn write never lands');
    // The lock works for others afterwards.
    const c2 = await p.connect(p.b.sock);
    await c2.write('/locked/y', 'now');
    assert.equal(await c2.read('/locked/y'), 'now');
    await holder.close();
  } finally {
    await p.done();
  }
});

test('watches fire for what changed while a mirror reloaded after a compaction', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const a0 = await p.connect(p.a.sock);
    const b0 = await p.connect(p.b.sock);
    await a0.write('/cmp/gone', 'g');
    await a0.write('/cmp/perm', 'p');
    await a0.write('/cmp/same', 's');
    assert.equal(await b0.read('/cmp/perm'), 'p');
    await b0.watch('/cmp', 'tok');
    await b0.sync();
    await new Promise((r) => setTimeout(r, 200));
    b0.takeEvents();
    // A guest connected through B, released and introduced again (another mfn) while B hears nothing.
    await req(a0, XsType.INTRODUCE, '4', '1004', '1');
    await until('B\'s socket for guest 4', () => existsSync(path.join(p.b.domains, '4')));
    const g4 = await p.connect(path.join(p.b.domains, '4'));
    await g4.sync();
    await deafen(p.b);
    await req(a0, XsType.RELEASE, '4');
    await req(a0, XsType.INTRODUCE, '4', '2004', '1');
    await a0.rm('/cmp/gone');
    await a0.write('/cmp/new', 'n');
    await a0.setPerms('/cmp/perm', ['n0', 'r3']);
    const rev = Number((await p.raw.kv.range({ key: Buffer.from(`${p.prefix}/r`) })).header.revision);
    await p.raw.kv.compact({ revision: String(rev), physical: true });
    // B's watch resumes from before the compaction: it fails, and the mirror reloads the whole prefix.
    await p.b.backend.mirror.restartWatch();
    await until('B\'s mirror to reload', () => p.b.backend.mirror.rev >= rev);
    const want = new Set(['/cmp/gone', '/cmp/new', '/cmp/perm']);
    const seen = new Set<string>();
    const end = Date.now() + 10_000;
    while ([...want].some((w) => !seen.has(w)) && Date.now() < end) {
      const e = await Promise.race([b0.nextEvent(), new Promise<undefined>((r) => setTimeout(() => r(undefined), 500))]);
      if (e !== undefined) seen.add(e.path);
    }
    for (const w of want) assert.ok(seen.has(w), `an event for ${w} (seen: ${[...seen].join(' ')})`);
    assert.ok(!seen.has('/cmp/same'), 'nothing for a node that did not change');
    assert.deepEqual(await b0.getPerms('/cmp/perm'), ['n0', 'r3']);
    assert.equal(str(await req(b0, XsType.CONTROL, 'check')), 'OK', 'entry counts still match the tree');
    await g4.whenClosed(); // the old incarnation's connection is closed by B
    await until('B\'s socket for the new guest 4', () => existsSync(path.join(p.b.domains, '4')));
    const g4b = await p.connect(path.join(p.b.domains, '4'));
    await g4b.sync();
    await req(a0, XsType.RELEASE, '4');
  } finally {
    await p.done();
  }
});

test('adopting a session whose lease has little left refreshes it first', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    // A session as another front-end would leave it: a lease (TTL 3 s) nobody keeps alive, and its record.
    const lease = p.raw.lease(3, { autoKeepAlive: false });
    const id = await lease.grant();
    const secret = randomBytes(16).toString('hex');
    const rec = JSON.stringify({ h: createHash('sha256').update(secret).digest('hex'), n: 'old', o: 'gone-front-end' });
    await p.raw.put(`${p.prefix}/s/${id}`).value(rec).lease(id).exec();
    // etcd counts whole seconds, truncated: wait until it says 1 s is left (under 2 s; the minimum for TTL 3 is 1.5 s).
    for (let i = 0; i < 100; i++) {
      const t = Number((await p.raw.leaseClient.leaseTimeToLive({ ID: id })).TTL);
      if (t <= 1) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const adopted = await adoptLease(p.b.backend, id, secret);
    const now = Date.now();
    try {
      // Without the refresh: etcd's 1 s from before the question, under the minimum (the session would end at once).
      assert.ok(adopted.goodUntil - now >= minimumLeftMs(3), `the adopted lease is good for ${adopted.goodUntil - now} ms more, at least ${minimumLeftMs(3)}`);
      const left = Number((await p.raw.leaseClient.leaseTimeToLive({ ID: id })).TTL);
      assert.ok(left >= 1, `etcd agrees: ${left} s left`);
    } finally {
      adopted.lease.release();
    }
  } finally {
    await p.done();
  }
});
