/**
 * A small msgpack reader for the messages of the request path, the
 * counterpart of msgpack-write.ts: maps with string keys, arrays, ASCII
 * strings, integers, float64, booleans, nil and byte strings — what every
 * request and reply is made of.
 *
 * Why not msgpackr: profiled, its `unpack` was most of the decoding of a
 * pipelined get on both sides (a twelfth of the client's CPU, a sixteenth of
 * the server's), largely per-call setup for bodies of a few dozen bytes
 * (docs/architecture.md, "Where the time of a remote request goes").
 *
 * It reads only a body that scanMsgpack (msgpack-scan.ts) found 'ok': one
 * well-formed value, no extension types, within the item and depth limits,
 * so it neither bounds-checks nor recurses deeper than the scan allowed.
 * What it does not know it hands back to msgpackr rather than deciding
 * differently: a string with a byte ≥ 0x80 (UTF-8 error handling stays
 * msgpackr's), a map key that is not a string or is `__proto__`, a float32.
 * For those `readMsgpack` returns FALLBACK and the caller decodes the body
 * with msgpackr; for everything else the value is what codec.ts's Unpackr
 * makes of it (maps as plain objects, 64-bit integers as numbers), except
 * that byte strings are plain Uint8Arrays (the schemas' `bytes` makes them
 * so anyway): copies (small ones in a shared slab, see slabBytes), or views
 * of the body when `copy` is false.
 */

/** What `readMsgpack` returns for a body it leaves to msgpackr. */
export const FALLBACK: unique symbol = Symbol('msgpack fallback');

class Fallback {}
const FALL = new Fallback();

const f64 = new Float64Array(1);
const f64b = new Uint8Array(f64.buffer);

/** Map keys seen recently, by a hash of their bytes: `path`, `value` and the like decode to one string each. */
const KEY_SLOTS = 1024;
const keyBytes: Array<Uint8Array | undefined> = new Array<Uint8Array | undefined>(KEY_SLOTS);
const keyStrings: string[] = new Array<string>(KEY_SLOTS).fill('');
const KEY_MAX = 24;

let b: Uint8Array = new Uint8Array(0);
let pos = 0;
let copyBins = true;

/** Decodes one msgpack value that scanMsgpack accepted; FALLBACK for what only msgpackr decodes (see the header). */
export function readMsgpack(body: Uint8Array, copy: boolean): unknown {
  b = body;
  pos = 0;
  copyBins = copy;
  try {
    return read();
  } catch (e) {
    if (e === FALL) return FALLBACK;
    throw e;
  } finally {
    b = EMPTY;
  }
}

const EMPTY = new Uint8Array(0);

function u16(): number {
  const v = (b[pos]! << 8) | b[pos + 1]!;
  pos += 2;
  return v;
}

function u32(): number {
  const v = ((b[pos]! << 24) >>> 0) + (b[pos + 1]! << 16) + (b[pos + 2]! << 8) + b[pos + 3]!;
  pos += 4;
  return v;
}

function read(): unknown {
  const t = b[pos++]!;
  if (t < 0x80) return t;
  if (t < 0x90) return map(t & 0x0f);
  if (t < 0xa0) return array(t & 0x0f);
  if (t < 0xc0) return str(t & 0x1f);
  if (t >= 0xe0) return t - 0x100;
  switch (t) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return bin(b[pos++]!);
    case 0xc5: return bin(u16());
    case 0xc6: return bin(u32());
    case 0xcb: {
      for (let i = 0; i < 8; i++) f64b[7 - i] = b[pos + i]!;
      pos += 8;
      return f64[0];
    }
    case 0xcc: return b[pos++]!;
    case 0xcd: return u16();
    case 0xce: return u32();
    case 0xcf: {
      const hi = u32();
      return hi * 4294967296 + u32();
    }
    case 0xd0: return (b[pos++]! << 24) >> 24;
    case 0xd1: return (u16() << 16) >> 16;
    case 0xd2: return u32() | 0;
    case 0xd3: {
      const hi = u32() | 0;
      return hi * 4294967296 + u32();
    }
    case 0xd9: return str(b[pos++]!);
    case 0xda: return str(u16());
    case 0xdb: return str(u32());
    case 0xdc: return array(u16());
    case 0xdd: return array(u32());
    case 0xde: return map(u16());
    case 0xdf: return map(u32());
    default: throw FALL; // float32 (0xca); extensions and 0xc1 never pass the scan
  }
}

function map(n: number): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const k = key();
    o[k] = read();
  }
  return o;
}

function array(n: number): unknown[] {
  const a = new Array<unknown>(n);
  for (let i = 0; i < n; i++) a[i] = read();
  return a;
}

