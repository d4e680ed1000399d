/**
 * The lock table: subtree locks, mandatory write admission, FIFO handoff
 * without a herd, owner-died, fencing tokens, deadlock detection.
 *
 * Pure: no timers, no promises. The engine calls in and gets decisions back
 * (a request held or waiting, the list of requests a release made grantable,
 * a LatchkeyError); it owns the promises and timers. Every method runs to
 * completion, so the table is always in a consistent state between calls.
 *
 * 1. Requests and classes. A request is a lock (shared S / exclusive X), an
 *    upgrade (X, by the holder of an S lock), or a write admission: one entry
 *    per target, class W (a subtree: recursive delete, sequential create) or
 *    N (one node). Each entry sits at a path. Two entries *overlap* when one
 *    path covers the other; an N entry covers only its own node, so a lock
 *    strictly below a plain write does not overlap it. Two overlapping
 *    entries conflict unless their classes are compatible: S–S and writes
 *    with writes (the engine orders writes itself). Holders of the same
 *    session never conflict: a session writes under its own locks and nests
 *    its own locks freely.
 *
 * 2. FIFO rule. Every request gets an order number on arrival; upgrades get
 *    a negative one (they go before every ordinary waiter: the upgrader
 *    already holds the path, so nothing queued behind it could run anyway,
 *    and two upgraders see each other as a deadlock). A waiter is grantable
 *    iff it conflicts with no holder of another session and with no earlier
 *    waiter — of any session (a session's own requests keep their order) —
 *    except waiters that are behind a hold of its own session (they conflict
 *    with one, so they cannot go first anyway; a holder writing under its
 *    lock, or nesting a lock in it, must not queue behind its own waiters).
 *    Skipping is per entry: a waiting entry is skipped when it conflicts
 *    with a hold of the asker's session.
 *    Invariant between calls: no waiter is grantable. Granting a waiter
 *    never blocks anything and unblocks only waiters of its own session
 *    (its new holder is theirs, and waiters behind it become skippable). So
 *    after a removal the table grants everything that became grantable: a
 *    scan of the nodes the removed entry overlapped (note 3), then a check
 *    of the other waiting requests of each session it granted something to.
 *    A `lock` or `upgrade` granted at once does the latter too (`drain`).
 *    Each request is returned once, by the call that granted it.
 *
 * 3. Data structure. A trie of path nodes keyed by segment, created on demand
 *    and pruned when empty. Each node keeps, per class, exact and subtree
 *    counts of holders and of waiters; an intrusive list of the entries
 *    holding there; a FIFO doubly linked list of its waiting entries per
 *    class (the earliest conflicting waiter at a node is a list head;
 *    cancelling is O(1)); and the set of children whose subtree has
 *    waiters. Each session has intrusive lists of its held and waiting
 *    requests. A grant or a wait allocates nothing but its request.
 *      - "another session's holder here": the counts say "none" in O(1);
 *        otherwise the node's holder list is walked to the first foreign one.
 *        "another session's holder below": subtree count minus the asker's
 *        own holds below (found through its own list: O(own locks · depth)).
 *      - arrival: walk root→path (counts and list heads at each ancestor)
 *        and read the subtree counts at the path: O(depth).
 *      - release/cancel at P: only waiters that overlapped the removed entry
 *        can have become grantable: those at P's ancestors, at P, and below P
 *        (found through the children-with-waiters sets, pruned by the class
 *        counts). At each node the lists are walked in order from the head
 *        and the walk stops at the first waiter that stays blocked: every
 *        later waiter there conflicts with it, so waits too — except (a) the
 *        run of compatible waiters behind a blocked S or W entry: those of
 *        the same class, behind a single-path entry, whose session holds
 *        nothing, are blocked by the same thing and passed over in O(1);
 *        the others are checked (another path of the same write, W versus N
 *        geometry, or a session that may skip, can make them differ), and
 *        (b) "entangled" waiting entries, whose session holds something
 *        overlapping the node (they may skip, or be exempt from a blocker of
 *        their own session): each node keeps those in a list of their own,
 *        checked after the walk. Entanglement changes only when a session
 *        gains or loses a hold, for its own waiting entries near that hold.
 *        Each grant costs O(depth); releasing an exclusive '/' over 7,000
 *        waiters on 7,000 paths visits 7,000 nodes and grants each once.
 *      - weak spots, where the cost is the number of requests involved
 *        rather than O(depth): a waiter whose session holds locks, but not
 *        an exclusive one around it, looks at earlier conflicting waiters
 *        until the first it cannot skip; a candidate's check for an earlier
 *        conflicting waiter *below* its path walks the nodes with such
 *        waiters until the first earlier one (a per-subtree min-order index
 *        would bound it); a release visits every waiter it was blocking;
 *        entangled entries at a node are all checked when it is scanned.
 *
 * 4. Deadlock. The wait-for graph is over sessions: A → B when a waiting
 *    request of A is blocked by a holder of B or an earlier waiter of B. A
 *    request that must wait is registered, then a search from the blockers
 *    of every waiting request of its session looks for the session itself;
 *    if found, the request is removed again (no side effects: nothing was
 *    waiting behind it that was not blocked already) and fails DEADLOCK
 *    naming the cycle. Edges appear only when a request waits or when an
 *    upgrade turns S into X (waiters it now goes before wait for it), so an
 *    upgrade is checked even when it is granted at once. The search (over
 *    every blocker of every waiting request it reaches) is skipped when no
 *    waiter can be waiting on the requesting session: none overlaps its
 *    holds or its other waiting requests (a test on the counts).
 *
 * 5. Owner died. A lock whose session ends while holding it taints its path.
 *    Every later lock grant overlapping a taint carries ownerDied; the taint
 *    is cleared when a holder that was told (ownerDied) and covers the path
 *    says the protected data is whole again (`markConsistent`). A release
 *    without it leaves the taint for the next holder. Taints are never
 *    dropped to save memory: each keeps its trie node (one per tainted
 *    path) until it is cleared, or `resetTaints` forgets a subtree of them.
 *
 * 6. Tokens are a counter: strictly increasing over every grant (locks and
 *    upgrades). `byToken` serves fencing.
 *
 * 7. Journal. Every change a crash must not forget is reported, in order, to
 *    `journal` (the engine logs it: storage/lock-log.ts): a hold begins or
 *    ends (locks, not write admissions), a taint is set or cleared.
 *
 * Lock order (for the engine): the table has no locks of its own; the engine
 * must deliver a write grant's admission before letting the write apply and
 * keep the write held until the write is on the pending head (`release`).
 */
