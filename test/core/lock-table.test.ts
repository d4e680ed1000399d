import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LatchkeyError } from '../../src/core/errors.js';
import { LockTable, type LockRequest, type WriteTarget } from '../../src/core/lock-table.js';

function code(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof LatchkeyError) return e.code;
    throw e;
  }
}

const ids = (rs: readonly LockRequest[]): number[] => rs.map((r) => r.id).sort((a, b) => a - b);

test('lock-table: disjoint paths never wait; overlapping conflict unless both shared', () => {
  const t = new LockTable();
  const a = t.lock('s1', '/a/b', 'exclusive');
  assert.equal(a.state, 'held');
  assert.equal(t.lock('s2', '/a/c', 'exclusive').state, 'held');
  assert.equal(t.lock('s2', '/a', 'shared').state, 'waiting');
  assert.equal(t.lock('s3', '/a/b/c', 'shared').state, 'waiting');
  assert.equal(code(() => t.lock('s4', '/', 'shared', false)), 'LOCKED');
  const sh = new LockTable();
  assert.equal(sh.lock('s1', '/', 'shared').state, 'held');
  assert.equal(sh.lock('s2', '/x/y', 'shared').state, 'held');
  assert.equal(sh.lock('s3', '/x', 'exclusive').state, 'waiting');
});

test('lock-table: a session never conflicts with its own locks', () => {
  const t = new LockTable();
  t.lock('s1', '/', 'exclusive');
  assert.equal(t.lock('s1', '/a', 'exclusive').state, 'held');
  assert.equal(t.admitWrite('s1', [{ path: '/a/b', subtree: true }]), undefined);
  assert.equal(code(() => t.admitWrite('s2', [{ path: '/a/b', subtree: false }], false)), 'LOCKED');
});

test('lock-table: a holder\'s own requests do not queue behind waiters that wait for its locks', () => {
  const t = new LockTable();
  t.lock('H', '/k', 'exclusive');
  const w1 = t.lock('A', '/k', 'exclusive');
  const w2 = t.admitWrite('B', [{ path: '/k/v', subtree: false }]);
  assert.equal(w1.state, 'waiting');
  assert.equal(w2?.state, 'waiting');
  // Writing and nesting under its own exclusive lock: at once, not DEADLOCK.
  assert.equal(t.admitWrite('H', [{ path: '/k/v', subtree: false }], false), undefined);
  assert.equal(t.lock('H', '/k/sub', 'shared', false).state, 'held');
  // A shared holder re-entering while an exclusive waiter queues for it.
  const s = t.lock('R', '/doc', 'shared');
  const xw = t.lock('W', '/doc', 'exclusive');
  assert.equal(xw.state, 'waiting');
  assert.equal(t.lock('R', '/doc/part', 'shared', false).state, 'held');
  assert.equal(code(() => t.lock('Z', '/doc/part', 'shared', false)), 'LOCKED', 'others still queue behind the exclusive waiter');
  t.release(s);
  assert.equal(xw.state, 'waiting', 'R still holds /doc/part');
});

test('lock-table: wait:false fails LOCKED with no side effects', () => {
  const t = new LockTable();
  const h = t.lock('s1', '/a', 'exclusive');
  const before = t.size;
  const err = (() => { try { t.lock('s2', '/a/b/c', 'shared', false); } catch (e) { return e as LatchkeyError; } return undefined; })();
  assert.equal(err?.code, 'LOCKED');
  assert.deepEqual(err?.info?.sessions, ['s1']);
  assert.deepEqual(t.size, before);
  assert.equal(t.allWaiting().length, 0);
  assert.deepEqual(ids(t.release(h)), []);
});

