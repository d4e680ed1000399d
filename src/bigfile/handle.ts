/**
 * A BigFile handle: a page cache over one snapshot of a big file, built on
 * the public Store API only (a transaction for the snapshot, a watch on the
 * file's change feed for invalidation). docs/bigfile.md has the design; the
 * rules it keeps are seed 000's (wendelin.core's storeblk deadlock):
 *
 * 1. Storage is never called with the handle's lock held. The lock is the
 *    handle's state (pages, sizes, pending invalidations); it is taken only
 *    by `locked()` around synchronous code, so it can never be held across
 *    an await, and every storage call goes through `storage()`, which
 *    throws BugError if the lock is held. The change feed's callback takes
 *    the lock briefly to queue an invalidation, and never waits for anything
 *    the handle holds: the seed's cycle (commit holds V, waits for Z; the
 *    invalidation holds Z, waits for V) cannot form.
 * 2. One writeout per handle at a time (`writingOut`; a second commit is BUSY).
 * 3. No discard (abort, refresh, truncate) and no page modification (write)
 *    during writeout: they fail BUSY. Invalidations that arrive during
 *    writeout are queued and applied at the next transaction boundary, as
 *    ZODB applies them.
 * 4. Storage gets a copy of each dirty page, never the page's buffer.
 */
import type { BigFileHandle, BigFileHandleOptions, BigFileHandleStats, BigFileInfo, Store, Transaction } from '../api.js';
import { BugError, LatchkeyError, invalidArgument } from '../core/errors.js';
import { blockPath, checkOffset, decodeMeta, logPath } from './meta.js';
import { PageCache } from './cache.js';
import { ChangeFeed } from './feed.js';
import { type WriteoutHost, nameConflict, writeout } from './writeout.js';
import { IO_CONCURRENCY, type Page, addRange, allZero, layBase, loadedPage, pool } from './pages.js';

export { IO_CONCURRENCY };

export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
/** Dirty bytes are bounded below the store's default commit cap (64 MiB): a commit always fits. */
export const DEFAULT_MAX_DIRTY_BYTES = 32 * 1024 * 1024;
/** A commit makes two operations per dirty block; a server allows 10,000 per transaction (maxTxOps). */
export const MAX_DIRTY_BLOCKS = 4096;
/** Blocks loaded ahead of a sequential reader (at most a quarter of the cache). */
export const READ_AHEAD = 8;
/** A server allows 10,000 operations per transaction (maxTxOps): the snapshot's transaction is renewed well before. */
export const RENEW_AFTER_OPS = 4000;

/** Builds the metadata a commit writes for a size (a BigArray derives its shape from it). */
export type MetaFor = (size: number) => BigFileInfo;

/** A buffer that is not zero-filled (a read overwrites what it answers), over an ArrayBuffer of its own. */
function uninitialized(n: number): Uint8Array {
  const b = Buffer.allocUnsafeSlow(n);
  return new Uint8Array(b.buffer, b.byteOffset, n);
}

export class BigFileHandleImpl implements BigFileHandle {
  readonly path: string;
  readonly blockSize: number;
  private readonly cacheBytes: number;
  private readonly maxDirtyBytes: number;
  private readonly metaFor: MetaFor;
  private readonly renewAfter: number;

  /** The handle's lock: held only inside `locked()`, which is synchronous. */
  private lockHeld = false;
  private tx!: Transaction;
  private txGen = 0;
  private snapshot = 0;
  private snapSize = 0;
  private snapModRev = 0;
  private localSize = 0;
  /** Bytes at and past this offset read as zeros from the snapshot (truncation since it). */
  private truncatedTo = 0;
  private readonly cache: PageCache;
  private lastReadEnd = -1;
  /** Loads in flight, each with the users its page is handed to (under the lock, in the step that caches it). */
  private readonly loading = new Map<number, { done: Promise<void>; users: Array<(p: Page) => void> }>();
  /** Loads in flight per transaction, and transactions renewed away that their last load aborts. */
  private readonly txUsers = new Map<Transaction, number>();
  private readonly retired = new Set<Transaction>();
  /** Reads made by the snapshot's transaction (renewed past RENEW_AFTER_OPS). */
  private txOps = 0;
  private renewing: Promise<void> | undefined;

