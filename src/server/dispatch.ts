/**
 * The dispatcher: one handler per protocol op, in a table typed by the
 * protocol's request table, so an op added to the protocol does not compile
 * until it is handled here. Each entry says what access the request needs
 * (checked before it runs) and runs it against the connection's state.
 *
 * Handlers throw LatchkeyErrors for every expected failure; the connection
 * turns whatever a handler throws into an error reply for that request only
 * (connection.ts), so nothing a client sends can throw into the event loop.
 */
import type { Entry, Lock, Session, Transaction } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { parentPath } from '../core/path.js';
import type { Limits } from '../protocol/limits.js';
import type { Args, RequestOp, Result, WireEntry } from '../protocol/messages.js';
import { CHECK_EXPECT, CREATE_FLAGS, DELETE_FLAGS, SET_CONDITIONS, checkValueSize, definedFields } from '../edge/args.js';
import type { ServedStore, ServedWait, ServedWatch } from './served.js';
import type { LockNow, ServedLock } from '../engine/access.js';
import { type Access, type Principal, authorize, authorizeRecursiveWatch, canRead, sessionsVisibleTo } from './auth.js';

export interface TxSlot {
  readonly tx: Transaction;
  readonly session: number;
  ops: number;
}

export interface LockSlot {
  readonly lock: Lock;
  readonly session: number;
}

/** What handlers may use of a connection. */
export interface ConnContext {
  readonly store: ServedStore;
  readonly limits: Limits;
  readonly principal: Principal;
  readonly txs: Map<number, TxSlot>;
  readonly locks: Map<number, LockSlot>;
  /** Lock handles whose request is in flight (counted against maxLocks, not yet in `locks`). */
  readonly pendingLocks: Set<number>;
  /** Lock waits a resume carried over, by lock handle, until `awaitLock` takes them. */
  readonly adoptedWaits: Map<number, { readonly session: number; readonly wait: ServedWait }>;
  readonly watchCount: number;
  session(handle: number): Session;
  openSession(handle: number, name: string | undefined): Promise<Session>;
  endSession(handle: number): Promise<void>;
  /** The client is closing on purpose: when the connection then closes, its sessions end at once (no lease linger). */
  goodbye(): void;
  /** Starts pumping a watch's events to the client as pushes. */
  addWatch(handle: number, session: number, w: ServedWatch): void;
  removeWatch(handle: number): boolean;
  /** A watch's backlog changed (charged to the server's memory budget). */
  watchQueued(handle: number): void;
  /** The lock is held by the client now: push lockLost if its signal aborts. */
  trackLock(handle: number, session: number, lock: Lock): void;
  /** The ids of this connection's open sessions. */
  sessionIds(): ReadonlySet<string>;
  serverStats(): Record<string, unknown>;
}

export interface Request<K extends RequestOp> {
  readonly id: number;
  /** The session handle named by the envelope (0: the connection's own). */
  readonly s: number;
  readonly a: Args<K>;
  /** Aborts when the client cancels this request or the connection goes away. */
  readonly signal: AbortSignal;
}

interface Handler<K extends RequestOp> {
  /** The paths the request touches and the access each needs. */
  access(a: Args<K>): ReadonlyArray<readonly [string, Access]>;
  /**
   * Runs the request: its result when known in the tick it arrives (an
   * uncontended lock, a release, a begin), answered with no promise at all;
   * a promise when it waits (a durable commit, a lock wait). A throw fails
   * this request only. Handlers that only pass a promise on are not `async`:
   * each async layer costs ticks and a promise per request.
   */
  run(c: ConnContext, r: Request<K>): Result<K> | Promise<Result<K>>;
  /**
   * The same request answered synchronously, for reads outside a
   * transaction: no promise, no microtask, the reply queued at once
   * (profiled: the promise and its reaction were a fifth of a pipelined
   * get on the server). Returns NOT_SYNC when the request needs `run`.
   */
  sync?(c: ConnContext, s: number, a: Args<K>): Result<K> | typeof NOT_SYNC;
}

/** What `sync` returns for a request it does not answer (one inside a transaction). */
export const NOT_SYNC: unique symbol = Symbol('not sync');

export type HandlerTable = { readonly [K in RequestOp]: Handler<K> };

