/**
 * Snapshots: the whole tree at one revision, in one file.
 *
 * Design (byte layout in docs/format.md):
 *
 * 1. Written from an immutable root while commits continue: the writer
 *    walks the tree (parents before children, children in name order),
 *    encodes about a megabyte at a time into a block, and awaits the write
 *    of each block before encoding more, so the event loop keeps serving
 *    commits in between and memory stays bounded.
 * 2. File = 40-byte header (magic "LATCHSNP", format version, revision,
 *    CRC32C) + blocks. A block is a 12-byte header (type, body length,
 *    CRC32C over both and the body) + body; node entries never span blocks,
 *    so a reader can decode a block alone. The last block is an END block
 *    repeating the revision and giving the node count: a file without it is
 *    truncated, whatever its size.
 * 3. Durability: write `snap-<rev>.snap.tmp`, fsync it, rename it to
 *    `snap-<rev>.snap`, fsync the directory. A snapshot file under its final
 *    name is therefore complete and durable; a `.tmp` left by a crash is
 *    garbage and is removed at open.
 * 4. Reading verifies every checksum and the structure (child counts, name
 *    order) and rebuilds each directory with `PMap.fromSorted` — children
 *    arrive sorted, so a directory of n children is built in O(n), not
 *    O(n log n). Values are views into the block they were read from (one
 *    ArrayBuffer per block, not one per value).
 *
 * A node entry: nameLen, name (UTF-8), flags, createRev, modRev, version,
 * childrenRev, seq, childCount, valueLen, value, [ownerLen, owner],
 * [permCount, (len, perm)…] — all integers as unsigned LEB128 varints. The
 * root's name is empty.
 */
import path from 'node:path';
import { LatchkeyError } from '../core/errors.js';
import { compareNames } from '../core/path.js';
import { PMap } from '../core/pmap.js';
import { EMPTY_VALUE, type Node, mkNode } from '../core/tree.js';
import { type Value, ValueRef } from '../core/value.js';
import type { RefMaker } from './wal.js';
import { crc32c } from './crc32c.js';
import { corrupt, dataView, errnoOf, ioError, readU64, snapshotName, writeU64 } from './format.js';
import { type FileHandleLike, type Fs, readAt } from './fs.js';

export const SNAPSHOT_FORMAT_VERSION = 1;
export const SNAPSHOT_MAGIC = 'LATCHSNP';
export const SNAPSHOT_HEADER_SIZE = 40;
export const BLOCK_HEADER_SIZE = 12;
const BLOCK_NODES = 1;
const BLOCK_END = 2;
const BLOCK_TARGET = 1 << 20;
/** A snapshot's remaining bytes from which they are read into one buffer when its values are inline (readSnapshot). */
const WHOLE_MIN = 64 << 20;
/** The largest buffer such a read allocates at once (a typed array cannot pass 4 GiB on Node 20; nor should one allocation). */
const WHOLE_CHUNK = 256 << 20;
const MAX_BLOCK = 1 << 30;
const FLAG_OWNER = 1;
const FLAG_PERMS = 2;
/** The value is in a value file: file, offset, length, crc (varints) instead of valueLen, value. */
const FLAG_REF = 4;
const MAGIC_BYTES = new TextEncoder().encode(SNAPSHOT_MAGIC);
const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: true });

// ---------------------------------------------------------------------------
// Writing

