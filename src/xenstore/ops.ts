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
 *    the permissions of their nearest existing ancestor, as in xenstored
 *    (written out as `setPerms`, only when that ancestor has explicit perms).
 * A node without explicit perms reads as ['n0'] (dom0 owns it, others have
 * no access), xenstored's default.
 */
import { LatchkeyError } from '../core/errors.js';
import type { ListResult, WriteOp, Workspace } from '../core/ops.js';
import { parentPath, parsePath } from '../core/path.js';
import type { TxState } from '../core/transaction.js';
import { EMPTY_VALUE, type Node, lookup } from '../core/tree.js';
import { xsError } from './errno.js';
import { DEFAULT_PERMS } from './paths.js';

/** Where XenStore reads and writes land: a head Workspace or a transaction. */
export interface XsTarget {
  /** The tree as this target sees it (its own writes included); not recorded. */
  root(): Node;
  get(path: string): Node | undefined;
  list(path: string): ListResult;
  write(op: WriteOp): unknown;
}

export function workspaceTarget(ws: Workspace): XsTarget {
  return {
    root: () => ws.root,
    get: (p) => ws.get(p),
    list: (p) => ws.list(p),
    write: (op) => ws.write(op),
  };
}

export function txTarget(tx: TxState): XsTarget {
  return {
    root: () => tx.ws.root,
    get: (p) => tx.get(p),
    list: (p) => tx.list(p),
    write: (op) => tx.write(op),
  };
}

/** A read-only target over a root (plain reads outside transactions). */
export function rootTarget(root: Node): XsTarget {
  return {
    root: () => root,
    get: (p) => lookup(root, parsePath(p)),
    list: (p) => {
      const n = lookup(root, parsePath(p));
      if (n === undefined) throw xsError('ENOENT');
      return { names: n.children.keys(), more: false };
    },
    write: () => { throw new LatchkeyError('INTERNAL', 'write on a read-only XenStore target'); },
  };
}

function isConflict(e: unknown): boolean {
  return e instanceof LatchkeyError && e.code === 'CONFLICT';
}

export function xsRead(t: XsTarget, path: string): Uint8Array {
  const n = t.get(path);
  if (n === undefined) throw xsError('ENOENT');
  return n.value;
}

export function xsDirectory(t: XsTarget, path: string): string[] {
  return t.list(path).names;
}

export function xsGetPerms(t: XsTarget, path: string): readonly string[] {
  const n = t.get(path);
  if (n === undefined) throw xsError('ENOENT');
  return n.perms ?? DEFAULT_PERMS;
}

/** The explicit perms new nodes under `path` inherit, or undefined (the default). */
function inheritedPerms(root: Node, segs: readonly string[]): { perms: readonly string[] | undefined; existing: number } {
  let n: Node = root;
  let perms = root.perms;
  let i = 0;
  for (; i < segs.length; i++) {
    const c = n.children.get(segs[i]!);
    if (c === undefined) break;
    n = c;
    perms = c.perms;
  }
  return { perms, existing: i };
}

/** Writes `value` at `path`, creating parents; new nodes inherit perms. */
export function xsWrite(t: XsTarget, path: string, value: Uint8Array): void {
  const segs = parsePath(path);
  const { perms, existing } = inheritedPerms(t.root(), segs);
  t.write({ op: 'set', path, value });
  if (perms === undefined) return;
  for (let i = existing + 1; i <= segs.length; i++) {
    t.write({ op: 'setPerms', path: '/' + segs.slice(0, i).join('/'), perms });
  }
}

export function xsMkdir(t: XsTarget, path: string): void {
  try {
    t.write({ op: 'check', path, exists: false });
  } catch (e) {
    if (isConflict(e)) return; // it exists: left unchanged
    throw e;
  }
  xsWrite(t, path, EMPTY_VALUE);
}

export function xsRm(t: XsTarget, path: string): void {
  if (path === '/') throw xsError('EINVAL', 'the root cannot be removed');
  try {
    t.write({ op: 'check', path: parentPath(path), exists: true });
  } catch (e) {
    if (isConflict(e)) throw xsError('ENOENT');
    throw e;
  }
  t.write({ op: 'delete', path, recursive: true });
}

export function xsSetPerms(t: XsTarget, path: string, perms: readonly string[]): void {
  t.write({ op: 'setPerms', path, perms });
}