const none = (): [] => [];
const readPath = (a: { path: string }): [[string, Access]] => [[a.path, 'read']];
const writePath = (a: { path: string }): [[string, Access]] => [[a.path, 'write']];
/**
 * A sequential create of P writes P + a counter: a sibling of P, any of a
 * billion names under P's parent. Only a grant covering the parent covers
 * them all, so that is what it needs (checked before the request runs, so it
 * does not even wait for a lock outside the grant). The engine's write guard
 * then checks the path actually written.
 */
const createPath = (a: { path: string; sequential?: boolean }): Array<[string, Access]> =>
  (a.sequential === true ? [[parentPath(a.path), 'write'], [a.path, 'write']] : [[a.path, 'write']]);

/** The server's own value limit (it may be below the store's). */
function checkValue(c: ConnContext, v: Uint8Array | undefined, path: string): void {
  if (v !== undefined) checkValueSize(path, v.length, c.limits.maxValue);
}

function txOf(c: ConnContext, handle: number, countOp: boolean): TxSlot {
  const slot = c.txs.get(handle);
  if (slot === undefined) throw new LatchkeyError('ABORTED', `no open transaction ${handle} on this connection`, { info: { tx: handle } });
  if (countOp && ++slot.ops > c.limits.maxTxOps) {
    throw new LatchkeyError('QUOTA', `transaction has more than ${c.limits.maxTxOps} operations`, { info: { limit: c.limits.maxTxOps } });
  }
  return slot;
}

function wireEntry(e: Entry): WireEntry {
  // The stored bytes, not a copy: a reply is encoded at once, and thousands of pipelined gets must not each copy a value first.
  const value = (e as { sharedValue?: Uint8Array }).sharedValue ?? e.value;
  return { path: e.path, value, stat: { ...e.stat }, revision: e.revision };
}

/** A write's options from its arguments: one object, no spreads (a set builds these once per request). */
function writeOpts(a: { fence?: number; wait?: boolean }, signal: AbortSignal): { fence?: number; wait?: boolean; signal: AbortSignal } {
  const o: { fence?: number; wait?: boolean; signal: AbortSignal } = { signal };
  if (a.fence !== undefined) o.fence = a.fence;
  if (a.wait !== undefined) o.wait = a.wait;
  return o;
}

/** A set's conditions and write options as one object (the edge picks the conditions out again). */
function setOpts(a: Args<'set'>, signal: AbortSignal): SetConditionsAndWrite {
  const o: SetConditionsAndWrite = writeOpts(a, signal);
  if (a.ifVersion !== undefined) o.ifVersion = a.ifVersion;
  if (a.ifModRev !== undefined) o.ifModRev = a.ifModRev;
  if (a.ifAbsent !== undefined) o.ifAbsent = a.ifAbsent;
  return o;
}

interface SetConditionsAndWrite { ifVersion?: number; ifModRev?: number; ifAbsent?: boolean; fence?: number; wait?: boolean; signal: AbortSignal }

const toNull = (): null => null;

/**
 * The signal of a resumable session's lock wait: the client's cancel and the
 * server's shutdown abort it, the connection's loss does not. The wait then
 * lives as long as its session here (it ends with it, SESSION_EXPIRED), so
 * a client resuming the session elsewhere finds it still queued and carries
 * it over (docs/protocol.md, "Resuming a session").
 */
