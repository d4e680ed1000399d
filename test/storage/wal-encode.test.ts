import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import type { Mutation } from '../../src/core/tree.js';
import { ValueRef, type ValueReader } from '../../src/core/value.js';
import { RECORD_HEADER_SIZE, decodeMutations, encodeRecord, encodeSegmentHeader, scanSegment } from '../../src/storage/wal.js';

// encodeRecord writes commit records by hand (wal.ts): every mutation shape must decode to what
// was encoded, through the log's own decoder, and scan as a valid record with its checksums.

const reader: ValueReader = {
  readSync: () => { throw new Error('not read'); },
  read: () => Promise.reject(new Error('not read')),
  peek: () => undefined,
  readInto: () => Promise.reject(new Error('not read')),
};
const refs = { ref: (file: number, offset: number, length: number, crc: number) => new ValueRef(reader, file, offset, length, crc) };

const text = fc.string({ unit: 'grapheme', maxLength: 40 });
const seg = fc.oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }), fc.string({ minLength: 1, maxLength: 300 })).filter((x) => !x.includes('/'));
const pathArb = fc.array(seg, { minLength: 1, maxLength: 4 }).map((segs) => `/${segs.join('/')}`);
const u32 = fc.nat({ max: 0xffffffff });
const refArb = fc.tuple(u32, u32, u32, u32).map(([f, o, l, c]) => new ValueRef(reader, f, o, l, c));
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('put' as const), path: pathArb, value: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 60000, maxLength: 70000 })) }),
  fc.record({ op: fc.constant('put' as const), path: pathArb, value: fc.uint8Array({ maxLength: 40 }), ephemeralOwner: text, seq: fc.boolean() }, { requiredKeys: ['op', 'path', 'value'] }),
  fc.record({ op: fc.constant('put' as const), path: pathArb, value: refArb }),
  fc.record({ op: fc.constant('put' as const), path: pathArb, value: refArb, ephemeralOwner: text, seq: fc.boolean() }, { requiredKeys: ['op', 'path', 'value'] }),
  fc.record({ op: fc.constant('del' as const), path: pathArb }),
  fc.record({ op: fc.constant('perms' as const), path: pathArb, perms: fc.array(text, { maxLength: 20 }) }),
  fc.record({ op: fc.constant('move' as const), path: pathArb, from: fc.record({ file: u32, offset: u32 }), value: refArb }),
);

/** What decoding gives back for `m` (an owner-less, non-sequential put carries neither field; refs as plain locations). */
function normal(m: Mutation): unknown {
  const loc = (v: unknown): unknown => (v instanceof ValueRef ? { file: v.file, offset: v.offset, length: v.length, crc: v.crc } : v);
  if (m.op === 'put') {
    return { op: 'put', path: m.path, value: loc(m.value), ...(m.ephemeralOwner !== undefined ? { ephemeralOwner: m.ephemeralOwner } : {}), ...(m.seq ? { seq: true } : {}) };
  }
  if (m.op === 'move') return { op: 'move', path: m.path, from: { ...m.from }, value: loc(m.value) };
  return { ...m };
}

test('wal encode: every mutation shape decodes to what was encoded, and the records scan with valid checksums', () => {
  fc.assert(fc.property(fc.array(fc.array(mutationArb, { maxLength: 20 }), { minLength: 1, maxLength: 8 }), (commits) => {
    const recs = commits.map((muts, i) => encodeRecord(i + 1, muts));
    const seg = new Uint8Array(32 + recs.reduce((n, r) => n + r.length, 0));
    seg.set(encodeSegmentHeader(1), 0);
    let at = 32;
    for (const r of recs) { seg.set(r, at); at += r.length; }
    const scan = scanSegment(seg, 'wal-test.log', 1, true);
    assert.equal(scan.damage, undefined);
    assert.equal(scan.torn, undefined);
    assert.equal(scan.records.length, commits.length);
    scan.records.forEach((r, i) => {
      const got = decodeMutations(seg.subarray(r.payloadStart, r.payloadEnd), { file: 'x', offset: r.offset, revision: r.rev }, refs);
      assert.deepEqual(got.map(normal), commits[i]!.map(normal));
    });
  }), { numRuns: 200 });
});

test('wal encode: a commit of more than 15 and more than 65,535 mutations (array16 and array32 headers) decodes whole', () => {
  for (const n of [16, 70_000]) {
    const muts: Mutation[] = Array.from({ length: n }, (_, i) => ({ op: 'del', path: `/d/${i}` }));
    const rec = encodeRecord(7, muts);
    const got = decodeMutations(rec.subarray(RECORD_HEADER_SIZE), { file: 'x', offset: 0, revision: 7 }, refs);
    assert.equal(got.length, n);
    assert.deepEqual(got[n - 1], { op: 'del', path: `/d/${n - 1}` });
  }
});

test('wal encode: a value location beyond 32 bits is encoded (by msgpackr) and decodes exactly', () => {
  const big = new ValueRef(reader, 3, 2 ** 40 + 5, 10, 99);
  const rec = encodeRecord(1, [{ op: 'put', path: '/big', value: big }]);
  const [m] = decodeMutations(rec.subarray(RECORD_HEADER_SIZE), { file: 'x', offset: 0, revision: 1 }, refs);
  assert.ok(m !== undefined && m.op === 'put' && m.value instanceof ValueRef);
  assert.equal(m.value.offset, 2 ** 40 + 5);
  // The hand encoder's payload is valid msgpack to any reader: the same values as msgpackr's own encoding.
  const small = encodeRecord(2, [{ op: 'put', path: '/p', value: new Uint8Array([1, 2]), ephemeralOwner: 'o', seq: true }]);
  assert.deepEqual(new Packr({ useRecords: false }).unpack(small.subarray(RECORD_HEADER_SIZE)), [[1, '/p', new Uint8Array([1, 2]), 'o', 1]]);
});
