import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rename, stat, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { LatchkeyError } from '../../src/core/errors.js';
import { Workspace } from '../../src/core/ops.js';
import { emptyRoot } from '../../src/core/tree.js';
import { openStorage, realFs } from '../../src/storage/index.js';
import { readSnapshot, writeSnapshot } from '../../src/storage/snapshot.js';
import { Driver, copyDir, dump, enc, files, flipBit, removeDir, tempDir } from './helpers.js';

function sampleTree(): Workspace {
  const ws = new Workspace(emptyRoot(), 1);
  ws.set('/', enc('root value'));
  ws.set('/a/b/c', enc('deep'));
  ws.set('/ünïcødé/名前/😀', enc('non-ascii names'));
  ws.set('/big', new Uint8Array(3 << 20).map((_, i) => i & 0xff)); // spans the 1 MiB block target
  ws.create('/q/item-', enc('x'), { sequential: true });
  ws.create('/q/item-', enc('y'), { sequential: true });
  ws.create('/eph', enc('mine'), { owner: 'session-7' });
  for (let i = 0; i < 3000; i++) ws.set(`/wide/${String(i).padStart(5, '0')}`, enc(`v${i}`));
  ws.set('/' + 'n'.repeat(200), enc('long ascii name'));
  ws.delete('/a/b/c');
  ws.setPerms('/wide', ['n0', 'r5', 'ü7']);
  ws.setPerms('/', []);
  return ws;
}

test('snapshot: round trip keeps every node, value and metadata', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const ws = sampleTree();
  const w = await writeSnapshot(realFs, dir, ws.root, 1);
  assert.equal(w.nodes, ws.root.size);
  const r = await readSnapshot(realFs, w.file);
  assert.equal(r.revision, 1);
  assert.equal(r.nodes, ws.root.size);
  assert.deepEqual(dump(r.root), dump(ws.root));
  assert.deepEqual(await files(dir, /tmp/), [], 'no temp file left behind');
});

test('snapshot: a bit flip anywhere in the file is CORRUPT naming the file and the damaged block', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const ws = new Workspace(emptyRoot(), 1);
  for (let i = 0; i < 200; i++) ws.set(`/d/${i}`, enc(`value ${i}`));
  const w = await writeSnapshot(realFs, dir, ws.root, 1);
  const size = (await stat(w.file)).size;
  const original = await readFile(w.file);
  for (let off = 0; off < size; off += 7) {
    await flipBit(w.file, off, off % 8);
    await assert.rejects(readSnapshot(realFs, w.file), (e: unknown) =>
      LatchkeyError.is(e, 'CORRUPT') && e.info?.['file'] === w.file && typeof e.info?.['offset'] === 'number', `flip at ${off}`);
    await writeFile(w.file, original);
  }
});

test('snapshot: every truncation is CORRUPT (no end block), never a smaller tree', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const w = await writeSnapshot(realFs, dir, sampleTree().root, 1);
  const size = (await stat(w.file)).size;
  const original = await readFile(w.file);
  const cuts = [0, 1, 39, 40, 41, 52, size >> 2, size >> 1, size - 17, size - 16, size - 1];
  for (const cut of cuts) {
    await truncate(w.file, cut);
    await assert.rejects(readSnapshot(realFs, w.file), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'), `cut at ${cut}`);
    await writeFile(w.file, original);
  }
  await writeFile(w.file, new Uint8Array(3), { flag: 'a' });
  await assert.rejects(readSnapshot(realFs, w.file), /data after the end block/);
});

/** A directory with two snapshots (at 40 and 80) and log to 100. */
async function twoSnapshots(opts: { segmentBytes?: number; snapshotsKept?: number } = {}): Promise<AsyncDisposable & { dir: string; expected: unknown[] }> {
  const tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, opts);
  const d = new Driver(s);
  await d.many(40);
  await s.snapshot(d.root, d.rev);
  await d.many(40);
  await s.snapshot(d.root, d.rev);
  await d.many(20);
  await s.close();
  return { dir, expected: dump(d.root), [Symbol.asyncDispose]: () => tmp[Symbol.asyncDispose]() };
}