class BlockWriter {
  buf = new Uint8Array(BLOCK_TARGET + 64 * 1024);
  dv = dataView(this.buf);
  pos = BLOCK_HEADER_SIZE;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.dv = dataView(next);
  }

  varint(v: number): void {
    this.ensure(10);
    const b = this.buf;
    while (v >= 0x80) {
      b[this.pos++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    b[this.pos++] = v;
  }

  bytes(v: Uint8Array): void {
    this.varint(v.length);
    this.ensure(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  string(s: string): void {
    // Names are short and mostly ASCII: write them directly when they are.
    let ascii = s.length < 128;
    if (ascii) {
      for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) { ascii = false; break; }
    }
    if (!ascii) { this.bytes(utf8.encode(s)); return; }
    this.ensure(s.length + 1);
    this.buf[this.pos++] = s.length;
    for (let i = 0; i < s.length; i++) this.buf[this.pos++] = s.charCodeAt(i);
  }

  /** Seals the block (header + checksum) and returns its bytes; the writer starts a new one. */
  seal(type: number): Uint8Array {
    const len = this.pos - BLOCK_HEADER_SIZE;
    this.dv.setUint32(0, type, true);
    this.dv.setUint32(4, len, true);
    let c = crc32c(this.buf, 0, 0, 8);
    c = crc32c(this.buf, c, BLOCK_HEADER_SIZE, this.pos);
    this.dv.setUint32(8, c, true);
    const out = this.buf.subarray(0, this.pos);
    this.buf = new Uint8Array(BLOCK_TARGET + 64 * 1024);
    this.dv = dataView(this.buf);
    this.pos = BLOCK_HEADER_SIZE;
    return out;
  }
}

function encodeHeader(rev: number): Uint8Array {
  const b = new Uint8Array(SNAPSHOT_HEADER_SIZE);
  const dv = dataView(b);
  b.set(MAGIC_BYTES, 0);
  dv.setUint32(8, SNAPSHOT_FORMAT_VERSION, true);
  writeU64(dv, 16, rev);
  dv.setUint32(36, crc32c(b, 0, 0, 36), true);
  return b;
}

function encodeNode(w: BlockWriter, name: string, n: Node): void {
  w.string(name);
  const v = n.value;
  const isRef = v instanceof ValueRef;
  w.varint((n.ephemeralOwner !== undefined ? FLAG_OWNER : 0) | (n.perms !== undefined ? FLAG_PERMS : 0) | (isRef ? FLAG_REF : 0));
  w.varint(n.createRev);
  w.varint(n.modRev);
  w.varint(n.version);
  w.varint(n.childrenRev);
  w.varint(n.seq);
  w.varint(n.children.size);
  if (isRef) {
    w.varint(v.file);
    w.varint(v.offset);
    w.varint(v.length);
    w.varint(v.crc);
  } else {
    w.bytes(v);
  }
  if (n.ephemeralOwner !== undefined) w.string(n.ephemeralOwner);
  if (n.perms !== undefined) {
    w.varint(n.perms.length);
    for (const p of n.perms) w.string(p);
  }
}

export interface SnapshotWriteResult {
  readonly file: string;
  readonly bytes: number;
  readonly nodes: number;
}

/**
 * Writes the tree `root` (the state at `rev`) as `snap-<rev>.snap` in `dir`.
 * `durable: false` skips the fsyncs (durability 'none').
 */
export async function writeSnapshot(fs: Fs, dir: string, root: Node, rev: number, durable = true): Promise<SnapshotWriteResult> {
  const final = path.join(dir, snapshotName(rev));
  const tmp = final + '.tmp';
  let fh: FileHandleLike | undefined;
  let pos = 0;
  let nodes = 0;
  try {
    // A stale temp file of the same revision (a crash mid-write) is garbage.
    await fs.unlink(tmp).catch((e: unknown) => { if (errnoOf(e) !== 'ENOENT') throw e; });
    const h = await fs.open(tmp, 'create');
    fh = h;
    const header = encodeHeader(rev);
    await h.write(header, 0, header.length, 0);
    pos = header.length;
    const w = new BlockWriter();
    const flush = async (type: number): Promise<void> => {
      const block = w.seal(type);
      let done = 0;
      while (done < block.length) {
        const { bytesWritten } = await h.write(block, done, block.length - done, pos + done);
        if (bytesWritten === 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
        done += bytesWritten;
      }
      pos += block.length;
    };
    // Explicit stack instead of recursion: depth is unbounded by the call stack,
    // and the awaits between blocks happen in one flat loop.
    encodeNode(w, '', root);
    nodes++;
    const stack: Iterator<[string, Node]>[] = [root.children.entries()];
    while (stack.length > 0) {
      const it = stack[stack.length - 1]!;
      const r = it.next();
      if (r.done) { stack.pop(); continue; }
      const [name, child] = r.value;
      encodeNode(w, name, child);
      nodes++;
      if (child.children.size > 0) stack.push(child.children.entries());
      if (w.pos >= BLOCK_TARGET) await flush(BLOCK_NODES);
    }
    if (w.pos > BLOCK_HEADER_SIZE) await flush(BLOCK_NODES);
    w.ensure(16);
    writeU64(w.dv, w.pos, nodes);
    writeU64(w.dv, w.pos + 8, rev);
    w.pos += 16;
    await flush(BLOCK_END);
    if (durable) await h.sync();
    await h.close();
    fh = undefined;
    await fs.rename(tmp, final);
    if (durable) await fs.syncDir(dir);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await fs.unlink(tmp).catch(() => undefined);
    throw ioError('writing a snapshot', tmp, e, { revision: rev });
  }
  return { file: final, bytes: pos, nodes };
}

// ---------------------------------------------------------------------------
// Reading

interface Frame {
  name: string;
  value: Value;
  createRev: number;
  modRev: number;
  version: number;
  childrenRev: number;
  seq: number;
  owner: string | undefined;
  perms: string[] | undefined;
  expected: number;
  names: string[];
  nodes: Node[];
  /** Nodes in the subtree so far (itself included). */
  size: number;
}

/** Node's Buffer#latin1Slice: a flat string straight from the bytes. */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Buffer, start: number, end: number) => string }).latin1Slice;

