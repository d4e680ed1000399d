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

/** Where the first pass found each mutation of a record (reused from record to record). */
class Layout {
  count = 0;
  hasDelete = false;
  /** Path bytes plus value bytes (what the watch history counts). */
  bytes = 0;
  valueBytes = 0;
  pathStart: number[] = [];
  pathLen: number[] = [];
  /** -1 for a delete. */
  valStart: number[] = [];
  valLen: number[] = [];
}

/**
 * The first pass: checks the whole record has the common shape and notes
 * where each path and value is, allocating nothing (the layout's lists are
 * reused). False when the shape is another one.
 */
function scanCommon(b: Uint8Array, l: Layout): boolean {
  const end = b.length;
  const count = arrayHeader(b, 0, end);
  // Each mutation takes more than one byte: a count beyond the payload is not this shape.
  if (count < 0 || count > end) return false;
  let pos = arrayHeaderSize(b[0]!);
  let valueBytes = 0;
  let pathBytes = 0;
  let hasDelete = false;
  for (let i = 0; i < count; i++) {
    if (pos >= end) return false;
    const tag = b[pos]!;
    if (tag !== 0x92 && tag !== 0x93) return false;
    const op = b[pos + 1];
    if (!(op === PUT && tag === 0x93) && !(op === DEL && tag === 0x92)) return false;
    pos += 2;
    // the path: fixstr, str8 or str16
    if (pos >= end) return false;
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
      return false;
    }
    if (pos + len > end) return false;
    for (let k = pos; k < pos + len; k++) if (b[k]! >= 0x80) return false;
    l.pathStart[i] = pos;
    l.pathLen[i] = len;
    pathBytes += len;
    pos += len;
    if (op === DEL) {
      l.valStart[i] = -1;
      l.valLen[i] = 0;
      hasDelete = true;
      continue;
    }
    // the value: bin8, bin16 or bin32
    if (pos >= end) return false;
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
      return false;
    }
    if (pos + vlen > end) return false;
    l.valStart[i] = pos;
    l.valLen[i] = vlen;
    valueBytes += vlen;
    pos += vlen;
  }
  if (pos !== end) return false;
  l.count = count;
  l.hasDelete = hasDelete;
  l.valueBytes = valueBytes;
  l.bytes = pathBytes + valueBytes;
  return true;
}

/** The record's values copied into one buffer of their own, each a view of it (undefined for a delete). */
function valuesOf(b: Uint8Array, l: Layout): Array<Uint8Array | undefined> {
  const values = new Uint8Array(l.valueBytes);
  const buffer = values.buffer;
  const out = new Array<Uint8Array | undefined>(l.count);
  // A plain view of the payload: a Buffer's subarray makes a FastBuffer (a JS constructor call) per value.
  const u = b instanceof Buffer ? new Uint8Array(b.buffer, b.byteOffset, b.length) : b;
  let at = 0;
  for (let i = 0; i < l.count; i++) {
    const s = l.valStart[i]!;
    if (s < 0) {
      out[i] = undefined;
      continue;
    }
    const n = l.valLen[i]!;
    if (n > 64) values.set(u.subarray(s, s + n), at);
    else for (let k = 0; k < n; k++) values[at + k] = u[s + k]!;
    out[i] = new Uint8Array(buffer, at, n);
    at += n;
  }
  return out;
}

/** The mutations of a record `scanCommon` accepted into `l`, with these values. */
function mutationsOf(b: Uint8Array, l: Layout, values: ReadonlyArray<Uint8Array | undefined>): Mutation[] {
  const out: Mutation[] = new Array<Mutation>(l.count);
  for (let i = 0; i < l.count; i++) {
    const path = ascii(b, l.pathStart[i]!, l.pathLen[i]!)!;
    const v = values[i];
    out[i] = v === undefined ? { op: 'del', path } : { op: 'put', path, value: v };
  }
  return out;
}

/**
 * Decodes `payload` if it has the common shape, else undefined (decode it
 * the general way). The mutations are the ones msgpackr's decoding yields.
 */
