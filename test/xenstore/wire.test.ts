import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  HEADER_BYTES, PAYLOAD_MAX, XsDecoder, type XsDecodeEvent, XsType, encodePacket, errorPayload, firstString, fromUtf8, nulTerminated,
  splitFirst, splitStrings, typeName,
} from '../../src/xenstore/wire.js';

function drain(d: XsDecoder): XsDecodeEvent[] {
  const out: XsDecodeEvent[] = [];
  for (let e = d.next(); e !== undefined; e = d.next()) out.push(e);
  return out;
}

test('wire: type numbers are those of xs_wire.h', () => {
  assert.equal(XsType.CONTROL, 0);
  assert.equal(XsType.DIRECTORY, 1);
  assert.equal(XsType.READ, 2);
  assert.equal(XsType.TRANSACTION_END, 7);
  assert.equal(XsType.WRITE, 11);
  assert.equal(XsType.WATCH_EVENT, 15);
  assert.equal(XsType.ERROR, 16);
  assert.equal(XsType.RESET_WATCHES, 21);
  assert.equal(XsType.DIRECTORY_PART, 22);
  assert.equal(typeName(13), 'RM');
  assert.equal(typeName(999), 'UNKNOWN(999)');
});

test('wire: a packet is four little-endian u32 then the payload, byte by byte', () => {
  const b = encodePacket(XsType.READ, 0x01020304, 0xa0b0c0d0, Uint8Array.of(0x2f, 0x61, 0x00));
  assert.deepEqual([...b], [
    0x02, 0x00, 0x00, 0x00, // type READ
    0x04, 0x03, 0x02, 0x01, // req_id
    0xd0, 0xc0, 0xb0, 0xa0, // tx_id
    0x03, 0x00, 0x00, 0x00, // len
    0x2f, 0x61, 0x00, //       "/a\0"
  ]);
});

test('wire: an ERROR reply carries the errno name and a NUL', () => {
  const b = encodePacket(XsType.ERROR, 7, 0, errorPayload('ENOENT'));
  assert.deepEqual([...b], [16, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0x45, 0x4e, 0x4f, 0x45, 0x4e, 0x54, 0]);
});

test('wire: strings are each NUL-terminated; a missing final NUL is tolerated', () => {
  assert.deepEqual([...nulTerminated(['ab', '', 'c'])], [0x61, 0x62, 0, 0, 0x63, 0]);
  assert.deepEqual([...nulTerminated([])], []);
  assert.deepEqual(splitStrings(Uint8Array.of(0x61, 0x62, 0, 0, 0x63, 0)), ['ab', '', 'c']);
  assert.deepEqual(splitStrings(Uint8Array.of(0x61, 0, 0x62)), ['a', 'b']);
  assert.deepEqual(splitStrings(new Uint8Array(0)), []);
});

test('wire: WRITE splits at the first NUL and keeps the value raw (NULs included)', () => {
  const r = splitFirst(Uint8Array.of(0x2f, 0x78, 0, 1, 0, 2));
  assert.ok(r);
  assert.equal(r.first, '/x');
  assert.deepEqual([...r.rest], [1, 0, 2]);
  assert.deepEqual([...splitFirst(Uint8Array.of(0x2f, 0))!.rest], []);
  assert.equal(splitFirst(Uint8Array.of(0x2f, 0x78)), undefined);
});

test('wire: the decoder yields the same packets however the stream is cut', () => {
  const packets = [
    encodePacket(XsType.WRITE, 1, 0, Uint8Array.of(0x2f, 0x61, 0, 0x76)),
    encodePacket(XsType.TRANSACTION_START, 2, 0, Uint8Array.of(0)),
    encodePacket(XsType.READ, 3, 9, new Uint8Array(0)),
    encodePacket(XsType.DIRECTORY, 0xffff_ffff, 0xffff_ffff, new Uint8Array(PAYLOAD_MAX).fill(0x61)),
  ];
  const stream = new Uint8Array(packets.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of packets) {
    stream.set(p, at);
    at += p.length;
  }
  const expect = (events: XsDecodeEvent[]): void => {
    assert.equal(events.length, 4);
    const got = events.map((e) => (e.kind === 'packet' ? e.packet : undefined));
    assert.deepEqual(got.map((p) => [p?.type, p?.reqId, p?.txId, p?.payload.length]), [
      [XsType.WRITE, 1, 0, 4], [XsType.TRANSACTION_START, 2, 0, 1], [XsType.READ, 3, 9, 0], [XsType.DIRECTORY, 0xffff_ffff, 0xffff_ffff, PAYLOAD_MAX],
    ]);
    assert.deepEqual([...got[0]!.payload], [0x2f, 0x61, 0, 0x76]);
    assert.ok(got[3]!.payload.every((b) => b === 0x61));
  };
  // One byte at a time: every header and payload boundary is crossed.
  const d1 = new XsDecoder();
  const ev1: XsDecodeEvent[] = [];
  for (let i = 0; i < stream.length; i++) {
    d1.push(stream.subarray(i, i + 1));
    ev1.push(...drain(d1));
  }
  expect(ev1);
  assert.equal(d1.bufferedBytes, 0);
  // Random cuts.
  fc.assert(fc.property(fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 12 }), (cuts) => {
    const d = new XsDecoder();
    const ev: XsDecodeEvent[] = [];
    let prev = 0;
    for (const c of [...cuts.sort((a, b) => a - b), stream.length]) {
      d.push(stream.slice(prev, c));
      ev.push(...drain(d));
      prev = c;
    }
    expect(ev);
  }), { numRuns: 200 });
});

test('wire: a header announcing more than the payload limit is fatal, and nothing follows it', () => {
  const d = new XsDecoder();
  const h = encodePacket(XsType.READ, 5, 0, new Uint8Array(0));
  new DataView(h.buffer).setUint32(12, PAYLOAD_MAX + 1, true);
  d.push(h);
  d.push(encodePacket(XsType.READ, 6, 0, Uint8Array.of(0)));
  const ev = drain(d);
  assert.equal(ev.length, 1);
  assert.equal(ev[0]!.kind, 'oversized');
  const e0 = ev[0]!;
  assert.equal(e0.kind === 'oversized' && e0.len, PAYLOAD_MAX + 1);
  assert.equal(e0.kind === 'oversized' && e0.header.reqId, 5);
  d.push(encodePacket(XsType.READ, 7, 0, Uint8Array.of(0)));
  assert.equal(d.next(), undefined);
});

test('wire: a 4 GiB length prefix is refused from the header alone', () => {
  const d = new XsDecoder();
  d.push(Uint8Array.of(2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff));
  const e = d.next();
  assert.equal(e?.kind, 'oversized');
  assert.equal(e?.kind === 'oversized' && e.len, 0xffff_ffff);
});

test('wire: an incomplete header waits for more bytes', () => {
  const d = new XsDecoder();
  d.push(new Uint8Array(HEADER_BYTES - 1));
  assert.equal(d.next(), undefined);
  d.push(Uint8Array.of(0));
  const e = d.next();
  assert.equal(e?.kind, 'packet');
  assert.equal(e?.kind === 'packet' && e.packet.payload.length, 0);
});

test('wire: a leading byte-order mark is kept, from a Buffer and from a plain Uint8Array alike', () => {
  const bytes = [0xef, 0xbb, 0xbf, 0x2f, 0x61, 0];
  for (const b of [Buffer.from(bytes), new Uint8Array(bytes)]) {
    assert.equal(firstString(b), '\ufeff/a');
    assert.equal(fromUtf8(b.subarray(0, 5)), '\ufeff/a');
  }
});