import { LatchkeyError, assert } from './errors.js';
import { joinPath, parsePath } from './path.js';

export type LockMode = 'shared' | 'exclusive';
export type RequestKind = LockMode | 'upgrade' | 'write';
export type RequestState = 'waiting' | 'held' | 'done';

/** A place a write touches: one node, or its whole subtree. */
export interface WriteTarget {
  readonly path: string;
  readonly subtree: boolean;
}

const S = 0;
const X = 1;
const W = 2;
const N = 3;
type Cls = 0 | 1 | 2 | 3;
const NCLS = 4;
const GROUP = [0, 1, 2, 2];
const NBIT = 1 << N;
/** CONFLICTS[c]: bit mask of the classes that conflict with class c (when overlapping). */
const CONFLICTS = [(1 << X) | (1 << W) | (1 << N), 0b1111, (1 << S) | (1 << X), (1 << S) | (1 << X)];

function sumMask(a: readonly number[], mask: number): number {
  let n = 0;
  for (let c = 0; c < NCLS; c++) if (mask & (1 << c)) n += a[c]!;
  return n;
}

class Entry {
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  /** A waiting entry whose session holds something overlapping its node ("entangled"): see scanNode. */
  tangled = false;
  tprev: Entry | undefined = undefined;
  tnext: Entry | undefined = undefined;
  constructor(readonly req: LockRequest, public node: PathNode, public cls: Cls) {}
}

class PathNode {
  // Maps and sets are made on first use: most nodes are leaves with one request.
  children: Map<string, PathNode> | undefined = undefined;
  /** Children whose subtree holds waiters. */
  wchildren: Set<PathNode> | undefined = undefined;
  /** Holders at this path, and in this subtree (inclusive), by class. */
  readonly h = [0, 0, 0, 0];
  readonly sh = [0, 0, 0, 0];
  /** Holding entries here: an intrusive list through Entry.prev/next (an entry waits or holds, never both). */
  hhead: Entry | undefined = undefined;
  /** Entangled waiting entries here (through Entry.tprev/tnext). */
  thead: Entry | undefined = undefined;
  /** Waiting entries here by class (FIFO lists), and waiters in this subtree (inclusive). */
  readonly head: (Entry | undefined)[] = [undefined, undefined, undefined, undefined];
  readonly tail: (Entry | undefined)[] = [undefined, undefined, undefined, undefined];
  readonly sw = [0, 0, 0, 0];
  /** Owner-died taint here, and taints in this subtree (inclusive). */
  taint = false;
  st = 0;

  constructor(readonly parent: PathNode | undefined, readonly name: string, readonly depth: number) {}

  get path(): string {
    const segs: string[] = [];
    for (let n: PathNode | undefined = this; n?.parent !== undefined; n = n.parent) segs.push(n.name);
    return joinPath(segs.reverse());
  }

  waiting(): number {
    return this.sw[0]! + this.sw[1]! + this.sw[2]! + this.sw[3]!;
  }

  empty(): boolean {
    return (this.children === undefined || this.children.size === 0) && this.hhead === undefined && this.waiting() === 0 && this.st === 0;
  }
}

class SessionRec {
  held: LockRequest | undefined = undefined;
  waiting: LockRequest | undefined = undefined;
}

function listOf(head: LockRequest | undefined): LockRequest[] {
  const out: LockRequest[] = [];
  for (let r = head; r !== undefined; r = r.snext) out.push(r);
  return out;
}

/** One request: a lock (held or waiting), an upgrade, or a write admission. */
export class LockRequest {
  state: RequestState = 'waiting';
  /** Fencing token of the grant (0 until granted; writes have none). */
  token = 0;
  ownerDied = false;
  /** Time of the request, then of the grant. */
  since: number;
  /** For an upgrade: the S lock being upgraded. For a lock: its pending upgrade. */
  link: LockRequest | undefined = undefined;
  entries: Entry[] = [];
  /** The caller's bookkeeping (the engine keeps its waiter or lock handle here). */
  owner: unknown = undefined;
  /** @internal Links in its session's list of held or waiting requests. */
  sprev: LockRequest | undefined = undefined;
  snext: LockRequest | undefined = undefined;

  constructor(readonly id: number, readonly session: string, public kind: RequestKind, public order: number, now: number) {
    this.since = now;
  }

  /** Mode of a lock (an upgraded lock reports 'exclusive'). */
  get mode(): LockMode {
    return this.kind === 'shared' ? 'shared' : 'exclusive';
  }

  get path(): string {
    return this.entries[0]!.node.path;
  }

  get paths(): string[] {
    return this.entries.map((e) => e.node.path);
  }
}

export interface Blocker {
  readonly session: string;
  readonly path: string;
  readonly kind: RequestKind;
  readonly held: boolean;
}

export interface CycleStep {
  /** This session… */
  readonly session: string;
  /** …waits (with a request of this kind at this path)… */
  readonly kind: RequestKind;
  readonly path: string;
  /** …for this one. */
  readonly waitsFor: string;
}

/** Receives the table's changes that must outlive a crash (note 7). */
export interface LockJournal {
  hold(token: number, path: string): void;
  unhold(token: number): void;
  taint(path: string, on: boolean): void;
}

export interface LockTableOptions {
  /** Time source for `since` (default: always 0; the engine passes Date.now). */
  clock?: () => number;
  /** Tokens start above this (e.g. the store revision). */
  firstToken?: number;
  journal?: LockJournal;
}

export interface SessionEnd {
  /** Waiting requests of the session, now done (the caller rejects them). */
  readonly cancelled: LockRequest[];
  /** Locks it held, now released (admitted writes stay held until applied). */
  readonly released: LockRequest[];
  /** Requests of other sessions granted as a result. */
  readonly granted: LockRequest[];
}

export interface LockTableCounters {
  /** Requests granted after waiting (each is one wakeup the engine delivers). */
  wakeups: number;
  grants: number;
  deadlocks: number;
}

