/**
 * Value files: values larger than the inline threshold live on disk, and
 * the tree keeps a `ValueRef` (file, offset, length, CRC32C) to them.
 *
 * Design (byte layout in docs/format.md, "Value files"):
 *
 * 1. Files are `val-<n>.val`, append-only: a 32-byte header, then entries,
 *    each a 16-byte header (magic "LV", version, length, CRC32C of the
 *    value, CRC32C of the header) and the value's bytes. A ref's offset is
 *    that of the bytes. Headers make a file readable alone (`check`, and
 *    compaction scanning a file).
 * 2. `store(bytes)` is synchronous: it assigns the place (the end of the
 *    active file plus what is already buffered) and buffers the entry. The
 *    write-ahead log takes the buffered entries in the same synchronous step
 *    in which it takes its group (`takePending`), writes them first (one
 *    positioned writev per file, O_DSYNC when durable), and only then the
 *    log records that reference them: a record that survives a crash never
 *    points at bytes that did not. Entries written whose record was not
 *    are garbage, reclaimed by compaction.
 * 3. Reads are positional: `read` asynchronously (libuv's pool: never blocks
 *    the event loop), `readSync` with pread(2) for the synchronous paths
 *    (atomic ops on a large value, transaction replay, XenStore). Every read
 *    is checked against the ref's CRC32C; a mismatch or a short read is
 *    CORRUPT naming the file and offset, and nothing is cached.
 * 4. A bounded cache (S3-FIFO by default, LRU on request: value-cache.ts;
 *    `cacheBytes`, default 256 MiB) keeps values read, copied into memory
 *    it owns and reuses (value-arena.ts: slabs allocated once, blocks freed
 *    by eviction and reused). Values written are not copied in by default
 *    (`cacheWrites`): the watch history window already holds the bytes of
 *    recent writes (up to 64 MiB), and a second copy of them in the cache
 *    made the writer's memory cache + window instead of either (measured:
 *    docs/benchmarks.md, bigdata). Entries still being written stay in
 *    `unflushed`, readable, until they are on disk.
 *    Every read hands out bytes the caller owns (a copy out of the cache, or
 *    the buffer the file was read into, whose bytes the cache copied): a
 *    cached block is reused after eviction, so no one outside this file ever
 *    holds a view of one.
 * 5. Reads in flight pin their file (`pins`): compaction deletes a file
 *    only when no reader holds it (compaction.ts).
 * 6. Write back-pressure (`admit`): the bytes of large values in writes
 *    admitted and not yet durable are bounded (`writeBytes`, default a
 *    quarter of `cacheBytes`, at least 1 MiB). A write that would pass the
 *    bound waits, first come first served; one alone (nothing else in
 *    flight) always proceeds, however large; a write of no large values
 *    waits only behind other waiters. The engine asks after the write's
 *    locks are granted, and a write admitted here only waits for its own
 *    log sync: the waits cannot form a cycle. A waiter carries its session:
 *    the session's end fails it (`cancelWaiters`).
 */
import { closeSync, openSync, read as readCb, readSync } from 'node:fs';
import path from 'node:path';
import { LatchkeyError } from '../core/errors.js';
import { type ValueReader, ValueRef } from '../core/value.js';
import { crc32c } from './crc32c.js';
import { corrupt, dataView, errnoOf, ioError, readU64, writeU64 } from './format.js';
import { type FileHandleLike, type Fs, writeAll } from './fs.js';
import { ArenaCache } from './value-arena.js';
import type { CachePolicy } from './value-cache.js';

export const VALUE_FILE_MAGIC = 'LATCHVAL';
export const VALUE_FILE_HEADER_SIZE = 32;
export const VALUE_ENTRY_HEADER_SIZE = 16;
const VALUE_FORMAT_VERSION = 1;
const MAGIC_BYTES = new TextEncoder().encode(VALUE_FILE_MAGIC);
/** Offsets are kept below 2^40 in cache keys: a file never grows that far. */
const OFFSET_SPAN = 2 ** 40;
export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;
/** Chosen by measurement: docs/benchmarks.md, "cache-policy". */
export const DEFAULT_CACHE_POLICY: CachePolicy = 's3fifo';
export const DEFAULT_INLINE_VALUE_BYTES = 1024;
export const DEFAULT_VALUE_FILE_BYTES = 1024 * 1024 * 1024;

