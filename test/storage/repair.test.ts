import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { LatchkeyError } from '../../src/core/errors.js';
import { openStorage, repair } from '../../src/storage/index.js';
import { scanSegment } from '../../src/storage/wal.js';
import { Driver, dump, files, flipBit, tempDir } from './helpers.js';

test('repair: a flipped bit in the middle of the log keeps the valid prefix, moves the damage aside, reports the revisions lost', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const d = new Driver(s);
  await d.many(14);
  const at14 = dump(d.root);
  await d.many(16);
  await s.close();
  const seg = path.join(dir, (await files(dir, /^wal-/))[0]!);
  const original = await readFile(seg);
  const rec15 = scanSegment(original, seg, 1, true).records[14]!;
  await flipBit(seg, rec15.payloadStart + 3);
  const damaged = await readFile(seg);
  await assert.rejects(openStorage(dir), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'));

  const report = await repair(dir);
  assert.equal(report.clean, false);
  assert.equal(report.revision, 14);
  assert.deepEqual(report.lost, { from: 15, to: 30 });
  assert.deepEqual(report.movedAside.map((m) => m.to), [seg + '.damaged']);
  assert.deepEqual(report.truncated, [{ file: seg, keptBytes: rec15.offset }]);
  assert.deepEqual(await readFile(seg + '.damaged'), damaged, 'the damaged file is kept byte for byte');

  const s2 = await openStorage(dir);
  assert.equal(s2.revision, 14);
  assert.deepEqual(dump(s2.root), at14);
  await new Driver(s2).many(3);
  await s2.close();
  const again = await repair(dir);
  assert.equal(again.clean, true);
  assert.equal(again.revision, 17);
  assert.equal(again.lost, undefined);
});

test('repair: damage in a segment the newest snapshot covers is found and moved aside, nothing lost', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { segmentBytes: 4096 });
  const d = new Driver(s);
  await d.many(40);
  await s.snapshot(d.root, d.rev);
  await d.many(100);
  await s.snapshot(d.root, d.rev);
  await d.many(20);
  await s.close();
  const segs = await files(dir, /^wal-/);
  const firstRevs = segs.map((n) => Number(/(\d+)/.exec(n)![1]));
  // A segment wholly below the newest snapshot (140), followed by one that starts by 141.
  const i = firstRevs.findIndex((r, k) => k + 1 < firstRevs.length && firstRevs[k + 1]! <= 141 && r > 0);
  assert.ok(i >= 0, `layout ${firstRevs.join(',')}`);
  const victim = path.join(dir, segs[i]!);
  const rec = scanSegment(await readFile(victim), victim, firstRevs[i]!, false).records[1]!;
  await flipBit(victim, rec.payloadStart);
  // Open does not need (nor read) a segment the snapshot covers; repair checks everything.
  const s1 = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s1.revision, 160);
  await s1.close();
  const report = await repair(dir);
  assert.equal(report.lost, undefined);
  assert.equal(report.revision, 160);
  assert.deepEqual(report.movedAside.map((m) => m.file), [victim]);
  const s2 = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s2.revision, 160);
  assert.deepEqual(dump(s2.root), dump(d.root));
  await s2.close();
});

test('repair: a damaged snapshot is moved aside; refuses to run on a directory that is open', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const d = new Driver(s);
  await d.many(10);
  await s.snapshot(d.root, d.rev);
  await assert.rejects(repair(dir), (e: unknown) => LatchkeyError.is(e, 'LOCKED'));
  await s.close();
  const snap = path.join(dir, (await files(dir, /\.snap$/))[0]!);
  await flipBit(snap, 50);
  const report = await repair(dir);
  assert.equal(report.revision, 10);
  assert.equal(report.lost, undefined);
  assert.deepEqual(report.movedAside.map((m) => m.to), [snap + '.damaged']);
  const s2 = await openStorage(dir);
  assert.deepEqual(dump(s2.root), dump(d.root));
  await s2.close();
});

test('repair: a missing segment (revision gap) keeps the log up to the gap and moves the rest aside', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { segmentBytes: 4096 });
  const d = new Driver(s);
  await d.many(150);
  await s.close();
  const segs = await files(dir, /^wal-/);
  assert.ok(segs.length >= 3);
  const gapAt = Number(/(\d+)/.exec(segs[1]!)![1]);
  const third = Number(/(\d+)/.exec(segs[2]!)![1]);
  await rename(path.join(dir, segs[1]!), path.join(dir, 'elsewhere'));
  await assert.rejects(openStorage(dir), (e: unknown) => LatchkeyError.is(e, 'CORRUPT') && /revision gap/.test(e.message));
  const report = await repair(dir);
  assert.equal(report.revision, gapAt - 1);
  assert.deepEqual(report.lost, { from: gapAt, to: 150 });
  assert.ok(report.movedAside.some((m) => m.file === path.join(dir, segs[2]!)));
  assert.ok(third > gapAt);
  const s2 = await openStorage(dir);
  assert.equal(s2.revision, gapAt - 1);
  await s2.close();
});
