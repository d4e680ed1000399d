/**
 * Locks on etcd: a FIFO queue of requests, one key each, decided the same
 * way by every client from the mirror.
 *
 * 1. A request is a key P/q/ID (ID = session.counter, or session.generation.counter on
 *    a session adopted from another front-end: ids never repeat) holding path, mode,
 *    session and time, attached to the session's lease. Its create_revision
 *    is its place in the queue. A request is granted when no earlier request
 *    of another session overlaps it (one path covers the other) in a
 *    conflicting mode (anything but shared with shared). The rule depends
 *    only on the queue, which every client's mirror holds at the same
 *    revisions, so all clients agree who holds what at every revision,
 *    without a coordinator. A waiter re-decides when the mirror applies a
 *    change to the queue: it costs no etcd request (no herd of reads).
 * 2. Granting writes the held marker P/h/ID without a lease, and the
 *    revision of that Txn is the fencing token: strictly increasing, since
 *    every grant is a Txn of its own. Release deletes the request and the
 *    marker in one Txn. A holder whose lease ends (closed, expired) loses
 *    its request but not its marker: the next request granted on an
 *    overlapping path finds a marker whose request is gone, turns it into an
 *    owner-died taint P/d/PATH (no lease) and is told ownerDied. The taint
 *    stays until a holder's markConsistent (or resetLock) deletes it.
 * 3. markUnrecoverable puts P/u/PATH; requests overlapping it fail
 *    NOT_RECOVERABLE (waiters too) until resetLock.
 * 4. Deadlock: the wait-for graph is the queue itself (a waiter waits for
 *    the sessions of the requests blocking it). A request whose arrival
 *    closes a cycle through its own session fails DEADLOCK and is removed;
 *    only the request that closes a cycle sees it (the others were decided
 *    at revisions where the cycle was not there).
 * 5. Mandatory locking: a write by one session to a path covered by a lock
 *    granted to another waits (LOCKED with wait: false). Its Txn compares
 *    the queue (no request added or changed since the write was decided,
 *    and the requests that could be granted meanwhile still there), so no
 *    grant slips between the decision and the commit. Unlike the engine,
 *    writes do not queue: a waiting write retries when the queue changes.
 */
import type { Lock, LockInfo, LockMode, LockOptions, LockTableInfo, LockWaiterInfo } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { EtcdBackend } from './backend.js';
import type { PlanBuilder, TxnPlan } from './commit.js';
import { isAncestorOrSelf, overlaps } from './keys.js';
import type { Rec } from './mirror.js';

export interface QEntry {
  readonly id: string;
  readonly path: string;
  readonly mode: LockMode;
  readonly session: string;
  readonly since: number;
  readonly order: number;
  readonly modRev: number;
  /** False (LockOptions.robust): its held marker carries the lease, so its end leaves no taint. */
  readonly robust: boolean;
}

function parseEntry(id: string, r: Rec): QEntry {
  const v = JSON.parse(r.value.toString()) as { p: string; m: LockMode; s: string; t: number; r?: 0 };
  return { id, path: v.p, mode: v.m, session: v.s, since: v.t, order: r.createRev, modRev: r.modRev, robust: v.r !== 0 };
}

export function queueOf(backend: EtcdBackend): QEntry[] {
  const out: QEntry[] = [];
  for (const [id, r] of backend.mirror.flat.q) out.push(parseEntry(id, r));
  return out.sort((a, b) => a.order - b.order);
}

function conflicts(a: QEntry, b: { path: string; mode: LockMode; session: string }): boolean {
  return a.session !== b.session && overlaps(a.path, b.path) && !(a.mode === 'shared' && b.mode === 'shared');
}

export function blockersOf(q: readonly QEntry[], e: QEntry): QEntry[] {
  return q.filter((f) => f.order < e.order && conflicts(f, e));
}

export function isGranted(q: readonly QEntry[], e: QEntry): boolean {
  return blockersOf(q, e).length === 0;
}

