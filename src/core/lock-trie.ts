/**
 * The lock table's data structure (lock-table.ts, note 3): a trie of path
 * nodes with per-class counts of holders, waiters and taints for each node
 * and each subtree, the intrusive lists that hang off the nodes and off each
 * session, and the requests themselves. It keeps the counts and lists true;
 * it decides nothing (who may be granted is lock-table.ts, who waits for whom
 * lock-wait-for.ts).
 */
import { joinPath, parsePath } from './path.js';

export type LockMode = 'shared' | 'exclusive';
export type RequestKind = LockMode | 'upgrade' | 'write';
export type RequestState = 'waiting' | 'held' | 'done';

/** A place a write touches: one node, or its whole subtree. */
export interface WriteTarget {
  readonly path: string;
  readonly subtree: boolean;
}

/**
 * An entry's class (note 1): a shared or exclusive lock, or a write
 * admission for a whole subtree or for one node. The values index the
 * per-class count arrays and wait queues of a node.
 */
export const enum LockClass {
  Shared = 0,
  Exclusive = 1,
  WriteSubtree = 2,
  WriteNode = 3,
}
/** Where a request asks to be: a path (as segments) and a class. */
export interface Placement {
  readonly segs: readonly string[];
  readonly cls: LockClass;
}

export const CLASS_COUNT = 4;
/** Classes in the same group are compatible among themselves (shared with shared, writes with writes). */
export const COMPATIBLE_GROUP = [0, 1, 2, 2];
/**
 * A node write covers only its own node: it conflicts with nothing below it,
 * so a mask of classes held or waiting at an ancestor leaves this bit out.
 */
export const WRITE_NODE_BIT = 1 << LockClass.WriteNode;
/** CONFLICTS[c]: bit mask of the classes that conflict with class c (when overlapping). */
export const CONFLICTS = [
  /* Shared */ (1 << LockClass.Exclusive) | (1 << LockClass.WriteSubtree) | (1 << LockClass.WriteNode),
  /* Exclusive */ 0b1111,
  /* WriteSubtree */ (1 << LockClass.Shared) | (1 << LockClass.Exclusive),
  /* WriteNode */ (1 << LockClass.Shared) | (1 << LockClass.Exclusive),
];

/** Classes of the waiters below an entry of class c that it may have blocked (a node write blocks nothing below it). */
export function conflictsBelow(c: LockClass): number {
  return c === LockClass.WriteNode ? 0 : CONFLICTS[c]!;
}

/** The sum of counts[c] over the classes c in mask. */
export function countIn(counts: readonly number[], mask: number): number {
  let n = 0;
  for (let c = 0; c < CLASS_COUNT; c++) if (mask & (1 << c)) n += counts[c]!;
  return n;
}

/** One path of a request, of one class, holding or waiting at one trie node. */
export class Entry {
  /**
   * Links in the node's list of holders, or in its wait queue for this
   * class (an entry waits or holds, never both).
   */
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  /** A waiting entry whose session holds something overlapping its node ("entangled"): see LockTable.scanNode. */
  tangled = false;
  /** Links in the node's list of entangled waiting entries. */
  tangledPrev: Entry | undefined = undefined;
  tangledNext: Entry | undefined = undefined;
  constructor(readonly req: LockRequest, public node: PathNode, public cls: LockClass) {}
}

export class PathNode {
  // Maps and sets are made on first use: most nodes are leaves with one request.
  children: Map<string, PathNode> | undefined = undefined;
  /** Children whose subtree holds waiters. */
  childrenWithWaiters: Set<PathNode> | undefined = undefined;
  /** Holders at this path, and in this subtree (inclusive), by class. */
  readonly heldHere = [0, 0, 0, 0];
  readonly heldInSubtree = [0, 0, 0, 0];
  /** Holding entries here: the head of a list through Entry.prev/next. */
  holders: Entry | undefined = undefined;
  /** Entangled waiting entries here: the head of a list through Entry.tangledPrev/tangledNext. */
  tangledWaiters: Entry | undefined = undefined;
  /** Waiting entries here by class (FIFO lists through Entry.prev/next), and waiters in this subtree (inclusive). */
  readonly waitHead: (Entry | undefined)[] = [undefined, undefined, undefined, undefined];
  readonly waitTail: (Entry | undefined)[] = [undefined, undefined, undefined, undefined];
  readonly waitingInSubtree = [0, 0, 0, 0];
  /** Owner-died taint here, and taints in this subtree (inclusive). */
  tainted = false;
  taintsInSubtree = 0;

  constructor(readonly parent: PathNode | undefined, readonly name: string, readonly depth: number) {}

  get path(): string {
    const segs: string[] = [];
    for (let n: PathNode | undefined = this; n?.parent !== undefined; n = n.parent) segs.push(n.name);
    return joinPath(segs.reverse());
  }

