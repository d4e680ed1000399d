/**
 * XenStore permissions, pure: who may read, write or re-permission a node.
 *
 * A node's permissions are `<letter><domid>` entries (n none, r read, w
 * write, b both). The first entry names the owner and, through its letter,
 * the access of every domain not listed; later entries are per-domain
 * overrides. A node without explicit permissions has `n0` (dom0 owns it,
 * nobody else may touch it).
 *
 * The rules, as docs/misc/xenstore.txt describes them and oxenstored
 * (perms.ml) enforces them:
 *  - a privileged requester bypasses every check: dom0, or a domain whose
 *    SET_TARGET target is dom0;
 *  - the owner has full access; a requester is the owner when its domid or
 *    its target's domid is the node's owner (a device model acts for its
 *    target);
 *  - otherwise access is granted when the entry for the requester's domid,
 *    or for its target's, or the default when unlisted, includes the access;
 *  - changing permissions needs ownership, and only a privileged requester
 *    may hand ownership to another domain.
 * A node created by an unprivileged domain inherits its parent's
 * permissions with the creator as owner (as C xenstored; oxenstored keeps
 * the parent's owner, see docs/xenstore.md); a privileged creator's nodes
 * inherit the parent's permissions unchanged.
 */
import { DEFAULT_PERMS } from './paths.js';

/** Who is asking: a connection's domain and the domain it acts for (SET_TARGET). */
export interface Requester {
  readonly domid: number;
  readonly target: number | undefined;
}

export const DOM0: Requester = Object.freeze({ domid: 0, target: undefined });

export type Access = 'read' | 'write';

export function isPrivileged(r: Requester): boolean {
  return r.domid === 0 || r.target === 0;
}

/** The owner named by a node's permissions (`perms[0]`), 0 for the default. */
export function ownerOf(perms: readonly string[] | undefined): number {
  const first = (perms ?? DEFAULT_PERMS)[0];
  return first === undefined ? 0 : Number(first.slice(1));
}

function grants(letter: string, access: Access): boolean {
  return letter === 'b' || (access === 'read' ? letter === 'r' : letter === 'w');
}

function letterFor(perms: readonly string[], domid: number): string {
  for (let i = 1; i < perms.length; i++) {
    const e = perms[i]!;
    if (Number(e.slice(1)) === domid) return e[0]!;
  }
  return perms[0]![0]!;
}

export function isOwner(r: Requester, perms: readonly string[] | undefined): boolean {
  if (isPrivileged(r)) return true;
  const owner = ownerOf(perms);
  return r.domid === owner || r.target === owner;
}

/** Whether `r` has `access` to a node with these permissions. */
export function canAccess(r: Requester, perms: readonly string[] | undefined, access: Access): boolean {
  if (isOwner(r, perms)) return true;
  const p = perms ?? DEFAULT_PERMS;
  if (grants(letterFor(p, r.domid), access)) return true;
  return r.target !== undefined && grants(letterFor(p, r.target), access);
}

/** The permissions of a node `creator` makes under a parent with `parent` permissions; undefined keeps the default. */
export function childPerms(parent: readonly string[] | undefined, creator: Requester): readonly string[] | undefined {
  if (isPrivileged(creator)) return parent;
  const p = parent ?? DEFAULT_PERMS;
  return [p[0]![0]! + String(creator.domid), ...p.slice(1)];
}

/**
 * The permissions left once `domid` is gone (RELEASE): its entries removed;
 * undefined when it owned the node (the node is removed, as oxenstored does).
 */
export function withoutDomain(perms: readonly string[], domid: number): readonly string[] | undefined {
  if (ownerOf(perms) === domid) return undefined;
  const kept = perms.filter((e, i) => i === 0 || Number(e.slice(1)) !== domid);
  return kept.length === perms.length ? perms : kept;
}