test('lock-table: strict FIFO — a stream of shared requests cannot starve an exclusive waiter', () => {
  const t = new LockTable();
  const r1 = t.lock('r1', '/a', 'shared');
  const w = t.lock('w', '/a', 'exclusive');
  const r2 = t.lock('r2', '/a', 'shared');
  const r3 = t.lock('r3', '/a/x', 'shared');
  assert.equal(w.state, 'waiting');
  assert.equal(r2.state, 'waiting', 'a shared request behind an exclusive waiter waits');
  assert.equal(r3.state, 'waiting');
  assert.deepEqual(ids(t.release(r1)), [w.id]);
  assert.deepEqual(ids(t.release(w)), [r2.id, r3.id], 'compatible shared requests at the head are granted together');
});

test('lock-table: cancel grants the requests behind it that become grantable', () => {
  const t = new LockTable();
  const h = t.lock('s1', '/a', 'shared');
  const x = t.lock('s2', '/a', 'exclusive');
  const s = t.lock('s3', '/a/b', 'shared');
  assert.equal(s.state, 'waiting');
  assert.deepEqual(ids(t.cancel(x)), [s.id]);
  assert.equal(x.state, 'done');
  assert.deepEqual(t.cancel(x), [], 'cancel is idempotent');
  t.release(h);
  t.release(s);
  assert.deepEqual(t.size, { held: 0, waiting: 0 });
});

test('lock-table: tokens strictly increase across grants, upgrades included', () => {
  const t = new LockTable({ firstToken: 100 });
  const a = t.lock('s1', '/a', 'shared');
  const b = t.lock('s2', '/b', 'exclusive');
  assert.ok(a.token > 100 && b.token > a.token);
  const old = a.token;
  t.upgrade(a);
  assert.ok(a.token > b.token);
  assert.equal(t.byToken(old), undefined);
  assert.equal(t.byToken(a.token), a);
  t.release(a);
  assert.equal(t.byToken(a.token), undefined);
});

test('lock-table: herd — 7,000 waiters on 7,000 paths behind an exclusive "/" are each granted once by one release', () => {
  const t = new LockTable();
  const all = t.lock('freezer', '/', 'exclusive');
  const waiters: LockRequest[] = [];
  for (let i = 0; i < 7000; i++) waiters.push(t.lock(`s${i}`, `/db/rec${i}`, i % 2 === 0 ? 'exclusive' : 'shared'));
  assert.ok(waiters.every((w) => w.state === 'waiting'));
  const wakeupsBefore = t.counters.wakeups;
  const granted = t.release(all);
  assert.equal(granted.length, 7000);
  assert.equal(new Set(granted.map((g) => g.id)).size, 7000, 'no request granted twice');
  assert.equal(t.counters.wakeups - wakeupsBefore, 7000);
  assert.ok(waiters.every((w) => w.state === 'held'));
  // Nothing left to hand on: releasing them wakes nobody.
  let more = 0;
  for (const w of waiters) more += t.release(w).length;
  assert.equal(more, 0);
  assert.deepEqual(t.size, { held: 0, waiting: 0 });
});

test('lock-table: a chain of exclusive waiters is handed on one at a time', () => {
  const t = new LockTable();
  let cur = t.lock('s0', '/q', 'exclusive');
  const chain = Array.from({ length: 50 }, (_, i) => t.lock(`s${i + 1}`, '/q', 'exclusive'));
  for (const next of chain) {
    assert.deepEqual(ids(t.release(cur)), [next.id]);
    cur = next;
  }
});

test('lock-table: deadlock — the wait that closes a cycle fails DEADLOCK naming it, with no side effects', () => {
  const t = new LockTable();
  t.lock('A', '/x', 'exclusive');
  t.lock('B', '/y', 'exclusive');
  const w = t.lock('A', '/y', 'exclusive');
  assert.equal(w.state, 'waiting');
  let err: LatchkeyError | undefined;
  try { t.lock('B', '/x/child', 'shared'); } catch (e) { err = e as LatchkeyError; }
  assert.equal(err?.code, 'DEADLOCK');
  const cycle = err!.info!.cycle as { session: string; waitsFor: string }[];
  assert.deepEqual(cycle.map((s) => `${s.session}>${s.waitsFor}`), ['B>A', 'A>B']);
  assert.equal(t.allWaiting().length, 1);
  assert.equal(t.counters.deadlocks, 1);
});

