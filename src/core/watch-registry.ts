/**
 * The watch registry: which watchers see which commits, and the history
 * window they can resume from. Pure: the engine feeds it each commit once it
 * is durable, in revision order (its commit hook), and it hands each
 * matching watcher that revision's events in one call.
 *
 * Events. A commit's mutations become events in mutation order: a `put` is
 * one `put` event carrying the new value; a `del` of a subtree is one
 * `delete` event per node that existed in it (read from the root *before*
 * the commit), parents before children. So a watcher sees every node that
 * changed, whatever the shape of the write.
 *
 * Scope. A plain watch on P sees events for P only; a recursive one sees P
 * and everything below it. Matching walks the event path's ancestors: O(depth)
 * map lookups per event, however many watchers there are.
 *
 * History. The registry keeps the last commits (their mutations and the root
 * before them: O(1) each thanks to structural sharing) so a watcher can start
 * at an earlier revision. Events are expanded from that lazily, only when a
 * watcher asks. The window is bounded by a count of events and by bytes of
 * values; the oldest commits leave first. Asking for a revision older than
 * the window fails with NOT_FOUND and `info.compacted: true` — the caller
 * must re-read the state and watch from its revision.
 *
 * Gaplessness is the engine's side of the contract (hooks in revision
 * order, each revision once); the registry asserts it.
 */
import { LatchkeyError, assert, invalidArgument } from './errors.js';
import { parsePath } from './path.js';
import { type Mutation, type Node, lookup } from './tree.js';
import { ValueRef, bytesOf } from './value.js';

export interface WatchEventData {
  readonly type: 'put' | 'delete';
  readonly path: string;
  readonly revision: number;
  /** The node's value (shared, immutable: copy before handing it to users). */
  readonly value?: Uint8Array;
}

export interface WatchSink {
  /** One call per revision with this watcher's events of it, in order; never empty. */
  deliver(revision: number, events: WatchEventData[]): void;
  /** The registry is closing (the store closed): no more events will come. */
  end(error: LatchkeyError): void;
}

/** The history window's default bounds (recovery keeps no more of the log tail than these let through). */
export const DEFAULT_HISTORY_EVENTS = 100_000;
export const DEFAULT_HISTORY_BYTES = 64 * 1024 * 1024;

export interface HistoryLimits {
  /** Events (nodes changed) kept for resuming (default 100,000). */
  maxEvents?: number;
  /** Bytes of values and paths kept for resuming (default 64 MiB). */
  maxBytes?: number;
}

interface Commit {
  readonly rev: number;
  readonly mutations: readonly Mutation[];
  /**
   * The root before the commit, kept only when its events need it (a delete
   * expands into the nodes of the subtree, a perms change reports the value).
   * A commit of puts alone keeps none: holding every commit's old root for
   * the whole window kept its path copies alive and made GC a third of a write.
   */
  readonly before: Node | undefined;
  readonly events: number;
  readonly bytes: number;
}

type PutMutation = Extract<Mutation, { op: 'put' }>;

/**
 * A history slot: a commit of one put (what a plain set makes, most
 * commits) is kept as its mutation alone, its revision known from its place
 * in the window (revisions are contiguous) and its counts from the put; any
 * other commit as a `Commit`. The window holds up to 100,000 events: an
 * entry object and a mutations array for each set, all promoted to the old
 * generation before they age out, were a quarter of the CPU of a batched
 * set (docs/architecture.md, "Where a set's time goes").
 */
type Slot = Commit | PutMutation;

function isPut(s: Slot): s is PutMutation {
  return (s as Partial<PutMutation>).op === 'put';
}

interface Watcher {
  readonly path: string;
  readonly recursive: boolean;
  readonly sink: WatchSink;
  /** Live events below this revision are not delivered (they came from history, or precede fromRevision). */
  readonly from: number;
}

export interface Subscription {
  /** The first revision this watch delivers. */
  readonly revision: number;
  cancel(): void;
}