/** True when waiting entry `start` closes a cycle of sessions back to its own. */
function closesCycle(q: readonly QEntry[], start: QEntry): boolean {
  const waitsFor = new Map<string, Set<string>>();
  for (const e of q) {
    for (const b of blockersOf(q, e)) {
      let s = waitsFor.get(e.session);
      if (s === undefined) waitsFor.set(e.session, (s = new Set()));
      s.add(b.session);
    }
  }
  const seen = new Set<string>();
  const stack = [...blockersOf(q, start).map((b) => b.session)];
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (s === start.session) return true;
    if (seen.has(s)) continue;
    seen.add(s);
    for (const n of waitsFor.get(s) ?? []) stack.push(n);
  }
  return false;
}

export interface LockOwner {
  readonly id: string;
  /** Aborts when the session ends (closed, lease lost or given up). */
  readonly endSignal: AbortSignal;
  /** True when the session ended because the client gave its lease up (lease-safety rule), not by close. */
  readonly gaveUp: boolean;
  nextId(): string;
  checkOpen(): void;
}

const b = (s: string): Buffer => Buffer.from(s);

export class Locks {
  readonly mine = new Map<string, EtcdLock>();

  constructor(readonly backend: EtcdBackend) {}

  private unrecoverable(path: string): string | undefined {
    for (const p of this.backend.mirror.flat.u.keys()) if (overlaps(p, path)) return p;
    return undefined;
  }

  private notRecoverable(path: string, mark: string): LatchkeyError {
    return new LatchkeyError('NOT_RECOVERABLE', `lock on ${path}: ${mark} was marked unrecoverable (resetLock clears it)`, { path });
  }