export class LockTable {
  private readonly root = new PathNode(undefined, '', 0);
  private readonly clock: () => number;
  private nextId = 1;
  private nextOrder = 1;
  private nextUpgradeOrder = -Number.MAX_SAFE_INTEGER;
  private lastToken: number;
  private readonly tokens = new Map<number, LockRequest>();
  /** Owner-died taints. */
  private readonly taints = new Set<PathNode>();
  private readonly journal: LockJournal | undefined;
  /** Each session's held and waiting requests (intrusive lists: no allocation per grant). */
  private readonly sessions = new Map<string, SessionRec>();
  private holdCount = 0;
  private waitCount = 0;
  /** Grants made by the current operation. */
  private out: LockRequest[] = [];
  /** Grants of the last lock/upgrade besides its own request (see drain). */
  private extra: LockRequest[] = [];
  /** Sessions whose waiting requests must be checked again before the current call returns. */
  private readonly recheck = new Set<SessionRec>();
  readonly counters: LockTableCounters = { wakeups: 0, grants: 0, deadlocks: 0 };

  constructor(options: LockTableOptions = {}) {
    this.clock = options.clock ?? (() => 0);
    this.lastToken = options.firstToken ?? 0;
    this.journal = options.journal;
  }

  /** The token of the latest grant. */
  get lastGranted(): number {
    return this.lastToken;
  }

  get size(): { held: number; waiting: number } {
    return { held: this.holdCount, waiting: this.waitCount };
  }

  // ---------------------------------------------------------------- requests

  /**
   * Requests a lock. Returns it held, or waiting (deliver it when a later
   * call returns it among its grants). Throws LOCKED (wait false) or
   * DEADLOCK, with no side effects.
   */
  lock(session: string, path: string, mode: LockMode, wait = true): LockRequest {
    const segs = parsePath(path);
    if (mode !== 'shared' && mode !== 'exclusive') throw new LatchkeyError('INVALID_ARGUMENT', `lock mode must be 'shared' or 'exclusive', not ${JSON.stringify(mode)}`);
    const cls: Cls = mode === 'shared' ? S : X;
    if (this.holdCount > 0 || this.waitCount > 0) {
      const probe = this.probe(segs, cls, session);
      if (probe) {
        if (!wait) throw this.lockedError(path, session, [{ segs, cls }]);
        const req = new LockRequest(this.nextId++, session, mode, this.nextOrder++, this.clock());
        req.entries.push(new Entry(req, this.nodeAt(segs), cls));
        return this.enqueue(req);
      }
    }
    const req = new LockRequest(this.nextId++, session, mode, this.nextOrder++, this.clock());
    req.entries.push(new Entry(req, this.nodeAt(segs), cls));
    this.markHeld(req);
    this.cascade(req.session);
    return req;
  }

  /**
   * Requests of the caller's session that the last `lock` or `upgrade`
   * granted besides the one it returned (a new hold can let the session's
   * waiters skip waiters queued behind it). Deliver them like any grant.
   */
  drain(): LockRequest[] {
    const out = this.extra;
    if (out.length > 0) this.extra = [];
    return out;
  }

  /** After a hold was added without a removal: grants the session's waiters it unblocked. */
  private cascade(session: string): void {
    const rec = this.sessions.get(session);
    if (rec?.waiting === undefined) return;
    this.out = [];
    this.recheck.add(rec);
    this.extra.push(...this.takeOut());
  }

  /**
   * Admits a write by `session` touching `targets`. Returns undefined when it
   * may apply now (nothing is held for it: the caller must apply it before
   * any other call into the table), or a waiting request, which once granted
   * is held until the caller `release`s it after applying the write.
   * Throws LOCKED (wait false) or DEADLOCK.
   */
  admitWrite(session: string, targets: readonly WriteTarget[], wait = true): LockRequest | undefined {
    if (this.holdCount === 0 && this.waitCount === 0) return undefined;
    const norm = normalizeTargets(targets);
    let blocked = false;
    for (const t of norm) if (this.probe(t.segs, t.cls, session)) { blocked = true; break; }
    if (!blocked) return undefined;
    if (!wait) throw this.lockedError(norm[0] === undefined ? '/' : joinPath(norm[0].segs), session, norm);
    const req = new LockRequest(this.nextId++, session, 'write', this.nextOrder++, this.clock());
    for (const t of norm) req.entries.push(new Entry(req, this.nodeAt(t.segs), t.cls));
    return this.enqueue(req);
  }

  /**
   * Upgrades a held shared lock to exclusive. Returns the upgrade request:
   * held (done at once) or waiting; when granted, `lock.kind` becomes
   * 'exclusive' and `lock.token` a new token.
   */
  upgrade(lock: LockRequest, wait = true): LockRequest {
    assert(lock.state === 'held' && lock.kind !== 'write' && lock.kind !== 'upgrade', 'upgrade of a request that is not a held lock');
    if (lock.kind === 'exclusive') throw new LatchkeyError('INVALID_ARGUMENT', `lock on ${lock.path} is already exclusive`, { path: lock.path });
    if (lock.link !== undefined) throw new LatchkeyError('INVALID_ARGUMENT', `lock on ${lock.path} already has an upgrade pending`, { path: lock.path });
    const e = lock.entries[0]!;
    const req = new LockRequest(this.nextId++, lock.session, 'upgrade', this.nextUpgradeOrder++, this.clock());
    req.link = lock;
    req.entries.push(new Entry(req, e.node, X));
    if (!this.blocked(req, false)) {
      // Granting at once still turns S into X: waiters that were compatible
      // with the shared lock now wait for this session. If the session also
      // waits for something, that can close a cycle: check as if it waited.
      if (this.sessions.get(lock.session)?.waiting !== undefined) {
        lock.link = req;
        this.enqueue(req); // throws DEADLOCK, undone, if it closes a cycle
        this.dropWaiting(req);
        req.state = 'waiting';
      }
      this.finishUpgrade(req);
      this.cascade(lock.session);
      return req;
    }
    if (!wait) throw this.lockedError(lock.path, lock.session, [{ segs: parsePath(lock.path), cls: X }]);
    lock.link = req;
    return this.enqueue(req);
  }

  /** Turns a held exclusive lock into a shared one; returns what that made grantable. */
  downgrade(lock: LockRequest): LockRequest[] {
    assert(lock.state === 'held' && lock.kind !== 'write' && lock.kind !== 'upgrade', 'downgrade of a request that is not a held lock');
    if (lock.kind === 'shared') return [];
    const e = lock.entries[0]!;
    this.removeHold(e);
    e.cls = S;
    lock.kind = 'shared';
    this.addHold(e);
    this.out = [];
    this.scanAfter(e.node, 1 << S);
    return this.takeOut();
  }

  /** Releases a held lock or write hold cleanly; returns what that made grantable. */
  release(req: LockRequest): LockRequest[] {
    if (req.state !== 'held' || req.kind === 'upgrade') return [];
    assert(req.link === undefined, 'release of a lock with an upgrade pending: cancel the upgrade first');
    this.dropHeld(req, false);
    this.out = [];
    for (const e of req.entries) this.scanAfter(e.node, belowMask(e.cls));
    this.prune(req);
    return this.takeOut();
  }

