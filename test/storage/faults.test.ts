import { statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import { FaultyFs, openStorage } from '../../src/storage/index.js';
import { Driver, dump, enc, files, tempDir } from './helpers.js';

function readOnlyWith(errno: string) {
  return (e: unknown): boolean => {
    assert.ok(LatchkeyError.is(e, 'READ_ONLY'), String(e));
    assert.equal(e.info?.['errno'], errno);
    return true;
  };
}

for (const [what, fault, durability] of [
  ['ENOSPC on the log write (after a partial write)', { op: 'write', code: 'ENOSPC', file: /^wal-/, partialBytes: 30 }, 'fsync'],
  ['EIO on the log write', { op: 'write', code: 'EIO', file: /^wal-/ }, 'fsync'],
  ['EIO on fdatasync', { op: 'sync', code: 'EIO', file: /^wal-/ }, 'fsync'],
  ['ENOSPC on fdatasync', { op: 'sync', code: 'ENOSPC', file: /^wal-/ }, 'fsync'],
  // durability 'none' writes on the event loop's thread (wal.ts note 3): the same failure, the same outcome.
  ["ENOSPC on the synchronous log write of durability 'none' (after a partial write)", { op: 'write', code: 'ENOSPC', file: /^wal-/, partialBytes: 30 }, 'none'],
  ["EIO on the synchronous log write of durability 'none'", { op: 'write', code: 'EIO', file: /^wal-/ }, 'none'],
] as const) {
  test(`faults: ${what} fails the group, the log accepts nothing more, the fsync is never retried, nothing acknowledged is lost`, async () => {
    await using tmp = await tempDir();
    const dir = tmp.path;
    const fs = new FaultyFs();
    const s = await openStorage(dir, { fs, durability });
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
  });
}

test('faults: ENOSPC creating a new segment at rotation fails the group and turns the log read-only', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
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
});

test('faults: a failed snapshot (EIO on rename) leaves no file behind and the log keeps working', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
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
});

test('faults: through the store, EIO on fsync fails the commit, the store turns read-only and says why, reads go on', async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
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
});

/**
 * Under load: 16 concurrent committers on a store with small segments and
 * frequent snapshots (so rotations, snapshot writes and renames happen
 * throughout), and one seeded fault (ENOSPC or EIO on a log write, an
 * fsync, a segment creation, or a snapshot rename) striking at a random
 * call. Every failed commit fails with a typed error (READ_ONLY, or IO for
 * a snapshot); after a log fault the store is read-only and says why; after
 * a snapshot fault it keeps committing; reopened on a healthy disk, every
 * acknowledged transaction is there in full, none is there in part, and the
 * revisions are exactly the transactions present.
 */