  /** Resolves at the next mirror revision touching the lock keys, or rejects on `signal`. */
  nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        off();
        reject(signal.reason as Error);
      };
      const off = this.backend.mirror.listen((changes) => {
        if (changes.some((c) => c.kind === 'q' || c.kind === 'u' || c.kind === 'h')) {
          off();
          signal.removeEventListener('abort', onAbort);
          resolve();
        }
      });
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  async lock(owner: LockOwner & { ready(): Promise<void> }, path: string, options: LockOptions): Promise<Lock> {
    const mode: LockMode = options.mode ?? 'exclusive';
    if (mode !== 'exclusive' && mode !== 'shared') throw new LatchkeyError('INVALID_ARGUMENT', `lock mode must be exclusive or shared, not ${String(mode)}`);
    const wait = options.wait !== false;
    if (options.robust !== undefined && typeof options.robust !== 'boolean') throw new LatchkeyError('INVALID_ARGUMENT', 'lock option robust must be a boolean');
    const robust = options.robust !== false;
    // Requests made in this process enter the queue in call order, whatever their sessions' leases
    // took to be granted: the puts are chained (joined synchronously, before any await).
    const enqueued = this.enqueueChain.then(() => this.enqueue(owner, path, mode, wait, robust));
    this.enqueueChain = enqueued.then(() => {}, () => {});
    const id = await enqueued;
    return this.waitFor(owner, id, path, wait, options, true);
  }

  /**
   * Waits for request `id` of `owner` (path `path`) until granted: the rest
   * of lock(), and of a wait a resume carried over to this front-end
   * (adopt.ts; `first` false: its deadlock check was made when it was queued).
   */
  async waitFor(owner: LockOwner, id: string, path: string, wait: boolean, options: Pick<LockOptions, 'signal' | 'timeoutMs'>, first: boolean): Promise<Lock> {
    const qk = this.backend.keys.of('q', id);
    const signals = [owner.endSignal];
    if (options.signal !== undefined) signals.push(options.signal);
    if (options.timeoutMs !== undefined) signals.push(AbortSignal.timeout(options.timeoutMs));
    const signal = AbortSignal.any(signals);
    let seen = 0;
    // Compared on the request as last seen: a front-end the session moved away from (adopt.ts rewrites its
    // waiting requests) cannot withdraw a wait its new front-end carries on.
    const cancel = async (err: LatchkeyError): Promise<never> => {
      await this.sendUntilThrough({
        compare: seen === 0 ? [] : [{ key: b(qk), target: 'Mod', result: 'Equal', mod_revision: seen }],
        empty: false, success: [{ request_delete_range: { key: b(qk) } }, { request_put: { key: b(this.backend.mirror.revKey), value: b('') } }],
      }, owner).catch(() => {});
      throw err;
    };
    for (;;) {
      const q = queueOf(this.backend);
      const me = q.find((e) => e.id === id);
      // Ended, or moved to another front-end (which may carry this wait on): never granted here after that.
      if (me === undefined || owner.endSignal.aborted) throw new LatchkeyError('SESSION_EXPIRED', `session ${owner.id} ended while waiting for ${path}`, { path });
      seen = me.modRev;
      const m = this.unrecoverable(path);
      if (m !== undefined) return cancel(this.notRecoverable(path, m));
      if (isGranted(q, me)) {
        const lock = await this.grant(owner, me);
        if (lock !== undefined) return lock;
        continue;
      }
      if (!wait) return cancel(new LatchkeyError('LOCKED', `${path} is locked`, { path }));
      if (first && closesCycle(q, me)) return cancel(new LatchkeyError('DEADLOCK', `waiting for ${path} would close a cycle of sessions waiting for each other`, { path }));
      first = false;
      try {
        await this.nextChange(signal);
      } catch {
        if (owner.endSignal.aborted) throw new LatchkeyError('SESSION_EXPIRED', `session ${owner.id} ended while waiting for ${path}`, { path });
        if (options.signal?.aborted) return cancel(new LatchkeyError('ABORTED', `lock on ${path} aborted`, { path }));
        return cancel(new LatchkeyError('TIMEOUT', `lock on ${path}: not granted within ${options.timeoutMs} ms`, { path }));
      }
    }
  }

  private enqueueChain: Promise<void> = Promise.resolve();

  /**
   * Sends a Txn that deletes a request of `owner`'s (a release, a wait given
   * up), again and again until it is through. One that failed — a member
   * died under it, or the cluster had no quorum for a while — would
   * otherwise leave the request in etcd for as long as the session's lease
   * lives: a held lock that nobody will release, or a waiter that is
   * granted one later (found by the etcd soak: waits on other paths then
   * failed DEADLOCK and TIMEOUT for good). Resending is safe (deletes and a
   * revision-key put). Gives up, with the last error, only when the session
   * has ended (its lease takes the request with it) or the store is closed.
   */
  async sendUntilThrough(plan: TxnPlan, owner: LockOwner): Promise<number | undefined> {
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      try {
        return await this.backend.send(plan);
      } catch (e) {
        if (!LatchkeyError.is(e, 'CONNECTION_LOST') || this.backend.closed || owner.endSignal.aborted) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Checks the request against the marks and (wait: false) the queue, then puts its queue entry; returns its id. */
  private async enqueue(owner: LockOwner & { ready(): Promise<void> }, path: string, mode: LockMode, wait: boolean, robust: boolean): Promise<string> {
    await owner.ready();
    owner.checkOpen();
    await this.backend.barrier();
    const mark = this.unrecoverable(path);
    if (mark !== undefined) throw this.notRecoverable(path, mark);
    const probe = { path, mode, session: owner.id };
    if (!wait) {
      const holder = queueOf(this.backend).find((f) => conflicts(f, probe));
      if (holder !== undefined) throw new LatchkeyError('LOCKED', `${path} is locked by session ${holder.session} (${holder.mode} on ${holder.path})`, { path });
    }
    const id = owner.nextId();
    const key = b(this.backend.keys.of('q', id));
    // Only onto no key: a late copy of this Txn (backend.send resends after a deadline), once the request was
    // released or withdrawn, cannot bring it back.
    const put = await this.backend.send({
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }], empty: false,
      success: [
        { request_put: { key, value: b(JSON.stringify({ p: path, m: mode, s: owner.id, t: Date.now(), ...(robust ? {} : { r: 0 }) })), lease: owner.id } },
        { request_put: { key: b(this.backend.mirror.revKey), value: b('') } },
      ],
    });
    if (put === undefined) throw new LatchkeyError('INTERNAL', `lock request ${id} already exists in etcd`);
    return id;
  }

  /** The grant Txn (note 2); undefined when the queue moved under it (decide again). */
  private async grant(owner: LockOwner, me: QEntry): Promise<EtcdLock | undefined> {
    const { keys, mirror } = this.backend;
    const q = new Set(mirror.flat.q.keys());
    const dead: Array<{ id: string; path: string }> = [];
    for (const [hid, r] of mirror.flat.h) {
      if (q.has(hid)) continue;
      const p = (JSON.parse(r.value.toString()) as { p: string }).p;
      if (overlaps(p, me.path)) dead.push({ id: hid, path: p });
    }
    const taints = [...mirror.flat.d.keys()].filter((p) => overlaps(p, me.path));
    const ownerDied = dead.length > 0 || taints.length > 0;
    const success = [
      // A non-robust holder's marker goes with its lease: its end leaves nothing to turn into a taint.
      // `d`: granted with ownerDied (a front-end resuming the session tells its client, adopt.ts).
      { request_put: { key: b(keys.of('h', me.id)), value: b(JSON.stringify({ p: me.path, m: me.mode, s: me.session, ...(ownerDied ? { d: 1 } : {}) })), ...(me.robust ? {} : { lease: me.session }) } },
      ...dead.map((d) => ({ request_delete_range: { key: b(keys.of('h', d.id)) } })),
      ...[...new Set(dead.map((d) => d.path))].filter((p) => !taints.includes(p)).map((p) => ({ request_put: { key: b(keys.of('d', p)), value: b('') } })),
      { request_put: { key: b(mirror.revKey), value: b('') } },
    ];
    const compare = [
      { key: b(keys.of('q', me.id)), target: 'Mod' as const, result: 'Equal' as const, mod_revision: me.modRev },
      ...dead.map((d) => ({ key: b(keys.of('h', d.id)), target: 'Mod' as const, result: 'Equal' as const, mod_revision: mirror.flat.h.get(d.id)!.modRev })),
    ];
    const rev = await this.backend.send({ compare, success, empty: false });
    if (rev === undefined) return undefined;
    const lock = new EtcdLock(this, owner, me, rev, ownerDied);
    this.mine.set(me.id, lock);
    return lock;
  }

  /**
   * Mandatory locking for a write (note 5): adds the queue compares to
   * `plan`, or returns the lock that blocks the write.
   */
  admitWrite(session: string, targets: ReadonlyArray<{ path: string; subtree: boolean }>, plan: PlanBuilder, rev: number, fence: number | undefined): QEntry | undefined {
    const q = queueOf(this.backend);
    const { keys } = this.backend;
    if (fence !== undefined) {
      const mine = [...this.mine.values()].find((l) => l.token === fence && l.owner.id === session);
      const e = mine === undefined ? undefined : q.find((x) => x.id === mine.entry.id);
      if (mine === undefined || e === undefined || !mine.held) throw new LatchkeyError('LOCK_LOST', `the lock with token ${fence} is not held by this session`);
      plan.extra(keys.of('q', e.id), { key: b(keys.of('q', e.id)), target: 'Mod', result: 'Equal', mod_revision: e.modRev });
    }
    if (q.length === 0 && fence === undefined) {
      const [from, to] = keys.range('q');
      plan.extra('q-range', { key: b(from), range_end: b(to), target: 'Create', result: 'Less', create_revision: rev + 1 });
      return undefined;
    }
    const touches = (e: QEntry): boolean => targets.some((t) => isAncestorOrSelf(e.path, t.path) || (t.subtree && isAncestorOrSelf(t.path, e.path)));
    const relevant = new Map<string, QEntry>();
    for (const e of q) {
      if (e.session === session || !touches(e)) continue;
      if (isGranted(q, e)) return e;
      relevant.set(e.id, e);
      for (const bl of blockersOf(q, e)) relevant.set(bl.id, bl);
    }
    const [from, to] = keys.range('q');
    plan.extra('q-range', { key: b(from), range_end: b(to), target: 'Mod', result: 'Less', mod_revision: rev + 1 });
    for (const e of relevant.values()) plan.extra(keys.of('q', e.id), { key: b(keys.of('q', e.id)), target: 'Mod', result: 'Equal', mod_revision: e.modRev });
    return undefined;
  }

  table(): LockTableInfo {
    const q = queueOf(this.backend);
    const held: LockInfo[] = [];
    const waiting: LockWaiterInfo[] = [];
    for (const e of q) {
      if (isGranted(q, e)) {
        const h = this.backend.mirror.flat.h.get(e.id);
        held.push({ path: e.path, mode: e.mode, session: e.session, token: h?.createRev ?? 0, since: e.since, waiters: q.filter((w) => blockersOf(q, w).includes(e)).length });
      } else {
        waiting.push({ path: e.path, mode: e.mode, session: e.session, since: e.since });
      }
    }
    return { held, waiting };
  }

  async resetLock(path: string): Promise<void> {
    const { keys, mirror } = this.backend;
    await this.backend.barrier();
    const success = [
      ...[...mirror.flat.u.keys(), ...mirror.flat.d.keys()].filter((p) => isAncestorOrSelf(path, p)).flatMap((p) => [
        { request_delete_range: { key: b(keys.of('u', p)) } }, { request_delete_range: { key: b(keys.of('d', p)) } }]),
      { request_put: { key: b(mirror.revKey), value: b('') } },
    ];
    const seen = new Set<string>();
    const ops = success.filter((o) => {
      const k = (o as { request_delete_range?: { key: Buffer } }).request_delete_range?.key.toString() ?? 'rev';
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    await this.backend.send({ compare: [], success: ops, empty: false });
  }
}

export class EtcdLock implements Lock {
  private readonly ac = new AbortController();
  private released = false;
  private unsubscribe: () => void;
  private modeNow: LockMode;
  ownerDied: boolean;

  constructor(private readonly locks: Locks, readonly owner: LockOwner, public entry: QEntry, readonly token: number, ownerDied: boolean) {
    this.ownerDied = ownerDied;
    this.modeNow = entry.mode;
    const mirror = locks.backend.mirror;
    this.unsubscribe = mirror.listen((changes) => {
      for (const c of changes) if (c.kind === 'q' && c.rest === entry.id && c.type === 'delete') this.lost('its session\'s lease ended');
    });
    const onEnd = (): void => this.lost('its session ended');
    if (owner.endSignal.aborted) onEnd();
    else owner.endSignal.addEventListener('abort', onEnd, { once: true });
    const unlisten = this.unsubscribe;
    this.unsubscribe = () => {
      unlisten();
      owner.endSignal.removeEventListener('abort', onEnd);
    };
  }

  get path(): string {
    return this.entry.path;
  }

  get mode(): LockMode {
    return this.modeNow;
  }

  get since(): number {
    return this.entry.since;
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  get held(): boolean {
    return !this.released && !this.ac.signal.aborted;
  }

  private lost(why: string): void {
    if (this.ac.signal.aborted || this.released) return;
    this.unsubscribe();
    this.locks.mine.delete(this.entry.id);
    const code = this.owner.gaveUp ? 'SESSION_EXPIRED' : 'LOCK_LOST';
    this.ac.abort(new LatchkeyError(code, `lock on ${this.path} lost: ${why}`, { path: this.path }));
  }

  private checkHeld(): void {
    if (!this.held) throw new LatchkeyError('LOCK_LOST', `lock on ${this.path} is not held`, { path: this.path });
  }

  async markConsistent(): Promise<void> {
    this.checkHeld();
    if (!this.entry.robust) return; // a non-robust holder protects nothing: it cannot vouch for the data
    const { keys, mirror } = this.locks.backend;
    const taints = [...mirror.flat.d.keys()].filter((p) => isAncestorOrSelf(this.path, p));
    const rev = await this.locks.backend.send({
      compare: [{ key: b(keys.of('q', this.entry.id)), target: 'Mod', result: 'Equal', mod_revision: this.entry.modRev }],
      success: [...taints.map((p) => ({ request_delete_range: { key: b(keys.of('d', p)) } })), { request_put: { key: b(mirror.revKey), value: b('') } }],
      empty: false,
    });
    if (rev === undefined) throw new LatchkeyError('LOCK_LOST', `lock on ${this.path} was lost`, { path: this.path });
    this.ownerDied = false;
  }

  async markUnrecoverable(): Promise<void> {
    this.checkHeld();
    const { keys, mirror } = this.locks.backend;
    const rev = await this.locks.backend.send({
      compare: [{ key: b(keys.of('q', this.entry.id)), target: 'Mod', result: 'Equal', mod_revision: this.entry.modRev }],
      success: [{ request_put: { key: b(keys.of('u', this.path)), value: b('') } }, { request_put: { key: b(mirror.revKey), value: b('') } }],
      empty: false,
    });
    if (rev === undefined) throw new LatchkeyError('LOCK_LOST', `lock on ${this.path} was lost`, { path: this.path });
  }

  /** Rewrites the request's mode in place once nothing else overlapping is queued before or held (upgrade), or at once (downgrade). */
  private async setMode(mode: LockMode, opts: { wait?: boolean; timeoutMs?: number; signal?: AbortSignal }): Promise<void> {
    this.checkHeld();
    const backend = this.locks.backend;
    const { keys, mirror } = backend;
    const signals = [this.owner.endSignal, this.ac.signal];
    if (opts.signal !== undefined) signals.push(opts.signal);
    if (opts.timeoutMs !== undefined) signals.push(AbortSignal.timeout(opts.timeoutMs));
    const signal = AbortSignal.any(signals);
    for (;;) {
      const q = queueOf(backend);
      const others = q.filter((e) => e.id !== this.entry.id && e.session !== this.owner.id && overlaps(e.path, this.path) && (mode === 'exclusive' ? isGranted(q, e) : false));
      if (others.length === 0) {
        const [from, to] = keys.range('q');
        const value = JSON.stringify({ p: this.path, m: mode, s: this.owner.id, t: this.entry.since });
        const rev = await backend.send({
          compare: [
            { key: b(keys.of('q', this.entry.id)), target: 'Mod', result: 'Equal', mod_revision: this.entry.modRev },
            { key: b(from), range_end: b(to), target: 'Mod', result: 'Less', mod_revision: mirror.rev + 1 },
          ],
          success: [
            { request_put: { key: b(keys.of('q', this.entry.id)), value: b(value), lease: this.owner.id } },
            { request_put: { key: b(mirror.revKey), value: b('') } },
          ],
          empty: false,
        });
        if (rev !== undefined) {
          this.entry = { ...this.entry, mode, modRev: rev };
          this.modeNow = mode;
          return;
        }
        this.checkHeld();
        continue;
      }
      if (opts.wait === false) throw new LatchkeyError('LOCKED', `upgrade of ${this.path}: held by another session`, { path: this.path });
      try {
        await this.locks.nextChange(signal);
      } catch {
        this.checkHeld();
        if (opts.signal?.aborted) throw new LatchkeyError('ABORTED', `upgrade of ${this.path} aborted`, { path: this.path });
        throw new LatchkeyError('TIMEOUT', `upgrade of ${this.path}: not granted within ${opts.timeoutMs} ms`, { path: this.path });
      }
    }
  }

  async upgrade(options: { wait?: boolean; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    if (this.modeNow === 'exclusive') throw new LatchkeyError('INVALID_ARGUMENT', `lock on ${this.path} is already exclusive`, { path: this.path });
    await this.setMode('exclusive', options);
  }

  async downgrade(): Promise<void> {
    if (this.modeNow === 'shared') return;
    await this.setMode('shared', {});
  }

  async release(): Promise<void> {
    if (this.released) return;
    const wasHeld = this.held;
    this.released = true;
    this.unsubscribe();
    this.locks.mine.delete(this.entry.id);
    if (!wasHeld) return;
    const { keys, mirror } = this.locks.backend;
    await this.locks.sendUntilThrough({
      compare: [],
      success: [
        { request_delete_range: { key: b(keys.of('q', this.entry.id)) } },
        { request_delete_range: { key: b(keys.of('h', this.entry.id)) } },
        { request_put: { key: b(mirror.revKey), value: b('') } },
      ],
      empty: false,
    }, this.owner);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }

  info(): LockInfo {
    return { path: this.path, mode: this.modeNow, session: this.owner.id, token: this.token, since: this.entry.since };
  }
}
