/**
 * The memory the value cache keeps values in, owned and reused: the cache
 * (storage/values.ts) does not allocate a buffer per value it keeps, so the
 * memory it holds is bounded by construction, not by when the garbage
 * collector runs.
 *
 * 1. `ValueArena`: up to `limit` bytes in slabs of 16 MiB (the last one
 *    smaller), each allocated once, when the first block is needed from it,
 *    and kept until `clear` (close). Blocks are handed out by a buddy
 *    allocator: a block is a power of two from 256 bytes to 16 MiB (or the
 *    largest that fits the limit), split from a larger free one when none of
 *    its size is free, and merged with its buddy (the other half of the
 *    block it was split from) when both are free. A value takes the smallest
 *    block that holds it (at most 2× its bytes; values of 256 KiB take
 *    exactly 256 KiB). A value larger than the largest block is not cached.
 * 2. `ArenaCache`: an eviction policy (value-cache.ts: S3-FIFO or LRU) over
 *    entries that name a block. `put` copies the bytes into a block; when no
 *    free block fits (the slabs are all allocated and the free space is in
 *    smaller pieces), the policy evicts until one does. The policy charges
 *    each entry its block plus `CACHE_ENTRY_OVERHEAD`, against the same
 *    limit.
 * 3. `view` hands out a view of the block: valid only until the next `put`,
 *    `deleteWhere` or `clear` (a block freed by eviction is reused). Callers
 *    copy out of it at once (values.ts never hands a view to anyone else);
 *    bytes given to a caller are always the caller's own.
 */
import { CACHE_ENTRY_OVERHEAD, type CachePolicy, type ValueCache, makeValueCache } from './value-cache.js';

/** The smallest block (bytes). */
export const MIN_BLOCK = 256;
/** The largest slab (bytes): also the largest value the cache keeps. */
export const MAX_SLAB = 16 * 1024 * 1024;
const MIN_SHIFT = 8;

/** log2 of the block that holds `len` bytes (at least MIN_BLOCK). */
function shiftOf(len: number): number {
  let s = MIN_SHIFT;
  while (2 ** s < len) s++;
  return s;
}

/** The size of the block that holds `len` bytes. */
export function blockBytes(len: number): number {
  return 2 ** shiftOf(len);
}

export class ValueArena {
  /** Bytes the arena may hold: the limit rounded down to a whole block. */
  readonly capacity: number;
  private readonly slabCount: number;
  /** log2 of the largest block. */
  private readonly maxShift: number;
  private slabs: Uint8Array[] = [];
  /** Free blocks by log2 of their size, as addresses (slab × MAX_SLAB + offset). */
  private readonly free: Set<number>[] = [];
  /** Bytes in blocks handed out. */
  used = 0;

  constructor(limit: number) {
    this.capacity = Math.floor(Math.max(0, limit) / MIN_BLOCK) * MIN_BLOCK;
    this.slabCount = Math.ceil(this.capacity / MAX_SLAB);
    let shift = MIN_SHIFT;
    while (2 ** (shift + 1) <= Math.min(this.capacity, MAX_SLAB)) shift++;
    this.maxShift = shift;
    for (let i = 0; i <= shift; i++) this.free.push(new Set());
  }

  /** Bytes of slabs allocated so far (what the arena holds of the process's memory, at most). */
  get allocated(): number {
    let n = 0;
    for (const s of this.slabs) n += s.length;
    return n;
  }

  /** True when a value of `len` bytes can ever have a block. */
  fits(len: number): boolean {
    return this.capacity > 0 && len <= 2 ** this.maxShift;
  }

  /**
   * Allocates the next slab (MAX_SLAB bytes; the last one what is left of
   * the capacity) and frees its blocks: the largest aligned powers of two
   * that tile it, largest first. The buddy of such a block lies past it, in
   * smaller ones, so blocks never merge across these boundaries.
   */
  private grow(): boolean {
    if (this.slabs.length >= this.slabCount) return false;
    const base = this.slabs.length * MAX_SLAB;
    const size = Math.min(MAX_SLAB, this.capacity - base);
    // Not zero-filled: a block's bytes are always written before they are read.
    const b = Buffer.allocUnsafeSlow(size);
    this.slabs.push(new Uint8Array(b.buffer, b.byteOffset, size));
    let at = 0;
    for (let s = this.maxShift; s >= MIN_SHIFT; s--) {
      if (size - at >= 2 ** s) {
        this.free[s]!.add(base + at);
        at += 2 ** s;
      }
    }
    return true;
  }