test('lock-table: deadlock through a write waiting on a lock', () => {
  const t = new LockTable();
  t.lock('A', '/x', 'exclusive');
  t.lock('B', '/y', 'shared');
  assert.equal(t.admitWrite('A', [{ path: '/y/v', subtree: false }])?.state, 'waiting');
  assert.equal(code(() => t.admitWrite('B', [{ path: '/x', subtree: true }])), 'DEADLOCK');
});

test('lock-table: upgrade — two shared holders that both upgrade: one gets DEADLOCK, the other proceeds', () => {
  const t = new LockTable();
  const a = t.lock('A', '/r', 'shared');
  const b = t.lock('B', '/r', 'shared');
  const ua = t.upgrade(a);
  assert.equal(ua.state, 'waiting');
  assert.equal(code(() => t.upgrade(b)), 'DEADLOCK');
  assert.equal(b.kind, 'shared');
  assert.deepEqual(ids(t.release(b)), [ua.id]);
  assert.equal(a.kind, 'exclusive');
  assert.equal(a.state, 'held');
});

test('lock-table: an upgrade that closes a cycle through another of its session\'s waits fails DEADLOCK, even when it would be granted at once', () => {
  const t = new LockTable();
  const a = t.lock('A', '/r', 'shared');
  t.lock('B', '/z', 'exclusive');
  t.lock('D', '/q', 'exclusive');
  assert.equal(t.lock('A', '/z', 'shared').state, 'waiting'); // A waits for B
  assert.equal(t.lock('B', '/', 'shared').state, 'waiting'); // B waits for D, compatible with A's shared /r
  // Upgrading /r makes B's request wait for A, while A waits for B.
  let err: LatchkeyError | undefined;
  try { t.upgrade(a); } catch (e) { err = e as LatchkeyError; }
  assert.equal(err?.code, 'DEADLOCK');
  assert.equal(a.kind, 'shared');
  assert.equal(a.link, undefined);
  assert.equal(t.allWaiting().length, 2);
  // Without the cycle (A no longer waits), the same upgrade is granted at once.
  t.cancel(t.allWaiting().find((r) => r.session === 'A')!);
  assert.equal(t.upgrade(a).state, 'held');
  assert.equal(a.kind, 'exclusive');
});

test('lock-table: an upgrade goes before queued waiters; downgrade lets shared waiters in', () => {
  const t = new LockTable();
  const a = t.lock('A', '/r', 'shared');
  const b = t.lock('B', '/r', 'shared');
  const x = t.lock('C', '/r', 'exclusive');
  const ua = t.upgrade(a);
  assert.equal(ua.state, 'waiting');
  assert.deepEqual(ids(t.release(b)), [ua.id], 'the upgrade, not the earlier exclusive waiter');
  const s = t.lock('D', '/r/s', 'shared');
  assert.equal(s.state, 'waiting');
  assert.deepEqual(ids(t.downgrade(a)), [], 'D is behind the exclusive waiter C');
  assert.deepEqual(ids(t.release(a)), [x.id]);
  assert.deepEqual(ids(t.release(x)), [s.id]);
  assert.equal(code(() => t.upgrade(s, false)), 'ok');
});

