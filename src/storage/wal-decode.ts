/**
 * A fast decoder for the common shape of a commit record's payload: a
 * msgpack array of `[1, path, bin]` (a put with its value inline) and
 * `[2, path]` (a delete), paths in ASCII. Replaying a log is mostly this
 * decoding; msgpackr's general decoder spent a quarter of a million-node
 * reopen on it, most of that allocating one ArrayBuffer per value.
 *
 * Here a record's values are copied once, into one buffer of their own
 * (only the values' bytes, not the paths or the framing), and each value is
 * a view of it. A node's value may therefore keep the other values of its
 * record alive after they were overwritten: at most the value bytes of one
 * commit (maxCommitBytes), and only for values replayed from the log (a
 * write at run time has its own buffer; a snapshot load is not affected).
 *
 * Anything else — another tuple shape, a value reference, an ephemeral
 * owner, a non-ASCII path, an unusual encoding — returns undefined, and the
 * caller decodes the whole payload with msgpackr as before, so what is
 * accepted and what is CORRUPT does not change.
 */
import type { Mutation } from '../core/tree.js';

const PUT = 1;
const DEL = 2;

/** The length in a msgpack array header at `pos`, or -1 when there is none. */
function arrayHeader(b: Uint8Array, pos: number, end: number): number {
  if (pos >= end) return -1;
  const t = b[pos]!;
  if (t >= 0x90 && t <= 0x9f) return t & 0x0f;
  if (t === 0xdc && pos + 3 <= end) return (b[pos + 1]! << 8) | b[pos + 2]!;
  if (t === 0xdd && pos + 5 <= end) return ((b[pos + 1]! << 24) | (b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!) >>> 0;
  return -1;
}

function arrayHeaderSize(t: number): number {
  return t <= 0x9f ? 1 : t === 0xdc ? 3 : 5;
}

/** An ASCII string of `len` bytes at `pos` (a flat string of its own), or undefined if a byte is not ASCII. */
function ascii(b: Uint8Array, pos: number, len: number): string | undefined {
  for (let k = pos; k < pos + len; k++) if (b[k]! >= 0x80) return undefined;
  if (latin1Slice !== undefined && b instanceof Buffer) return latin1Slice.call(b, pos, pos + len);
  let s = '';
  // Chunks keep fromCharCode's argument count small.
  for (let i = 0; i < len; i += 64) {
    const n = Math.min(64, len - i);
    const part = b.subarray(pos + i, pos + i + n);
    s += String.fromCharCode.apply(null, part as unknown as number[]);
  }
  return s;
}

/** Node's Buffer#latin1Slice (a flat string straight from the bytes), where there is one. */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (start: number, end: number) => string }).latin1Slice;

/**
 * Decodes `payload` if it has the common shape, else undefined (decode it
 * the general way). The mutations are the ones msgpackr's decoding yields.
 */
export function decodeCommonRecord(payload: Uint8Array): Mutation[] | undefined {
  const b = payload;
  const end = b.length;
  const count = arrayHeader(b, 0, end);
  // Each mutation takes more than one byte: a count beyond the payload is not this shape (and must not reach new Array).
  if (count < 0 || count > end) return undefined;
  let pos = arrayHeaderSize(b[0]!);
  // First pass: check the shape and find the values; no allocation but the lists.
  const paths: string[] = new Array<string>(count);
  const valStart: number[] = new Array<number>(count);
  const valLen: number[] = new Array<number>(count);
  let valueBytes = 0;
  for (let i = 0; i < count; i++) {
    if (pos >= end) return undefined;
    const tag = b[pos]!;
    if (tag !== 0x92 && tag !== 0x93) return undefined;
    const op = b[pos + 1];
    if (!(op === PUT && tag === 0x93) && !(op === DEL && tag === 0x92)) return undefined;
    pos += 2;
    // the path: fixstr, str8 or str16
    if (pos >= end) return undefined;
    const st = b[pos]!;
    let len: number;
    if (st >= 0xa0 && st <= 0xbf) {
      len = st & 0x1f;
      pos += 1;
    } else if (st === 0xd9 && pos + 2 <= end) {
      len = b[pos + 1]!;
      pos += 2;
    } else if (st === 0xda && pos + 3 <= end) {
      len = (b[pos + 1]! << 8) | b[pos + 2]!;
      pos += 3;
    } else {
      return undefined;
    }
    if (pos + len > end) return undefined;
    const path = ascii(b, pos, len);
    if (path === undefined) return undefined;
    paths[i] = path;
    pos += len;
    if (op === DEL) {
      valStart[i] = -1;
      valLen[i] = 0;
      continue;
    }
    // the value: bin8, bin16 or bin32
    if (pos >= end) return undefined;
    const bt = b[pos]!;
    let vlen: number;
    if (bt === 0xc4 && pos + 2 <= end) {
      vlen = b[pos + 1]!;
      pos += 2;
    } else if (bt === 0xc5 && pos + 3 <= end) {
      vlen = (b[pos + 1]! << 8) | b[pos + 2]!;
      pos += 3;
    } else if (bt === 0xc6 && pos + 5 <= end) {
      vlen = ((b[pos + 1]! << 24) | (b[pos + 2]! << 16) | (b[pos + 3]! << 8) | b[pos + 4]!) >>> 0;
      pos += 5;
    } else {
      return undefined;
    }
    if (pos + vlen > end) return undefined;
    valStart[i] = pos;
    valLen[i] = vlen;
    valueBytes += vlen;
    pos += vlen;
  }
  if (pos !== end) return undefined;
  // Second pass: one buffer for the record's values, each value a view of it.
  const values = new Uint8Array(valueBytes);
  const buffer = values.buffer;
  const out: Mutation[] = new Array<Mutation>(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const s = valStart[i]!;
    if (s < 0) {
      out[i] = { op: 'del', path: paths[i]! };
      continue;
    }
    const n = valLen[i]!;
    if (n > 64) values.set(b.subarray(s, s + n), at);
    else for (let k = 0; k < n; k++) values[at + k] = b[s + k]!;
    out[i] = { op: 'put', path: paths[i]!, value: new Uint8Array(buffer, at, n) };
    at += n;
  }
  return out;
}