  /** Takes a waiting request out of the queue (timeout, abort); returns what that made grantable. */
  cancel(req: LockRequest): LockRequest[] {
    if (req.state !== 'waiting') return [];
    this.dropWaiting(req);
    this.out = [];
    for (const e of req.entries) this.scanAfter(e.node, belowMask(e.cls));
    this.prune(req);
    return this.takeOut();
  }

  /**
   * The session ended (closed or died): its waiting requests are cancelled,
   * its holds released with owner-died taint, and the next waiters granted.
   */
  endSession(session: string): SessionEnd {
    const rec = this.sessions.get(session);
    const cancelled = listOf(rec?.waiting);
    // Write holds stay: the write was admitted and the engine is applying it;
    // it releases the hold once the write is on the pending head.
    const released = listOf(rec?.held).filter((r) => r.kind !== 'write');
    for (const r of cancelled) this.dropWaiting(r);
    for (const r of released) this.dropHeld(r, true);
    this.out = [];
    for (const r of [...cancelled, ...released]) for (const e of r.entries) this.scanAfter(e.node, belowMask(e.cls));
    for (const r of cancelled) this.prune(r);
    for (const r of released) this.prune(r);
    return { cancelled, released, granted: this.takeOut() };
  }

  // ----------------------------------------------------------------- queries

  /** The held lock with this token, if any. */
  byToken(token: number): LockRequest | undefined {
    return this.tokens.get(token);
  }

  /** Locks held by `session` (not write holds). */
  held(session: string): LockRequest[] {
    const out: LockRequest[] = [];
    for (let r = this.sessions.get(session)?.held; r !== undefined; r = r.snext) if (r.kind !== 'write') out.push(r);
    return out.sort((a, b) => a.token - b.token);
  }

  allHeld(): LockRequest[] {
    const out: LockRequest[] = [];
    for (const rec of this.sessions.values()) for (let r = rec.held; r !== undefined; r = r.snext) if (r.kind !== 'write') out.push(r);
    return out.sort((a, b) => a.token - b.token);
  }

  allWaiting(): LockRequest[] {
    const out: LockRequest[] = [];
    for (const rec of this.sessions.values()) for (let r = rec.waiting; r !== undefined; r = r.snext) out.push(r);
    return out.sort((a, b) => a.order - b.order);
  }

  /** For each held lock, how many waiting requests it blocks (a diagnostic: O(waiters · their blockers)). */
  waitersPerLock(): Map<LockRequest, number> {
    const out = new Map<LockRequest, number>();
    for (const rec of this.sessions.values()) {
      for (let r = rec.waiting; r !== undefined; r = r.snext) {
        const seen = new Set<LockRequest>();
        for (const e of r.entries) {
          this.forEachBlocker(e, r.order, (b, held) => {
            if (held && b.req.kind !== 'write' && !seen.has(b.req)) {
              seen.add(b.req);
              out.set(b.req, (out.get(b.req) ?? 0) + 1);
            }
            return false;
          });
        }
      }
    }
    return out;
  }

  /** Who `req` (waiting) is waiting for: conflicting holders and earlier conflicting waiters. */
  blockersOf(req: LockRequest): Blocker[] {
    const out: Blocker[] = [];
    for (const e of req.entries) {
      this.forEachBlocker(e, req.order, (b, held) => {
        if (b.req !== req) out.push({ session: b.req.session, path: b.node.path, kind: b.req.kind, held });
        return false;
      });
    }
    return out;
  }

  // ----------------------------------------------------------------- internals

  /** After a removal's scans: rechecks the sessions that were granted something, then hands over the grants. */
  private takeOut(): LockRequest[] {
    while (this.recheck.size > 0) {
      const rec: SessionRec = this.recheck.values().next().value!;
      this.recheck.delete(rec);
      for (let r = rec.waiting; r !== undefined;) {
        const next = r.snext;
        if (!this.blocked(r, true)) this.grantWaiting(r);
        r = next;
      }
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  private nodeAt(segs: readonly string[]): PathNode {
    let n = this.root;
    for (let i = 0; i < segs.length; i++) {
      const name = segs[i]!;
      let c = n.children?.get(name);
      if (c === undefined) {
        c = new PathNode(n, name, i + 1);
        (n.children ??= new Map()).set(name, c);
      }
      n = c;
    }
    return n;
  }

  /** Removes nodes left empty by `req`'s entries. */
  private prune(req: LockRequest): void {
    for (const e of req.entries) this.pruneUp(e.node);
  }

  /**
   * Is there a holder at n or below, of a class in mask, of another session?
   * Subtree counts minus the asker's own holds there (found through its
   * list of holds: sessions hold few locks; this costs O(own locks · depth)).
   */
  private foreignBelow(n: PathNode, session: string, mask: number): boolean {
    const all = sumMask(n.sh, mask);
    if (all === 0) return false;
    let own = 0;
    for (let r = this.sessions.get(session)?.held; r !== undefined; r = r.snext) for (const e of r.entries) if ((mask & (1 << e.cls)) && isUnder(e.node, n)) own++;
    return all > own;
  }

  /** Would a new request (class cls at segs, newest) wait? Read-only: creates no nodes. */
  private probe(segs: readonly string[], cls: Cls, session: string): boolean {
    if (this.sessions.get(session)?.held !== undefined) {
      // A session that holds locks may skip waiters queued behind them: the full check.
      const tmp = new LockRequest(0, session, 'write', this.nextOrder, 0);
      const e = new Entry(tmp, this.nodeAt(segs), cls);
      tmp.entries.push(e);
      const blocked = this.entryBlocked(e, this.nextOrder, false);
      this.prune(tmp);
      return blocked;
    }
    const mask = CONFLICTS[cls]!;
    const amask = mask & ~NBIT;
    let n = this.root;
    for (let i = 0; ; i++) {
      if (i === segs.length) break;
      if (foreignAt(n, session, amask)) return true;
      for (let c = 0; c < NCLS; c++) if ((amask & (1 << c)) && n.head[c] !== undefined) return true;
      const next = n.children?.get(segs[i]!);
      if (next === undefined) return false;
      n = next;
    }
    if (cls === N) {
      if (foreignAt(n, session, mask)) return true;
      for (let c = 0; c < NCLS; c++) if ((mask & (1 << c)) && n.head[c] !== undefined) return true;
      return false;
    }
    if (this.foreignBelow(n, session, mask)) return true;
    return sumMask(n.sw, mask) > 0;
  }

  /** Is a registered (or about-to-be-granted) request blocked? */
  private blocked(req: LockRequest, registered: boolean): boolean {
    for (const e of req.entries) if (this.entryBlocked(e, req.order, registered)) return true;
    return false;
  }

  private entryBlocked(e: Entry, order: number, registered: boolean): boolean {
    const session = e.req.session;
    const mask = CONFLICTS[e.cls]!;
    const amask = mask & ~NBIT;
    const n = e.node;
    // Holders of other sessions.
    for (let a = n.parent; a !== undefined; a = a.parent) if (foreignAt(a, session, amask)) return true;
    if (e.cls === N ? foreignAt(n, session, mask) : this.foreignBelow(n, session, mask)) return true;
    // Earlier waiters. A session that holds locks skips those queued behind its holds.
    const rec = this.sessions.get(session);
    if (rec?.held !== undefined) {
      if (this.coveredByOwnExclusive(e)) return false;
      return this.forEachEarlierWaiter(e, order, (w) => !this.behindHold(w, rec));
    }
    for (let a = n.parent; a !== undefined; a = a.parent) if (earlierHead(a, amask, order)) return true;
    if (e.cls === N) return earlierHead(n, mask, order);
    let below = sumMask(n.sw, mask);
    if (registered && (mask & (1 << e.cls))) below--;
    if (below <= 0) return false;
    // An earlier conflicting waiter at this node or below: walk the nodes with such waiters.
    const stack: PathNode[] = [n];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (earlierHead(m, mask, order)) return true;
      if (m.wchildren !== undefined) for (const c of m.wchildren) if (sumMask(c.sw, mask) > 0) stack.push(c);
    }
    return false;
  }

  /** Calls f on each earlier waiting entry that conflicts with e (ignoring sessions); true as soon as f does. */
  private forEachEarlierWaiter(e: Entry, order: number, f: (w: Entry) => boolean): boolean {
    const mask = CONFLICTS[e.cls]!;
    const visit = (m: PathNode, mk: number): boolean => {
      for (let c = 0; c < NCLS; c++) {
        if (!(mk & (1 << c))) continue;
        for (let w = m.head[c]; w !== undefined && w.req.order < order; w = w.next) if (f(w)) return true;
      }
      return false;
    };
    for (let a = e.node.parent; a !== undefined; a = a.parent) if (visit(a, mask & ~NBIT)) return true;
    if (e.cls === N) return visit(e.node, mask);
    const stack: PathNode[] = [e.node];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (visit(m, mask)) return true;
      if (m.wchildren !== undefined) for (const c of m.wchildren) if (sumMask(c.sw, mask) > 0) stack.push(c);
    }
    return false;
  }

