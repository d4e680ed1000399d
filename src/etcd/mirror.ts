/**
 * The mirror: this client's copy of the store's keys, kept by one etcd watch
 * on the whole prefix and applied revision by revision, so it always holds
 * the store exactly as it was at one etcd revision (`rev`).
 *
 * Design notes.
 * 1. Reads are answered from the mirror after a barrier: the client reads
 *    the revision key (P/r, written by every commit) with a linearizable
 *    range, and waits until the mirror has applied that revision. A read
 *    thus sees every write acknowledged before it began (linearizable), and
 *    a transaction's snapshot is one etcd revision, as in the engine.
 * 2. The tree is the engine's immutable `Node` tree (core/tree.ts), built
 *    with etcd's own metadata: createRev/modRev/version are the node key's
 *    create_revision/mod_revision/version; childrenRev is the children
 *    record's mod_revision, or the revision at which a lease expiry deleted
 *    an ephemeral child if later (etcd deletes those keys itself, without
 *    touching the record; see commit.ts for how validation covers them).
 *    Snapshots are O(1): a root pointer, as in the engine.
 * 3. Lock keys (q, h, d, u, s) are kept as flat maps, replaced (not
 *    mutated) per revision so a snapshot of them is a pointer too.
 * 4. A lost watch is re-established from rev + 1 by the etcd3 client; if
 *    that revision was compacted, the mirror reloads the whole prefix.
 */
import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { PMap } from '../core/pmap.js';
import { type Node, emptyRoot, lookup, mkNode, EMPTY_VALUE } from '../core/tree.js';
import { type KeyKind, Keys, depthOf } from './keys.js';

export interface Rec {
  readonly key: string;
  readonly value: Buffer;
  readonly createRev: number;
  readonly modRev: number;
  readonly lease: string;
  readonly version: number;
}

/** One change as the mirror applied it (what watchers and lock waiters are told). */
export interface Change {
  readonly type: 'put' | 'delete';
  readonly kind: KeyKind;
  readonly rest: string;
  readonly rev: number;
  readonly value?: Buffer;
  /** A node deleted without a commit of ours: its lease expired or was revoked. */
  readonly expired?: boolean;
}

export type Flat = ReadonlyMap<string, Rec>;
/** The kinds kept as flat maps: lock and session records, and XenStore domains. */
export type FlatKind = 'q' | 'h' | 'd' | 'u' | 's' | 'x';
const FLAT_KINDS: readonly FlatKind[] = ['q', 'h', 'd', 'u', 's', 'x'];

