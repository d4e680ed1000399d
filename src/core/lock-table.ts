/**
 * The lock table: subtree locks, mandatory write admission, FIFO handoff
 * without a herd, owner-died, fencing tokens, deadlock detection.
 *
 * Pure: no timers, no promises. The engine calls in and gets decisions back
 * (a request held or waiting, the list of requests a release made grantable,
 * a LatchkeyError); it owns the promises and timers. Every method runs to
 * completion, so the table is always in a consistent state between calls.
 *
 * Files. This one is the public module: the numbered notes, the operations
 * (lock, admitWrite, upgrade, downgrade, release, cancel, endSession, the
 * queries), the grant rule of note 2 (`wouldWait`, `entryBlocked`) and the
 * scans that grant after a removal (`scanAfter`, `scanNode`). It re-exports
 * the types importers use. Beside it:
 *   - lock-trie.ts: the data structure of note 3 — `LockRequest`, `Entry`,
 *     `PathNode` with its counts and lists, each session's request lists
 *     (`SessionRequests`), the owner-died taints of note 5, and `LockTrie`,
 *     which keeps them all consistent and decides nothing; also a write's
 *     targets as placements (`normalizeTargets`).
 *   - lock-wait-for.ts: who waits for whom — the blockers of an entry
 *     (`forEachBlocker`, `forEachEarlierWaiter`, used for grants, LOCKED
 *     messages and diagnostics too) and the deadlock search of note 4
 *     (`findCycle`).
 * They import downward only: lock-table → lock-wait-for → lock-trie.
 *
 * 1. Requests and classes. A request is a lock (shared S / exclusive X), an
 *    upgrade (X, by the holder of an S lock), or a write admission: one entry
 *    per target, class W (a subtree: recursive delete, sequential create) or
 *    N (one node). In code the classes are `LockClass.Shared`, `Exclusive`,
 *    `WriteSubtree` and `WriteNode`; `CONFLICTS[c]` is the mask of classes
 *    that conflict with c. Each entry (`Entry`) sits at a path. Two entries *overlap* when one
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
 * 3. Data structure (lock-trie.ts). A trie of path nodes (`PathNode`) keyed
 *    by segment, created on demand and pruned when empty. Each node keeps,
 *    per class, exact and subtree counts of holders (`heldHere`,
 *    `heldInSubtree`) and subtree counts of waiters (`waitingInSubtree`);
 *    an intrusive list of the entries holding there (`holders`); a FIFO
 *    doubly linked list of its waiting entries per class (`waitHead[c]` …
 *    `waitTail[c]`: the earliest conflicting waiter at a node is a list
 *    head; cancelling is O(1)); and the set of children whose subtree has
 *    waiters (`childrenWithWaiters`). Each session has intrusive lists of
 *    its held and waiting requests (`SessionRequests`). A grant or a wait
 *    allocates nothing but its request.
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
 *        their own session): each node keeps those in a list of their own
 *        (`tangledWaiters`), checked after the walk (`scanNode`).
 *        Entanglement changes only when a session gains or loses a hold,
 *        for its own waiting entries near that hold (`LockTrie.retangle`).
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
 * 4. Deadlock (lock-wait-for.ts). The wait-for graph is over sessions:
 *    A → B when a waiting request of A is blocked by a holder of B or an
 *    earlier waiter of B (`forEachBlocker` lists B's entries). A request
 *    that must wait is registered, then a search from the blockers of
 *    every waiting request of its session looks for the session itself;
 *    if found, the request is removed again (no side effects: nothing was
 *    waiting behind it that was not blocked already) and fails DEADLOCK
 *    naming the cycle. Edges appear only when a request waits or when an
 *    upgrade turns S into X (waiters it now goes before wait for it), so an
 *    upgrade is checked even when it is granted at once. The search (over
 *    every blocker of every waiting request it reaches) is skipped when no
 *    waiter can be waiting on the requesting session: none overlaps its
 *    holds or its other waiting requests (a test on the counts).
 *
 * 5. Owner died (lock-trie.ts: `tainted`, `taintsInSubtree`). A lock whose
 *    session ends while holding it taints its path. Every later lock grant
 *    overlapping a taint carries ownerDied; the taint is cleared when a
 *    holder that was told (ownerDied) and covers the path says the
 *    protected data is whole again (`markConsistent`). A release without it
 *    leaves the taint for the next holder. Taints are never dropped to save
 *    memory: each keeps its trie node (one per tainted path) until it is
 *    cleared, or `resetTaints` forgets a subtree of them.
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
import {
  CLASS_COUNT, COMPATIBLE_GROUP, CONFLICTS, Entry, LockClass, LockRequest, LockTrie, type LockMode, type PathNode, type SessionRequests,
  WRITE_NODE_BIT, type Placement, type WriteTarget, anyWaiterAt, conflictsBelow, countIn, earlierWaiterAt, foreignHolderAt, hasWaitersAt, listOf,
  normalizeTargets,
} from './lock-trie.js';
import { type Blocker, type CycleStep, behindHold, coveredByOwnExclusive, findCycle, forEachBlocker, forEachEarlierWaiter } from './lock-wait-for.js';
import { type LockPage, type LockPageOptions, lockPage, sessionCounts } from './lock-page.js';

export { LockRequest, type LockMode, type RequestKind, type RequestState, type WriteTarget } from './lock-trie.js';
export type { Blocker, CycleStep } from './lock-wait-for.js';

export interface LockTableOptions {
  /** Time source for `since` (default: always 0; the engine passes Date.now). */
  clock?: () => number;
  /** Tokens start above this (e.g. the store revision). */
  firstToken?: number;
  journal?: LockJournal;
}

