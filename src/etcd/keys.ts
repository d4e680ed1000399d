/**
 * The key layout of a latchkey store inside etcd, under a prefix P (see
 * docs/etcd.md). Everything a store keeps is a key under P:
 *
 *   P/n/DDD/PATH   a node: its value is the node's bytes; etcd's
 *                  create_revision, mod_revision and version are the node's
 *                  createRev, modRev and version; its lease is the owning
 *                  session's (ephemeral nodes). DDD is the depth, three
 *                  digits, so the children of a directory are one range:
 *                  P/n/<depth+1><dir>/ (in byte order, which is latchkey's).
 *   P/c/PATH       a directory's children record: written (with the
 *                  sequential counter) in every commit that adds or removes
 *                  a child, so its mod_revision is the childrenRev.
 *   P/q/ID         a lock request (queue entry), with the session's lease.
 *   P/h/ID         the held marker of a granted lock, without a lease: it
 *                  outlives a holder whose lease expired (owner died).
 *   P/d/PATH       an owner-died taint, until markConsistent / resetLock.
 *   P/u/PATH       an unrecoverable mark, until resetLock.
 *   P/s/ID         a session's record (its name), with its lease.
 *   P/p/PATH       a node's XenStore permissions (JSON array of strings),
 *                  only when it has some; written and deleted with the node,
 *                  with its lease.
 *   P/x/DOMID      a XenStore guest domain introduced (JSON {m,p,t?,r?}:
 *                  mfn, event channel, target, releasing), without a lease:
 *                  the domain table every front-end serves.
 */
export type KeyKind = 'n' | 'c' | 'q' | 'h' | 'd' | 'u' | 's' | 'p' | 'x';

export class Keys {
  readonly root: string;
  constructor(prefix: string) {
    this.root = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  }

  node(path: string): string {
    return `${this.root}/n/${String(depthOf(path)).padStart(3, '0')}${path}`;
  }

  children(path: string): string {
    return `${this.root}/c${path}`;
  }

  perms(path: string): string {
    return `${this.root}/p${path}`;
  }

  of(kind: KeyKind, rest: string): string {
    return `${this.root}/${kind}${kind === 'n' || kind === 'c' || kind === 'd' || kind === 'u' || kind === 'p' ? '' : '/'}${rest}`;
  }

  /** The whole store: [P/, P0). */
  get all(): [string, string] {
    return [`${this.root}/`, `${this.root}0`];
  }

  /** The range holding every key of one kind. */
  range(kind: KeyKind): [string, string] {
    const k = `${this.root}/${kind}`;
    return [k, k + '\u{10FFFF}'];
  }

  /** Kind and remainder (a path for n, c, d, u; an id for q, h, s) of a key under the prefix, or undefined. */
  parse(key: string): { kind: KeyKind; rest: string } | undefined {
    if (!key.startsWith(this.root + '/')) return undefined;
    const kind = key[this.root.length + 1] as KeyKind;
    const tail = key.slice(this.root.length + 2);
    switch (kind) {
      case 'n': return { kind, rest: tail.slice(4) };
      case 'c': case 'd': case 'u': case 'p': return { kind, rest: tail };
      case 'q': case 'h': case 's': case 'x': return { kind, rest: tail.slice(1) };
      default: return undefined;
    }
  }
}

export function depthOf(path: string): number {
  if (path === '/') return 0;
  let d = 0;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) d++;
  return d;
}

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** True when `a` is `b` or one of its ancestors. */
export function isAncestorOrSelf(a: string, b: string): boolean {
  return a === b || a === '/' || b.startsWith(a + '/');
}

export function overlaps(a: string, b: string): boolean {
  return isAncestorOrSelf(a, b) || isAncestorOrSelf(b, a);
}