function segsOf(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

/**
 * Replaces the child named by the last of `segs` under the node the others
 * lead to with fn(old) (undefined removes it); raises that parent's
 * childrenRev to `bump` when given. A missing parent leaves the tree as it is.
 */
function withChild(root: Node, segs: readonly string[], fn: (old: Node | undefined) => Node | undefined, bump?: number): Node {
  const rec = (n: Node, i: number): Node => {
    const name = segs[i]!;
    const old = n.children.get(name);
    let next: Node | undefined;
    let cr = n.childrenRev;
    if (i < segs.length - 1) {
      if (old === undefined) return n;
      next = rec(old, i + 1);
    } else {
      next = fn(old);
      if (bump !== undefined) cr = Math.max(cr, bump);
    }
    if (next === old && cr === n.childrenRev) return n;
    const children = next === undefined ? (old === undefined ? n.children : n.children.delete(name)) : n.children.set(name, next);
    const size = n.size - (old?.size ?? 0) + (next?.size ?? 0);
    return mkNode(n.value, n.createRev, n.modRev, n.version, cr, children, n.ephemeralOwner, n.seq, size, n.perms);
  };
  return rec(root, 0);
}

function leaseOwner(lease: string): string | undefined {
  return lease === '0' || lease === '' ? undefined : lease;
}

export class Mirror {
  root: Node = emptyRoot();
  rev = 0;
  flat: Record<FlatKind, Flat> = { q: new Map(), h: new Map(), d: new Map(), u: new Map(), s: new Map(), x: new Map() };
  private watcher: Watcher | undefined;
  private waiters: Array<{ rev: number; resolve: () => void }> = [];
  private listeners = new Set<(changes: readonly Change[], rev: number, before: Node, after: Node) => void>();
  private closed = false;
  /** Commit ids (the revision key's values) seen lately, with their revisions; see EtcdBackend.send. */
  readonly commits = new Map<string, number>();
  /** Set when the watch failed for good; every wait rejects with it. */
  failure: Error | undefined;

  /** The client of the current watch stream: its own, so a restart gets a fresh stream on a member picked anew. */
  private watchClient: Etcd3 | undefined;

  /** `client` reads; `newWatchClient` makes the client each watch stream runs on (see restartWatch). */
  constructor(private readonly client: Etcd3, readonly keys: Keys, private readonly newWatchClient: () => Etcd3) {}

  async start(): Promise<void> {
    await this.load();
    await this.watch();
  }

  private async load(): Promise<void> {
    const [from, to] = this.keys.all;
    const res = await this.client.kv.range({ key: Buffer.from(from), range_end: Buffer.from(to) });
    const rev = Number(res.header.revision);
    // Already past it: a reload answered after a later one whose watch has applied revisions since (a
    // cancelled watch's reload racing restartWatch's). Replacing the tree would put it back to `rev` while
    // `rev` stays ahead: reads after a barrier would miss writes, and keys no later event touches for good.
    if (rev < this.rev) return;
    const kvs = res.kvs.map(toRec);
    const nodes = kvs.filter((r) => this.keys.parse(r.key)?.kind === 'n')
      .map((r) => ({ r, path: this.keys.parse(r.key)!.rest }))
      .sort((a, b) => depthOf(a.path) - depthOf(b.path));
    let root = emptyRoot();
    for (const { r, path } of nodes) root = this.putNode(root, path, r);
    for (const r of kvs) {
      const p = this.keys.parse(r.key);
      if (p?.kind === 'c') root = this.putChildren(root, p.rest, r);
      else if (p?.kind === 'p') root = this.putPerms(root, p.rest, r.value);
    }
    const flat = { q: new Map<string, Rec>(), h: new Map<string, Rec>(), d: new Map<string, Rec>(), u: new Map<string, Rec>(), s: new Map<string, Rec>(), x: new Map<string, Rec>() };
    for (const r of kvs) {
      const p = this.keys.parse(r.key);
      if (p !== undefined && p.kind !== 'n' && p.kind !== 'c' && p.kind !== 'p') flat[p.kind].set(p.rest, r);
    }
    // A reload (after a compaction) skips the revisions between: tell listeners how the records moved
    // meanwhile (a request gone, a session record retagged by another front-end, a domain introduced), or a
    // lock whose request vanished, or a session resumed elsewhere, would go unnoticed; and how the nodes and
    // their permissions moved (nodeChanges: old tree against new), or XenStore watches would miss them.
    const before = this.root;
    const changes: Change[] = this.rev === 0 ? [] : nodeChanges(before, root, rev);
    for (const kind of FLAT_KINDS) {
      const was = this.flat[kind];
      for (const [k, r] of flat[kind]) if (was.get(k)?.modRev !== r.modRev) changes.push({ type: 'put', kind, rest: k, rev, value: r.value });
      for (const k of was.keys()) if (!flat[kind].has(k)) changes.push({ type: 'delete', kind, rest: k, rev });
    }
    this.root = root;
    this.flat = flat;
    this.rev = Math.max(this.rev, rev);
    if (changes.length > 0) for (const l of this.listeners) l(changes, this.rev, before, root);
    this.wake();
  }

  /** `reloaded`: just after a full read (a watch refused again then is not a compaction: it fails). */
  private async watch(reloaded = false): Promise<void> {
    const [from] = this.keys.all;
    this.watchClient ??= this.newWatchClient();
    let w: Watcher;
    try {
      w = await this.watchClient.watch().prefix(from).startRevision(String(this.rev + 1)).create();
    } catch (e) {
      if (this.closed || reloaded || !resumeLost(e)) throw e;
      // Refused at creation because our resume point left etcd's history: start over from a full read.
      await this.load();
      return this.watch(true);
    }
    this.watcher = w;
    w.on('data', (res) => {
      if (this.closed) return;
      const evs: Array<{ type: 'put' | 'delete'; kv: IKeyValue }> = [];
      for (const e of res.events) evs.push({ type: e.type === 'Put' ? 'put' : 'delete', kv: e.kv });
      let cur: Array<{ type: 'put' | 'delete'; kv: IKeyValue }> = [];
      let curRev = -1;
      for (const e of evs) {
        const r = Number(e.kv.mod_revision);
        if (r !== curRev && cur.length > 0) {
          this.apply(cur, curRev);
          cur = [];
        }
        curRev = r;
        cur.push(e);
      }
      if (cur.length > 0) this.apply(cur, curRev);
    });
    w.on('error', (err: Error) => {
      if (this.closed) return;
      if (resumeLost(err)) {
        // Our resume point left etcd's history: start over from a full read.
        void w.cancel().catch(() => {});
        void this.load().then(() => this.watch()).catch((e: Error) => this.fail(e));
      } else {
        this.fail(err);
      }
    });
  }

  /** Replaces the watch stream (it resumes from rev + 1, on whichever member answers). */
  restartWatch(): Promise<void> {
    if (this.closed) return Promise.resolve();
    // One restart at a time, however many readers found the mirror lagging; the old stream's cancel is
    // not waited for (on a dead member it may never be answered).
    return (this.restarting ??= (async () => {
      try {
        // etcd3 runs every watcher of a client on one stream, which stays on a member that froze until
        // gRPC notices (etcd refuses pings more often than every 5 s): a new client, a new stream.
        const old = this.watcher;
        const oldClient = this.watchClient;
        this.watcher = undefined;
        this.watchClient = undefined;
        void old?.cancel().catch(() => {});
        oldClient?.close();
        await this.watch();
      } finally {
        this.restarting = undefined;
      }
    })());
  }

  private restarting: Promise<void> | undefined;

  private fail(e: Error): void {
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** Applies one revision's events. */
  private apply(events: ReadonlyArray<{ type: 'put' | 'delete'; kv: IKeyValue }>, rev: number): void {
    if (rev <= this.rev) return; // already in a reload
    const changes: Change[] = [];
    const before = this.root;
    let root = this.root;
    let flat: typeof this.flat | undefined;
    const parsed = events.map((e) => ({ e, p: this.keys.parse(e.kv.key.toString()) }));
    // Node puts parents first, then node deletes, then children records: a
    // commit never touches one key twice (etcd refuses that), so this order
    // rebuilds exactly the state after the revision.
    const puts = parsed.filter((x) => x.p?.kind === 'n' && x.e.type === 'put').sort((a, b) => depthOf(a.p!.rest) - depthOf(b.p!.rest));
    for (const { e, p } of puts) {
      root = this.putNode(root, p!.rest, toRec(e.kv));
      changes.push({ type: 'put', kind: 'n', rest: p!.rest, rev, value: e.kv.value });
    }
    const revPut = parsed.find((x) => x.e.type === 'put' && x.e.kv.key.toString() === this.revKey);
    if (revPut !== undefined) {
      this.commits.set(revPut.e.kv.value.toString(), rev);
      if (this.commits.size > 100_000) for (const k of [...this.commits.keys()].slice(0, 50_000)) this.commits.delete(k);
    }
    const ours = revPut !== undefined || parsed.some((x) => x.p?.kind === 'c');
    for (const { e, p } of parsed) {
      if (p?.kind !== 'n' || e.type !== 'delete') continue;
      changes.push({ type: 'delete', kind: 'n', rest: p.rest, rev, ...(ours ? {} : { expired: true }) });
      const segs = segsOf(p.rest);
      if (segs.length === 0) {
        root = mkNode(EMPTY_VALUE, 0, 0, 0, root.childrenRev, root.children, undefined, root.seq, root.size, undefined);
        continue;
      }
      if (lookup(root, segs) === undefined) continue;
      root = withChild(root, segs, () => undefined, rev);
    }
    for (const { e, p } of parsed) {
      if (p?.kind === 'c' && e.type === 'put') root = this.putChildren(root, p.rest, toRec(e.kv));
      else if (p?.kind === 'p') {
        root = this.putPerms(root, p.rest, e.type === 'put' ? e.kv.value : undefined);
        changes.push({ type: e.type, kind: 'p', rest: p.rest, rev, value: e.kv.value });
      } else if (p !== undefined && p.kind !== 'n' && p.kind !== 'c') {
        flat ??= { q: new Map(this.flat.q), h: new Map(this.flat.h), d: new Map(this.flat.d), u: new Map(this.flat.u), s: new Map(this.flat.s), x: new Map(this.flat.x) };
        const m = flat[p.kind] as Map<string, Rec>;
        if (e.type === 'put') m.set(p.rest, toRec(e.kv));
        else m.delete(p.rest);
        changes.push({ type: e.type, kind: p.kind, rest: p.rest, rev, value: e.kv.value });
      }
    }
    this.root = root;
    if (flat !== undefined) this.flat = flat;
    this.rev = rev;
    for (const l of this.listeners) l(changes, rev, before, root);
    this.wake();
  }

  get revKey(): string {
    return `${this.keys.root}/r`;
  }

  private putNode(root: Node, path: string, r: Rec): Node {
    const segs = segsOf(path);
    const owner = leaseOwner(r.lease);
    const version = r.version;
    if (segs.length === 0) {
      return mkNode(r.value, r.createRev, r.modRev, version, root.childrenRev, root.children, undefined, root.seq, root.size, root.perms);
    }
    // A put keeps the node's permissions (their own key, P/p/PATH, sets them); a new node has none until it comes.
    return withChild(root, segs, (old) => old === undefined || old.createRev !== r.createRev
      ? mkNode(new Uint8Array(r.value), r.createRev, r.modRev, version, old?.childrenRev ?? r.createRev, old?.children ?? PMap.empty(), owner, old?.seq ?? 0, old?.size ?? 1, undefined)
      : mkNode(new Uint8Array(r.value), r.createRev, r.modRev, version, old.childrenRev, old.children, owner, old.seq, old.size, old.perms));
  }

  /** Sets (undefined: clears) a node's XenStore permissions from its P/p/PATH value; nothing if the node is gone. */
  private putPerms(root: Node, path: string, value: Uint8Array | undefined): Node {
    let perms: readonly string[] | undefined;
    if (value !== undefined) {
      try {
        const v = JSON.parse(Buffer.from(value).toString()) as unknown;
        perms = Array.isArray(v) && v.every((x) => typeof x === 'string') ? Object.freeze([...v as string[]]) : undefined;
      } catch {
        perms = undefined; // a record we cannot read: no explicit permissions
      }
    }
    const set = (n: Node): Node => mkNode(n.value, n.createRev, n.modRev, n.version, n.childrenRev, n.children, n.ephemeralOwner, n.seq, n.size, perms);
    const segs = segsOf(path);
    if (segs.length === 0) return set(root);
    if (lookup(root, segs) === undefined) return root;
    return withChild(root, segs, (old) => (old === undefined ? undefined : set(old)));
  }

  private putChildren(root: Node, path: string, r: Rec): Node {
    let seq = 0;
    try {
      seq = (JSON.parse(r.value.toString()) as { seq?: number }).seq ?? 0;
    } catch {
      // a record we cannot read counts as 0
    }
    const set = (n: Node): Node => mkNode(n.value, n.createRev, n.modRev, n.version, Math.max(r.modRev, n.childrenRev), n.children, n.ephemeralOwner, seq, n.size, n.perms);
    const segs = segsOf(path);
    if (segs.length === 0) return set(root);
    return withChild(root, segs, (old) => (old === undefined ? undefined : set(old)));
  }

  /** Resolves once the mirror has applied revision `rev` (or failed). */
  waitFor(rev: number, signal?: AbortSignal): Promise<void> {
    if (this.rev >= rev || this.failure !== undefined) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { rev, resolve };
      this.waiters.push(w);
      signal?.addEventListener('abort', () => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(signal.reason as Error);
      }, { once: true });
    });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) (w.rev <= this.rev ? w.resolve() : keep.push(w));
    this.waiters = keep;
  }

  /** Listens to every applied revision; returns the unsubscribe function. */
  listen(fn: (changes: readonly Change[], rev: number, before: Node, after: Node) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.resolve();
    // Not waited for: a cancel sent to a member that stopped answering is never acknowledged.
    void this.watcher?.cancel().catch(() => {});
    this.watchClient?.close();
  }
}

