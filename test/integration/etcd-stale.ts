/**
 * Writes computed on a head that lags the cluster (backend.ts write(): no
 * barrier before the Txn). Two stores of one prefix in this process; B's
 * mirror is made deaf (its watch cancelled), so B computes its next write on
 * a head without A's acknowledged writes. Whatever the write read must be
 * pinned by its Txn's compares (commit.ts), and an answer that writes
 * nothing must come from a fresh head. The XenStore cases (permissions,
 * EACCES/ENOENT from a stale head): etcd-xenstore.ts. Needs a cluster:
 * test/integration/etcd.sh runs it with LK_ETCD_ENDPOINTS set.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { LatchkeyError } from '../../src/core/errors.js';
import type { EtcdBackend } from '../../src/etcd/backend.js';
import { type EtcdStore, connectEtcd } from '../../src/etcd/store.js';

const endpoints = process.env.LK_ETCD_ENDPOINTS;
if (endpoints === undefined) throw new Error('set LK_ETCD_ENDPOINTS=host:port,host:port,… (test/integration/etcd.sh does)');

const backendOf = (s: EtcdStore): EtcdBackend => (s as unknown as { backend: EtcdBackend }).backend;

/** Stops a store's mirror from hearing etcd: it moves only by a barrier's (or a failed Txn's) catch-up. */
async function deafen(s: EtcdStore): Promise<void> {
  const m = backendOf(s).mirror as unknown as { watcher: { cancel(): Promise<void> } | undefined };
  await m.watcher?.cancel();
}

async function two(): Promise<{ a: EtcdStore; b: EtcdStore; done(): Promise<void> }> {
  const prefix = `/lk-stale-${randomBytes(6).toString('hex')}`;
  const url = `etcd://${endpoints}/?prefix=${prefix}&ttl=8`;
  const a = await connectEtcd(url);
  const b = await connectEtcd(url);
  return {
    a, b,
    async done() {
      await a.close().catch(() => {});
      await b.close().catch(() => {});
      const raw = new Etcd3({ hosts: endpoints!.split(',').map((h) => `http://${h}`) });
      await raw.delete().prefix(prefix + '/').exec();
      await raw.delete().key(prefix + '/r').exec();
      raw.close();
    },
  };
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'OK';
  } catch (e) {
    if (e instanceof LatchkeyError) return e.code;
    throw e;
  }
};

test('a multi\'s check op on a stale head: a version moved through another store fails it', { timeout: 120_000 }, async () => {
  const t = await two();
  try {
    await t.a.set('/c', 'v1');
    await t.a.set('/o/seen', 's');
    assert.equal((await t.b.get('/c'))?.stat.version, 1, 'B has seen version 1');
    await deafen(t.b);
    await t.a.set('/c', 'v2'); // acknowledged: version 2
    const r = await codeOf(t.b.multi([{ op: 'check', path: '/c', version: 1 }, { op: 'set', path: '/o/other', value: 'x' }]));
    assert.equal(r, 'CONFLICT', 'the check is judged on a head holding version 2');
    assert.equal(await t.a.get('/o/other'), undefined, 'nothing written');
    // And the converse: a check that holds on the fresh head passes.
    await t.b.multi([{ op: 'check', path: '/c', version: 2 }, { op: 'set', path: '/o/other', value: 'y' }]);
    assert.equal(await t.a.exists('/o/other'), true);
  } finally {
    await t.done();
  }
});

test('a multi\'s delete that deleted nothing on a stale head: the node created through another store is deleted', { timeout: 120_000 }, async () => {
  const t = await two();
  try {
    // Under directories that exist (not the root, whose children record a creation under it moves).
    await t.a.set('/d/seen', 's');
    await t.a.set('/e/seen', 's');
    assert.equal(await t.b.exists('/e/seen'), true, 'B has seen both');
    await deafen(t.b);
    await t.a.set('/d/late', 'l');
    const r = await t.b.multi([{ op: 'delete', path: '/d/late' }, { op: 'set', path: '/e/mark', value: 'm' }]);
    assert.deepEqual(r.results, [true, undefined], 'the delete answers from a head holding /d/late');
    assert.equal(await t.a.exists('/d/late'), false);
  } finally {
    await t.done();
  }
});

test('an error of a plain write on a stale head is answered from a fresh one', { timeout: 120_000 }, async () => {
  const t = await two();
  try {
    await t.a.set('/e', '1');
    assert.equal((await t.b.get('/e'))?.stat.version, 1);
    await deafen(t.b);
    await t.a.set('/e', '2');
    // On B's stale head ifVersion 2 fails (version 1); on the fresh one it holds.
    await t.b.set('/e', '3', { ifVersion: 2 });
    assert.equal((await t.a.get('/e'))?.stat.version, 3);
  } finally {
    await t.done();
  }
});
