/**
 * A transient (mutable) tree builder for replaying a log: the commits are
 * applied to mutable drafts of the nodes they touch, and the result is
 * frozen into ordinary immutable nodes once, at the end (or whenever an
 * immutable root is needed in between, for the watch history).
 *
 * `applyMutations` (tree.ts) copies the path from the root to every changed
 * node, and one B+tree leaf path per directory on the way, for every
 * mutation: right for a live store, whose every commit's root must stay
 * valid for readers, but replay needs only the last root. Here a directory
 * that changes is a `Draft` with a map of its changed children; a child that
 * is not itself a changing directory is stored as a finished `Node` right
 * away (a new leaf is built once, as it will stay). `freeze` builds each
 * draft's children map once: a directory filled during replay with
 * `PMap.fromSorted` from its names sorted once, one already holding
 * children by setting the changed names into its old map (or by a merge
 * when many changed).
 *
 * The result is the tree `applyMutations` gives for the same commits, field
 * for field (test/core/tree-builder.test.ts checks it on random histories):
 * the same revisions, versions, sequence counters, sizes, owners and perms.
 * A mutation that does not apply (a parent missing, removing a missing node)
 * throws the same BugError; the builder is then in an unspecified state (the
 * caller, recovery, abandons it: the log is CORRUPT).
 */
import { assert } from './errors.js';
import { PMap, ownKey } from './pmap.js';
import { compareNames } from './path.js';
import { type Mutation, type Node, mkNode, nextSeq } from './tree.js';
import { type Value, ValueRef } from './value.js';

/** A node being changed: its own fields, its old children map and the changes to it. */
class Draft {
  /** Changed children: a draft, a finished node, or null for a name removed from `base`. */
  kids: Map<string, Draft | Node | null> | undefined = undefined;

  constructor(
    public value: Value,
    readonly createRev: number,
    public modRev: number,
    public version: number,
    public childrenRev: number,
    public seq: number,
    readonly owner: string | undefined,
    public perms: readonly string[] | undefined,
    /** The children before this replay changed them (empty for a node created here). */
    readonly base: PMap<Node>,
    /** Nodes in the subtree of the node this draft started from (1 for a new one). */
    readonly baseSize: number,
  ) {}

  static of(n: Node): Draft {
    return new Draft(n.value, n.createRev, n.modRev, n.version, n.childrenRev, n.seq, n.ephemeralOwner, n.perms, n.children, n.size);
  }

  /**
   * Append mode (a node with no old children, filled in ascending name order
   * with new nodes, as a multi fills a directory): the children in two
   * arrays, no map; `freeze` hands them to `PMap.fromSorted` as they are.
   * Anything else turns them into `kids` (`toMap`).
   */
  names: string[] | undefined = undefined;
  nodes: Node[] | undefined = undefined;

  child(name: string): Draft | Node | undefined {
    if (this.names !== undefined) {
      if (compareNames(this.names[this.names.length - 1]!, name) < 0) return undefined;
      this.toMap();
    }
    const k = this.kids?.get(name);
    if (k !== undefined) return k === null ? undefined : k;
    return this.base.get(name);
  }

  set(name: string, c: Draft | Node): void {
    if (this.kids === undefined && this.base.size === 0 && !(c instanceof Draft)) {
      if (this.names === undefined) {
        this.names = [name];
        this.nodes = [c];
        return;
      }
      if (compareNames(this.names[this.names.length - 1]!, name) < 0) {
        this.names.push(name);
        this.nodes!.push(c);
        return;
      }
    }
    if (this.names !== undefined) this.toMap();
    (this.kids ??= new Map()).set(name, c);
  }

  remove(name: string): void {
    if (this.names !== undefined) this.toMap();
    if (this.base.has(name)) (this.kids ??= new Map()).set(name, null);
    else this.kids?.delete(name);
  }

  private toMap(): void {
    const kids = new Map<string, Draft | Node | null>();
    for (let i = 0; i < this.names!.length; i++) kids.set(this.names![i]!, this.nodes![i]!);
    this.kids = kids;
    this.names = undefined;
    this.nodes = undefined;
  }
}

/** Overlays at least this large (and a sixteenth of the old map) are merged into a new map instead of set one by one. */
const MERGE_MIN = 64;

