/**
 * The write-ahead log.
 *
 * Design (see docs/format.md for the byte layout):
 *
 * 1. The log is a sequence of segment files `wal-<firstRev>.log`, each a
 *    32-byte header followed by records. A record is one commit: a 24-byte
 *    header (magic "LR", format version, type, payload length, revision,
 *    CRC32C of the payload, CRC32C of the header's first 20 bytes) and a
 *    msgpack payload listing the commit's mutations. The header has its own
 *    checksum so that its length field is trusted before it is used: a
 *    record that runs past the end of the file is then really cut short (a
 *    torn tail), never a flipped bit in a length in the middle of the log.
 * 2. Revisions are contiguous: record n+1 carries revision(n)+1, across
 *    segments too (a segment's header repeats the first revision its name
 *    promises). Recovery treats a gap as corruption.
 * 3. `append` only encodes into memory. `sync` writes everything appended
 *    since the last sync with one positioned writev on a segment opened
 *    O_DSYNC (the group commit): the write returns once data and file size
 *    are durable, as write + fdatasync would, in one system call and one
 *    thread-pool trip instead of two. That is the only flush point of a
 *    commit. The engine acknowledges a commit only when the sync covering it
 *    resolved. (A short write is continued, and each piece is flushed.)
 *    With durability 'none' the segment is not O_DSYNC and the group's
 *    write is a pwritev on the event loop's own thread: it only copies to
 *    the page cache (a few microseconds for a group), and the trip through
 *    libuv's thread pool cost 18-30 µs of CPU a commit, which was most of a
 *    commit awaited one at a time. The record is in the kernel when the
 *    sync resolves, so an acknowledged commit survives the process being
 *    killed, as that durability promises. (A kernel throttling dirty pages
 *    can make that write wait; a store that chose 'none' accepts it.)
 * 4. Rotation happens between groups, never inside one: when the active
 *    segment has reached the size limit (or a snapshot asked for it), the
 *    next sync first creates the new segment, writes its header (O_DSYNC)
 *    and fsyncs the directory, then writes the group there. Hence every
 *    segment but the last is complete and was fully fsynced, and a torn tail
 *    can only be in the last one.
 * 5. A failed write or fsync is final: the group's commits fail, the log
 *    keeps the error and rejects every later append and sync. A failed fsync
 *    is never retried and reported as success (after EIO the kernel may have
 *    dropped the dirty pages and would report the next fsync as clean). As a
 *    best effort the file is truncated back to the end of the last durable
 *    group so the failed commits do not come back on reopen; if the
 *    truncation fails too they may (their outcome is unknown, as for any
 *    commit whose acknowledgement never arrived).
 */
import { Packr, Unpackr } from 'msgpackr';
import path from 'node:path';
import { LatchkeyError, assert } from '../core/errors.js';
import type { Mutation } from '../core/tree.js';
import { ValueRef } from '../core/value.js';
import type { ValueStore } from './values.js';
import { crc32c } from './crc32c.js';
import { type LockEvent, LockImage, eventTuple, packEvents, packImage } from './lock-log.js';
import { corrupt, dataView, errnoOf, ioError, readU64, segmentName, writeU64 } from './format.js';
import { type FileHandleLike, type Fs, writeAll, writeAllSync } from './fs.js';
import type { CommitLog, WalStats } from './storage.js';

export const WAL_FORMAT_VERSION = 1;
export const SEGMENT_MAGIC = 'LATCHWAL';
export const SEGMENT_HEADER_SIZE = 32;
export const RECORD_HEADER_SIZE = 24;
/** A record longer than this is damage, not data (the engine's transaction limits are far below). */
export const MAX_RECORD_PAYLOAD = 256 * 1024 * 1024;
const RECORD_MAGIC0 = 0x4c; // 'L'
const RECORD_MAGIC1 = 0x52; // 'R'
const RECORD_TYPE_COMMIT = 1;
/** Lock events (lock-log.ts): carry the revision of the commit before them. */
export const RECORD_TYPE_LOCKS = 2;
/** The lock image a segment starts from (lock-log.ts, note 3). */
export const RECORD_TYPE_LOCK_IMAGE = 3;
const MAGIC_BYTES = new TextEncoder().encode(SEGMENT_MAGIC);

