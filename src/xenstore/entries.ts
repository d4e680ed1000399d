/**
 * Nodes per owning domain, for the entry quota (oxenstored's `maxent`,
 * counted by owner: the domain named first in a node's permissions).
 *
 * The counts follow the store, not the XenStore requests: they are built
 * once from the tree and then moved by every published commit (XenStore
 * writes, native latchkey writes, RELEASE's clean-up alike), by comparing
 * the nodes a commit touched before and after it. Only the paths its
 * mutations name are visited, plus the whole of a deleted subtree, so the
 * cost of a commit is its size, not the store's. A SET_PERMS that changes
 * the owner moves the node from one count to the other.
 *
 * `recount` rebuilds the counts from a tree: CONTROL `check` compares the
 * two (the consistency check).
 */
import type { Published } from '../engine/pipeline.js';
import { parsePath } from '../core/path.js';
import { type Mutation, type Node, lookup } from '../core/tree.js';
import { ownerOf } from './perms.js';

export class EntryCounts {
  private readonly counts = new Map<number, number>();

  constructor(root: Node) {
    countInto(this.counts, root, 1, true);
  }

  get(domid: number): number {
    return this.counts.get(domid) ?? 0;
  }

  /** Every domain's count (for introspection). */
  snapshot(): Map<number, number> {
    return new Map(this.counts);
  }

  /** Moves the counts by one published commit. */
  apply(c: Published): void {
    const muts = c.mutations;
    // Without deletes (most commits) only the nodes the mutations name can change owner: compare each once.
    let dels = false;
    for (let i = 0; i < muts.length && !dels; i++) dels = muts[i]!.op === 'del';
    if (!dels) {
      if (muts.length === 1) {
        const m = muts[0]!;
        // A put keeps an existing node's perms, so its owner: only a node it creates counts (most XenStore WRITEs rewrite one).
        if (m.op === 'put') {
          if (m.path === '/') return;
          const segs = m.path.slice(1).split('/');
          if (lookup(c.before, segs) === undefined) this.node(undefined, lookup(c.after, segs));
          return;
        }
        this.at(c, m.path);
        return;
      }
      const seen = new Set<string>();
      for (const m of muts) {
        if (seen.has(m.path)) continue;
        seen.add(m.path);
        this.at(c, m.path);
      }
      return;
    }
    const trie = buildTrie(muts);
    this.diff(c.before, c.after, trie, true);
  }

  /** The node at `path` before and after a commit without deletes (the root is not an entry). */
  private at(c: Published, path: string): void {
    if (path === '/') return;
    const segs = parsePath(path);
    this.node(lookup(c.before, segs), lookup(c.after, segs));
  }

  private add(owner: number, n: number): void {
    const v = (this.counts.get(owner) ?? 0) + n;
    if (v === 0) this.counts.delete(owner);
    else this.counts.set(owner, v);
  }

  private node(b: Node | undefined, a: Node | undefined): void {
    const ob = b === undefined ? undefined : ownerOf(b.perms);
    const oa = a === undefined ? undefined : ownerOf(a.perms);
    if (ob === oa) return;
    if (ob !== undefined) this.add(ob, -1);
    if (oa !== undefined) this.add(oa, 1);
  }

  private diff(b: Node | undefined, a: Node | undefined, t: Trie, isRoot = false): void {
    if (b === a) return;
    if (!isRoot) this.node(b, a);
    if (t.whole) {
      this.diffAll(b, a);
      return;
    }
    for (const [name, sub] of t.children) this.diff(b?.children.get(name), a?.children.get(name), sub);
  }

  /** Compares two whole subtrees (a deletion, maybe followed by re-creation); shared nodes are skipped. */
  private diffAll(b: Node | undefined, a: Node | undefined): void {
    if (b === a) return;
    if (a === undefined) {
      countInto(this.counts, b!, -1, true);
      return;
    }
    if (b === undefined) {
      countInto(this.counts, a, 1, true);
      return;
    }
    for (const [name, cb] of b.children.entries()) {
      const ca = a.children.get(name);
      if (ca !== cb) {
        this.node(cb, ca);
        this.diffAll(cb, ca);
      }
    }
    for (const [name, ca] of a.children.entries()) {
      if (!b.children.has(name)) {
        this.node(undefined, ca);
        this.diffAll(undefined, ca);
      }
    }
  }
}

/** Adds `sign` per node of the subtree (its root too unless `childrenOnly`) to its owner's count. */
function countInto(counts: Map<number, number>, n: Node, sign: 1 | -1, childrenOnly = false): void {
  if (!childrenOnly) {
    const o = ownerOf(n.perms);
    const v = (counts.get(o) ?? 0) + sign;
    if (v === 0) counts.delete(o);
    else counts.set(o, v);
  }
  for (const [, c] of n.children.entries()) countInto(counts, c, sign);
}

/** The counts a tree implies (the root, which every store has, is not an entry). */
export function recount(root: Node): Map<number, number> {
  const m = new Map<number, number>();
  countInto(m, root, 1, true);
  return m;
}

interface Trie {
  whole: boolean;
  readonly children: Map<string, Trie>;
}

function buildTrie(muts: readonly Mutation[]): Trie {
  const root: Trie = { whole: false, children: new Map() };
  for (const m of muts) {
    let t = root;
    if (m.path !== '/') {
      for (const seg of m.path.slice(1).split('/')) {
        let c = t.children.get(seg);
        if (c === undefined) t.children.set(seg, (c = { whole: false, children: new Map() }));
        t = c;
      }
    }
    if (m.op === 'del') t.whole = true;
  }
  return root;
}
