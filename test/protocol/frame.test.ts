import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type FrameEvent, FrameReader, HEADER_BYTES, encodeFrame } from '../../src/protocol/frame.js';

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function header(length: number, id: number): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES);
  new DataView(h.buffer).setUint32(0, length);
  new DataView(h.buffer).setUint32(4, id);
  return h;
}

/** Feeds `bytes` cut at the given offsets; returns every event, bodies copied (views may alias chunks). */
function feed(reader: FrameReader, bytes: Uint8Array, cuts: readonly number[]): FrameEvent[] {
  const out: FrameEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, bytes.length]) {
    reader.push(bytes.slice(prev, c), out);
    prev = c;
  }
  // `owned` (the body assembled into a buffer of its own) depends on the cuts: not compared here.
  return out.map((e) => (e.type === 'frame' ? { type: e.type, id: e.id, body: Uint8Array.from(e.body) } : e));
}

const frames = [
  { id: 1, body: Uint8Array.of(0xc0) },
  { id: 0xffff_ffff, body: new Uint8Array(300).map((_, i) => i & 0xff) },
  { id: 0, body: Uint8Array.of(1, 2, 3) },
];
const stream = concat(frames.map((f) => encodeFrame(f.id, f.body)));
const expected = frames.map((f) => ({ type: 'frame', id: f.id, body: f.body }));

test('frame: a stream split at every single byte boundary yields the same frames', () => {
  for (let cut = 0; cut <= stream.length; cut++) {
    assert.deepEqual(feed(new FrameReader(1024), stream, [cut]), expected, `cut at ${cut}`);
  }
});

test('frame: a stream fed one byte at a time yields the same frames', () => {
  const cuts = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
  assert.deepEqual(feed(new FrameReader(1024), stream, cuts), expected);
});

test('frame: any chunking of random frames yields exactly those frames (property)', () => {
  const arbFrame = fc.record({ id: fc.nat(), body: fc.uint8Array({ minLength: 1, maxLength: 200 }) });
  fc.assert(fc.property(fc.array(arbFrame, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 30 }), (fs, rawCuts) => {
    const bytes = concat(fs.map((f) => encodeFrame(f.id, f.body)));
    const cuts = [...new Set(rawCuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
    const got = feed(new FrameReader(256), bytes, cuts);
    assert.deepEqual(got, fs.map((f) => ({ type: 'frame', id: f.id, body: f.body })));
  }));
});

test('frame: truncated input yields only the complete frames and holds the rest', () => {
  for (let len = 0; len < stream.length; len++) {
    const r = new FrameReader(1024);
    const got = feed(r, stream.subarray(0, len), []);
    const complete = expected.filter((_, i) => concat(frames.slice(0, i + 1).map((f) => encodeFrame(f.id, f.body))).length <= len);
    assert.deepEqual(got, complete, `prefix of ${len}`);
    assert.equal(r.failed, false);
  }
});

test('frame: a 4 GiB length prefix is reported oversized at once and its body is skipped, not buffered', () => {
  const r = new FrameReader(1024);
  const out: FrameEvent[] = [];
  r.push(header(0xffff_ffff, 7), out);
  assert.deepEqual(out, [{ type: 'oversized', id: 7, size: 0xffff_ffff }]);
  // A megabyte of the skipped body: nothing reported, nothing held.
  const junk = new Uint8Array(1 << 20).fill(0xee);
  for (let i = 0; i < 8; i++) r.push(junk, out);
  assert.equal(out.length, 1);
  assert.equal(r.buffered, 0);
});

test('frame: after an oversized body has streamed past, the next frame is read normally', () => {
  const big = new Uint8Array(2000).fill(9);
  const bytes = concat([encodeFrame(5, big), encodeFrame(6, Uint8Array.of(1))]);
  for (const cut of [0, 3, 8, 9, 1000, 2008, 2009, 2012]) {
    assert.deepEqual(feed(new FrameReader(100), bytes, [cut]), [
      { type: 'oversized', id: 5, size: 2000 },
      { type: 'frame', id: 6, body: Uint8Array.of(1) },
    ], `cut at ${cut}`);
  }
});

test('frame: the limit is the body length, inclusive', () => {
  const r = new FrameReader(4);
  assert.deepEqual(feed(r, concat([encodeFrame(1, new Uint8Array(4)), encodeFrame(2, new Uint8Array(5))]), []).map((e) => e.type), ['frame', 'oversized']);
});

test('frame: a zero length is fatal, and nothing is reported after it', () => {
  const r = new FrameReader(1024);
  const got = feed(r, concat([encodeFrame(1, Uint8Array.of(1)), header(0, 2), encodeFrame(3, Uint8Array.of(3))]), []);
  assert.equal(got.length, 2);
  assert.equal(got[0]!.type, 'frame');
  assert.ok(got[1]!.type === 'fatal' && got[1]!.error.code === 'PROTOCOL');
  assert.equal(r.failed, true);
  const more: FrameEvent[] = [];
  r.push(encodeFrame(4, Uint8Array.of(4)), more);
  assert.deepEqual(more, []);
});

test('frame: a body assembled from chunks does not alias the chunks', () => {
  const r = new FrameReader(1024);
  const bytes = encodeFrame(1, Uint8Array.of(1, 2, 3, 4));
  const a = bytes.slice(0, 10);
  const b = bytes.slice(10);
  const out: FrameEvent[] = [];
  r.push(a, out);
  r.push(b, out);
  a.fill(0);
  b.fill(0);
  assert.ok(out[0]!.type === 'frame');
  assert.deepEqual(Array.from(out[0]!.body), [1, 2, 3, 4]);
});

test('frame: encodeFrame refuses an empty body', () => {
  assert.throws(() => encodeFrame(1, new Uint8Array(0)), { code: 'TOO_LARGE' });
});
