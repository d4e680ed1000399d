import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr, Unpackr } from 'msgpackr';
import fc from 'fast-check';
import { BugError, LatchkeyError } from '../../src/core/errors.js';
import { type Mutation, applyMutations, emptyRoot } from '../../src/core/tree.js';
import { TreeBuilder } from '../../src/core/tree-builder.js';
import { type ValueReader, ValueRef } from '../../src/core/value.js';
import { CommonReplay, decodeCommonRecord } from '../../src/storage/wal-decode.js';
import { dump } from './helpers.js';
import { RECORD_HEADER_SIZE, decodeMutations, encodeRecord } from '../../src/storage/wal.js';

const where = { file: 'test.log', offset: 0, revision: 1 };
const payloadOf = (muts: readonly Mutation[]): Uint8Array => encodeRecord(1, muts).subarray(RECORD_HEADER_SIZE);
const general = new Unpackr({ useRecords: false, copyBuffers: true });
const plain = (muts: readonly Mutation[]): unknown => muts.map((m) => (m.op === 'put' ? { ...m, value: [...(m.value as Uint8Array)] } : { ...m }));

test('fast decode: puts and deletes decode as msgpackr decodes them (property)', () => {
  const seg = fc.stringMatching(/^[a-z0-9_.-]{1,40}$/);
  const mut = fc.oneof(
    fc.record({ op: fc.constant('put' as const), path: fc.array(seg, { minLength: 1, maxLength: 6 }).map((s) => '/' + s.join('/')), value: fc.uint8Array({ maxLength: 300 }) }),
    fc.record({ op: fc.constant('del' as const), path: fc.array(seg, { minLength: 1, maxLength: 4 }).map((s) => '/' + s.join('/')) }),
  );
  fc.assert(fc.property(fc.array(mut, { maxLength: 40 }), (muts) => {
    const p = payloadOf(muts);
    const fast = decodeCommonRecord(p);
    assert.ok(fast !== undefined, 'the common shape takes the fast path');
    assert.deepEqual(plain(fast), plain(muts));
    assert.deepEqual(plain(decodeMutations(p, where)), plain(muts));
  }));
});

test('fast decode: long paths (str8, str16), large values (bin16, bin32) and an empty value', () => {
  const muts: Mutation[] = [
    { op: 'put', path: '/' + 'a'.repeat(40), value: new Uint8Array(0) },
    { op: 'put', path: '/' + 'b'.repeat(300), value: new Uint8Array(300).fill(7) },
    { op: 'put', path: '/c', value: new Uint8Array(70_000).fill(9) },
    { op: 'del', path: '/' + 'd'.repeat(31) },
  ];
  const fast = decodeCommonRecord(payloadOf(muts));
  assert.ok(fast !== undefined);
  assert.deepEqual(plain(fast), plain(muts));
});

test('fast decode: values are copies (the payload can go), sharing one buffer per record', () => {
  const muts: Mutation[] = [
    { op: 'put', path: '/a', value: new Uint8Array([1, 2, 3]) },
    { op: 'put', path: '/b', value: new Uint8Array([4, 5]) },
  ];
  const p = payloadOf(muts);
  const fast = decodeCommonRecord(p)!;
  p.fill(0);
  const [a, b] = fast.map((m) => (m as Extract<Mutation, { op: 'put' }>).value as Uint8Array);
  assert.deepEqual([...a!], [1, 2, 3]);
  assert.deepEqual([...b!], [4, 5]);
  assert.equal(a!.buffer, b!.buffer);
  assert.equal(a!.buffer.byteLength, 5, 'only the values\' bytes are kept');
  assert.notEqual(a!.buffer, p.buffer);
});

test('fast decode: other shapes fall back to the general decoder, with the same result', () => {
  const others: Mutation[][] = [
    [{ op: 'put', path: '/é', value: new Uint8Array([1]) }], // a non-ASCII path
    [{ op: 'put', path: '/e', value: new Uint8Array([1]), ephemeralOwner: 's1' }],
    [{ op: 'put', path: '/q/n0000000001', value: new Uint8Array([1]), seq: true }],
    [{ op: 'perms', path: '/p', perms: ['n0', 'r1'] }],
    [{ op: 'put', path: '/a', value: new Uint8Array([1]) }, { op: 'perms', path: '/a', perms: ['b3'] }],
  ];
  for (const muts of others) {
    const p = payloadOf(muts);
    assert.equal(decodeCommonRecord(p), undefined, JSON.stringify(muts.map((m) => m.op)));
    assert.deepEqual(plain(decodeMutations(p, where)), plain(muts));
  }
  const reader = {} as ValueReader; // never read here
  const refs = { ref: (file: number, offset: number, length: number, crc: number) => new ValueRef(reader, file, offset, length, crc) };
  const withRef: Mutation[] = [{ op: 'put', path: '/big', value: new ValueRef(reader, 1, 2, 3, 4) }];
  const p = payloadOf(withRef);
  assert.equal(decodeCommonRecord(p), undefined);
  const got = decodeMutations(p, where, refs)[0] as Extract<Mutation, { op: 'put' }>;
  assert.ok(got.value instanceof ValueRef && got.value.offset === 2);
});

