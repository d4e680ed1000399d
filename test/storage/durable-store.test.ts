import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import { files, tempDir } from './helpers.js';

test('durable store: open(dir) keeps data, revisions and metadata across close and reopen, for both durabilities', async () => {
  for (const durability of ['fsync', 'none'] as const) {
    await using tmp = await tempDir();
    const dir = tmp.path;
    const a = await open(dir, { durability });
    await a.set('/cfg/name', 'alpha');
    await a.set('/cfg/name', 'beta');
    await a.multi([{ op: 'create', path: '/q/job-', value: '1', sequential: true }, { op: 'set', path: '/x', value: 'y' }]);
    await a.transaction(async (tx) => { await tx.set('/t/1', 'one'); await tx.delete('/x'); });
    const before = await a.get('/cfg/name');
    const rev = a.revision;
    await a.close();
    const b = await open(dir, { durability });
    assert.equal(b.revision, rev);
    const after = await b.get('/cfg/name');
    assert.equal(after?.text(), 'beta');
    assert.deepEqual(after?.stat, before?.stat);
    assert.deepEqual([...await b.list('/q')], ['job-0000000000']);
    assert.equal(await b.get('/x'), undefined);
    assert.equal((await b.get('/t/1'))?.text(), 'one');
    assert.equal(b.stats()['storage'] !== undefined, true);
    await b.close();
  }
});

test('durable store: store.snapshot() writes a snapshot, automatic snapshots follow the log size, reopen uses them', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const a = await open(dir, { snapshotEveryBytes: 4000, segmentBytes: 4096 });
  for (let i = 0; i < 400; i++) await a.set(`/k/${i % 50}`, `value ${i}`);
  await a.snapshot();
  const snaps = await files(dir, /\.snap$/);
  assert.ok(snaps.length >= 1 && snaps.length <= 2, `snapshots: ${snaps.join(', ')}`);
  const st = a.stats() as unknown as { snapshots: number; storage: { snapshots: number } };
  assert.ok(st.storage.snapshots >= 2, 'automatic snapshots were taken before the explicit one');
  await a.close();
  const b = await open(dir);
  assert.equal(b.revision, 400);
  assert.equal((await b.get('/k/49'))?.text(), 'value 399');
  const s = (b.stats() as unknown as { storage: { snapshotRevision: number; replayedRecords: number } }).storage;
  assert.equal(s.snapshotRevision, 400);
  assert.equal(s.replayedRecords, 0);
  await b.close();
});

test('durable store: ephemeral nodes of a previous run are gone at reopen (from the log and from a snapshot); a second open fails LOCKED', async () => {
  for (const viaSnapshot of [false, true]) {
    await using tmp = await tempDir();
    const dir = tmp.path;
    const a = await open(dir);
    const session = a.session();
    await session.create('/members/m1', 'here', { ephemeral: true });
    await a.set('/stays', 'yes');
    if (viaSnapshot) await a.snapshot();
    await assert.rejects(open(dir), (e: unknown) => LatchkeyError.is(e, 'LOCKED') && e.info?.['pid'] === process.pid);
    // Simulate the process dying: the storage is closed under the session's feet.
    const internals = (a as unknown as { internals: { storage: { close(): Promise<void> } } }).internals;
    await internals.storage.close();
    const b = await open(dir);
    const st = (b.stats() as unknown as { storage: { replayedRecords: number } }).storage;
    assert.equal(st.replayedRecords, viaSnapshot ? 0 : 2);
    assert.equal(await b.get('/members/m1'), undefined);
    assert.deepEqual([...await b.list('/members')], []);
    assert.equal((await b.get('/stays'))?.text(), 'yes');
    await b.close();
  }
});

test('durable store: automatic snapshots also follow the count of records (tiny records of values on disk), so reopen replays a bounded log', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  // Every value on disk: each record is a few dozen bytes, far below snapshotEveryBytes.
  const a = await open(dir, { inlineValueBytes: 0, snapshotEveryRecords: 50 });
  for (let i = 0; i < 400; i++) await a.set(`/k/${i % 5}`, `value ${i} `.repeat(20));
  const st = (a.stats() as unknown as { storage: { snapshots: number; bytesSinceSnapshot: number; recordsSinceSnapshot: number } }).storage;
  assert.ok(st.snapshots >= 2, `automatic snapshots by record count: ${st.snapshots}`);
  await a.close();
  const b = await open(dir, { inlineValueBytes: 0 });
  assert.equal(b.revision, 400);
  assert.equal((await b.get('/k/4'))?.text(), 'value 399 '.repeat(20));
  const s = (b.stats() as unknown as { storage: { replayedRecords: number; recordsSinceSnapshot: number } }).storage;
  // A snapshot is due at 50 records; one may still be written when the next is due.
  assert.ok(s.replayedRecords < 120, `reopen replayed ${s.replayedRecords} of 400 records`);
  assert.equal(s.recordsSinceSnapshot, s.replayedRecords);
  await b.close();
});