test('lock-table: owner died — the next holder is told, until a told holder marks it consistent', () => {
  const t = new LockTable();
  t.lock('dead', '/job', 'exclusive');
  const next = t.lock('n1', '/job', 'exclusive');
  const end = t.endSession('dead');
  assert.deepEqual(ids(end.granted), [next.id]);
  assert.equal(next.ownerDied, true);
  assert.equal(end.released.length, 1);
  // The told holder dies too: still tainted for the one after.
  const after = t.lock('n2', '/job/part', 'shared');
  assert.equal(after.state, 'waiting');
  t.endSession('n1');
  assert.equal(after.ownerDied, true);
  t.markConsistent(after); // covers only part of /job: the taint stays
  t.release(after);
  const third = t.lock('n3', '/job', 'exclusive');
  assert.equal(third.ownerDied, true);
  t.release(third); // released without markConsistent: passed on
  const fourth = t.lock('n4', '/job', 'exclusive');
  assert.equal(fourth.ownerDied, true);
  t.markConsistent(fourth); // told and covering: clean again
  t.release(fourth);
  assert.equal(t.lock('n5', '/job', 'exclusive').ownerDied, false);
});

test('lock-table: owner-died taints are never dropped; resetTaints forgets a subtree of them; the journal sees every change', () => {
  const log: string[] = [];
  const t = new LockTable({
    journal: { hold: (tok, p) => log.push(`hold ${tok} ${p}`), unhold: (tok) => log.push(`unhold ${tok}`), taint: (p, on) => log.push(`${on ? 'taint' : 'untaint'} ${p}`) },
  });
  const paths = Array.from({ length: 3000 }, (_, i) => `/jobs/${i}`);
  for (const p of paths) {
    t.lock('dead', p, 'exclusive');
    t.endSession('dead');
  }
  assert.equal(t.footprint.taints, 3000);
  assert.ok(paths.every((p) => t.isTainted(p)));
  assert.deepEqual(log.slice(0, 3), ['hold 1 /jobs/0', 'taint /jobs/0', 'unhold 1']);
  t.resetTaints('/jobs');
  assert.deepEqual(t.footprint, { nodes: 0, taints: 0 });
  assert.equal(log.filter((l) => l.startsWith('untaint ')).length, 3000);
  assert.equal(t.lock('x', '/jobs/7', 'shared').ownerDied, false);
});

test('lock-table: an explicit release hands on clean', () => {
  const t = new LockTable();
  const a = t.lock('A', '/k', 'exclusive');
  const b = t.lock('B', '/k', 'exclusive');
  t.release(a);
  assert.equal(b.state, 'held');
  assert.equal(b.ownerDied, false);
});

test('lock-table: session end cancels its waiters and hands its locks to other sessions', () => {
  const t = new LockTable();
  t.lock('A', '/a', 'exclusive');
  const wa = t.lock('A', '/b', 'exclusive');
  t.lock('B', '/b', 'exclusive');
  const wb = t.lock('C', '/a', 'shared');
  // wa waits for B's /b? No: A requested /b before B, so A holds /b.
  assert.equal(wa.state, 'held');
  const end = t.endSession('A');
  assert.equal(end.released.length, 2);
  assert.ok(end.granted.some((g) => g.id === wb.id));
  assert.equal(t.held('A').length, 0);
});

test('lock-table: mandatory writes — covered or subtree writes wait in the FIFO queue; plain writes above a lock do not', () => {
  const t = new LockTable();
  const l = t.lock('L', '/app/cfg', 'shared');
  assert.equal(t.admitWrite('W', [{ path: '/app', subtree: false }]), undefined, 'a plain write of /app does not touch /app/cfg');
  const del = t.admitWrite('W', [{ path: '/app', subtree: true }]);
  assert.equal(del?.state, 'waiting', 'a recursive delete of /app does');
  const inside = t.admitWrite('W2', [{ path: '/app/cfg/x', subtree: false }]);
  assert.equal(inside?.state, 'waiting');
  const lx = t.lock('L2', '/app/cfg', 'exclusive');
  assert.equal(lx.state, 'waiting');
  assert.deepEqual(ids(t.release(l)), [del!.id, inside!.id], 'writes are compatible with each other');
  assert.equal(lx.state, 'waiting', 'the later lock waits for the admitted writes to apply');
  t.release(del!);
  assert.deepEqual(ids(t.release(inside!)), [lx.id]);
  assert.equal(code(() => t.admitWrite('W', [{ path: '/app/cfg', subtree: false }], false)), 'LOCKED');
});

