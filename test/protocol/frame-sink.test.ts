/**
 * The frame sink (frame.ts): a large reply's last byte string read straight
 * into a caller's buffer as the chunks arrive, whatever the chunk
 * boundaries; everything else decoded as before; bad bodies still PROTOCOL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LatchkeyError } from '../../src/core/errors.js';
import { type Decoded, packBodySplit, serverMessageDecoder } from '../../src/protocol/codec.js';
import { FrameBatch, FrameReader, SINK_MIN, lastBytes } from '../../src/protocol/frame.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { MsgpackWriter } from '../../src/protocol/msgpack-write.js';

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff;
  return b;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An `ok` reply to a get of `value`, as the server encodes it (reply.ts). */
function reply(value: Uint8Array, path = '/f/b/1'): unknown {
  return { t: 'ok', rev: 9, r: { path, value, stat: { createRev: 1, modRev: 2, version: 1, childrenRev: 1, numChildren: 0 }, revision: 9 } };
}

/** The stream of frames, as a server's batch writes it (heads and tails). */
function stream(frames: ReadonlyArray<{ id: number; body: unknown }>): Uint8Array {
  const batch = new FrameBatch(256);
  for (const f of frames) {
    const s = packBodySplit(f.body);
    batch.addSplit(f.id, s.head, s.tail);
  }
  return concat(batch.takeParts());
}

function cut(all: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, all.length]) {
    if (c > prev) out.push(all.slice(prev, c)); // copies: a chunk buffer is reused by the socket afterwards
    prev = c;
  }
  return out;
}

test('encodeSplit: head + tail are the bytes encode writes for the same value, keys reordered only', () => {
  const w = new MsgpackWriter();
  const v = bytes(SINK_MIN + 5, 1);
  const s = w.encodeSplit(reply(v), SINK_MIN)!;
  assert.equal(s.tail, v, 'the tail is the caller\'s buffer, not a copy');
  const joined = concat([s.head, s.tail!]);
  const plain = w.encode({ t: 'ok', rev: 9, r: { path: '/f/b/1', stat: { createRev: 1, modRev: 2, version: 1, childrenRev: 1, numChildren: 0 }, revision: 9, value: v } })!;
  assert.deepEqual(joined, plain);
  // A large string with something after it (not the last key of the outer map) is written in place.
  const inner = w.encodeSplit({ a: v, b: 1 }, SINK_MIN)!;
  assert.equal(inner.tail, v, 'the map writes its large field last');
  const notLast = w.encodeSplit({ r: { a: v }, z: 1 }, SINK_MIN)!;
  assert.equal(notLast.tail, undefined);
  assert.deepEqual(notLast.head, w.encode({ r: { a: v }, z: 1 }));
});

test('lastBytes finds the byte string that ends the body, and nothing else', () => {
  const v = bytes(SINK_MIN, 2);
  const s = packBodySplit(reply(v));
  const body = concat([s.head, s.tail!]);
  const found = lastBytes(body, body.length, body.length);
  assert.ok(typeof found === 'object');
  assert.equal(found.at, s.head.length);
  assert.equal(body.length - found.at, v.length);
  assert.equal(lastBytes(body, 3, body.length), 'more');
  // One byte less of the body: the string no longer ends it.
  assert.equal(lastBytes(body, body.length, body.length + 1), 'no');
  // A small string is never sunk.
  const small = packBodySplit(reply(bytes(100, 1))).head;
  assert.equal(lastBytes(small, small.length, small.length), 'no');
  // Not msgpack at all.
  assert.equal(lastBytes(Uint8Array.of(0xc1, 1, 2), 3, SINK_MIN * 2), 'no');
});

