import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArenaCache, MAX_SLAB, MIN_BLOCK, ValueArena, blockBytes } from '../../src/storage/value-arena.js';
import { CACHE_POLICIES } from '../../src/storage/value-cache.js';

test('arena: blocks are powers of two from 256 bytes; split and merged with their buddies; a limit not a power of two is used whole', () => {
  assert.equal(blockBytes(1), MIN_BLOCK);
  assert.equal(blockBytes(257), 512);
  assert.equal(blockBytes(256 * 1024), 256 * 1024);
  const a = new ValueArena(13_824); // 8 KiB + 4 KiB + 1 KiB + 512
  assert.equal(a.capacity, 13_824);
  const got = [a.alloc(4096), a.alloc(4096), a.alloc(4096)];
  assert.ok(got.every((x) => x >= 0), 'three blocks of 4 KiB in 13.5 KiB');
  assert.equal(new Set(got).size, 3);
  assert.equal(a.alloc(4096), -1, 'no fourth');
  assert.ok(a.alloc(1024) >= 0 && a.alloc(512) >= 0);
  assert.equal(a.alloc(256), -1, 'full');
  assert.equal(a.allocated, 13_824);
  for (const x of got) a.release(x, 4096);
  assert.ok(a.alloc(8192) >= 0, 'two freed buddies merged back into 8 KiB');
  assert.equal(new ValueArena(100).alloc(1), -1, 'a limit below one block caches nothing');
  assert.equal(new ValueArena(0).fits(1), false);
  const big = new ValueArena(3 * MAX_SLAB);
  assert.equal(big.fits(MAX_SLAB), true);
  assert.equal(big.fits(MAX_SLAB + 1), false);
  assert.equal(big.allocated, 0, 'slabs are allocated when first needed');
  big.alloc(1000);
  assert.equal(big.allocated, MAX_SLAB);
});

test('arena: random allocations and releases never overlap, never pass the capacity, and all merge back', () => {
  const cap = 3 * 1024 * 1024 + 7 * 1024;
  const a = new ValueArena(cap);
  let x = 11;
  const rnd = (n: number): number => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
  const live = new Map<number, number>();
  for (let i = 0; i < 20_000; i++) {
    if (live.size > 0 && rnd(2) === 0) {
      const keys = [...live.keys()];
      const k = keys[rnd(keys.length)]!;
      a.release(k, live.get(k)!);
      live.delete(k);
    } else {
      const len = 1 + rnd(rnd(4) === 0 ? 300_000 : 5000);
      const at = a.alloc(len);
      if (at < 0) continue;
      assert.equal(at % blockBytes(len), 0, 'aligned to its size');
      assert.ok(at + blockBytes(len) <= cap);
      for (const [o, l] of live) assert.ok(at + blockBytes(len) <= o || o + blockBytes(l) <= at, `block ${at}+${blockBytes(len)} overlaps ${o}+${blockBytes(l)}`);
      live.set(at, len);
    }
    let used = 0;
    for (const l of live.values()) used += blockBytes(l);
    assert.equal(a.used, used);
  }
  for (const [o, l] of live) a.release(o, l);
  assert.equal(a.used, 0);
  assert.ok(a.alloc(2 * 1024 * 1024) >= 0, 'everything merged back: the largest block is free again');
});

for (const policy of CACHE_POLICIES) {
  test(`arena cache (${policy}): values are copied in and read back intact under eviction; the charge and the arena stay within the limit`, () => {
    const limit = 256 * 1024;
    const c = new ArenaCache(policy, limit);
    const expect = new Map<number, number>();
    let x = 5;
    const rnd = (n: number): number => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
    for (let i = 0; i < 5000; i++) {
      const k = rnd(300);
      const v = c.view(k);
      if (v !== undefined) {
        const len = expect.get(k)!;
        assert.equal(v.length, len);
        assert.ok(v[0] === (k & 0xff) && v[len - 1] === (k & 0xff), `key ${k} holds its own bytes`);
        continue;
      }
      const len = 1 + rnd(rnd(5) === 0 ? 60_000 : 3000);
      expect.set(k, len);
      c.put(k, new Uint8Array(len).fill(k & 0xff));
      assert.ok(c.bytes <= limit);
      assert.ok(c.arenaBytes <= limit);
    }
    assert.ok(c.entries > 0);
    c.clear();
    assert.equal(c.entries, 0);
    assert.equal(c.arenaBytes, 0);
  });
}