  /** Is e inside an exclusive lock of its own session? Then nothing can be queued ahead of it that is not also behind that lock. */
  private coveredByOwnExclusive(e: Entry): boolean {
    for (let a: PathNode | undefined = e.node; a !== undefined; a = a.parent) {
      if (a.h[X] === 0) continue;
      for (let h = a.hhead; h !== undefined; h = h.next) if (h.cls === X && h.req.session === e.req.session) return true;
    }
    return false;
  }

  /** Does waiting entry w conflict with a hold of rec's session (so it cannot be granted before that hold goes)? */
  private behindHold(w: Entry, rec: SessionRec): boolean {
    for (let h = rec.held; h !== undefined; h = h.snext) for (const he of h.entries) if (entriesConflict(he, w)) return true;
    return false;
  }

  /** Does rec's session hold anything overlapping node n (so its waiters at n may skip or be exempt)? */
  private holdsNear(rec: SessionRec | undefined, n: PathNode): boolean {
    for (let h = rec?.held; h !== undefined; h = h.snext) for (const he of h.entries) if (isUnder(n, he.node) || isUnder(he.node, n)) return true;
    return false;
  }

  private setTangled(f: Entry, on: boolean): void {
    if (f.tangled === on) return;
    const n = f.node;
    f.tangled = on;
    if (on) {
      f.tprev = undefined;
      f.tnext = n.thead;
      if (n.thead !== undefined) n.thead.tprev = f;
      n.thead = f;
    } else {
      if (f.tprev === undefined) n.thead = f.tnext; else f.tprev.tnext = f.tnext;
      if (f.tnext !== undefined) f.tnext.tprev = f.tprev;
      f.tprev = f.tnext = undefined;
    }
  }

  /** rec's session gained (or lost) a hold at node m: its waiting entries near m may change entanglement. */
  private retangle(rec: SessionRec | undefined, m: PathNode, gained: boolean): void {
    for (let r = rec?.waiting; r !== undefined; r = r.snext) {
      for (const f of r.entries) {
        if (!(isUnder(f.node, m) || isUnder(m, f.node))) continue;
        this.setTangled(f, gained || this.holdsNear(rec, f.node));
      }
    }
  }

  /** Calls f for each holder (of another session) and each earlier waiter that blocks e; stops when f returns true. */
  private forEachBlocker(e: Entry, order: number, f: (b: Entry, held: boolean) => boolean): boolean {
    const session = e.req.session;
    const mask = CONFLICTS[e.cls]!;
    const holders = (m: PathNode, mk: number): boolean => {
      for (let h = m.hhead; h !== undefined; h = h.next) if ((mk & (1 << h.cls)) && h.req.session !== session && f(h, true)) return true;
      return false;
    };
    for (let a = e.node.parent; a !== undefined; a = a.parent) if (holders(a, mask & ~NBIT)) return true;
    if (e.cls === N) {
      if (holders(e.node, mask)) return true;
    } else {
      const stack: PathNode[] = [e.node];
      while (stack.length > 0) {
        const m = stack.pop()!;
        if (holders(m, mask)) return true;
        if (m.children !== undefined) for (const c of m.children.values()) if (sumMask(c.sh, mask) > 0) stack.push(c);
      }
    }
    const rec = this.sessions.get(session);
    const skips = rec?.held !== undefined;
    if (skips && this.coveredByOwnExclusive(e)) return false;
    return this.forEachEarlierWaiter(e, order, (w) => (!skips || !this.behindHold(w, rec!)) && f(w, false));
  }