test('property: frames of any size, cut anywhere, sunk or not: every message and every value byte exact, bytes past a value untouched', () => {
  const size = fc.oneof(
    fc.integer({ min: 0, max: 300 }),
    fc.integer({ min: SINK_MIN - 40, max: SINK_MIN + 40 }),
    fc.integer({ min: SINK_MIN, max: 300_000 }),
  );
  const frame = fc.record({
    size,
    // none: no sink; exact/larger: a buffer that fits; short: one byte too small (decoded as usual, the value left to the caller's check)
    dest: fc.constantFrom('none', 'exact', 'larger', 'short'),
    pathLen: fc.integer({ min: 1, max: 3000 }),
  });
  fc.assert(fc.property(fc.array(frame, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 40 }), fc.integer({ min: 1, max: 70_000 }), (frames, cuts, step) => {
    const dests = new Map<number, Uint8Array>();
    const values: Uint8Array[] = [];
    const list = frames.map((f, i) => {
      const value = bytes(f.size, i + 1);
      values.push(value);
      const id = i + 1;
      if (f.dest !== 'none') {
        const n = f.dest === 'exact' ? f.size : f.dest === 'larger' ? f.size + 17 : Math.max(0, f.size - 1);
        dests.set(id, new Uint8Array(n).fill(0xee));
      }
      return { id, body: reply(value, `/${'p'.repeat(f.pathLen)}`) };
    });
    const all = stream(list);
    // Chunks: the random cuts plus a regular step (small steps cut headers and prefixes apart).
    const extra: number[] = [];
    for (let at = step; at < all.length && extra.length < 200; at += step) extra.push(at);
    const chunks = cut(all, [...cuts, ...extra]);
    const dec = serverMessageDecoder(4 * 1024 * 1024);
    dec.sink = (id) => dests.get(id);
    const got: Decoded<ServerMessage>[] = [];
    for (const c of chunks) got.push(...dec.push(c));
    assert.equal(got.length, list.length);
    assert.equal(dec.buffered, 0);
    got.forEach((d, i) => {
      assert.equal(d.type, 'message');
      if (d.type !== 'message') return;
      const m = d.message as { t: string; id: number; r: { path: string; value: Uint8Array } };
      assert.equal(m.t, 'ok');
      assert.equal(m.id, i + 1);
      assert.equal(m.r.path.length, frames[i]!.pathLen + 1);
      const value = values[i]!;
      const dest = dests.get(i + 1);
      if (d.sunk !== undefined) {
        assert.ok(dest !== undefined && value.length >= SINK_MIN && dest.length >= value.length, 'sunk only into a buffer that holds it');
        assert.equal(d.sunk, value.length);
        assert.equal(m.r.value.length, 0);
        assert.deepEqual(dest.subarray(0, value.length), value);
        assert.ok(dest.subarray(value.length).every((x) => x === 0xee), 'bytes past the value untouched');
      } else {
        assert.deepEqual(m.r.value, value);
        // Not sunk although it could have been only when its frame lay in one chunk (no frame buffer to save).
        if (dest !== undefined && value.length >= SINK_MIN && dest.length >= value.length) {
          assert.ok(chunks.some((c) => c.length >= value.length), 'a sinkable value was not sunk');
        }
      }
    });
  }), { numRuns: 60 });
});

test('a sunk frame whose body is not a message is still a fatal PROTOCOL error', () => {
  const v = bytes(SINK_MIN + 10, 3);
  // The body ends in a large string, but is an array, not a message.
  const w = new MsgpackWriter();
  const s = w.encodeSplit([1, v], SINK_MIN)!;
  const batch = new FrameBatch();
  batch.addSplit(5, s.head, s.tail);
  const all = concat(batch.takeParts());
  const dec = serverMessageDecoder(4 * 1024 * 1024);
  const dest = new Uint8Array(v.length);
  dec.sink = () => dest;
  const out: Decoded<ServerMessage>[] = [];
  for (const c of cut(all, [100, 5000, 70_000])) out.push(...dec.push(c));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.type, 'fatal');
  assert.ok(out[0]!.type === 'fatal' && LatchkeyError.is(out[0]!.error, 'PROTOCOL'));
  assert.equal(dec.failed, true);
});

test('garbage where a sinkable reply was expected: assembled and refused as PROTOCOL, not written to the buffer', () => {
  const body = new Uint8Array(SINK_MIN + 100).fill(0xc1); // 0xc1 is never used in msgpack
  const head = new Uint8Array(8);
  new DataView(head.buffer).setUint32(0, body.length);
  new DataView(head.buffer).setUint32(4, 7);
  const dec = serverMessageDecoder(4 * 1024 * 1024);
  const dest = new Uint8Array(body.length).fill(0xee);
  dec.sink = () => dest;
  const out: Decoded<ServerMessage>[] = [];
  for (const c of cut(concat([head, body]), [9, 4000, 20_000])) out.push(...dec.push(c));
  assert.equal(out.length, 1);
  assert.ok(out[0]!.type === 'fatal' && LatchkeyError.is(out[0]!.error, 'PROTOCOL'));
  assert.ok(dest.every((x) => x === 0xee));
});

test('a short frame (the stream ends inside a sunk value) yields nothing and holds its head only', () => {
  const v = bytes(200_000, 4);
  const all = stream([{ id: 3, body: reply(v) }]);
  const reader = new FrameReader(4 * 1024 * 1024);
  const dest = new Uint8Array(v.length);
  let asked = 0;
  reader.sink = (id, length) => {
    asked++;
    assert.equal(id, 3);
    assert.equal(length, all.length - 8);
    return dest;
  };
  const out: import('../../src/protocol/frame.js').FrameEvent[] = [];
  for (const c of cut(all.subarray(0, all.length - 1000), [1, 8, 9, 50, 65_536])) reader.push(c, out);
  assert.equal(out.length, 0);
  assert.equal(asked, 1);
  assert.ok(reader.buffered < 10_000, `holds the head only (${reader.buffered} bytes)`);
  reader.push(all.subarray(all.length - 1000), out);
  assert.equal(out.length, 1);
  assert.ok(out[0]!.type === 'frame' && out[0]!.sunk === v.length);
  assert.deepEqual(dest, v);
});