  waitersInSubtree(): number {
    const w = this.waitingInSubtree;
    return w[0]! + w[1]! + w[2]! + w[3]!;
  }

  isEmpty(): boolean {
    return (this.children === undefined || this.children.size === 0) && this.holders === undefined && this.waitersInSubtree() === 0 && this.taintsInSubtree === 0;
  }
}

/** A session's held and waiting requests: heads of lists through LockRequest.sessionPrev/sessionNext. */
export class SessionRequests {
  held: LockRequest | undefined = undefined;
  waiting: LockRequest | undefined = undefined;
}

export function listOf(head: LockRequest | undefined): LockRequest[] {
  const out: LockRequest[] = [];
  for (let r = head; r !== undefined; r = r.sessionNext) out.push(r);
  return out;
}

/** One request: a lock (held or waiting), an upgrade, or a write admission. */
export class LockRequest {
  state: RequestState = 'waiting';
  /** Fencing token of the grant (0 until granted; writes have none). */
  token = 0;
  ownerDied = false;
  /** False: ending with its session sets no owner-died taint, and the journal is not told of the hold. */
  robust = true;
  /** Time of the request, then of the grant. */
  since: number;
  /** For an upgrade: the S lock being upgraded. For a lock: its pending upgrade. */
  link: LockRequest | undefined = undefined;
  entries: Entry[] = [];
  /** The caller's bookkeeping (the engine keeps its waiter or lock handle here). */
  owner: unknown = undefined;
  /** @internal Links in its session's list of held or waiting requests. */
  sessionPrev: LockRequest | undefined = undefined;
  sessionNext: LockRequest | undefined = undefined;

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

/**
 * The trie, the sessions' request lists and the owner-died taints. Every
 * method keeps the counts, the lists and the entanglement marks consistent;
 * none of them grants or blocks anything.
 */
export class LockTrie {
  readonly root = new PathNode(undefined, '', 0);
  /** Each session's held and waiting requests (intrusive lists: no allocation per grant). */
  readonly sessions = new Map<string, SessionRequests>();
  /** Owner-died taints (never dropped to save memory: lock-table.ts note 5). */
  private readonly taints = new Set<PathNode>();

  /** `journal` hears of every taint set or cleared (lock-table.ts note 7). */
  constructor(private readonly journal?: { taint(path: string, on: boolean): void }) {}

  // ------------------------------------------------------------------ nodes

  nodeAt(segs: readonly string[]): PathNode {
    let n = this.root;
    for (let i = 0; i < segs.length; i++) {
      const name = segs[i]!;
      let child = n.children?.get(name);
      if (child === undefined) {
        child = new PathNode(n, name, i + 1);
        (n.children ??= new Map()).set(name, child);
      }
      n = child;
    }
    return n;
  }

  /** Removes nodes left empty by `req`'s entries. */
  prune(req: LockRequest): void {
    for (const e of req.entries) this.pruneUp(e.node);
  }

  private pruneUp(n: PathNode): void {
    while (n.parent !== undefined && n.isEmpty() && n.parent.children?.get(n.name) === n) {
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
      if (m.children !== undefined) for (const child of m.children.values()) stack.push(child);
    }
    return { nodes: nodes - 1, taints: this.taints.size };
  }

  // --------------------------------------------------- holders and waiters

  addWaiter(e: Entry): void {
    const n = e.node;
    const c = e.cls;
    e.next = undefined;
    if (e.req.order < 0) {
      // Upgrades go before ordinary waiters, in their own order.
      let at = n.waitHead[c];
      while (at !== undefined && at.req.order < e.req.order) at = at.next;
      if (at === undefined) {
        this.appendWaiter(n, e);
      } else {
        e.next = at;
        e.prev = at.prev;
        if (at.prev === undefined) n.waitHead[c] = e;
        else at.prev.next = e;
        at.prev = e;
      }
    } else {
      this.appendWaiter(n, e);
    }
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) {
      const hadWaiters = m.waitersInSubtree() > 0;
      m.waitingInSubtree[c]!++;
      if (!hadWaiters && m.parent !== undefined) (m.parent.childrenWithWaiters ??= new Set()).add(m);
    }
    const rec = this.sessions.get(e.req.session);
    if (rec?.held !== undefined && this.holdsNear(rec, n)) this.setTangled(e, true);
  }

  private appendWaiter(n: PathNode, e: Entry): void {
    const c = e.cls;
    e.prev = n.waitTail[c];
    if (n.waitTail[c] === undefined) n.waitHead[c] = e;
    else n.waitTail[c]!.next = e;
    n.waitTail[c] = e;
  }

