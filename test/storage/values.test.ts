import assert from 'node:assert/strict';
import { readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { LatchkeyError } from '../../src/core/errors.js';
import { lookup } from '../../src/core/tree.js';
import { ValueRef, readValue, readValueInto } from '../../src/core/value.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { FaultyFs, verify } from '../../src/storage/index.js';
import { CACHE_ENTRY_OVERHEAD } from '../../src/storage/value-cache.js';
import { flipBit, tempDir } from './helpers.js';

function big(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function refOf(store: EmbeddedStore, p: string): ValueRef {
  const n = lookup(store.internals.visibleRoot, p.slice(1).split('/'));
  assert.ok(n !== undefined && n.value instanceof ValueRef, `${p} holds a ref`);
  return n.value;
}

test('values above the inline threshold live in value files and read back after reopen, snapshot included', async () => {
  await using tmp = await tempDir();
  const s1 = (await open(tmp.path, { inlineValueBytes: 64, cacheBytes: 1 << 20 })) as EmbeddedStore;
  await s1.set('/small', 'tiny');
  for (let i = 0; i < 20; i++) await s1.set(`/big/${i}`, big(10_000, i));
  await s1.snapshot();
  await s1.set('/big/after', big(5000, 99));
  assert.ok(!(lookup(s1.internals.visibleRoot, ['small'])!.value instanceof ValueRef), 'small values stay inline');
  const st = s1.stats().storage as { values: { valuesWritten: number; valueFiles: number } };
  assert.equal(st.values.valuesWritten, 21);
  assert.equal(st.values.valueFiles, 1);
  await s1.close();
  const names = await readdir(tmp.path);
  const snap = names.find((n) => n.endsWith('.snap'))!;
  assert.ok((await stat(path.join(tmp.path, snap))).size < 10_000, 'the snapshot holds refs, not the 200 KB of values');

  const s2 = (await open(tmp.path, { inlineValueBytes: 64, cacheBytes: 1 << 20 })) as EmbeddedStore;
  assert.equal((await s2.get('/small'))!.text(), 'tiny');
  for (let i = 0; i < 20; i++) assert.deepEqual((await s2.get(`/big/${i}`))!.value, big(10_000, i));
  assert.deepEqual((await s2.get('/big/after'))!.value, big(5000, 99));
  const a = s2.stats();
  assert.equal(a.cacheMisses, 21);
  await s2.get('/big/3');
  assert.equal(s2.stats().cacheHits, (a.cacheHits ?? 0) + 1);
  await s2.close();
});

test('an uncached value is read asynchronously; the cache is bounded and evicts', async () => {
  await using tmp = await tempDir();
  const s1 = await open(tmp.path, { inlineValueBytes: 0 });
  for (let i = 0; i < 10; i++) await s1.set(`/v/${i}`, big(4096, i));
  await s1.close();
  const s2 = (await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 3 * (4096 + CACHE_ENTRY_OVERHEAD) })) as EmbeddedStore;
  const r = readValue(refOf(s2, '/v/0'));
  assert.ok(r instanceof Promise, 'not cached: a read is a promise (libuv pool), not a synchronous pread');
  assert.deepEqual(await r, big(4096, 0));
  assert.ok(readValue(refOf(s2, '/v/0')) instanceof Uint8Array, 'now cached');
  for (let i = 0; i < 10; i++) assert.deepEqual((await s2.get(`/v/${i}`))!.value, big(4096, i));
  const st = s2.stats();
  assert.ok((st.cacheBytes ?? 0) <= 3 * (4096 + CACHE_ENTRY_OVERHEAD), `cache holds ${st.cacheBytes} bytes, limit ${3 * (4096 + CACHE_ENTRY_OVERHEAD)}`);
  assert.equal(st.cacheEvictions, 7);
  await s2.close();
});

