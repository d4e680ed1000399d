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

/**
 * An eviction policy over entries of type `V` (the value's bytes, or where
 * the value cache's arena keeps them: value-arena.ts), bounded by what
 * `cost` charges them. `onEvict` is told of every entry that leaves
 * (evicted, replaced by another entry under its key, or dropped by
 * `deleteWhere`), not of `clear`.
 */
export interface ValueCache<V = Uint8Array> {
  /** The entry under `key`, noting the access; undefined when absent. */
  get(key: number): V | undefined;
  /** True when `key` is cached; does not count as an access. */
  has(key: number): boolean;
  /** Keeps `v` under `key` (replacing what was there), evicting as needed; returns how many entries were evicted. An entry costing more than the whole limit is not kept. */
  set(key: number, v: V): number;
  /** Evicts one entry in the policy's order; false when there is none. */
  evict(): boolean;
  /** Drops every entry whose key `drop` accepts. */
  deleteWhere(drop: (key: number) => boolean): void;
  clear(): void;
  /** What the entries are charged (`entryCost` by default: their bytes plus a fixed overhead each); never above the limit after `set`. */
  readonly bytes: number;
  readonly entries: number;
}

export type EvictHook<V> = (key: number, v: V) => void;

export function makeValueCache(policy: CachePolicy, limit: number): ValueCache;
export function makeValueCache<V>(policy: CachePolicy, limit: number, cost: (v: V) => number, onEvict?: EvictHook<V>): ValueCache<V>;
export function makeValueCache<V>(policy: CachePolicy, limit: number, cost?: (v: V) => number, onEvict?: EvictHook<V>): ValueCache<V> {
  const c = cost ?? (entryCost as unknown as (v: V) => number);
  return policy === 'lru' ? new LruCache<V>(limit, c, onEvict) : new S3FifoCache<V>(limit, c, onEvict);
}

/** The default charge, for V = Uint8Array (makeValueCache passes its own for other entries). */
const defaultCost = entryCost as (v: any) => number;

export class LruCache<V = Uint8Array> implements ValueCache<V> {
  private readonly map = new Map<number, V>();
  bytes = 0;

  constructor(private readonly limit: number, private readonly cost: (v: V) => number = defaultCost, private readonly onEvict?: EvictHook<V>) {}

  get entries(): number {
    return this.map.size;
  }

  get(key: number): V | undefined {
    const b = this.map.get(key);
    if (b !== undefined) {
      this.map.delete(key);
      this.map.set(key, b);
    }
    return b;
  }

  has(key: number): boolean {
    return this.map.has(key);
  }

  set(key: number, v: V): number {
    if (this.cost(v) > this.limit) return 0;
    const old = this.map.get(key);
    if (old !== undefined) {
      this.map.delete(key);
      this.bytes -= this.cost(old);
      if (old !== v) this.onEvict?.(key, old);
    }
    this.map.set(key, v);
    this.bytes += this.cost(v);
    let evicted = 0;
    while (this.bytes > this.limit && this.evict()) evicted++;
    return evicted;
  }

  evict(): boolean {
    const first = this.map.entries().next();
    if (first.done === true) return false;
    const [k, v] = first.value;
    this.map.delete(k);
    this.bytes -= this.cost(v);
    this.onEvict?.(k, v);
    return true;
  }

  deleteWhere(drop: (key: number) => boolean): void {
    for (const [k, v] of this.map) {
      if (drop(k)) {
        this.map.delete(k);
        this.bytes -= this.cost(v);
        this.onEvict?.(k, v);
      }
    }
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }
}

interface Slot<V> {
  v: V;
  /** Its charge (`cost(v)`), kept: the cost function is not called again on the way out. */
  cost: number;
  /** Reads since it entered its queue (or since main last passed over it), 0..3. */
  freq: number;
  main: boolean;
}