  private lockedError(path: string, session: string, targets: readonly { segs: readonly string[]; cls: Cls }[]): LatchkeyError {
    const by = new Set<string>();
    const probe = new LockRequest(0, session, 'write', this.nextOrder, 0);
    for (const t of targets) {
      const e = new Entry(probe, this.nodeAt(t.segs), t.cls);
      probe.entries.push(e);
      this.forEachBlocker(e, probe.order, (b) => { by.add(b.req.session); return false; });
    }
    this.prune(probe); // the probe leaves no nodes behind
    const names = [...by];
    return new LatchkeyError('LOCKED', `${path} is locked by session ${names.join(', ') || '?'}`, { path, info: { sessions: names } });
  }

  /** Registers a request that must wait; DEADLOCK (and no trace) if its wait closes a cycle. */
  private enqueue(req: LockRequest): LockRequest {
    for (const e of req.entries) this.addWaiter(e);
    this.waitCount++;
    this.link(req, true);
    const cycle = this.findCycle(req);
    if (cycle !== undefined) {
      this.dropWaiting(req);
      this.prune(req);
      this.counters.deadlocks++;
      const text = cycle.map((s) => `${s.session} (${s.kind} ${s.path}) waits for ${s.waitsFor}`).join('; ');
      throw new LatchkeyError('DEADLOCK', `deadlock: ${text}`, { path: req.path, info: { cycle } });
    }
    return req;
  }

  /** A path in the session wait-for graph from req's blockers back to req's session, as cycle steps. */
  private findCycle(req: LockRequest): CycleStep[] | undefined {
    const me = req.session;
    const rec = this.sessions.get(me)!;
    if (!this.mayBeWaitedOn(rec, req)) return undefined;
    // BFS over sessions; `via` remembers how each was reached.
    const via = new Map<string, CycleStep>();
    const queue: string[] = [];
    const edgesOf = (r: LockRequest, from: string): string | undefined => {
      let found: string | undefined;
      for (const e of r.entries) {
        this.forEachBlocker(e, r.order, (b) => {
          const s = b.req.session;
          if (s === from || via.has(s)) return false;
          via.set(s, { session: from, kind: r.kind, path: e.node.path, waitsFor: s });
          if (s === me) { found = s; return true; }
          queue.push(s);
          return false;
        });
        if (found !== undefined) return found;
      }
      return undefined;
    };
    // Start from every waiting request of this session, not just `req`: an
    // upgrade also adds edges *into* the session (waiters it now goes
    // before), so the new cycle may leave through another of its requests.
    let seeded: string | undefined;
    for (let r = rec.waiting; r !== undefined && seeded === undefined; r = r.snext) seeded = edgesOf(r, me);
    if (seeded === undefined) {
      let hit = false;
      while (queue.length > 0 && !hit) {
        const s = queue.shift()!;
        for (let r = this.sessions.get(s)?.waiting; r !== undefined; r = r.snext) {
          if (edgesOf(r, s) !== undefined) { hit = true; break; }
        }
      }
      if (!hit) return undefined;
    }
    // Walk back from `me` through `via` to rebuild the cycle in order.
    const steps: CycleStep[] = [];
    let cur = me;
    for (let guard = 0; guard <= via.size; guard++) {
      const step = via.get(cur);
      assert(step !== undefined, 'deadlock cycle lost its way');
      steps.push(step);
      cur = step.session;
      if (cur === me) break;
    }
    return steps.reverse();
  }

  /**
   * Could any request of another session be waiting for rec's session? Only
   * then can a cycle pass through it. A conservative O(own requests · depth)
   * test on the counts: a waiter overlapping one of its holds, or one of its
   * waiting requests other than `newest` (nothing queues behind the newest).
   */
  private mayBeWaitedOn(rec: SessionRec, newest: LockRequest): boolean {
    const near = (e: Entry, self: number): boolean => {
      const mask = CONFLICTS[e.cls]!;
      for (let a = e.node.parent; a !== undefined; a = a.parent) {
        for (let c = 0; c < NCLS; c++) if ((mask & ~NBIT & (1 << c)) && a.head[c] !== undefined) return true;
      }
      const here = e.cls === N ? sumExact(e.node, mask) : sumMask(e.node.sw, mask);
      return here > self;
    };
    for (let h = rec.held; h !== undefined; h = h.snext) for (const e of h.entries) if (near(e, 0)) return true;
    for (let r = rec.waiting; r !== undefined; r = r.snext) {
      if (r === newest && r.order > 0) continue;
      for (const e of r.entries) if (near(e, CONFLICTS[e.cls]! & (1 << e.cls) ? 1 : 0)) return true;
    }
    return false;
  }

  /** Puts req on its session's waiting (or held) list. */
  private link(req: LockRequest, waiting: boolean): void {
    let rec = this.sessions.get(req.session);
    if (rec === undefined) this.sessions.set(req.session, (rec = new SessionRec()));
    const head = waiting ? rec.waiting : rec.held;
    req.sprev = undefined;
    req.snext = head;
    if (head !== undefined) head.sprev = req;
    if (waiting) rec.waiting = req; else rec.held = req;
  }

  private unlink(req: LockRequest, waiting: boolean): void {
    const rec = this.sessions.get(req.session)!;
    if (req.sprev !== undefined) req.sprev.snext = req.snext;
    else if (waiting) rec.waiting = req.snext;
    else rec.held = req.snext;
    if (req.snext !== undefined) req.snext.sprev = req.sprev;
    req.sprev = req.snext = undefined;
    if (rec.waiting === undefined && rec.held === undefined) {
      this.sessions.delete(req.session);
      this.recheck.delete(rec);
    }
  }