/** Receives the table's changes that must outlive a crash (note 7). */
export interface LockJournal {
  /** A hold began (`robust` false: a crash need not remember it, only its token). */
  hold(token: number, path: string, robust: boolean): void;
  unhold(token: number, robust: boolean): void;
  taint(path: string, on: boolean): void;
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
  private readonly trie: LockTrie;
  /** Each session's held and waiting requests (the trie's, shared). */
  private readonly sessions: Map<string, SessionRequests>;
  private readonly clock: () => number;
  private nextId = 1;
  private nextOrder = 1;
  private nextUpgradeOrder = -Number.MAX_SAFE_INTEGER;
  private lastToken: number;
  private readonly journal: LockJournal | undefined;
  private readonly tokens = new Map<number, LockRequest>();
  private holdCount = 0;
  private waitCount = 0;
  /** Grants made by the current operation. */
  private grants: LockRequest[] = [];
  /** Grants of the last lock/upgrade besides its own request (see drain). */
  private grantsToDrain: LockRequest[] = [];
  /** Sessions whose waiting requests must be checked again before the current call returns. */
  private readonly sessionsToRecheck = new Set<SessionRequests>();
  readonly counters: LockTableCounters = { wakeups: 0, grants: 0, deadlocks: 0 };

  constructor(options: LockTableOptions = {}) {
    this.clock = options.clock ?? (() => 0);
    this.lastToken = options.firstToken ?? 0;
    this.journal = options.journal;
    this.trie = new LockTrie(options.journal);
    this.sessions = this.trie.sessions;
  }

  /** The token of the latest grant. */
  get lastGranted(): number {
    return this.lastToken;
  }

  /** Restores a taint found at recovery (its owner died with the previous run). */
  restoreTaint(path: string): void {
    this.trie.setTaint(this.trie.nodeAt(parsePath(path)));
  }

  /**
   * The holder `req`, told ownerDied, repaired what the lock protects: the
   * taints at and below its paths are cleared (one above it stays: it
   * covers more than this lock). No-op for a lock not told ownerDied.
   */
  markConsistent(req: LockRequest): void {
    assert(req.state === 'held', 'markConsistent of a lock that is not held');
    if (!req.ownerDied || !req.robust) return; // a non-robust holder protects nothing: it cannot vouch for the data
    for (const e of req.entries) if (e.node.taintsInSubtree > 0) this.trie.clearTaints(e.node);
  }

