import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import { FaultyFs, openStorage } from '../../src/storage/index.js';
import { Driver, dump, enc, files, removeDir, tempDir } from './helpers.js';

function readOnlyWith(errno: string) {
  return (e: unknown): boolean => {
    assert.ok(LatchkeyError.is(e, 'READ_ONLY'), String(e));
    assert.equal(e.info?.['errno'], errno);
    return true;
  };
}

for (const [what, fault] of [
  ['ENOSPC on the log write (after a partial write)', { op: 'write', code: 'ENOSPC', file: /^wal-/, partialBytes: 30 }],
  ['EIO on the log write', { op: 'write', code: 'EIO', file: /^wal-/ }],
  ['EIO on fdatasync', { op: 'sync', code: 'EIO', file: /^wal-/ }],
  ['ENOSPC on fdatasync', { op: 'sync', code: 'ENOSPC', file: /^wal-/ }],
] as const) {
  test(`faults: ${what} fails the group, the log accepts nothing more, the fsync is never retried, nothing acknowledged is lost`, async () => {
    const dir = await tempDir();
    try {
      const fs = new FaultyFs();
      const s = await openStorage(dir, { fs });
      const d = new Driver(s);
      await d.many(5);
      const acked = dump(d.root);
      fs.inject({ ...fault });
      d.stage((ws) => ws.set('/doomed', enc('never acknowledged')));
      d.stage((ws) => ws.set('/doomed2', enc('never acknowledged')));
      await assert.rejects(s.log.sync(), (e: unknown) => {
        readOnlyWith(fault.code)(e);
        assert.deepEqual((e as LatchkeyError).info?.['revisions'], [6, 7]);
        return true;
      });
      const syncCalls = fs.calls.sync;
      const writeCalls = fs.calls.write;
      assert.throws(() => s.log.append(8, []), readOnlyWith(fault.code));
      await assert.rejects(s.log.sync(), readOnlyWith(fault.code));
      assert.equal(fs.calls.sync, syncCalls, 'no fsync after the failure');
      assert.equal(fs.calls.write, writeCalls, 'no write after the failure');
      assert.match(String(s.stats()['readOnly']), new RegExp(fault.code));
      await s.close();
      // The disk is healthy again: everything acknowledged is there, the failed group is not.
      const s2 = await openStorage(dir);
      assert.equal(s2.revision, 5);
      assert.deepEqual(dump(s2.root), acked);
      await s2.close();
    } finally {
      await removeDir(dir);
    }
  });
}

test('faults: ENOSPC creating a new segment at rotation fails the group and turns the log read-only', async () => {
  const dir = await tempDir();
  try {
    const fs = new FaultyFs();
    const s = await openStorage(dir, { fs, segmentBytes: 4096 });
    const d = new Driver(s);
    fs.inject({ op: 'open', code: 'ENOSPC', file: /^wal-0+[1-9]\d*\.log$/, after: 0 });
    let failedAt = 0;
    try {
      for (let i = 0; i < 500; i++) {
        failedAt = d.rev + 1;
        await d.many(1);
      }
      assert.fail('rotation never failed');
    } catch (e) {
      readOnlyWith('ENOSPC')(e);
    }
    await s.close();
    const s2 = await openStorage(dir, { segmentBytes: 4096 });
    assert.equal(s2.revision, failedAt - 1);
    await s2.close();
  } finally {
    await removeDir(dir);
  }
});

test('faults: a failed snapshot (EIO on rename) leaves no file behind and the log keeps working', async () => {
  const dir = await tempDir();
  try {
    const fs = new FaultyFs();
    const s = await openStorage(dir, { fs });
    const d = new Driver(s);
    await d.many(10);
    fs.inject({ op: 'rename', code: 'EIO', file: /\.snap$/, times: 1 });
    await assert.rejects(s.snapshot(d.root, d.rev), (e: unknown) => LatchkeyError.is(e, 'IO') && e.info?.['errno'] === 'EIO');
    assert.equal(s.stats()['readOnly'], undefined, 'a failed snapshot does not stop commits');
    assert.deepEqual(await files(dir, /snap/), []);
    await d.many(3);
    await s.snapshot(d.root, d.rev);
    assert.equal((await files(dir, /\.snap$/)).length, 1);
    await s.close();
    const s2 = await openStorage(dir);
    assert.deepEqual(dump(s2.root), dump(d.root));
    await s2.close();
  } finally {
    await removeDir(dir);
  }
});

test('faults: through the store, EIO on fsync fails the commit, the store turns read-only and says why, reads go on', async () => {
  const dir = await tempDir();
  try {
    const fs = new FaultyFs();
    const store = await open(dir, { fs });
    await store.set('/a', 'one');
    await store.set('/b', 'two');
    fs.inject({ op: 'sync', code: 'EIO', file: /^wal-/ });
    const results = await Promise.allSettled([store.set('/c', 'x'), store.set('/d', 'y'), store.set('/e', 'z')]);
    for (const r of results) {
      assert.equal(r.status, 'rejected');
      assert.ok(LatchkeyError.is((r as PromiseRejectedResult).reason, 'READ_ONLY'));
    }
    await assert.rejects(store.set('/f', 'later'), (e: unknown) => LatchkeyError.is(e, 'READ_ONLY'));
    assert.match(String(store.stats().readOnly), /EIO/);
    assert.equal((await store.get('/a'))?.text(), 'one');
    assert.equal(await store.get('/c'), undefined, 'a failed commit is never visible');
    await store.close();
    const again = await open(dir);
    assert.equal((await again.get('/b'))?.text(), 'two');
    assert.equal(await again.get('/c'), undefined);
    assert.equal(again.revision, 2);
    await again.close();
  } finally {
    await removeDir(dir);
  }
});
