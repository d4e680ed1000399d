import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LatchkeyError } from '../../src/core/errors.js';
import { openStorage } from '../../src/storage/index.js';
import { RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, scanSegment } from '../../src/storage/wal.js';
import { Driver, copyDir, dump, enc, files, flipBit, removeDir, tempDir } from './helpers.js';

test('wal: commits survive close and reopen, across rotated segments', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { segmentBytes: 4096 });
  const d = new Driver(s);
  await d.many(200);
  // A group of several commits in one sync.
  for (let i = 0; i < 10; i++) d.stage((ws) => ws.set(`/group/${i}`, enc('g')));
  await s.log.sync();
  const expected = dump(d.root);
  await s.close();
  assert.ok((await files(dir, /^wal-/)).length > 3, 'rotation produced several segments');
  const s2 = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s2.revision, 210);
  assert.deepEqual(dump(s2.root), expected);
  assert.equal(s2.stats()['tornTails'], 0);
  // And it keeps going from there.
  const d2 = new Driver(s2);
  await d2.many(5);
  await s2.close();
  const s3 = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s3.revision, 215);
  assert.deepEqual(dump(s3.root), dump(d2.root));
  await s3.close();
});

test('wal: append refuses a revision out of order (a bug, not data)', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  assert.throws(() => s.log.append(2, []), (e: unknown) => LatchkeyError.is(e, 'INTERNAL'));
  await s.close();
});

/** A dir with `n` commits in one segment; returns the last record's offset and the file. */
async function logWith(n: number): Promise<AsyncDisposable & { dir: string; seg: string; lastOffset: number; size: number; expectedBefore: unknown[]; expectedAll: unknown[] }> {
  const tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const d = new Driver(s);
  await d.many(n - 1);
  const expectedBefore = dump(d.root);
  await d.many(1);
  const expectedAll = dump(d.root);
  await s.close();
  const seg = path.join(dir, (await files(dir, /^wal-/))[0]!);
  const buf = await readFile(seg);
  const scan = scanSegment(buf, seg, 1, true);
  assert.equal(scan.records.length, n);
  return { dir, seg, lastOffset: scan.records.at(-1)!.offset, size: buf.length, expectedBefore, expectedAll, [Symbol.asyncDispose]: () => tmp[Symbol.asyncDispose]() };
}

test('wal: a torn tail at every byte offset of the last record is cut off silently and counted', async () => {
  await using fixture = await logWith(20);
  const { dir, seg, lastOffset, size, expectedBefore } = fixture;
  assert.ok(size - lastOffset > RECORD_HEADER_SIZE);
  for (let cut = lastOffset + 1; cut < size; cut++) {
    const copy = await copyDir(dir);
    try {
      const file = path.join(copy, path.basename(seg));
      await truncate(file, cut);
      const s = await openStorage(copy);
      assert.equal(s.revision, 19, `cut at ${cut}`);
      assert.deepEqual(dump(s.root), expectedBefore);
      assert.equal(s.stats()['tornTails'], 1);
      assert.equal(s.stats()['tornBytes'], cut - lastOffset);
      // The torn bytes are gone from the file (open then logged its token ceiling there).
      const after = scanSegment(await readFile(file), file, 1, true);
      assert.equal(after.torn, undefined, 'the torn bytes are gone from the file');
      assert.equal(after.records.length, 19);
      assert.equal(after.lockRecords.at(-1)!.offset, lastOffset);
      // The log continues where the valid prefix ended.
      const d = new Driver(s);
      await d.commit((ws) => ws.set('/after', enc('tear')));
      await s.close();
      const s2 = await openStorage(copy);
      assert.equal(s2.revision, 20);
      assert.deepEqual(dump(s2.root), dump(d.root));
      assert.equal(s2.stats()['tornTails'], 0);
      await s2.close();
    } finally {
      await removeDir(copy);
    }
  }
});

test('wal: zeros after the last record (allocated, never written) are a torn tail', async () => {
  await using fixture = await logWith(5);
  const { dir, seg, size, expectedAll } = fixture;
  await writeFile(seg, new Uint8Array(5000), { flag: 'a' });
  const s = await openStorage(dir);
  assert.equal(s.revision, 5);
  assert.deepEqual(dump(s.root), expectedAll);
  assert.equal(s.stats()['tornBytes'], 5000);
  await s.close();
  const after = scanSegment(await readFile(seg), seg, 1, true);
  assert.equal(after.torn, undefined);
  assert.equal(after.lockRecords.at(-1)!.payloadEnd, after.size, 'the zeros are gone: the token ceiling logged at open follows the last commit');
  assert.equal(after.lockRecords.at(-1)!.offset, size);
});