  /** A block for `len` bytes (its address), or -1 when no free block fits and no slab is left to allocate. */
  alloc(len: number): number {
    const want = shiftOf(len);
    if (want > this.maxShift || this.capacity === 0) return -1;
    let s = want;
    for (;;) {
      while (s <= this.maxShift && this.free[s]!.size === 0) s++;
      if (s <= this.maxShift) break;
      if (!this.grow()) return -1;
      s = want;
    }
    const set = this.free[s]!;
    const addr = set.values().next().value as number;
    set.delete(addr);
    // Split down to the size wanted: the upper halves go to the free lists.
    while (s > want) {
      s--;
      this.free[s]!.add(addr + 2 ** s);
    }
    this.used += 2 ** want;
    return addr;
  }

  /** Returns the block at `addr` that `alloc(len)` gave, merging it with its free buddies. */
  release(addr: number, len: number): void {
    let s = shiftOf(len);
    this.used -= 2 ** s;
    while (s < this.maxShift) {
      const buddy = addr ^ (2 ** s);
      if (!this.free[s]!.delete(buddy)) break;
      addr = Math.min(addr, buddy);
      s++;
    }
    this.free[s]!.add(addr);
  }

  /** The `len` bytes of the block at `addr` (a view: valid until the block is released). */
  view(addr: number, len: number): Uint8Array {
    const slab = this.slabs[Math.floor(addr / MAX_SLAB)]!;
    const off = addr % MAX_SLAB;
    return slab.subarray(off, off + len);
  }

  /** Drops every slab (close): the memory goes back once nothing else references it. */
  clear(): void {
    this.slabs = [];
    for (const f of this.free) f.clear();
    this.used = 0;
  }
}

/** Where the arena keeps one cached value. */
interface Block {
  addr: number;
  len: number;
}

export class ArenaCache {
  private readonly arena: ValueArena;
  private readonly policy: ValueCache<Block>;

  constructor(policy: CachePolicy, readonly limit: number) {
    this.arena = new ValueArena(limit);
    this.policy = makeValueCache<Block>(policy, limit, (b) => blockBytes(b.len) + CACHE_ENTRY_OVERHEAD, (_k, b) => this.arena.release(b.addr, b.len));
  }

  /** A view of the bytes under `key` (an access), valid until the next `put`, `deleteWhere` or `clear`: copy out at once. */
  view(key: number): Uint8Array | undefined {
    const b = this.policy.get(key);
    return b === undefined ? undefined : this.arena.view(b.addr, b.len);
  }

  /**
   * Copies `bytes` into a block kept under `key` (nothing when the key is
   * cached already: a place in a value file always holds the same bytes);
   * returns how many entries were evicted.
   */
  put(key: number, bytes: Uint8Array): number {
    if (this.policy.has(key) || !this.arena.fits(bytes.length) || blockBytes(bytes.length) + CACHE_ENTRY_OVERHEAD > this.limit) return 0;
    let evicted = 0;
    let addr = this.arena.alloc(bytes.length);
    while (addr < 0) {
      if (!this.policy.evict()) return evicted;
      evicted++;
      addr = this.arena.alloc(bytes.length);
    }
    this.arena.view(addr, bytes.length).set(bytes);
    return evicted + this.policy.set(key, { addr, len: bytes.length });
  }

  deleteWhere(drop: (key: number) => boolean): void {
    this.policy.deleteWhere(drop);
  }

  clear(): void {
    this.policy.clear();
    this.arena.clear();
  }

  /** What the entries are charged (their blocks plus the per-entry overhead). */
  get bytes(): number {
    return this.policy.bytes;
  }

  get entries(): number {
    return this.policy.entries;
  }

  /** Bytes of slabs the arena has allocated (never above the limit). */
  get arenaBytes(): number {
    return this.arena.allocated;
  }
}