  private addWaiter(e: Entry): void {
    const n = e.node;
    const c = e.cls;
    e.next = undefined;
    if (e.req.order < 0) {
      // Upgrades go before ordinary waiters, in their own order.
      let at = n.head[c];
      while (at !== undefined && at.req.order < e.req.order) at = at.next;
      if (at === undefined) this.append(n, e);
      else {
        e.next = at;
        e.prev = at.prev;
        if (at.prev === undefined) n.head[c] = e; else at.prev.next = e;
        at.prev = e;
      }
    } else {
      this.append(n, e);
    }
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) {
      const was = m.waiting();
      m.sw[c]!++;
      if (was === 0 && m.parent !== undefined) (m.parent.wchildren ??= new Set()).add(m);
    }
    const rec = this.sessions.get(e.req.session);
    if (rec?.held !== undefined && this.holdsNear(rec, n)) this.setTangled(e, true);
  }

  private append(n: PathNode, e: Entry): void {
    const c = e.cls;
    e.prev = n.tail[c];
    if (n.tail[c] === undefined) n.head[c] = e; else n.tail[c]!.next = e;
    n.tail[c] = e;
  }

  private removeWaiter(e: Entry): void {
    if (e.tangled) this.setTangled(e, false);
    const n = e.node;
    const c = e.cls;
    if (e.prev === undefined) n.head[c] = e.next; else e.prev.next = e.next;
    if (e.next === undefined) n.tail[c] = e.prev; else e.next.prev = e.prev;
    e.prev = e.next = undefined;
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) {
      m.sw[c]!--;
      if (m.waiting() === 0 && m.parent !== undefined) m.parent.wchildren!.delete(m);
    }
  }

  private addHold(e: Entry): void {
    const s = e.req.session;
    const c = e.cls;
    const n = e.node;
    e.prev = undefined;
    e.next = n.hhead;
    if (n.hhead !== undefined) n.hhead.prev = e;
    n.hhead = e;
    e.node.h[c]!++;
    for (let m: PathNode | undefined = e.node; m !== undefined; m = m.parent) m.sh[c]!++;
  }

  private removeHold(e: Entry): void {
    const s = e.req.session;
    const c = e.cls;
    const n = e.node;
    if (e.prev === undefined) n.hhead = e.next; else e.prev.next = e.next;
    if (e.next !== undefined) e.next.prev = e.prev;
    e.prev = e.next = undefined;
    e.node.h[c]!--;
    for (let m: PathNode | undefined = e.node; m !== undefined; m = m.parent) m.sh[c]!--;
  }

  private dropWaiting(req: LockRequest): void {
    assert(req.state === 'waiting', 'dropWaiting of a request that is not waiting');
    for (const e of req.entries) this.removeWaiter(e);
    req.state = 'done';
    this.waitCount--;
    this.unlink(req, true);
    if (req.kind === 'upgrade' && req.link !== undefined && req.link.link === req) req.link.link = undefined;
  }

  private dropHeld(req: LockRequest, died: boolean): void {
    assert(req.state === 'held', 'dropHeld of a request that is not held');
    for (const e of req.entries) {
      this.removeHold(e);
      if (died) this.setTaint(e.node);
    }
    req.state = 'done';
    this.holdCount--;
    if (req.token !== 0) {
      this.tokens.delete(req.token);
      this.journal?.unhold(req.token);
    }
    this.unlink(req, false);
    const rec = this.sessions.get(req.session);
    if (rec?.waiting !== undefined) for (const e of req.entries) this.retangle(rec, e.node, false);
  }

  private setTaint(n: PathNode): void {
    if (n.taint) return;
    n.taint = true;
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) m.st++;
    this.taints.add(n);
    this.journal?.taint(n.path, true);
  }

  private untaint(m: PathNode): void {
    m.taint = false;
    this.taints.delete(m);
    for (let a: PathNode | undefined = m; a !== undefined; a = a.parent) a.st--;
    this.journal?.taint(m.path, false);
  }

  /** Restores a taint found at recovery (its owner died with the previous run). */
  restoreTaint(path: string): void {
    this.setTaint(this.nodeAt(parsePath(path)));
  }

  /**
   * The holder `req`, told ownerDied, repaired what the lock protects: the
   * taints at and below its paths are cleared (one above it stays: it
   * covers more than this lock). No-op for a lock not told ownerDied.
   */
  markConsistent(req: LockRequest): void {
    assert(req.state === 'held', 'markConsistent of a lock that is not held');
    if (!req.ownerDied) return;
    for (const e of req.entries) if (e.node.st > 0) this.clearTaints(e.node);
  }

  /** Forgets every taint at and below `path` (an operator's reset). */
  resetTaints(path: string): void {
    let n: PathNode | undefined = this.root;
    for (const seg of parsePath(path)) {
      n = n.children?.get(seg);
      if (n === undefined) return;
    }
    if (n.st > 0) this.clearTaints(n);
  }

  /** Is a lock at `path` owner-died now (a taint at, above or below it)? */
  isTainted(path: string): boolean {
    let n: PathNode = this.root;
    for (const seg of parsePath(path)) {
      if (n.taint) return true;
      const c = n.children?.get(seg);
      if (c === undefined) return false;
      n = c;
    }
    return n.st > 0;
  }

  /** Clears the taints at n and below (a told holder covering them released cleanly). */
  private clearTaints(n: PathNode): void {
    const cleared: PathNode[] = [];
    const stack = [n];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (m.taint) {
        this.untaint(m);
        cleared.push(m);
      }
      if (m.children !== undefined) for (const c of m.children.values()) if (c.st > 0) stack.push(c);
    }
    for (const m of cleared) this.pruneUp(m);
  }

  private pruneUp(n: PathNode): void {
    while (n.parent !== undefined && n.empty() && n.parent.children?.get(n.name) === n) {
      n.parent.children.delete(n.name);
      n = n.parent;
    }
  }

  /** Trie nodes and owner-died taints (for tests and stats). */
  get footprint(): { nodes: number; taints: number } {
    let nodes = 0;
    const stack = [this.root];
    while (stack.length > 0) {
      const m = stack.pop()!;
      nodes++;
      if (m.children !== undefined) for (const c of m.children.values()) stack.push(c);
    }
    return { nodes: nodes - 1, taints: this.taints.size };
  }

  private tainted(n: PathNode): boolean {
    if (n.st > 0) return true;
    for (let a = n.parent; a !== undefined; a = a.parent) if (a.taint) return true;
    return false;
  }


  private markHeld(req: LockRequest): void {
    for (const e of req.entries) this.addHold(e);
    req.state = 'held';
    req.since = this.clock();
    this.holdCount++;
    this.link(req, false);
    const rec = this.sessions.get(req.session)!;
    if (rec.waiting !== undefined) for (const e of req.entries) this.retangle(rec, e.node, true);
    if (req.kind !== 'write') {
      req.token = ++this.lastToken;
      this.tokens.set(req.token, req);
      req.ownerDied = this.tainted(req.entries[0]!.node);
      this.journal?.hold(req.token, req.entries[0]!.node.path);
    }
    this.counters.grants++;
  }

  private finishUpgrade(up: LockRequest): void {
    const lock = up.link!;
    const e = lock.entries[0]!;
    this.removeHold(e);
    e.cls = X;
    lock.kind = 'exclusive';
    this.addHold(e);
    this.tokens.delete(lock.token);
    this.journal?.unhold(lock.token);
    lock.token = ++this.lastToken;
    this.tokens.set(lock.token, lock);
    this.journal?.hold(lock.token, e.node.path);
    lock.link = undefined;
    up.state = 'held';
    up.token = lock.token;
    up.since = this.clock();
    this.counters.grants++;
  }

  /** A waiting request became grantable: grant it and queue it for delivery. */
  private grantWaiting(req: LockRequest): void {
    for (const e of req.entries) this.removeWaiter(e);
    this.waitCount--;
    this.unlink(req, true);
    if (req.kind === 'upgrade') {
      req.state = 'waiting';
      this.finishUpgrade(req);
    } else {
      this.markHeld(req);
    }
    this.counters.wakeups++;
    this.out.push(req);
    // Its session's other waiters may now be grantable: the new holder is
    // theirs, and they may skip waiters queued behind it.
    const rec = this.sessions.get(req.session);
    if (rec?.waiting !== undefined) this.recheck.add(rec);
  }

  /**
   * After removing an entry at `node` whose class conflicted with the
   * classes in `mask`: grants every waiter that became grantable. Candidates
   * are waiters at node's ancestors, at node, and (when mask allows) below.
   */
  private scanAfter(node: PathNode, mask: number): void {
    for (let a: PathNode | undefined = node; a !== undefined; a = a.parent) if (hasOwnWaiters(a)) this.scanNode(a);
    if (mask === 0) return;
    const stack: PathNode[] = [];
    if (node.wchildren !== undefined) for (const c of node.wchildren) if (sumMask(c.sw, mask) > 0) stack.push(c);
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (m.wchildren !== undefined) for (const c of m.wchildren) if (sumMask(c.sw, mask) > 0) stack.push(c);
      if (hasOwnWaiters(m)) this.scanNode(m);
    }
  }

  /**
   * Grants the waiters at n that became grantable. In FIFO order until one
   * stays blocked: every later waiter there that conflicts with it stays
   * blocked too — unless its session holds something overlapping n (it may
   * skip waiters queued behind that hold, or be exempt from their blocker):
   * those "entangled" entries are kept in a list of their own and checked
   * after. A run of compatible waiters behind a blocked S or W entry is
   * still checked, since what blocks that entry may not block them
   * (another path of the same write).
   */
  private scanNode(n: PathNode): void {
    this.scanQueue(n);
    for (let f = n.thead; f !== undefined;) {
      const next = f.tnext;
      if (f.req.state === 'waiting' && !this.blocked(f.req, true)) this.grantWaiting(f.req);
      f = next;
    }
  }

  private scanQueue(n: PathNode): void {
    const ptr: (Entry | undefined)[] = [n.head[0], n.head[1], n.head[2], n.head[3]];
    let first: Entry | undefined; // the first entry here that stayed blocked
    for (;;) {
      let best = -1;
      for (let c = 0; c < NCLS; c++) {
        const p = ptr[c];
        if (p !== undefined && (best < 0 || p.req.order < ptr[best]!.req.order)) best = c;
      }
      if (best < 0) return;
      const e = ptr[best]!;
      ptr[best] = e.next;
      if (first !== undefined) {
        if (GROUP[e.cls] !== GROUP[first.cls]) return;
        // Same class, single-path blocker, a session holding nothing: what
        // blocks `first` blocks e too (see note 3) — no need to look.
        if (e.cls === first.cls && first.req.entries.length === 1 && this.sessions.get(e.req.session)!.held === undefined) continue;
      }
      if (this.blocked(e.req, true)) {
        if (e.cls === X) return;
        first ??= e;
        continue;
      }
      this.grantWaiting(e.req);
    }
  }
}