  /** Forgets every taint at and below `path` (an operator's reset). */
  resetTaints(path: string): void {
    let n: PathNode | undefined = this.trie.root;
    for (const seg of parsePath(path)) {
      n = n.children?.get(seg);
      if (n === undefined) return;
    }
    if (n.taintsInSubtree > 0) this.trie.clearTaints(n);
  }

  /** Is a lock at `path` owner-died now (a taint at, above or below it)? */
  isTainted(path: string): boolean {
    let n: PathNode = this.trie.root;
    for (const seg of parsePath(path)) {
      if (n.tainted) return true;
      const c = n.children?.get(seg);
      if (c === undefined) return false;
      n = c;
    }
    return n.taintsInSubtree > 0;
  }

  get size(): { held: number; waiting: number } {
    return { held: this.holdCount, waiting: this.waitCount };
  }

  /** Trie nodes and owner-died taints (for tests and stats). */
  get footprint(): { nodes: number; taints: number } {
    return this.trie.footprint;
  }

  // ---------------------------------------------------------------- requests

  /**
   * Requests a lock. Returns it held, or waiting (deliver it when a later
   * call returns it among its grants). Throws LOCKED (wait false) or
   * DEADLOCK, with no side effects.
   */
  lock(session: string, path: string, mode: LockMode, wait = true, robust = true): LockRequest {
    const segs = parsePath(path);
    if (mode !== 'shared' && mode !== 'exclusive') throw new LatchkeyError('INVALID_ARGUMENT', `lock mode must be 'shared' or 'exclusive', not ${JSON.stringify(mode)}`);
    const cls = mode === 'shared' ? LockClass.Shared : LockClass.Exclusive;
    if (this.holdCount > 0 || this.waitCount > 0) {
      if (this.wouldWait(segs, cls, session)) {
        if (!wait) throw this.lockedError(path, session, [{ segs, cls }]);
        const req = new LockRequest(this.nextId++, session, mode, this.nextOrder++, this.clock());
        req.robust = robust;
        req.entries.push(new Entry(req, this.trie.nodeAt(segs), cls));
        return this.enqueue(req);
      }
    }
    const req = new LockRequest(this.nextId++, session, mode, this.nextOrder++, this.clock());
    req.robust = robust;
    req.entries.push(new Entry(req, this.trie.nodeAt(segs), cls));
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
    const out = this.grantsToDrain;
    if (out.length > 0) this.grantsToDrain = [];
    return out;
  }

  /**
   * Admits a write by `session` touching `targets`. Returns undefined when it
   * may apply now (nothing is held for it: the caller must apply it, or hold
   * it with `holdWrite`, before any other call into the table), or a waiting request, which once granted
   * is held until the caller `release`s it after applying the write.
   * Throws LOCKED (wait false) or DEADLOCK.
   */
  admitWrite(session: string, targets: readonly WriteTarget[], wait = true): LockRequest | undefined {
    if (this.holdCount === 0 && this.waitCount === 0) return undefined;
    const placements = normalizeTargets(targets);
    let blocked = false;
    for (const t of placements) {
      if (this.wouldWait(t.segs, t.cls, session)) {
        blocked = true;
        break;
      }
    }
    if (!blocked) return undefined;
    if (!wait) throw this.lockedError(placements[0] === undefined ? '/' : joinPath(placements[0].segs), session, placements);
    const req = new LockRequest(this.nextId++, session, 'write', this.nextOrder++, this.clock());
    for (const t of placements) req.entries.push(new Entry(req, this.trie.nodeAt(t.segs), t.cls));
    return this.enqueue(req);
  }

  /**
   * Holds a write that `admitWrite` just admitted at once (returned
   * undefined, and no call into the table since) but that the caller cannot
   * apply in this tick (the engine's write back-pressure): from now on a
   * request that conflicts with it waits for it, as for a write granted
   * after waiting. Release it with `release` once the write is applied.
   */
  holdWrite(session: string, targets: readonly WriteTarget[]): LockRequest {
    const req = new LockRequest(this.nextId++, session, 'write', this.nextOrder++, this.clock());
    for (const t of normalizeTargets(targets)) req.entries.push(new Entry(req, this.trie.nodeAt(t.segs), t.cls));
    this.markHeld(req);
    this.cascade(req.session);
    return req;
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
    req.entries.push(new Entry(req, e.node, LockClass.Exclusive));
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
    if (!wait) throw this.lockedError(lock.path, lock.session, [{ segs: parsePath(lock.path), cls: LockClass.Exclusive }]);
    lock.link = req;
    return this.enqueue(req);
  }