test('lock-table: lockTable listing and blockers', () => {
  let now = 1000;
  const t = new LockTable({ clock: () => now++ });
  const h = t.lock('A', '/a', 'exclusive');
  const w = t.lock('B', '/a/b', 'shared');
  assert.deepEqual(t.allHeld().map((r) => [r.path, r.mode, r.session]), [['/a', 'exclusive', 'A']]);
  assert.deepEqual(t.allWaiting().map((r) => [r.path, r.kind, r.session]), [['/a/b', 'shared', 'B']]);
  assert.deepEqual(t.blockersOf(w), [{ session: 'A', path: '/a', kind: 'exclusive', held: true }]);
  assert.ok(h.since >= 1000);
});

// ---------------------------------------------------------------- the model

const S = 0, X = 1, W = 2, N = 3;
type Cls = 0 | 1 | 2 | 3;
const GROUP = [0, 1, 2, 2];

interface MReq {
  id: number; session: string; kind: 'shared' | 'exclusive' | 'upgrade' | 'write';
  entries: { path: string; cls: Cls }[]; order: number; state: 'waiting' | 'held' | 'done';
  ownerDied: boolean; link?: MReq; real: LockRequest;
}

function covers(a: string, b: string): boolean {
  return a === '/' || a === b || b.startsWith(a + '/');
}
function entriesConflict(x: { path: string; cls: Cls }, y: { path: string; cls: Cls }): boolean {
  const overlap = x.path === y.path || (x.cls !== N && covers(x.path, y.path)) || (y.cls !== N && covers(y.path, x.path));
  if (!overlap) return false;
  return !(x.cls !== X && GROUP[x.cls] === GROUP[y.cls]);
}
function reqConflict(a: MReq, b: MReq): boolean {
  return a.entries.some((x) => b.entries.some((y) => entriesConflict(x, y)));
}

/** The naive model: lists of requests, every rule checked by brute force. */
class Model {
  reqs: MReq[] = [];
  taints: string[] = [];
  private order = 1;
  private upOrder = -1e15;

  held(): MReq[] { return this.reqs.filter((r) => r.state === 'held'); }
  waiting(): MReq[] { return this.reqs.filter((r) => r.state === 'waiting'); }

  /** Entry oe waits behind a hold of `session`: requests of that session need not queue behind it. */
  behindHoldOf(oe: MReq['entries'][number], session: string): boolean {
    return this.reqs.some((h) => h.state === 'held' && h.session === session && h.entries.some((he) => entriesConflict(he, oe)));
  }
  blockers(r: MReq): MReq[] {
    return this.reqs.filter((o) => o !== r && (
      (o.state === 'held' && o.session !== r.session && reqConflict(o, r)) ||
      (o.state === 'waiting' && o.order < r.order &&
        o.entries.some((oe) => r.entries.some((re) => entriesConflict(oe, re)) && !this.behindHoldOf(oe, r.session)))));
  }
  grantable(r: MReq): boolean { return this.blockers(r).length === 0; }

  nextOrder(upgrade: boolean): number { return upgrade ? this.upOrder++ : this.order++; }

