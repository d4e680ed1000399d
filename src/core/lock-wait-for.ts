/**
 * Who waits for whom (lock-table.ts, notes 2 and 4): the blockers of a
 * waiting entry — conflicting holders of other sessions and earlier
 * conflicting waiters it may not skip — and the deadlock search over the
 * wait-for graph those blockers make between sessions. Read-only over the
 * trie (lock-trie.ts); the table uses the same blocker walk to decide grants.
 */
import { assert } from './errors.js';
import {
  CLASS_COUNT, CONFLICTS, type Entry, LockClass, type LockRequest, type PathNode, type RequestKind, type SessionRequests,
  WRITE_NODE_BIT, anyWaiterAt, countIn, entriesConflict, waitersAt,
} from './lock-trie.js';

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

type Sessions = ReadonlyMap<string, SessionRequests>;

/** Calls f on each earlier waiting entry that conflicts with e (ignoring sessions); true as soon as f does. */
export function forEachEarlierWaiter(e: Entry, order: number, f: (w: Entry) => boolean): boolean {
  const mask = CONFLICTS[e.cls]!;
  const visit = (m: PathNode, classes: number): boolean => {
    for (let c = 0; c < CLASS_COUNT; c++) {
      if (!(classes & (1 << c))) continue;
      for (let w = m.waitHead[c]; w !== undefined && w.req.order < order; w = w.next) if (f(w)) return true;
    }
    return false;
  };
  for (let a = e.node.parent; a !== undefined; a = a.parent) if (visit(a, mask & ~WRITE_NODE_BIT)) return true;
  if (e.cls === LockClass.WriteNode) return visit(e.node, mask);
  const stack: PathNode[] = [e.node];
  while (stack.length > 0) {
    const m = stack.pop()!;
    if (visit(m, mask)) return true;
    if (m.childrenWithWaiters !== undefined) {
      for (const child of m.childrenWithWaiters) if (countIn(child.waitingInSubtree, mask) > 0) stack.push(child);
    }
  }
  return false;
}

/** Is e inside an exclusive lock of its own session? Then nothing can be queued ahead of it that is not also behind that lock. */
export function coveredByOwnExclusive(e: Entry): boolean {
  for (let a: PathNode | undefined = e.node; a !== undefined; a = a.parent) {
    if (a.heldHere[LockClass.Exclusive] === 0) continue;
    for (let h = a.holders; h !== undefined; h = h.next) {
      if (h.cls === LockClass.Exclusive && h.req.session === e.req.session) return true;
    }
  }
  return false;
}

/** Does waiting entry w conflict with a hold of rec's session (so it cannot be granted before that hold goes)? */
export function behindHold(w: Entry, rec: SessionRequests): boolean {
  for (let h = rec.held; h !== undefined; h = h.sessionNext) {
    for (const he of h.entries) if (entriesConflict(he, w)) return true;
  }
  return false;
}

/** Calls f for each holder (of another session) and each earlier waiter that blocks e; stops when f returns true. */
export function forEachBlocker(sessions: Sessions, e: Entry, order: number, f: (b: Entry, held: boolean) => boolean): boolean {
  const session = e.req.session;
  const mask = CONFLICTS[e.cls]!;
  const holders = (m: PathNode, classes: number): boolean => {
    for (let h = m.holders; h !== undefined; h = h.next) {
      if ((classes & (1 << h.cls)) && h.req.session !== session && f(h, true)) return true;
    }
    return false;
  };
  for (let a = e.node.parent; a !== undefined; a = a.parent) if (holders(a, mask & ~WRITE_NODE_BIT)) return true;
  if (e.cls === LockClass.WriteNode) {
    if (holders(e.node, mask)) return true;
  } else {
    const stack: PathNode[] = [e.node];
    while (stack.length > 0) {
      const m = stack.pop()!;
      if (holders(m, mask)) return true;
      if (m.children !== undefined) {
        for (const child of m.children.values()) if (countIn(child.heldInSubtree, mask) > 0) stack.push(child);
      }
    }
  }
  const rec = sessions.get(session);
  const skips = rec?.held !== undefined;
  if (skips && coveredByOwnExclusive(e)) return false;
  return forEachEarlierWaiter(e, order, (w) => (!skips || !behindHold(w, rec!)) && f(w, false));
}

/** A path in the session wait-for graph from req's blockers back to req's session, as cycle steps. */
export function findCycle(sessions: Sessions, req: LockRequest): CycleStep[] | undefined {
  const me = req.session;
  const rec = sessions.get(me)!;
  if (!mayBeWaitedOn(rec, req)) return undefined;
  // BFS over sessions; `via` remembers how each was reached.
  const via = new Map<string, CycleStep>();
  const queue: string[] = [];
  /** Adds the sessions r (of session `from`) waits for; returns `me` when it is one of them. */
  const edgesOf = (r: LockRequest, from: string): string | undefined => {
    let found: string | undefined;
    for (const e of r.entries) {
      forEachBlocker(sessions, e, r.order, (b) => {
        const s = b.req.session;
        if (s === from || via.has(s)) return false;
        via.set(s, { session: from, kind: r.kind, path: e.node.path, waitsFor: s });
        if (s === me) {
          found = s;
          return true;
        }
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
  for (let r = rec.waiting; r !== undefined && seeded === undefined; r = r.sessionNext) seeded = edgesOf(r, me);
  if (seeded === undefined) {
    let hit = false;
    while (queue.length > 0 && !hit) {
      const s = queue.shift()!;
      for (let r = sessions.get(s)?.waiting; r !== undefined; r = r.sessionNext) {
        if (edgesOf(r, s) !== undefined) {
          hit = true;
          break;
        }
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
function mayBeWaitedOn(rec: SessionRequests, newest: LockRequest): boolean {
  /** Waiters that conflict with e, above it or at/below it, beyond the `self` of them that are e's own. */
  const near = (e: Entry, self: number): boolean => {
    const mask = CONFLICTS[e.cls]!;
    for (let a = e.node.parent; a !== undefined; a = a.parent) if (anyWaiterAt(a, mask & ~WRITE_NODE_BIT)) return true;
    const here = e.cls === LockClass.WriteNode ? waitersAt(e.node, mask) : countIn(e.node.waitingInSubtree, mask);
    return here > self;
  };
  for (let h = rec.held; h !== undefined; h = h.sessionNext) {
    for (const e of h.entries) if (near(e, 0)) return true;
  }
  for (let r = rec.waiting; r !== undefined; r = r.sessionNext) {
    if (r === newest && r.order > 0) continue;
    for (const e of r.entries) if (near(e, CONFLICTS[e.cls]! & (1 << e.cls) ? 1 : 0)) return true;
  }
  return false;
}
