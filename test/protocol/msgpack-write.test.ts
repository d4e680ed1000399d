import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packBody, packBodyScratch, unpackBody } from '../../src/protocol/codec.js';
import { MsgpackWriter } from '../../src/protocol/msgpack-write.js';

/** What the protocol's messages are made of: maps, arrays, strings, numbers, booleans, null, undefined, bytes. */
const leaf = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 300 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true }),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 300 }),
);
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 20 }),
  map: fc.dictionary(fc.string({ maxLength: 12 }), tie('value'), { maxKeys: 20 }),
}));

test('msgpack-write: decodes to what msgpackr\'s encoding of the same value decodes to', () => {
  fc.assert(fc.property(value, (v) => {
    // Decoded from Buffers, as a receiver's socket chunks are (msgpackr hands bytes back in the type of its input).
    const mine = Buffer.from(packBodyScratch(v));
    assert.deepEqual(unpackBody(mine), unpackBody(Buffer.from(packBody(v))));
  }), { numRuns: 2000 });
});

test('msgpack-write: the same bytes as msgpackr for replies and requests of well-formed strings', () => {
  const samples: unknown[] = [
    { t: 'ok', r: null, rev: 12 },
    { t: 'ok', r: { path: '/r/k1', value: new Uint8Array(100).fill(118), stat: { version: 3, created: 1, modified: 2_000_000, ephemeral: undefined }, revision: 2 ** 40 }, rev: 2 ** 40 },
    { t: 'ok', r: { token: 1_732_000_000_000_000, ownerDied: false, mode: 'exclusive' }, rev: 70_000 },
    { t: 'ok', r: { names: Array.from({ length: 40 }, (_, i) => `n${i}`), more: true, revision: -5 }, rev: 0.5 },
    { t: 'req', op: 'set', a: { path: '/é/日本/😀', value: new Uint8Array(70_000) } },
    { t: 'req', op: 'get', s: 3, a: { path: '/' + 'x'.repeat(300) } },
  ];
  for (const v of samples) assert.deepEqual(Buffer.from(packBodyScratch(v)), Buffer.from(packBody(v)));
});

test('msgpack-write: leaves what it does not write to the fallback (undefined), and the scratch buffer is reused', () => {
  const w = new MsgpackWriter(16);
  assert.equal(w.encode({ a: new Map([[1, 2]]) }), undefined);
  assert.equal(w.encode([new Date(0)]), undefined);
  assert.equal(w.encode(10n), undefined);
  assert.equal(w.encode(Object.create(null)), undefined);
  let deep: unknown = 1;
  for (let i = 0; i < 100; i++) deep = [deep];
  assert.equal(w.encode(deep), undefined);
  // The fallback still encodes them (packBodyScratch).
  assert.deepEqual(unpackBody(packBodyScratch(deep)), deep);
  const a = w.encode({ x: 'a'.repeat(100) })!;
  const copy = Buffer.from(a);
  w.encode({ y: 1 });
  assert.notDeepEqual(Buffer.from(a), copy, 'a view of the reused buffer: the caller must copy it out');
  assert.deepEqual(unpackBody(copy), { x: 'a'.repeat(100) });
});
