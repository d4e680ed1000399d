import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CACHE_POLICIES, LruCache, S3FifoCache, makeValueCache } from '../../src/storage/value-cache.js';

const v = (n: number): Uint8Array => new Uint8Array(n);

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
    assert.equal(c.get(99)?.length, 1000, 'the newest is kept');
    assert.equal(c.get(0), undefined, 'the oldest, never read, is gone');
    c.deleteWhere((k) => k % 2 === 1);
    assert.equal(c.entries, 5);
    assert.equal(c.bytes, 5000);
    assert.equal(c.set(1000, v(10_001)), 0);
    assert.equal(c.get(1000), undefined);
    c.clear();
    assert.equal(c.entries, 0);
    assert.equal(c.bytes, 0);
  });
}

test('S3-FIFO keeps values read more than once through a scan of values read once; LRU loses them', () => {
  const hot = [0, 1, 2, 3, 4, 5, 6, 7];
  const run = (c: LruCache | S3FifoCache): number => {
    for (let round = 0; round < 3; round++) for (const k of hot) if (c.get(k) === undefined) c.set(k, v(100));
    // A scan of 200 keys never read again: 20 times what the cache holds.
    for (let k = 1000; k < 1200; k++) if (c.get(k) === undefined) c.set(k, v(100));
    return hot.filter((k) => c.get(k) !== undefined).length;
  };
  assert.equal(run(new S3FifoCache(1000)), hot.length, 'every hot value survives the scan');
  assert.equal(run(new LruCache(1000)), 0, 'LRU evicts them all');
});

test('S3-FIFO: a key dropped unread from the small queue and soon asked again goes to the main queue (ghost)', () => {
  const c = new S3FifoCache(1000); // small queue: 100 bytes
  // Eviction starts when the cache is full: the 11th value pushes key 1 out of small, unread: evicted, remembered as a ghost.
  for (let k = 1; k <= 11; k++) c.set(k, v(100));
  assert.equal(c.get(1), undefined);
  c.set(1, v(100)); // back: into main
  for (let k = 100; k < 130; k++) c.set(k, v(100)); // 30 one-time keys pass through small
  assert.equal(c.get(1)?.length, 100, 'key 1 is in main, out of the scan\'s way');
  assert.ok(c.bytes <= 1000);
  assert.equal(c.get(5), undefined, 'keys 2-11, never read, were pushed out by the scan');
});