export class S3FifoCache<V = Uint8Array> implements ValueCache<V> {
  /** Every entry, by key; `small` and `main` hold the same slots in FIFO order (a Map's insertion order). */
  private readonly slots = new Map<number, Slot<V>>();
  private readonly small = new Map<number, Slot<V>>();
  private readonly main = new Map<number, Slot<V>>();
  /** Keys the small queue dropped unread, with their charges, oldest first. */
  private readonly ghost = new Map<number, number>();
  private smallBytes = 0;
  private mainBytes = 0;
  private ghostBytes = 0;
  private readonly smallLimit: number;

  constructor(private readonly limit: number, private readonly cost: (v: V) => number = defaultCost, private readonly onEvict?: EvictHook<V>) {
    this.smallLimit = Math.max(1, Math.floor(limit / 10));
  }

  get bytes(): number {
    return this.smallBytes + this.mainBytes;
  }

  get entries(): number {
    return this.slots.size;
  }

  get(key: number): V | undefined {
    const s = this.slots.get(key);
    if (s === undefined) return undefined;
    if (s.freq < 3) s.freq++;
    return s.v;
  }

  has(key: number): boolean {
    return this.slots.has(key);
  }

  set(key: number, v: V): number {
    const cost = this.cost(v);
    if (cost > this.limit) return 0;
    const old = this.slots.get(key);
    if (old !== undefined) {
      // The same place holds the same bytes (a write and a read of one ref): keep its queue and counter.
      if (old.main) this.mainBytes += cost - old.cost;
      else this.smallBytes += cost - old.cost;
      const was = old.v;
      old.v = v;
      old.cost = cost;
      if (was !== v) this.onEvict?.(key, was);
    } else {
      const ghostLen = this.ghost.get(key);
      const main = ghostLen !== undefined;
      if (main) {
        this.ghost.delete(key);
        this.ghostBytes -= ghostLen;
      }
      const s: Slot<V> = { v, cost, freq: 0, main };
      this.slots.set(key, s);
      if (main) {
        this.main.set(key, s);
        this.mainBytes += cost;
      } else {
        this.small.set(key, s);
        this.smallBytes += cost;
      }
    }
    let evicted = 0;
    while (this.smallBytes + this.mainBytes > this.limit) {
      if (this.evictStep()) evicted++;
    }
    return evicted;
  }

  evict(): boolean {
    if (this.slots.size === 0) return false;
    while (!this.evictStep()) { /* moves and reinsertions: go on until an entry leaves */ }
    return true;
  }

  /** One step of eviction: true when an entry left the cache (a move from small to main, or a reinsertion in main, is not one). */
  private evictStep(): boolean {
    if (this.smallBytes >= this.smallLimit || this.main.size === 0) {
      const [key, s] = this.small.entries().next().value as [number, Slot<V>];
      this.small.delete(key);
      this.smallBytes -= s.cost;
      if (s.freq > 0) {
        // Read again while in the small queue: promoted to main.
        s.main = true;
        s.freq = 0;
        this.main.set(key, s);
        this.mainBytes += s.cost;
        return false;
      }
      this.slots.delete(key);
      this.ghost.set(key, s.cost);
      this.ghostBytes += s.cost;
      // The ghost remembers about as many bytes as main holds.
      while (this.ghostBytes > this.limit - this.smallLimit) {
        const [gk, glen] = this.ghost.entries().next().value as [number, number];
        this.ghost.delete(gk);
        this.ghostBytes -= glen;
      }
      this.onEvict?.(key, s.v);
      return true;
    }
    const [key, s] = this.main.entries().next().value as [number, Slot<V>];
    this.main.delete(key);
    if (s.freq > 0) {
      s.freq--;
      this.main.set(key, s);
      return false;
    }
    this.mainBytes -= s.cost;
    this.slots.delete(key);
    this.onEvict?.(key, s.v);
    return true;
  }

  deleteWhere(drop: (key: number) => boolean): void {
    for (const [k, s] of this.slots) {
      if (!drop(k)) continue;
      this.slots.delete(k);
      if (s.main) {
        this.main.delete(k);
        this.mainBytes -= s.cost;
      } else {
        this.small.delete(k);
        this.smallBytes -= s.cost;
      }
      this.onEvict?.(k, s.v);
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
