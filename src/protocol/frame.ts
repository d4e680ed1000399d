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
  | {
    readonly type: 'frame'; readonly id: number; readonly body: Uint8Array;
    /** The body is a buffer of its own (assembled from several chunks): its bytes may be kept without a copy. */
    readonly owned?: boolean;
    /**
     * The body's last byte string (this many bytes) went straight into the
     * sink's buffer; `body` holds the rest, with that string as an empty one.
     */
    readonly sunk?: number;
  }
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

/**
 * Where the value of a frame may go (the client's readInto): asked once per
 * frame of at least SINK_MIN bytes that does not lie in one chunk, with its
 * id and length; a buffer to receive the body's last byte string, or undefined.
 */
export type FrameSink = (id: number, length: number) => Uint8Array | undefined;

/** Frames shorter than this are never sunk (assembling them costs little). */
export const SINK_MIN = 64 * 1024;
/** How much of a sunk frame's body is looked at for the byte string's header before giving up (and assembling it). */
const SINK_PREFIX_MAX = 8 * 1024;

export class FrameReader {
  /** Bodies longer than this are reported `oversized` and skipped. May be changed between pushes. */
  maxFrame: number;
  /** See FrameSink; none by default. */
  sink: FrameSink | undefined;
  /** Sink state: the destination, the body's first bytes while its layout is not known, what went where. */
  private sinkDest: Uint8Array | undefined;
  private sinkPrefix: Uint8Array | undefined;
  private sinkPrefixFill = 0;
  private sinkMeta: Uint8Array | undefined;
  private sinkValue = 0;
  private sinkFill = 0;
  private sinkLength = 0;
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
    return this.headerFill + this.bodyFill + this.sinkPrefixFill;
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
      if (this.sinkPrefix !== undefined) {
        pos = this.sinkHead(chunk, pos, end, out);
        continue;
      }
      if (this.sinkMeta !== undefined) {
        const n = Math.min(this.sinkValue - this.sinkFill, end - pos);
        this.sinkDest!.set(chunk.subarray(pos, pos + n), this.sinkFill);
        this.sinkFill += n;
        pos += n;
        if (this.sinkFill === this.sinkValue) {
          out.push({ type: 'frame', id: this.bodyId, body: this.sinkMeta, owned: true, sunk: this.sinkValue });
          this.sinkMeta = undefined;
          this.sinkDest = undefined;
        }
        continue;
      }
      if (this.body !== undefined) {
        const n = Math.min(this.body.length - this.bodyFill, end - pos);
        this.body.set(chunk.subarray(pos, pos + n), this.bodyFill);
        this.bodyFill += n;
        pos += n;
        if (this.bodyFill === this.body.length) {
          out.push({ type: 'frame', id: this.bodyId, body: this.body, owned: true });
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
      this.bodyId = id;
      this.bodyFill = 0;
      const dest = length >= SINK_MIN && this.sink !== undefined ? this.sink(id, length) : undefined;
      if (dest !== undefined) {
        this.sinkDest = dest;
        this.sinkLength = length;
        this.sinkPrefix = new Uint8Array(Math.min(length, SINK_PREFIX_MAX));
        this.sinkPrefixFill = 0;
        continue;
      }
      this.body = bodyBuffer(length);
    }
  }

