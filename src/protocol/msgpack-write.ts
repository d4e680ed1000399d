/**
 * A small msgpack writer for the messages of the request path: plain
 * objects, arrays, strings, numbers, booleans, null and byte arrays — what
 * every request and reply is made of. It writes into one reused buffer and
 * hands out a view of it, so encoding a reply allocates nothing; the caller
 * copies the bytes out (into its frame batch) before the next encode.
 *
 * Why not msgpackr: profiled on the server, msgpackr's pack (with the
 * `skipValues` and `variableMapSize` options the codec needs) was a fifth
 * of the CPU of a sequential get, the largest single part after the socket
 * write (docs/architecture.md, "Where the time of a remote request goes").
 *
 * The bytes are what codec.ts's Packr would write for the same value, as
 * far as any decoder can tell: keys whose value is undefined are left out
 * of maps, undefined elsewhere is nil, integers take the smallest integer
 * form up to 32 bits and every other number is a float64. Anything else (a
 * Map, a Date, a bigint, a class instance, a cycle) makes `encode` return
 * -1, and the caller falls back to msgpackr, which knows those.
 */

const MAX_DEPTH = 64;

/** A split encoding: `head` (the writer's buffer) then `tail`, the bytes of the body's last byte string, not copied. */
export interface Split {
  readonly head: Uint8Array;
  readonly tail: Uint8Array | undefined;
}

