/**
 * A persistent (immutable, structurally shared) sorted map from names to
 * values: a copy-on-write B+tree ordered by `compareNames`.
 *
 * Every update returns a new map and copies only the O(log n) nodes on the
 * path to the changed leaf, so a directory with a million children takes a
 * write in microseconds and an old version stays valid for as long as
 * someone holds it (that is what makes snapshots O(1)).
 *
 * Invariants: all leaves are at the same depth; a non-root node holds between
 * MIN and MAX entries (MIN = MAX/4 after deletes, which keeps the tree shallow
 * without costly rebalancing); `keys[i]` of an inner node is the smallest key
 * in `children[i]`; `size` is the number of entries below a node.
 */
import { compareNames } from './path.js';

const MAX = 32;
const MIN = 8;

interface Leaf<V> {
  readonly leaf: true;
  readonly keys: readonly string[];
  readonly vals: readonly V[];
  readonly size: number;
}
interface Inner<V> {
  readonly leaf: false;
  readonly keys: readonly string[];
  readonly children: readonly BNode<V>[];
  readonly size: number;
}
type BNode<V> = Leaf<V> | Inner<V>;

/** Index of the first key >= k (binary search). */
function lowerBound(keys: readonly string[], k: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareNames(keys[mid]!, k) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Child index of an inner node that would hold k. */
function childIndex(keys: readonly string[], k: string): number {
  let lo = 0;
  let hi = keys.length - 1;
  // last i with keys[i] <= k, or 0
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (compareNames(keys[mid]!, k) <= 0) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function sumSizes<V>(children: readonly BNode<V>[]): number {
  let n = 0;
  for (const c of children) n += c.size;
  return n;
}

function mkLeaf<V>(keys: string[], vals: V[]): Leaf<V> {
  return { leaf: true, keys, vals, size: keys.length };
}
function mkInner<V>(children: BNode<V>[]): Inner<V> {
  return { leaf: false, keys: children.map((c) => c.keys[0]!), children, size: sumSizes(children) };
}

function withItem<T>(arr: readonly T[], i: number, v: T): T[] {
  const out = arr.slice();
  out[i] = v;
  return out;
}
function inserted<T>(arr: readonly T[], i: number, v: T): T[] {
  const out = arr.slice(0, i);
  out.push(v);
  for (let j = i; j < arr.length; j++) out.push(arr[j]!);
  return out;
}
function removed<T>(arr: readonly T[], i: number): T[] {
  const out = arr.slice(0, i);
  for (let j = i + 1; j < arr.length; j++) out.push(arr[j]!);
  return out;
}

/** Result of inserting into a subtree: one node, or two after a split. */
type Ins<V> = [BNode<V>] | [BNode<V>, BNode<V>];

/**
 * The copy of a new key the map keeps. A name split from a path is, in V8,
 * a view into the whole path string (a "sliced string", made for cuts of 13
 * characters or more) and keeps it alive: a node of a 16-byte name held its
 * path, and after replay its log record's path. JSON.parse makes a flat
 * string of its own (~0.2 µs; interning through an object key cost 1.4 µs).
 * Shorter names are already copies.
 */
export function ownKey(k: string): string {
  return k.length < 13 ? k : (JSON.parse(JSON.stringify(k)) as string);
}

function insertRec<V>(n: BNode<V>, k: string, v: V): Ins<V> {
  if (n.leaf) {
    const i = lowerBound(n.keys, k);
    if (i < n.keys.length && n.keys[i] === k) return [mkLeaf(n.keys as string[], withItem(n.vals, i, v))];
    const keys = inserted(n.keys, i, ownKey(k));
    const vals = inserted(n.vals, i, v);
    if (keys.length <= MAX) return [mkLeaf(keys, vals)];
    const h = keys.length >>> 1;
    return [mkLeaf(keys.slice(0, h), vals.slice(0, h)), mkLeaf(keys.slice(h), vals.slice(h))];
  }
  const i = childIndex(n.keys, k);
  const child = n.children[i]!;
  const r = insertRec(child, k, v);
  if (r.length === 1) {
    // The common case: one child replaced; keys change only if its smallest key did.
    const c = r[0];
    const keys = c.keys[0] === n.keys[i] ? n.keys : withItem(n.keys, i, c.keys[0]!);
    return [{ leaf: false, keys, children: withItem(n.children, i, c), size: n.size - child.size + c.size }];
  }
  let children = withItem(n.children, i, r[0]);
  children = inserted(children, i + 1, r[1]);
  if (children.length <= MAX) return [mkInner(children)];
  const h = children.length >>> 1;
  return [mkInner(children.slice(0, h)), mkInner(children.slice(h))];
}

/** A B+tree node's fields, writable: only for nodes a burst owns (`insertOwned`). */
type MutLeaf<V> = { leaf: true; keys: string[]; vals: V[]; size: number };
type MutInner<V> = { leaf: false; keys: string[]; children: BNode<V>[]; size: number };

/** `n` itself when the burst owns it, else a copy (arrays included) that it then owns. */
function ownedNode<V>(n: BNode<V>, owned: Set<object>): MutLeaf<V> | MutInner<V> {
  if (owned.has(n)) return n as MutLeaf<V> | MutInner<V>;
  const c: MutLeaf<V> | MutInner<V> = n.leaf
    ? { leaf: true, keys: n.keys.slice(), vals: n.vals.slice(), size: n.size }
    : { leaf: false, keys: n.keys.slice(), children: n.children.slice(), size: n.size };
  owned.add(c);
  return c;
}

/**
 * `insertRec` for a burst (the engine's run of plain sets, `PMap.setOwned`):
 * a node in `owned` is changed in place; any other on the path is copied
 * once and joins `owned`. The same shape as `insertRec` makes (same split
 * points), so the two give equal maps.
 */
function insertOwned<V>(n: BNode<V>, k: string, f: (old: V | undefined) => V, owned: Set<object>): Ins<V> {
  if (n.leaf) {
    // The value first: when it is the old one, changed in place, the leaf need not change.
    const i = lowerBound(n.keys, k);
    const found = i < n.keys.length && n.keys[i] === k;
    const old = found ? n.vals[i] : undefined;
    const v = f(old);
    if (found && v === old) return [n];
    const m = ownedNode(n, owned) as MutLeaf<V>;
    if (found) {
      m.vals[i] = v;
      return [m];
    }
    m.keys.splice(i, 0, ownKey(k));
    m.vals.splice(i, 0, v);
    m.size = m.keys.length;
    if (m.keys.length <= MAX) return [m];
    const h = m.keys.length >>> 1;
    const right: MutLeaf<V> = { leaf: true, keys: m.keys.splice(h), vals: m.vals.splice(h), size: 0 };
    right.size = right.keys.length;
    m.size = m.keys.length;
    owned.add(right);
    return [m, right];
  }
  const i = childIndex(n.keys, k);
  const child = n.children[i]!;
  const was = child.size;
  const r = insertOwned(child, k, f, owned);
  if (r.length === 1 && r[0] === child && child.size === was) return [n];
  const m = ownedNode(n, owned) as MutInner<V>;
  m.children[i] = r[0];
  m.keys[i] = r[0].keys[0]!;
  if (r.length === 1) {
    m.size += r[0].size - was;
    return [m];
  }
  m.children.splice(i + 1, 0, r[1]);
  m.keys.splice(i + 1, 0, r[1].keys[0]!);
  if (m.children.length <= MAX) {
    m.size += r[0].size + r[1].size - was;
    return [m];
  }
  const h = m.children.length >>> 1;
  const kids = m.children.splice(h);
  m.keys.splice(h);
  m.size = sumSizes(m.children);
  const right: MutInner<V> = { leaf: false, keys: kids.map((c) => c.keys[0]!), children: kids, size: sumSizes(kids) };
  owned.add(right);
  return [m, right];
}

/** Merges or rebalances children[i] with a neighbour after it fell below MIN. */
function fixUnderflow<V>(children: BNode<V>[], i: number): BNode<V>[] {
  const j = i > 0 ? i - 1 : i + 1;
  if (j >= children.length) return children;
  const a = children[Math.min(i, j)]!;
  const b = children[Math.max(i, j)]!;
  const lo = Math.min(i, j);
  let merged: BNode<V>[];
  if (a.leaf && b.leaf) {
    const keys = [...a.keys, ...b.keys];
    const vals = [...a.vals, ...b.vals];
    if (keys.length <= MAX) merged = [mkLeaf(keys, vals)];
    else {
      const h = keys.length >>> 1;
      merged = [mkLeaf(keys.slice(0, h), vals.slice(0, h)), mkLeaf(keys.slice(h), vals.slice(h))];
    }
  } else if (!a.leaf && !b.leaf) {
    const kids = [...a.children, ...b.children];
    if (kids.length <= MAX) merged = [mkInner(kids)];
    else {
      const h = kids.length >>> 1;
      merged = [mkInner(kids.slice(0, h)), mkInner(kids.slice(h))];
    }
  } else {
    return children; // unreachable: siblings share a depth
  }
  const out = children.slice(0, lo);
  out.push(...merged);
  for (let k = lo + 2; k < children.length; k++) out.push(children[k]!);
  return out;
}

function entries<V>(n: BNode<V>): number {
  return n.leaf ? n.keys.length : n.children.length;
}

/** Returns the new subtree (possibly with fewer than MIN entries), or undefined if k is absent. */
function deleteRec<V>(n: BNode<V>, k: string): BNode<V> | undefined {
  if (n.leaf) {
    const i = lowerBound(n.keys, k);
    if (i >= n.keys.length || n.keys[i] !== k) return undefined;
    return mkLeaf(removed(n.keys, i), removed(n.vals, i));
  }
  const i = childIndex(n.keys, k);
  const c = deleteRec(n.children[i]!, k);
  if (c === undefined) return undefined;
  let children: BNode<V>[];
  if (entries(c) === 0) children = removed(n.children, i);
  else {
    children = withItem(n.children, i, c);
    if (entries(c) < MIN && children.length > 1) children = fixUnderflow(children, i);
  }
  return mkInner(children);
}

const EMPTY_LEAF: Leaf<never> = { leaf: true, keys: [], vals: [], size: 0 };

export class PMap<V> {
  private constructor(private readonly root: BNode<V>) {}

  static empty<V>(): PMap<V> {
    return EMPTY as PMap<V>;
  }

  /**
   * A map of `keys` (strictly ascending) to `vals`, built bottom-up in O(n).
   * `owned`: the keys are already strings of their own (not views into a
   * longer string: see `ownKey`), so they are not copied again.
   */
  static fromSorted<V>(keys: readonly string[], vals: readonly V[], owned = false): PMap<V> {
    if (keys.length === 0) return PMap.empty();
    let level: BNode<V>[] = [];
    const per = (MAX * 3) >>> 2;
    for (let i = 0; i < keys.length; i += per) {
      const ks = keys.slice(i, i + per);
      level.push(mkLeaf(owned ? ks : ks.map(ownKey), vals.slice(i, i + per)));
    }
    while (level.length > 1) {
      const up: BNode<V>[] = [];
      for (let i = 0; i < level.length; i += per) up.push(mkInner(level.slice(i, i + per)));
      level = up;
    }
    return new PMap(level[0]!);
  }

  get size(): number {
    return this.root.size;
  }

  get(k: string): V | undefined {
    let n: BNode<V> = this.root;
    while (!n.leaf) n = n.children[childIndex(n.keys, k)]!;
    const i = lowerBound(n.keys, k);
    return i < n.keys.length && n.keys[i] === k ? n.vals[i] : undefined;
  }

  has(k: string): boolean {
    return this.get(k) !== undefined;
  }

  set(k: string, v: V): PMap<V> {
    const r = insertRec(this.root, k, v);
    return new PMap(r.length === 1 ? r[0] : mkInner([r[0], r[1]]));
  }

  /**
   * `set` for a burst of commits no one else can see yet (engine.ts,
   * "Bursts"): maps and B+tree nodes in `owned` were made by the burst and
   * change in place; the rest of the path is copied once and joins `owned`.
   * Returns this map when it is owned, else its owned copy. Equal to `set`'s
   * result; once the burst ends (`owned` is dropped) the maps are immutable.
   */
  setOwned(k: string, v: V, owned: Set<object>): PMap<V> {
    return this.updateOwned(k, () => v, owned);
  }

  /**
   * `setOwned` of `f(the value at k)`, in one walk. When `f` returns the
   * value it was given (changed in place), nothing else changes.
   */
  updateOwned(k: string, f: (old: V | undefined) => V, owned: Set<object>): PMap<V> {
    const r = insertOwned(this.root, k, f, owned);
    if (r.length === 1 && r[0] === this.root) return this;
    let root: BNode<V> = r[0];
    if (r.length === 2) {
      root = mkInner([r[0], r[1]]);
      owned.add(root);
    }
    if (owned.has(this)) {
      (this as unknown as { root: BNode<V> }).root = root;
      return this;
    }
    const m = new PMap(root);
    owned.add(m);
    return m;
  }

  delete(k: string): PMap<V> {
    let r = deleteRec(this.root, k);
    if (r === undefined) return this;
    while (!r.leaf && r.children.length === 1) r = r.children[0]!;
    if (!r.leaf && r.children.length === 0) r = EMPTY_LEAF;
    return new PMap(r);
  }

  /** Entries in order with key > `after` (or all), at most `limit`. */
  *entries(after?: string): Generator<[string, V]> {
    yield* walk(this.root, after);
  }

  keys(after?: string, limit = Infinity): string[] {
    const out: string[] = [];
    if (limit <= 0) return out;
    for (const [k] of walk(this.root, after)) {
      out.push(k);
      if (out.length >= limit) break;
    }
    return out;
  }
}

function* walk<V>(n: BNode<V>, after: string | undefined): Generator<[string, V]> {
  if (n.leaf) {
    let i = 0;
    if (after !== undefined) {
      i = lowerBound(n.keys, after);
      if (i < n.keys.length && n.keys[i] === after) i++;
    }
    for (; i < n.keys.length; i++) yield [n.keys[i]!, n.vals[i]!];
    return;
  }
  let i = after === undefined ? 0 : childIndex(n.keys, after);
  for (; i < n.children.length; i++) {
    yield* walk(n.children[i]!, i === 0 || after === undefined ? after : compareNames(n.keys[i]!, after) > 0 ? undefined : after);
  }
}

const EMPTY = new (PMap as unknown as new (root: BNode<never>) => PMap<never>)(EMPTY_LEAF);
