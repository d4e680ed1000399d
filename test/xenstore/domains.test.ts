/**
 * XenStore domains: INTRODUCE/RELEASE and the per-domain transport,
 * permissions as docs/misc/xenstore.txt and oxenstored enforce them (one
 * table, every operation and watches), and the quotas of unprivileged
 * domains with dom0 exempt. Guests speak through the sockets of
 * `domainDir`, exactly as a local tool would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/index.js';
import type { Store } from '../../src/api.js';
import type { XenstoreLimits } from '../../src/xenstore/limits.js';
import { type XenstoreServer, startXenstoreServer } from '../../src/xenstore/server.js';
import { XsType, fromUtf8, nulTerminated } from '../../src/xenstore/wire.js';
import { XsClient, XsReplyError } from './client.js';

interface Fixture {
  store: Store;
  server: XenstoreServer;
  dom0: XsClient;
  dir: string;
  /** Introduces `domid` (if not yet) and connects through its socket. */
  guest(domid: number): Promise<XsClient>;
  connect(socketPath: string): Promise<XsClient>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function fixture(limits: Partial<XenstoreLimits> = {}): Promise<Fixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xsdom-'));
  const store = await open();
  const logs: string[] = [];
  const server = await startXenstoreServer(store, {
    socketPath: path.join(dir, 'xs.sock'), domainDir: path.join(dir, 'domains'), limits, log: (m) => logs.push(m),
  });
  const clients: XsClient[] = [];
  const connect = async (p: string): Promise<XsClient> => {
    const c = await XsClient.connect(p);
    clients.push(c);
    return c;
  };
  const dom0 = await connect(path.join(dir, 'xs.sock'));
  const introduced = new Set<number>();
  return {
    store, server, dom0, dir, connect,
    async guest(domid) {
      if (!introduced.has(domid)) {
        await dom0.request(XsType.INTRODUCE, nulTerminated([String(domid), String(1000 + domid), '1']));
        introduced.add(domid);
      }
      return connect(path.join(dir, 'domains', String(domid)));
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

async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    if (e instanceof XsReplyError) return e.errno;
    throw e;
  }
}

async function rejectsWith(p: Promise<unknown>, errno: string): Promise<void> {
  assert.equal(await errnoOf(p), errno);
}

async function control(c: XsClient, ...args: string[]): Promise<string> {
  return fromUtf8(await c.request(XsType.CONTROL, nulTerminated(args))).replace(/\0$/, '');
}