export class MsgpackWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;
  /** Split mode: byte strings of at least this many bytes are left out of the buffer while nothing follows them. */
  private tailMin = Infinity;
  /** A byte string written as its header only, its bytes due at `pos` if anything else is written. */
  private tail: Uint8Array | undefined;

  constructor(initial = 8192) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }

  /**
   * Encodes `v`; returns the bytes (a view of the writer's buffer, valid
   * until the next encode) or undefined when `v` holds a type this writer
   * leaves to msgpackr.
   */
  encode(v: unknown): Uint8Array | undefined {
    this.pos = 0;
    this.tailMin = Infinity;
    this.tail = undefined;
    if (!this.value(v, 0)) return undefined;
    return this.buf.subarray(0, this.pos);
  }

  /**
   * Like `encode`, but a body that ends with a byte string of at least
   * `tailMin` bytes comes back in two parts, `head` (everything up to and
   * including that string's header, a view of the writer's buffer) and
   * `tail` (the caller's own bytes, not copied): head + tail are exactly the
   * bytes of one msgpack value. To make the large string the last thing
   * written, a map writes its byte-string fields of `tailMin` bytes or more
   * after its other fields (the order of a map's keys means nothing to a
   * decoder); a caller puts the map that holds it last in its own map.
   */
  encodeSplit(v: unknown, tailMin: number): Split | undefined {
    this.pos = 0;
    this.tailMin = tailMin;
    this.tail = undefined;
    const ok = this.value(v, 0);
    const tail = this.tail;
    this.tail = undefined;
    this.tailMin = Infinity;
    if (!ok) return undefined;
    return { head: this.buf.subarray(0, this.pos), tail };
  }

  private room(n: number): void {
    if (this.tail !== undefined) {
      // Something follows the held-back string: its bytes go in after all.
      const t = this.tail;
      this.tail = undefined;
      this.room(t.length);
      this.buf.set(t, this.pos);
      this.pos += t.length;
    }
    if (this.pos + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
    this.view = new DataView(grown.buffer);
  }

  private value(v: unknown, depth: number): boolean {
    switch (typeof v) {
      case 'string':
        this.string(v);
        return true;
      case 'number':
        this.number(v);
        return true;
      case 'boolean':
        this.room(1);
        this.buf[this.pos++] = v ? 0xc3 : 0xc2;
        return true;
      case 'undefined':
        this.room(1);
        this.buf[this.pos++] = 0xc0;
        return true;
      case 'object':
        if (v === null) {
          this.room(1);
          this.buf[this.pos++] = 0xc0;
          return true;
        }
        if (depth >= MAX_DEPTH) return false;
        if (v instanceof Uint8Array) {
          this.bytes(v);
          return true;
        }
        if (Array.isArray(v)) return this.array(v, depth + 1);
        if (Object.getPrototypeOf(v) === Object.prototype) return this.map(v as Record<string, unknown>, depth + 1);
        return false;
      default:
        return false;
    }
  }

  private number(n: number): void {
    this.room(9);
    const b = this.buf;
    if (n >>> 0 === n) {
      if (n < 0x80) b[this.pos++] = n;
      else if (n < 0x100) {
        b[this.pos++] = 0xcc;
        b[this.pos++] = n;
      } else if (n < 0x10000) {
        b[this.pos++] = 0xcd;
        b[this.pos++] = n >> 8;
        b[this.pos++] = n & 0xff;
      } else {
        b[this.pos++] = 0xce;
        this.view.setUint32(this.pos, n);
        this.pos += 4;
      }
    } else if (n >> 0 === n) {
      if (n >= -0x20) b[this.pos++] = 0x100 + n;
      else if (n >= -0x80) {
        b[this.pos++] = 0xd0;
        b[this.pos++] = n + 0x100;
      } else if (n >= -0x8000) {
        b[this.pos++] = 0xd1;
        this.view.setInt16(this.pos, n);
        this.pos += 2;
      } else {
        b[this.pos++] = 0xd2;
        this.view.setInt32(this.pos, n);
        this.pos += 4;
      }
    } else {
      b[this.pos++] = 0xcb;
      this.view.setFloat64(this.pos, n);
      this.pos += 8;
    }
  }

  private string(s: string): void {
    const n = s.length;
    // At most 3 bytes per UTF-16 unit (a surrogate pair is 4 bytes for 2 units), plus a 5-byte header.
    this.room(n * 3 + 5);
    const b = this.buf;
    let p = this.pos;
    if (n < 32) {
      // Short strings, nearly always ASCII (paths, keys): byte by byte after a 1-byte header.
      const start = p + 1;
      let q = start;
      let ascii = true;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) {
          ascii = false;
          break;
        }
        b[q++] = c;
      }
      if (ascii) {
        b[p] = 0xa0 | n;
        this.pos = q;
        return;
      }
    }
    // General case: encode after a 5-byte header, then move the bytes down behind the header the length needs.
    const len = encodeUtf8(s, b, p + 5);
    let header: number;
    if (len < 32) header = 1;
    else if (len < 0x100) header = 2;
    else if (len < 0x10000) header = 3;
    else header = 5;
    if (header < 5) b.copyWithin(p + header, p + 5, p + 5 + len);
    if (header === 1) b[p] = 0xa0 | len;
    else if (header === 2) {
      b[p] = 0xd9;
      b[p + 1] = len;
    } else if (header === 3) {
      b[p] = 0xda;
      b[p + 1] = len >> 8;
      b[p + 2] = len & 0xff;
    } else {
      b[p] = 0xdb;
      this.view.setUint32(p + 1, len);
    }
    p += header + len;
    this.pos = p;
  }

  private bytes(v: Uint8Array): void {
    const n = v.length;
    const held = n >= this.tailMin;
    this.room(held ? 5 : n + 5);
    const b = this.buf;
    if (n < 0x100) {
      b[this.pos++] = 0xc4;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos++] = 0xc5;
      b[this.pos++] = n >> 8;
      b[this.pos++] = n & 0xff;
    } else {
      b[this.pos++] = 0xc6;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
    if (held) {
      this.tail = v;
      return;
    }
    b.set(v, this.pos);
    this.pos += n;
  }

  private length(n: number, fix: number, x16: number): void {
    this.room(5);
    const b = this.buf;
    if (n < 16) b[this.pos++] = fix | n;
    else if (n < 0x10000) {
      b[this.pos++] = x16;
      b[this.pos++] = n >> 8;
      b[this.pos++] = n & 0xff;
    } else {
      b[this.pos++] = x16 + 1;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  private array(a: readonly unknown[], depth: number): boolean {
    this.length(a.length, 0x90, 0xdc);
    for (let i = 0; i < a.length; i++) if (!this.value(a[i], depth)) return false;
    return true;
  }

  private map(o: Record<string, unknown>, depth: number): boolean {
    let n = 0;
    for (const k in o) if (o[k] !== undefined) n++;
    this.length(n, 0x80, 0xde);
    let last: string | undefined;
    for (const k in o) {
      const v = o[k];
      if (v === undefined) continue;
      if (last === undefined && v instanceof Uint8Array && v.length >= this.tailMin) {
        last = k; // split mode: a large byte string goes last
        continue;
      }
      this.string(k);
      if (!this.value(v, depth)) return false;
    }
    if (last !== undefined) {
      this.string(last);
      this.bytes(o[last] as Uint8Array);
    }
    return true;
  }
}

/** Writes `s` as UTF-8 at `at` (room checked by the caller); returns the bytes written. Lone surrogates become U+FFFD, as TextEncoder does. */
function encodeUtf8(s: string, b: Uint8Array, at: number): number {
  let p = at;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      b[p++] = c;
    } else if (c < 0x800) {
      b[p++] = 0xc0 | (c >> 6);
      b[p++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
          i++;
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          b[p++] = 0xf0 | (c >> 18);
          b[p++] = 0x80 | ((c >> 12) & 0x3f);
          b[p++] = 0x80 | ((c >> 6) & 0x3f);
          b[p++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd;
      }
      b[p++] = 0xe0 | (c >> 12);
      b[p++] = 0x80 | ((c >> 6) & 0x3f);
      b[p++] = 0x80 | (c & 0x3f);
    }
  }
  return p - at;
}