/** Classes of the waiters below an entry of class c that it may have blocked (a node write blocks nothing below it). */
function belowMask(c: Cls): number {
  return c === N ? 0 : CONFLICTS[c]!;
}

/** Waiting entries exactly at n of the classes in mask. */
function sumExact(n: PathNode, mask: number): number {
  let k = 0;
  for (let c = 0; c < NCLS; c++) if (mask & (1 << c)) for (let w = n.head[c]; w !== undefined; w = w.next) k++;
  return k;
}

function hasOwnWaiters(n: PathNode): boolean {
  return n.head[0] !== undefined || n.head[1] !== undefined || n.head[2] !== undefined || n.head[3] !== undefined;
}

function earlierHead(n: PathNode, mask: number, order: number): boolean {
  for (let c = 0; c < NCLS; c++) {
    if (!(mask & (1 << c))) continue;
    const h = n.head[c];
    if (h !== undefined && h.req.order < order) return true;
  }
  return false;
}

/**
 * Is there a holder at exactly n, of a class in mask, of another session?
 * The counts answer "none" in O(1); otherwise the first foreign holder
 * found answers "yes" (only a node crowded with the asker's own holds
 * costs more).
 */
function foreignAt(n: PathNode, session: string, mask: number): boolean {
  if (sumMask(n.h, mask) === 0) return false;
  for (let h = n.hhead; h !== undefined; h = h.next) if ((mask & (1 << h.cls)) && h.req.session !== session) return true;
  return false;
}

/** Do two entries overlap and conflict (sessions aside)? */
function entriesConflict(a: Entry, b: Entry): boolean {
  if (!(CONFLICTS[a.cls]! & (1 << b.cls))) return false;
  return a.node === b.node || (a.cls !== N && isUnder(b.node, a.node)) || (b.cls !== N && isUnder(a.node, b.node));
}

function isUnder(m: PathNode, n: PathNode): boolean {
  while (m.depth > n.depth) m = m.parent!;
  return m === n;
}

/**
 * Targets as entries: duplicates merged, targets covered by a subtree target
 * of the same write dropped (one entry per node, none under another subtree
 * entry of the same request).
 */
function normalizeTargets(targets: readonly WriteTarget[]): { segs: readonly string[]; cls: Cls }[] {
  if (targets.length === 1) return [{ segs: parsePath(targets[0]!.path), cls: targets[0]!.subtree ? W : N }];
  const byPath = new Map<string, boolean>();
  for (const t of targets) byPath.set(t.path, (byPath.get(t.path) ?? false) || t.subtree);
  const paths = [...byPath.keys()].sort((a, b) => a.length - b.length);
  const subtrees: string[] = [];
  const out: { segs: readonly string[]; cls: Cls }[] = [];
  for (const p of paths) {
    if (subtrees.some((s) => s === '/' || p.startsWith(s + '/'))) continue;
    const sub = byPath.get(p)!;
    if (sub) subtrees.push(p);
    out.push({ segs: parsePath(p), cls: sub ? W : N });
  }
  return out;
}
