import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packBody } from '../../src/protocol/codec.js';
import { scanMsgpack } from '../../src/protocol/msgpack-scan.js';

const value = fc.anything({ withBigInt: false, withMap: false, withSet: false, withTypedArray: true, withDate: true, maxDepth: 4 });

test('msgpack-scan: every encoded value scans ok; every strict prefix, and any trailing byte, is malformed (property)', () => {
  fc.assert(fc.property(value, (v) => {
    let bytes: Uint8Array;
    try {
      bytes = packBody(v);
    } catch {
      return;
    }
    assert.equal(scanMsgpack(bytes), 'ok');
    for (let i = 0; i < bytes.length; i++) assert.equal(scanMsgpack(bytes.subarray(0, i)), 'malformed', `prefix ${i}`);
    const extra = new Uint8Array(bytes.length + 1);
    extra.set(bytes);
    assert.equal(scanMsgpack(extra), 'malformed');
  }), { numRuns: 300 });
});

test('msgpack-scan: counts values and nesting', () => {
  assert.equal(scanMsgpack(packBody([1, 2, 3]), { maxItems: 4, maxDepth: 8 }), 'ok');
  assert.equal(scanMsgpack(packBody([1, 2, 3, 4]), { maxItems: 4, maxDepth: 8 }), 'too-many-items');
  assert.equal(scanMsgpack(packBody({ a: { b: { c: 1 } } }), { maxItems: 100, maxDepth: 3 }), 'ok');
  assert.equal(scanMsgpack(packBody({ a: { b: { c: { d: 1 } } } }), { maxItems: 100, maxDepth: 3 }), 'too-deep');
  assert.equal(scanMsgpack(Uint8Array.of(0xc1)), 'malformed');
  // An array claiming more items than there are bytes left is refused at once.
  assert.equal(scanMsgpack(Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0)), 'malformed');
  // A large bin costs nothing to skip.
  assert.equal(scanMsgpack(packBody({ v: new Uint8Array(1 << 20) }), { maxItems: 3, maxDepth: 2 }), 'ok');
});
