/**
 * One bounded page of the lock table in path order (the console's lock
 * view): the first `limit` held locks at paths after a cursor, each with its
 * FIFO waiter queue (at most `maxQueue` drawn, all counted), and the totals
 * from the trie's subtree counts. It walks only the trie nodes up to the last
 * lock shown, never materialises the whole table; a node's children are
 * sorted when visited (O(c log c) for a node of c children on the way).
 */
import { isPrefixPath } from './path.js';
import type { Entry, LockRequest, PathNode, SessionRequests } from './lock-trie.js';

export interface LockPageOptions {
  /** Show locks at paths strictly after this one (segment order); none: from the start. */
  readonly after?: string;
  readonly limit: number;
  readonly maxQueue: number;
  /** Readable subtrees (a principal's grant prefixes); none: everything. */
  readonly prefixes?: readonly string[];
}

export interface LockPageEntry {
  readonly req: LockRequest;
  readonly path: string;
  /** Waiting requests of other sessions at this path, above it or below it, oldest first (at most maxQueue). */
  readonly queue: ReadonlyArray<{ readonly req: LockRequest; readonly path: string }>;
  readonly queued: number;
}

export interface LockPage {
  readonly locks: LockPageEntry[];
  /** A cursor for the next page, when there are more held locks after the last one shown. */
  readonly next: string | undefined;
  /** Held and waiting entries in the readable subtrees. */
  readonly held: number;
  readonly waiting: number;
}

const sum = (a: readonly number[]): number => a[0]! + a[1]! + a[2]! + a[3]!;

function nodeAtPath(root: PathNode, segs: readonly string[]): PathNode | undefined {
  let n: PathNode | undefined = root;
  for (const s of segs) n = n?.children?.get(s);
  return n;
}

const segsOf = (path: string): string[] => path.split('/').filter((s) => s !== '');

function* entries(head: Entry | undefined): Generator<Entry> {
  for (let e = head; e !== undefined; e = e.next) yield e;
}

function waitersAt(n: PathNode): Entry[] {
  const out: Entry[] = [];
  for (let c = 0; c < 4; c++) for (const e of entries(n.waitHead[c])) out.push(e);
  return out;
}

function queueOf(n: PathNode, holder: LockRequest, maxQueue: number): { queue: LockPageEntry['queue']; queued: number } {
  const found: Entry[] = [];
  for (let a: PathNode | undefined = n; a !== undefined; a = a.parent) found.push(...waitersAt(a));
  const below = (m: PathNode): void => {
    if (m.childrenWithWaiters === undefined) return;
    for (const c of m.childrenWithWaiters) {
      found.push(...waitersAt(c));
      below(c);
    }
  };
  below(n);
  const q = found.filter((e) => e.req.session !== holder.session).sort((x, y) => x.req.order - y.req.order);
  return { queue: q.slice(0, maxQueue).map((e) => ({ req: e.req, path: e.node.path })), queued: q.length };
}

export function lockPage(root: PathNode, o: LockPageOptions): LockPage {
  // Totals: subtree counts at the readable prefixes (nested prefixes counted once).
  const tops = o.prefixes === undefined ? [root] : o.prefixes
    .filter((p, i, all) => !all.some((q, j) => j !== i && isPrefixPath(q, p) && (q !== p || j < i)))
    .map((p) => nodeAtPath(root, segsOf(p)))
    .filter((n): n is PathNode => n !== undefined);
  let held = 0;
  let waiting = 0;
  for (const t of tops) {
    held += sum(t.heldInSubtree);
    waiting += sum(t.waitingInSubtree);
  }
  const readable = (path: string): boolean => o.prefixes === undefined || o.prefixes.some((p) => isPrefixPath(p, path));
  const may = (path: string): boolean => o.prefixes === undefined || o.prefixes.some((p) => isPrefixPath(p, path) || isPrefixPath(path, p));
  const cursor = o.after === undefined ? undefined : segsOf(o.after);
  const locks: LockPageEntry[] = [];
  let next: string | undefined;
  // Depth-first in segment order; `onCursor` while the path so far equals the cursor's prefix.
  const visit = (n: PathNode, depth: number, onCursor: boolean): boolean => {
    if (n.parent !== undefined) {
      const path = n.path;
      if (!may(path)) return true;
      const here = !onCursor || cursor === undefined || depth > cursor.length;
      if (here && readable(path)) {
        for (const e of entries(n.holders)) {
          if (e.req.kind === 'write') continue;
          if (locks.length >= o.limit) {
            // A path's holders (shared locks) stay on one page: the cursor is a path, and the next page starts after it.
            let cut = locks.length;
            while (cut > 0 && locks[cut - 1]!.path === path) cut--;
            if (cut === 0) { locks.push({ req: e.req, path, ...queueOf(n, e.req, o.maxQueue) }); continue; }
            locks.length = cut;
            next = locks[cut - 1]!.path;
            return false;
          }
          locks.push({ req: e.req, path, ...queueOf(n, e.req, o.maxQueue) });
        }
      }
    }
    if (n.children === undefined || sum(n.heldInSubtree) - sum(n.heldHere) === 0) return true;
    const lo = onCursor && cursor !== undefined && depth < cursor.length ? cursor[depth]! : undefined;
    const names = [...n.children.keys()].filter((k) => lo === undefined || k >= lo).sort();
    for (const k of names) {
      if (!visit(n.children.get(k)!, depth + 1, lo !== undefined && k === lo)) return false;
    }
    return true;
  };
  visit(root, 0, cursor !== undefined);
  return { locks, next, held, waiting };
}

/** Each session's held locks and waiting requests (at `visible` paths), walking its request lists: no table, no sort. */
export function sessionCounts(sessions: ReadonlyMap<string, SessionRequests>, visible?: (path: string) => boolean): Map<string, { held: number; waiting: number }> {
  const out = new Map<string, { held: number; waiting: number }>();
  for (const [id, rec] of sessions) {
    let held = 0;
    let waiting = 0;
    for (let r = rec.held; r !== undefined; r = r.sessionNext) if (r.kind !== 'write' && (visible === undefined || visible(r.path))) held++;
    for (let r = rec.waiting; r !== undefined; r = r.sessionNext) for (const e of r.entries) if (visible === undefined || visible(e.node.path)) waiting++;
    out.set(id, { held, waiting });
  }
  return out;
}