function ancestorsAndSelf(path: string, fn: (p: string) => void): void {
  fn('/');
  if (path === '/') return;
  for (let i = path.indexOf('/', 1); i !== -1; i = path.indexOf('/', i + 1)) fn(path.slice(0, i));
  fn(path);
}

function subtreeSize(before: Node, path: string): number {
  return lookup(before, path === '/' ? [] : path.slice(1).split('/'))?.size ?? 0;
}

/** Expands one commit into its events, in mutation order (a deleted subtree parents first). */
export function eventsOf(rev: number, mutations: readonly Mutation[], before: Node | undefined, want?: (path: string) => boolean): WatchEventData[] {
  const out: WatchEventData[] = [];
  // Nodes put earlier in this same commit and then deleted: read the tree as
  // the commit went, not only as it was before it. Rare; handled by re-walking
  // from `before` with the puts applied is costly, so track the put paths.
  let putInCommit: Set<string> | undefined;
  for (const m of mutations) {
    if (m.op === 'put') {
      if (want === undefined || want(m.path)) out.push({ type: 'put', path: m.path, revision: rev, value: bytesOf(m.value) });
      (putInCommit ??= new Set()).add(m.path);
      continue;
    }
    if (m.op === 'perms') {
      // A metadata change is reported as a put of the node's (unchanged) value.
      if (want === undefined || want(m.path)) {
        let value: Uint8Array | undefined;
        for (let i = mutations.indexOf(m) - 1; i >= 0 && value === undefined; i--) {
          const earlier = mutations[i]!;
          if (earlier.op === 'put' && earlier.path === m.path) value = bytesOf(earlier.value);
        }
        const held = before && lookup(before, m.path === '/' ? [] : m.path.slice(1).split('/'))?.value;
        value ??= held === undefined ? new Uint8Array(0) : bytesOf(held);
        out.push({ type: 'put', path: m.path, revision: rev, value });
      }
      continue;
    }
    const segs = m.path === '/' ? [] : m.path.slice(1).split('/');
    const gone = before === undefined ? undefined : lookup(before, segs);
    const seen = new Set<string>();
    if (gone !== undefined) {
      walk(gone, m.path, (p) => {
        seen.add(p);
        if (want === undefined || want(p)) out.push({ type: 'delete', path: p, revision: rev });
      });
    }
    if (putInCommit !== undefined) {
      for (const p of putInCommit) {
        if (!seen.has(p) && (p === m.path || p.startsWith(m.path === '/' ? '/' : m.path + '/'))) {
          if (want === undefined || want(p)) out.push({ type: 'delete', path: p, revision: rev });
        }
      }
      for (const p of [...putInCommit]) if (p === m.path || p.startsWith(m.path + '/')) putInCommit.delete(p);
    }
  }
  return out;
}

function walk(n: Node, path: string, fn: (p: string) => void): void {
  fn(path);
  for (const [name, child] of n.children.entries()) walk(child, path === '/' ? '/' + name : path + '/' + name, fn);
}

export class WatchRegistry {
  private readonly exact = new Map<string, Set<Watcher>>();
  private readonly recursive = new Map<string, Set<Watcher>>();
  private watchers = 0;
  private readonly history: Slot[] = [];
  private historyHead = 0;
  private historyEvents = 0;
  private historyBytes = 0;
  /** Every revision >= this one (up to head) is in the history window. */
  private oldest: number;
  private head: number;
  private readonly maxEvents: number;
  private readonly maxBytes: number;

  constructor(headRev: number, limits: HistoryLimits = {}) {
    this.head = headRev;
    this.oldest = headRev + 1;
    this.maxEvents = limits.maxEvents ?? DEFAULT_HISTORY_EVENTS;
    this.maxBytes = limits.maxBytes ?? DEFAULT_HISTORY_BYTES;
  }

  /** The oldest revision a new watch may start from. */
  get oldestRevision(): number {
    return this.oldest;
  }

