/**
 * From a workspace to one etcd Txn.
 *
 * A commit is computed on the mirror (a Workspace over a snapshot at etcd
 * revision `baseRev`) and sent as one Txn whose compares hold exactly when
 * every key the computation depended on is as it was in that snapshot:
 *  - each node read (get, exists, the target of a write, a `check` op, a
 *    delete or atomic op that changed nothing, the nearest existing
 *    ancestor of each node a write creates): its key's mod_revision equals
 *    the snapshot's, 0 if absent. The ancestor's mod_revision pins its
 *    existence, value and permissions (a permissions change rewrites the
 *    node key too): XenStore decides a creation by the ancestor's
 *    permissions and copies them into the new node;
 *  - each directory listed or whose children a write changed: its node
 *    key's create_revision (same directory, not a new one of that name), and
 *    its children record's mod_revision not after the snapshot's
 *    childrenRev; and each ephemeral child in the listing still there (etcd
 *    deletes an expired lease's keys without touching the record);
 *  - the caller's extra compares (locks: the lock keys a write was checked
 *    against).
 * The success branch writes the diff between snapshot and workspace: one put
 * or delete per changed node key, one put per changed children record, one
 * per changed permissions key (P/p/PATH, XenStore's), and
 * the revision key P/r (so readers can find the newest revision of the
 * store with one range). etcd refuses a Txn touching a key twice; a diff
 * touches each key once by construction.
 */
import type { ICompare, IRequestOp } from 'etcd3';
import type { Recorded } from '../core/transaction.js';
import { type Node, lookup, walkTree } from '../core/tree.js';
import { type AtomicOp, type CheckOptions, type DeleteOptions, type ListResult, Workspace } from '../core/ops.js';
import { parsePath } from '../core/path.js';
import { LatchkeyError } from '../core/errors.js';
import { type Keys, parentOf } from './keys.js';

export interface TxnPlan {
  compare: ICompare[];
  success: IRequestOp[];
  /** True when the plan writes nothing (a read-only transaction, a no-op). */
  empty: boolean;
}

const b = (s: string): Buffer => Buffer.from(s);

function nodeAt(root: Node, path: string): Node | undefined {
  return lookup(root, parsePath(path));
}

function samePerms(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  return a.every((x, i) => x === b[i]);
}

/**
 * A workspace that remembers what its computation read without writing it,
 * so a plain write's Txn can pin it (PlanBuilder.diff): nodes looked at
 * (`get`), checked (`check` ops of a multi, XenStore's MKDIR and RM),
 * deleted or changed by an atomic op, whether or not anything was written
 * (a delete of an absent node, an `add` of 0 answer from the node as it
 * was), and directories listed. What a write does write is compared anyway.
 */
export class PinnedWorkspace extends Workspace {
  readonly reads = new Set<string>();
  readonly listed = new Map<string, readonly string[]>();

  override get(path: string): Node | undefined {
    this.reads.add(path);
    return super.get(path);
  }

  override list(path: string, after?: string, limit?: number): ListResult {
    const r = super.list(path, after, limit);
    this.listed.set(path, [...(this.listed.get(path) ?? []), ...r.names]);
    return r;
  }

  override check(path: string, o: CheckOptions): void {
    this.reads.add(path);
    super.check(path, o);
  }

  override delete(path: string, o: DeleteOptions = {}): boolean {
    this.reads.add(path);
    return super.delete(path, o);
  }

  override atomic(op: AtomicOp): number | boolean | undefined {
    this.reads.add(op.path);
    return super.atomic(op);
  }
}

export class PlanBuilder {
  private readonly compares = new Map<string, ICompare>();
  private readonly ops: IRequestOp[] = [];
  private readonly written = new Set<string>();

  constructor(private readonly keys: Keys, private readonly base: Node) {}

  /** The node at `path` is as in the snapshot (mod_revision, or absent). */
  node(path: string): void {
    const k = this.keys.node(path);
    if (this.compares.has(k)) return;
    const n = nodeAt(this.base, path);
    // The root without a key (modRev 0) compares mod_revision 0: it fails once the root is written (a value, permissions).
    this.compares.set(k, { key: b(k), target: 'Mod', result: 'Equal', mod_revision: n?.modRev ?? 0 });
  }

  /** The directory's list of children is as in the snapshot (see the header). */
  children(path: string, listed?: readonly string[]): void {
    const n = nodeAt(this.base, path);
    if (n === undefined) {
      this.node(path);
      return;
    }
    const nk = this.keys.node(path);
    const ck = 'c:' + this.keys.children(path);
    if (path !== '/' && !this.compares.has(nk)) this.compares.set('create:' + nk, { key: b(nk), target: 'Create', result: 'Equal', create_revision: n.createRev });
    if (!this.compares.has(ck)) this.compares.set(ck, { key: b(this.keys.children(path)), target: 'Mod', result: 'Less', mod_revision: n.childrenRev + 1 });
    for (const name of listed ?? []) {
      const child = n.children.get(name);
      if (child?.ephemeralOwner !== undefined) this.node(path === '/' ? '/' + name : path + '/' + name);
    }
  }

  /** The directory is the node it was in the snapshot (not deleted, not deleted and made again). */
  private sameDir(path: string, n: Node): void {
    const nk = this.keys.node(path);
    if (!this.compares.has(nk)) this.compares.set('create:' + nk, { key: b(nk), target: 'Create', result: 'Equal', create_revision: n.createRev });
  }

  extra(key: string, c: ICompare): void {
    this.compares.set('x:' + key, c);
  }