class BlockReader {
  pos = 0;
  /** The same bytes as a Buffer (no copy), for latin1Slice. */
  readonly nb: Buffer;
  constructor(readonly buf: Uint8Array, readonly fail: (why: string) => LatchkeyError) {
    this.nb = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  }

  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.buf.length) throw this.fail('entry runs past the end of its block');
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw this.fail('integer out of range');
        return v;
      }
      mul *= 0x80;
    }
    throw this.fail('varint too long');
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (n === 0) return EMPTY_VALUE;
    if (this.pos + n > this.buf.length) throw this.fail('entry runs past the end of its block');
    const v = new Uint8Array(this.buf.buffer, this.buf.byteOffset + this.pos, n);
    this.pos += n;
    return v;
  }

  string(): string {
    const n = this.varint();
    if (this.pos + n > this.buf.length) throw this.fail('entry runs past the end of its block');
    const b = this.buf;
    const start = this.pos;
    this.pos += n;
    if (n <= 64) {
      // An ASCII name straight from the bytes: one flat string of its own
      // (appending a character at a time made one string per character,
      // and the map then copied the name again: see PMap.fromSorted's `owned`).
      let ascii = true;
      for (let i = start; i < start + n; i++) if (b[i]! >= 0x80) { ascii = false; break; }
      if (ascii) return latin1Slice.call(this.nb, start, start + n);
    }
    try {
      return utf8d.decode(b.subarray(start, start + n));
    } catch {
      throw this.fail('name is not valid UTF-8');
    }
  }
}