/**
 * A watch etcd cancelled: our resume point was compacted away. etcd says so
 * with the cancel's compact_revision, which etcd3 does not pass on: its
 * error reads "Watcher canceled: " with an empty reason (etcd 3.4-3.5), so
 * any cancel counts (a reload is correct whatever the cause; a stream that
 * failed otherwise is resumed by etcd3 itself, without a cancel).
 */
function resumeLost(e: unknown): boolean {
  return /compact|watcher canceled/i.test(e instanceof Error ? e.message : String(e));
}

export function toRec(kv: IKeyValue): Rec {
  return { key: kv.key.toString(), value: kv.value, createRev: Number(kv.create_revision), modRev: Number(kv.mod_revision), lease: String(kv.lease), version: Number(kv.version) };
}

/**
 * What changed between two trees, as the changes a revision would have
 * carried: a put for every node created or written (its createRev or modRev
 * differs), a delete for every node gone (each, parents first), a 'p' change
 * for every node whose permissions differ. Subtrees that are the same object
 * are skipped; a reload builds a new tree, so this walks both.
 */
export function nodeChanges(before: Node, after: Node, rev: number): Change[] {
  const out: Change[] = [];
  const samePerms = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean =>
    a === b || (a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]));
  const gone = (path: string, n: Node): void => {
    out.push({ type: 'delete', kind: 'n', rest: path, rev });
    for (const [name, c] of n.children.entries()) gone(join(path, name), c);
  };
  const walk = (path: string, b: Node | undefined, a: Node): void => {
    if (b === a) return;
    if (b === undefined || b.createRev !== a.createRev || b.modRev !== a.modRev) {
      out.push({ type: 'put', kind: 'n', rest: path, rev, value: Buffer.from(a.value as Uint8Array) });
    }
    if (!samePerms(b?.perms, a.perms)) out.push({ type: a.perms === undefined ? 'delete' : 'put', kind: 'p', rest: path, rev });
    if (b !== undefined && b.children !== a.children) {
      for (const [name, c] of b.children.entries()) if (!a.children.has(name)) gone(join(path, name), c);
    }
    for (const [name, c] of a.children.entries()) walk(join(path, name), b?.children.get(name), c);
  };
  walk('/', before, after);
  return out;
}

function join(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}