test('snapshot: a damaged newest snapshot falls back to the older one plus the log, and is moved aside', async () => {
  await using fixture = await twoSnapshots({ segmentBytes: 4096 });
  const { dir, expected } = fixture;
  const snaps = await files(dir, /\.snap$/);
  assert.deepEqual(snaps.map((n) => Number(/(\d+)/.exec(n)![1])), [40, 80]);
  const newest = path.join(dir, snaps[1]!);
  const size = (await stat(newest)).size;
  await flipBit(newest, size >> 1, 3);
  const s = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s.revision, 100);
  assert.deepEqual(dump(s.root), expected);
  const st = s.stats();
  assert.equal(st['snapshotRevision'], 40);
  const damaged = st['damagedSnapshots'] as { file: string; movedTo: string }[];
  assert.equal(damaged.length, 1);
  assert.equal(damaged[0]!.file, newest);
  await s.close();
  assert.deepEqual(await files(dir, /\.snap\.damaged$/), [snaps[1] + '.damaged'], 'moved aside, not deleted');
});

test('snapshot: a truncated only snapshot falls back to the empty tree when the log starts at revision 1', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const d = new Driver(s);
  await d.many(30);
  await s.snapshot(d.root, d.rev);
  await d.many(5);
  await s.close();
  const snap = path.join(dir, (await files(dir, /\.snap$/))[0]!);
  await truncate(snap, (await stat(snap)).size - 20);
  const s2 = await openStorage(dir);
  assert.equal(s2.revision, 35);
  assert.deepEqual(dump(s2.root), dump(d.root));
  assert.equal(s2.stats()['snapshotRevision'], 0);
  await s2.close();
});

test('snapshot: when the log no longer covers the fallback, open fails CORRUPT naming the damaged snapshot', async () => {
  await using fixture = await twoSnapshots({ segmentBytes: 4096, snapshotsKept: 1 });
  const { dir } = fixture;
  const snaps = await files(dir, /\.snap$/);
  assert.equal(snaps.length, 1);
  const snap = path.join(dir, snaps[0]!);
  await flipBit(snap, 100);
  await assert.rejects(openStorage(dir, { segmentBytes: 4096 }), (e: unknown) =>
    LatchkeyError.is(e, 'CORRUPT') && e.message.includes(snap));
  assert.deepEqual(await files(dir, /\.snap$/), snaps, 'a failed open changes nothing');
});

test('snapshot: a leftover temp file from a crash mid-snapshot is ignored and removed', async () => {
  await using fixture = await twoSnapshots();
  const { dir, expected } = fixture;
  const snaps = await files(dir, /\.snap$/);
  const tmp = path.join(dir, snaps[1]!.replace('80', '99') + '.tmp');
  await writeFile(tmp, new Uint8Array(1000).fill(7));
  const s = await openStorage(dir);
  assert.deepEqual(dump(s.root), expected);
  await s.close();
  assert.deepEqual(await files(dir, /\.tmp$/), []);
});

test('snapshot: written while commits continue, it holds exactly the state of its revision', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir);
  const d = new Driver(s);
  const ws = new Workspace(d.root, 1);
  for (let i = 0; i < 50000; i++) ws.set(`/bulk/${i}`, enc('x'.repeat(40)));
  s.log.append(1, ws.mutations);
  await s.log.sync();
  d.root = ws.root;
  d.rev = 1;
  const at = d.root;
  const snapping = s.snapshot(at, 1);
  let during = 0;
  let done = false;
  void snapping.finally(() => { done = true; });
  while (!done) {
    await d.commit((w) => w.set('/bulk/0', enc(`during ${d.rev}`)));
    during++;
  }
  await snapping;
  assert.ok(during > 1, 'commits went on while the snapshot was written');
  const r = await readSnapshot(realFs, path.join(dir, (await files(dir, /\.snap$/))[0]!));
  assert.equal(r.revision, 1);
  assert.deepEqual(dump(r.root), dump(at));
  await s.close();
  const s2 = await openStorage(dir);
  assert.deepEqual(dump(s2.root), dump(d.root));
  await s2.close();
});