function bin(n: number): Uint8Array {
  const at = pos;
  pos += n;
  if (!copyBins) return new Uint8Array(b.buffer, b.byteOffset + at, n);
  const out = n <= SLAB_MAX ? slabBytes(n) : new Uint8Array(n);
  out.set(b.subarray(at, at + n));
  return out;
}

/**
 * Small byte strings are copied into views of a shared slab: an
 * ArrayBuffer of its own per 100-byte value cost more than the rest of the
 * message's decoding (its own backing store, outside the heap). The slab is
 * a slice of Node's own Buffer pool (SLAB is under Buffer.poolSize / 2), so
 * a value kept pins at most a pool block (8 KiB by default), and its
 * `.buffer` is shared with other values and small Buffers, as any small
 * Buffer's is. Node marks its pool untransferable: a caller transferring
 * `value.buffer` (postMessage, structuredClone with a transfer list) copies
 * it instead of detaching the memory later values are decoded into.
 */
const SLAB = 4000;
const SLAB_MAX = 1024;

let slab = Buffer.allocUnsafe(SLAB);
let slabAt = 0;

function slabBytes(n: number): Uint8Array {
  if (slabAt + n > SLAB) {
    slab = Buffer.allocUnsafe(SLAB);
    slabAt = 0;
  }
  const out = new Uint8Array(slab.buffer, slab.byteOffset + slabAt, n);
  slabAt += (n + 7) & ~7;
  return out;
}

/**
 * An ASCII string of `n` bytes at `at` (FALL for any other byte). Up to 16
 * bytes it is one String.fromCharCode call with the bytes as arguments:
 * five to nine times faster than appending a character at a time, and
 * faster than a native slice for strings this short.
 */
function ascii(at: number, n: number): string {
  let or = 0;
  for (let i = 0; i < n; i++) or |= b[at + i]!;
  if ((or & 0x80) !== 0) throw FALL;
  const c = b;
  const p = at;
  switch (n) {
    case 0: return '';
    case 1: return String.fromCharCode(c[p]!);
    case 2: return String.fromCharCode(c[p]!, c[p + 1]!);
    case 3: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!);
    case 4: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!);
    case 5: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!);
    case 6: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!);
    case 7: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!);
    case 8: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!);
    case 9: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!);
    case 10: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!);
    case 11: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!, c[p + 10]!);
    case 12: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!, c[p + 10]!, c[p + 11]!);
    case 13: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!, c[p + 10]!, c[p + 11]!, c[p + 12]!);
    case 14: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!, c[p + 10]!, c[p + 11]!, c[p + 12]!, c[p + 13]!);
    case 15: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!, c[p + 10]!, c[p + 11]!, c[p + 12]!, c[p + 13]!, c[p + 14]!);
    case 16: return String.fromCharCode(c[p]!, c[p + 1]!, c[p + 2]!, c[p + 3]!, c[p + 4]!, c[p + 5]!, c[p + 6]!, c[p + 7]!, c[p + 8]!, c[p + 9]!, c[p + 10]!, c[p + 11]!, c[p + 12]!, c[p + 13]!, c[p + 14]!, c[p + 15]!);
    default: return latin1(b, at, at + n);
  }
}

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, start: number, end: number): string }).latin1Slice;

function latin1(u: Uint8Array, start: number, end: number): string {
  return latin1Slice.call(u, start, end);
}

function str(n: number): string {
  const at = pos;
  pos += n;
  return ascii(at, n);
}

function key(): string {
  const t = b[pos]!;
  let n: number;
  if (t >= 0xa0 && t < 0xc0) {
    n = t & 0x1f;
    pos++;
  } else if (t === 0xd9) {
    n = b[pos + 1]!;
    pos += 2;
  } else throw FALL; // a key that is not a short string: msgpackr's rules for those
  const at = pos;
  pos += n;
  if (n === 0 || n > KEY_MAX) {
    const s = ascii(at, n);
    if (s === '__proto__') throw FALL;
    return s;
  }
  let h = n;
  for (let i = 0; i < n; i++) h = (h * 31 + b[at + i]!) | 0;
  h &= KEY_SLOTS - 1;
  const cached = keyBytes[h];
  if (cached !== undefined && cached.length === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (cached[i] !== b[at + i]) {
        same = false;
        break;
      }
    }
    if (same) return keyStrings[h]!;
  }
  const s = ascii(at, n);
  if (s === '__proto__') throw FALL;
  keyBytes[h] = Uint8Array.prototype.slice.call(b, at, at + n);
  keyStrings[h] = s;
  return s;
}