const VALUE_RE = /^val-(\d{20})\.val$/;
export function valueFileName(n: number): string {
  return `val-${String(n).padStart(20, '0')}.val`;
}
export function parseValueFileName(name: string): number | undefined {
  const m = VALUE_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function encodeValueFileHeader(n: number): Uint8Array {
  const b = new Uint8Array(VALUE_FILE_HEADER_SIZE);
  const dv = dataView(b);
  b.set(MAGIC_BYTES, 0);
  dv.setUint32(8, VALUE_FORMAT_VERSION, true);
  writeU64(dv, 16, n);
  dv.setUint32(28, crc32c(b, 0, 0, 28), true);
  return b;
}

/** Checks a value file's header; a reason when it is bad. */
export function checkValueFileHeader(b: Uint8Array, n: number): string | undefined {
  if (b.length < VALUE_FILE_HEADER_SIZE) return 'header cut short';
  const dv = dataView(b);
  for (let i = 0; i < 8; i++) if (b[i] !== MAGIC_BYTES[i]) return 'bad magic';
  if (dv.getUint32(28, true) !== crc32c(b, 0, 0, 28)) return 'header checksum mismatch';
  if (dv.getUint32(8, true) !== VALUE_FORMAT_VERSION) return 'unknown format version';
  if (readU64(dv, 16) !== n) return 'file number differs from its name';
  return undefined;
}

function entryHeader(len: number, crc: number): Uint8Array {
  const h = new Uint8Array(VALUE_ENTRY_HEADER_SIZE);
  const dv = dataView(h);
  h[0] = 0x4c; // 'L'
  h[1] = 0x56; // 'V'
  h[2] = VALUE_FORMAT_VERSION;
  dv.setUint32(4, len, true);
  dv.setUint32(8, crc, true);
  dv.setUint32(12, crc32c(h, 0, 0, 12), true);
  return h;
}

/** Decodes an entry header at `off` of `b`: the value's length and CRC, or undefined when it is not one. */
export function readEntryHeader(b: Uint8Array, off: number): { length: number; crc: number } | undefined {
  if (off + VALUE_ENTRY_HEADER_SIZE > b.length) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset + off, VALUE_ENTRY_HEADER_SIZE);
  if (b[off] !== 0x4c || b[off + 1] !== 0x56 || b[off + 2] !== VALUE_FORMAT_VERSION) return undefined;
  if (dv.getUint32(12, true) !== crc32c(b, 0, off, off + 12)) return undefined;
  return { length: dv.getUint32(4, true), crc: dv.getUint32(8, true) };
}

export interface ValueStoreOptions {
  dir: string;
  fs: Fs;
  durable: boolean;
  /** Values longer than this many bytes go to value files (0: every non-empty value). */
  inlineBytes: number;
  cacheBytes: number;
  /** Start a new value file when the active one reaches this size. */
  fileBytes: number;
  /** The cache's eviction policy (storage/value-cache.ts; default `DEFAULT_CACHE_POLICY`). */
  cachePolicy?: CachePolicy;
  /** Write back-pressure: bytes of large values admitted and not yet durable before new writes wait (default `defaultWriteBytes(cacheBytes)`). */
  writeBytes?: number;
  /**
   * Copy values written into the cache once they are on disk (write-through;
   * default false: only reads fill the cache, note 4).
   */
  cacheWrites?: boolean;
}

/** The default bound on large values in flight: a quarter of the cache, at least 1 MiB. */
export function defaultWriteBytes(cacheBytes: number): number {
  return Math.max(1024 * 1024, Math.floor(cacheBytes / 4));
}

