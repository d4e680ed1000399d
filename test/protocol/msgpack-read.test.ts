import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { clientMessageDecoder, encodeRequest, packBody, unpackBody } from '../../src/protocol/codec.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { FALLBACK, readMsgpack } from '../../src/protocol/msgpack-read.js';
import { scanMsgpack } from '../../src/protocol/msgpack-scan.js';

/** msgpackr's bytes as plain Uint8Arrays: the reader makes byte strings plain (the schemas' `bytes` does the same). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const leaf = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ maxLength: 300 }),
  fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true }),
  fc.boolean(),
  fc.constant(null),
  fc.uint8Array({ maxLength: 300 }),
);
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('map')),
  array: fc.array(tie('value'), { maxLength: 20 }),
  map: fc.dictionary(fc.string({ maxLength: 30 }), tie('value'), { maxKeys: 20 }),
}));

test('msgpack-read: decodes what msgpackr decodes, or leaves the body to it', () => {
  let read = 0;
  fc.assert(fc.property(value, (v) => {
    const bytes = Buffer.from(packBody(v));
    assert.equal(scanMsgpack(bytes), 'ok');
    const mine = readMsgpack(bytes, true);
    if (mine === FALLBACK) return;
    read++;
    assert.deepEqual(mine, plain(unpackBody(bytes)));
  }), { numRuns: 2000 });
  assert.ok(read > 500, `only ${read} of 2000 bodies were read without msgpackr`);
});

test('msgpack-read: 64-bit integers, float32, negative ints and every length form', () => {
  const p = new Packr({ useRecords: false, useFloat32: 1 } as ConstructorParameters<typeof Packr>[0]);
  const cases: unknown[] = [2 ** 40 + 7, -(2 ** 40) - 3, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, -1, -32, -33, -128, -129, -32768, -32769, 255, 256, 65535, 65536, 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(300), 'w'.repeat(70000),
    new Uint8Array(70000).fill(3), Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70000 }, () => 1), Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]))];
  for (const c of cases) {
    const bytes = Buffer.from(packBody(c));
    assert.deepEqual(readMsgpack(bytes, true), plain(unpackBody(bytes)), JSON.stringify(c).slice(0, 40));
  }
  // 64-bit integers as msgpackr writes them for int64AsType: hand-made bytes
  const u64 = Buffer.from([0xcf, 0, 0, 0x01, 0, 0, 0, 0, 5]);
  assert.equal(readMsgpack(u64, true), 2 ** 40 + 5);
  const i64 = Buffer.from([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
  assert.equal(readMsgpack(i64, true), -2);
  // float32 is msgpackr's to decode
  assert.equal(readMsgpack(Buffer.from(p.pack(1.5)), true), FALLBACK);
});

test('msgpack-read: non-ASCII strings, non-string keys and __proto__ go to msgpackr', () => {
  assert.equal(readMsgpack(Buffer.from(packBody({ path: '/é' })), true), FALLBACK);
  assert.equal(readMsgpack(Buffer.from(packBody(new Map([[1, 2]]))), true), FALLBACK);
  const proto = Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01]);
  assert.equal(scanMsgpack(proto), 'ok');
  assert.equal(readMsgpack(proto, true), FALLBACK);
  const polluted = unpackBody(proto) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(polluted), Object.prototype);
});

test('msgpack-read: byte strings are copies (or views of an owned body), never views of a socket chunk', () => {
  const body = Buffer.from(packBody({ value: new Uint8Array([1, 2, 3]) }));
  const copied = readMsgpack(body, true) as { value: Uint8Array };
  const viewed = readMsgpack(body, false) as { value: Uint8Array };
  body.fill(0);
  assert.deepEqual(copied.value, new Uint8Array([1, 2, 3]));
  assert.equal(viewed.value.buffer, body.buffer);
  assert.equal(Object.getPrototypeOf(copied.value), Uint8Array.prototype);
});

test('msgpack-read: a small value\'s shared slab cannot be transferred away from the values decoded after it', () => {
  const first = readMsgpack(Buffer.from(packBody({ value: new Uint8Array([1, 2, 3]) })), true) as { value: Uint8Array };
  // transferring the slab would detach it under every later value (postMessage, structuredClone with a
  // transfer list); marked untransferable, it is copied instead (Node's own Buffer pool behaves the same)
  const slab = first.value.buffer as ArrayBuffer;
  const size = slab.byteLength;
  try {
    structuredClone(first.value, { transfer: [slab] });
  } catch {
    // refusing is as good as copying
  }
  assert.equal(slab.byteLength, size, 'the slab is still attached');
  assert.deepEqual(first.value, new Uint8Array([1, 2, 3]));
  const later = readMsgpack(Buffer.from(packBody({ value: new Uint8Array([4, 5]) })), true) as { value: Uint8Array };
  assert.deepEqual(later.value, new Uint8Array([4, 5]));
});

test('msgpack-read: keys cached by their bytes come back right when their slots collide', () => {
  const keys = Array.from({ length: 3000 }, (_, i) => `key${i}`);
  for (let round = 0; round < 2; round++) {
    for (const k of keys) assert.deepEqual(readMsgpack(Buffer.from(packBody({ [k]: k })), true), { [k]: k });
  }
});

test('msgpack-read: the server decodes requests through it as it did through msgpackr', () => {
  const d = clientMessageDecoder(1 << 20);
  const req = encodeRequest(7, 'set', { path: '/a/b', value: new Uint8Array([9, 8, 7]), ifVersion: 3 });
  const out = d.push(req);
  assert.equal(out.length, 1);
  assert.equal(out[0]!.type, 'message');
  assert.deepEqual((out[0] as { message: unknown }).message, { t: 'req', id: 7, op: 'set', s: 0, a: { path: '/a/b', value: new Uint8Array([9, 8, 7]), ifVersion: 3 } });
  // a bad shape is still refused by the schema, for that request only
  const bad = d.push(encodeFrame(8, packBody({ t: 'req', op: 'get', a: { path: 12 } })));
  assert.equal(bad[0]!.type, 'reject');
});
