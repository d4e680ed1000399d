/**
 * Value memory is owned by the cache and released: the cache keeps values
 * in slabs it allocates once (storage/value-arena.ts), never a buffer per
 * value, and close() drops them (a store object still held after close
 * keeps none alive). Bytes handed to callers are their own: a cache block
 * reused after eviction never changes them. Slabs checked with WeakRefs
 * after a full GC (--expose-gc set at run time): deterministic, no timing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { lookup } from '../../src/core/tree.js';
import { ValueRef, readValueInto } from '../../src/core/value.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { tempDir } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** A full GC after the current job (a WeakRef made in this job keeps its target until the job ends). */
async function collect(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  gc();
  gc();
}

function lookupRef(s: EmbeddedStore, p: string): ValueRef {
  const n = lookup(s.internals.visibleRoot, p.slice(1).split('/'));
  assert.ok(n !== undefined && n.value instanceof ValueRef, `${p} holds a ref`);
  return n.value;
}

/** The arena's slabs (internals: storage/values.ts → value-arena.ts). */
function slabsOf(s: EmbeddedStore): Uint8Array[] {
  const ref = lookupRef(s, '/v/0');
  return (ref.reader as unknown as { cache: { arena: { slabs: Uint8Array[] } } }).cache.arena.slabs;
}

const fill = (n: number, b: number): Uint8Array => new Uint8Array(n).fill(b);

test('the cache keeps values in slabs it allocates once: writing and reading far more than it holds adds none; close() drops them', async () => {
  await using tmp = await tempDir();
  const limit = 1 << 20;
  const s = (await open(tmp.path, { inlineValueBytes: 0, cacheBytes: limit })) as EmbeddedStore;
  for (let i = 0; i < 8; i++) await s.set(`/v/${i}`, fill(16 * 1024, i));
  assert.equal(slabsOf(s).length, 0, 'values written are not cached (cacheWrites is off): no slab yet');
  for (let i = 0; i < 8; i++) await s.get(`/v/${i}`);
  assert.equal(slabsOf(s).length, 1, 'one slab (the limit is below 16 MiB)');
  // Weak only: a strong reference here would keep the slab alive after close.
  const weak = new WeakRef(slabsOf(s)[0]!.buffer);
  // 4 MiB of values through a 1 MiB cache, written then read.
  for (let i = 0; i < 256; i++) await s.set(`/w/${i}`, fill(16 * 1024, i & 0xff));
  for (let i = 0; i < 256; i++) assert.equal((await s.get(`/w/${i}`))!.value[100], i & 0xff);
  assert.equal(slabsOf(s).length, 1);
  assert.ok(slabsOf(s)[0]!.buffer === weak.deref(), 'the same slab, reused');
  const st = s.stats();
  assert.ok((st.cacheEvictions ?? 0) > 0);
  const arena = (st['storage'] as { values: { cacheArenaBytes: number } }).values.cacheArenaBytes;
  assert.ok(arena <= limit, `arena ${arena} bytes, limit ${limit}`);
  await s.close();
  await collect();
  assert.ok(weak.deref() === undefined, 'after close, nothing keeps the slab');
  assert.ok(s.stats !== undefined); // the store object itself is still held here
});

test('bytes handed out are the caller\'s own: reusing the cache block they came from changes nothing, and changing them does not change the cache', async () => {
  await using tmp = await tempDir();
  const size = 16 * 1024;
  const s = (await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 4 * (size + 512), cachePolicy: 'lru' })) as EmbeddedStore;
  await s.set('/v/0', fill(size, 1));
  const ref = lookupRef(s, '/v/0');
  assert.equal(ref.reader.peek(ref), undefined, 'written, not read: not cached');
  await s.get('/v/0');
  const hit = ref.reader.peek(ref)!;
  assert.ok(hit !== undefined, 'read once: cached');
  const entry = (await s.get('/v/0'))!;
  assert.equal(entry.value, entry.value, 'an entry over a value on disk gives its own bytes, the same array each time');
  const sync = ref.reader.readSync(ref);
  hit[0] = 9;
  sync[1] = 9;
  assert.deepEqual((await s.get('/v/0'))!.value, fill(size, 1), 'the cached bytes are not those handed out');
  // Evict /v/0 and reuse its block many times over.
  for (let i = 1; i < 64; i++) {
    await s.set(`/v/${i}`, fill(size, 2 + (i % 200)));
    await s.get(`/v/${i}`);
  }
  assert.equal(ref.reader.peek(ref), undefined, '/v/0 was evicted');
  assert.deepEqual(entry.value, fill(size, 1), 'an entry read before is unchanged');
  assert.equal(entry.text().length, size);
  assert.equal(hit[0], 9);
  assert.deepEqual(hit.subarray(1), fill(size - 1, 1));
  // A read into the caller's buffer from the cache: a copy.
  const dest = new Uint8Array(size);
  await readValueInto(lookupRef(s, '/v/63'), dest);
  assert.deepEqual(dest, fill(size, 2 + 63));
  for (let i = 64; i < 80; i++) {
    await s.set(`/v/${i}`, fill(size, 7));
    await s.get(`/v/${i}`);
  }
  assert.deepEqual(dest, fill(size, 2 + 63));
  await s.close();
});

test('cacheWrites: values written are copied into the cache once on disk (write-through)', async () => {
  await using tmp = await tempDir();
  const s = (await open(tmp.path, { inlineValueBytes: 0, cacheWrites: true })) as EmbeddedStore;
  const v = fill(5000, 3);
  await s.set('/v/0', v);
  v.fill(0);
  const ref = lookupRef(s, '/v/0');
  assert.deepEqual(ref.reader.peek(ref), fill(5000, 3), 'cached at once, a copy of the bytes set');
  assert.equal(s.stats().cacheMisses, 0);
  await s.close();
});