  /** Bytes held for a frame not yet complete, whose destination may be the sink's. */
  private sinkHead(chunk: Uint8Array, pos: number, end: number, out: FrameEvent[]): number {
    const pre = this.sinkPrefix!;
    const n = Math.min(pre.length - this.sinkPrefixFill, end - pos);
    pre.set(chunk.subarray(pos, pos + n), this.sinkPrefixFill);
    this.sinkPrefixFill += n;
    const fill = this.sinkPrefixFill;
    const found = lastBytes(pre, fill, this.sinkLength);
    if (found === 'more' && fill < pre.length) return pos + n;
    const dest = this.sinkDest!;
    if (found === 'more' || found === 'no' || this.sinkLength - found.at > dest.length) {
      // Not a body ending in one byte string that fits (or its header is too far in): assembled whole, decoded as any other.
      this.sinkPrefix = undefined;
      this.sinkPrefixFill = 0;
      this.sinkDest = undefined;
      this.body = bodyBuffer(this.sinkLength);
      this.body.set(pre.subarray(0, fill));
      this.bodyFill = fill;
      if (this.bodyFill === this.body.length) {
        out.push({ type: 'frame', id: this.bodyId, body: this.body, owned: true });
        this.body = undefined;
        this.bodyFill = 0;
      }
      return pos + n;
    }
    // The body is meta + the string's header + its bytes: the meta with an empty string in its place is the message to decode.
    const meta = new Uint8Array(found.header + 2);
    meta.set(pre.subarray(0, found.header));
    meta[found.header] = 0xc4;
    meta[found.header + 1] = 0;
    const value = this.sinkLength - found.at;
    const have = Math.min(fill - found.at, value);
    dest.set(pre.subarray(found.at, found.at + have));
    this.sinkPrefix = undefined;
    this.sinkPrefixFill = 0;
    this.sinkMeta = meta;
    this.sinkValue = value;
    this.sinkFill = have;
    if (have === value) {
      out.push({ type: 'frame', id: this.bodyId, body: meta, owned: true, sunk: value });
      this.sinkMeta = undefined;
      this.sinkDest = undefined;
    }
    return pos + n;
  }
}

/**
 * A buffer for a body assembled from chunks: not zero-filled (every byte is
 * written before it is handed out), a plain Uint8Array over memory of its
 * own (values decoded from it are views of it: they must not be Buffers,
 * whose slice shares, nor share a pooled slab).
 */
