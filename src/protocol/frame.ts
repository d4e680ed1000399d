/**
 * Framing: how a byte stream is cut into messages.
 *
 *     offset 0  u32 big-endian  body length N (header not included), 1 ≤ N
 *     offset 4  u32 big-endian  id: the request id for a request, its reply
 *                               and its cancel; 0 for every other message
 *     offset 8  N bytes         msgpack body
 *
 * The id lives in the header, outside the body, so a frame the reader refuses
 * to buffer (longer than `maxFrame`) can still be answered: the reader reports
 * it as `oversized` with its id and then skips its body as it streams past,
 * holding none of it. The length is checked before a single body byte is
 * kept, so a 4 GiB prefix costs nothing. Every other framing fault (a zero
 * length) leaves the stream unparseable and is fatal.
 *
 * The reader is incremental and pure: chunks of any size in, complete frames
 * out, in order, whatever the chunk boundaries were. A body lying wholly in
 * one chunk is handed out as a view of it (no copy); a body split across
 * chunks is assembled once in a buffer of exactly its size.
 */
import { LatchkeyError } from '../core/errors.js';

export const HEADER_BYTES = 8;
/** The largest length a header can carry. */
export const MAX_LENGTH = 0xffff_ffff;

export type FrameEvent =
  | { readonly type: 'frame'; readonly id: number; readonly body: Uint8Array }
  | { readonly type: 'oversized'; readonly id: number; readonly size: number }
  | { readonly type: 'fatal'; readonly error: LatchkeyError };

export function frameHeader(target: Uint8Array, length: number, id: number): void {
  const dv = new DataView(target.buffer, target.byteOffset, HEADER_BYTES);
  dv.setUint32(0, length);
  dv.setUint32(4, id);
}

/** One frame: header then body, in a fresh buffer. */
export function encodeFrame(id: number, body: Uint8Array): Uint8Array {
  if (body.length === 0 || body.length > MAX_LENGTH) throw new LatchkeyError('TOO_LARGE', `frame body of ${body.length} bytes`);
  if (!Number.isInteger(id) || id < 0 || id > MAX_LENGTH) throw new LatchkeyError('INVALID_ARGUMENT', `frame id ${id}`);
  const out = new Uint8Array(HEADER_BYTES + body.length);
  frameHeader(out, body.length, id);
  out.set(body, HEADER_BYTES);
  return out;
}

export class FrameReader {
  /** Bodies longer than this are reported `oversized` and skipped. May be changed between pushes. */
  maxFrame: number;
  private readonly header = new Uint8Array(HEADER_BYTES);
  private headerFill = 0;
  private body: Uint8Array | undefined;
  private bodyFill = 0;
  private bodyId = 0;
  private skipLeft = 0;
  private dead = false;

  constructor(maxFrame: number) {
    this.maxFrame = maxFrame;
  }

  /** True once a fatal error was reported; later pushes yield nothing. */
  get failed(): boolean {
    return this.dead;
  }

  /** Bytes held for a frame not yet complete (bounded by maxFrame + header). */
  get buffered(): number {
    return this.headerFill + this.bodyFill;
  }

  push(chunk: Uint8Array, out: FrameEvent[]): void {
    let pos = 0;
    const end = chunk.length;
    while (pos < end && !this.dead) {
      if (this.skipLeft > 0) {
        const n = Math.min(this.skipLeft, end - pos);
        this.skipLeft -= n;
        pos += n;
        continue;
      }
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyFill, end - pos);
        this.body.set(chunk.subarray(pos, pos + n), this.bodyFill);
        this.bodyFill += n;
        pos += n;
        if (this.bodyFill === this.body.length) {
          out.push({ type: 'frame', id: this.bodyId, body: this.body });
          this.body = undefined;
          this.bodyFill = 0;
        }
        continue;
      }
      // Header: fast path when all 8 bytes are in this chunk.
      let length: number;
      let id: number;
      if (this.headerFill === 0 && end - pos >= HEADER_BYTES) {
        length = readU32(chunk, pos);
        id = readU32(chunk, pos + 4);
        pos += HEADER_BYTES;
      } else {
        const n = Math.min(HEADER_BYTES - this.headerFill, end - pos);
        this.header.set(chunk.subarray(pos, pos + n), this.headerFill);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < HEADER_BYTES) break;
        this.headerFill = 0;
        length = readU32(this.header, 0);
        id = readU32(this.header, 4);
      }
      if (length === 0) {
        this.dead = true;
        out.push({ type: 'fatal', error: new LatchkeyError('PROTOCOL', 'frame with an empty body') });
        return;
      }
      if (length > this.maxFrame) {
        out.push({ type: 'oversized', id, size: length });
        this.skipLeft = length;
        continue;
      }
      if (end - pos >= length) {
        out.push({ type: 'frame', id, body: chunk.subarray(pos, pos + length) });
        pos += length;
        continue;
      }
      this.body = new Uint8Array(length);
      this.bodyId = id;
      this.bodyFill = 0;
    }
  }
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;
}

/**
 * Frames queued for one write: header and body copied into one growing
 * buffer, handed out whole by `take()`. One allocation and one socket write
 * per batch instead of one per frame (pipelined replies and requests leave
 * in batches of dozens).
 */
/** Batches below this many bytes are copied out of the batch's buffer (see take). */
const SMALL_TAKE = 16 * 1024;

export class FrameBatch {
  private buf: Uint8Array;
  private len = 0;

  constructor(private readonly initial = 64 * 1024) {
    this.buf = new Uint8Array(initial);
  }

  get size(): number {
    return this.len;
  }

  add(id: number, body: Uint8Array): void {
    if (body.length === 0 || body.length > MAX_LENGTH) throw new LatchkeyError('TOO_LARGE', `frame body of ${body.length} bytes`);
    const need = this.len + HEADER_BYTES + body.length;
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.max(need, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    const b = this.buf;
    let at = this.len;
    const n = body.length;
    b[at++] = n >>> 24; b[at++] = (n >>> 16) & 0xff; b[at++] = (n >>> 8) & 0xff; b[at++] = n & 0xff;
    b[at++] = id >>> 24; b[at++] = (id >>> 16) & 0xff; b[at++] = (id >>> 8) & 0xff; b[at++] = id & 0xff;
    b.set(body, at);
    this.len = at + n;
  }

  /**
   * The queued bytes; the batch then starts empty. A small batch is copied
   * out into a pooled Buffer and the batch keeps its buffer: allocating a
   * fresh 64 KiB buffer per flush cost more than the request itself when
   * round trips are sequential (a flush per request; profiled: the external
   * allocations drove the garbage collector). A large batch is handed over
   * whole and the batch starts a fresh buffer (the caller may hold the old one).
   */
  take(): Uint8Array | undefined {
    const n = this.len;
    if (n === 0) return undefined;
    this.len = 0;
    if (n < SMALL_TAKE) {
      const out = Buffer.allocUnsafe(n);
      out.set(this.buf.subarray(0, n));
      return out;
    }
    const out = this.buf.subarray(0, n);
    this.buf = new Uint8Array(Math.max(this.initial, Math.min(n, 1 << 20)));
    return out;
  }
}