  /** Reads and loads in progress; a boundary waits for them, and they wait for a boundary. */
  private active = 0;
  private drained: (() => void) | undefined;
  private boundary: Promise<void> | undefined;
  private writingOut = false;
  private closed = false;
  /** Set when the file node vanished or the handle's transaction died: the next boundary must succeed first. */
  private broken: LatchkeyError | undefined;

  /** The change feed (PATH/log), queued there and applied at boundaries. */
  private readonly feed: ChangeFeed;
  /** Revisions of this handle's own commits: their changes are already in its pages. */
  private readonly ownRevs = new Set<number>();

  private readonly counters = { loads: 0, stores: 0, invalidations: 0, fullDrops: 0 };

  private constructor(private readonly store: Store, path: string, blockSize: number, options: BigFileHandleOptions, metaFor: MetaFor) {
    this.path = path;
    this.blockSize = blockSize;
    const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 2 * blockSize) {
      throw invalidArgument(`cacheBytes must be an integer of at least two blocks (${2 * blockSize})`);
    }
    const maxDirty = options.maxDirtyBytes ?? Math.min(DEFAULT_MAX_DIRTY_BYTES, Math.floor(cacheBytes / 2), MAX_DIRTY_BLOCKS * blockSize);
    if (!Number.isSafeInteger(maxDirty) || maxDirty < blockSize || maxDirty > cacheBytes / 2) {
      throw invalidArgument(`maxDirtyBytes must be an integer from one block (${blockSize}) to cacheBytes / 2`);
    }
    this.cacheBytes = cacheBytes;
    this.cache = new PageCache(blockSize, cacheBytes);
    this.feed = new ChangeFeed(store, logPath(path), (fn) => this.locked(fn), (fn) => this.storage(fn));
    this.maxDirtyBytes = maxDirty;
    // @internal: tests lower it to meet a server's small maxTxOps.
    this.renewAfter = (options as { renewAfterOps?: number }).renewAfterOps ?? RENEW_AFTER_OPS;
    this.metaFor = metaFor;
  }

  static async open(store: Store, path: string, blockSize: number, options: BigFileHandleOptions, metaFor: MetaFor): Promise<BigFileHandleImpl> {
    const h = new BigFileHandleImpl(store, path, blockSize, options, metaFor);
    await h.beginSnapshot(true);
    return h;
  }

  // ---- the lock and the storage gate (seed 000, rule 1) ----

  /** Runs `fn` with the handle's lock held. `fn` is synchronous, so the lock is never held across an await. */
  private locked<T>(fn: () => T): T {
    if (this.lockHeld) throw new BugError('bigfile: the handle lock is not reentrant');
    this.lockHeld = true;
    try {
      const r = fn();
      if (r instanceof Promise) throw new BugError('bigfile: an async function ran under the handle lock');
      return r;
    } finally {
      this.lockHeld = false;
    }
  }

  /** Every call into the store goes through here: never with the handle's lock held. */
  private storage<T>(fn: () => T): T {
    if (this.lockHeld) throw new BugError('bigfile: storage called with the handle lock held (seed 000)');
    return fn();
  }

  /** @internal For tests: whether the handle's lock is held right now. */
  get lockIsHeld(): boolean {
    return this.lockHeld;
  }

  /** @internal For tests: a storage call made under the lock, which must throw BugError. */
  probeStorageUnderLock(): void {
    this.locked(() => this.storage(() => undefined));
  }

  // ---- public surface ----

  get size(): number {
    return this.localSize;
  }

  get snapshotRevision(): number {
    return this.snapshot;
  }

  stats(): BigFileHandleStats {
    return { cachedBytes: this.cache.cached, dirtyBytes: this.cache.dirty, pages: this.cache.size, ...this.counters };
  }

  private checkUsable(): void {
    if (this.closed) throw new LatchkeyError('CLOSED', `bigfile handle on ${this.path} is closed`, { path: this.path });
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.checkUsable();
    checkOffset('offset', offset);
    checkOffset('length', length);
    const n = Math.max(0, Math.min(length, this.localSize - offset));
    // Not zero-filled: readInto writes every byte up to what it answers, and a read cut short by a concurrent truncation is trimmed.
    const out = uninitialized(n);
    const got = await this.readInto(offset, out);
    return got === n ? out : out.subarray(0, got);
  }

  async readInto(offset: number, target: Uint8Array): Promise<number> {
    this.checkUsable();
    checkOffset('offset', offset);
    if (!(target instanceof Uint8Array)) throw invalidArgument('readInto: target must be a Uint8Array');
    await this.enterActive();
    try {
      if (this.broken !== undefined) throw this.broken;
      const end = Math.min(offset + target.length, this.localSize);
      if (offset >= end) return 0;
      const bs = this.blockSize;
      const first = Math.floor(offset / bs);
      const last = Math.floor((end - 1) / bs);
      const indices: number[] = [];
      for (let i = first; i <= last; i++) indices.push(i);
      // A sequential reader of a file larger than the cache streams: blocks not cached are read
      // straight into the target (embedded: one positional read each), not cached — they would be
      // evicted before reuse. Otherwise a read that continues the previous one loads the next
      // blocks ahead, in the background.
      const sequential = offset === this.lastReadEnd;
      // Over a socket each direct read would be a round trip of its own: there the pages' read-ahead (8 loads in flight) streams instead.
      const streaming = sequential && this.localSize > this.cacheBytes && this.tx.readInto !== undefined && this.tx.remote !== true;
      if (sequential && !streaming) this.readAhead(last + 1);
      this.lastReadEnd = end;
      // Each block is copied out in the step that finds (or loads) its page; pages may be
      // evicted afterwards by the loads that follow, so a read bigger than the cache stays within it.
      await pool(indices, IO_CONCURRENCY, (i) => {
        const s = Math.max(offset, i * bs);
        const e = Math.min(end, (i + 1) * bs);
        if (streaming && e - s === bs && !this.cache.has(i) && !this.loading.has(i)) return this.direct(i, target.subarray(s - offset, e - offset));
        return this.withPage(i, (p) => target.set(p.data.subarray(s - i * bs, e - i * bs), s - offset));
      });
      return end - offset;
    } finally {
      this.exitActive();
    }
  }

  /** Starts loading up to READ_AHEAD blocks from `from` (not awaited; a boundary waits for them like for any read). */
  private readAhead(from: number): void {
    const n = Math.min(READ_AHEAD, Math.floor(this.cacheBytes / (4 * this.blockSize)));
    const end = Math.min(from + n, Math.ceil(this.truncatedTo / this.blockSize));
    for (let i = from; i < end; i++) {
      if (this.cache.get(i)?.based === true || this.loading.has(i)) continue;
      this.active++;
      void this.withPage(i).catch(() => {}).finally(() => this.exitActive());
    }
  }

  write(offset: number, data: Uint8Array): void {
    this.checkUsable();
    checkOffset('offset', offset);
    if (!(data instanceof Uint8Array)) throw invalidArgument('write: data must be a Uint8Array');
    if (this.writingOut) throw new LatchkeyError('BUSY', `bigfile ${this.path}: no page modification during writeout (commit in progress)`, { path: this.path });
    if (this.broken !== undefined) throw this.broken;
    if (data.length === 0) return;
    const end = offset + data.length;
    if (!Number.isSafeInteger(end)) throw invalidArgument('write: offset + length past 2^53');
    const bs = this.blockSize;
    this.locked(() => {
      const first = Math.floor(offset / bs);
      const last = Math.floor((end - 1) / bs);
      let fresh = 0;
      for (let i = first; i <= last; i++) if (this.cache.get(i)?.dirty !== true) fresh++;
      if (this.cache.dirty + fresh * bs > this.maxDirtyBytes) {
        throw new LatchkeyError('TOO_LARGE', `bigfile ${this.path}: ${this.cache.dirty + fresh * bs} dirty bytes would pass maxDirtyBytes (${this.maxDirtyBytes}); commit() first (nothing was written)`, { path: this.path, info: { limit: this.maxDirtyBytes } });
      }
      for (let i = first; i <= last; i++) {
        const p = this.pageForWrite(i);
        const s = Math.max(offset, i * bs) - i * bs;
        const e = Math.min(end, (i + 1) * bs) - i * bs;
        p.data.set(data.subarray(i * bs + s - offset, i * bs + e - offset), s);
        if (!p.based) addRange(p.written, s, e);
      }
      if (end > this.localSize) this.localSize = end;
      this.evict();
    });
  }

  async truncate(size: number): Promise<void> {
    this.checkUsable();
    checkOffset('size', size);
    if (this.writingOut) throw new LatchkeyError('BUSY', `bigfile ${this.path}: no truncation during writeout (commit in progress)`, { path: this.path });
    if (this.broken !== undefined) throw this.broken;
    const bs = this.blockSize;
    this.locked(() => {
      if (size < this.localSize) {
        for (const [i, p] of this.cache.entries()) {
          if (i * bs >= size) {
            this.drop(i, p);
          } else if ((i + 1) * bs > size) {
            p.data.fill(0, size - i * bs);
            if (!p.based) addRange(p.written, size - i * bs, bs);
          }
        }
        // The block the new end falls in is rewritten shorter (or deleted) at commit.
        if (size % bs !== 0 && size < this.truncatedTo) this.pageForWrite(Math.floor(size / bs));
        this.truncatedTo = Math.min(this.truncatedTo, size);
      }
      this.localSize = size;
    });
  }

  async commit(): Promise<{ revision: number }> {
    this.checkUsable();
    if (this.writingOut) throw new LatchkeyError('BUSY', `bigfile ${this.path}: one writeout per handle at a time (a commit is in progress)`, { path: this.path });
    this.writingOut = true;
    let outcome: { revision: number } | undefined;
    let failure: unknown;
    let stored = false;
    await this.enterBoundary();
    try {
      if (this.broken !== undefined) throw this.broken;
      const r = await writeout(this.writeoutHost());
      if (r !== undefined) {
        stored = true;
        this.locked(() => {
          this.ownRevs.add(r.revision);
          this.cache.cleanAll((i, p) => {
            // Its block is now what this commit stored (or deleted, when all zeros or past the end).
            const len = Math.max(0, Math.min(this.blockSize, r.size - i * this.blockSize));
            p.modRev = len === 0 || allZero(p.data, len) ? undefined : r.revision;
            p.known = true;
          });
          this.counters.stores += r.changed;
        });
        outcome = { revision: r.revision };
      }
    } catch (e) {
      failure = e;
    }
    try {
      if (!stored) {
        if (failure !== undefined && LatchkeyError.is(failure, 'CONFLICT')) failure = await nameConflict(this.writeoutHost(), failure);
        this.locked(() => this.discardDirty());
      }
      this.writingOut = false;
      await this.beginSnapshot(false);
    } catch (e) {
      failure ??= e;
    } finally {
      this.writingOut = false;
      this.exitBoundary();
    }
    if (failure !== undefined) throw failure;
    return outcome ?? { revision: this.snapshot };
  }

  async abort(): Promise<void> {
    this.checkUsable();
    if (this.writingOut) throw new LatchkeyError('BUSY', `bigfile ${this.path}: no discard during writeout (a commit is in progress)`, { path: this.path });
    await this.enterBoundary();
    try {
      this.locked(() => this.discardDirty());
      await this.beginSnapshot(false);
    } finally {
      this.exitBoundary();
    }
  }

  async refresh(): Promise<void> {
    this.checkUsable();
    if (this.writingOut) throw new LatchkeyError('BUSY', `bigfile ${this.path}: refresh during writeout (a commit is in progress)`, { path: this.path });
    if (this.broken === undefined && (this.cache.dirty > 0 || this.localSize !== this.snapSize || this.truncatedTo !== this.snapSize)) {
      throw invalidArgument(`bigfile ${this.path}: uncommitted writes; commit() or abort() before refresh()`);
    }
    await this.enterBoundary();
    try {
      if (this.broken !== undefined) this.locked(() => this.discardDirty());
      await this.beginSnapshot(false);
    } finally {
      this.exitBoundary();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    while (this.boundary !== undefined) await this.boundary;
    if (this.closed) return;
    this.closed = true;
    this.feed.close();
    this.locked(() => this.cache.clear());
    if (this.tx.state === 'open') await this.storage(() => this.tx.abort()).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---- pages (all under the lock) ----

  /** Removes a page from the cache, keeping the byte counts. */
  private drop(i: number, p: Page): void {
    this.cache.drop(i, p);
  }

  /** The page block `i` is written through: created (zeros known where the snapshot has none), marked dirty, most recently used. */
  private pageForWrite(i: number): Page {
    let p = this.cache.get(i);
    if (p === undefined) {
      p = this.cache.newPage();
      if (i * this.blockSize >= this.truncatedTo) p.based = true;
      // Past the snapshot's end no block is stored (commits delete what a truncation cuts off).
      if (i * this.blockSize >= this.snapSize) p.known = true;
      this.cache.insert(i, p);
    } else {
      this.cache.touch(i, p);
    }
    this.cache.markDirty(p);
    return p;
  }

  private evict(): void {
    this.cache.evict();
  }

  private discardDirty(): void {
    for (const [i, p] of this.cache.entries()) if (p.dirty || !p.based) this.drop(i, p);
    this.localSize = this.snapSize;
    this.truncatedTo = this.snapSize;
  }

  // ---- loading (loadblk) ----

  /**
   * Hands block `i`'s page, its base laid, to `use` under the lock — at once
   * when cached, else in the step its load caches it — loading it from the
   * snapshot when needed. `use` is the only place the page's buffer is read:
   * never after an await (a page dropped since may have had its buffer reused).
   */
  private withPage(i: number, use?: (p: Page) => void): Promise<void> {
    const ready = this.locked(() => {
      const p = this.cache.get(i);
      if (p?.based === true) {
        this.cache.touch(i, p);
        use?.(p);
        return true;
      }
      if (i * this.blockSize < this.truncatedTo) return false;
      // Past the snapshot's end or the truncation: zeros, nothing to load.
      const q = p ?? this.cache.newPage();
      if (p === undefined) this.cache.insert(i, q);
      else this.cache.touch(i, q);
      layBase(q, undefined, 0);
      use?.(q);
      this.evict();
      return true;
    });
    if (ready) return Promise.resolve();
    let l = this.loading.get(i);
    if (l === undefined) {
      const users: Array<(p: Page) => void> = [];
      l = { done: this.load(i, users), users };
      this.loading.set(i, l);
    }
    if (use !== undefined) l.users.push(use);
    return l.done;
  }

  /** Reads a whole block straight into `dst` (a streaming read, embedded), bypassing the cache: zeros past the stored bytes. */
  private async direct(i: number, dst: Uint8Array): Promise<void> {
    if (++this.txOps > this.renewAfter) await this.renew();
    const tx = this.tx;
    this.txUsers.set(tx, (this.txUsers.get(tx) ?? 0) + 1);
    try {
      const r = await this.storage(() => tx.readInto!(blockPath(this.path, i), dst));
      const n = Math.max(0, Math.min(r?.length ?? 0, this.truncatedTo - i * this.blockSize));
      if (n < dst.length) dst.fill(0, n);
      this.counters.loads++;
    } finally {
      this.releaseTx(tx);
    }
  }

  private releaseTx(tx: Transaction): void {
    const n = this.txUsers.get(tx)! - 1;
    if (n > 0) this.txUsers.set(tx, n);
    else {
      this.txUsers.delete(tx);
      // A renewed-away transaction is aborted by its last load.
      if (tx !== this.tx && this.retired.delete(tx)) void this.storage(() => tx.abort()).catch(() => {});
    }
  }

  private async load(i: number, users: Array<(p: Page) => void>): Promise<void> {
    const bs = this.blockSize;
    let buf: Uint8Array | undefined;
    try {
      if (++this.txOps > this.renewAfter) await this.renew();
      const gen = this.txGen;
      const tx = this.tx;
      this.txUsers.set(tx, (this.txUsers.get(tx) ?? 0) + 1);
      let base: Uint8Array | undefined;
      let modRev: number | undefined;
      try {
        if (tx.readInto !== undefined) {
          // Embedded: the block straight into a page buffer (one positional read, checked; no copy of the store's).
          buf = this.locked(() => this.cache.buffer(false));
          const r = await this.storage(() => tx.readInto!(blockPath(this.path, i), buf!));
          if (r !== undefined) {
            base = buf.subarray(0, r.length);
            modRev = r.stat.modRev;
          }
        } else {
          const e = await this.storage(() => tx.get(blockPath(this.path, i)));
          base = e?.value;
          modRev = e?.stat.modRev;
        }
      } finally {
        this.releaseTx(tx);
      }
      this.locked(() => {
        this.loading.delete(i);
        if (gen !== this.txGen) throw new BugError('bigfile: a load finished after its snapshot was replaced');
        const keep = this.truncatedTo - i * bs;
        let p = this.cache.get(i);
        if (p === undefined) {
          if (buf !== undefined) {
            // The buffer read into becomes the page: zeros past the stored bytes (a short last block, or truncated away).
            const n = Math.max(0, Math.min(base?.length ?? 0, keep));
            if (n < bs) buf.fill(0, n);
            p = { data: buf, based: true, written: [], dirty: false, known: false, modRev: undefined };
            buf = undefined;
          } else {
            // The entry's bytes are the page when they are a whole block of their own (a remote get's are), else a zero-padded copy.
            p = loadedPage(bs, base, keep);
          }
          this.cache.insert(i, p);
        } else {
          // Written before it was loaded: the stored bytes go under the writes (or become the page, when it has none).
          layBase(p, base, keep);
          if (buf !== undefined && p.data.buffer === buf.buffer) buf = undefined;
          this.cache.touch(i, p);
        }
        p.known = true;
        p.modRev = modRev;
        this.counters.loads++;
        for (const use of users) use(p);
        this.evict();
      });
    } catch (e) {
      this.locked(() => {
        if (this.loading.get(i)?.users === users) this.loading.delete(i);
      });
      throw e;
    } finally {
      if (buf !== undefined) {
        const b = buf;
        this.locked(() => this.cache.giveBack(b));
      }
    }
  }

  /**
   * Swaps the snapshot's transaction for a fresh one when it has made many
   * reads (a server caps a transaction's operations, and the record grows),
   * which is only possible while the file is unchanged since the snapshot:
   * then the new one reads the same bytes. Otherwise the handle must
   * refresh(): COMPACTED (the old snapshot is no longer readable).
   */
  private renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        const tx = this.storage(() => this.store.begin());
        const meta = await this.storage(() => tx.get(this.path));
        const head = await this.storage(() => this.store.get(logPath(this.path)));
        if (head !== undefined) await this.feed.at(head.stat.modRev);
        const snap = tx.snapshotRevision;
        const moved = meta?.stat.modRev !== this.snapModRev || this.feed.broken || this.feed.pending.some((ev) => ev.rev <= snap && !this.ownRevs.has(ev.rev));
        if (moved) {
          await this.storage(() => tx.abort()).catch(() => {});
          throw new LatchkeyError('COMPACTED', `bigfile ${this.path}: the file changed since this handle's snapshot (r${this.snapshot}) and the snapshot has made its ${this.renewAfter} reads; refresh() (or abort()) to read on`, { path: this.path });
        }
        // Loads in flight still use the old transaction: it is aborted once they are done.
        const old = this.tx;
        this.locked(() => {
          this.tx = tx;
          this.txOps = 1;
        });
        if (this.txUsers.has(old)) this.retired.add(old);
        else void this.storage(() => old.abort()).catch(() => {});
      } finally {
        this.renewing = undefined;
      }
    })();
    return this.renewing;
  }

  // ---- writeout (storeblk), outside the lock: writeout.ts ----

  /** What writeout.ts needs of the handle: its snapshot and gates (the plan is read under the lock there). */
  private writeoutHost(): WriteoutHost {
    return {
      path: this.path, blockSize: this.blockSize, store: this.store, snap: this.tx, snapshot: this.snapshot, snapSize: this.snapSize, snapModRev: this.snapModRev,
      cache: this.cache, metaFor: this.metaFor,
      plan: () => ({ size: this.localSize, truncatedTo: this.truncatedTo }),
      countRead: () => { this.txOps++; },
      locked: (fn) => this.locked(fn), storage: (fn) => this.storage(fn),
    };
  }

  // ---- boundaries: a new snapshot, invalidation from the change feed ----

  private async enterActive(): Promise<void> {
    while (this.boundary !== undefined) await this.boundary;
    this.active++;
  }

  private exitActive(): void {
    if (--this.active === 0) this.drained?.();
  }

  private async enterBoundary(): Promise<void> {
    while (this.boundary !== undefined) await this.boundary;
    let done!: () => void;
    this.boundary = new Promise<void>((r) => { done = r; });
    this.boundaryDone = done;
    if (this.active > 0) await new Promise<void>((r) => { this.drained = r; });
    this.drained = undefined;
  }

  private boundaryDone: (() => void) | undefined;

  private exitBoundary(): void {
    const done = this.boundaryDone;
    this.boundary = undefined;
    this.boundaryDone = undefined;
    done?.();
  }

  /**
   * Replaces the handle's transaction with one at the head, and applies
   * every change the feed reported up to the new snapshot: the blocks another
   * client's commit changed are dropped, no others (never a full reload
   * unless the feed itself broke).
   */
  private async beginSnapshot(first: boolean): Promise<void> {
    try {
      await this.nextSnapshot(first);
    } catch (e) {
      // Reads and writes fail with this until a boundary (abort, refresh) succeeds.
      if (!first) this.broken = LatchkeyError.is(e) ? e : new LatchkeyError('IO', `bigfile ${this.path}: ${String(e)}`, { path: this.path, cause: e });
      throw e;
    }
  }

  private async nextSnapshot(first: boolean): Promise<void> {
    if (!first && this.tx.state === 'open') await this.storage(() => this.tx.abort()).catch(() => {});
    const tx = this.storage(() => this.store.begin());
    let meta;
    try {
      meta = await this.storage(() => tx.get(this.path));
    } catch (e) {
      if (tx.state === 'open') await this.storage(() => tx.abort()).catch(() => {});
      throw e;
    }
    if (meta === undefined) {
      await this.storage(() => tx.abort()).catch(() => {});
      throw new LatchkeyError('NOT_FOUND', `bigfile ${this.path} no longer exists`, { path: this.path });
    }
    const m = decodeMeta(this.path, meta.value);
    if (m.blockSize !== this.blockSize) throw new LatchkeyError('CONFLICT', `bigfile ${this.path} was recreated with another block size`, { path: this.path });
    const snap = tx.snapshotRevision;
    if (first) this.feed.start(snap + 1);
    // The feed is caught up to the snapshot once it delivered the last change to PATH/log (read at the head, outside the transaction).
    const head = await this.storage(() => this.store.get(logPath(this.path)));
    if (head !== undefined) await this.feed.at(head.stat.modRev);
    const restart = this.locked(() => {
      this.tx = tx;
      this.txOps = 1;
      this.txGen++;
      this.snapshot = snap;
      this.snapSize = m.size;
      this.snapModRev = meta.stat.modRev;
      this.localSize = m.size;
      this.truncatedTo = m.size;
      this.broken = undefined;
      let keep = 0;
      for (const ev of this.feed.pending) {
        if (ev.rev > snap) {
          this.feed.pending[keep++] = ev;
          continue;
        }
        if (this.ownRevs.delete(ev.rev)) continue;
        if (ev.change.all) {
          this.dropAllClean();
          continue;
        }
        for (const [a, b] of ev.change.ranges) {
          if (b - a + 1 > this.cache.size) {
            for (const [i, p] of this.cache.entries()) if (i >= a && i <= b) { this.drop(i, p); this.counters.invalidations++; }
          } else {
            for (let i = a; i <= b; i++) {
              const p = this.cache.get(i);
              if (p !== undefined) { this.drop(i, p); this.counters.invalidations++; }
            }
          }
        }
      }
      this.feed.pending.length = keep;
      for (const r of this.ownRevs) if (r <= snap) this.ownRevs.delete(r);
      // A page past the new end can only be stale.
      for (const [i, p] of this.cache.entries()) if (i * this.blockSize >= m.size) this.drop(i, p);
      if (!this.feed.broken) return false;
      this.dropAllClean();
      this.feed.broken = false;
      this.feed.pending.length = 0;
      return true;
    });
    if (restart) this.feed.start(snap + 1);
  }

  private dropAllClean(): void {
    for (const [i, p] of this.cache.entries()) if (!p.dirty) this.drop(i, p);
    this.counters.fullDrops++;
  }
}
