/**
 * XenStore operations expressed as latchkey operations, so that the same code
 * runs outside a transaction (on a Workspace over the head, one commit) and
 * inside one (on a TxState, which records every operation and its response
 * for precise validation and replay at TRANSACTION_END).
 *
 * The translation keeps XenStore responses and latchkey responses in step,
 * so that replay's "same responses" is XenStore's "same responses":
 *  - RM is `check(parent exists)` + `delete(recursive)`: the parent check is
 *    XenStore's "ENOENT when the parent is missing too";
 *  - MKDIR is `check(absent)` + `set('')` when absent: an existing node is
 *    left alone;
 *  - WRITE is `set`, which creates missing parents. Nodes it creates inherit
 *    the permissions of their nearest existing ancestor, the creator as
 *    owner when it is unprivileged (written out as `setPerms`; a privileged
 *    creator under an ancestor without explicit perms leaves the default).
 * A node without explicit perms reads as ['n0'] (dom0 owns it, others have
 * no access), xenstored's default.
 *
 * Every operation checks the caller's access first (perms.ts), on the node
 * as the target sees it, and answers EACCES as oxenstored does: READ,
 * DIRECTORY and GET_PERMS need read access to the node; WRITE and MKDIR of
 * an existing node, and RM, need write access to it; creating needs write
 * access to the deepest existing ancestor; SET_PERMS needs ownership. A
 * missing node is ENOENT before any permission is looked at.
 */
import { LatchkeyError } from '../core/errors.js';
import type { ListResult, WriteOp, Workspace } from '../core/ops.js';
import { parentPath, parsePath } from '../core/path.js';
import type { TxState } from '../core/transaction.js';
import { EMPTY_VALUE, type Node, lookup } from '../core/tree.js';
import { bytesOf } from '../core/value.js';
import { xsError } from './errno.js';
import { DEFAULT_PERMS } from './paths.js';
import { type Access, type Requester, canAccess, childPerms, isOwner, isPrivileged, ownerOf, withoutDomain } from './perms.js';

/** Where XenStore reads and writes land: a head Workspace or a transaction. */
export interface XsTarget {
  /** The tree as this target sees it (its own writes included); not recorded. */
  root(): Node;
  get(path: string): Node | undefined;
  list(path: string): ListResult;
  write(op: WriteOp): unknown;
}

class WorkspaceTarget implements XsTarget {
  constructor(private readonly ws: Workspace) {}
  root(): Node { return this.ws.root; }
  get(p: string): Node | undefined { return this.ws.get(p); }
  list(p: string): ListResult { return this.ws.list(p); }
  write(op: WriteOp): unknown { return this.ws.write(op); }
}

class TxTarget implements XsTarget {
  constructor(private readonly tx: TxState) {}
  root(): Node { return this.tx.ws.root; }
  get(p: string): Node | undefined { return this.tx.get(p); }
  list(p: string): ListResult { return this.tx.list(p); }
  write(op: WriteOp): unknown { return this.tx.write(op); }
}

/** A read-only target over a root (plain reads outside transactions). */
class RootTarget implements XsTarget {
  constructor(private readonly r: Node) {}
  root(): Node { return this.r; }
  get(p: string): Node | undefined { return lookup(this.r, parsePath(p)); }
  list(p: string): ListResult {
    const n = lookup(this.r, parsePath(p));
    if (n === undefined) throw xsError('ENOENT');
    return { names: n.children.keys(), more: false };
  }
  write(): unknown { throw new LatchkeyError('INTERNAL', 'write on a read-only XenStore target'); }
}

export function workspaceTarget(ws: Workspace): XsTarget {
  return new WorkspaceTarget(ws);
}

export function txTarget(tx: TxState): XsTarget {
  return new TxTarget(tx);
}

export function rootTarget(root: Node): XsTarget {
  return new RootTarget(root);
}

function isConflict(e: unknown): boolean {
  return e instanceof LatchkeyError && e.code === 'CONFLICT';
}

/** What an operation checks: who asks, and the hooks for quotas and transaction re-checks. */
export interface XsCaller {
  readonly who: Requester;
  /** Called before `n` nodes owned by the caller are created; throws EQUOTA past the entry quota. */
  reserveEntries(n: number): void;
  /** A permission check that passed (in a transaction, re-checked at TRANSACTION_END). */
  checked(path: string, need: Need): void;
}

export type Need = Access | 'owner';

/** Whether `who` may do `need` on a node with `perms`. */
export function allowed(who: Requester, perms: readonly string[] | undefined, need: Need): boolean {
  return need === 'owner' ? isOwner(who, perms) : canAccess(who, perms, need);
}

function demand(c: XsCaller, n: Node, path: string, need: Need): void {
  if (!allowed(c.who, n.perms, need)) throw xsError('EACCES', `${need} access to ${path} denied`);
  c.checked(path, need);
}