export interface ValueStats {
  inlineValueBytes: number;
  valueFiles: number;
  valueFileBytes: number;
  valuesWritten: number;
  valueBytesWritten: number;
  valueReads: number;
  valueBytesRead: number;
  cacheHits: number;
  cacheMisses: number;
  cacheEvictions: number;
  cacheBytes: number;
  cacheLimit: number;
  cacheEntries: number;
  /** Bytes of slabs the cache's arena has allocated (value-arena.ts): never above cacheLimit. */
  cacheArenaBytes: number;
  /** Write back-pressure: bytes of large values admitted and not yet durable, the bound, writes that waited. */
  writeBytesInFlight: number;
  writeBytesLimit: number;
  writesWaited: number;
}

interface PendingChunk {
  file: number;
  at: number;
  bufs: Uint8Array[];
  keys: number[];
}

/** A group of entries taken for writing (`takePending`), written by `writePending`. */
export type PendingValues = readonly PendingChunk[];

/**
 * A buffer for a read, not zero-filled (the read overwrites it whole, and
 * `checked` refuses a short read before anyone sees it): zero-filling a
 * 256 KiB value costs about as much as reading it from the page cache. A
 * plain Uint8Array over the Buffer's own ArrayBuffer, so `slice` copies as
 * callers expect (a Buffer's `slice` would share the cached bytes).
 */