const PUT = 1;
const DEL = 2;
const PERMS = 3;
/** A put whose value is in a value file: [4, path, file, offset, length, crc] (+ owner, seq). */
const PUT_REF = 4;
/** Value compaction moved a value: [5, path, fromFile, fromOffset, file, offset, length, crc]. */
const MOVE = 5;

/** Makes refs for decoded value locations (the store's ValueStore). */
export interface RefMaker {
  ref(file: number, offset: number, length: number, crc: number): ValueRef;
}

// useRecords: false — msgpackr's record extension would make a record depend
// on structure definitions held by the writer, and every record must decode alone.
const packr = new Packr({ useRecords: false });
// copyBuffers: values must not pin the whole segment buffer they were read from.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true });

// ---------------------------------------------------------------------------
// Encoding

export function encodeSegmentHeader(firstRev: number): Uint8Array {
  const b = new Uint8Array(SEGMENT_HEADER_SIZE);
  const dv = dataView(b);
  b.set(MAGIC_BYTES, 0);
  dv.setUint32(8, WAL_FORMAT_VERSION, true);
  writeU64(dv, 16, firstRev);
  dv.setUint32(28, crc32c(b, 0, 0, 28), true);
  return b;
}

function mutationTuple(m: Mutation): unknown[] {
  if (m.op === 'del') return [DEL, m.path];
  if (m.op === 'perms') return [PERMS, m.path, m.perms];
  if (m.op === 'move') return [MOVE, m.path, m.from.file, m.from.offset, m.value.file, m.value.offset, m.value.length, m.value.crc];
  const v = m.value;
  if (v instanceof ValueRef) {
    if (m.ephemeralOwner === undefined && !m.seq) return [PUT_REF, m.path, v.file, v.offset, v.length, v.crc];
    return [PUT_REF, m.path, v.file, v.offset, v.length, v.crc, m.ephemeralOwner ?? null, m.seq ? 1 : 0];
  }
  if (m.ephemeralOwner === undefined && !m.seq) return [PUT, m.path, v];
  return [PUT, m.path, v, m.ephemeralOwner ?? null, m.seq ? 1 : 0];
}

export function encodeRecord(rev: number, muts: readonly Mutation[]): Uint8Array {
  return encodeCommitFast(rev, muts) ?? encodeTyped(RECORD_TYPE_COMMIT, rev, packr.pack(muts.map(mutationTuple)));
}

// Commit records encoded by hand: the same msgpack values `mutationTuple`
// gives msgpackr (any decoder reads them alike), written straight into the
// record, header included, in a shared slab. msgpackr's tuples, its output
// buffer and the copy into the record were 12% of a commit's CPU.

/** Records are cut from slabs of this size (one allocation for many small records). */
const SLAB_BYTES = 64 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;
const utf8 = new TextEncoder();