function splitPath(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

export class TreeBuilder {
  private frozen: Node;
  private draft: Draft | undefined;
  /** The parent draft of the last put, by its path prefix ('/a/b/'): a run of puts into one directory walks once. */
  private lastPrefix: string | undefined;
  private lastParent: Draft | undefined;

  constructor(root: Node) {
    this.frozen = root;
  }

  /** True when mutations were applied since the last `root()`. */
  get dirty(): boolean {
    return this.draft !== undefined;
  }

  /** The tree so far, immutable. Cheap when nothing changed since the last call. */
  root(): Node {
    if (this.draft !== undefined) {
      this.frozen = freeze(this.draft);
      this.draft = undefined;
      this.lastPrefix = undefined;
      this.lastParent = undefined;
    }
    return this.frozen;
  }

  /** Applies one commit's mutations at `rev` (as `applyMutations` would). */
  apply(rev: number, muts: readonly Mutation[]): void {
    for (let i = 0; i < muts.length; i++) {
      const m = muts[i]!;
      if (m.op === 'put') this.put(rev, m.path, m.value, m.ephemeralOwner, m.seq === true);
      else if (m.op === 'del') this.del(rev, m.path);
      else if (m.op === 'perms') this.setPerms(rev, m.path, m.perms);
      else this.move(m.path, m.from, m.value);
    }
  }

  private rootDraft(): Draft {
    return (this.draft ??= Draft.of(this.frozen));
  }

  /** The draft of the node at `segs[0..depth)` (made a draft on the way), asserting it exists. */
  private walk(segs: readonly string[], depth: number): Draft {
    let d = this.rootDraft();
    for (let i = 0; i < depth; i++) {
      const c = d.child(segs[i]!);
      assert(c !== undefined, `parent missing at /${segs.slice(0, i + 1).join('/')}`);
      if (c instanceof Draft) d = c;
      else {
        const nd = Draft.of(c);
        d.set(segs[i]!, nd);
        d = nd;
      }
    }
    return d;
  }

  private parentOf(path: string): { parent: Draft; name: string } {
    const cut = path.lastIndexOf('/');
    const prefix = path.slice(0, cut + 1);
    const name = path.slice(cut + 1);
    if (prefix === this.lastPrefix && this.lastParent !== undefined) return { parent: this.lastParent, name };
    const segs = splitPath(path);
    const parent = this.walk(segs, segs.length - 1);
    this.lastPrefix = prefix;
    this.lastParent = parent;
    return { parent, name };
  }

  private put(rev: number, path: string, value: Value, owner: string | undefined, seq: boolean): void {
    if (path === '/') {
      const r = this.rootDraft();
      r.value = value;
      r.modRev = rev;
      r.version++;
      return;
    }
    const { parent, name } = this.parentOf(path);
    this.putAt(rev, parent, name, false, value, owner, seq);
  }

  /**
   * A put of `name` (ASCII, a string of its own: not a view into a longer
   * string) in the directory `dir` ('/' or '/a/b/'), as `apply` of a put of
   * `dir + name` would do it. For the log's fast replay (storage/wal-decode.ts
   * `CommonReplay`): no path string, and a run of new names in ascending
   * order into one directory is appended without a lookup.
   */
  putIn(rev: number, dir: string, name: string, value: Value): void {
    let parent: Draft;
    if (dir === this.lastPrefix && this.lastParent !== undefined) parent = this.lastParent;
    else {
      const segs = dir === '/' ? [] : dir.slice(1, -1).split('/');
      parent = this.walk(segs, segs.length);
      this.lastPrefix = dir;
      this.lastParent = parent;
    }
    const names = parent.names;
    // ASCII names: the native comparison is compareNames's order.
    if (names !== undefined && names[names.length - 1]! < name) {
      names.push(name);
      parent.nodes!.push(mkNode(value, rev, rev, 1, rev, PMap.empty(), undefined, 0, 1, undefined));
      parent.childrenRev = rev;
      return;
    }
    this.putAt(rev, parent, name, true, value, undefined, false);
  }

  private putAt(rev: number, parent: Draft, name: string, owned: boolean, value: Value, owner: string | undefined, seq: boolean): void {
    const old = parent.child(name);
    if (old === undefined) {
      // A name of its own now (not a view into the path, which would stay alive with it until the freeze).
      parent.set(owned ? name : ownKey(name), mkNode(value, rev, rev, 1, rev, PMap.empty(), owner, 0, 1, undefined));
      parent.childrenRev = rev;
    } else if (old instanceof Draft) {
      old.value = value;
      old.modRev = rev;
      old.version++;
    } else {
      parent.set(name, mkNode(value, old.createRev, rev, old.version + 1, old.childrenRev, old.children, old.ephemeralOwner, old.seq, old.size, old.perms));
    }
    if (seq) parent.seq = nextSeq(parent.seq, name);
  }

  private del(rev: number, path: string): void {
    const segs = splitPath(path);
    assert(segs.length > 0, 'cannot remove the root');
    // The cached parent may be inside the removed subtree.
    this.lastPrefix = undefined;
    this.lastParent = undefined;
    const parent = this.walk(segs, segs.length - 1);
    const name = segs[segs.length - 1]!;
    assert(parent.child(name) !== undefined, `removing a missing node /${segs.join('/')}`);
    parent.remove(name);
    parent.childrenRev = rev;
  }

  private setPerms(rev: number, path: string, perms: readonly string[]): void {
    const p = Object.freeze([...perms]);
    const segs = splitPath(path);
    if (segs.length === 0) {
      const r = this.rootDraft();
      r.perms = p;
      r.modRev = rev;
      return;
    }
    const parent = this.walk(segs, segs.length - 1);
    const name = segs[segs.length - 1]!;
    const old = parent.child(name);
    assert(old !== undefined, `perms of a missing node /${segs.join('/')}`);
    if (old instanceof Draft) {
      old.perms = p;
      old.modRev = rev;
    } else {
      parent.set(name, mkNode(old.value, old.createRev, rev, old.version, old.childrenRev, old.children, old.ephemeralOwner, old.seq, old.size, p));
    }
  }

  private move(path: string, from: { readonly file: number; readonly offset: number }, to: ValueRef): void {
    const segs = splitPath(path);
    // Look first without drafting anything: a move of a node that is gone or rewritten changes nothing.
    let n: Draft | Node | undefined = this.draft ?? this.frozen;
    for (let i = 0; i < segs.length && n !== undefined; i++) n = n instanceof Draft ? n.child(segs[i]!) : n.children.get(segs[i]!);
    if (n === undefined || !(n.value instanceof ValueRef) || n.value.file !== from.file || n.value.offset !== from.offset) return;
    if (segs.length === 0) {
      this.rootDraft().value = to;
      return;
    }
    const parent = this.walk(segs, segs.length - 1);
    const name = segs[segs.length - 1]!;
    const old = parent.child(name)!;
    if (old instanceof Draft) old.value = to;
    else parent.set(name, mkNode(to, old.createRev, old.modRev, old.version, old.childrenRev, old.children, old.ephemeralOwner, old.seq, old.size, old.perms));
  }
}

/** Builds the immutable node of a draft, its changed descendants first. */
function freeze(d: Draft): Node {
  if (d.names !== undefined) {
    let added = 0;
    for (const n of d.nodes!) added += n.size;
    return mkNode(d.value, d.createRev, d.modRev, d.version, d.childrenRev, PMap.fromSorted(d.names, d.nodes!, true), d.owner, d.seq, d.baseSize + added, d.perms);
  }
  const kids = d.kids;
  if (kids === undefined || kids.size === 0) {
    return mkNode(d.value, d.createRev, d.modRev, d.version, d.childrenRev, d.base, d.owner, d.seq, d.baseSize, d.perms);
  }
  let size = d.baseSize;
  const names: string[] = [];
  const nodes: (Node | null)[] = [];
  let sorted = true;
  for (const [name, k] of kids) {
    const n = k === null ? null : k instanceof Draft ? freeze(k) : k;
    const old = d.base.get(name);
    size += (n === null ? 0 : n.size) - (old === undefined ? 0 : old.size);
    if (sorted && names.length > 0 && compareNames(names[names.length - 1]!, name) >= 0) sorted = false;
    names.push(name);
    nodes.push(n);
  }
  let children: PMap<Node>;
  if (d.base.size === 0) {
    // Every change is an addition (nothing to remove from an empty map).
    if (!sorted) sortTogether(names, nodes);
    // Every name here was added by a put, which made it a string of its own.
    children = PMap.fromSorted(names, nodes as Node[], true);
  } else if (names.length >= MERGE_MIN && names.length * 16 >= d.base.size) {
    if (!sorted) sortTogether(names, nodes);
    children = merged(d.base, names, nodes);
  } else {
    children = d.base;
    for (let i = 0; i < names.length; i++) {
      const n = nodes[i]!;
      children = n === null ? children.delete(names[i]!) : children.set(names[i]!, n);
    }
  }
  return mkNode(d.value, d.createRev, d.modRev, d.version, d.childrenRev, children, d.owner, d.seq, size, d.perms);
}

/** Sorts `names` by `compareNames`, moving `nodes` along. */
function sortTogether<T>(names: string[], nodes: T[]): void {
  const order = names.map((_, i) => i).sort((a, b) => compareNames(names[a]!, names[b]!));
  const n2 = order.map((i) => names[i]!);
  const v2 = order.map((i) => nodes[i]!);
  for (let i = 0; i < order.length; i++) {
    names[i] = n2[i]!;
    nodes[i] = v2[i]!;
  }
}

/** `base` with the sorted changes applied (null removes), built in one pass. */
function merged(base: PMap<Node>, names: readonly string[], nodes: readonly (Node | null)[]): PMap<Node> {
  const outK: string[] = [];
  const outV: Node[] = [];
  let j = 0;
  for (const [k, v] of base.entries()) {
    while (j < names.length && compareNames(names[j]!, k) < 0) {
      if (nodes[j] !== null) { outK.push(names[j]!); outV.push(nodes[j]!); }
      j++;
    }
    if (j < names.length && names[j] === k) {
      if (nodes[j] !== null) { outK.push(k); outV.push(nodes[j]!); }
      j++;
    } else {
      outK.push(k);
      outV.push(v);
    }
  }
  for (; j < names.length; j++) if (nodes[j] !== null) { outK.push(names[j]!); outV.push(nodes[j]!); }
  // The old map's keys are its own already; a new name was made so by the put that added it.
  return PMap.fromSorted(outK, outV, true);
}