test('wal: a single bit flip in any byte of a record in the middle fails open with CORRUPT naming file, offset and revision', async () => {
  await using fixture = await logWith(30);
  const { dir, seg } = fixture;
  const buf = await readFile(seg);
  const scan = scanSegment(buf, seg, 1, true);
  const mid = scan.records[14]!;
  assert.equal(mid.rev, 15);
  for (let off = mid.offset; off < mid.payloadEnd; off++) {
    const copy = await copyDir(dir);
    try {
      const file = path.join(copy, path.basename(seg));
      await flipBit(file, off, off % 8);
      await assert.rejects(openStorage(copy), (e: unknown) => {
        assert.ok(LatchkeyError.is(e, 'CORRUPT'), String(e));
        assert.equal(e.info?.['file'], file);
        assert.equal(e.info?.['offset'], mid.offset, `flip at ${off}`);
        assert.equal(e.info?.['revision'], 15);
        assert.match(e.message, /offset \d+ \(revision 15\)/);
        return true;
      });
    } finally {
      await removeDir(copy);
    }
  }
});

test('wal: a bit flip in the header of a non-last segment is CORRUPT; a missing middle segment is a revision gap', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { segmentBytes: 4096 });
  await new Driver(s).many(150);
  await s.close();
  const segs = await files(dir, /^wal-/);
  assert.ok(segs.length >= 3);
  const copy = await copyDir(dir);
  try {
    await flipBit(path.join(copy, segs[1]!), 20);
    await assert.rejects(openStorage(copy, { segmentBytes: 4096 }), (e: unknown) =>
      LatchkeyError.is(e, 'CORRUPT') && e.info?.['file'] === path.join(copy, segs[1]!) && e.info?.['offset'] === 0);
  } finally {
    await removeDir(copy);
  }
  await unlink(path.join(dir, segs[1]!));
  const expectedRev = Number(/wal-(\d+)/.exec(segs[1]!)![1]);
  await assert.rejects(openStorage(dir, { segmentBytes: 4096 }), (e: unknown) =>
    LatchkeyError.is(e, 'CORRUPT') && /revision gap/.test(e.message) && e.info?.['revision'] === expectedRev && e.info?.['file'] === path.join(dir, segs[2]!));
});

test('wal: a last segment whose header never reached the disk is dropped (it held no record)', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const d = new Driver(s);
  await d.many(3);
  await s.close();
  await writeFile(path.join(dir, 'wal-00000000000000000004.log'), new Uint8Array(SEGMENT_HEADER_SIZE - 5));
  const s2 = await openStorage(dir);
  assert.equal(s2.revision, 3);
  assert.equal(s2.stats()['tornTails'], 1);
  await new Driver(s2).many(2);
  await s2.close();
  const s3 = await openStorage(dir);
  assert.equal(s3.revision, 5);
  await s3.close();
});

test('wal: segments are removed only once a newer snapshot covers them, keeping the log back to the older snapshot', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { segmentBytes: 4096 });
  const d = new Driver(s);
  await d.many(100);
  const before = await files(dir, /^wal-/);
  await s.snapshot(d.root, d.rev);
  // One snapshot: the log must still reach back to revision 1 (fallback to the empty tree).
  assert.deepEqual(await files(dir, /^wal-/), before);
  await d.many(100);
  await s.snapshot(d.root, d.rev);
  const after = await files(dir, /^wal-/);
  assert.ok(after.length < before.length + 10, 'segments covered by the older snapshot were removed');
  const firstRev = Number(/wal-(\d+)/.exec(after[0]!)![1]);
  assert.ok(firstRev <= 101, 'the log still covers everything after the older snapshot (100)');
  await d.many(10);
  await s.snapshot(d.root, d.rev);
  assert.equal((await files(dir, /\.snap$/)).length, 2);
  await s.close();
  const s2 = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s2.revision, 210);
  assert.deepEqual(dump(s2.root), dump(d.root));
  await s2.close();
});

