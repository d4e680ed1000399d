/**
 * Recovery replays the log with a transient tree builder (core/tree-builder.ts).
 * These tests check it against the path-copying replay it replaced
 * (`replayRecord`, still used by verify and repair) and against the live tree
 * before close, on random commit histories: puts, deletes, recursive deletes,
 * ephemeral and sequential creates, perms, values in value files, snapshots
 * part way, and torn tails.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import type { Node } from '../../src/core/tree.js';
import { readSnapshot } from '../../src/storage/snapshot.js';
import { realFs } from '../../src/storage/fs.js';
import { type DurableStorage, openStorage } from '../../src/storage/index.js';
import { listDir, replayRecord, walkLog } from '../../src/storage/recovery.js';
import { Driver, copyDir, dump, enc, files, removeDir, tempDir } from './helpers.js';

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
}

/** Random commits through the workspace (as the engine makes them). */
async function randomHistory(d: Driver, s: DurableStorage, seed: number, commits: number, snapshotAt: number): Promise<void> {
  const rnd = rng(seed);
  const names = ['a', 'b', 'c', 'sixteen-byte-nam', 'q'];
  const pathOf = (): string => {
    const depth = 1 + rnd(3);
    let p = '';
    for (let i = 0; i < depth; i++) p += '/' + names[rnd(names.length)]!;
    return p;
  };
  for (let c = 0; c < commits; c++) {
    if (c === snapshotAt) await s.snapshot(d.root, d.rev);
    const ops = 1 + rnd(rnd(6) === 0 ? 30 : 3);
    await d.commit((ws) => {
      for (let k = 0; k < ops; k++) {
        const p = pathOf();
        const kind = rnd(10);
        try {
          if (kind < 5) ws.set(p, enc(`v${c}.${k}`.repeat(1 + rnd(4))));
          else if (kind < 6) ws.create(p + '/e-', enc('eph'), { owner: `session-${rnd(3)}`, sequential: true });
          else if (kind < 8) ws.delete(p, { recursive: rnd(2) === 0 });
          else if (kind < 9) ws.setPerms(p, [`n${rnd(4)}`, 'r1']);
          else ws.set('/', enc(`root ${c}`));
        } catch {
          // NOT_FOUND, NOT_EMPTY, EXISTS: the op is skipped, as a client would see
        }
      }
      // Now and then a directory filled in one commit (the shape of a multi).
      if (rnd(8) === 0) for (let i = 0; i < 50; i++) ws.set(`/fill${c}/k${String(rnd(1000)).padStart(4, '0')}`, enc(`f${i}`));
    });
  }
}

/** The tree the old path-copying replay gives for `dir` (newest snapshot + log). */
async function oldReplay(dir: string, s: DurableStorage): Promise<Node | undefined> {
  const listing = await listDir(realFs, dir);
  const snap = listing.snapshots.at(-1);
  const loaded = snap === undefined ? undefined : await readSnapshot(realFs, path.join(dir, snap.name), s.values);
  let root = loaded?.root ?? (await import('../../src/core/tree.js')).emptyRoot();
  const walk = await walkLog(realFs, dir, listing.segments, loaded?.revision ?? 0, (rev, payload, at) => {
    root = replayRecord(root, rev, payload, at, undefined, s.values);
  }, false);
  return walk.problem === undefined ? root : undefined;
}

for (const inline of [1024, 4]) {
  test(`recovery with the tree builder gives the live tree and the old replay's tree, on random histories (inline values up to ${inline} bytes)`, { timeout: 300_000 }, async () => {
    for (let seed = 1; seed <= 12; seed++) {
      await using tmp = await tempDir();
      const dir = tmp.path;
      const opts = { segmentBytes: 8192, snapshotEveryBytes: Number.MAX_SAFE_INTEGER, snapshotEveryRecords: Number.MAX_SAFE_INTEGER, inlineValueBytes: inline, durability: 'none' as const };
      const s = await openStorage(dir, opts);
      const d = new Driver(s);
      await randomHistory(d, s, seed * 7919, 150, seed % 3 === 0 ? 70 : -1);
      const live = dump(d.root);
      const liveRev = d.rev;
      await s.close();
      const s2 = await openStorage(dir, opts);
      try {
        assert.equal(s2.revision, liveRev);
        assert.deepEqual(dump(s2.root), live, `seed ${seed}`);
        const old = await oldReplay(dir, s2);
        assert.ok(old !== undefined);
        assert.deepEqual(dump(old), live, `seed ${seed}: the old replay`);
        // The history's roots before commits with deletes or perms are the trees the old replay had then.
        for (const c of s2.takeHistory?.() ?? []) {
          if (c.before === undefined) {
            assert.ok(c.mutations.every((m) => m.op === 'put'), `commit ${c.rev} lacks its old root`);
            continue;
          }
          assert.equal(c.before.size, (await treeAt(dir, s2, c.rev - 1)).size, `size before ${c.rev}`);
        }
      } finally {
        await s2.close();
      }
    }
  });
}

/** The tree at `rev`, by the old replay stopped there (no snapshot). */
async function treeAt(dir: string, s: DurableStorage, rev: number): Promise<Node> {
  const listing = await listDir(realFs, dir);
  let root = (await import('../../src/core/tree.js')).emptyRoot();
  const snap = listing.snapshots.at(-1);
  if (snap !== undefined && snap.rev <= rev) root = (await readSnapshot(realFs, path.join(dir, snap.name), s.values)).root;
  await walkLog(realFs, dir, listing.segments, snap !== undefined && snap.rev <= rev ? snap.rev : 0, (r, payload, at) => {
    if (r <= rev) root = replayRecord(root, r, payload, at, undefined, s.values);
  }, false);
  return root;
}

test('recovery with the tree builder: a torn tail cut at every offset of the last records gives the tree of the commits before it', { timeout: 300_000 }, async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { durability: 'none' });
  const d = new Driver(s);
  const byRev = new Map<number, unknown[]>();
  for (let c = 0; c < 40; c++) {
    await randomHistory(d, s, 99 + c, 1, -1);
    byRev.set(d.rev, dump(d.root));
  }
  // The last commits: a recursive delete and an ephemeral create, each after a known tree.
  await d.commit((ws) => { ws.set('/t/x/y', enc('1')); ws.set('/t/x/z', enc('2')); });
  byRev.set(d.rev, dump(d.root));
  await d.commit((ws) => { ws.delete('/t', { recursive: true }); ws.create('/e', enc('e'), { owner: 'sess' }); });
  byRev.set(d.rev, dump(d.root));
  await s.close();
  const seg = (await files(dir, /^wal-.*\.log$/)).at(-1)!;
  const size = (await stat(path.join(dir, seg))).size;
  let lowest = Infinity;
  for (let cut = size - 1; cut > size - 400; cut -= 3) {
    const copy = await copyDir(dir);
    try {
      await truncate(path.join(copy, seg), cut);
      const r = await openStorage(copy, { durability: 'none' });
      try {
        const want = byRev.get(r.revision);
        lowest = Math.min(lowest, r.revision);
        assert.ok(want !== undefined, `cut at ${cut} of ${size}: revision ${r.revision}, head ${d.rev}`);
        assert.deepEqual(dump(r.root), want, `cut at ${cut}`);
        const old = await oldReplay(copy, r);
        assert.deepEqual(dump(old!), want, `cut at ${cut}: the old replay`);
      } finally {
        await r.close();
      }
    } finally {
      await removeDir(copy);
    }
  }
  assert.ok(lowest < d.rev - 1, 'the cuts reached back past the last two commits');
});