  removeWaiter(e: Entry): void {
    if (e.tangled) this.setTangled(e, false);
    const n = e.node;
    const c = e.cls;
    if (e.prev === undefined) n.waitHead[c] = e.next;
    else e.prev.next = e.next;
    if (e.next === undefined) n.waitTail[c] = e.prev;
    else e.next.prev = e.prev;
    e.prev = e.next = undefined;
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) {
      m.waitingInSubtree[c]!--;
      if (m.waitersInSubtree() === 0 && m.parent !== undefined) m.parent.childrenWithWaiters!.delete(m);
    }
  }

  addHold(e: Entry): void {
    const c = e.cls;
    const n = e.node;
    e.prev = undefined;
    e.next = n.holders;
    if (n.holders !== undefined) n.holders.prev = e;
    n.holders = e;
    n.heldHere[c]!++;
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) m.heldInSubtree[c]!++;
  }

  removeHold(e: Entry): void {
    const c = e.cls;
    const n = e.node;
    if (e.prev === undefined) n.holders = e.next;
    else e.prev.next = e.next;
    if (e.next !== undefined) e.next.prev = e.prev;
    e.prev = e.next = undefined;
    n.heldHere[c]!--;
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) m.heldInSubtree[c]!--;
  }

  /**
   * Is there a holder at n or below, of a class in mask, of another session?
   * Subtree counts minus the asker's own holds there (found through its
   * list of holds: sessions hold few locks; this costs O(own locks · depth)).
   */
  foreignHolderBelow(n: PathNode, session: string, mask: number): boolean {
    const all = countIn(n.heldInSubtree, mask);
    if (all === 0) return false;
    let own = 0;
    for (let r = this.sessions.get(session)?.held; r !== undefined; r = r.sessionNext) {
      for (const e of r.entries) if ((mask & (1 << e.cls)) && isUnder(e.node, n)) own++;
    }
    return all > own;
  }

  // ------------------------------------------------------- session lists

  /** Puts req on its session's waiting (or held) list. */
  linkToSession(req: LockRequest, waiting: boolean): void {
    let rec = this.sessions.get(req.session);
    if (rec === undefined) this.sessions.set(req.session, (rec = new SessionRequests()));
    const head = waiting ? rec.waiting : rec.held;
    req.sessionPrev = undefined;
    req.sessionNext = head;
    if (head !== undefined) head.sessionPrev = req;
    if (waiting) rec.waiting = req;
    else rec.held = req;
  }

  /** Takes req off its session's list; returns the session's record if that left it empty (and forgotten). */
  unlinkFromSession(req: LockRequest, waiting: boolean): SessionRequests | undefined {
    const rec = this.sessions.get(req.session)!;
    if (req.sessionPrev !== undefined) req.sessionPrev.sessionNext = req.sessionNext;
    else if (waiting) rec.waiting = req.sessionNext;
    else rec.held = req.sessionNext;
    if (req.sessionNext !== undefined) req.sessionNext.sessionPrev = req.sessionPrev;
    req.sessionPrev = req.sessionNext = undefined;
    if (rec.waiting !== undefined || rec.held !== undefined) return undefined;
    this.sessions.delete(req.session);
    return rec;
  }

  // -------------------------------------------------------- entanglement

  /** Does rec's session hold anything overlapping node n (so its waiters at n may skip or be exempt)? */
  holdsNear(rec: SessionRequests | undefined, n: PathNode): boolean {
    for (let h = rec?.held; h !== undefined; h = h.sessionNext) {
      for (const he of h.entries) if (isUnder(n, he.node) || isUnder(he.node, n)) return true;
    }
    return false;
  }

  private setTangled(e: Entry, on: boolean): void {
    if (e.tangled === on) return;
    const n = e.node;
    e.tangled = on;
    if (on) {
      e.tangledPrev = undefined;
      e.tangledNext = n.tangledWaiters;
      if (n.tangledWaiters !== undefined) n.tangledWaiters.tangledPrev = e;
      n.tangledWaiters = e;
    } else {
      if (e.tangledPrev === undefined) n.tangledWaiters = e.tangledNext;
      else e.tangledPrev.tangledNext = e.tangledNext;
      if (e.tangledNext !== undefined) e.tangledNext.tangledPrev = e.tangledPrev;
      e.tangledPrev = e.tangledNext = undefined;
    }
  }

  /** rec's session gained (or lost) a hold at node m: its waiting entries near m may change entanglement. */
  retangle(rec: SessionRequests | undefined, m: PathNode, gained: boolean): void {
    for (let r = rec?.waiting; r !== undefined; r = r.sessionNext) {
      for (const e of r.entries) {
        if (!(isUnder(e.node, m) || isUnder(m, e.node))) continue;
        this.setTangled(e, gained || this.holdsNear(rec, e.node));
      }
    }
  }

  // ---------------------------------------------------- owner-died taints

  setTaint(n: PathNode): void {
    if (n.tainted) return;
    n.tainted = true;
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) m.taintsInSubtree++;
    this.taints.add(n);
    this.journal?.taint(n.path, true);
  }

  private untaint(n: PathNode): void {
    n.tainted = false;
    this.taints.delete(n);
    for (let m: PathNode | undefined = n; m !== undefined; m = m.parent) m.taintsInSubtree--;
    this.journal?.taint(n.path, false);
  }

  /** Clears the taints at n and below (a told holder covering them marked them consistent, or a reset). */
  clearTaints(n: PathNode): void {
    const cleared: PathNode[] = [];
    const stack = [n];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (m.tainted) {
        this.untaint(m);
        cleared.push(m);
      }
      if (m.children !== undefined) {
        for (const child of m.children.values()) if (child.taintsInSubtree > 0) stack.push(child);
      }
    }
    for (const m of cleared) this.pruneUp(m);
  }

  /** Is n, something below it, or an ancestor tainted? */
  isTainted(n: PathNode): boolean {
    if (n.taintsInSubtree > 0) return true;
    for (let a = n.parent; a !== undefined; a = a.parent) if (a.tainted) return true;
    return false;
  }
}