  /** Turns a held exclusive lock into a shared one; returns what that made grantable. */
  downgrade(lock: LockRequest): LockRequest[] {
    assert(lock.state === 'held' && lock.kind !== 'write' && lock.kind !== 'upgrade', 'downgrade of a request that is not a held lock');
    if (lock.kind === 'shared') return [];
    const e = lock.entries[0]!;
    this.trie.removeHold(e);
    e.cls = LockClass.Shared;
    lock.kind = 'shared';
    this.trie.addHold(e);
    this.grants = [];
    this.scanAfter(e.node, 1 << LockClass.Shared);
    return this.takeGrants();
  }

  /** Releases a held lock or write hold cleanly; returns what that made grantable. */
  release(req: LockRequest): LockRequest[] {
    if (req.state !== 'held' || req.kind === 'upgrade') return [];
    assert(req.link === undefined, 'release of a lock with an upgrade pending: cancel the upgrade first');
    this.dropHeld(req, false);
    this.grants = [];
    for (const e of req.entries) this.scanAfter(e.node, conflictsBelow(e.cls));
    this.trie.prune(req);
    return this.takeGrants();
  }

  /** Takes a waiting request out of the queue (timeout, abort); returns what that made grantable. */
  cancel(req: LockRequest): LockRequest[] {
    if (req.state !== 'waiting') return [];
    this.dropWaiting(req);
    this.grants = [];
    for (const e of req.entries) this.scanAfter(e.node, conflictsBelow(e.cls));
    this.trie.prune(req);
    return this.takeGrants();
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
    this.grants = [];
    for (const r of [...cancelled, ...released]) {
      for (const e of r.entries) this.scanAfter(e.node, conflictsBelow(e.cls));
    }
    for (const r of cancelled) this.trie.prune(r);
    for (const r of released) this.trie.prune(r);
    return { cancelled, released, granted: this.takeGrants() };
  }

  // ----------------------------------------------------------------- queries

  /** The held lock with this token, if any. */
  byToken(token: number): LockRequest | undefined {
    return this.tokens.get(token);
  }

  /** Locks held by `session` (not write holds). */
  held(session: string): LockRequest[] {
    const out: LockRequest[] = [];
    for (let r = this.sessions.get(session)?.held; r !== undefined; r = r.sessionNext) if (r.kind !== 'write') out.push(r);
    return out.sort((a, b) => a.token - b.token);
  }

  /** One bounded page of held locks in path order, with their queues and the totals (lock-page.ts). */
  page(o: LockPageOptions): LockPage {
    return lockPage(this.trie.root, o);
  }

  /** Held and waiting counts per session (lock-page.ts). */
  sessionCounts(visible?: (path: string) => boolean): Map<string, { held: number; waiting: number }> {
    return sessionCounts(this.sessions, visible);
  }

  allHeld(): LockRequest[] {
    const out: LockRequest[] = [];
    for (const rec of this.sessions.values()) {
      for (let r = rec.held; r !== undefined; r = r.sessionNext) if (r.kind !== 'write') out.push(r);
    }
    return out.sort((a, b) => a.token - b.token);
  }

  allWaiting(): LockRequest[] {
    const out: LockRequest[] = [];
    for (const rec of this.sessions.values()) {
      for (let r = rec.waiting; r !== undefined; r = r.sessionNext) out.push(r);
    }
    return out.sort((a, b) => a.order - b.order);
  }