export function decodeCommonRecord(payload: Uint8Array): Mutation[] | undefined {
  const l = new Layout();
  if (!scanCommon(payload, l)) return undefined;
  return mutationsOf(payload, l, valuesOf(payload, l));
}

/** Where `CommonReplay` sends a record's mutations (core/tree-builder.ts's TreeBuilder). */
export interface ReplayTarget {
  /** A put of `name` in the directory `dir` ('/' or '/a/b/'); `name` is ASCII, non-empty, a string of its own. */
  putIn(rev: number, dir: string, name: string, value: Uint8Array): void;
  /** Any other mutation (a delete, a put of the root). */
  apply(rev: number, muts: readonly Mutation[]): void;
}

/**
 * Replays records of the common shape straight into a tree builder, without
 * a `Mutation` or a path string per put: each name is made from its bytes
 * (a flat string of its own, as a tree key must be), and the directory's
 * path is decoded only when it differs from the previous put's (a log
 * written by multis into one directory decodes it once per run). `mutations`
 * rebuilds a record's Mutation list later, for the few records the watch
 * history keeps.
 *
 * Use: `scan(payload)`; when it accepts, `apply(payload, rev, target)` (after
 * whatever needs the tree before the record, e.g. `hasDelete`).
 */
export class CommonReplay {
  private readonly l = new Layout();
  /** The previous put's directory, as bytes and as the string handed out for them. */
  private dirBytes = new Uint8Array(256);
  private dirLen = -1;
  private dirStr = '';

  /** Whether `payload` has the common shape (then `count`, `hasDelete` and `bytes` describe it). */
  scan(payload: Uint8Array): boolean {
    return scanCommon(payload, this.l);
  }

  get count(): number { return this.l.count; }
  get hasDelete(): boolean { return this.l.hasDelete; }
  get bytes(): number { return this.l.bytes; }

  /** Applies the record `scan` just accepted; returns its values (for `mutations`). Throws what the target throws. */
  apply(b: Uint8Array, rev: number, target: ReplayTarget): Array<Uint8Array | undefined> {
    const l = this.l;
    const values = valuesOf(b, l);
    for (let i = 0; i < l.count; i++) {
      const ps = l.pathStart[i]!;
      const pl = l.pathLen[i]!;
      const v = values[i];
      let cut = ps + pl - 1;
      while (cut > ps && b[cut] !== 0x2f) cut--;
      // A delete, the root, or a path the log never holds (no leading '/', a trailing '/'): the general code decides.
      if (v === undefined || pl < 2 || b[ps] !== 0x2f || cut === ps + pl - 1) {
        const path = ascii(b, ps, pl)!;
        this.dirLen = -1;
        target.apply(rev, [v === undefined ? { op: 'del', path } : { op: 'put', path, value: v }]);
        continue;
      }
      target.putIn(rev, this.dir(b, ps, cut + 1 - ps), ascii(b, cut + 1, ps + pl - cut - 1)!, v);
    }
    return values;
  }

  /** The record's mutations, with the values `apply` returned (`b` must be the payload `scan` accepted). */
  mutations(b: Uint8Array, values: ReadonlyArray<Uint8Array | undefined>): Mutation[] {
    const l = new Layout();
    if (!scanCommon(b, l)) throw new Error('CommonReplay.mutations: not a record of the common shape');
    return mutationsOf(b, l, values);
  }

  /** The directory string for `len` bytes at `pos`: the previous one when the bytes are the same. */
  private dir(b: Uint8Array, pos: number, len: number): string {
    const d = this.dirBytes;
    if (len === this.dirLen) {
      let k = 0;
      while (k < len && d[k] === b[pos + k]) k++;
      if (k === len) return this.dirStr;
    }
    if (len > d.length) this.dirBytes = new Uint8Array(Math.max(len, 2 * d.length));
    this.dirBytes.set(b.subarray(pos, pos + len));
    this.dirLen = len;
    this.dirStr = ascii(b, pos, len)!;
    return this.dirStr;
  }
}