// ------------------------------------------------------- node predicates

/** Waiting entries exactly at n of the classes in mask. */
export function waitersAt(n: PathNode, mask: number): number {
  let k = 0;
  for (let c = 0; c < CLASS_COUNT; c++) {
    if (!(mask & (1 << c))) continue;
    for (let w = n.waitHead[c]; w !== undefined; w = w.next) k++;
  }
  return k;
}

export function hasWaitersAt(n: PathNode): boolean {
  const h = n.waitHead;
  return h[0] !== undefined || h[1] !== undefined || h[2] !== undefined || h[3] !== undefined;
}

/** Does a waiter at n, of a class in mask, come before `order`? (Each queue's head is its earliest.) */
export function earlierWaiterAt(n: PathNode, mask: number, order: number): boolean {
  for (let c = 0; c < CLASS_COUNT; c++) {
    if (!(mask & (1 << c))) continue;
    const first = n.waitHead[c];
    if (first !== undefined && first.req.order < order) return true;
  }
  return false;
}

/** Is any entry waiting at n, of a class in mask? */
export function anyWaiterAt(n: PathNode, mask: number): boolean {
  for (let c = 0; c < CLASS_COUNT; c++) if ((mask & (1 << c)) && n.waitHead[c] !== undefined) return true;
  return false;
}

/**
 * Is there a holder at exactly n, of a class in mask, of another session?
 * The counts answer "none" in O(1); otherwise the first foreign holder
 * found answers "yes" (only a node crowded with the asker's own holds
 * costs more).
 */
export function foreignHolderAt(n: PathNode, session: string, mask: number): boolean {
  if (countIn(n.heldHere, mask) === 0) return false;
  for (let h = n.holders; h !== undefined; h = h.next) if ((mask & (1 << h.cls)) && h.req.session !== session) return true;
  return false;
}

/** Do two entries overlap and conflict (sessions aside)? */
export function entriesConflict(a: Entry, b: Entry): boolean {
  if (!(CONFLICTS[a.cls]! & (1 << b.cls))) return false;
  return a.node === b.node || (a.cls !== LockClass.WriteNode && isUnder(b.node, a.node)) || (b.cls !== LockClass.WriteNode && isUnder(a.node, b.node));
}

/** Is m at or below n? */
export function isUnder(m: PathNode, n: PathNode): boolean {
  while (m.depth > n.depth) m = m.parent!;
  return m === n;
}

/**
 * Targets as placements: duplicates merged, targets covered by a subtree
 * target of the same write dropped (one entry per node, none under another
 * subtree entry of the same request).
 */
export function normalizeTargets(targets: readonly WriteTarget[]): Placement[] {
  if (targets.length === 1) return [{ segs: parsePath(targets[0]!.path), cls: targets[0]!.subtree ? LockClass.WriteSubtree : LockClass.WriteNode }];
  const byPath = new Map<string, boolean>();
  for (const t of targets) byPath.set(t.path, (byPath.get(t.path) ?? false) || t.subtree);
  const paths = [...byPath.keys()].sort((a, b) => a.length - b.length);
  const subtrees: string[] = [];
  const out: Placement[] = [];
  for (const p of paths) {
    if (subtrees.some((s) => s === '/' || p.startsWith(s + '/'))) continue;
    const subtree = byPath.get(p)!;
    if (subtree) subtrees.push(p);
    out.push({ segs: parsePath(p), cls: subtree ? LockClass.WriteSubtree : LockClass.WriteNode });
  }
  return out;
}
