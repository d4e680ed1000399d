/**
 * XenStore watches over the store's commits.
 *
 * A XenStore watch on W fires for every change at or below W (creation,
 * deletion, value or permission change), and — when an ancestor of W is
 * removed — with W itself as the event path. The hub is fed by the engine's
 * commit hook, so it sees every commit exactly once, in revision order,
 * after it is durable, whoever made it: XenStore clients, native latchkey
 * sessions, remote clients. Transaction writes therefore fire only when the
 * transaction commits.
 *
 * Matching works on the commit's mutations, not on expanded per-node events:
 * a `put`/`perms` at P matches the watches on P and on its ancestors
 * (O(depth) map lookups); a `del` at P additionally matches every watch
 * strictly below P (a scan of the watched paths, bounded by the per-connection
 * watch limit). A watch gets each event path at most once per commit:
 * XenStore allows spurious events, but not needless floods.
 *
 * Permissions (as oxenstored's `fire_single_watch`): an event at E goes to
 * an unprivileged watcher only if it can read E or E's parent, looked up in
 * the tree after the commit for writes, before it for removals (what was
 * removed), and in both for permission changes — so a domain that just
 * lost access still hears of the change. The initial event is unchecked.
 *
 * Special watches (`@introduceDomain`, `@releaseDomain`) fire on every
 * INTRODUCE of a new domain and every RELEASE (`fireSpecial`), for watchers
 * that can read the root node (oxenstored looks the `@…` path up as a child
 * of the root).
 */
import type { EngineAccess } from '../engine/access.js';
import type { Published } from '../engine/pipeline.js';
import { parentPath, parsePath } from '../core/path.js';
import { type Node, lookup } from '../core/tree.js';
import { presentPath } from './paths.js';
import { type Requester, canAccess, isPrivileged } from './perms.js';

export interface XsWatch {
  /** The store path watched (undefined for special `@…` watches). */
  readonly abs: string | undefined;
  /** The path exactly as the client sent it (UNWATCH matches on it; the initial event carries it). */
  readonly spelled: string;
  readonly relative: boolean;
  readonly home: string;
  readonly token: string;
  readonly sink: WatchEventSink;
}

export interface WatchEventSink {
  /** Sends one WATCH_EVENT (path as the client should see it). */
  watchEvent(path: string, token: string): void;
  /** Whose permissions decide what the watch may see. */
  readonly requester: Requester;
}

/** Whether `who` could read `abs` or its parent in one of `roots`. */
function mayHear(who: Requester, abs: string, roots: readonly Node[]): boolean {
  if (isPrivileged(who)) return true;
  for (const root of roots) {
    const n = lookup(root, parsePath(abs));
    if (n !== undefined && canAccess(who, n.perms, 'read')) return true;
    if (abs !== '/') {
      const p = lookup(root, parsePath(parentPath(abs)));
      if (p !== undefined && canAccess(who, p.perms, 'read')) return true;
    }
  }
  return false;
}

export class WatchHub {
  private readonly byPath = new Map<string, Set<XsWatch>>();
  private readonly special = new Set<XsWatch>();
  private count = 0;
  private readonly unhook: () => void;

  constructor(engine: EngineAccess) {
    this.unhook = engine.onCommit((c) => this.onCommit(c));
  }

  get size(): number {
    return this.count;
  }

  add(w: XsWatch): void {
    if (w.abs === undefined) {
      this.special.add(w);
      return;
    }
    let set = this.byPath.get(w.abs);
    if (set === undefined) this.byPath.set(w.abs, (set = new Set()));
    set.add(w);
    this.count++;
  }

  remove(w: XsWatch): void {
    if (w.abs === undefined) {
      this.special.delete(w);
      return;
    }
    const set = this.byPath.get(w.abs);
    if (set === undefined || !set.delete(w)) return;
    this.count--;
    if (set.size === 0) this.byPath.delete(w.abs);
  }

  close(): void {
    this.unhook();
    this.byPath.clear();
    this.special.clear();
    this.count = 0;
  }

  /** Fires the special watches named `name` (`@introduceDomain`, `@releaseDomain`) for those who can read `root`. */
  fireSpecial(name: string, root: Node): void {
    for (const w of this.special) {
      if (w.spelled === name && (isPrivileged(w.sink.requester) || canAccess(w.sink.requester, root.perms, 'read'))) w.sink.watchEvent(name, w.token);
    }
  }

  private onCommit(c: Published): void {
    if (this.count === 0) return;
    let fired: Map<XsWatch, Set<string>> | undefined;
    const fire = (w: XsWatch, abs: string, roots: readonly Node[]): void => {
      fired ??= new Map();
      let paths = fired.get(w);
      if (paths === undefined) fired.set(w, (paths = new Set()));
      if (paths.has(abs)) return;
      if (!mayHear(w.sink.requester, abs, roots)) return;
      paths.add(abs);
      w.sink.watchEvent(presentPath(abs, w.home, w.relative), w.token);
    };
    const after = [c.after];
    const before = [c.before];
    const both = [c.before, c.after];
    for (const m of c.mutations) {
      const p = m.path;
      const roots = m.op === 'put' ? after : m.op === 'del' ? before : both;
      this.atOrAbove(p, (w) => fire(w, p, roots));
      if (m.op === 'del') {
        const prefix = p === '/' ? '/' : p + '/';
        for (const [wp, set] of this.byPath) {
          if (wp.length > prefix.length && wp.startsWith(prefix)) for (const w of set) fire(w, wp, before);
        }
      }
    }
  }

  /** Calls fn for every watch on `path` or on one of its ancestors. */
  private atOrAbove(path: string, fn: (w: XsWatch) => void): void {
    const visit = (q: string): void => {
      const set = this.byPath.get(q);
      if (set !== undefined) for (const w of set) fn(w);
    };
    visit('/');
    if (path === '/') return;
    for (let i = path.indexOf('/', 1); i !== -1; i = path.indexOf('/', i + 1)) visit(path.slice(0, i));
    visit(path);
  }
}