test('snapshot: a copy of the directory opens to the same state (files are self-contained)', async () => {
  await using fixture = await twoSnapshots();
  const { dir, expected } = fixture;
  const copy = await copyDir(dir);
  await rename(copy, copy + '-moved');
  const s = await openStorage(copy + '-moved');
  assert.deepEqual(dump(s.root), expected);
  await s.close();
  await removeDir(copy + '-moved');
});

test('snapshot: the fallback reads and verifies the log it needs (damage there is CORRUPT, not skipped)', async () => {
  await using fixture = await twoSnapshots({ segmentBytes: 4096 });
  const { dir } = fixture;
  const snaps = await files(dir, /\.snap$/);
  const segs = await files(dir, /^wal-/);
  // The first segment holds revisions just after the older snapshot (40), covered by the newer one (80).
  const victim = path.join(dir, segs[0]!);
  assert.ok(Number(/(\d+)/.exec(segs[1]!)![1]) <= 81);
  await flipBit(victim, 100);
  const s = await openStorage(dir, { segmentBytes: 4096 });
  assert.equal(s.revision, 100, 'the newest snapshot does not need the damaged segment');
  await s.close();
  await flipBit(path.join(dir, snaps[1]!), 60);
  await assert.rejects(openStorage(dir, { segmentBytes: 4096 }), (e: unknown) =>
    LatchkeyError.is(e, 'CORRUPT') && e.info?.['file'] === victim && e.message.includes(snaps[1]!));
});

test('snapshot: a file of inline values read into big buffers after its first block loads the same tree, bounded buffers too, and damage in any later block is still CORRUPT', { timeout: 300_000 }, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const ws = new Workspace(emptyRoot(), 1);
  // About 3 MiB: several 1 MiB blocks, values inline (the first block is mostly values).
  for (let d = 0; d < 30; d++) for (let i = 0; i < 1000; i++) ws.set(`/d${d}/n${String(i).padStart(15, '0')}`, enc(`${d}.${i}`.padEnd(100, 'x')));
  const w = await writeSnapshot(realFs, dir, ws.root, 1);
  const size = (await stat(w.file)).size;
  assert.ok(size > 3 * 1024 * 1024);
  const blocks = await readSnapshot(realFs, w.file);
  const whole = await readSnapshot(realFs, w.file, undefined, 0);
  assert.deepEqual(dump(whole.root), dump(ws.root));
  assert.deepEqual(dump(whole.root), dump(blocks.root));
  // The values of the later blocks are views of one buffer, not of one per block.
  const a = whole.root.children.get('d29')!.children.get('n000000000000999')!.value as Uint8Array;
  const b = whole.root.children.get('d20')!.children.get('n000000000000000')!.value as Uint8Array;
  assert.equal(a.buffer, b.buffer);
  assert.ok(a.buffer.byteLength > 2 * 1024 * 1024);
  const original = await readFile(w.file);
  for (const off of [Math.floor(size / 2), size - 40, size - 5]) {
    await flipBit(w.file, off, 3);
    await assert.rejects(readSnapshot(realFs, w.file, undefined, 0), (e: unknown) => LatchkeyError.is(e, 'CORRUPT') && e.info?.['file'] === w.file, `flip at ${off}`);
    await writeFile(w.file, original);
  }
  // Big buffers of a bounded size (a typed array cannot pass 4 GiB on Node 20): with 1.5 MiB ones,
  // the 1 MiB blocks go one per buffer, and the tree is the same.
  const chunked = await readSnapshot(realFs, w.file, undefined, 0, 1536 * 1024);
  assert.deepEqual(dump(chunked.root), dump(ws.root));
  const c1 = chunked.root.children.get('d29')!.children.get('n000000000000999')!.value as Uint8Array;
  assert.ok(c1.buffer.byteLength <= 1536 * 1024, 'no buffer beyond the bound');
  // A block larger than the bound is read on its own.
  const tiny = await readSnapshot(realFs, w.file, undefined, 0, 4096);
  assert.deepEqual(dump(tiny.root), dump(ws.root));
  await truncate(w.file, size - 100);
  await assert.rejects(readSnapshot(realFs, w.file, undefined, 0), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'));
  await assert.rejects(readSnapshot(realFs, w.file, undefined, 0, 1536 * 1024), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'));
});
