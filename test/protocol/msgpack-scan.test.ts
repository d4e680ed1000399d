import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { packBody } from '../../src/protocol/codec.js';
import { scanMsgpack } from '../../src/protocol/msgpack-scan.js';
import * as packrModule from 'msgpackr';

const value = fc.anything({ withBigInt: false, withMap: false, withSet: false, withTypedArray: true, withDate: false, maxDepth: 4 });

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

test('msgpack-scan: extension types are refused, wherever they are (a Set or Error extension would decode values the scan never counted)', () => {
  const { Packr } = packrModule;
  const rich = new Packr({ moreTypes: true, structuredClone: true } as ConstructorParameters<typeof Packr>[0]);
  for (const v of [new Set([1, 2]), new Error('x'), new Date(0), { nested: [1, { d: new Date(1) }] }]) {
    assert.equal(scanMsgpack(rich.pack(v)), 'extension', String(v));
  }
  for (const t of [0xd4, 0xd5, 0xd6, 0xd7, 0xd8]) {
    const len = { 0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16 }[t]!;
    assert.equal(scanMsgpack(Uint8Array.of(0x91, t, 1, ...new Array<number>(len).fill(0))), 'extension', `fixext 0x${t.toString(16)}`);
  }
  assert.equal(scanMsgpack(Uint8Array.of(0xc7, 1, 5, 0)), 'extension');
  assert.equal(scanMsgpack(Uint8Array.of(0xc8, 0, 1, 5, 0)), 'extension');
  assert.equal(scanMsgpack(Uint8Array.of(0xc9, 0, 0, 0, 1, 5, 0)), 'extension');
});