// ---------------------------------------------------------------------------
// The permission table. Each row gives a node's permissions (its child `c`
// has the same), who asks (domain 5, 6, or 7 acting for 5 through
// SET_TARGET; dom0 bypasses everything and has its own row), and the answer
// of each operation on the node: R read, D directory, G get-perms, W write
// of the node, C create a child (needs write on the node), M mkdir of the
// node (existing), X rm of its child, P set-perms keeping the owner, O
// set-perms giving the node to domain 9, E a watch on the node hears a
// write to it ('ev' or 'no').
// ---------------------------------------------------------------------------
type OpName = 'R' | 'D' | 'G' | 'W' | 'C' | 'M' | 'X' | 'P' | 'O' | 'E';
const OPS: OpName[] = ['R', 'D', 'G', 'W', 'C', 'M', 'X', 'P', 'O', 'E'];
const A = 'EACCES';
interface Row { perms: string[]; who: 0 | 5 | 6 | 7; want: Record<OpName, string> }
const row = (perms: string[], who: Row['who'], ...answers: string[]): Row => ({
  perms, who, want: Object.fromEntries(OPS.map((o, i) => [o, answers[i]!])) as Record<OpName, string>,
});
const TABLE: Row[] = [
  //                        R     D     G     W     C     M     X     P     O     E
  // dom0 owns it, no access for others (the default, n0)
  row(['n0'], 0, 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'ev'),
  row(['n0'], 5, A, A, A, A, A, A, A, A, A, 'no'),
  row(['n0'], 7, A, A, A, A, A, A, A, A, A, 'no'),
  // dom0 owns it, domain 5 may read (the spec's frontend/backend example)
  row(['n0', 'r5'], 5, 'OK', 'OK', 'OK', A, A, A, A, A, A, 'ev'),
  row(['n0', 'r5'], 6, A, A, A, A, A, A, A, A, A, 'no'),
  row(['n0', 'r5'], 7, 'OK', 'OK', 'OK', A, A, A, A, A, A, 'ev'), // the device model has its target's entries
  // dom0 owns it, domain 5 may write only
  row(['n0', 'w5'], 5, A, A, A, 'OK', 'OK', 'OK', 'OK', A, A, 'no'),
  // everybody may read
  row(['r0'], 6, 'OK', 'OK', 'OK', A, A, A, A, A, A, 'ev'),
  // domain 5 owns it; others nothing, except domain 6 reads
  row(['n5', 'r6'], 5, 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', A, 'ev'),
  row(['n5', 'r6'], 6, 'OK', 'OK', 'OK', A, A, A, A, A, A, 'ev'),
  row(['n5', 'r6'], 7, 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', A, 'ev'), // owner through its target
  row(['n5', 'r6'], 0, 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'ev'),
  // domain 5 owns it, everybody else both
  row(['b5'], 6, 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', A, A, 'ev'),
  // domain 5 owns it, everybody else both, except domain 6: none
  row(['b5', 'n6'], 6, A, A, A, A, A, A, A, A, A, 'no'),
  row(['b5', 'n6'], 7, 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', 'OK', A, 'ev'),
  // write-only for everybody
  row(['w0'], 6, A, A, A, 'OK', 'OK', 'OK', 'OK', A, A, 'no'),
];

test('xenstore permissions: every operation and watches, per the permission table, outside and inside transactions', async () => {
  await using f = await fixture();
  const guests = new Map<number, XsClient>([[0, f.dom0], [5, await f.guest(5)], [6, await f.guest(6)], [7, await f.guest(7)]]);
  await f.dom0.request(XsType.SET_TARGET, nulTerminated(['7', '5']));
  let n = 0;
  let ran = 0;
  const failures: string[] = [];
  for (const inTx of [false, true]) {
    for (const r of TABLE) {
      const c = guests.get(r.who)!;
      for (const op of [...OPS, 'L' as const]) {
        if (inTx && op === 'E') continue; // watches are not transactional
        // DIRECTORY_PART answers as DIRECTORY.
        const want = op === 'L' ? r.want.D : r.want[op];
        const base = `/t/${n++}`;
        const node = `${base}/n`;
        await f.dom0.write(`${node}/c`, 'child');
        await f.dom0.write(node, 'v');
        await f.dom0.setPerms(node, r.perms);
        await f.dom0.setPerms(`${node}/c`, r.perms);
        const tx = inTx ? await c.start() : 0;
        let got: string;
        switch (op) {
          case 'R': got = await errnoOf(c.read(node, tx)); break;
          case 'D': got = await errnoOf(c.directory(node, tx)); break;
          case 'L': got = await errnoOf(c.request(XsType.DIRECTORY_PART, nulTerminated([node, '0']), tx)); break;
          case 'G': got = await errnoOf(c.getPerms(node, tx)); break;
          case 'W': got = await errnoOf(c.write(node, 'w', tx)); break;
          case 'C': got = await errnoOf(c.write(`${node}/new`, 'w', tx)); break;
          case 'M': got = await errnoOf(c.mkdir(node, tx)); break;
          case 'X': got = await errnoOf(c.rm(`${node}/c`, tx)); break;
          case 'P': got = await errnoOf(c.setPerms(node, r.perms, tx)); break;
          case 'O': got = await errnoOf(c.setPerms(node, ['n9', ...r.perms.slice(1)], tx)); break;
          case 'E': {
            await c.watch(node, base);
            assert.deepEqual(await c.nextEvent(), { path: node, token: base }); // the initial event is unchecked
            await f.dom0.write(node, 'changed');
            await c.sync(); // events are queued before later replies
            const evs = c.takeEvents().filter((e) => e.token === base);
            got = evs.length === 0 ? 'no' : 'ev';
            await c.unwatch(node, base);
            break;
          }
        }
        if (inTx) {
          // What was allowed commits; a refused request leaves the transaction to be discarded.
          const end = await errnoOf(c.end(tx, got === 'OK'));
          if (end !== 'OK') failures.push(`perms ${r.perms.join(',')} dom${r.who} ${op} in a transaction: end ${end}`);
        }
        ran++;
        if (got !== want) failures.push(`perms ${r.perms.join(',')} dom${r.who} ${op}${inTx ? ' (in a transaction)' : ''}: got ${got}, want ${want}`);
        // What an allowed write did is really there, and a refused one left nothing.
        if (op === 'C') assert.equal(await errnoOf(f.dom0.read(`${node}/new`)), got === 'OK' ? 'OK' : 'ENOENT');
        if (op === 'O') assert.equal((await f.dom0.getPerms(node))[0], got === 'OK' ? 'n9' : r.perms[0]);
      }
    }
  }
  assert.deepEqual(failures, []);
  assert.equal(ran, TABLE.length * (OPS.length + 1) * 2 - TABLE.length);
  assert.equal(await control(f.dom0, 'check'), 'OK');
});

test('xenstore permissions: missing nodes are ENOENT before permissions; a guest cannot read, list, watch or write another guest\'s keys, its device model can', async () => {
  await using f = await fixture();
  const g5 = await f.guest(5);
  const g6 = await f.guest(6);
  const dm = await f.guest(7);
  await f.dom0.request(XsType.SET_TARGET, nulTerminated(['7', '5']));
  // The toolstack's layout: each guest owns its home, dom0 reads it.
  for (const d of [5, 6]) {
    await f.dom0.mkdir(`/local/domain/${d}`);
    await f.dom0.setPerms(`/local/domain/${d}`, [`n${d}`, 'r0']);
  }
  await g5.write('data/secret', 's5'); // relative to /local/domain/5
  assert.equal(await g5.read('/local/domain/5/data/secret'), 's5');
  await rejectsWith(g5.read('/local/domain/5/missing'), 'ENOENT');
  await rejectsWith(g6.read('/local/domain/5/data/missing'), 'ENOENT');
  await rejectsWith(g6.read('/local/domain/5/data/secret'), 'EACCES');
  await rejectsWith(g6.directory('/local/domain/5'), 'EACCES');
  await rejectsWith(g6.getPerms('/local/domain/5/data'), 'EACCES');
  await rejectsWith(g6.write('/local/domain/5/data/secret', 'x'), 'EACCES');
  await rejectsWith(g6.write('/local/domain/5/new', 'x'), 'EACCES');
  await rejectsWith(g6.mkdir('/local/domain/5/new'), 'EACCES');
  await rejectsWith(g6.rm('/local/domain/5/data'), 'EACCES');
  await rejectsWith(g6.setPerms('/local/domain/5/data', ['b6']), 'EACCES');
  await rejectsWith(g6.write('/outside', 'x'), 'EACCES'); // the root is dom0's
  await g6.watch('/local/domain/5', 'spy');
  assert.deepEqual(await g6.nextEvent(), { path: '/local/domain/5', token: 'spy' });
  await g5.write('data/secret', 's5b');
  await g5.rm('data/secret');
  await g6.sync();
  assert.deepEqual(g6.takeEvents(), []);
  // The device model acts for domain 5: reads, writes, watches its keys.
  await g5.write('data/secret', 's5c');
  assert.equal(await dm.read('/local/domain/5/data/secret'), 's5c');
  await dm.write('/local/domain/5/device-model/state', 'running');
  await dm.watch('/local/domain/5/data', 'dm');
  assert.deepEqual(await dm.nextEvent(), { path: '/local/domain/5/data', token: 'dm' });
  await g5.write('data/secret', 's5d');
  assert.deepEqual(await dm.nextEvent(), { path: '/local/domain/5/data/secret', token: 'dm' });
  // …but not domain 6's.
  await rejectsWith(dm.read('/local/domain/6'), 'EACCES');
  // Relative paths of a guest live in its own home.
  assert.equal(fromUtf8(await g6.request(XsType.GET_DOMAIN_PATH, nulTerminated(['6']))), '/local/domain/6\0');
  await g6.write('mine', 'm6');
  assert.equal(await f.dom0.read('/local/domain/6/mine'), 'm6');
});

test('xenstore permissions: new nodes inherit the parent\'s permissions, the unprivileged creator as owner', async () => {
  await using f = await fixture();
  const g5 = await f.guest(5);
  const g6 = await f.guest(6);
  await f.dom0.mkdir('/local/domain/5');
  await f.dom0.setPerms('/local/domain/5', ['n5', 'r0', 'b6']);
  await g5.write('a/b', 'x'); // creates a and a/b
  assert.deepEqual(await g5.getPerms('a'), ['n5', 'r0', 'b6']);
  assert.deepEqual(await g5.getPerms('a/b'), ['n5', 'r0', 'b6']);
  await g6.write('/local/domain/5/from6/x', 'y'); // 6 may write there: its nodes are its own
  assert.deepEqual(await g6.getPerms('/local/domain/5/from6'), ['n6', 'r0', 'b6']);
  assert.deepEqual(await g6.getPerms('/local/domain/5/from6/x'), ['n6', 'r0', 'b6']);
  await g6.mkdir('/local/domain/5/dir6');
  assert.deepEqual(await f.dom0.getPerms('/local/domain/5/dir6'), ['n6', 'r0', 'b6']);
  // dom0's nodes inherit unchanged.
  await f.dom0.write('/local/domain/5/by0', 'z');
  assert.deepEqual(await f.dom0.getPerms('/local/domain/5/by0'), ['n5', 'r0', 'b6']);
  // Under a node without explicit permissions dom0's nodes keep the default.
  await f.dom0.write('/plain/x', '1');
  assert.deepEqual(await f.dom0.getPerms('/plain/x'), ['n0']);
  // A guest may not hand its node to another domain; dom0 may.
  await rejectsWith(g5.setPerms('a', ['n6']), 'EACCES');
  await g5.setPerms('a', ['n5', 'r6']);
  await f.dom0.setPerms('/local/domain/5/a', ['n6']);
  assert.deepEqual(await g6.getPerms('/local/domain/5/a'), ['n6']);
  assert.equal(await control(f.dom0, 'check'), 'OK');
});

test('xenstore watches: a permission change fires for the domain losing access, later changes do not', async () => {
  await using f = await fixture();
  const g5 = await f.guest(5);
  await f.dom0.write('/w/n', 'v');
  await f.dom0.setPerms('/w/n', ['n0', 'r5']);
  await g5.watch('/w/n', 't');
  await g5.nextEvent();
  await f.dom0.write('/w/n', 'v2');
  assert.deepEqual(await g5.nextEvent(), { path: '/w/n', token: 't' });
  await f.dom0.setPerms('/w/n', ['n0']); // revoked: heard, since 5 could read it before
  assert.deepEqual(await g5.nextEvent(), { path: '/w/n', token: 't' });
  await f.dom0.write('/w/n', 'v3');
  await f.dom0.rm('/w/n');
  await g5.sync();
  assert.deepEqual(g5.takeEvents(), []);
  // A removal is checked against what was removed: a readable node's removal is heard.
  await f.dom0.write('/w/m', 'v');
  await f.dom0.setPerms('/w/m', ['n0', 'r5']);
  await g5.watch('/w/m', 'm');
  await g5.nextEvent();
  await f.dom0.rm('/w');
  assert.deepEqual(await g5.nextEvent(), { path: '/w/m', token: 'm' });
});

test('xenstore transactions: a permission revoked while a guest\'s transaction is open makes its commit EAGAIN', async () => {
  await using f = await fixture();
  const g5 = await f.guest(5);
  await f.dom0.write('/shared/n', 'v');
  await f.dom0.setPerms('/shared/n', ['n0', 'b5']);
  const tx = await g5.start();
  assert.equal(await g5.read('/shared/n', tx), 'v');
  await g5.write('/shared/n', 'from5', tx);
  await f.dom0.setPerms('/shared/n', ['n0', 'r5']); // no more writes for 5
  await rejectsWith(g5.end(tx), 'EAGAIN');
  assert.equal(await f.dom0.read('/shared/n'), 'v');
  // Still allowed: commits.
  const tx2 = await g5.start();
  assert.equal(await g5.read('/shared/n', tx2), 'v');
  await g5.end(tx2);
  // Inside a transaction the checks answer as outside.
  const tx3 = await g5.start();
  await rejectsWith(g5.write('/shared/n', 'x', tx3), 'EACCES');
  await rejectsWith(g5.read('/secret-of-dom0', tx3), 'ENOENT');
  await f.dom0.write('/secret-of-dom0', 's');
  await g5.end(tx3, false);
});

test('xenstore domains: INTRODUCE and RELEASE fire their special watches every time; RELEASE closes the guest and removes what it owned', async () => {
  await using f = await fixture();
  const sock = (d: number): string => path.join(f.dir, 'domains', String(d));
  await f.dom0.watch('@introduceDomain', 'in');
  await f.dom0.watch('@releaseDomain', 'out');
  assert.deepEqual([await f.dom0.nextEvent(), await f.dom0.nextEvent()], [{ path: '@introduceDomain', token: 'in' }, { path: '@releaseDomain', token: 'out' }]);
  const isIntroduced = async (d: number): Promise<string> => fromUtf8(await f.dom0.request(XsType.IS_DOMAIN_INTRODUCED, nulTerminated([String(d)])));
  assert.equal(await isIntroduced(3), 'F\0');
  assert.equal(existsSync(sock(3)), false);
  for (let round = 0; round < 3; round++) {
    await f.dom0.request(XsType.INTRODUCE, nulTerminated(['3', '4096', '7']));
    assert.deepEqual(await f.dom0.nextEvent(), { path: '@introduceDomain', token: 'in' });
    assert.equal(await isIntroduced(3), 'T\0');
    assert.equal(statSync(sock(3)).mode & 0o777, 0o600);
    // Introducing it again with the same page is a no-op (no event); with another page EINVAL.
    await f.dom0.request(XsType.INTRODUCE, nulTerminated(['3', '4096', '8']));
    await rejectsWith(f.dom0.request(XsType.INTRODUCE, nulTerminated(['3', '9999', '8'])), 'EINVAL');
    await f.dom0.request(XsType.RESUME, nulTerminated(['3']));
    const g = await f.connect(sock(3));
    await f.dom0.mkdir('/local/domain/3');
    await f.dom0.setPerms('/local/domain/3', ['n3', 'r0']);
    await g.write('data/x', '1');
    await g.watch('data', 'w');
    const tx = await g.start();
    await f.dom0.write('/shared', 'v');
    await f.dom0.setPerms('/shared', ['n0', 'r3', 'r4']);
    assert.equal(await control(f.dom0, 'quota', '3'), 'dom3 quota: 3/1000');
    await f.dom0.sync();
    f.dom0.takeEvents();
    await f.dom0.request(XsType.RELEASE, nulTerminated(['3']));
    await g.whenClosed();
    assert.deepEqual(f.dom0.takeEvents(), [{ path: '@releaseDomain', token: 'out' }]);
    assert.equal(await isIntroduced(3), 'F\0');
    assert.equal(existsSync(sock(3)), false);
    // What domain 3 owned is gone; its entries are dropped from the rest (as oxenstored's reset_permissions).
    await rejectsWith(f.dom0.read('/local/domain/3'), 'ENOENT');
    assert.deepEqual(await f.dom0.getPerms('/shared'), ['n0', 'r4']);
    assert.equal(await control(f.dom0, 'quota', '3'), 'dom3 quota: not set');
    assert.equal(f.store.stats().openTransactions, 0, `round ${round}: the guest's transaction ${tx} was dropped`);
    await rejectsWith(f.dom0.request(XsType.RELEASE, nulTerminated(['3'])), 'EINVAL');
  }
  assert.equal(f.server.stats().domains, 0);
  assert.equal(await control(f.dom0, 'check'), 'OK');
});

test('xenstore domains: guests may not manage domains or use CONTROL; special watches reach a guest only if it can read the root', async () => {
  await using f = await fixture();
  const g = await f.guest(4);
  for (const [t, args] of [
    [XsType.INTRODUCE, ['9', '1', '1']], [XsType.RELEASE, ['4']], [XsType.RESUME, ['4']], [XsType.SET_TARGET, ['4', '0']],
    [XsType.IS_DOMAIN_INTRODUCED, ['4']], [XsType.CONTROL, ['check']],
  ] as const) {
    await rejectsWith(g.request(t, nulTerminated([...args])), 'EACCES');
  }
  await g.watch('@introduceDomain', 'i');
  assert.deepEqual(await g.nextEvent(), { path: '@introduceDomain', token: 'i' });
  await f.guest(8);
  await g.sync();
  assert.deepEqual(g.takeEvents(), []);
  await f.dom0.setPerms('/', ['n0', 'r4']);
  await f.guest(9);
  assert.deepEqual(await g.nextEvent(), { path: '@introduceDomain', token: 'i' });
  // A domain targeting dom0 is privileged.
  await f.dom0.request(XsType.SET_TARGET, nulTerminated(['8', '0']));
  const g8 = await f.connect(path.join(f.dir, 'domains', '8'));
  assert.equal(await control(g8, 'check'), 'OK');
  await g8.write('/anywhere', 'x');
});

test('xenstore quotas: entries per owning domain, moved by ownership changes; dom0 exempt', async () => {
  await using f = await fixture({ maxEntries: 5 });
  const g = await f.guest(5);
  await f.dom0.mkdir('/local/domain/5');
  await f.dom0.setPerms('/local/domain/5', ['n0', 'b5']); // dom0 owns the home, 5 writes in it
  await g.write('a/b/c', '1'); // 3 entries
  await g.write('d', '1');
  await g.write('e', '1');
  assert.equal(await control(f.dom0, 'quota', '5'), 'dom5 quota: 5/5');
  await rejectsWith(g.write('f', '1'), 'EQUOTA');
  await rejectsWith(g.mkdir('f'), 'EQUOTA');
  await rejectsWith(g.write('a/b/c/d', '1'), 'EQUOTA');
  await g.write('a/b/c', 'rewriting is not creating');
  await g.mkdir('a'); // existing: nothing created
  // Inside a transaction the count includes what it creates.
  await g.rm('e');
  const tx = await g.start();
  await g.write('t1', '1', tx);
  await rejectsWith(g.write('t2', '1', tx), 'EQUOTA');
  await g.end(tx);
  // dom0 takes ownership of a node: the count moves with it.
  await f.dom0.setPerms('/local/domain/5/d', ['n0', 'b5']);
  assert.equal(await control(f.dom0, 'quota', '5'), 'dom5 quota: 4/5');
  await g.write('g', '1');
  await rejectsWith(g.write('h', '1'), 'EQUOTA');
  // Removing frees.
  await g.rm('a');
  assert.equal(await control(f.dom0, 'quota', '5'), 'dom5 quota: 2/5');
  // dom0 is not held to it, even for nodes it makes that domain 5 owns.
  await f.dom0.setPerms('/local/domain/5', ['n5']); // the home itself: 3
  for (let i = 0; i < 8; i++) await f.dom0.write(`/local/domain/5/by0/${i}`, 'x'); // by0 and 8 children, inheriting n5
  assert.equal(await control(f.dom0, 'quota', '5'), 'dom5 quota: 12/5');
  await rejectsWith(g.write('more', '1'), 'EQUOTA');
  assert.equal(await control(f.dom0, 'check'), 'OK');
});

test('xenstore quotas: value size, transactions, requests per transaction and watches bind guests per domain; dom0 is exempt', async () => {
  await using f = await fixture({ maxValueBytes: 16, maxTransactions: 3, maxTransactionOps: 4, maxWatches: 3 });
  const g = await f.guest(5);
  const g2 = await f.connect(path.join(f.dir, 'domains', '5')); // a second connection of the same domain
  await f.dom0.mkdir('/local/domain/5');
  await f.dom0.setPerms('/local/domain/5', ['n5']);
  // Value size: everybody.
  await g.write('v', 'x'.repeat(16));
  await rejectsWith(g.write('v', 'x'.repeat(17)), 'E2BIG');
  await rejectsWith(f.dom0.write('/v', 'x'.repeat(17)), 'E2BIG');
  // Transactions: 3 per domain, over both connections.
  const t1 = await g.start();
  await g.start();
  await g2.start();
  await rejectsWith(g2.start(), 'EQUOTA');
  await rejectsWith(g.start(), 'EQUOTA');
  await g.end(t1, false);
  await g2.start();
  // Requests per transaction: 4.
  await g.request(XsType.RESET_WATCHES, nulTerminated([''])); // drops g's transactions
  const tx = await g.start();
  for (let i = 0; i < 4; i++) await g.write(`op${i}`, '1', tx);
  await rejectsWith(g.read('op0', tx), 'EQUOTA');
  await g.end(tx, false);
  const big = await f.dom0.start();
  for (let i = 0; i < 50; i++) await f.dom0.write(`/big/${i}`, '1', big);
  await f.dom0.end(big);
  // Watches: 3 per domain, over both connections.
  await g.watch('a', '1');
  await g.watch('b', '1');
  await g2.watch('c', '1');
  await rejectsWith(g2.watch('d', '1'), 'EQUOTA');
  await g.unwatch('a', '1');
  await g2.watch('d', '1');
  await Promise.all(Array.from({ length: 200 }, (_, i) => f.dom0.watch(`/x${i}`, 't')));
  // Outstanding requests: past maxOutstanding the socket is not read, nothing is refused.
  const answers = await Promise.all(Array.from({ length: 3000 }, (_, i) => g.read(i % 2 === 0 ? 'v' : '/local/domain/5/v')));
  assert.ok(answers.every((a) => a === 'x'.repeat(16)));
  assert.equal(await control(f.dom0, 'check'), 'OK');
});

test('xenstore sockets: the dom0 socket and the domain sockets are 0600 from the start, the domain directory 0700', async () => {
  await using f = await fixture();
  assert.equal(statSync(f.server.socketPath).mode & 0o777, 0o600);
  assert.equal(statSync(path.join(f.dir, 'domains')).mode & 0o777, 0o700);
  await f.guest(2);
  assert.equal(statSync(path.join(f.dir, 'domains', '2')).mode & 0o777, 0o600);
  // No temporary directory is left next to the socket.
  assert.deepEqual(readdirSync(f.dir).sort(), ['domains', 'xs.sock']);
  const watchesText = await control(f.dom0, 'watches');
  assert.equal(watchesText, '');
});

test('xenstore sockets: a socket that cannot be made private fails the start and leaves nothing behind', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xsdom-'));
  const store = await open();
  try {
    // The socket's directory is a file: no private directory can be made next to it.
    writeFileSync(path.join(dir, 'file'), '');
    await assert.rejects(startXenstoreServer(store, { socketPath: path.join(dir, 'file', 'xs.sock') }));
    // The domain directory is a file.
    await assert.rejects(startXenstoreServer(store, { socketPath: path.join(dir, 'xs.sock'), domainDir: path.join(dir, 'file') }), /not a directory|EEXIST|ENOTDIR/);
    assert.deepEqual(readdirSync(dir), ['file']);
    // And the store is still served by a server started properly afterwards.
    await using server = await startXenstoreServer(store, { socketPath: path.join(dir, 'xs.sock') });
    const c = await XsClient.connect(server.socketPath);
    await c.write('/after', '1');
    await c.close();
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('xenstore domains: a second server on a domain directory in use fails to start and leaves the first one\'s guest sockets; a dead server\'s are cleared', { timeout: 30_000 }, async () => {
  await using f = await fixture();
  const g = await f.guest(7);
  const guestSocket = path.join(f.dir, 'domains', '7');
  const other = await open();
  try {
    await assert.rejects(
      startXenstoreServer(other, { socketPath: path.join(f.dir, 'other.sock'), domainDir: path.join(f.dir, 'domains') }),
      /already listening on .*domains\/7/,
    );
    assert.ok(existsSync(guestSocket), 'the live server\'s guest socket is still there');
    assert.equal(fromUtf8(await g.request(XsType.GET_DOMAIN_PATH, nulTerminated(['7']))).replace(/\0$/, ''), '/local/domain/7', 'the guest is still served');
    // A socket left by a SIGKILLed server answers nobody: a new server clears it and starts.
    const stale = path.join(f.dir, 'stale-domains');
    mkdirSync(stale, { mode: 0o700 });
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path.join(stale, '9'))}, () => console.log('up'))`]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
    assert.ok(existsSync(path.join(stale, '9')), 'the killed process left its socket file');
    const s2 = await startXenstoreServer(other, { socketPath: path.join(f.dir, 'other.sock'), domainDir: stale });
    assert.ok(!existsSync(path.join(stale, '9')), 'the stale socket was removed');
    await s2.close();
  } finally {
    await other.close();
  }
});