/** Checks `need` on the node at `path` if it exists; privileged callers skip the lookup. */
function demandAt(t: XsTarget, c: XsCaller, path: string, need: Need): void {
  if (isPrivileged(c.who)) return;
  const n = lookup(t.root(), parsePath(path));
  if (n !== undefined) demand(c, n, path, need);
}

export function xsRead(t: XsTarget, c: XsCaller, path: string): Uint8Array {
  const n = t.get(path);
  if (n === undefined) throw xsError('ENOENT');
  demand(c, n, path, 'read');
  return bytesOf(n.value);
}

export function xsDirectory(t: XsTarget, c: XsCaller, path: string): string[] {
  demandAt(t, c, path, 'read');
  return t.list(path).names;
}

export function xsGetPerms(t: XsTarget, c: XsCaller, path: string): readonly string[] {
  const n = t.get(path);
  if (n === undefined) throw xsError('ENOENT');
  demand(c, n, path, 'read');
  return n.perms ?? DEFAULT_PERMS;
}

/** The deepest existing node on the way to `segs` and how many segments exist. */
function deepest(root: Node, segs: readonly string[]): { node: Node; existing: number } {
  let n: Node = root;
  let i = 0;
  for (; i < segs.length; i++) {
    const c = n.children.get(segs[i]!);
    if (c === undefined) break;
    n = c;
  }
  return { node: n, existing: i };
}

function pathOf(segs: readonly string[], n: number): string {
  return '/' + segs.slice(0, n).join('/');
}

/**
 * Writes `value` at `path`, creating parents. Writing an existing node needs
 * write access to it; creating needs write access to the deepest existing
 * ancestor (each created parent then belongs to the creator). New nodes
 * inherit permissions (perms.ts `childPerms`).
 */
export function xsWrite(t: XsTarget, c: XsCaller, path: string, value: Uint8Array): void {
  const segs = parsePath(path);
  const { node, existing } = deepest(t.root(), segs);
  if (!isPrivileged(c.who)) demand(c, node, pathOf(segs, existing), 'write');
  const created = segs.length - existing;
  if (created > 0) c.reserveEntries(created);
  t.write({ op: 'set', path, value });
  let perms = node.perms;
  for (let i = existing + 1; i <= segs.length; i++) {
    perms = childPerms(perms, c.who);
    if (perms !== undefined) t.write({ op: 'setPerms', path: pathOf(segs, i), perms });
  }
}

export function xsMkdir(t: XsTarget, c: XsCaller, path: string): void {
  try {
    t.write({ op: 'check', path, exists: false });
  } catch (e) {
    if (!isConflict(e)) throw e;
    // It exists: left unchanged, but only for someone who could write it (as oxenstored).
    demandAt(t, c, path, 'write');
    return;
  }
  xsWrite(t, c, path, EMPTY_VALUE);
}

export function xsRm(t: XsTarget, c: XsCaller, path: string): void {
  if (path === '/') throw xsError('EINVAL', 'the root cannot be removed');
  try {
    t.write({ op: 'check', path: parentPath(path), exists: true });
  } catch (e) {
    if (isConflict(e)) throw xsError('ENOENT');
    throw e;
  }
  demandAt(t, c, path, 'write');
  t.write({ op: 'delete', path, recursive: true });
}

/** Needs ownership; only a privileged caller may give the node another owner. */
export function xsSetPerms(t: XsTarget, c: XsCaller, path: string, perms: readonly string[]): void {
  const n = isPrivileged(c.who) ? undefined : lookup(t.root(), parsePath(path));
  if (n !== undefined) {
    if (!isPrivileged(c.who) && ownerOf(perms) !== ownerOf(n.perms)) throw xsError('EACCES', 'only dom0 may change a node\'s owner');
    demand(c, n, path, 'owner');
  }
  t.write({ op: 'setPerms', path, perms });
}

/**
 * What RELEASE of `domid` changes (oxenstored's `reset_permissions`): nodes
 * it owns are removed with their subtrees, and entries naming it are
 * dropped from every other node's permissions. The root is never removed.
 */
export function releaseChanges(root: Node, domid: number): { deletes: string[]; perms: Array<[string, readonly string[]]> } {
  const deletes: string[] = [];
  const perms: Array<[string, readonly string[]]> = [];
  const visit = (n: Node, path: string): void => {
    if (n.perms !== undefined) {
      const kept = withoutDomain(n.perms, domid);
      if (kept === undefined && path !== '/') {
        deletes.push(path);
        return;
      }
      if (kept !== undefined && kept !== n.perms) perms.push([path, kept]);
    }
    for (const [name, c] of n.children.entries()) visit(c, path === '/' ? '/' + name : path + '/' + name);
  };
  visit(root, '/');
  return { deletes, perms };
}