test('wal: log bytes written before a reopen still count toward the next automatic snapshot', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { snapshotEveryBytes: 3000 });
  const d = new Driver(s);
  await d.many(20);
  const bytes = s.log.bytesSinceSnapshot;
  assert.ok(bytes > 0 && !s.needsSnapshot());
  await s.close();
  const s2 = await openStorage(dir, { snapshotEveryBytes: 3000 });
  assert.equal(s2.log.bytesSinceSnapshot, bytes);
  const d2 = new Driver(s2);
  while (!s2.needsSnapshot()) await d2.many(1);
  await s2.snapshot(d2.root, d2.rev);
  assert.equal(s2.log.bytesSinceSnapshot, 0);
  await s2.close();
  const s3 = await openStorage(dir, { snapshotEveryBytes: 3000 });
  assert.equal(s3.log.bytesSinceSnapshot, 0);
  await s3.close();
});

test('wal: a bad checksum in the very last record cannot be told from a torn write, and is cut like one (documented)', async () => {
  await using fixture = await logWith(8);
  const { dir, seg, lastOffset, expectedBefore } = fixture;
  await flipBit(seg, lastOffset + RECORD_HEADER_SIZE + 2);
  const s = await openStorage(dir);
  assert.equal(s.revision, 7);
  assert.deepEqual(dump(s.root), expectedBefore);
  assert.equal(s.stats()['tornTails'], 1);
  await s.close();
});

test('wal: a bad record header with non-zero bytes after it in the last segment is damage, not a torn tail', async () => {
  await using fixture = await logWith(8);
  const { dir, seg, lastOffset } = fixture;
  await flipBit(seg, lastOffset + 9);
  await assert.rejects(openStorage(dir), (e: unknown) =>
    LatchkeyError.is(e, 'CORRUPT') && e.info?.['offset'] === lastOffset && e.info?.['revision'] === 8);
});

test('wal: a segment that holds only lock records is replaced, not duplicated, when the log rotates', async () => {
  // Lock events are synced without a commit, so a segment can fill (or a
  // snapshot can ask for rotation) before any commit record lands in it: its
  // successor would have the same first revision and the same name (EEXIST,
  // and the store read-only). Seen as a flaky close in test/http.
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { segmentBytes: 4096 });
  const d = new Driver(s);
  await d.many(3);
  for (let token = 1; token <= 400; token++) {
    s.log.appendLock({ t: 'hold', token, path: `/locks/${token % 9}` });
    if (token > 1) s.log.appendLock({ t: 'unhold', token: token - 1 });
    await s.log.sync(); // lock-only syncs: well past one segment of 4 KiB
  }
  s.log.appendLock({ t: 'unhold', token: 400 });
  await s.log.sync();
  await d.many(2); // threw EEXIST before the fix: the commit's new segment had the lock-only one's name
  assert.ok((await stat(path.join(dir, (await files(dir, /^wal-/)).at(-1)!))).size < 4096 + 512, 'the lock-only segment did not grow without bound');
  await s.close();
  const s2 = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s2.revision, 5);
  assert.deepEqual(dump(s2.root), dump(d.root));
  assert.deepEqual(s2.locks.taints, [], 'every hold was released, and the reopened log says so');
  assert.ok(s2.locks.tokenFloor >= 400, 'tokens of the next run start above the last one logged');
  await s2.close();
});

test('wal: a snapshot is due after snapshotEveryRecords records, or half the tree\'s node count when that is more', async () => {
  await using tmp = await tempDir();
  const s = await openStorage(tmp.path, { snapshotEveryRecords: 10 });
  const d = new Driver(s);
  await d.many(9);
  assert.ok(!s.needsSnapshot(), '9 records');
  await d.many(1);
  assert.ok(s.needsSnapshot(), '10 records');
  assert.ok(!s.needsSnapshot(100), 'a tree of 100 nodes: due at 50 records');
  await d.many(40);
  assert.ok(s.needsSnapshot(100));
  await s.snapshot(d.root, d.rev);
  assert.ok(!s.needsSnapshot());
  assert.equal(s.stats().recordsSinceSnapshot, 0);
  await assert.rejects(openStorage(tmp.path + '-x', { snapshotEveryRecords: 0 }), /snapshotEveryRecords/);
  await s.close();
});
