/**
 * A handle's page cache: the pages (one `blockSize` buffer per cached
 * block) in LRU order, the byte counts bounded by `cacheBytes`, and a few
 * spare buffers recycled from dropped pages so a streaming reader does not
 * allocate (and the collector does not sweep) a block per block read.
 *
 * No store, no I/O, no lock of its own: the handle (handle.ts) calls it only
 * with its lock held. The rule that makes recycling safe: a page's buffer is
 * used only in the synchronous step in which the page was found in the
 * cache (or, for a dirty page, while it is pinned by the writeout) — so a
 * buffer handed back here by `drop` has no user left.
 */
import { type Page, newPage } from './pages.js';

/** Spare buffers kept for reuse (part of the overhead above cacheBytes: at most this many blocks). */
export const SPARE_BUFFERS = 4;

export class PageCache {
  private readonly pages = new Map<number, Page>();
  private readonly spare: Uint8Array[] = [];
  /** Bytes of the cached pages (clean and dirty), and of the dirty ones. */
  cached = 0;
  dirty = 0;

  constructor(private readonly blockSize: number, private readonly cacheBytes: number) {}

  get size(): number {
    return this.pages.size;
  }

  get(i: number): Page | undefined {
    return this.pages.get(i);
  }

  has(i: number): boolean {
    return this.pages.has(i);
  }

  /** Pages, least recently used first (a copy: callers may drop while iterating). */
  entries(): Array<[number, Page]> {
    return [...this.pages];
  }

  /** Marks the page most recently used. */
  touch(i: number, p: Page): void {
    this.pages.delete(i);
    this.pages.set(i, p);
  }

  /** Adds a page that was not cached (most recently used). */
  insert(i: number, p: Page): void {
    this.pages.set(i, p);
    this.cached += this.blockSize;
    if (p.dirty) this.dirty += this.blockSize;
  }

  /** Marks a cached page dirty (counted once). */
  markDirty(p: Page): void {
    if (p.dirty) return;
    p.dirty = true;
    this.dirty += this.blockSize;
  }

  /** Every dirty page turned clean (after a commit stored them). */
  cleanAll(fn: (i: number, p: Page) => void): void {
    for (const [i, p] of this.pages) {
      if (!p.dirty) continue;
      p.dirty = false;
      fn(i, p);
    }
    this.dirty = 0;
  }

  /** Removes a page, keeping the byte counts; its buffer becomes a spare. */
  drop(i: number, p: Page): void {
    if (this.pages.get(i) !== p) return;
    this.pages.delete(i);
    this.cached -= this.blockSize;
    if (p.dirty) this.dirty -= this.blockSize;
    this.giveBack(p.data);
  }

  /** Evicts clean pages, least recently used first, until the cache is within its bound. */
  evict(): void {
    if (this.cached <= this.cacheBytes) return;
    for (const [i, p] of this.pages) {
      if (this.cached <= this.cacheBytes) break;
      if (!p.dirty) this.drop(i, p);
    }
  }

  clear(): void {
    this.pages.clear();
    this.spare.length = 0;
    this.cached = 0;
    this.dirty = 0;
  }

  /** A block buffer: a spare one (old bytes in it, unless `zeroed`) or a new one (zeros). */
  buffer(zeroed: boolean): Uint8Array {
    const b = this.spare.pop();
    if (b === undefined) return new Uint8Array(this.blockSize);
    if (zeroed) b.fill(0);
    return b;
  }

  /** A buffer no page and no load uses any more, kept for reuse when it is a whole block of its own. */
  giveBack(b: Uint8Array): void {
    if (this.spare.length < SPARE_BUFFERS && b.length === this.blockSize && b.byteOffset === 0 && b.buffer.byteLength === this.blockSize) this.spare.push(b);
  }

  /** A fresh page (zeros) over a recycled buffer when one is spare. */
  newPage(): Page {
    const p = newPage(this.blockSize);
    p.data = this.buffer(true);
    return p;
  }
}