  /**
   * The value files a watch resuming from the history window may read:
   * refs in its puts (commits recalled from the log hold refs, not bytes)
   * and the old value a perms change reports (looked up in its `before`
   * tree). Value compaction keeps these files (engine/compaction.ts).
   */
  valueFilesHeld(): Set<number> {
    const files = new Set<number>();
    for (let i = this.historyHead; i < this.history.length; i++) {
      const c = this.commitAt(i);
      for (const m of c.mutations) {
        if (m.op === 'put') {
          if (m.value instanceof ValueRef) files.add(m.value.file);
        } else if (m.op === 'perms' && c.before !== undefined) {
          const v = lookup(c.before, m.path === '/' ? [] : m.path.slice(1).split('/'))?.value;
          if (v instanceof ValueRef) files.add(v.file);
        }
      }
    }
    return files;
  }

  get revision(): number {
    return this.head;
  }

  get size(): number {
    return this.watchers;
  }

  /**
   * Registers a watcher. With `fromRevision`, first delivers (synchronously,
   * through `sink`) the history from that revision. Returns the first revision
   * it will deliver.
   */
  subscribe(path: string, recursive: boolean, fromRevision: number | undefined, sink: WatchSink): Subscription {
    parsePath(path);
    if (fromRevision !== undefined && (!Number.isSafeInteger(fromRevision) || fromRevision < 0)) {
      throw invalidArgument('watch: fromRevision must be a non-negative integer');
    }
    let from = fromRevision === undefined ? this.head + 1 : Math.max(1, fromRevision);
    if (from < this.oldest) {
      throw new LatchkeyError('COMPACTED', `watch: revision ${from} is compacted; the history window starts at ${this.oldest}`, {
        path, info: { compacted: true, oldestRevision: this.oldest, fromRevision: from },
      });
    }
    const match = matcher(path, recursive);
    for (let i = this.historyHead + Math.max(0, from - this.oldest); i < this.history.length; i++) {
      const c = this.commitAt(i);
      if (c.rev < from) continue;
      const evs = eventsOf(c.rev, c.mutations, c.before, match);
      if (evs.length > 0) sink.deliver(c.rev, evs);
    }
    from = Math.max(from, this.head + 1);
    const w: Watcher = { path, recursive, sink, from };
    const map = recursive ? this.recursive : this.exact;
    let set = map.get(path);
    if (set === undefined) map.set(path, (set = new Set()));
    set.add(w);
    this.watchers++;
    let live = true;
    return {
      revision: fromRevision === undefined ? this.head + 1 : Math.max(1, fromRevision),
      cancel: () => {
        if (!live) return;
        live = false;
        const s = map.get(path);
        if (s === undefined || !s.delete(w)) return; // already ended by endAll
        this.watchers--;
        if (s.size === 0) map.delete(path);
      },
    };
  }

  /** Ends every watch (the store is closing). */
  endAll(error: LatchkeyError): void {
    const all = [...this.exact.values(), ...this.recursive.values()].flatMap((s) => [...s]);
    this.exact.clear();
    this.recursive.clear();
    this.watchers = 0;
    // Nobody can resume from a closed store: let the window's commits (and the values they hold) go.
    this.history.length = 0;
    this.historyHead = this.historyEvents = this.historyBytes = 0;
    this.oldest = this.head + 1; // the window is empty: nothing older than the next revision is in it
    for (const w of all) w.sink.end(error);
  }

  /** Feeds one durable commit. Revisions must come in order, each once. */
  publish(rev: number, mutations: readonly Mutation[], before: Node): void {
    assert(rev === this.head + 1, `watch registry: commit ${rev} after ${this.head}`);
    this.head = rev;
    this.remember(rev, mutations, before);
    if (this.watchers === 0) return;
    const events = eventsOf(rev, mutations, before);
    let byWatcher: Map<Watcher, WatchEventData[]> | undefined;
    const add = (w: Watcher, e: WatchEventData): void => {
      if (w.from > rev) return;
      byWatcher ??= new Map();
      const list = byWatcher.get(w);
      if (list === undefined) byWatcher.set(w, [e]);
      else list.push(e);
    };
    const anyRecursive = this.recursive.size > 0;
    for (const e of events) {
      const ex = this.exact.get(e.path);
      if (ex !== undefined) for (const w of ex) add(w, e);
      if (anyRecursive) {
        ancestorsAndSelf(e.path, (p) => {
          const rs = this.recursive.get(p);
          if (rs !== undefined) for (const w of rs) add(w, e);
        });
      }
    }
    if (byWatcher === undefined) return;
    for (const [w, evs] of byWatcher) w.sink.deliver(rev, evs);
  }

