/**
 * The commit pipeline against a log whose syncs complete when the test says:
 * group commit, visibility only after sync, ordered acknowledgement, and
 * what a failed sync does (fail the group and everything behind it, roll
 * back, read-only, never report success).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/core/errors.js';
import { type Mutation, emptyRoot } from '../../src/core/tree.js';
import { Engine } from '../../src/engine/engine.js';
import { EmbeddedStore } from '../../src/engine/store.js';
import type { CommitLog, Storage, StorageStats } from '../../src/storage/storage.js';

class ManualLog implements CommitLog {
  appended: Array<{ rev: number; mutations: readonly Mutation[] }> = [];
  syncs: Array<{ upto: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  bytesSinceSnapshot = 0;
  readonly unsynced = false;
  appendLock(): void {}
  append(rev: number, mutations: readonly Mutation[]): void {
    this.appended.push({ rev, mutations });
  }
  sync(): Promise<void> {
    return new Promise((resolve, reject) => this.syncs.push({ upto: this.appended.at(-1)!.rev, resolve, reject }));
  }
}

function manualStore(): { store: EmbeddedStore; log: ManualLog } {
  const log = new ManualLog();
  const storage: Storage = {
    root: emptyRoot(), revision: 0, log, locks: { tokenFloor: 0, ceiling: 1 << 20, taints: [], broken: [] },
    needsSnapshot: () => false, snapshot: async () => {}, stats: () => ({}) as StorageStats, close: async () => {},
  };
  return { store: new EmbeddedStore(new Engine({ storage })), log };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('pipeline: a commit is visible and acknowledged only after its sync', async () => {
  const { store, log } = manualStore();
  let acked = false;
  const p = store.set('/a', '1').then((rev) => { acked = true; return rev; });
  await tick();
  assert.equal(log.syncs.length, 1);
  assert.equal(acked, false);
  assert.equal(await store.get('/a'), undefined, 'not visible before fsync');
  assert.equal(store.revision, 0);
  log.syncs[0]!.resolve();
  assert.equal(await p, 1);
  assert.equal((await store.get('/a'))!.text(), '1');
});

test('pipeline: commits arriving during a sync form the next group, validated against the pending head', async () => {
  const { store, log } = manualStore();
  const first = store.set('/k', 'v1');
  await tick();
  assert.equal(log.syncs.length, 1);
  // while the first sync is in flight: a conditional write sees the pending head
  const group2 = [store.set('/k', 'v2', { ifVersion: 1 }), store.create('/x'), store.set('/y', '1')];
  await tick();
  assert.equal(log.syncs.length, 1, 'one sync in flight at a time');
  assert.deepEqual(log.appended.map((a) => a.rev), [1, 2, 3, 4]);
  log.syncs[0]!.resolve();
  await first;
  await tick();
  assert.equal(log.syncs.length, 2, 'the next group syncs together');
  assert.equal(log.syncs[1]!.upto, 4);
  assert.equal(store.revision, 1);
  log.syncs[1]!.resolve();
  assert.deepEqual(await Promise.all(group2), [2, '/x', 4]);
  assert.equal(store.revision, 4);
  assert.equal(store.stats().commitsPerSync, 2);
});

test('pipeline: a failed answer waits until what it observed is durable', async () => {
  const { store, log } = manualStore();
  void store.set('/k', 'v1');
  await tick();
  let answered = false;
  const p = store.create('/k').catch((e: unknown) => { answered = true; return e; });
  await tick();
  assert.equal(answered, false, 'EXISTS would reveal an unsynced commit');
  log.syncs[0]!.resolve();
  assert.ok(LatchkeyError.is(await p, 'EXISTS'));
});

test('pipeline: a failed sync fails its group and every commit behind it, rolls back, and turns read-only', async () => {
  const { store, log } = manualStore();
  const ok = store.set('/durable', '1');
  await tick();
  log.syncs[0]!.resolve();
  await ok;
  const a = store.set('/a', '1');
  await tick();
  const b = store.set('/b', '1'); // queued behind the failing sync
  const sawA = store.create('/a'); // answers EXISTS from the pending head only if that becomes durable
  const eio = new LatchkeyError('READ_ONLY', 'EIO on fsync');
  log.syncs[1]!.reject(eio);
  await assert.rejects(a, (e: unknown) => e === eio);
  await assert.rejects(b, (e: unknown) => e === eio);
  await assert.rejects(sawA, (e: unknown) => e === eio);
  assert.equal(await store.get('/a'), undefined);
  assert.equal((await store.get('/durable'))!.text(), '1', 'acknowledged data stays');
  await assert.rejects(store.set('/c', '1'), (e: unknown) => LatchkeyError.is(e, 'READ_ONLY'));
  assert.match(String(store.stats().readOnly), /EIO/);
  assert.equal(log.syncs.length, 2, 'a failed sync is never retried');
  assert.equal(store.revision, 1);
});

test('pipeline: transactions commit through the same path', async () => {
  const { store, log } = manualStore();
  const tx = store.begin();
  await tx.set('/t', 'x');
  const c = tx.commit();
  await tick();
  assert.equal(await store.get('/t'), undefined);
  log.syncs[0]!.resolve();
  assert.equal((await c).revision, 1);
  assert.equal((await store.get('/t'))!.text(), 'x');
});
