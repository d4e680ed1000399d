import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CACHE_ENTRY_OVERHEAD, CACHE_POLICIES, LruCache, S3FifoCache, entryCost, makeValueCache } from '../../src/storage/value-cache.js';

/** A value whose entry is charged `cost` bytes (its length plus the per-entry overhead). */
const v = (cost: number): Uint8Array => new Uint8Array(cost - CACHE_ENTRY_OVERHEAD);

for (const policy of CACHE_POLICIES) {
  test(`value cache (${policy}): bounded in bytes, counts evictions, drops by key, refuses a value larger than itself`, () => {
    const c = makeValueCache(policy, 10_000);
    let evicted = 0;
    for (let k = 0; k < 100; k++) {
      evicted += c.set(k, v(1000));
      assert.ok(c.bytes <= 10_000, `${c.bytes} bytes held`);
    }
    assert.equal(c.entries, 10);
    assert.equal(evicted, 90);
    assert.equal(c.get(99)?.length, 1000 - CACHE_ENTRY_OVERHEAD, 'the newest is kept');
    assert.equal(c.get(0), undefined, 'the oldest, never read, is gone');
    c.deleteWhere((k) => k % 2 === 1);
    assert.equal(c.entries, 5);
    assert.equal(c.bytes, 5000);
    assert.equal(c.set(1000, v(10_001)), 0, 'an entry costing more than the limit is refused');
    assert.equal(c.get(1000), undefined);
    c.clear();
    assert.equal(c.entries, 0);
    assert.equal(c.bytes, 0);
  });
}

test('S3-FIFO keeps values read more than once through a scan of values read once; LRU loses them', () => {
  const hot = [0, 1, 2, 3, 4, 5, 6, 7];
  const run = (c: LruCache | S3FifoCache): number => {
    for (let round = 0; round < 3; round++) for (const k of hot) if (c.get(k) === undefined) c.set(k, v(1000));
    // A scan of 200 keys never read again: 20 times what the cache holds.
    for (let k = 1000; k < 1200; k++) if (c.get(k) === undefined) c.set(k, v(1000));
    return hot.filter((k) => c.get(k) !== undefined).length;
  };
  assert.equal(run(new S3FifoCache(10_000)), hot.length, 'every hot value survives the scan');
  assert.equal(run(new LruCache(10_000)), 0, 'LRU evicts them all');
});

test('S3-FIFO: a key dropped unread from the small queue and soon asked again goes to the main queue (ghost)', () => {
  const c = new S3FifoCache(10_000); // small queue: 1,000 bytes
  // Eviction starts when the cache is full: the 11th value pushes key 1 out of small, unread: evicted, remembered as a ghost.
  for (let k = 1; k <= 11; k++) c.set(k, v(1000));
  assert.equal(c.get(1), undefined);
  c.set(1, v(1000)); // back: into main
  for (let k = 100; k < 130; k++) c.set(k, v(1000)); // 30 one-time keys pass through small
  assert.equal(c.get(1)?.length, 1000 - CACHE_ENTRY_OVERHEAD, 'key 1 is in main, out of the scan\'s way');
  assert.ok(c.bytes <= 10_000);
  assert.equal(c.get(5), undefined, 'keys 2-11, never read, were pushed out by the scan');
});

for (const policy of CACHE_POLICIES) {
  test(`value cache (${policy}): what it is charged (values plus the per-entry overhead) never exceeds its limit, whatever the sizes`, () => {
    const limit = 64 * 1024;
    const c = makeValueCache(policy, limit);
    let x = 7;
    const rnd = (n: number): number => { x = (x * 1103515245 + 12345) % 2147483648; return x % n; };
    for (let i = 0; i < 20_000; i++) {
      const k = rnd(400);
      if (rnd(3) === 0) { c.get(k); continue; }
      const len = rnd(4) === 0 ? rnd(8) : rnd(6000);
      c.set(k, new Uint8Array(len));
      assert.ok(c.bytes <= limit, `${c.bytes} bytes charged over a limit of ${limit}`);
      if (i % 1000 === 999) {
        // The charge is exactly the sum of what the entries present cost.
        let sum = 0;
        for (let q = 0; q < 400; q++) {
          const b = (c as unknown as { slots?: Map<number, { v: Uint8Array }>; map?: Map<number, Uint8Array> });
          const e = b.slots?.get(q)?.v ?? b.map?.get(q);
          if (e !== undefined) sum += entryCost(e);
        }
        assert.equal(c.bytes, sum);
      }
    }
    // Many tiny values: the overhead alone bounds how many entries fit.
    c.clear();
    for (let k = 0; k < 10_000; k++) c.set(k, new Uint8Array(1));
    assert.ok(c.entries <= Math.floor(limit / entryCost(new Uint8Array(1))), `${c.entries} one-byte entries in ${limit} bytes`);
  });
}