export function uninitialized(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

function keyOf(file: number, offset: number): number {
  return file * OFFSET_SPAN + offset;
}

/** A store that only reads (check, repair): no cache, never written to. */
export function readOnlyValues(dir: string, fs: Fs): ValueStore {
  return new ValueStore({ dir, fs, durable: false, inlineBytes: 0, cacheBytes: 0, fileBytes: 2 ** 39 }, new Map());
}

export class ValueStore implements ValueReader {
  readonly inlineBytes: number;
  /** Value file sizes by number (what is on disk plus what is buffered). */
  readonly sizes = new Map<number, number>();
  private active = 0;
  private pending: PendingChunk[] = [];
  /** Entries buffered or being written: readable from here until they are on disk. */
  private readonly unflushed = new Map<number, Uint8Array>();
  private readonly cache: ArenaCache;
  private readonly writeLimit: number;
  private writeInFlight = 0;
  /** Writes waiting for `admit`, first come first served. */
  private readonly writeWaiters: { bytes: number; session: string; grant: () => void; reject: (e: unknown) => void }[] = [];
  private readonly fds = new Map<number, number>();
  private readonly handles = new Map<number, FileHandleLike>();
  /** Reads in flight per file. */
  readonly pins = new Map<number, number>();
  private readonly counters = { valuesWritten: 0, valueBytesWritten: 0, valueReads: 0, valueBytesRead: 0, cacheHits: 0, cacheMisses: 0, cacheEvictions: 0, writesWaited: 0 };
  closed = false;
  private sealRequested = false;

  constructor(private readonly o: ValueStoreOptions, existing: ReadonlyMap<number, number>) {
    this.inlineBytes = o.inlineBytes;
    this.cache = new ArenaCache(o.cachePolicy ?? DEFAULT_CACHE_POLICY, o.cacheBytes);
    this.writeLimit = o.writeBytes ?? defaultWriteBytes(o.cacheBytes);
    for (const [n, size] of existing) this.sizes.set(n, size);
    this.active = existing.size === 0 ? 0 : Math.max(...existing.keys());
  }

  /** True when a value of this length goes to a value file. */
  storesOnDisk(length: number): boolean {
    return length > this.inlineBytes;
  }

  /** A ref to a place in a value file (recovery, snapshots). */
  ref(file: number, offset: number, length: number, crc: number): ValueRef {
    return new ValueRef(this, file, offset, length, crc);
  }

  /** Buffers `bytes` for the next log sync and returns where they will be. No I/O. */
  store(bytes: Uint8Array): ValueRef {
    if (this.closed) throw new LatchkeyError('CLOSED', 'the value store is closed');
    let size = this.active === 0 ? undefined : this.sizes.get(this.active);
    if (size === undefined || size >= this.o.fileBytes || this.sealRequested) {
      this.sealRequested = false;
      this.active++;
      size = VALUE_FILE_HEADER_SIZE;
      this.sizes.set(this.active, size);
      this.pending.push({ file: this.active, at: 0, bufs: [encodeValueFileHeader(this.active)], keys: [] });
    }
    let chunk = this.pending[this.pending.length - 1];
    if (chunk === undefined || chunk.file !== this.active) {
      chunk = { file: this.active, at: size, bufs: [], keys: [] };
      this.pending.push(chunk);
    }
    const crc = crc32c(bytes);
    const offset = size + VALUE_ENTRY_HEADER_SIZE;
    chunk.bufs.push(entryHeader(bytes.length, crc), bytes);
    const key = keyOf(this.active, offset);
    chunk.keys.push(key);
    this.unflushed.set(key, bytes);
    this.sizes.set(this.active, offset + bytes.length);
    this.counters.valuesWritten++;
    this.counters.valueBytesWritten += bytes.length;
    return new ValueRef(this, this.active, offset, bytes.length, crc);
  }

  /** Takes what `store` buffered (synchronously, with the log's group). */
  takePending(): PendingValues {
    const p = this.pending;
    this.pending = [];
    return p;
  }

  /** Writes a taken group: each file's entries in one positioned writev (O_DSYNC when durable); new files' names made durable. */
  async writePending(group: PendingValues): Promise<void> {
    let created = false;
    for (const c of group) {
      const file = path.join(this.o.dir, valueFileName(c.file));
      let fh = this.handles.get(c.file);
      try {
        if (fh === undefined) {
          fh = c.at === 0 ? await this.o.fs.open(file, 'create', { dsync: this.o.durable }) : await this.o.fs.open(file, 'readwrite', { dsync: this.o.durable });
          created ||= c.at === 0;
          // Only the active file is written to: close the others.
          for (const [n, h] of this.handles) if (n !== c.file) { this.handles.delete(n); await h.close().catch(() => undefined); }
          this.handles.set(c.file, fh);
        }
        await writeAll(fh, c.bufs, c.at);
      } catch (e) {
        throw ioError('writing a value file', file, e, {}, 'READ_ONLY');
      }
    }
    if (created && this.o.durable) {
      try {
        await this.o.fs.syncDir(this.o.dir);
      } catch (e) {
        throw ioError('syncing the data directory', this.o.dir, e, {}, 'READ_ONLY');
      }
    }
    for (const c of group) {
      for (const k of c.keys) {
        const b = this.unflushed.get(k);
        this.unflushed.delete(k);
        if (b !== undefined && this.o.cacheWrites === true) this.remember(k, b);
      }
    }
  }

  /**
   * Admits a write by `session` carrying `bytes` of large values
   * (back-pressure, note 6): the release to call once it is durable or
   * failed (at once, or when the bytes in flight allow it). A write of no
   * large values still waits behind those waiting, so writes keep their
   * order. A waiting write fails with what `cancelWaiters` gives when its
   * session ends.
   */
  admit(bytes: number, session: string): (() => void) | Promise<() => void> {
    if (this.writeWaiters.length === 0 && this.admissible(bytes)) return this.grant(bytes);
    this.counters.writesWaited++;
    return new Promise((resolve, reject) => this.writeWaiters.push({ bytes, session, grant: () => resolve(this.grant(bytes)), reject }));
  }

  /** Fails the writes of `session` still waiting for `admit` with `error` (its session ended); the others keep their order. */
  cancelWaiters(session: string, error: unknown): void {
    if (!this.writeWaiters.some((w) => w.session === session)) return;
    const gone = this.writeWaiters.filter((w) => w.session === session);
    const kept = this.writeWaiters.filter((w) => w.session !== session);
    this.writeWaiters.splice(0, this.writeWaiters.length, ...kept);
    for (const w of gone) w.reject(error);
    // The first of them may have been what the others waited behind.
    this.wakeWriters();
  }

  /** True while at least one write waits for `admit`. */
  get writesWaiting(): boolean {
    return this.writeWaiters.length > 0;
  }

  private admissible(bytes: number): boolean {
    return this.closed || bytes === 0 || this.writeInFlight === 0 || this.writeInFlight + bytes <= this.writeLimit;
  }

  private grant(bytes: number): () => void {
    this.writeInFlight += bytes;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.writeInFlight -= bytes;
      this.wakeWriters();
    };
  }

  private wakeWriters(): void {
    while (this.writeWaiters.length > 0 && this.admissible(this.writeWaiters[0]!.bytes)) this.writeWaiters.shift()!.grant();
  }

  private remember(key: number, bytes: Uint8Array): void {
    // A read that ends after close() must not allocate a slab the closed store would keep.
    if (this.closed) return;
    this.counters.cacheEvictions += this.cache.put(key, bytes);
  }

  /** The cached or buffered bytes of `ref` as they are held (a view of a cache block: copy at once, note 4), counting a hit. */
  private held(ref: ValueRef): Uint8Array | undefined {
    const key = keyOf(ref.file, ref.offset);
    const b = this.cache.view(key) ?? this.unflushed.get(key);
    if (b !== undefined) this.counters.cacheHits++;
    return b;
  }

  /** A copy of the bytes of `ref` when they are in memory (the caller's own). */
  peek(ref: ValueRef): Uint8Array | undefined {
    const b = this.held(ref);
    if (b === undefined) return undefined;
    const out = uninitialized(b.length);
    out.set(b);
    return out;
  }

  private fdOf(file: number): number {
    let fd = this.fds.get(file);
    if (fd === undefined) {
      const name = path.join(this.o.dir, valueFileName(file));
      try {
        fd = openSync(name, 'r');
      } catch (e) {
        if (errnoOf(e) === 'ENOENT') throw corrupt(`value file ${name} is missing`, { file: name });
        throw ioError('opening a value file', name, e);
      }
      this.fds.set(file, fd);
    }
    return fd;
  }

  private checked(ref: ValueRef, buf: Uint8Array, got: number): void {
    const name = path.join(this.o.dir, valueFileName(ref.file));
    if (got !== ref.length) {
      throw corrupt(`value file ${name} at offset ${ref.offset}: ${got} of ${ref.length} bytes (cut short)`, { file: name, offset: ref.offset });
    }
    if (crc32c(buf) !== ref.crc) {
      throw corrupt(`value file ${name} at offset ${ref.offset}: checksum mismatch`, { file: name, offset: ref.offset });
    }
    this.counters.valueReads++;
    this.counters.valueBytesRead += buf.length;
  }

  readSync(ref: ValueRef): Uint8Array {
    const hit = this.peek(ref);
    if (hit !== undefined) return hit;
    this.counters.cacheMisses++;
    const fd = this.fdOf(ref.file);
    const buf = uninitialized(ref.length);
    let got = 0;
    try {
      while (got < ref.length) {
        const n = readSync(fd, buf, got, ref.length - got, ref.offset + got);
        if (n === 0) break;
        got += n;
      }
    } catch (e) {
      throw ioError('reading a value file', valueFileName(ref.file), e);
    }
    this.checked(ref, buf, got);
    // The cache copies the bytes: `buf` is the caller's.
    this.remember(keyOf(ref.file, ref.offset), buf);
    return buf;
  }

  /**
   * Reads `ref`'s bytes from its file into `buf` (exactly `ref.length`
   * bytes), asynchronously on libuv's pool, with the file pinned for the
   * whole read (compaction does not delete a pinned file), and checks them
   * against the ref's CRC32C: CORRUPT naming the file and offset otherwise.
   */
  private async readFile(ref: ValueRef, buf: Uint8Array): Promise<void> {
    this.pins.set(ref.file, (this.pins.get(ref.file) ?? 0) + 1);
    try {
      const fd = this.fdOf(ref.file);
      let got = 0;
      try {
        while (got < ref.length) {
          const n = await new Promise<number>((resolve, reject) => {
            readCb(fd, buf, got, ref.length - got, ref.offset + got, (err, bytes) => (err ? reject(err) : resolve(bytes)));
          });
          if (n === 0) break;
          got += n;
        }
      } catch (e) {
        throw ioError('reading a value file', valueFileName(ref.file), e);
      }
      this.checked(ref, buf, got);
    } finally {
      const left = (this.pins.get(ref.file) ?? 1) - 1;
      if (left === 0) this.pins.delete(ref.file);
      else this.pins.set(ref.file, left);
    }
  }

  /**
   * The bytes of `ref`, the caller's own: a copy out of the cache, or a new
   * buffer read from the file (whose bytes the cache then copies). `cache:
   * false` neither looks in the cache nor fills it (compaction copying a
   * file).
   */
  async read(ref: ValueRef, cache = true): Promise<Uint8Array> {
    if (cache) {
      const hit = this.peek(ref);
      if (hit !== undefined) return hit;
      this.counters.cacheMisses++;
    }
    const buf = uninitialized(ref.length);
    await this.readFile(ref, buf);
    if (cache) this.remember(keyOf(ref.file, ref.offset), buf);
    return buf;
  }

  /**
   * Reads `ref`'s bytes into the caller's `dest` at `at` (one copy: from
   * the cache when it holds them, else the file is read straight into
   * `dest`, checked, and not cached: the caller keeps its own copy, as
   * bigfile's page cache does). `dest` must have room for `ref.length`
   * bytes from `at`. The same pinning and checksum rules as `read`; on
   * CORRUPT, `dest`'s bytes in that range are unspecified.
   */
  async readInto(ref: ValueRef, dest: Uint8Array, at = 0): Promise<void> {
    if (!Number.isInteger(at) || at < 0 || at + ref.length > dest.length) {
      throw new LatchkeyError('INVALID_ARGUMENT', `readInto: ${ref.length} bytes do not fit at offset ${at} of a buffer of ${dest.length}`);
    }
    const hit = this.held(ref);
    if (hit !== undefined) {
      dest.set(hit, at);
      return;
    }
    this.counters.cacheMisses++;
    await this.readFile(ref, dest.subarray(at, at + ref.length));
  }

  /** Drops a file from the cache and closes its descriptors (compaction, after it deleted the file). */
  forget(file: number): void {
    this.cache.deleteWhere((k) => Math.floor(k / OFFSET_SPAN) === file);
    const fd = this.fds.get(file);
    if (fd !== undefined) {
      this.fds.delete(file);
      try { closeSync(fd); } catch { /* already gone */ }
    }
    this.sizes.delete(file);
  }

  /**
   * Deletes a value file nothing references any more (compaction decided
   * that): unlink, make the removal durable, drop its cache entries and
   * descriptor. Refuses while a read holds the file.
   */
  async deleteFile(file: number): Promise<boolean> {
    if (this.pins.has(file) || file === this.active) return false;
    const name = path.join(this.o.dir, valueFileName(file));
    const h = this.handles.get(file);
    if (h !== undefined) {
      this.handles.delete(file);
      await h.close().catch(() => undefined);
    }
    try {
      await this.o.fs.unlink(name);
      if (this.o.durable) await this.o.fs.syncDir(this.o.dir);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw ioError('deleting a value file', name, e);
    }
    this.forget(file);
    return true;
  }

  /** The active (appended-to) file's number; 0 when none exists yet. */
  get activeFile(): number {
    return this.active;
  }

  /** Makes the next `store` start a new file (compaction seals the active one before it counts). */
  sealActive(): void {
    this.sealRequested = true;
  }

  stats(): ValueStats {
    let bytes = 0;
    for (const s of this.sizes.values()) bytes += s;
    return {
      inlineValueBytes: this.inlineBytes,
      valueFiles: this.sizes.size,
      valueFileBytes: bytes,
      ...this.counters,
      cacheBytes: this.cache.bytes,
      cacheLimit: this.o.cacheBytes,
      cacheEntries: this.cache.entries,
      cacheArenaBytes: this.cache.arenaBytes,
      writeBytesInFlight: this.writeInFlight,
      writeBytesLimit: this.writeLimit,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const h of this.handles.values()) await h.close().catch(() => undefined);
    this.handles.clear();
    for (const fd of this.fds.values()) {
      try { closeSync(fd); } catch { /* ignore */ }
    }
    this.fds.clear();
    this.cache.clear();
    // Writes still waiting go on (and fail CLOSED in the engine): none is left hanging.
    this.wakeWriters();
  }
}
