/**
 * The immutable tree. A version of the whole store is one root `Node`; a
 * snapshot is that pointer (O(1)); a write copies the nodes on the path from
 * the root (O(depth), each a persistent-map update of O(log children)).
 *
 * Nodes are never mutated after construction: anything holding a root holds
 * a consistent store for as long as it likes. This is what lets readers,
 * transactions and the snapshot writer run while commits continue.
 *
 * Changes reach the tree only as `Mutation`s applied at a revision. The same
 * list is what the write-ahead log records and what watchers are told, so a
 * replayed log rebuilds exactly the tree that was acknowledged.
 */
import { assert } from './errors.js';
import { PMap } from './pmap.js';
import { compareNames } from './path.js';
import { type Value, ValueRef } from './value.js';

export interface Node {
  /** The bytes, or where they are on disk (core/value.ts). */
  readonly value: Value;
  /** Revision that created this node. */
  readonly createRev: number;
  /** Revision of the last write to this node's value. */
  readonly modRev: number;
  /** Number of value writes since creation (1 after create). */
  readonly version: number;
  /** Revision of the last change to this node's list of children. */
  readonly childrenRev: number;
  readonly children: PMap<Node>;
  /** Session id owning this node (ephemeral), or undefined. */
  readonly ephemeralOwner: string | undefined;
  /** Next counter for sequential children. */
  readonly seq: number;
  /** Nodes in this subtree, itself included (the root's is the store's node count). */
  readonly size: number;
  /**
   * Access-control entries, opaque to the engine (the XenStore adapter keeps
   * XenStore permissions here: `n0`, `r5`, …, the first naming the owner).
   */
  readonly perms: readonly string[] | undefined;
}

/**
 * One change in a commit.
 * - `put` writes a node's value, creating it (its parent must exist: creation
 *   of missing parents is spelled out as puts of their own).
 *   `seq: true` says the parent's sequential counter advanced.
 * - `del` removes a node and its whole subtree.
 * - `perms` replaces an existing node's access-control entries (a metadata
 *   write: modRev moves, version does not).
 * - `move` (value compaction, storage/compaction.ts): the node's value, if it
 *   is still the ref at `from`, now lives at `value` (the same bytes copied
 *   to another value file). Nothing observable changes: no revision of the
 *   node moves and watchers are not told; the store's revision counts it.
 */
export type Mutation =
  | { readonly op: 'put'; readonly path: string; readonly value: Value; readonly ephemeralOwner?: string; readonly seq?: boolean }
  | { readonly op: 'del'; readonly path: string }
  | { readonly op: 'perms'; readonly path: string; readonly perms: readonly string[] }
  | { readonly op: 'move'; readonly path: string; readonly from: { readonly file: number; readonly offset: number }; readonly value: ValueRef };

export const EMPTY_VALUE: Uint8Array = new Uint8Array(0);

/**
 * The rarely set part of a node: its ephemeral owner, its sequential
 * counter and its access-control entries. Most nodes have none of them and
 * hold `undefined` instead of this object (saving two 8-byte slots a node:
 * 164 to 148 bytes of heap per node of 16-byte names, docs/benchmarks.md).
 */
interface NodeExtra {
  readonly ephemeralOwner: string | undefined;
  readonly seq: number;
  readonly perms: readonly string[] | undefined;
}

/**
 * The one class of every node (made by `mkNode`, so they all share one
 * hidden class): eight in-object fields, the three rare ones behind `extra`
 * and read through getters, so `Node`'s shape for readers is unchanged.
 */
class TreeNode implements Node {
  constructor(
    readonly value: Value,
    readonly createRev: number,
    readonly modRev: number,
    readonly version: number,
    readonly childrenRev: number,
    readonly children: PMap<Node>,
    readonly size: number,
    readonly extra: NodeExtra | undefined,
  ) {}

  get ephemeralOwner(): string | undefined {
    return this.extra === undefined ? undefined : this.extra.ephemeralOwner;
  }

  get seq(): number {
    return this.extra === undefined ? 0 : this.extra.seq;
  }

  get perms(): readonly string[] | undefined {
    return this.extra === undefined ? undefined : this.extra.perms;
  }
}

/** The last extra made: nodes made in a row with the same owner and perms (a snapshot of XenStore nodes) share one. */
let lastExtra: NodeExtra | undefined;

function extraOf(ephemeralOwner: string | undefined, seq: number, perms: readonly string[] | undefined): NodeExtra | undefined {
  if (ephemeralOwner === undefined && seq === 0 && perms === undefined) return undefined;
  const l = lastExtra;
  if (l !== undefined && l.ephemeralOwner === ephemeralOwner && l.seq === seq && samePerms(l.perms, perms)) return l;
  return (lastExtra = { ephemeralOwner, seq, perms });
}