test('a damaged value is CORRUPT naming its file and offset on read, and check reports it', async () => {
  await using tmp = await tempDir();
  const s1 = (await open(tmp.path, { inlineValueBytes: 0 })) as EmbeddedStore;
  await s1.set('/a', big(1000, 1));
  await s1.set('/b', big(1000, 2));
  const ref = refOf(s1, '/b');
  await s1.close();
  const file = path.join(tmp.path, (await readdir(tmp.path)).find((n) => n.endsWith('.val'))!);
  assert.equal((await verify(tmp.path)).ok, true);
  assert.equal((await verify(tmp.path)).valuesChecked, 2);
  await flipBit(file, ref.offset + 500, 3);

  const s2 = await open(tmp.path, { inlineValueBytes: 0 });
  assert.deepEqual((await s2.get('/a'))!.value, big(1000, 1), 'other values are unaffected');
  await assert.rejects(s2.get('/b'), (e: unknown) => {
    assert.ok(LatchkeyError.is(e, 'CORRUPT'));
    assert.equal(e.info?.['file'], file);
    assert.equal(e.info?.['offset'], ref.offset);
    return true;
  });
  // Not cached after a failed check: it fails again, the same way.
  await assert.rejects(s2.get('/b'), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'));
  await s2.close();
  const r = await verify(tmp.path);
  assert.equal(r.ok, false);
  assert.equal(r.problems.length, 1);
  assert.equal(r.problems[0]!.file, file);
  assert.equal(r.problems[0]!.offset, ref.offset);
});

test('atomic ops, transactions and unchanged atomic results work on values held on disk', async () => {
  await using tmp = await tempDir();
  const s1 = await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 0 });
  await s1.set('/n', '41');
  assert.equal(await s1.add('/n', 1), 42);
  await s1.append('/log', 'ab');
  await s1.append('/log', 'cd');
  const rev = s1.revision;
  assert.equal(await s1.max('/n', 10), 42); // unchanged (compared with the bytes on disk): not rewritten
  assert.equal(s1.revision, rev);
  await s1.transaction(async (tx) => {
    const v = await tx.get('/n');
    await tx.set('/m', `${v!.text()}!`);
  });
  await s1.close();
  const s2 = await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 0 });
  assert.equal((await s2.get('/n'))!.text(), '42');
  assert.equal((await s2.get('/log'))!.text(), 'abcd');
  assert.equal((await s2.get('/m'))!.text(), '42!');
  await s2.close();
});

test('a failed value-file write fails its commits READ_ONLY before their record is written; the acknowledged values survive', async () => {
  await using tmp = await tempDir();
  const fs = new FaultyFs();
  const s1 = await open(tmp.path, { inlineValueBytes: 0, fs });
  await s1.set('/a', big(3000, 1));
  fs.inject({ op: 'write', code: 'ENOSPC', file: /\.val$/, partialBytes: 100 });
  const walWrites = fs.calls.write;
  await assert.rejects(s1.set('/b', big(3000, 2)), (e: unknown) => LatchkeyError.is(e, 'READ_ONLY'));
  assert.equal(fs.calls.write, walWrites + 1, 'only the value write was tried: no log record points at it');
  await assert.rejects(s1.set('/c', 'x'), (e: unknown) => LatchkeyError.is(e, 'READ_ONLY'));
  await s1.close();
  const s2 = await open(tmp.path, { inlineValueBytes: 0 });
  assert.deepEqual((await s2.get('/a'))!.value, big(3000, 1));
  assert.equal(await s2.get('/b'), undefined);
  await s2.set('/b', big(3000, 3));
  assert.deepEqual((await s2.get('/b'))!.value, big(3000, 3));
  await s2.close();
  assert.equal((await verify(tmp.path)).ok, true);
});

test('a value file left empty by a crash while it was created is removed at open; values go on in a new one', async () => {
  await using tmp = await tempDir();
  const s1 = await open(tmp.path, { inlineValueBytes: 0 });
  await s1.set('/a', big(100, 1));
  await s1.close();
  await writeFile(path.join(tmp.path, 'val-00000000000000000002.val'), new Uint8Array(0));
  const s2 = await open(tmp.path, { inlineValueBytes: 0 });
  await s2.set('/b', big(100, 2));
  assert.deepEqual((await s2.get('/a'))!.value, big(100, 1));
  await s2.close();
  assert.equal((await verify(tmp.path)).ok, true);
  const s3 = await open(tmp.path, { inlineValueBytes: 0 });
  assert.deepEqual((await s3.get('/b'))!.value, big(100, 2));
  await s3.close();
});

test('a value read from a value file is a plain Uint8Array of its own: changing what get returned changes nothing stored', async () => {
  // Reads fill a buffer that is not zero-filled first (storage/values.ts,
  // `uninitialized`); a Buffer's `slice` would share the cached bytes.
  await using tmp = await tempDir();
  const s1 = await open(tmp.path, { inlineValueBytes: 0 });
  await s1.set('/a', big(300_000, 1));
  await s1.set('/b', big(5000, 2));
  await s1.close();
  const s2 = (await open(tmp.path, { inlineValueBytes: 0 })) as EmbeddedStore;
  const got = (await s2.get('/a'))!.value;
  assert.equal(Object.getPrototypeOf(got), Uint8Array.prototype);
  got.fill(0);
  assert.deepEqual((await s2.get('/a'))!.value, big(300_000, 1), 'the cached bytes are not those handed out');
  const sync = refOf(s2, '/b').reader.readSync(refOf(s2, '/b'));
  assert.equal(Object.getPrototypeOf(sync), Uint8Array.prototype);
  assert.deepEqual(sync, big(5000, 2));
  (await s2.get('/b'))!.value.fill(7);
  assert.deepEqual((await s2.get('/b'))!.value, big(5000, 2));
  await s2.close();
});