  /** Compares for a transaction's record: exactly what it read. */
  record(record: readonly Recorded[]): void {
    for (const r of record) {
      if (r.kind === 'get') this.node(r.path);
      else if (r.kind === 'list') {
        const dir = nodeAt(this.base, r.path);
        const names = typeof r.result === 'string' ? [] : r.result.names;
        const more = dir !== undefined && typeof r.result !== 'string' && r.result.more ? dir.children.keys(names.at(-1), 1) : [];
        this.children(r.path, [...names, ...more]);
      } else {
        // A write's answer (created, deleted, EXISTS, a failed add…) depends on its node as it was.
        this.node(r.op.path);
      }
    }
  }

  /**
   * The diff between the snapshot and the workspace, with the compares it
   * depends on; for a PinnedWorkspace, also what its computation read.
   */
  diff(ws: Workspace, leaseOf: (owner: string) => string): void {
    if (ws instanceof PinnedWorkspace) {
      for (const p of ws.reads) this.node(p);
      for (const [p, names] of ws.listed) this.children(p, names);
    }
    const dirty: string[] = [];
    const seen = new Set<string>();
    const add = (p: string): void => {
      if (!seen.has(p)) {
        seen.add(p);
        dirty.push(p);
      }
    };
    for (const m of ws.mutations) {
      if (m.op === 'del') {
        const old = nodeAt(this.base, m.path);
        if (old !== undefined) for (const [p] of walkTree(old, m.path)) add(p);
        else add(m.path);
      } else {
        add(m.path);
      }
    }
    const dirs = new Set<string>();
    for (const p of dirty) {
      const before = nodeAt(this.base, p);
      const after = nodeAt(ws.root, p);
      this.node(p);
      const k = this.keys.node(p);
      if (after === undefined) {
        if (before === undefined) continue;
        // A child created under it since the snapshot would be left without a parent: its children record must not have moved.
        this.children(p);
        this.del(k);
        this.del(this.keys.children(p));
        if (before.perms !== undefined) this.del(this.keys.perms(p));
        if (p !== '/') dirs.add(parentOf(p));
      } else if (after.modRev === ws.rev || before === undefined) {
        const lease = after.ephemeralOwner === undefined ? '0' : leaseOf(after.ephemeralOwner);
        const v = after.value;
        // Values are bytes here: out-of-line values (ValueRef) exist only in the engine's storage.
        if (!(v instanceof Uint8Array)) throw new LatchkeyError('INTERNAL', `latchkey bug: an out-of-line value at ${p} in an etcd commit`);
        this.put(k, Buffer.from(v.buffer, v.byteOffset, v.byteLength), lease);
        if (before === undefined) {
          this.put(this.keys.children(p), b('{"seq":0}'), '0');
          if (p !== '/') {
            const d = parentOf(p);
            dirs.add(d);
            // The nearest existing ancestor the creation relied on (see the header): as it was, permissions included.
            if (nodeAt(this.base, d) !== undefined) this.node(d);
          }
        }
        // XenStore permissions: their own key, with the node's lease (an expired ephemeral takes them along).
        if (!samePerms(before?.perms, after.perms)) {
          if (after.perms !== undefined) this.put(this.keys.perms(p), b(JSON.stringify(after.perms)), lease);
          else if (before?.perms !== undefined) this.del(this.keys.perms(p));
        }
      }
    }
    for (const d of dirs) {
      const after = nodeAt(ws.root, d);
      if (after === undefined) continue; // deleted with its parent
      const before = nodeAt(this.base, d);
      if (before !== undefined && d !== '/' && after.seq === before.seq && !this.written.has(this.keys.children(d))) {
        // Children added or removed by name, the counter unchanged: the record's value is not ours to set, only
        // its mod_revision to move (ignore_value keeps whatever a concurrent commit wrote). Such commits under one
        // directory do not exclude each other: each child's own compare (absent, or its mod_revision) and the
        // directory's create_revision are what they depend on. Without this, N writers creating children of one
        // directory (300 VMs under /local/domain) serialise on its record: O(N²) failed Txns under load.
        this.sameDir(d, before);
        this.ops.push({ request_put: { key: b(this.keys.children(d)), ignore_value: true } });
        this.written.add(this.keys.children(d));
        continue;
      }
      this.children(d);
      if (!this.written.has(this.keys.children(d))) this.put(this.keys.children(d), b(JSON.stringify({ seq: after.seq })), '0');
      else this.replaceChildren(d, after.seq);
      if (before !== undefined) this.node(d);
    }
  }

  private replaceChildren(dir: string, seq: number): void {
    const k = this.keys.children(dir);
    for (const op of this.ops) {
      if (op.request_put !== undefined && op.request_put.key!.toString() === k) op.request_put.value = b(JSON.stringify({ seq }));
    }
  }

  put(key: string, value: Buffer, lease: string): void {
    this.written.add(key);
    this.ops.push({ request_put: { key: b(key), value, lease } });
  }

  del(key: string): void {
    this.written.add(key);
    this.ops.push({ request_delete_range: { key: b(key) } });
  }

  get writes(): number {
    return this.ops.length;
  }

  empty(): boolean {
    return this.ops.length === 0;
  }

  build(revKey: string): TxnPlan {
    const empty = this.ops.length === 0;
    const success = [...this.ops];
    if (!empty) success.push({ request_put: { key: b(revKey), value: b('') } });
    return { compare: [...this.compares.values()], success, empty };
  }
}
