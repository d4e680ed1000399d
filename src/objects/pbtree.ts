/**
 * PBTree: a sorted map split into persistent objects, as ZODB's BTrees:
 * internal nodes (`latchkey.BTreeNode`) hold separator keys and child
 * references, buckets (`latchkey.BTreeBucket`) hold up to BUCKET_MAX keys
 * and their values. A lookup loads one node per level and one bucket: a
 * million-entry tree has ~8,000 buckets under ~70 nodes, and `get` loads 3
 * objects however large the tree is. Keys are strings or numbers (one kind
 * per tree), ordered by `<`.
 *
 * Invariants: a bucket in a tree is never empty (an emptied bucket is
 * removed from its parent, as in ZODB — the seed-003 checker relies on it);
 * separators[i] is the smallest key of child i+1's subtree or below it.
 *
 * Concurrency: inserts into different buckets change different objects and
 * never conflict. Two transactions changing one bucket conflict; the
 * bucket's resolveConflict merges them when they touched different keys
 * (or made the same change), neither split the bucket (`splits` moved) and
 * the merge is not empty — otherwise the transaction re-runs, as ZODB's
 * bucket conflict resolution does.
 */
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { sameValue } from './codec.js';
import { Persistent, isPersistent } from './persistent.js';
import { registerClass } from './registry.js';

export type BTreeKey = string | number;

export const BUCKET_MAX = 128;
export const NODE_MAX = 128;

function cmp(a: BTreeKey, b: BTreeKey): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** First index whose key is ≥ k. */
function lowerBound(keys: readonly BTreeKey[], k: BTreeKey): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** First index whose key is > k. */
function upperBound(keys: readonly BTreeKey[], k: BTreeKey): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class BTreeBucket<K extends BTreeKey = BTreeKey, V = unknown> extends Persistent {
  keys: K[] = [];
  values: V[] = [];
  /** Bumped by every structural change (split, removal): conflict resolution refuses across one. */
  splits = 0;

  static resolveConflict(oldState: Record<string, unknown>, committedState: Record<string, unknown>, myState: Record<string, unknown>): Record<string, unknown> {
    const refuse = (why: string): LatchkeyError => new LatchkeyError('CONFLICT', `bucket conflict: ${why}`);
    if (committedState.splits !== oldState.splits || myState.splits !== oldState.splits) throw refuse('a bucket split or was removed');
    const asMap = (s: Record<string, unknown>): Map<BTreeKey, unknown> => {
      const ks = s.keys as BTreeKey[];
      const vs = s.values as unknown[];
      const m = new Map<BTreeKey, unknown>();
      for (let i = 0; i < ks.length; i++) m.set(ks[i]!, vs[i]);
      return m;
    };
    const old = asMap(oldState);
    const committed = asMap(committedState);
    const mine = asMap(myState);
    const DELETED = Symbol('deleted');
    const diff = (x: Map<BTreeKey, unknown>): Map<BTreeKey, unknown> => {
      const d = new Map<BTreeKey, unknown>();
      for (const [k, v] of x) if (!old.has(k) || !sameValue(old.get(k), v)) d.set(k, v);
      for (const k of old.keys()) if (!x.has(k)) d.set(k, DELETED);
      return d;
    };
    const dc = diff(committed);
    const dm = diff(mine);
    for (const [k, v] of dm) {
      if (!dc.has(k)) continue;
      const w = dc.get(k);
      if (v === DELETED && w === DELETED) continue;
      if (v !== DELETED && w !== DELETED && sameValue(v, w)) continue;
      throw refuse(`both changed key ${String(k)}`);
    }
    const out = new Map(old);
    for (const d of [dc, dm]) for (const [k, v] of d) {
      if (v === DELETED) out.delete(k);
      else out.set(k, v);
    }
    if (out.size === 0) throw refuse('the merged bucket is empty');
    const keys = [...out.keys()].sort(cmp);
    return { ...myState, keys, values: keys.map((k) => out.get(k)), splits: oldState.splits };
  }
}
registerClass('latchkey.BTreeBucket', BTreeBucket as never);

export class BTreeNode<K extends BTreeKey = BTreeKey, V = unknown> extends Persistent {
  /** keys[i] separates children[i] (< keys[i]) from children[i+1] (≥ keys[i]). */
  keys: K[] = [];
  children: Array<BTreeNode<K, V> | BTreeBucket<K, V>> = [];
}
registerClass('latchkey.BTreeNode', BTreeNode as never);

type Node<K extends BTreeKey, V> = BTreeNode<K, V> | BTreeBucket<K, V>;
type Step<K extends BTreeKey> = { node: BTreeNode<K, any>; index: number };

export interface RangeOptions<K> {
  /** Smallest key (inclusive). */
  from?: K;
  /** Bound (exclusive). */
  to?: K;
}

export class PBTree<K extends BTreeKey = BTreeKey, V = unknown> extends Persistent {
  root: Node<K, V> = new BTreeBucket<K, V>();

  private checkKey(key: K): void {
    if (typeof key !== 'string' && !(typeof key === 'number' && Number.isFinite(key))) throw invalidArgument('PBTree: keys are strings or finite numbers');
  }

  private async descend(key: K, path: Step<K>[] | undefined): Promise<BTreeBucket<K, V>> {
    await this.load();
    let n: Node<K, V> = await this.root.load();
    while (n instanceof BTreeNode) {
      const index = upperBound(n.keys, key);
      path?.push({ node: n, index });
      n = await n.children[index]!.load();
    }
    return n as BTreeBucket<K, V>;
  }