  /** For each held lock, how many waiting requests it blocks (a diagnostic: O(waiters · their blockers)). */
  waitersPerLock(): Map<LockRequest, number> {
    const out = new Map<LockRequest, number>();
    for (const rec of this.sessions.values()) {
      for (let r = rec.waiting; r !== undefined; r = r.sessionNext) {
        const seen = new Set<LockRequest>();
        for (const e of r.entries) {
          forEachBlocker(this.sessions, e, r.order, (b, held) => {
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
      forEachBlocker(this.sessions, e, req.order, (b, held) => {
        if (b.req !== req) out.push({ session: b.req.session, path: b.node.path, kind: b.req.kind, held });
        return false;
      });
    }
    return out;
  }

  // ------------------------------------------------ is it blocked? (note 2)

  /** Would a new request (class cls at segs, newest) wait? Read-only: leaves no nodes behind. */
  private wouldWait(segs: readonly string[], cls: LockClass, session: string): boolean {
    if (this.sessions.get(session)?.held !== undefined) {
      // A session that holds locks may skip waiters queued behind them: the full check.
      const probe = new LockRequest(0, session, 'write', this.nextOrder, 0);
      const e = new Entry(probe, this.trie.nodeAt(segs), cls);
      probe.entries.push(e);
      const blocked = this.entryBlocked(e, this.nextOrder, false);
      this.trie.prune(probe);
      return blocked;
    }
    const mask = CONFLICTS[cls]!;
    const ancestorMask = mask & ~WRITE_NODE_BIT;
    let n = this.trie.root;
    for (let i = 0; i < segs.length; i++) {
      if (foreignHolderAt(n, session, ancestorMask)) return true;
      if (anyWaiterAt(n, ancestorMask)) return true;
      const next = n.children?.get(segs[i]!);
      if (next === undefined) return false;
      n = next;
    }
    if (cls === LockClass.WriteNode) return foreignHolderAt(n, session, mask) || anyWaiterAt(n, mask);
    if (this.trie.foreignHolderBelow(n, session, mask)) return true;
    return countIn(n.waitingInSubtree, mask) > 0;
  }

  /** Is a registered (or about-to-be-granted) request blocked? */
  private blocked(req: LockRequest, registered: boolean): boolean {
    for (const e of req.entries) if (this.entryBlocked(e, req.order, registered)) return true;
    return false;
  }

  private entryBlocked(e: Entry, order: number, registered: boolean): boolean {
    const session = e.req.session;
    const mask = CONFLICTS[e.cls]!;
    const ancestorMask = mask & ~WRITE_NODE_BIT;
    const n = e.node;
    // Holders of other sessions.
    for (let a = n.parent; a !== undefined; a = a.parent) if (foreignHolderAt(a, session, ancestorMask)) return true;
    if (e.cls === LockClass.WriteNode ? foreignHolderAt(n, session, mask) : this.trie.foreignHolderBelow(n, session, mask)) return true;
    // Earlier waiters. A session that holds locks skips those queued behind its holds.
    const rec = this.sessions.get(session);
    if (rec?.held !== undefined) {
      if (coveredByOwnExclusive(e)) return false;
      return forEachEarlierWaiter(e, order, (w) => !behindHold(w, rec));
    }
    for (let a = n.parent; a !== undefined; a = a.parent) if (earlierWaiterAt(a, ancestorMask, order)) return true;
    if (e.cls === LockClass.WriteNode) return earlierWaiterAt(n, mask, order);
    let below = countIn(n.waitingInSubtree, mask);
    if (registered && (mask & (1 << e.cls))) below--;
    if (below <= 0) return false;
    // An earlier conflicting waiter at this node or below: walk the nodes with such waiters.
    const stack: PathNode[] = [n];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (earlierWaiterAt(m, mask, order)) return true;
      if (m.childrenWithWaiters !== undefined) {
        for (const child of m.childrenWithWaiters) if (countIn(child.waitingInSubtree, mask) > 0) stack.push(child);
      }
    }
    return false;
  }

  private lockedError(path: string, session: string, placements: readonly Placement[]): LatchkeyError {
    const by = new Set<string>();
    const probe = new LockRequest(0, session, 'write', this.nextOrder, 0);
    for (const t of placements) {
      const e = new Entry(probe, this.trie.nodeAt(t.segs), t.cls);
      probe.entries.push(e);
      forEachBlocker(this.sessions, e, probe.order, (b) => {
        by.add(b.req.session);
        return false;
      });
    }
    this.trie.prune(probe); // the probe leaves no nodes behind
    const names = [...by];
    return new LatchkeyError('LOCKED', `${path} is locked by session ${names.join(', ') || '?'}`, { path, info: { sessions: names } });
  }

  // ------------------------------------------ waiting, holding, dropping

  /** Registers a request that must wait; DEADLOCK (and no trace) if its wait closes a cycle (note 4). */
  private enqueue(req: LockRequest): LockRequest {
    for (const e of req.entries) this.trie.addWaiter(e);
    this.waitCount++;
    this.trie.linkToSession(req, true);
    const cycle: CycleStep[] | undefined = findCycle(this.sessions, req);
    if (cycle !== undefined) {
      this.dropWaiting(req);
      this.trie.prune(req);
      this.counters.deadlocks++;
      const text = cycle.map((s) => `${s.session} (${s.kind} ${s.path}) waits for ${s.waitsFor}`).join('; ');
      throw new LatchkeyError('DEADLOCK', `deadlock: ${text}`, { path: req.path, info: { cycle } });
    }
    return req;
  }

  private unlinkFromSession(req: LockRequest, waiting: boolean): void {
    const forgotten = this.trie.unlinkFromSession(req, waiting);
    if (forgotten !== undefined) this.sessionsToRecheck.delete(forgotten);
  }

  private dropWaiting(req: LockRequest): void {
    assert(req.state === 'waiting', 'dropWaiting of a request that is not waiting');
    for (const e of req.entries) this.trie.removeWaiter(e);
    req.state = 'done';
    this.waitCount--;
    this.unlinkFromSession(req, true);
    if (req.kind === 'upgrade' && req.link !== undefined && req.link.link === req) req.link.link = undefined;
  }

  private dropHeld(req: LockRequest, died: boolean): void {
    assert(req.state === 'held', 'dropHeld of a request that is not held');
    for (const e of req.entries) {
      this.trie.removeHold(e);
      if (died && req.robust) this.trie.setTaint(e.node);
    }
    req.state = 'done';
    this.holdCount--;
    if (req.token !== 0) {
      this.tokens.delete(req.token);
      this.journal?.unhold(req.token, req.robust);
    }
    this.unlinkFromSession(req, false);
    const rec = this.sessions.get(req.session);
    if (rec?.waiting !== undefined) for (const e of req.entries) this.trie.retangle(rec, e.node, false);
  }

  private markHeld(req: LockRequest): void {
    for (const e of req.entries) this.trie.addHold(e);
    req.state = 'held';
    req.since = this.clock();
    this.holdCount++;
    this.trie.linkToSession(req, false);
    const rec = this.sessions.get(req.session)!;
    if (rec.waiting !== undefined) for (const e of req.entries) this.trie.retangle(rec, e.node, true);
    if (req.kind !== 'write') {
      req.token = ++this.lastToken;
      this.tokens.set(req.token, req);
      req.ownerDied = this.trie.isTainted(req.entries[0]!.node);
      this.journal?.hold(req.token, req.entries[0]!.node.path, req.robust);
    }
    this.counters.grants++;
  }

  private finishUpgrade(up: LockRequest): void {
    const lock = up.link!;
    const e = lock.entries[0]!;
    this.trie.removeHold(e);
    e.cls = LockClass.Exclusive;
    lock.kind = 'exclusive';
    this.trie.addHold(e);
    this.tokens.delete(lock.token);
    this.journal?.unhold(lock.token, lock.robust);
    lock.token = ++this.lastToken;
    this.tokens.set(lock.token, lock);
    this.journal?.hold(lock.token, lock.entries[0]!.node.path, lock.robust);
    lock.link = undefined;
    up.state = 'held';
    up.token = lock.token;
    up.since = this.clock();
    this.counters.grants++;
  }

  // --------------------------------------------------- granting (note 2, 3)

  /** After a hold was added without a removal: grants the session's waiters it unblocked. */
  private cascade(session: string): void {
    const rec = this.sessions.get(session);
    if (rec?.waiting === undefined) return;
    this.grants = [];
    this.sessionsToRecheck.add(rec);
    this.grantsToDrain.push(...this.takeGrants());
  }

  /** After a removal's scans: rechecks the sessions that were granted something, then hands over the grants. */
  private takeGrants(): LockRequest[] {
    while (this.sessionsToRecheck.size > 0) {
      const rec: SessionRequests = this.sessionsToRecheck.values().next().value!;
      this.sessionsToRecheck.delete(rec);
      for (let r = rec.waiting; r !== undefined;) {
        const next = r.sessionNext;
        if (!this.blocked(r, true)) this.grantWaiting(r);
        r = next;
      }
    }
    const out = this.grants;
    this.grants = [];
    return out;
  }

  /** A waiting request became grantable: grant it and queue it for delivery. */
  private grantWaiting(req: LockRequest): void {
    for (const e of req.entries) this.trie.removeWaiter(e);
    this.waitCount--;
    this.unlinkFromSession(req, true);
    if (req.kind === 'upgrade') {
      req.state = 'waiting';
      this.finishUpgrade(req);
    } else {
      this.markHeld(req);
    }
    this.counters.wakeups++;
    this.grants.push(req);
    // Its session's other waiters may now be grantable: the new holder is
    // theirs, and they may skip waiters queued behind it.
    const rec = this.sessions.get(req.session);
    if (rec?.waiting !== undefined) this.sessionsToRecheck.add(rec);
  }

  /**
   * After removing an entry at `node` whose class conflicted with the
   * classes in `mask`: grants every waiter that became grantable. Candidates
   * are waiters at node's ancestors, at node, and (when mask allows) below.
   */
  private scanAfter(node: PathNode, mask: number): void {
    for (let a: PathNode | undefined = node; a !== undefined; a = a.parent) if (hasWaitersAt(a)) this.scanNode(a);
    if (mask === 0) return;
    const stack: PathNode[] = [];
    if (node.childrenWithWaiters !== undefined) {
      for (const child of node.childrenWithWaiters) if (countIn(child.waitingInSubtree, mask) > 0) stack.push(child);
    }
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (m.childrenWithWaiters !== undefined) {
        for (const child of m.childrenWithWaiters) if (countIn(child.waitingInSubtree, mask) > 0) stack.push(child);
      }
      if (hasWaitersAt(m)) this.scanNode(m);
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
    this.scanQueues(n);
    for (let e = n.tangledWaiters; e !== undefined;) {
      const next = e.tangledNext;
      if (e.req.state === 'waiting' && !this.blocked(e.req, true)) this.grantWaiting(e.req);
      e = next;
    }
  }

  /** Walks n's four wait queues merged in arrival order (see scanNode). */
  private scanQueues(n: PathNode): void {
    const cursor: (Entry | undefined)[] = [n.waitHead[0], n.waitHead[1], n.waitHead[2], n.waitHead[3]];
    let firstBlocked: Entry | undefined; // the first entry here that stayed blocked
    for (;;) {
      let earliest = -1;
      for (let c = 0; c < CLASS_COUNT; c++) {
        const at = cursor[c];
        if (at !== undefined && (earliest < 0 || at.req.order < cursor[earliest]!.req.order)) earliest = c;
      }
      if (earliest < 0) return;
      const e = cursor[earliest]!;
      cursor[earliest] = e.next;
      if (firstBlocked !== undefined) {
        if (COMPATIBLE_GROUP[e.cls] !== COMPATIBLE_GROUP[firstBlocked.cls]) return;
        // Same class, single-path blocker, a session holding nothing: what
        // blocks `firstBlocked` blocks e too (see note 3) — no need to look.
        if (e.cls === firstBlocked.cls && firstBlocked.req.entries.length === 1 && this.sessions.get(e.req.session)!.held === undefined) continue;
      }
      if (this.blocked(e.req, true)) {
        if (e.cls === LockClass.Exclusive) return;
        firstBlocked ??= e;
        continue;
      }
      this.grantWaiting(e.req);
    }
  }
}