function seeded(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

test('faults: random ENOSPC / EIO under concurrent load (24 seeded runs): typed failures, read-only, nothing acknowledged lost, reopen recovers', async () => {
  const kinds = [
    { op: 'write', file: /^wal-/ }, { op: 'sync', file: /^wal-/ }, { op: 'open', file: /^wal-/ }, { op: 'rename', file: /\.snap$/ },
  ] as const;
  const seen = { readOnly: 0, snapshotFaults: 0, acked: 0, failed: 0 };
  for (let seed = 1; seed <= 24; seed++) {
    const random = seeded(seed);
    const kind = kinds[seed % kinds.length]!;
    const code = random() < 0.5 ? 'ENOSPC' : 'EIO';
    const after = Math.floor(random() * (kind.op === 'rename' ? 3 : kind.op === 'open' ? 3 : 60));
    await using tmp = await tempDir();
    const dir = tmp.path;
    const fs = new FaultyFs();
    const store = await open(dir, { fs, segmentBytes: 8 * 1024, snapshotEveryBytes: 16 * 1024 });
    fs.inject({ op: kind.op, code, file: kind.file, after, ...(kind.op === 'write' && random() < 0.5 ? { partialBytes: 1 + Math.floor(random() * 40) } : {}) });
    const acked = new Map<string, number>();
    const failures: unknown[] = [];
    let n = 0;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        const id = `${w}.${i}`;
        n++;
        try {
          const r = await store.multi([0, 1, 2].map((k) => ({ op: 'set' as const, path: `/t/${id}/${k}`, value: `${id}:${k}` })));
          acked.set(id, r.revision);
        } catch (e) {
          failures.push(e);
          if (LatchkeyError.is(e, 'READ_ONLY')) return;
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => writer(w)));
    const what = `seed ${seed}: ${kind.op} ${code} after ${after}`;
    for (const e of failures) assert.ok(LatchkeyError.is(e, 'READ_ONLY') || LatchkeyError.is(e, 'IO'), `${what}: untyped failure ${String(e)}`);
    const readOnly = store.stats().readOnly;
    if (kind.op === 'rename') {
      // A snapshot that cannot be written costs a snapshot, never a commit.
      assert.equal(readOnly, undefined, `${what}: a failed snapshot must not stop commits`);
      assert.equal(failures.length, 0, `${what}: commits failed: ${String(failures[0])}`);
      if (fs.calls.rename > 0) seen.snapshotFaults++;
    } else if (failures.length > 0) {
      assert.match(String(readOnly), new RegExp(code), what);
      await assert.rejects(store.set('/after', 'x'), (e: unknown) => LatchkeyError.is(e, 'READ_ONLY'), what);
      seen.readOnly++;
    }
    seen.acked += acked.size;
    seen.failed += failures.length;
    await store.close();

    const again = await open(dir, { segmentBytes: 8 * 1024, snapshotEveryBytes: 16 * 1024 });
    try {
      for (const [id, rev] of acked) {
        for (let k = 0; k < 3; k++) {
          const e = await again.get(`/t/${id}/${k}`);
          assert.equal(e?.text(), `${id}:${k}`, `${what}: acknowledged ${id} lost`);
          assert.equal(e.stat.modRev, rev, what);
        }
      }
      const revs = new Set<number>();
      for (const id of (await again.exists('/t')) ? await again.list('/t') : []) {
        const keys = await again.list(`/t/${id}`);
        assert.equal(keys.length, 3, `${what}: ${id} partially present`);
        revs.add((await again.get(`/t/${id}/0`))!.stat.modRev);
      }
      assert.equal(revs.size, again.revision, `${what}: ${revs.size} transactions for ${again.revision} revisions`);
      for (let r = 1; r <= again.revision; r++) assert.ok(revs.has(r), `${what}: revision ${r} holds no transaction`);
      assert.ok(revs.size >= acked.size && revs.size <= n, what);
      await again.set('/healthy', 'again');
    } finally {
      await again.close();
    }
  }
  // The seeds reach every outcome: some runs turned read-only, some lost a snapshot, most commits were acknowledged.
  assert.ok(seen.readOnly >= 6, JSON.stringify(seen));
  assert.ok(seen.snapshotFaults >= 1, JSON.stringify(seen));
  assert.ok(seen.acked > 100 && seen.failed > 0, JSON.stringify(seen));
});

test("durability 'none': a group's records are in the file when sync() returns its promise (written on the caller's thread), and survive a reopen", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const s = await openStorage(dir, { durability: 'none' });
  const d = new Driver(s);
  await d.many(3);
  const [wal] = await files(dir, /^wal-.*\.log$/);
  const before = statSync(path.join(dir, wal!)).size;
  d.stage((ws) => ws.set('/written', enc('at once')));
  const p = s.log.sync();
  assert.ok(statSync(path.join(dir, wal!)).size > before, 'the record was written before sync() returned');
  await p;
  const acked = dump(d.root);
  await s.close();
  const s2 = await openStorage(dir);
  assert.equal(s2.revision, 4);
  assert.deepEqual(dump(s2.root), acked);
  await s2.close();
});