function samePerms(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Builds a node. Every node is made here (a `TreeNode`: one hidden class;
 * object spread was a fifth of a write).
 */
export function mkNode(
  value: Value, createRev: number, modRev: number, version: number, childrenRev: number,
  children: PMap<Node>, ephemeralOwner: string | undefined, seq: number, size: number, perms: readonly string[] | undefined,
): Node {
  return new TreeNode(value, createRev, modRev, version, childrenRev, children, size, extraOf(ephemeralOwner, seq, perms));
}

/** A copy of `n` with another value and revisions, keeping its rare fields as they are (no new extra). */
function remade(n: Node, value: Value, modRev: number, version: number, childrenRev: number, children: PMap<Node>, size: number): Node {
  return new TreeNode(value, n.createRev, modRev, version, childrenRev, children, size, n instanceof TreeNode ? n.extra : extraOf(n.ephemeralOwner, n.seq, n.perms));
}

function withChildren(n: Node, children: PMap<Node>, childrenRev: number, seq: number, size: number): Node {
  if (seq === n.seq) return remade(n, n.value, n.modRev, n.version, childrenRev, children, size);
  return mkNode(n.value, n.createRev, n.modRev, n.version, childrenRev, children, n.ephemeralOwner, seq, size, n.perms);
}

export function emptyRoot(): Node {
  return mkNode(EMPTY_VALUE, 0, 0, 0, 0, PMap.empty(), undefined, 0, 1, undefined);
}

export function lookup(root: Node, segs: readonly string[]): Node | undefined {
  let n: Node | undefined = root;
  for (let i = 0; i < segs.length && n !== undefined; i++) n = n.children.get(segs[i]!);
  return n;
}

/** The parent of the node at `segs` (segs not empty), without slicing them. */
export function lookupParent(root: Node, segs: readonly string[]): Node | undefined {
  let n: Node | undefined = root;
  for (let i = 0; i < segs.length - 1 && n !== undefined; i++) n = n.children.get(segs[i]!);
  return n;
}

function splitPath(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

/** Rebuilds the path to `segs` with `fn` applied to the parent of the last segment. */
function updateParent(root: Node, segs: readonly string[], depth: number, fn: (parent: Node) => Node): Node {
  if (depth === segs.length - 1) return fn(root);
  const name = segs[depth]!;
  const child = root.children.get(name);
  assert(child !== undefined, `parent missing at /${segs.slice(0, depth + 1).join('/')}`);
  const updated = updateParent(child, segs, depth + 1, fn);
  return withChildren(root, root.children.set(name, updated), root.childrenRev, root.seq, root.size + updated.size - child.size);
}

export function putNode(root: Node, segs: readonly string[], rev: number, value: Value, ephemeralOwner?: string, seq?: boolean): Node {
  assert(segs.length > 0, 'cannot put the root value through putNode');
  const name = segs[segs.length - 1]!;
  return updateParent(root, segs, 0, (parent) => {
    const old = parent.children.get(name);
    const node = old === undefined
      ? mkNode(value, rev, rev, 1, rev, PMap.empty(), ephemeralOwner, 0, 1, undefined)
      : remade(old, value, rev, old.version + 1, old.childrenRev, old.children, old.size);
    return withChildren(parent, parent.children.set(name, node),
      old === undefined ? rev : parent.childrenRev,
      seq ? nextSeq(parent.seq, name) : parent.seq,
      old === undefined ? parent.size + 1 : parent.size);
  });
}

/** A tree node's fields, writable: only for nodes a burst owns (`putNodeOwned`). */
type MutNode = { -readonly [K in 'value' | 'modRev' | 'version' | 'childrenRev' | 'children' | 'size' | 'extra']: TreeNode[K] };

/** `n` itself when the burst owns it, else a copy that it then owns. */
function ownedTreeNode(n: Node, owned: Set<object>): TreeNode {
  if (owned.has(n)) return n as TreeNode;
  const c = new TreeNode(n.value, n.createRev, n.modRev, n.version, n.childrenRev, n.children, n.size,
    n instanceof TreeNode ? n.extra : extraOf(n.ephemeralOwner, n.seq, n.perms));
  owned.add(c);
  return c;
}

/**
 * `putNode` for a burst of plain sets (engine.ts, "Bursts"): nodes in
 * `owned` were made by the burst and are held by no published root, no
 * transaction and no hook, so they change in place; every other node on the
 * path is copied once and joins `owned`. A run of sets under one parent
 * copies the path and the parent's B+tree nodes once, not once per set.
 * Gives a tree equal to `putNode`'s (the burst property test compares them).
 */
export function putNodeOwned(root: Node, segs: readonly string[], rev: number, value: Value, ephemeralOwner: string | undefined, seq: boolean | undefined, owned: Set<object>): Node {
  assert(segs.length > 0, 'cannot put the root value through putNodeOwned');
  const top = ownedTreeNode(root, owned);
  const path: TreeNode[] = [top];
  let parent = top;
  let next: TreeNode | undefined;
  const step = (child: Node | undefined): Node => {
    assert(child !== undefined, `parent missing at /${segs.slice(0, path.length).join('/')}`);
    return (next = ownedTreeNode(child, owned));
  };
  for (let d = 0; d < segs.length - 1; d++) {
    (parent as unknown as MutNode).children = parent.children.updateOwned(segs[d]!, step, owned);
    path.push(next!);
    parent = next!;
  }
  const name = segs[segs.length - 1]!;
  let created = false;
  const p = parent as unknown as MutNode;
  p.children = parent.children.updateOwned(name, (old) => {
    if (old === undefined) {
      created = true;
      const node = mkNode(value, rev, rev, 1, rev, PMap.empty(), ephemeralOwner, 0, 1, undefined);
      owned.add(node);
      return node;
    }
    if (owned.has(old)) {
      const o = old as unknown as MutNode;
      o.value = value;
      o.modRev = rev;
      o.version = old.version + 1;
      return old;
    }
    const node = remade(old, value, rev, old.version + 1, old.childrenRev, old.children, old.size);
    owned.add(node);
    return node;
  }, owned);
  if (created) {
    p.childrenRev = rev;
    for (const n of path) (n as unknown as MutNode).size++;
  }
  if (seq) {
    const nextSeqN = nextSeq(parent.seq, name);
    if (nextSeqN !== parent.seq) p.extra = extraOf(parent.ephemeralOwner, nextSeqN, parent.perms);
  }
  return top;
}

/**
 * The parent's counter after a sequential child `name` was created: past
 * the number the name ends with. Numbers are reserved (engine) and may
 * commit out of order, so the counter is a maximum, not a count; a log
 * written when it was a count (number = counter) replays the same.
 */
export function nextSeq(seq: number, name: string): number {
  const n = Number(name.slice(-SEQ_DIGITS));
  return Number.isSafeInteger(n) && name.length >= SEQ_DIGITS ? Math.max(seq, n + 1) : seq + 1;
}

const SEQ_DIGITS = 10;

export function removeNode(root: Node, segs: readonly string[], rev: number): Node {
  assert(segs.length > 0, 'cannot remove the root');
  const name = segs[segs.length - 1]!;
  return updateParent(root, segs, 0, (parent) => {
    const gone = parent.children.get(name);
    assert(gone !== undefined, `removing a missing node /${segs.join('/')}`);
    return withChildren(parent, parent.children.delete(name), rev, parent.seq, parent.size - gone.size);
  });
}

/** Writes the root's own value (the root always exists). */
export function putRoot(root: Node, rev: number, value: Value): Node {
  return remade(root, value, rev, root.version + 1, root.childrenRev, root.children, root.size);
}

/** Replaces a node's access-control entries (the root's included). */
export function setPerms(root: Node, segs: readonly string[], rev: number, perms: readonly string[]): Node {
  const p = Object.freeze([...perms]);
  const withPerms = (n: Node): Node => mkNode(n.value, n.createRev, rev, n.version, n.childrenRev, n.children, n.ephemeralOwner, n.seq, n.size, p);
  if (segs.length === 0) return withPerms(root);
  const name = segs[segs.length - 1]!;
  return updateParent(root, segs, 0, (parent) => {
    const old = parent.children.get(name);
    assert(old !== undefined, `perms of a missing node /${segs.join('/')}`);
    return withChildren(parent, parent.children.set(name, withPerms(old)), parent.childrenRev, parent.seq, parent.size);
  });
}

/** Points a node's value at a copy of its bytes, if it still is the ref at `from` (else nothing changes). */
export function moveValue(root: Node, segs: readonly string[], from: { readonly file: number; readonly offset: number }, to: ValueRef): Node {
  const n = lookup(root, segs);
  if (n === undefined || !(n.value instanceof ValueRef) || n.value.file !== from.file || n.value.offset !== from.offset) return root;
  const moved = (o: Node): Node => remade(o, to, o.modRev, o.version, o.childrenRev, o.children, o.size);
  if (segs.length === 0) return moved(root);
  const name = segs[segs.length - 1]!;
  return updateParent(root, segs, 0, (parent) => withChildren(parent, parent.children.set(name, moved(parent.children.get(name)!)), parent.childrenRev, parent.seq, parent.size));
}

/**
 * Applies a commit's mutations at `rev`. Used by recovery and followers; asserts they fit.
 *
 * A run of puts under one parent (a `multi` filling a directory, the common
 * shape of a large commit) is applied to that parent in one pass
 * (`putChildren`): the path above it is copied once for the run instead of
 * once per put. The result is the same tree as applying them one by one.
 */
export function applyMutations(root: Node, rev: number, muts: readonly Mutation[]): Node {
  for (let i = 0; i < muts.length; i++) {
    const m = muts[i]!;
    if (m.op === 'put' && m.path !== '/') {
      const cut = m.path.lastIndexOf('/');
      const prefix = m.path.slice(0, cut + 1);
      let j = i + 1;
      while (j < muts.length && muts[j]!.op === 'put' && sameParent(muts[j]!.path, prefix)) j++;
      if (j - i > 1) {
        root = putChildren(root, splitPath(m.path), rev, muts, i, j);
        i = j - 1;
        continue;
      }
    }
    const segs = splitPath(m.path);
    if (m.op === 'put') {
      root = segs.length === 0 ? putRoot(root, rev, m.value) : putNode(root, segs, rev, m.value, m.ephemeralOwner, m.seq);
    } else if (m.op === 'perms') {
      root = setPerms(root, segs, rev, m.perms);
    } else if (m.op === 'move') {
      root = moveValue(root, segs, m.from, m.value);
    } else {
      root = removeNode(root, segs, rev);
    }
  }
  return root;
}

/** True when `path` is a child of the directory whose path ends at `prefix` (which ends with '/'). */
function sameParent(path: string, prefix: string): boolean {
  return path.length > prefix.length && path.startsWith(prefix) && path.indexOf('/', prefix.length) === -1;
}

/** Applies puts muts[from..to) (all children of the parent of `segs`) in one pass over that parent. */
function putChildren(root: Node, segs: readonly string[], rev: number, muts: readonly Mutation[], from: number, to: number): Node {
  return updateParent(root, segs, 0, (parent) => {
    if (parent.children.size === 0) {
      const built = buildChildren(parent, rev, muts, from, to);
      if (built !== undefined) return built;
    }
    let children = parent.children;
    let childrenRev = parent.childrenRev;
    let seq = parent.seq;
    let size = parent.size;
    for (let k = from; k < to; k++) {
      const m = muts[k] as Extract<Mutation, { op: 'put' }>;
      const name = m.path.slice(m.path.lastIndexOf('/') + 1);
      const old = children.get(name);
      const node = old === undefined
        ? mkNode(m.value, rev, rev, 1, rev, PMap.empty(), m.ephemeralOwner, 0, 1, undefined)
        : remade(old, m.value, rev, old.version + 1, old.childrenRev, old.children, old.size);
      children = children.set(name, node);
      if (old === undefined) {
        childrenRev = rev;
        size++;
      }
      if (m.seq) seq = nextSeq(seq, name);
    }
    return withChildren(parent, children, childrenRev, seq, size);
  });
}

/**
 * A childless parent given new children in strictly ascending name order (a
 * directory filled by one commit, the usual way): built bottom-up with
 * `PMap.fromSorted` instead of one insert each. Undefined when the names are
 * not in order (the caller inserts them one by one).
 */
function buildChildren(parent: Node, rev: number, muts: readonly Mutation[], from: number, to: number): Node | undefined {
  const names: string[] = [];
  const nodes: Node[] = [];
  let seq = parent.seq;
  for (let k = from; k < to; k++) {
    const m = muts[k] as Extract<Mutation, { op: 'put' }>;
    const name = m.path.slice(m.path.lastIndexOf('/') + 1);
    if (names.length > 0 && compareNames(names[names.length - 1]!, name) >= 0) return undefined;
    names.push(name);
    nodes.push(mkNode(m.value, rev, rev, 1, rev, PMap.empty(), m.ephemeralOwner, 0, 1, undefined));
    if (m.seq) seq = nextSeq(seq, name);
  }
  return withChildren(parent, PMap.fromSorted(names, nodes), rev, seq, parent.size + names.length);
}

/** Visits a subtree depth-first in name order, parents before children. */
export function* walkTree(n: Node, path = '/'): Generator<[string, Node]> {
  yield [path, n];
  for (const [name, child] of n.children.entries()) {
    yield* walkTree(child, path === '/' ? '/' + name : path + '/' + name);
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