/** Room for `n` bytes: a fresh slab when the current one is short (a large record gets its own buffer). */
function recordBuffer(n: number): { buf: Uint8Array; at: number } {
  if (n > SLAB_BYTES / 4) return { buf: new Uint8Array(n), at: 0 };
  if (slabUsed + n > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  return { buf: slab, at: slabUsed };
}

/** An upper bound of a string's msgpack size (header of at most 5 bytes, 3 bytes per UTF-16 unit). */
function strBound(s: string): number {
  return 5 + 3 * s.length;
}

/** The record, or undefined for a shape left to msgpackr (a number above 32 bits). */
function encodeCommitFast(rev: number, muts: readonly Mutation[]): Uint8Array | undefined {
  let bound = RECORD_HEADER_SIZE + 5;
  for (const m of muts) {
    bound += 2 + strBound(m.path);
    if (m.op === 'put') {
      const v = m.value;
      if (v instanceof ValueRef) {
        if (v.offset > 0xffffffff || v.file > 0xffffffff) return undefined;
        bound += 4 * 5;
      } else {
        bound += 5 + v.length;
      }
      if (m.ephemeralOwner !== undefined) bound += strBound(m.ephemeralOwner);
      bound += 2;
    } else if (m.op === 'perms') {
      bound += 5;
      for (const p of m.perms) bound += strBound(p);
    } else if (m.op === 'move') {
      if (m.from.file > 0xffffffff || m.from.offset > 0xffffffff || m.value.offset > 0xffffffff || m.value.file > 0xffffffff) return undefined;
      bound += 6 * 5;
    }
  }
  const { buf, at } = recordBuffer(bound);
  let o = at + RECORD_HEADER_SIZE;
  const arrayHeader = (n: number): void => {
    if (n < 16) buf[o++] = 0x90 | n;
    else if (n < 0x10000) { buf[o++] = 0xdc; buf[o++] = n >>> 8; buf[o++] = n & 0xff; }
    else { buf[o++] = 0xdd; putU32BE(buf, o, n); o += 4; }
  };
  const uint = (n: number): void => {
    if (n < 128) buf[o++] = n;
    else if (n < 0x100) { buf[o++] = 0xcc; buf[o++] = n; }
    else if (n < 0x10000) { buf[o++] = 0xcd; buf[o++] = n >>> 8; buf[o++] = n & 0xff; }
    else { buf[o++] = 0xce; putU32BE(buf, o, n); o += 4; }
  };
  const str = (s: string): void => {
    const n = s.length;
    let ascii = true;
    for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) { ascii = false; break; }
    if (ascii) {
      if (n < 32) buf[o++] = 0xa0 | n;
      else if (n < 0x100) { buf[o++] = 0xd9; buf[o++] = n; }
      else if (n < 0x10000) { buf[o++] = 0xda; buf[o++] = n >>> 8; buf[o++] = n & 0xff; }
      else { buf[o++] = 0xdb; putU32BE(buf, o, n); o += 4; }
      for (let i = 0; i < n; i++) buf[o++] = s.charCodeAt(i);
      return;
    }
    // str32 header, then the bytes in place (the header's width never depends on the length).
    const head = o;
    o += 5;
    const { written } = utf8.encodeInto(s, buf.subarray(o, o + 3 * n));
    buf[head] = 0xdb;
    putU32BE(buf, head + 1, written);
    o += written;
  };
  const bin = (b: Uint8Array): void => {
    const n = b.length;
    if (n < 0x100) { buf[o++] = 0xc4; buf[o++] = n; }
    else if (n < 0x10000) { buf[o++] = 0xc5; buf[o++] = n >>> 8; buf[o++] = n & 0xff; }
    else { buf[o++] = 0xc6; putU32BE(buf, o, n); o += 4; }
    buf.set(b, o);
    o += n;
  };
  arrayHeader(muts.length);
  for (const m of muts) {
    if (m.op === 'del') {
      buf[o++] = 0x92; buf[o++] = DEL; str(m.path);
    } else if (m.op === 'perms') {
      buf[o++] = 0x93; buf[o++] = PERMS; str(m.path);
      arrayHeader(m.perms.length);
      for (const p of m.perms) str(p);
    } else if (m.op === 'move') {
      buf[o++] = 0x98; buf[o++] = MOVE; str(m.path);
      uint(m.from.file); uint(m.from.offset); uint(m.value.file); uint(m.value.offset); uint(m.value.length); uint(m.value.crc >>> 0);
    } else {
      const v = m.value;
      const extra = m.ephemeralOwner !== undefined || m.seq === true;
      if (v instanceof ValueRef) {
        buf[o++] = extra ? 0x98 : 0x96; buf[o++] = PUT_REF; str(m.path);
        uint(v.file); uint(v.offset); uint(v.length); uint(v.crc >>> 0);
      } else {
        buf[o++] = extra ? 0x95 : 0x93; buf[o++] = PUT; str(m.path);
        bin(v);
      }
      if (extra) {
        if (m.ephemeralOwner === undefined) buf[o++] = 0xc0;
        else str(m.ephemeralOwner);
        buf[o++] = m.seq === true ? 1 : 0;
      }
    }
  }
  const end = o;
  if (buf === slab) slabUsed = end;
  const rec = buf.subarray(at, end);
  rec[0] = RECORD_MAGIC0;
  rec[1] = RECORD_MAGIC1;
  rec[2] = WAL_FORMAT_VERSION;
  rec[3] = RECORD_TYPE_COMMIT;
  const len = end - at - RECORD_HEADER_SIZE;
  putU32(rec, 4, len);
  putU32(rec, 8, rev % 0x1_0000_0000);
  putU32(rec, 12, Math.floor(rev / 0x1_0000_0000));
  putU32(rec, 16, crc32c(rec, 0, RECORD_HEADER_SIZE, rec.length));
  putU32(rec, 20, crc32c(rec, 0, 0, 20));
  return rec;
}

