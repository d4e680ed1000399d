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

export interface Node {
  readonly value: Uint8Array;
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
}

/**
 * One change in a commit.
 * - `put` writes a node's value, creating it (its parent must exist: creation
 *   of missing parents is spelled out as puts of their own).
 * - `del` removes a node and its whole subtree.
 * `seq: true` on a put says the parent's sequential counter advanced.
 */
export type Mutation =
  | { readonly op: 'put'; readonly path: string; readonly value: Uint8Array; readonly ephemeralOwner?: string; readonly seq?: boolean }
  | { readonly op: 'del'; readonly path: string };

export const EMPTY_VALUE: Uint8Array = new Uint8Array(0);

export function emptyRoot(): Node {
  return {
    value: EMPTY_VALUE, createRev: 0, modRev: 0, version: 0, childrenRev: 0,
    children: PMap.empty(), ephemeralOwner: undefined, seq: 0, size: 1,
  };
}

export function lookup(root: Node, segs: readonly string[]): Node | undefined {
  let n: Node | undefined = root;
  for (let i = 0; i < segs.length && n !== undefined; i++) n = n.children.get(segs[i]!);
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
  return { ...root, children: root.children.set(name, updated), size: root.size + updated.size - child.size };
}

export function putNode(root: Node, segs: readonly string[], rev: number, value: Uint8Array, ephemeralOwner?: string, seq?: boolean): Node {
  assert(segs.length > 0, 'cannot put the root value through putNode');
  const name = segs[segs.length - 1]!;
  return updateParent(root, segs, 0, (parent) => {
    const old = parent.children.get(name);
    let node: Node;
    if (old === undefined) {
      node = {
        value, createRev: rev, modRev: rev, version: 1, childrenRev: rev,
        children: PMap.empty(), ephemeralOwner, seq: 0, size: 1,
      };
    } else {
      node = { ...old, value, modRev: rev, version: old.version + 1 };
    }
    return {
      ...parent,
      children: parent.children.set(name, node),
      childrenRev: old === undefined ? rev : parent.childrenRev,
      seq: seq ? parent.seq + 1 : parent.seq,
      size: old === undefined ? parent.size + 1 : parent.size,
    };
  });
}

export function removeNode(root: Node, segs: readonly string[], rev: number): Node {
  assert(segs.length > 0, 'cannot remove the root');
  const name = segs[segs.length - 1]!;
  return updateParent(root, segs, 0, (parent) => {
    const gone = parent.children.get(name);
    assert(gone !== undefined, `removing a missing node /${segs.join('/')}`);
    return { ...parent, children: parent.children.delete(name), childrenRev: rev, size: parent.size - gone.size };
  });
}

/** Writes the root's own value (the root always exists). */
export function putRoot(root: Node, rev: number, value: Uint8Array): Node {
  return { ...root, value, modRev: rev, version: root.version + 1 };
}

/** Applies a commit's mutations at `rev`. Used by recovery and followers; asserts they fit. */
export function applyMutations(root: Node, rev: number, muts: readonly Mutation[]): Node {
  for (const m of muts) {
    const segs = splitPath(m.path);
    if (m.op === 'put') {
      root = segs.length === 0 ? putRoot(root, rev, m.value) : putNode(root, segs, rev, m.value, m.ephemeralOwner, m.seq);
    } else {
      root = removeNode(root, segs, rev);
    }
  }
  return root;
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