  /**
   * Refills the history window with commits that precede the registry's
   * head (the log tail recovery replayed), before any watcher subscribes.
   * They must be contiguous and end at the head; `before` is needed only
   * for commits with deletes or perms changes. The window's bounds apply.
   */
  recall(commits: ReadonlyArray<{ readonly rev: number; readonly mutations: readonly Mutation[]; readonly before: Node | undefined }>): void {
    if (commits.length === 0) return;
    assert(this.watchers === 0 && this.history.length === this.historyHead, 'watch registry: recall into a used registry');
    assert(commits[commits.length - 1]!.rev === this.head, `watch registry: recalled commits end at ${commits[commits.length - 1]!.rev}, head is ${this.head}`);
    const first = commits[0]!.rev;
    this.oldest = first;
    for (let i = 0; i < commits.length; i++) {
      const c = commits[i]!;
      // (remember trims the window to its bounds as it goes, moving `oldest`: compare with the first recalled.)
      assert(c.rev === first + i, `watch registry: recalled commit ${c.rev} out of order`);
      assert(c.before !== undefined || c.mutations.every((m) => m.op === 'put'), `watch registry: recalled commit ${c.rev} lacks its old root`);
      this.remember(c.rev, c.mutations, c.before);
    }
  }

  /** The commit in history slot `i` (historyHead <= i < history.length). */
  private commitAt(i: number): { readonly rev: number; readonly mutations: readonly Mutation[]; readonly before: Node | undefined } {
    const s = this.history[i]!;
    return isPut(s) ? { rev: this.oldest + (i - this.historyHead), mutations: [s], before: undefined } : s;
  }

  private remember(rev: number, mutations: readonly Mutation[], before: Node | undefined): void {
    let events = 0;
    let bytes = 0;
    for (const m of mutations) {
      bytes += m.path.length;
      if (m.op === 'put') {
        events++;
        bytes += m.value.length;
      } else if (m.op === 'perms') {
        events++;
      } else {
        events += before === undefined ? 1 : subtreeSize(before, m.path);
      }
    }
    assert(rev === this.oldest + this.history.length - this.historyHead, `watch registry: history at ${rev} is not contiguous`);
    if (mutations.length === 1 && mutations[0]!.op === 'put') {
      this.history.push(mutations[0] as PutMutation);
    } else {
      const needsBefore = mutations.some((m) => m.op !== 'put');
      this.history.push({ rev, mutations, before: needsBefore ? before : undefined, events, bytes });
    }
    this.historyEvents += events;
    this.historyBytes += bytes;
    // Trim the oldest commits while over either bound (the newest always stays).
    while (this.history.length - this.historyHead > 1 && (this.historyEvents > this.maxEvents || this.historyBytes > this.maxBytes)) {
      const old = this.history[this.historyHead]!;
      this.history[this.historyHead] = undefined as unknown as Slot;
      this.historyHead++;
      if (isPut(old)) {
        this.historyEvents -= 1;
        this.historyBytes -= old.path.length + old.value.length;
      } else {
        this.historyEvents -= old.events;
        this.historyBytes -= old.bytes;
      }
      this.oldest++;
    }
    if (this.historyHead > 1024 && this.historyHead * 2 > this.history.length) {
      this.history.splice(0, this.historyHead);
      this.historyHead = 0;
    }
  }
}

function matcher(path: string, recursive: boolean): (p: string) => boolean {
  if (!recursive) return (p) => p === path;
  if (path === '/') return () => true;
  const prefix = path + '/';
  return (p) => p === path || p.startsWith(prefix);
}
