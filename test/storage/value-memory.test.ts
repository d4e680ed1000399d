/**
 * Value memory is released: close() drops every reference to
 * the cached bytes (a store object still held after close keeps none of
 * them alive: neither the cache nor the watch history window), and eviction
 * does once the history window has moved on. Checked with WeakRefs after a full
 * GC (--expose-gc set at run time): deterministic, no timing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { lookup } from '../../src/core/tree.js';
import { ValueRef } from '../../src/core/value.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { CACHE_ENTRY_OVERHEAD } from '../../src/storage/value-cache.js';
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

/** WeakRefs to the bytes the store's cache holds for each path (the cache's own buffers: `peek`). */
function cachedBytes(s: EmbeddedStore, paths: readonly string[]): WeakRef<Uint8Array>[] {
  return paths.map((p) => {
    const ref = lookupRef(s, p);
    const b = ref.reader.peek(ref);
    assert.ok(b !== undefined, `${p} is cached`);
    return new WeakRef(b);
  });
}

test('close() drops the value cache and the watch history window: their value buffers are collectable while the closed store object is still held', async () => {
  await using tmp = await tempDir();
  const s = (await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 1 << 20 })) as EmbeddedStore;
  const paths = Array.from({ length: 8 }, (_, i) => `/v/${i}`);
  for (const p of paths) await s.set(p, new Uint8Array(16 * 1024).fill(7));
  // Values written are cached (their buffer is the store's copy, not the caller's).
  const refs = cachedBytes(s, paths);
  await collect();
  assert.equal(refs.filter((r) => r.deref() !== undefined).length, paths.length, 'an open store keeps its cached values');
  await s.close();
  await collect();
  assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0, 'after close, nothing keeps them');
  assert.ok(s.stats !== undefined); // the store object itself is still held here
});

test('an evicted value\'s buffer is collectable once the watch history window has moved past it: the cache keeps no reference beyond its limit', async () => {
  await using tmp = await tempDir();
  const size = 16 * 1024;
  const s = (await open(tmp.path, { inlineValueBytes: 0, cacheBytes: 4 * (size + CACHE_ENTRY_OVERHEAD), cachePolicy: 'lru' })) as EmbeddedStore;
  const first = ['/a/0', '/a/1', '/a/2', '/a/3'];
  for (const p of first) await s.set(p, new Uint8Array(size).fill(1));
  const refs = cachedBytes(s, first);
  // The watch history window keeps the last 100,000 events' values (or 64 MiB): move it past the four.
  for (let m = 0; m < 101; m++) await s.multi(Array.from({ length: 1000 }, (_, i) => ({ op: 'set' as const, path: `/h/${m}-${i}`, value: '' })));
  // Many more than fit (LRU: a cache of four entries under S3-FIFO keeps the ones read, above, in its main queue).
  for (let i = 0; i < 64; i++) await s.set(`/b/${i}`, new Uint8Array(size).fill(2));
  for (const p of first) assert.equal(lookupRef(s, p).reader.peek(lookupRef(s, p)), undefined, `${p} was evicted`);
  await collect();
  assert.equal(refs.filter((r) => r.deref() !== undefined).length, 0, 'the four evicted values are gone from memory');
  assert.ok((s.stats().cacheBytes ?? 0) <= 4 * (size + CACHE_ENTRY_OVERHEAD));
  await s.close();
});
