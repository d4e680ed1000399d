/**
 * The file-system seam: every call the storage layer makes to the disk goes
 * through an `Fs`, so tests can inject the faults a real disk produces
 * (ENOSPC, EIO) at the exact call where they matter — a write, an fsync, a
 * rename — while everything else stays the real file system (real files,
 * real fsync). In the spirit of TDB's `struct tdb_methods`.
 *
 * Errors from here are raw errno errors (`{ code: 'ENOSPC' }`); the callers
 * convert them once into LatchkeyErrors at the storage edge.
 */
import { promises as fsp, constants as fsc, writevSync } from 'node:fs';
import path from 'node:path';

export interface FileStat {
  readonly size: number;
  readonly dev: bigint;
  readonly ino: bigint;
  isDirectory(): boolean;
}

export interface FileHandleLike {
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  writev(bufs: Uint8Array[], position: number): Promise<{ bytesWritten: number }>;
  /**
   * pwritev(2) on the calling thread (no thread-pool trip). Only for writes
   * that return at once (to the page cache, not O_DSYNC): the log with
   * durability 'none' (wal.ts, note 3).
   */
  writevSync(bufs: Uint8Array[], position: number): number;
  /** fdatasync(2): data and the metadata needed to read it back (the size). */
  datasync(): Promise<void>;
  /** fsync(2). */
  sync(): Promise<void>;
  truncate(len: number): Promise<void>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

export type OpenMode =
  | 'read'       // O_RDONLY
  | 'readwrite'  // O_RDWR, file must exist
  | 'create';    // O_RDWR | O_CREAT | O_EXCL: a new file, never clobbers

export interface OpenOptions {
  /**
   * O_DSYNC: every write returns only once its data (and the size) is
   * durable, as if fdatasync followed it — one system call and one trip
   * through the thread pool instead of two. The log uses it for its
   * segments; a failure of the implied flush surfaces as the write's error.
   */
  dsync?: boolean;
}

export interface Fs {
  open(file: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandleLike>;
  readFile(file: string): Promise<Uint8Array>;
  readdir(dir: string): Promise<string[]>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  mkdir(dir: string): Promise<void>;
  stat(file: string): Promise<FileStat>;
  /** Makes a directory's entries (creates, renames, unlinks) durable: fsync on the directory. */
  syncDir(dir: string): Promise<void>;
}

const FLAGS: Record<OpenMode, number> = {
  read: fsc.O_RDONLY,
  readwrite: fsc.O_RDWR,
  create: fsc.O_RDWR | fsc.O_CREAT | fsc.O_EXCL,
};

/** The real file system (node:fs/promises: the I/O runs on libuv's thread pool, off the event loop). */
export const realFs: Fs = {
  async open(file, mode, options) {
    const fh = await fsp.open(file, FLAGS[mode] | (options?.dsync ? fsc.O_DSYNC : 0), 0o644);
    return Object.assign(fh, { writevSync: (bufs: Uint8Array[], position: number): number => writevSync(fh.fd, bufs, position) });
  },
  async readFile(file) {
    return fsp.readFile(file);
  },
  async readdir(dir) {
    return fsp.readdir(dir);
  },
  async rename(from, to) {
    await fsp.rename(from, to);
  },
  async unlink(file) {
    await fsp.unlink(file);
  },
  async mkdir(dir) {
    await fsp.mkdir(dir, { recursive: true });
  },
  async stat(file) {
    return fsp.stat(file, { bigint: true }).then((s) => ({
      size: Number(s.size), dev: s.dev, ino: s.ino, isDirectory: () => s.isDirectory(),
    }));
  },
  async syncDir(dir) {
    const fh = await fsp.open(dir, fsc.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};

/** Writes all of `bufs` at `position`, continuing after short writes (which precede ENOSPC). */
export async function writeAll(fh: FileHandleLike, bufs: Uint8Array[], position: number): Promise<number> {
  let total = 0;
  for (const b of bufs) total += b.length;
  let done = 0;
  let rest = bufs;
  while (done < total) {
    const { bytesWritten } = await fh.writev(rest, position + done);
    if (bytesWritten === 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    done += bytesWritten;
    if (done < total) rest = dropWritten(rest, bytesWritten);
  }
  return total;
}

/** writeAll on the calling thread (FileHandleLike.writevSync): continues after short writes. */
export function writeAllSync(fh: FileHandleLike, bufs: Uint8Array[], position: number): number {
  let total = 0;
  for (const b of bufs) total += b.length;
  let done = 0;
  let rest = bufs;
  while (done < total) {
    const bytesWritten = fh.writevSync(rest, position + done);
    if (bytesWritten === 0) throw Object.assign(new Error('write returned 0 bytes'), { code: 'EIO' });
    done += bytesWritten;
    if (done < total) rest = dropWritten(rest, bytesWritten);
  }
  return total;
}

/** What is left of `bufs` after the first `written` bytes. */
function dropWritten(bufs: Uint8Array[], written: number): Uint8Array[] {
  let skip = written;
  const next: Uint8Array[] = [];
  for (const b of bufs) {
    if (skip >= b.length) { skip -= b.length; continue; }
    next.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return next;
}

/** Reads exactly `length` bytes at `position` (fewer only at end of file). */
export async function readAt(fh: FileHandleLike, length: number, position: number): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}

// ---------------------------------------------------------------------------
// Fault injection for tests.

export type FaultOp = 'write' | 'sync' | 'rename' | 'open' | 'truncate';
export type FaultCode = 'ENOSPC' | 'EIO' | 'EROFS' | 'EACCES';

export interface Fault {
  op: FaultOp;
  code: FaultCode;
  /** Only calls whose file's base name matches. */
  file?: RegExp;
  /** Let this many matching calls succeed first (default 0). */
  after?: number;
  /** Fail this many matching calls, then disarm (default: forever). */
  times?: number;
  /**
   * For `write`: write this many bytes of the request for real before
   * failing, as a disk that fills up mid-write does.
   */
  partialBytes?: number;
}

interface Armed extends Fault {
  seen: number;
  failed: number;
}

function errnoError(code: FaultCode, syscall: string, file: string): NodeJS.ErrnoException {
  const messages: Record<FaultCode, string> = {
    ENOSPC: 'no space left on device', EIO: 'i/o error', EROFS: 'read-only file system', EACCES: 'permission denied',
  };
  return Object.assign(new Error(`${code}: ${messages[code]} (injected), ${syscall} '${file}'`), { code, syscall, path: file, errno: -1 });
}

/**
 * An Fs that delegates to another (the real one by default) and fails the
 * calls that match armed faults. `calls` counts every call by op, so a test
 * can check e.g. that a failed fsync was never retried.
 */
export class FaultyFs implements Fs {
  private faults: Armed[] = [];
  readonly calls: Record<FaultOp, number> = { write: 0, sync: 0, rename: 0, open: 0, truncate: 0 };

  constructor(private readonly inner: Fs = realFs) {}

  inject(f: Fault): void {
    this.faults.push({ ...f, seen: 0, failed: 0 });
  }

  clear(): void {
    this.faults = [];
  }

  /** The fault to raise for this call, if any (and records the call). */
  private check(op: FaultOp, file: string): Armed | undefined {
    this.calls[op]++;
    const base = path.basename(file);
    for (const f of this.faults) {
      if (f.op !== op || (f.file !== undefined && !f.file.test(base))) continue;
      if (f.times !== undefined && f.failed >= f.times) continue;
      f.seen++;
      if (f.seen <= (f.after ?? 0)) continue;
      f.failed++;
      return f;
    }
    return undefined;
  }

  async open(file: string, mode: OpenMode, options?: OpenOptions): Promise<FileHandleLike> {
    const f = this.check('open', file);
    if (f) throw errnoError(f.code, 'open', file);
    const fh = await this.inner.open(file, mode, options);
    return this.wrap(fh, file, options?.dsync === true);
  }

  /**
   * On an O_DSYNC handle every write is also a flush: a `sync` fault fires
   * there, after the data reached the page cache (as a failed flush does).
   */
  private wrap(fh: FileHandleLike, file: string, dsync: boolean): FileHandleLike {
    const self = this;
    const flushed = <T>(r: T): T => {
      if (!dsync) return r;
      const f = self.check('sync', file);
      if (f) throw errnoError(f.code, 'write (O_DSYNC flush)', file);
      return r;
    };
    return {
      read: (b, o, l, p) => fh.read(b, o, l, p),
      async write(b, o, l, p) {
        const f = self.check('write', file);
        if (f) {
          if (f.partialBytes) await fh.write(b, o, Math.min(l, f.partialBytes), p);
          throw errnoError(f.code, 'write', file);
        }
        return flushed(await fh.write(b, o, l, p));
      },
      async writev(bufs, p) {
        const f = self.check('write', file);
        if (f) {
          if (f.partialBytes) await fh.writev(firstBytes(bufs, f.partialBytes), p);
          throw errnoError(f.code, 'write', file);
        }
        return flushed(await fh.writev(bufs, p));
      },
      writevSync(bufs, p) {
        const f = self.check('write', file);
        if (f) {
          if (f.partialBytes) fh.writevSync(firstBytes(bufs, f.partialBytes), p);
          throw errnoError(f.code, 'write', file);
        }
        return flushed(fh.writevSync(bufs, p));
      },
      async datasync() {
        const f = self.check('sync', file);
        if (f) throw errnoError(f.code, 'fdatasync', file);
        return fh.datasync();
      },
      async sync() {
        const f = self.check('sync', file);
        if (f) throw errnoError(f.code, 'fsync', file);
        return fh.sync();
      },
      async truncate(len) {
        const f = self.check('truncate', file);
        if (f) throw errnoError(f.code, 'ftruncate', file);
        return fh.truncate(len);
      },
      stat: () => fh.stat(),
      close: () => fh.close(),
    };
  }

  readFile(file: string): Promise<Uint8Array> {
    return this.inner.readFile(file);
  }
  readdir(dir: string): Promise<string[]> {
    return this.inner.readdir(dir);
  }
  async rename(from: string, to: string): Promise<void> {
    const f = this.check('rename', to);
    if (f) throw errnoError(f.code, 'rename', to);
    return this.inner.rename(from, to);
  }
  unlink(file: string): Promise<void> {
    return this.inner.unlink(file);
  }
  mkdir(dir: string): Promise<void> {
    return this.inner.mkdir(dir);
  }
  stat(file: string): Promise<FileStat> {
    return this.inner.stat(file);
  }
  async syncDir(dir: string): Promise<void> {
    const f = this.check('sync', dir);
    if (f) throw errnoError(f.code, 'fsync', dir);
    return this.inner.syncDir(dir);
  }
}

/** The first `n` bytes of `bufs`, as views (a partial write's part). */
function firstBytes(bufs: readonly Uint8Array[], n: number): Uint8Array[] {
  const part: Uint8Array[] = [];
  let left = n;
  for (const b of bufs) {
    if (left <= 0) break;
    part.push(b.subarray(0, Math.min(left, b.length)));
    left -= b.length;
  }
  return part;
}