test('readInto reads a value once, straight into the caller\'s buffer: checked, the file pinned meanwhile, not cached; a cached value is copied from the cache', async () => {
  await using tmp = await tempDir();
  const s1 = (await open(tmp.path, { inlineValueBytes: 0 })) as EmbeddedStore;
  await s1.set('/a', big(70_000, 1));
  await s1.set('/b', big(3000, 2));
  const refB = refOf(s1, '/b');
  await s1.close();
  const s2 = (await open(tmp.path, { inlineValueBytes: 0 })) as EmbeddedStore;
  const refA = refOf(s2, '/a');
  const dest = new Uint8Array(80_000).fill(0xee);
  const before = s2.stats();
  const p = readValueInto(refA, dest, 5000);
  assert.ok(p instanceof Promise, 'an uncached value is read asynchronously');
  const store = refA.reader as unknown as { pins: Map<number, number> };
  assert.equal(store.pins.get(refA.file), 1, 'the file is pinned while the read is in flight');
  await p;
  assert.equal(store.pins.has(refA.file), false, 'and unpinned after');
  assert.deepEqual(dest.subarray(5000, 75_000), big(70_000, 1));
  assert.equal(dest[4999], 0xee, 'nothing written before `at`');
  assert.equal(dest[75_000], 0xee, 'nothing written after the value');
  const after = s2.stats();
  assert.equal(after.cacheMisses, (before.cacheMisses ?? 0) + 1);
  assert.equal(after.cacheEntries, before.cacheEntries, 'a read into the caller\'s buffer does not fill the cache');
  // Cached: copied from the cache.
  await s2.get('/a');
  const d2 = new Uint8Array(70_000);
  const hits = s2.stats().cacheHits ?? 0;
  await readValueInto(refA, d2);
  assert.deepEqual(d2, big(70_000, 1));
  assert.equal(s2.stats().cacheHits, hits + 1);
  // Does not fit: INVALID_ARGUMENT, nothing read.
  await assert.rejects(async () => readValueInto(refA, new Uint8Array(100)), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'));
  await assert.rejects(async () => readValueInto(refA, new Uint8Array(70_000), 1), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'));
  await s2.close();
  // Damaged: CORRUPT naming the file and offset, as for read.
  const file = path.join(tmp.path, (await readdir(tmp.path)).find((n) => n.endsWith('.val'))!);
  await flipBit(file, refB.offset + 10, 1);
  const s3 = (await open(tmp.path, { inlineValueBytes: 0 })) as EmbeddedStore;
  await assert.rejects(async () => readValueInto(refOf(s3, '/b'), new Uint8Array(3000)), (e: unknown) => {
    assert.ok(LatchkeyError.is(e, 'CORRUPT'));
    assert.equal(e.info?.['file'], file);
    assert.equal(e.info?.['offset'], refB.offset);
    return true;
  });
  assert.equal((refOf(s3, '/b').reader as unknown as { pins: Map<number, number> }).pins.size, 0, 'a failed read unpins its file');
  await s3.close();
});

test('open takes cachePolicy lru or s3fifo (the default); anything else is INVALID_ARGUMENT', async () => {
  await using tmp = await tempDir();
  for (const cachePolicy of ['lru', 's3fifo'] as const) {
    const s = await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 3 * 4096, cachePolicy });
    for (let i = 0; i < 10; i++) await s.set(`/v/${i}`, big(4096, i));
    for (let i = 0; i < 10; i++) assert.deepEqual((await s.get(`/v/${i}`))!.value, big(4096, i));
    const st = s.stats();
    assert.ok((st.cacheBytes ?? 0) <= 3 * 4096, `${cachePolicy}: the cache stays within its bytes`);
    assert.ok((st.cacheEvictions ?? 0) > 0, `${cachePolicy}: it evicted`);
    await s.close();
  }
  await assert.rejects(open(tmp.path, { cachePolicy: 'arc' as 'lru' }), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'));
});
