/**
 * The value cache's eviction policies, bounded in bytes: `lru` and
 * `s3fifo`. Pure data structures (no I/O, no clock), so a trace can be
 * replayed through them (bench/workloads/cache-policy.ts) and the choice
 * measured; storage/values.ts keeps its counters around them.
 *
 * - `LruCache`: a Map's insertion order is the recency order; a hit moves
 *   the entry to the young end (a delete and a set).
 * - `S3FifoCache` (S3-FIFO: Yang et al., "FIFO queues are all you need for
 *   cache eviction", SOSP 2023): a small FIFO (10% of the bytes) takes new
 *   entries, a main FIFO (the rest) takes those read again while in the
 *   small one, and a ghost FIFO of keys only remembers what the small one
 *   dropped unread, so a key coming back soon goes straight to main. A hit
 *   only bumps a 2-bit counter (no reordering); main reinserts an entry
 *   with a counter above 0 at its head (counter - 1) instead of evicting
 *   it. A scan of values read once passes through the small queue and does
 *   not push the frequently read ones out of main.
 */

export type CachePolicy = 'lru' | 's3fifo';

/**
 * What one entry costs beyond its value's bytes, counted against the limit
 * with them: the Uint8Array and its ArrayBuffer (JS objects), the backing
 * store's C++ record and malloc header, the slot and the Map entries that
 * index it. Measured (100,000 entries of 2 KiB, heap after a full GC, Node
 * 20): 237 heap bytes per entry under LRU, 320 under S3-FIFO; RSS grew by
 * 447 and 669 bytes per entry beyond the values (with the V8 heap's slack).
 * Without it a cache of 1 KiB values (the smallest that go to value files
 * by default) held 44-65% more memory than its limit. The limit bounds
 * `bytes`, values and this charge together.
 */
export const CACHE_ENTRY_OVERHEAD = 512;

/** The bytes an entry of `bytes` is charged. */
export function entryCost(bytes: Uint8Array): number {
  return bytes.length + CACHE_ENTRY_OVERHEAD;
}
export const CACHE_POLICIES: readonly CachePolicy[] = ['lru', 's3fifo'];

export interface ValueCache {
  /** The bytes under `key`, noting the access; undefined when absent. */
  get(key: number): Uint8Array | undefined;
  /** Keeps `bytes` under `key` (replacing what was there), evicting as needed; returns how many entries were evicted. An entry costing more than the whole limit is not kept. */
  set(key: number, bytes: Uint8Array): number;
  /** Drops every entry whose key `drop` accepts. */
  deleteWhere(drop: (key: number) => boolean): void;
  clear(): void;
  /** What the entries are charged (`entryCost`: their bytes plus a fixed overhead each); never above the limit after `set`. */
  readonly bytes: number;
  readonly entries: number;
}

export function makeValueCache(policy: CachePolicy, limit: number): ValueCache {
  return policy === 'lru' ? new LruCache(limit) : new S3FifoCache(limit);
}

export class LruCache implements ValueCache {
  private readonly map = new Map<number, Uint8Array>();
  bytes = 0;

  constructor(private readonly limit: number) {}

  get entries(): number {
    return this.map.size;
  }

  get(key: number): Uint8Array | undefined {
    const b = this.map.get(key);
    if (b !== undefined) {
      this.map.delete(key);
      this.map.set(key, b);
    }
    return b;
  }