/** Reads `dest.length` bytes at `position` into `dest`; returns the part filled (short at the end of the file). */
async function readInto(fh: FileHandleLike, dest: Uint8Array, position: number): Promise<Uint8Array> {
  let got = 0;
  while (got < dest.length) {
    const { bytesRead } = await fh.read(dest, got, dest.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === dest.length ? dest : dest.subarray(0, got);
}

export interface LoadedSnapshot {
  readonly root: Node;
  readonly revision: number;
  readonly nodes: number;
  readonly bytes: number;
  /** Nodes with an ephemeral owner. */
  readonly ephemerals: number;
}

/**
 * Reads and verifies a snapshot file. Any damage (bad magic, checksum,
 * truncation, structure) is a LatchkeyError CORRUPT naming the file and the
 * offset of the damaged block.
 */
export async function readSnapshot(fs: Fs, file: string, refs?: RefMaker, wholeMin = WHOLE_MIN, wholeChunk = WHOLE_CHUNK): Promise<LoadedSnapshot> {
  let fh: FileHandleLike;
  try {
    fh = await fs.open(file, 'read');
  } catch (e) {
    throw ioError('opening a snapshot', file, e);
  }
  try {
    const size = (await fh.stat()).size;
    const header = await readAt(fh, SNAPSHOT_HEADER_SIZE, 0);
    const hdv = dataView(header);
    const bad = (offset: number, why: string): LatchkeyError =>
      corrupt(`corrupt snapshot ${file} at offset ${offset}: ${why}`, { file, offset });
    if (header.length < SNAPSHOT_HEADER_SIZE) throw bad(0, 'header truncated');
    for (let i = 0; i < MAGIC_BYTES.length; i++) if (header[i] !== MAGIC_BYTES[i]) throw bad(0, 'bad magic');
    if (hdv.getUint32(36, true) !== crc32c(header, 0, 0, 36)) throw bad(0, 'header checksum mismatch');
    if (hdv.getUint32(8, true) !== SNAPSHOT_FORMAT_VERSION) throw bad(0, `unsupported snapshot format version ${hdv.getUint32(8, true)}`);
    const rev = readU64(hdv, 16);
    if (rev === undefined) throw bad(16, 'revision out of range');

    let pos = SNAPSHOT_HEADER_SIZE;
    let nodes = 0;
    let ephemerals = 0;
    const stack: Frame[] = [];
    let root: Node | undefined;
    /** The rest of the file, once read into big buffers (see below): the current one and the file offset it starts at. */
    let rest: Uint8Array | undefined;
    let restAt = 0;
    let inlineBytes = 0;
    let ended = false;
    while (!ended) {
      const bh = await readAt(fh, BLOCK_HEADER_SIZE, pos);
      if (bh.length < BLOCK_HEADER_SIZE) throw bad(pos, 'truncated: no end block');
      const bdv = dataView(bh);
      const type = bdv.getUint32(0, true);
      const len = bdv.getUint32(4, true);
      if ((type !== BLOCK_NODES && type !== BLOCK_END) || len > MAX_BLOCK) throw bad(pos, 'bad block header');
      if (pos + BLOCK_HEADER_SIZE + len > size) throw bad(pos, 'truncated block');
      // The current big buffer used up: the next one starts at this block (one block never spans two).
      if (rest !== undefined && pos + BLOCK_HEADER_SIZE + len > restAt + rest.length) {
        restAt = pos + BLOCK_HEADER_SIZE;
        rest = len > wholeChunk ? undefined : new Uint8Array(Math.min(wholeChunk, size - restAt));
      }
      const body = rest === undefined ? await readAt(fh, len, pos + BLOCK_HEADER_SIZE) : await readInto(fh, rest.subarray(pos + BLOCK_HEADER_SIZE - restAt, pos + BLOCK_HEADER_SIZE - restAt + len), pos + BLOCK_HEADER_SIZE);
      if (body.length < len) throw bad(pos, 'truncated block');
      let c = crc32c(bh, 0, 0, 8);
      c = crc32c(body, c);
      if (c !== bdv.getUint32(8, true)) throw bad(pos, 'block checksum mismatch');
      const blockPos = pos;
      const fail = (why: string): LatchkeyError => bad(blockPos, why);
      if (type === BLOCK_END) {
        if (len !== 16) throw fail('bad end block');
        const edv = dataView(body);
        if (readU64(edv, 0) !== nodes) throw fail(`end block counts ${readU64(edv, 0)} nodes, file has ${nodes}`);
        if (readU64(edv, 8) !== rev) throw fail('end block revision differs from the header');
        if (stack.length > 0 || root === undefined) throw fail('tree incomplete at the end block');
        ended = true;
        pos += BLOCK_HEADER_SIZE + len;
        break;
      }
      const r = new BlockReader(body, fail);
      while (r.pos < body.length) {
        const name = r.string();
        const flags = r.varint();
        const createRev = r.varint();
        const modRev = r.varint();
        const version = r.varint();
        const childrenRev = r.varint();
        const seq = r.varint();
        const expected = r.varint();
        let value: Value;
        if (flags & FLAG_REF) {
          if (refs === undefined) throw fail('a value reference with no value store');
          const vf = r.varint();
          const vo = r.varint();
          const vl = r.varint();
          value = refs.ref(vf, vo, vl, r.varint());
        } else {
          value = r.bytes();
          inlineBytes += value.length;
        }
        const owner = flags & FLAG_OWNER ? r.string() : undefined;
        if (owner !== undefined) ephemerals++;
        let perms: string[] | undefined;
        if (flags & FLAG_PERMS) {
          const n = r.varint();
          if (n > body.length) throw fail('bad perms count');
          perms = [];
          for (let i = 0; i < n; i++) perms.push(r.string());
        }
        if (flags & ~(FLAG_OWNER | FLAG_PERMS | FLAG_REF)) throw fail('unknown node flags');
        nodes++;
        if (root !== undefined) throw fail('node after the end of the tree');
        const parent = stack[stack.length - 1];
        if (parent === undefined) {
          if (nodes !== 1 || name !== '') throw fail('the first node is not the root');
        } else {
          if (name === '') throw fail('empty child name');
          const prev = parent.names[parent.names.length - 1];
          if (prev !== undefined && compareNames(prev, name) >= 0) throw fail(`children out of order: ${prev}, ${name}`);
        }
        if (expected > 0) {
          // A directory: its children follow; it is built when the last one is in.
          stack.push({ name, createRev, modRev, version, childrenRev, seq, expected, value, owner, perms, names: [], nodes: [], size: 1 });
          continue;
        }
        // A leaf (most nodes) is built at once, with no frame.
        let node = mkNode(value, createRev, modRev, version, childrenRev, PMap.empty(), owner, seq, 1, perms);
        let nodeName = name;
        let nodeSize = 1;
        // Add it to its parent, and close every directory whose children are all in.
        for (;;) {
          const up = stack[stack.length - 1];
          if (up === undefined) { root = node; break; }
          up.names.push(nodeName);
          up.nodes.push(node);
          up.size += nodeSize;
          if (up.names.length < up.expected) break;
          stack.pop();
          node = mkNode(up.value, up.createRev, up.modRev, up.version, up.childrenRev,
            PMap.fromSorted(up.names, up.nodes, true), up.owner, up.seq, up.size, up.perms);
          nodeName = up.name;
          nodeSize = up.size;
        }
      }
      pos += BLOCK_HEADER_SIZE + len;
      if (rest === undefined && inlineBytes * 2 >= len && size - pos >= wholeMin) {
        // Values of the nodes are views into the blocks, so the blocks stay
        // allocated; allocating them one by one grows V8's external memory a
        // megabyte at a time, and every 64 MiB of that growth starts a full
        // mark of the heap (V8's external memory pressure), whose size grows
        // with the nodes loaded: at 10,000,000 nodes of 100-byte values, 22
        // mark-compacts of up to 2.3 GB. The rest of a file whose first block
        // is mostly inline values is read into big buffers of up to 256 MiB
        // each (WHOLE_CHUNK), allocated at once.
        restAt = pos + BLOCK_HEADER_SIZE;
        rest = new Uint8Array(Math.min(wholeChunk, size - restAt));
      }
      inlineBytes = 0;
    }
    if (pos !== size) throw bad(pos, 'data after the end block');
    return { root: root!, revision: rev, nodes, bytes: size, ephemerals };
  } finally {
    await fh.close();
  }
}