function bodyBuffer(n: number): Uint8Array {
  if (n < 4096) return new Uint8Array(n);
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

/** What `lastBytes` found: the string's header at `header`, its bytes from `at` to the end of the body. */
interface LastBytes {
  readonly header: number;
  readonly at: number;
}

/**
 * Walks the msgpack value at the start of a body of `length` bytes, of which
 * the first `fill` are in `b`, looking for a byte string (bin 8/16/32) of at
 * least SINK_MIN bytes that ends exactly where the body ends. 'more': not
 * enough bytes to tell; 'no': the body is not shaped so (it is then decoded
 * as usual, which judges whether it is well formed at all).
 */
export function lastBytes(b: Uint8Array, fill: number, length: number): LastBytes | 'more' | 'no' {
  let pos = 0;
  let found: LastBytes | undefined;
  const need = (k: number): boolean => pos + k <= fill;
  const u8 = (at: number): number => b[at]!;
  const u16 = (at: number): number => (b[at]! << 8) | b[at + 1]!;
  const u32 = (at: number): number => ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;
  // Returns false for 'no'; throws MORE when the walk passes `fill`.
  const MORE = {};
  const skip = (depth: number): boolean => {
    if (depth > 64 || found !== undefined) return false;
    if (!need(1)) throw MORE;
    const t = u8(pos++);
    let items = 0;
    let bytes = 0;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) return true;
    if (t >= 0x80 && t <= 0x8f) items = (t & 0x0f) * 2;
    else if (t >= 0x90 && t <= 0x9f) items = t & 0x0f;
    else if (t >= 0xa0 && t <= 0xbf) bytes = t & 0x1f;
    else {
      switch (t) {
        case 0xc4: case 0xc5: case 0xc6: {
          const w = t === 0xc4 ? 1 : t === 0xc5 ? 2 : 4;
          if (!need(w)) throw MORE;
          const n = w === 1 ? u8(pos) : w === 2 ? u16(pos) : u32(pos);
          const header = pos - 1;
          pos += w;
          if (n >= SINK_MIN && pos + n === length) {
            found = { header, at: pos };
            return true;
          }
          bytes = n;
          break;
        }
        case 0xca: bytes = 4; break;
        case 0xcb: bytes = 8; break;
        case 0xcc: case 0xd0: bytes = 1; break;
        case 0xcd: case 0xd1: bytes = 2; break;
        case 0xce: case 0xd2: bytes = 4; break;
        case 0xcf: case 0xd3: bytes = 8; break;
        case 0xd9: if (!need(1)) throw MORE; bytes = u8(pos); pos += 1; break;
        case 0xda: if (!need(2)) throw MORE; bytes = u16(pos); pos += 2; break;
        case 0xdb: if (!need(4)) throw MORE; bytes = u32(pos); pos += 4; break;
        case 0xdc: if (!need(2)) throw MORE; items = u16(pos); pos += 2; break;
        case 0xdd: if (!need(4)) throw MORE; items = u32(pos); pos += 4; break;
        case 0xde: if (!need(2)) throw MORE; items = u16(pos) * 2; pos += 2; break;
        case 0xdf: if (!need(4)) throw MORE; items = u32(pos) * 2; pos += 4; break;
        default: return false; // extensions, 0xc1: left to the decoder
      }
    }
    if (bytes > 0) {
      pos += bytes;
      if (pos > length) return false;
      if (pos > fill) throw MORE;
    }
    for (let i = 0; i < items; i++) {
      if (!skip(depth + 1)) return false;
      if (found !== undefined) return i === items - 1;
    }
    return true;
  };
  try {
    if (!skip(0)) return 'no';
  } catch (e) {
    if (e === MORE) return 'more';
    throw e;
  }
  return found ?? 'no';
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
  /** Split frames (addSplit): finished segments in order, views of earlier buffers and callers' tails. */
  private parts: Uint8Array[] = [];
  /** Where the buffer's bytes not yet in `parts` start. */
  private partFrom = 0;
  /** Bytes queued in `parts` (tails included). */
  private partBytes = 0;

  constructor(private readonly initial = 64 * 1024) {
    this.buf = new Uint8Array(initial);
  }

  get size(): number {
    return this.partBytes + this.len - this.partFrom;
  }

  add(id: number, body: Uint8Array): void {
    this.addSplit(id, body, undefined);
  }

  /**
   * Queues one frame whose body is `head` then `tail`; `tail` is not copied
   * (a large value written straight from the caller's buffer, which must not
   * change until the batch was written).
   */
  addSplit(id: number, head: Uint8Array, tail: Uint8Array | undefined): void {
    const n = head.length + (tail?.length ?? 0);
    if (n === 0 || n > MAX_LENGTH) throw new LatchkeyError('TOO_LARGE', `frame body of ${n} bytes`);
    const need = this.len + HEADER_BYTES + head.length;
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.max(need, this.buf.length * 2));
      grown.set(this.buf.subarray(this.partFrom, this.len));
      this.len -= this.partFrom;
      this.partFrom = 0;
      this.buf = grown;
    }
    const b = this.buf;
    let at = this.len;
    b[at++] = n >>> 24; b[at++] = (n >>> 16) & 0xff; b[at++] = (n >>> 8) & 0xff; b[at++] = n & 0xff;
    b[at++] = id >>> 24; b[at++] = (id >>> 16) & 0xff; b[at++] = (id >>> 8) & 0xff; b[at++] = id & 0xff;
    b.set(head, at);
    this.len = at + head.length;
    if (tail !== undefined && tail.length > 0) {
      this.parts.push(b.subarray(this.partFrom, this.len), tail);
      this.partBytes += this.len - this.partFrom + tail.length;
      this.partFrom = this.len;
    }
  }

  /**
   * The queued bytes; the batch then starts empty. A small batch is copied
   * out into a pooled Buffer and the batch keeps its buffer: allocating a
   * fresh 64 KiB buffer per flush cost more than the request itself when
   * round trips are sequential (a flush per request; profiled: the external
   * allocations drove the garbage collector). A large batch is handed over
   * whole and the batch starts a fresh buffer (the caller may hold the old one).
   * Undefined when split frames are queued: use takeParts.
   */
  take(): Uint8Array | undefined {
    if (this.parts.length > 0) throw new LatchkeyError('INTERNAL', 'FrameBatch.take with split frames queued (takeParts)');
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

  /** The queued bytes as segments to write in order (one, unless split frames were queued); the batch then starts empty. */
  takeParts(): Uint8Array[] {
    if (this.parts.length === 0) {
      const one = this.take();
      return one === undefined ? [] : [one];
    }
    const out = this.parts;
    if (this.len > this.partFrom) out.push(this.buf.subarray(this.partFrom, this.len));
    this.parts = [];
    this.partBytes = 0;
    this.partFrom = 0;
    this.len = 0;
    // The segments are views of the buffer: it is handed over with them.
    this.buf = new Uint8Array(this.initial);
    return out;
  }
}