function putU32BE(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

export function encodeTyped(type: number, rev: number, payload: Uint8Array): Uint8Array {
  const rec = new Uint8Array(RECORD_HEADER_SIZE + payload.length);
  // Little-endian by hand: a DataView per record was 3% of a commit.
  rec[0] = RECORD_MAGIC0;
  rec[1] = RECORD_MAGIC1;
  rec[2] = WAL_FORMAT_VERSION;
  rec[3] = type;
  putU32(rec, 4, payload.length);
  putU32(rec, 8, rev % 0x1_0000_0000);
  putU32(rec, 12, Math.floor(rev / 0x1_0000_0000));
  rec.set(payload, RECORD_HEADER_SIZE);
  putU32(rec, 16, crc32c(payload));
  putU32(rec, 20, crc32c(rec, 0, 0, 20));
  return rec;
}

function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = v >>> 24;
}

/** Decodes a record payload whose checksum was verified; a shape it cannot be is CORRUPT. */
export function decodeMutations(payload: Uint8Array, where: { file: string; offset: number; revision: number }, refs?: RefMaker): Mutation[] {
  const bad = (why: string): LatchkeyError =>
    corrupt(`corrupt write-ahead log ${where.file} at offset ${where.offset} (revision ${where.revision}): ${why}`, { ...where, reason: why });
  let raw: unknown;
  try {
    raw = unpackr.unpack(payload);
  } catch (e) {
    throw bad(`payload does not decode (${(e as Error).message})`);
  }
  if (!Array.isArray(raw)) throw bad('payload is not a list of mutations');
  const out: Mutation[] = [];
  for (const t of raw as unknown[]) {
    if (!Array.isArray(t) || typeof t[1] !== 'string') throw bad('malformed mutation');
    if (t[0] === DEL && t.length === 2) {
      out.push({ op: 'del', path: t[1] });
    } else if (t[0] === PERMS && t.length === 3 && Array.isArray(t[2]) && (t[2] as unknown[]).every((p) => typeof p === 'string')) {
      out.push({ op: 'perms', path: t[1], perms: t[2] as string[] });
    } else if (t[0] === MOVE && t.length === 8 && t.slice(2).every((x) => Number.isSafeInteger(x) && (x as number) >= 0)) {
      if (refs === undefined) throw bad('a value reference with no value store');
      const n = t as number[];
      out.push({ op: 'move', path: t[1], from: { file: n[2]!, offset: n[3]! }, value: refs.ref(n[4]!, n[5]!, n[6]!, n[7]!) });
    } else if ((t[0] === PUT && (t.length === 3 || t.length === 5) && t[2] instanceof Uint8Array)
      || (t[0] === PUT_REF && (t.length === 6 || t.length === 8) && t.slice(2, 6).every((x) => Number.isSafeInteger(x) && (x as number) >= 0))) {
      if (t[0] === PUT_REF && refs === undefined) throw bad('a value reference with no value store');
      const value = t[0] === PUT ? t[2] as Uint8Array : refs!.ref(t[2] as number, t[3] as number, t[4] as number, t[5] as number);
      if (t[0] === PUT_REF) t.splice(2, 3); // owner and seq at 3 and 4, as for PUT
      if (t.length === 3) {
        out.push({ op: 'put', path: t[1], value });
      } else {
        const owner: unknown = t[3];
        if (owner !== null && typeof owner !== 'string') throw bad('malformed ephemeral owner');
        out.push({
          op: 'put', path: t[1], value,
          ...(owner !== null ? { ephemeralOwner: owner } : {}),
          ...(t[4] === 1 ? { seq: true } : {}),
        });
      }
    } else {
      throw bad('unknown mutation');
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Scanning (recovery and repair)

export interface ScannedRecord {
  readonly rev: number;
  readonly offset: number;
  readonly payloadStart: number;
  readonly payloadEnd: number;
}

/** A lock record (events or image) found by a scan; `rev` is the commit before it. */
export interface ScannedLockRecord extends ScannedRecord {
  readonly type: typeof RECORD_TYPE_LOCKS | typeof RECORD_TYPE_LOCK_IMAGE;
}

export interface SegmentScan {
  readonly file: string;
  readonly size: number;
  /** Revision the header promises (undefined when the header is unreadable). */
  readonly firstRev: number | undefined;
  readonly records: ScannedRecord[];
  /** Lock records, in log order (between and around the commits). */
  readonly lockRecords: ScannedLockRecord[];
  /** End of the last good record (or of the header): where appending may continue. */
  readonly validEnd: number;
  /** The last segment ends in a partial or unwritten record from `offset` on: a torn tail, not damage. */
  readonly torn?: { offset: number; reason: string };
  /** Damage: a bad record that is not a torn tail. */
  readonly damage?: { offset: number; revision: number | undefined; reason: string };
}

function allZero(b: Uint8Array, from: number): boolean {
  for (let i = from; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Checks one segment's header and records. A bad record in the last segment
 * is a torn tail when it cannot have been acknowledged as written: it runs
 * past the end of the file, or it is the final record and its checksum
 * fails (a write cut short inside the page cache's last page), or everything
 * from it to the end is zeros (blocks allocated but never written). Anything
 * else is damage. `nameRev` is the revision its name promises (the header and
 * the first record must carry it).
 */
export function scanSegment(buf: Uint8Array, file: string, nameRev: number, isLast: boolean): SegmentScan {
  const size = buf.length;
  const records: ScannedRecord[] = [];
  const lockRecords: ScannedLockRecord[] = [];
  const dv = dataView(buf);
  const headerProblem = (): string | undefined => {
    if (size < SEGMENT_HEADER_SIZE) return 'segment header truncated';
    for (let i = 0; i < MAGIC_BYTES.length; i++) if (buf[i] !== MAGIC_BYTES[i]) return 'bad segment magic';
    if (dv.getUint32(28, true) !== crc32c(buf, 0, 0, 28)) return 'segment header checksum mismatch';
    if (dv.getUint32(8, true) !== WAL_FORMAT_VERSION) return `unsupported log format version ${dv.getUint32(8, true)}`;
    if (readU64(dv, 16) !== nameRev) return `header says first revision ${readU64(dv, 16)}, name says ${nameRev}`;
    return undefined;
  };
  const hp = headerProblem();
  if (hp !== undefined) {
    if (isLast && (size < SEGMENT_HEADER_SIZE || allZero(buf, 0))) {
      return { file, size, firstRev: undefined, records, lockRecords, validEnd: 0, torn: { offset: 0, reason: hp } };
    }
    return { file, size, firstRev: undefined, records, lockRecords, validEnd: 0, damage: { offset: 0, revision: undefined, reason: hp } };
  }
  let off = SEGMENT_HEADER_SIZE;
  let expect = nameRev;
  const stop = (reason: string, tornIf: boolean, revision?: number): SegmentScan =>
    isLast && tornIf
      ? { file, size, firstRev: nameRev, records, lockRecords, validEnd: off, torn: { offset: off, reason } }
      : { file, size, firstRev: nameRev, records, lockRecords, validEnd: off, damage: { offset: off, revision: revision ?? expect, reason } };
  while (off < size) {
    const rem = size - off;
    if (rem < RECORD_HEADER_SIZE) return stop('record header truncated', true);
    // The header is trusted only once its own checksum matches; a bad header
    // is a torn tail only where nothing was written from it on (zeros).
    if (dv.getUint32(off + 20, true) !== crc32c(buf, 0, off, off + 20)) return stop('record header checksum mismatch', allZero(buf, off));
    if (buf[off] !== RECORD_MAGIC0 || buf[off + 1] !== RECORD_MAGIC1 || buf[off + 2] !== WAL_FORMAT_VERSION || !(buf[off + 3]! >= RECORD_TYPE_COMMIT && buf[off + 3]! <= RECORD_TYPE_LOCK_IMAGE)) {
      return stop('bad record header', false);
    }
    const len = dv.getUint32(off + 4, true);
    const rev = readU64(dv, off + 8);
    const end = off + RECORD_HEADER_SIZE + len;
    if (len > MAX_RECORD_PAYLOAD) return stop(`record length ${len} out of range`, false, rev);
    if (end > size) return stop(`record of ${len} bytes cut short by the end of the file`, true, rev);
    if (crc32c(buf, 0, off + RECORD_HEADER_SIZE, end) !== dv.getUint32(off + 16, true)) {
      return stop('record checksum mismatch', end === size || allZero(buf, end), rev);
    }
    const type = buf[off + 3]!;
    if (type !== RECORD_TYPE_COMMIT) {
      // Lock records carry the revision of the commit before them.
      if (rev !== expect - 1) return stop(`lock record at revision ${rev}, expected ${expect - 1}`, false, rev);
      lockRecords.push({ rev, offset: off, payloadStart: off + RECORD_HEADER_SIZE, payloadEnd: end, type: type as ScannedLockRecord['type'] });
      off = end;
      continue;
    }
    if (rev !== expect) return stop(`revision gap: expected ${expect}, found ${rev}`, false, rev);
    records.push({ rev, offset: off, payloadStart: off + RECORD_HEADER_SIZE, payloadEnd: end });
    expect = rev + 1;
    off = end;
  }
  return { file, size, firstRev: nameRev, records, lockRecords, validEnd: off };
}

/**
 * The highest revision of any record header found intact at or after
 * `from` (resynchronising byte by byte: the header checksum makes false
 * positives negligible). Repair uses it to say how far a damaged log went.
 */
export function highestRevisionAfter(buf: Uint8Array, from: number): number | undefined {
  const dv = dataView(buf);
  let best: number | undefined;
  for (let off = from; off + RECORD_HEADER_SIZE <= buf.length; off++) {
    if (buf[off] !== RECORD_MAGIC0 || buf[off + 1] !== RECORD_MAGIC1 || buf[off + 2] !== WAL_FORMAT_VERSION) continue;
    if (dv.getUint32(off + 20, true) !== crc32c(buf, 0, off, off + 20)) continue;
    const rev = readU64(dv, off + 8);
    if (rev !== undefined && (best === undefined || rev > best)) best = rev;
  }
  return best;
}

// ---------------------------------------------------------------------------
// The writer

export interface SegmentRef {
  readonly name: string;
  readonly firstRev: number;
}

export interface WalInit {
  dir: string;
  fs: Fs;
  /** Rotate when the active segment reaches this many bytes. */
  segmentBytes: number;
  /** false: write on sync without O_DSYNC, no flush (durability 'none'). */
  durable: boolean;
  /** Existing segments, ascending; the last one is continued when `activeSize` is given. */
  segments: readonly SegmentRef[];
  /** Valid size of the last segment (after torn-tail truncation), or undefined to start a new segment. */
  activeSize: number | undefined;
  /** Revision the next append must carry. */
  nextRev: number;
  /** Log bytes already past the newest snapshot (found by recovery). */
  bytesSinceSnapshot?: number;
  /** The lock image recovered (what the log holds); new segments start with it. */
  locks?: LockImage;
  /** Value files: the entries buffered for a group are written before its records. */
  values?: ValueStore;
}

export class Wal implements CommitLog {
  private readonly dir: string;
  private readonly fs: Fs;
  private readonly segmentBytes: number;
  private readonly durable: boolean;
  private readonly segments: SegmentRef[];
  private fh: FileHandleLike | undefined;
  private activeSize = 0;
  /** Size of the active segment before its first appended record (header and lock image). */
  private startSize = SEGMENT_HEADER_SIZE;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Of those, lock records: they do not count toward a snapshot (segment images carry the lock state). */
  private pendingLockBytes = 0;
  private nextRev: number;
  private durableRev: number;
  private syncing = false;
  private rotateRequested = false;
  private closed = false;
  private failure: LatchkeyError | undefined;
  private sinceSnapshot = 0;
  /** The lock image of everything durable; lock events appended and not yet synced. */
  private readonly locks: LockImage;
  private lockTuples: unknown[] = [];
  private lockEvents: LockEvent[] = [];
  private readonly counters = { records: 0, syncs: 0, bytesWritten: 0, rotations: 0 };
  private readonly values: ValueStore | undefined;

  private constructor(init: WalInit) {
    this.dir = init.dir;
    this.fs = init.fs;
    this.segmentBytes = init.segmentBytes;
    this.durable = init.durable;
    this.segments = [...init.segments];
    this.nextRev = init.nextRev;
    this.durableRev = init.nextRev - 1;
    this.sinceSnapshot = init.bytesSinceSnapshot ?? 0;
    this.locks = init.locks?.copy() ?? new LockImage();
    this.values = init.values;
  }

  static async open(init: WalInit): Promise<Wal> {
    const w = new Wal(init);
    const last = w.segments.at(-1);
    if (last !== undefined && init.activeSize !== undefined) {
      const file = path.join(w.dir, last.name);
      try {
        w.fh = await w.fs.open(file, 'readwrite', { dsync: w.durable });
      } catch (e) {
        throw ioError('opening the log', file, e);
      }
      w.activeSize = w.startSize = init.activeSize;
      if (init.activeSize === SEGMENT_HEADER_SIZE) {
        // The segment's lock image was cut off with it (a crash while it was created): write it again.
        const image = encodeTyped(RECORD_TYPE_LOCK_IMAGE, last.firstRev - 1, packImage(w.locks));
        try {
          await writeAll(w.fh, [image], SEGMENT_HEADER_SIZE);
        } catch (e) {
          throw ioError('writing the log', file, e, {}, 'READ_ONLY');
        }
        w.activeSize = w.startSize = SEGMENT_HEADER_SIZE + image.length;
      }
    } else {
      await w.startSegment(init.nextRev);
    }
    return w;
  }

  get bytesSinceSnapshot(): number {
    return this.sinceSnapshot;
  }

  /** The highest revision known durable in the log. */
  get durableRevision(): number {
    return this.durableRev;
  }

  /** Why the log stopped accepting commits, if it did. */
  get failed(): LatchkeyError | undefined {
    return this.failure;
  }

  /** Buffers a lock event (lock-log.ts): it is written before the next commit record, or by the next sync. */
  appendLock(e: LockEvent): void {
    if (this.failure !== undefined || this.closed) return; // the store is read-only or closed: nothing more is logged
    this.lockTuples.push(eventTuple(e));
    this.lockEvents.push(e);
  }

  /** True when something appended awaits a sync. */
  get unsynced(): boolean {
    return this.pending.length > 0 || this.lockTuples.length > 0;
  }

  private flushLocks(): void {
    if (this.lockTuples.length === 0) return;
    const rec = encodeTyped(RECORD_TYPE_LOCKS, this.nextRev - 1, packEvents(this.lockTuples));
    this.lockTuples = [];
    this.pending.push(rec);
    this.pendingBytes += rec.length;
    this.pendingLockBytes += rec.length;
  }

  append(rev: number, mutations: readonly Mutation[]): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new LatchkeyError('CLOSED', 'the write-ahead log is closed');
    assert(rev === this.nextRev, `log append out of order: revision ${rev}, expected ${this.nextRev}`);
    this.flushLocks();
    const rec = encodeRecord(rev, mutations);
    this.pending.push(rec);
    this.pendingBytes += rec.length;
    this.nextRev = rev + 1;
  }

  async sync(): Promise<void> {
    if (this.failure) throw this.failure;
    assert(!this.syncing, 'two log syncs in flight');
    this.flushLocks();
    if (this.pending.length === 0) return;
    const group = this.pending;
    // Taken in the same synchronous step as the group: exactly the values its records reference (and maybe a few more).
    const values = this.values?.takePending() ?? [];
    const events = this.lockEvents;
    const lockBytes = this.pendingLockBytes;
    this.lockEvents = [];
    this.pendingLockBytes = 0;
    const bytes = this.pendingBytes;
    const first = this.durableRev + 1;
    const last = this.nextRev - 1;
    this.pending = [];
    this.pendingBytes = 0;
    this.syncing = true;
    let at = this.activeSize;
    // The segment written to (its path is made only on failure: path.join was 2% of a commit).
    let seg = this.segments.at(-1);
    try {
      if (this.rotateRequested || this.activeSize >= this.segmentBytes) {
        if (this.activeSize > this.startSize) await this.rotate(first);
        this.rotateRequested = false;
        seg = this.segments.at(-1);
        at = this.activeSize;
      }
      // Values first: no durable record may point at bytes that are not.
      if (values.length > 0) await this.values!.writePending(values);
      const fh = this.fh;
      assert(fh !== undefined, 'log has no open segment');
      // The segment is open with O_DSYNC when durable: this write is the group's flush.
      // Without it (durability 'none') the write only copies to the page cache: done here (note 3).
      if (this.durable) await writeAll(fh, group, this.activeSize);
      else writeAllSync(fh, group, this.activeSize);
    } catch (e) {
      this.failure = ioError('writing the log', path.join(this.dir, seg?.name ?? '?'), e, { revisions: [first, last] }, 'READ_ONLY');
      // Best effort (see design note 5); the failure stands whatever happens here.
      if (this.fh !== undefined && this.segments.at(-1) === seg) await this.fh.truncate(at).catch(() => undefined);
      throw this.failure;
    } finally {
      this.syncing = false;
    }
    this.activeSize += bytes;
    this.durableRev = last;
    for (const e of events) this.locks.apply(e);
    this.sinceSnapshot += bytes - lockBytes;
    this.counters.records += group.length;
    this.counters.syncs++;
    this.counters.bytesWritten += bytes;
  }

  /** Asks the next sync to start a new segment (after a snapshot, so the old ones can be retired). */
  requestRotation(): void {
    this.rotateRequested = true;
  }

  /** Forgets `bytes` of log now covered by a snapshot (they no longer count toward the next one). */
  coveredBySnapshot(bytes: number): void {
    this.sinceSnapshot = Math.max(0, this.sinceSnapshot - bytes);
  }

  /**
   * Removes the segments whose every record is at or below `rev` (never the
   * active one). Returns the names removed.
   */
  async removeSegmentsThrough(rev: number): Promise<string[]> {
    const doomed: SegmentRef[] = [];
    while (this.segments.length > 1 && this.segments[1]!.firstRev - 1 <= rev) doomed.push(this.segments.shift()!);
    for (const s of doomed) await this.fs.unlink(path.join(this.dir, s.name));
    if (doomed.length > 0 && this.durable) await this.fs.syncDir(this.dir);
    return doomed.map((s) => s.name);
  }

  stats(): WalStats {
    return { ...this.counters, segments: this.segments.length };
  }

  /** Syncs what is pending (unless the log failed) and closes the segment. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.failure && !this.syncing) await this.sync();
    } finally {
      this.closed = true;
      await this.fh?.close();
      this.fh = undefined;
    }
  }

  private activeFile(): string {
    return path.join(this.dir, this.segments.at(-1)?.name ?? '?');
  }

  private async rotate(firstRev: number): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
    // Lock events sync without a commit, so the active segment may hold only
    // lock records: its successor would bear its name. It is replaced instead
    // (startSegment's temp + rename), the new image covering every event in it.
    await this.startSegment(firstRev, this.segments.at(-1)?.firstRev === firstRev);
    this.counters.rotations++;
  }

  /**
   * Creates `wal-<firstRev>.log` with its header and the lock image as of
   * its start (every durable lock event so far), durable (file and directory
   * entry) before any record goes in. `replace`: the active segment has
   * that name and holds no commit record; the new one is written as
   * `<name>.tmp` and renamed over it (recovery removes a leftover temp).
   */
  private async startSegment(firstRev: number, replace = false): Promise<void> {
    const name = segmentName(firstRev);
    const file = path.join(this.dir, name);
    const target = replace ? file + '.tmp' : file;
    let fh: FileHandleLike | undefined;
    let size: number;
    try {
      if (replace) await this.fs.unlink(target).catch((e: unknown) => { if (errnoOf(e) !== 'ENOENT') throw e; });
      // O_DSYNC: the header write, and every group written later, is durable when it returns.
      fh = await this.fs.open(target, 'create', { dsync: this.durable });
      const image = encodeTyped(RECORD_TYPE_LOCK_IMAGE, firstRev - 1, packImage(this.locks));
      await writeAll(fh, [encodeSegmentHeader(firstRev), image], 0);
      if (replace) await this.fs.rename(target, file);
      if (this.durable) await this.fs.syncDir(this.dir);
      size = SEGMENT_HEADER_SIZE + image.length;
    } catch (e) {
      await fh?.close().catch(() => undefined);
      throw ioError('starting a log segment', file, e, {}, 'READ_ONLY');
    }
    this.fh = fh;
    this.activeSize = this.startSize = size;
    if (!replace) this.segments.push({ name, firstRev });
  }
}