function keptOnLoss(signal: AbortSignal): AbortSignal {
  const ctl = new AbortController();
  const onAbort = (): void => {
    if (!LatchkeyError.is(signal.reason, 'CONNECTION_LOST')) ctl.abort(signal.reason);
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return ctl.signal;
}

function lockSlot(c: ConnContext, handle: number): LockSlot {
  const slot = c.locks.get(handle);
  if (slot === undefined) throw new LatchkeyError('LOCK_LOST', `no lock ${handle} held on this connection`, { info: { lock: handle } });
  return slot;
}

export const handlers: HandlerTable = {
  get: {
    access: readPath,
    async run(c, { s, a }) {
      const e = a.tx === undefined ? await c.session(s).get(a.path) : await txOf(c, a.tx, true).tx.get(a.path);
      return e === undefined ? null : wireEntry(e);
    },
    sync(c, s, a) {
      if (a.tx !== undefined) return NOT_SYNC;
      c.session(s); // alive, or SESSION_EXPIRED
      // A value on disk and not cached is read by `run`, asynchronously: the event loop never waits for a disk.
      const view = c.store.inMemoryView?.();
      if (view === undefined) return NOT_SYNC; // a store without the fast path (etcd: a read waits for a linearizable barrier)
      const e = view.getInMemory(a.path);
      if (e === false) return NOT_SYNC;
      return e === undefined ? null : wireEntry(e);
    },
  },
  exists: {
    access: readPath,
    async run(c, { s, a }) {
      return a.tx === undefined ? c.session(s).exists(a.path) : txOf(c, a.tx, true).tx.exists(a.path);
    },
    sync(c, s, a) {
      if (a.tx !== undefined) return NOT_SYNC;
      c.session(s);
      const view = c.store.inMemoryView?.();
      return view === undefined ? NOT_SYNC : view.exists(a.path);
    },
  },
  list: {
    access: readPath,
    async run(c, { s, a }) {
      const o = definedFields(a, ['after', 'limit']);
      const l = a.tx === undefined ? await c.session(s).list(a.path, o) : await txOf(c, a.tx, true).tx.list(a.path, o);
      return { names: [...l], more: l.more, revision: l.revision };
    },
  },
  set: {
    access: writePath,
    run(c, { s, a, signal }) {
      checkValue(c, a.value, a.path);
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.set(a.path, a.value, definedFields(a, SET_CONDITIONS)).then(toNull);
      return c.session(s).set(a.path, a.value, setOpts(a, signal));
    },
  },
  create: {
    access: createPath,
    run(c, { s, a, signal }) {
      checkValue(c, a.value, a.path);
      const o = definedFields(a, CREATE_FLAGS);
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.create(a.path, a.value, o);
      return c.session(s).create(a.path, a.value, { ...o, ...writeOpts(a, signal) });
    },
  },
  delete: {
    access: writePath,
    run(c, { s, a, signal }) {
      const o = definedFields(a, DELETE_FLAGS);
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.delete(a.path, o);
      return c.session(s).delete(a.path, { ...o, ...writeOpts(a, signal) });
    },
  },
  check: {
    access: readPath,
    async run(c, { a }) {
      await txOf(c, a.tx, true).tx.check(a.path, definedFields(a, CHECK_EXPECT));
      return null;
    },
  },
  add: {
    access: writePath,
    run(c, { s, a, signal }) {
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.add(a.path, a.delta).then(toNull);
      return c.session(s).add(a.path, a.delta, writeOpts(a, signal));
    },
  },
  min: {
    access: writePath,
    run(c, { s, a, signal }) {
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.min(a.path, a.operand).then(toNull);
      return c.session(s).min(a.path, a.operand, writeOpts(a, signal));
    },
  },
  max: {
    access: writePath,
    run(c, { s, a, signal }) {
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.max(a.path, a.operand).then(toNull);
      return c.session(s).max(a.path, a.operand, writeOpts(a, signal));
    },
  },
  append: {
    access: writePath,
    run(c, { s, a, signal }) {
      checkValue(c, a.value, a.path);
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.append(a.path, a.value).then(toNull);
      return c.session(s).append(a.path, a.value, writeOpts(a, signal));
    },
  },
  setIfAbsent: {
    access: writePath,
    run(c, { s, a, signal }) {
      checkValue(c, a.value, a.path);
      if (a.tx !== undefined) return txOf(c, a.tx, true).tx.setIfAbsent(a.path, a.value).then(toNull);
      return c.session(s).setIfAbsent(a.path, a.value, writeOpts(a, signal));
    },
  },
  multi: {
    access: (a) => a.ops.flatMap((o): Array<[string, Access]> => (o.op === 'check' ? [[o.path, 'read']] : o.op === 'create' ? createPath(o) : [[o.path, 'write']])),
    async run(c, { s, a, signal }) {
      if (a.ops.length > c.limits.maxTxOps) {
        throw new LatchkeyError('QUOTA', `multi has ${a.ops.length} operations; the limit is ${c.limits.maxTxOps}`, { info: { limit: c.limits.maxTxOps } });
      }
      for (const o of a.ops) if (o.op === 'set' || o.op === 'create') checkValue(c, o.value, o.path);
      const r = await c.session(s).multi(a.ops, writeOpts(a, signal));
      return { revision: r.revision, results: r.results.map((x) => (x === undefined ? null : x)) };
    },
  },
  begin: {
    access: none,
    run(c, { s, a }) {
      if (c.txs.has(a.tx)) throw invalidArgument(`transaction handle ${a.tx} is in use`);
      if (c.txs.size >= c.limits.maxTransactions) {
        throw new LatchkeyError('QUOTA', `more than ${c.limits.maxTransactions} open transactions on this connection`, { info: { limit: c.limits.maxTransactions } });
      }
      const tx = c.session(s).begin();
      c.txs.set(a.tx, { tx, session: s, ops: 0 });
      return { snapshotRevision: tx.snapshotRevision };
    },
  },
  commit: {
    access: none,
    async run(c, { a, signal }) {
      const slot = txOf(c, a.tx, false);
      try {
        return await slot.tx.commit(writeOpts(a, signal));
      } finally {
        c.txs.delete(a.tx);
      }
    },
  },
  abort: {
    access: none,
    async run(c, { a }) {
      const slot = c.txs.get(a.tx);
      c.txs.delete(a.tx);
      await slot?.tx.abort();
      return null;
    },
  },
  lock: {
    access: writePath,
    run(c, { s, a, signal }) {
      if (c.locks.has(a.lock) || c.pendingLocks.has(a.lock)) throw invalidArgument(`lock handle ${a.lock} is in use`);
      if (c.locks.size + c.pendingLocks.size >= c.limits.maxLocks) {
        throw new LatchkeyError('QUOTA', `more than ${c.limits.maxLocks} locks held or awaited on this connection`, { info: { limit: c.limits.maxLocks } });
      }
      const session = c.session(s);
      const o = { ...definedFields(a, ['mode', 'wait', 'timeoutMs', 'robust']), signal: (session as { readonly secret?: string }).secret === undefined ? signal : keptOnLoss(signal) };
      const granted = (lock: Lock): Result<'lock'> => {
        c.trackLock(a.lock, s, lock);
        return { token: lock.token, ownerDied: lock.ownerDied, mode: lock.mode };
      };
      // The embedded store grants an uncontended lock in this tick: answered with no promise.
      const now = (session as Partial<LockNow>).lockNow;
      const l = now !== undefined ? now.call(session, a.path, o) : session.lock(a.path, o);
      if (!(l instanceof Promise)) return granted(l);
      c.pendingLocks.add(a.lock);
      return l.then(
        (lock) => {
          c.pendingLocks.delete(a.lock);
          return granted(lock);
        },
        (e: unknown) => {
          c.pendingLocks.delete(a.lock);
          throw e;
        },
      );
    },
  },
  awaitLock: {
    // Authorized when the wait was first asked for (its session's resume proved it the client's).
    access: none,
    run(c, { s, a, signal }) {
      const slot = c.adoptedWaits.get(a.lock);
      if (slot === undefined || slot.session !== s) throw new LatchkeyError('LOCK_LOST', `no lock wait ${a.lock} carried over on this connection`, { info: { lock: a.lock } });
      c.adoptedWaits.delete(a.lock);
      // As the first request's wait (keptOnLoss): the client's cancel and the server's shutdown withdraw it,
      // the connection's loss does not (the client carries it over again after each loss).
      const kept = keptOnLoss(signal);
      const onAbort = (): void => slot.wait.abort(kept.reason);
      if (kept.aborted) onAbort();
      else kept.addEventListener('abort', onAbort, { once: true });
      return slot.wait.result.then((lock) => {
        c.pendingLocks.delete(a.lock);
        c.trackLock(a.lock, s, lock);
        return { token: lock.token, ownerDied: lock.ownerDied, mode: lock.mode };
      }, (e: unknown) => {
        c.pendingLocks.delete(a.lock);
        throw e;
      });
    },
  },
  upgrade: {
    access: none,
    async run(c, { a, signal }) {
      const { lock } = lockSlot(c, a.lock);
      await lock.upgrade({ ...definedFields(a, ['wait', 'timeoutMs']), signal });
      return { token: lock.token };
    },
  },
  downgrade: {
    access: none,
    async run(c, { a }) {
      await lockSlot(c, a.lock).lock.downgrade();
      return null;
    },
  },
  release: {
    access: none,
    run(c, { a }) {
      const slot = c.locks.get(a.lock);
      c.locks.delete(a.lock); // before release: its signal must not push lockLost for a release asked for
      if (slot === undefined) return null;
      const l = slot.lock as Partial<ServedLock>;
      if (l.releaseNow !== undefined) {
        l.releaseNow();
        return null;
      }
      return slot.lock.release().then(toNull);
    },
  },
  markLock: {
    access: none,
    async run(c, { a }) {
      const { lock } = lockSlot(c, a.lock);
      if (a.state === 'consistent') await lock.markConsistent();
      else await lock.markUnrecoverable();
      return null;
    },
  },
  resetLock: {
    access: writePath,
    async run(c, { a }) {
      await c.store.resetLock(a.path);
      return null;
    },
  },
  // The lock views show only the paths the principal may read (top is built on lockTable).
  locks: {
    access: none,
    run(c, { s }) {
      return c.session(s).locks().filter((l) => canRead(c.principal, l.path)).map((l) => ({ ...l }));
    },
  },
  lockTable: {
    access: none,
    run(c) {
      const t = c.store.lockTable();
      const p = c.principal;
      return { held: t.held.filter((l) => canRead(p, l.path)).map((l) => ({ ...l })), waiting: t.waiting.filter((w) => canRead(p, w.path)).map((w) => ({ ...w })) };
    },
  },
  listSessions: {
    // Lock counts cover readable paths only; a token with grants sees its own sessions and those
    // holding or awaiting a lock it may read, others' addresses withheld (auth.ts sessionsVisibleTo).
    access: none,
    run(c) {
      const p = c.principal;
      return sessionsVisibleTo(p, c.store.sessionList((path) => canRead(p, path)), c.sessionIds()).map((s) => ({ ...s }));
    },
  },
  watch: {
    // A recursive watch may sit on an ancestor of what the principal may read: checked in run, events filtered.
    access: (a) => (a.recursive === true ? [] : [[a.path, 'read']]),
    run(c, { s, a }) {
      c.session(s); // the session must be alive
      if (a.recursive === true) authorizeRecursiveWatch(c.principal, a.path);
      if (c.watchCount >= c.limits.maxWatches) {
        throw new LatchkeyError('QUOTA', `more than ${c.limits.maxWatches} watches on this connection`, { info: { limit: c.limits.maxWatches } });
      }
      const p = c.principal;
      const o = {
        ...definedFields(a, ['recursive', 'fromRevision']), maxQueue: c.limits.maxWatchQueue, shareValues: true,
        onQueue: () => c.watchQueued(a.watch),
        ...(p.grants !== undefined ? { filter: (path: string) => canRead(p, path) } : {}),
      };
      const w = c.store.watchInternal(a.path, o);
      c.addWatch(a.watch, s, w);
      return { revision: w.startRevision };
    },
  },
  unwatch: {
    access: none,
    run(c, { a }) {
      c.removeWatch(a.watch);
      return null;
    },
  },
  session: {
    access: none,
    async run(c, { a }) {
      const sess: Session & { readonly secret?: string | undefined } = await c.openSession(a.session, a.name);
      return { id: sess.id, name: sess.name, ...(sess.secret === undefined ? {} : { secret: sess.secret }) };
    },
  },
  goodbye: {
    access: none,
    run(c) {
      c.goodbye();
      return null;
    },
  },
  endSession: {
    access: none,
    async run(c, { a }) {
      if (a.session === 0) throw invalidArgument('the connection\'s own session ends with the connection');
      await c.endSession(a.session);
      return null;
    },
  },
  stats: {
    // Counters only, no paths: any principal may see them (top samples them).
    access: none,
    run(c) {
      return { ...c.store.stats(), server: c.serverStats() };
    },
  },
  snapshot: {
    access: () => [['/', 'admin']],
    async run(c) {
      await c.store.snapshot();
      return null;
    },
  },
  ping: {
    access: none,
    run() {
      return null;
    },
  },
};

/** Checks a request's access needs against the principal. */
export function checkAccess<K extends RequestOp>(p: Principal, op: K, a: Args<K>): void {
  if (p.grants === undefined) return;
  for (const [path, need] of handlers[op].access(a)) authorize(p, path, need);
}