test('fast decode: a damaged payload is left to the general decoder, which answers CORRUPT', () => {
  const p = payloadOf([{ op: 'put', path: '/a', value: new Uint8Array([1, 2, 3]) }]);
  const cut = p.subarray(0, p.length - 2);
  assert.equal(decodeCommonRecord(cut), undefined);
  assert.throws(() => decodeMutations(cut, where), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'));
  // trailing bytes after the list: not the common shape
  const extra = new Uint8Array(p.length + 1);
  extra.set(p);
  assert.equal(decodeCommonRecord(extra), undefined);
  // a tuple of the wrong arity
  const odd = new Packr({ useRecords: false }).pack([[1, '/a']]);
  assert.equal(decodeCommonRecord(odd), undefined);
  assert.throws(() => decodeMutations(odd, where), (e: unknown) => LatchkeyError.is(e, 'CORRUPT'));
  assert.deepEqual(general.unpack(odd), [[1, '/a']]);
});

test('fast decode: an array32 count beyond the payload is not its shape (left to the general decoder)', () => {
  for (const count of [0xffffffff, 0x7fffffff, 64]) {
    const p = new Uint8Array(16);
    p[0] = 0xdd;
    new DataView(p.buffer).setUint32(1, count);
    assert.equal(decodeCommonRecord(p), undefined);
  }
});

test('fast replay: CommonReplay into a builder gives the tree and the mutations of the decoded records (property)', () => {
  // Few names, so records put into existing nodes and directories, delete them, and come back in and out of order.
  const seg = fc.constantFrom('a', 'b', 'c', 'sixteen-byte-nam', 'n000000000000001', 'n000000000000002', 'é');
  const pathArb = fc.array(seg, { minLength: 1, maxLength: 3 }).map((s) => '/' + s.join('/'));
  const mut = fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant('put' as const), path: pathArb, value: fc.uint8Array({ maxLength: 80 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('del' as const), path: pathArb }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('put' as const), path: fc.constant('/'), value: fc.uint8Array({ maxLength: 8 }) }) },
  );
  fc.assert(fc.property(fc.array(fc.array(mut, { minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 12 }), (records) => {
    const slow = new TreeBuilder(emptyRoot());
    const fast = new TreeBuilder(emptyRoot());
    const replay = new CommonReplay();
    let rev = 0;
    for (const raw of records) {
      // Only records that apply (parents exist, deleted nodes exist), made so against the slow builder's tree.
      const muts: Mutation[] = [];
      let probe = slow.root();
      for (const m of raw) {
        try {
          probe = applyMutations(probe, rev + 1, [m]);
          muts.push(m);
        } catch {
          // a parent missing or a missing node: not a record the log would hold
        }
      }
      if (muts.length === 0) continue;
      rev++;
      const p = Buffer.from(payloadOf(muts));
      slow.apply(rev, decodeMutations(p, where));
      const ascii = muts.every((m) => !m.path.includes('é'));
      assert.equal(replay.scan(p), ascii, 'the common shape: ASCII paths only');
      if (!ascii) {
        fast.apply(rev, decodeMutations(p, where));
        continue;
      }
      assert.equal(replay.count, muts.length);
      assert.equal(replay.hasDelete, muts.some((m) => m.op === 'del'));
      const values = replay.apply(p, rev, fast);
      assert.deepEqual(plain(replay.mutations(p, values)), plain(muts));
      if (rev % 3 === 0) assert.deepEqual(dump(fast.root()), dump(slow.root()), 'the same tree part way');
    }
    assert.deepEqual(dump(fast.root()), dump(slow.root()));
  }), { numRuns: 300 });
});

test('fast replay: a put whose parent is missing throws as the builder does (recovery makes it CORRUPT)', () => {
  const replay = new CommonReplay();
  const p = Buffer.from(payloadOf([{ op: 'put', path: '/missing/child', value: new Uint8Array([1]) }]));
  assert.ok(replay.scan(p));
  assert.throws(() => replay.apply(p, 1, new TreeBuilder(emptyRoot())), BugError);
});