  set(key: number, bytes: Uint8Array): number {
    if (entryCost(bytes) > this.limit) return 0;
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.bytes -= entryCost(old);
    }
    this.map.set(key, bytes);
    this.bytes += entryCost(bytes);
    let evicted = 0;
    while (this.bytes > this.limit) {
      const first = this.map.entries().next().value as [number, Uint8Array];
      this.map.delete(first[0]);
      this.bytes -= entryCost(first[1]);
      evicted++;
    }
    return evicted;
  }

  deleteWhere(drop: (key: number) => boolean): void {
    for (const [k, b] of this.map) {
      if (drop(k)) {
        this.map.delete(k);
        this.bytes -= entryCost(b);
      }
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}

interface Slot {
  bytes: Uint8Array;
  /** Reads since it entered its queue (or since main last passed over it), 0..3. */
  freq: number;
  main: boolean;
}

export class S3FifoCache implements ValueCache {
  /** Every entry, by key; `small` and `main` hold the same slots in FIFO order (a Map's insertion order). */
  private readonly slots = new Map<number, Slot>();
  private readonly small = new Map<number, Slot>();
  private readonly main = new Map<number, Slot>();
  /** Keys the small queue dropped unread, with their lengths, oldest first. */
  private readonly ghost = new Map<number, number>();
  private smallBytes = 0;
  private mainBytes = 0;
  private ghostBytes = 0;
  private readonly smallLimit: number;

  constructor(private readonly limit: number) {
    this.smallLimit = Math.max(1, Math.floor(limit / 10));
  }

  get bytes(): number {
    return this.smallBytes + this.mainBytes;
  }

  get entries(): number {
    return this.slots.size;
  }

  get(key: number): Uint8Array | undefined {
    const s = this.slots.get(key);
    if (s === undefined) return undefined;
    if (s.freq < 3) s.freq++;
    return s.bytes;
  }

  set(key: number, bytes: Uint8Array): number {
    if (entryCost(bytes) > this.limit) return 0;
    const old = this.slots.get(key);
    if (old !== undefined) {
      // The same place holds the same bytes (a write and a read of one ref): keep its queue and counter.
      if (old.main) this.mainBytes += entryCost(bytes) - entryCost(old.bytes);
      else this.smallBytes += entryCost(bytes) - entryCost(old.bytes);
      old.bytes = bytes;
    } else {
      const ghostLen = this.ghost.get(key);
      const main = ghostLen !== undefined;
      if (main) {
        this.ghost.delete(key);
        this.ghostBytes -= ghostLen;
      }
      const s: Slot = { bytes, freq: 0, main };
      this.slots.set(key, s);
      if (main) {
        this.main.set(key, s);
        this.mainBytes += entryCost(bytes);
      } else {
        this.small.set(key, s);
        this.smallBytes += entryCost(bytes);
      }
    }
    let evicted = 0;
    while (this.smallBytes + this.mainBytes > this.limit) {
      if (this.evictOne()) evicted++;
    }
    return evicted;
  }

  /** One step of eviction: true when an entry left the cache (a move from small to main, or a reinsertion in main, is not one). */
  private evictOne(): boolean {
    if (this.smallBytes >= this.smallLimit || this.main.size === 0) {
      const [key, s] = this.small.entries().next().value as [number, Slot];
      this.small.delete(key);
      this.smallBytes -= entryCost(s.bytes);
      if (s.freq > 0) {
        // Read again while in the small queue: promoted to main.
        s.main = true;
        s.freq = 0;
        this.main.set(key, s);
        this.mainBytes += entryCost(s.bytes);
        return false;
      }
      this.slots.delete(key);
      this.ghost.set(key, entryCost(s.bytes));
      this.ghostBytes += entryCost(s.bytes);
      // The ghost remembers about as many bytes as main holds.
      while (this.ghostBytes > this.limit - this.smallLimit) {
        const [gk, glen] = this.ghost.entries().next().value as [number, number];
        this.ghost.delete(gk);
        this.ghostBytes -= glen;
      }
      return true;
    }
    const [key, s] = this.main.entries().next().value as [number, Slot];
    this.main.delete(key);
    if (s.freq > 0) {
      s.freq--;
      this.main.set(key, s);
      return false;
    }
    this.mainBytes -= entryCost(s.bytes);
    this.slots.delete(key);
    return true;
  }

  deleteWhere(drop: (key: number) => boolean): void {
    for (const [k, s] of this.slots) {
      if (!drop(k)) continue;
      this.slots.delete(k);
      if (s.main) {
        this.main.delete(k);
        this.mainBytes -= entryCost(s.bytes);
      } else {
        this.small.delete(k);
        this.smallBytes -= entryCost(s.bytes);
      }
    }
    for (const [k, len] of this.ghost) {
      if (drop(k)) {
        this.ghost.delete(k);
        this.ghostBytes -= len;
      }
    }
  }

  clear(): void {
    this.slots.clear();
    this.small.clear();
    this.main.clear();
    this.ghost.clear();
    this.smallBytes = this.mainBytes = this.ghostBytes = 0;
  }
}