  /** Would registering r (already in reqs as waiting) close a cycle through its session? */
  cycle(r: MReq): boolean {
    const me = r.session;
    const seen = new Set<string>();
    // Every waiting request of the session (r included) may start the cycle.
    const stack = this.waiting().filter((q) => q.session === me).concat(this.reqs.includes(r) ? [] : [r])
      .flatMap((q) => this.blockers(q)).map((b) => b.session).filter((s) => s !== me);
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (s === me) return true;
      if (seen.has(s)) continue;
      seen.add(s);
      for (const w of this.waiting().filter((q) => q.session === s)) for (const b of this.blockers(w)) if (b.session !== s) stack.push(b.session);
    }
    return false;
  }

  taintedFor(path: string): boolean { return this.taints.some((t) => covers(t, path) || covers(path, t)); }

  grant(r: MReq): void {
    if (r.kind === 'upgrade') {
      r.state = 'held';
      r.link!.kind = 'exclusive';
      r.link!.entries = [{ path: r.link!.entries[0]!.path, cls: X }];
      r.link!.link = undefined;
      r.state = 'done';
      return;
    }
    r.state = 'held';
    if (r.kind !== 'write') r.ownerDied = this.taintedFor(r.entries[0]!.path);
  }

  /**
   * Grants everything grantable, to a fixed point (a grant can unblock the
   * same session's later waiters: its own holder does not block them).
   */
  settle(): number[] {
    const all: number[] = [];
    for (;;) {
      const g = this.waiting().filter((w) => this.grantable(w));
      if (g.length === 0) break;
      // One at a time in FIFO order: the first grantable one changes what the rest see.
      const r = g.sort((a, b) => a.order - b.order)[0]!;
      this.grant(r);
      all.push(r.id);
    }
    return all.sort((a, b) => a - b);
  }
}

type Cmd =
  | { t: 'lock'; s: number; p: number; mode: 'shared' | 'exclusive'; wait: boolean }
  | { t: 'write'; s: number; ps: number[]; sub: boolean[]; wait: boolean }
  | { t: 'upgrade'; i: number; wait: boolean }
  | { t: 'downgrade'; i: number }
  | { t: 'release'; i: number }
  | { t: 'consistent'; i: number }
  | { t: 'cancel'; i: number }
  | { t: 'die'; s: number };

const PATHS = ['/', '/a', '/a/b', '/a/b/c', '/a/c', '/b', '/b/d'];
const NSESS = 4;
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('lock' as const), s: fc.nat(NSESS - 1), p: fc.nat(PATHS.length - 1), mode: fc.constantFrom('shared' as const, 'exclusive' as const), wait: fc.constantFrom(true, true, true, false) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('write' as const), s: fc.nat(NSESS - 1), ps: fc.array(fc.nat(PATHS.length - 1), { minLength: 1, maxLength: 3 }), sub: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }), wait: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('upgrade' as const), i: fc.nat(20), wait: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('downgrade' as const), i: fc.nat(20) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('release' as const), i: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('consistent' as const), i: fc.nat(20) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cancel' as const), i: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('die' as const), s: fc.nat(NSESS - 1) }) },
);

function checkSafety(m: Model): void {
  const h = m.held();
  for (let i = 0; i < h.length; i++) {
    for (let j = i + 1; j < h.length; j++) {
      if (h[i]!.session !== h[j]!.session) assert.ok(!reqConflict(h[i]!, h[j]!), `conflicting holders ${h[i]!.id} and ${h[j]!.id}`);
    }
  }
}