  /** The value (loaded, when it is a persistent object), or undefined. */
  async get(key: K): Promise<V | undefined> {
    this.checkKey(key);
    const b = await this.descend(key, undefined);
    const i = lowerBound(b.keys, key);
    if (i >= b.keys.length || b.keys[i] !== key) return undefined;
    const v = b.values[i]!;
    if (isPersistent(v)) await v.load();
    return v;
  }

  async has(key: K): Promise<boolean> {
    this.checkKey(key);
    const b = await this.descend(key, undefined);
    const i = lowerBound(b.keys, key);
    return i < b.keys.length && b.keys[i] === key;
  }

  /** Inserts or replaces; returns `value`. */
  async set(key: K, value: V): Promise<V> {
    this.checkKey(key);
    const path: Step<K>[] = [];
    const b = await this.descend(key, path);
    const i = lowerBound(b.keys, key);
    if (i < b.keys.length && b.keys[i] === key) {
      b.values[i] = value;
    } else {
      b.keys.splice(i, 0, key);
      b.values.splice(i, 0, value);
    }
    b.changed();
    if (b.keys.length > BUCKET_MAX) this.splitBucket(b, path);
    return value;
  }

  private splitBucket(b: BTreeBucket<K, V>, path: Step<K>[]): void {
    const right = new BTreeBucket<K, V>();
    const half = b.keys.length >>> 1;
    right.keys = b.keys.splice(half);
    right.values = b.values.splice(half);
    b.splits++;
    this.insertChild(path, right.keys[0]!, b, right);
  }

  /** Puts `right` after `left` in the parent (the last step of `path`), splitting upward as needed. */
  private insertChild(path: Step<K>[], sep: K, left: Node<K, V>, right: Node<K, V>): void {
    const step = path.pop();
    if (step === undefined) {
      const root = new BTreeNode<K, V>();
      root.keys = [sep];
      root.children = [left, right];
      this.root = root;
      return;
    }
    const n = step.node;
    n.keys.splice(step.index, 0, sep);
    n.children.splice(step.index + 1, 0, right);
    n.changed();
    if (n.children.length <= NODE_MAX) return;
    const mid = n.children.length >>> 1;
    const r = new BTreeNode<K, V>();
    r.children = n.children.splice(mid);
    r.keys = n.keys.splice(mid);
    const up = n.keys.pop()!;
    this.insertChild(path, up, n, r);
  }

  /** Removes the key; returns whether it was there. */
  async delete(key: K): Promise<boolean> {
    this.checkKey(key);
    const path: Step<K>[] = [];
    const b = await this.descend(key, path);
    const i = lowerBound(b.keys, key);
    if (i >= b.keys.length || b.keys[i] !== key) return false;
    b.keys.splice(i, 1);
    b.values.splice(i, 1);
    b.changed();
    if (b.keys.length === 0 && path.length > 0) {
      b.splits++;
      this.removeChild(path);
    }
    return true;
  }

  private removeChild(path: Step<K>[]): void {
    const step = path.pop()!;
    const n = step.node;
    n.children.splice(step.index, 1);
    n.keys.splice(step.index > 0 ? step.index - 1 : 0, 1);
    n.changed();
    if (n.children.length === 0 && path.length > 0) {
      this.removeChild(path);
      return;
    }
    if (path.length === 0 && n.children.length === 1) this.root = n.children[0]!;
    if (path.length === 0 && n.children.length === 0) this.root = new BTreeBucket<K, V>();
  }

  /** Entries with from ≤ key < to, in key order, loading buckets as it goes. */
  async *range(options: RangeOptions<K> = {}): AsyncGenerator<[K, V]> {
    await this.load();
    yield* this.walk(this.root, options.from, options.to);
  }

  private async *walk(node: Node<K, V>, from: K | undefined, to: K | undefined): AsyncGenerator<[K, V]> {
    const n = await node.load();
    if (n instanceof BTreeNode) {
      let i = from === undefined ? 0 : upperBound(n.keys, from);
      for (; i < n.children.length; i++) {
        if (to !== undefined && i > 0 && n.keys[i - 1]! >= to) return;
        yield* this.walk(n.children[i]!, from, to);
      }
      return;
    }
    const b = n as BTreeBucket<K, V>;
    let i = from === undefined ? 0 : lowerBound(b.keys, from);
    for (; i < b.keys.length; i++) {
      const k = b.keys[i]!;
      if (to !== undefined && k >= to) return;
      const v = b.values[i]!;
      if (isPersistent(v)) await v.load();
      yield [k, v];
    }
  }

  async *keys(options: RangeOptions<K> = {}): AsyncGenerator<K> {
    for await (const [k] of this.range(options)) yield k;
  }

  [Symbol.asyncIterator](): AsyncGenerator<[K, V]> {
    return this.range();
  }

  /** Number of entries: walks every bucket (ZODB keeps no length either; use a Counter beside it for a cheap one). */
  async size(): Promise<number> {
    await this.load();
    let n = 0;
    const count = async (node: Node<K, V>): Promise<void> => {
      const x = await node.load();
      if (x instanceof BTreeNode) for (const c of x.children) await count(c);
      else n += (x as BTreeBucket<K, V>).keys.length;
    };
    await count(this.root);
    return n;
  }
}
registerClass('latchkey.PBTree', PBTree as never);
