/**
 * The page cache's pure parts: a page, its written ranges, and the bound.
 * No store, no I/O: the handle (handle.ts) does storage calls and keeps the
 * lock discipline; this file only moves bytes.
 */

/** Blocks loaded or stored at once (the in-flight overhead above cacheBytes is at most this many blocks). */
export const IO_CONCURRENCY = 8;

/** Byte ranges [start, end) of a page written before its base was loaded: sorted, disjoint, merged. */
export type Ranges = Array<[number, number]>;

export function addRange(r: Ranges, start: number, end: number): void {
  if (start >= end) return;
  let i = 0;
  while (i < r.length && r[i]![1] < start) i++;
  let j = i;
  while (j < r.length && r[j]![0] <= end) {
    start = Math.min(start, r[j]![0]);
    end = Math.max(end, r[j]![1]);
    j++;
  }
  r.splice(i, j - i, [start, end]);
}

export interface Page {
  /** blockSize bytes owned by the handle (never a buffer the store holds). */
  data: Uint8Array;
  /** True when `data` holds the snapshot's bytes (masked by truncation) under this handle's writes. */
  based: boolean;
  /** Before the base is loaded: the ranges this handle wrote (the rest of `data` is not yet known). */
  written: Ranges;
  dirty: boolean;
  /**
   * True when `modRev` is the block's modRev in the handle's snapshot: set by
   * a load, by a write past the snapshot's end (no block there), and by the
   * handle's own commit; it stays true across boundaries for as long as the
   * page is cached, since a page another client's commit changed is dropped.
   */
  known: boolean;
  /** The block's modRev (undefined: no block stored). */
  modRev: number | undefined;
}

export function newPage(blockSize: number): Page {
  return { data: new Uint8Array(blockSize), based: false, written: [], dirty: false, known: false, modRev: undefined };
}

/** A clean page over a loaded block: the stored bytes themselves when they are a whole block in a buffer of their own, else a zero-padded copy. */
export function loadedPage(blockSize: number, base: Uint8Array | undefined, keep: number): Page {
  if (adoptable(base, blockSize) && keep >= blockSize) return { data: base, based: true, written: [], dirty: false, known: false, modRev: undefined };
  const p = newPage(blockSize);
  layBase(p, base, keep);
  return p;
}

/**
 * Lays the base under a page's writes: `base` (the stored block, possibly
 * shorter than a block; absent = zeros), keeping only its first `keep`
 * bytes (the rest was truncated away), never over the written ranges.
 */
export function layBase(p: Page, base: Uint8Array | undefined, keep: number): void {
  if (p.based) return;
  if (p.written.length === 0 && adoptable(base, p.data.length) && keep >= p.data.length) {
    // A whole block in a buffer of its own (the store's get returns a copy): taken as the page, not copied again.
    p.data = base;
    p.based = true;
    return;
  }
  const n = Math.max(0, Math.min(base?.length ?? 0, keep, p.data.length));
  if (base !== undefined && n > 0) {
    let at = 0;
    for (const [s, e] of p.written) {
      if (s > at) p.data.set(base.subarray(at, Math.min(s, n)), at);
      at = e;
      if (at >= n) break;
    }
    if (at < n) p.data.set(base.subarray(at, n), at);
  }
  p.based = true;
  p.written = [];
}

/** True when the first `len` bytes are all zero (the block is then deleted, not stored). */
export function allZero(data: Uint8Array, len: number): boolean {
  const words = data.byteOffset % 4 === 0 ? Math.floor(len / 4) : 0;
  if (words > 0) {
    const w = new Uint32Array(data.buffer, data.byteOffset, words);
    for (let i = 0; i < words; i++) if (w[i] !== 0) return false;
  }
  for (let i = words * 4; i < len; i++) if (data[i] !== 0) return false;
  return true;
}

/** Runs `fn` over `items` with at most `limit` at a time; the first failure rejects once all started ones settled. */
export async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: { e: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failed === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (e) {
        failed ??= { e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed.e;
}

/** True when `b` is exactly `size` bytes owning its whole buffer (so nothing else can hold or change it through a larger view). */
function adoptable(b: Uint8Array | undefined, size: number): b is Uint8Array {
  return b !== undefined && b.length === size && b.byteOffset === 0 && b.buffer.byteLength === size && !(b.buffer instanceof SharedArrayBuffer);
}
