import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PMap } from '../../src/core/pmap.js';
import { compareNames } from '../../src/core/path.js';

type Cmd = { t: 'set'; k: string; v: number } | { t: 'del'; k: string };

const key = fc.oneof(fc.string({ minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 400 }).map((n) => `k${n}`));
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant('set' as const), k: key, v: fc.integer() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('del' as const), k: key }) },
);

test('pmap: matches a sorted model, and old versions never change', () => {
  fc.assert(fc.property(fc.array(cmd, { maxLength: 600 }), (cmds) => {
    let m = PMap.empty<number>();
    const model = new Map<string, number>();
    const versions: Array<[PMap<number>, [string, number][]]> = [];
    for (const c of cmds) {
      if (c.t === 'set') { m = m.set(c.k, c.v); model.set(c.k, c.v); } else { m = m.delete(c.k); model.delete(c.k); }
      if (versions.length < 20) versions.push([m, [...model.entries()].sort((a, b) => compareNames(a[0], b[0]))]);
    }
    const sorted = [...model.entries()].sort((a, b) => compareNames(a[0], b[0]));
    assert.equal(m.size, model.size);
    assert.deepEqual([...m.entries()], sorted);
    for (const [k, v] of model) assert.equal(m.get(k), v);
    for (const [old, snap] of versions) assert.deepEqual([...old.entries()], snap);
    // paging: every suffix after a key
    for (const [k] of sorted.slice(0, 10)) {
      assert.deepEqual(m.keys(k, 5), sorted.filter(([x]) => compareNames(x, k) > 0).slice(0, 5).map(([x]) => x));
    }
    assert.deepEqual(m.keys('~absent~', 3), sorted.filter(([x]) => compareNames(x, '~absent~') > 0).slice(0, 3).map(([x]) => x));
  }), { numRuns: 200 });
});

test('pmap: a million keys, paged in order', () => {
  let m = PMap.empty<number>();
  const n = 1_000_000;
  for (let i = 0; i < n; i++) m = m.set(String(i).padStart(7, '0'), i);
  assert.equal(m.size, n);
  assert.equal(m.get('0500000'), 500000);
  assert.deepEqual(m.keys('0999997'), ['0999998', '0999999']);
  const m2 = m.delete('0000000');
  assert.equal(m2.size, n - 1);
  assert.equal(m.size, n);
  assert.deepEqual(m2.keys(undefined, 2), ['0000001', '0000002']);
});

test('pmap: fromSorted builds the same map', () => {
  const keys = Array.from({ length: 5000 }, (_, i) => `n${String(i).padStart(5, '0')}`);
  const m = PMap.fromSorted(keys, keys.map((_, i) => i));
  assert.equal(m.size, 5000);
  assert.deepEqual(m.keys(), keys);
  assert.equal(m.delete('n00042').set('n00042', 7).get('n00042'), 7);
});

test('pmap: a new key is kept as a copy of its own, not as a view into the longer string it was cut from', async () => {
  // V8 makes a cut of 13 characters or more a view that keeps the whole
  // string alive: names split from paths kept every path (and after replay,
  // every record's path) alive, ~140 bytes per node of 16-byte names.
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const n = 20_000;
  const prefix = 'p'.repeat(1000);
  const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed; };
  const before = heap();
  let m = PMap.empty<number>();
  for (let i = 0; i < n; i++) {
    const long = `${prefix}/v${String(i).padStart(15, '0')}`; // a fresh 1,017-character string
    m = m.set(long.slice(long.lastIndexOf('/') + 1), i);
  }
  const perKey = (heap() - before) / n;
  assert.equal(m.size, n);
  assert.equal(m.get(`v${String(n - 1).padStart(15, '0')}`), n - 1);
  // A kept key is ~32 bytes and the map's arrays ~20 per key; a kept 1,017-character string is over 1,000.
  assert.ok(perKey < 400, `${perKey.toFixed(0)} bytes of heap per key`);
});