function runModel(cmds: readonly Cmd[]): void {
  const t = new LockTable();
  const m = new Model();
  const byReal = new Map<number, MReq>();
  const grantedOnce = new Set<number>();
  let lastToken = 0;
  const seeGrants = (real: readonly LockRequest[], expected: number[]): void => {
    assert.deepEqual(ids(real), expected, 'the table grants exactly what the model makes grantable');
    for (const r of real) {
      assert.ok(!grantedOnce.has(r.id), `request ${r.id} granted twice`);
      grantedOnce.add(r.id);
      const mr = byReal.get(r.id)!;
      if (mr.kind !== 'write') {
        assert.ok(r.token > lastToken, 'tokens strictly increase');
        lastToken = r.token;
      }
      if (mr.kind === 'shared' || mr.kind === 'exclusive') assert.equal(r.ownerDied, mr.ownerDied, `ownerDied of ${r.id}`);
    }
  };
  const add = (real: LockRequest, session: string, kind: MReq['kind'], entries: MReq['entries'], upgrade: boolean): MReq => {
    const mr: MReq = { id: real.id, session, kind, entries, order: m.nextOrder(upgrade), state: 'waiting', ownerDied: false, real };
    byReal.set(real.id, mr);
    return mr;
  };
  /** Runs `f`; compares outcome (granted now / waiting / error code) with the model's expectation. */
  const arrive = (session: string, kind: MReq['kind'], entries: MReq['entries'], wait: boolean, f: () => LockRequest | undefined, link?: MReq): void => {
    const probe: MReq = { id: -1, session, kind, entries, order: m.nextOrder(kind === 'upgrade'), state: 'waiting', ownerDied: false, real: undefined as unknown as LockRequest, ...(link ? { link } : {}) };
    m.reqs.push(probe);
    const mustWait = !m.grantable(probe);
    // An upgrade granted at once can close a cycle too (S→X makes waiters wait for it).
    const deadlock = (mustWait ? wait : kind === 'upgrade') && m.cycle(probe);
    m.reqs.pop();
    let real: LockRequest | undefined;
    let err = 'ok';
    try { real = f(); } catch (e) { if (!(e instanceof LatchkeyError)) throw e; err = e.code; }
    if (mustWait && !wait) { assert.equal(err, 'LOCKED'); return; }
    if (deadlock) { assert.equal(err, 'DEADLOCK'); return; }
    assert.equal(err, 'ok');
    if (kind === 'write' && !mustWait) { assert.equal(real, undefined); return; }
    assert.ok(real !== undefined);
    const mr = add(real, session, kind, entries, false);
    mr.order = probe.order;
    if (link) { mr.link = link; link.link = mr; }
    m.reqs.push(mr);
    if (mustWait) {
      assert.equal(real.state, 'waiting');
    } else {
      m.grant(mr);
      grantedOnce.add(real.id);
      if (kind !== 'write') { assert.ok(real.token > lastToken); lastToken = real.token; }
      if (kind === 'upgrade') assert.equal(link!.real.kind, 'exclusive');
      else assert.equal(real.ownerDied, mr.ownerDied);
    }
    // A new hold can let the session's own waiters skip the waiters behind it.
    seeGrants(t.drain(), m.settle());
  };
  const locks = (): MReq[] => m.held().filter((r) => r.kind !== 'write').sort((a, b) => a.id - b.id);

  for (const c of cmds) {
    switch (c.t) {
      case 'lock': {
        const s = `s${c.s}`;
        const p = PATHS[c.p]!;
        arrive(s, c.mode, [{ path: p, cls: c.mode === 'shared' ? S : X }], c.wait, () => t.lock(s, p, c.mode, c.wait));
        break;
      }
      case 'write': {
        const s = `s${c.s}`;
        const targets: WriteTarget[] = c.ps.map((p, i) => ({ path: PATHS[p]!, subtree: c.sub[i]! }));
        // The model's entries: the same normalisation (merge duplicates, drop targets under a subtree target).
        const by = new Map<string, boolean>();
        for (const x of targets) by.set(x.path, (by.get(x.path) ?? false) || x.subtree);
        const entries = [...by].filter(([p]) => ![...by].some(([q, sub]) => sub && q !== p && covers(q, p))).map(([p, sub]) => ({ path: p, cls: (sub ? W : N) as Cls }));
        arrive(s, 'write', entries, c.wait, () => t.admitWrite(s, targets, c.wait));
        break;
      }
      case 'upgrade': {
        const cands = locks().filter((r) => r.kind === 'shared' && r.link === undefined);
        if (cands.length === 0) break;
        const l = cands[c.i % cands.length]!;
        arrive(l.session, 'upgrade', [{ path: l.entries[0]!.path, cls: X }], c.wait, () => t.upgrade(l.real, c.wait), l);
        break;
      }
      case 'downgrade': {
        const cands = locks().filter((r) => r.kind === 'exclusive');
        if (cands.length === 0) break;
        const l = cands[c.i % cands.length]!;
        l.kind = 'shared';
        l.entries = [{ path: l.entries[0]!.path, cls: S }];
        seeGrants(t.downgrade(l.real), m.settle());
        break;
      }
      case 'release': {
        const cands = m.held().filter((r) => r.link === undefined).sort((a, b) => a.id - b.id);
        if (cands.length === 0) break;
        const r = cands[c.i % cands.length]!;
        r.state = 'done';
        seeGrants(t.release(r.real), m.settle());
        break;
      }
      case 'consistent': {
        const cands = locks();
        if (cands.length === 0) break;
        const r = cands[c.i % cands.length]!;
        if (r.ownerDied) m.taints = m.taints.filter((x) => !covers(r.entries[0]!.path, x));
        t.markConsistent(r.real);
        break;
      }
      case 'cancel': {
        const cands = m.waiting().sort((a, b) => a.id - b.id);
        if (cands.length === 0) break;
        const r = cands[c.i % cands.length]!;
        r.state = 'done';
        if (r.link) { r.link.link = undefined; }
        seeGrants(t.cancel(r.real), m.settle());
        break;
      }
      case 'die': {
        const s = `s${c.s}`;
        for (const r of m.reqs) {
          if (r.session !== s) continue;
          if (r.state === 'held' && r.kind === 'write') continue; // admitted writes stay held until applied
          if (r.state === 'held') for (const e of r.entries) if (!m.taints.includes(e.path)) m.taints.push(e.path);
          if (r.state !== 'done') r.state = 'done';
          r.link = undefined;
        }
        const end = t.endSession(s);
        seeGrants(end.granted, m.settle());
        assert.ok(end.cancelled.every((r) => r.state === 'done') && end.released.every((r) => r.state === 'done'));
        break;
      }
    }
    checkSafety(m);
    // The table agrees with the model on who holds and who waits.
    for (const r of m.reqs) if (r.state !== 'done' && r.kind !== 'upgrade') assert.equal(r.real.state, r.state, `state of ${r.id}`);
    assert.equal(t.size.waiting, m.waiting().length);
  }
  // Liveness: ending every session leaves every request granted or failed, and the table empty.
  for (const r of m.reqs) if (r.kind === 'write' && r.state === 'held') { r.state = 'done'; seeGrants(t.release(r.real), m.settle()); }
  for (let s = 0; s < NSESS; s++) {
    const sess = `s${s}`;
    for (const r of m.reqs) if (r.session === sess && r.state !== 'held') r.state = 'done';
    for (const r of m.reqs) if (r.session === sess && r.state === 'held' && r.kind !== 'write') { r.state = 'done'; for (const e of r.entries) if (!m.taints.includes(e.path)) m.taints.push(e.path); }
    seeGrants(t.endSession(sess).granted, m.settle());
  }
  // Writes granted meanwhile are applied by the engine, which then releases them.
  for (const r of m.reqs) if (r.kind === 'write' && r.state === 'held') { r.state = 'done'; seeGrants(t.release(r.real), m.settle()); }
  assert.equal(m.waiting().length, 0);
  assert.deepEqual(t.size, { held: 0, waiting: 0 });
  for (const r of m.reqs) if (r.kind !== 'upgrade') assert.equal(r.real.state, 'done');
  // Nothing leaks: the only trie nodes left are the paths to the remaining owner-died taints.
  const prefixes = new Set<string>();
  for (const p of m.taints) for (let q = p; q !== '/'; q = q.slice(0, Math.max(1, q.lastIndexOf('/')))) prefixes.add(q);
  assert.deepEqual(t.footprint, { nodes: prefixes.size, taints: m.taints.length });
}

test('lock-table: model-based — grants, FIFO, deadlock, owner-died and tokens agree with a brute-force model', () => {
  fc.assert(fc.property(fc.array(cmdArb, { minLength: 10, maxLength: 80, size: 'large' }), (cmds) => { runModel(cmds); }), { numRuns: Number(process.env.LT_RUNS ?? 400) });
});
