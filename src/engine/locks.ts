/**
 * The lock service: the engine's side of the lock table (core/lock-table.ts).
 * The table decides; this file owns what waits — promises, timers, abort
 * signals — and the `Lock` handles users hold.
 *
 * - Every table call returns the requests it granted; `deliver` settles each
 *   one's promise exactly once. Nothing polls: a waiter is touched only when
 *   the table grants it, or when its own timer or signal cancels it.
 * - Mandatory locks: the engine asks `admit` before every write and commit.
 *   An immediate admission holds nothing (the engine applies the write in
 *   the same tick, or, when the write must wait for the value bound, makes
 *   it a held one at once: `holdWrite`). An admission that waited is held in
 *   the table until the engine calls `done()` with the write on the pending
 *   head, so a lock queued behind the write cannot be granted in between.
 * - A lock lost to its session's end aborts `lock.signal` (LOCK_LOST); the
 *   next holder is told `ownerDied`, until one of them calls
 *   `markConsistent()` (the robust-mutex contract: releasing without it
 *   passes ownerDied on). `markUnrecoverable()` makes every later request
 *   overlapping the path fail NOT_RECOVERABLE until `resetLock` (at or above
 *   it) clears the path and its taints.
 * - With durable storage every hold, taint and unrecoverable mark goes to
 *   the log (storage/lock-log.ts) as it happens, without an fsync of its
 *   own; a restart brings taints and marks back, and holds never released
 *   as taints. Fencing tokens continue above the logged ceiling. Without
 *   storage tokens start at the wall clock in microseconds.
 */
import type { Fence, Lock, LockInfo, LockMode, LockOptions, LockTableInfo, LockWaiterInfo, WriteOptions } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import { LockTable, type LockJournal, type LockRequest, type WriteTarget } from '../core/lock-table.js';
import { TOKEN_BLOCK } from '../storage/lock-log.js';
import type { CommitLog, RecoveredLocks } from '../storage/storage.js';
import { Observers } from './observe.js';
import type { LockPageOptions } from '../core/lock-page.js';

/** A write admitted by the lock service; `done` is called once the write is applied (or abandoned). */
export interface Admission {
  done(): void;
}

/** The admission of a write no other session's lock covers: it holds nothing. */
export const NO_ADMISSION: Admission = { done() {} };

/** Where the lock service logs (durable stores only). */
export interface LockLogTarget {
  readonly log: CommitLog;
  readonly locks: RecoveredLocks;
  /** Asks for a sync soon (the events ride it). */
  syncSoon(): void;
  /** Resolves once every event logged so far is durable. */
  syncLog(): Promise<void>;
}

/** Does a lock at `a` cover data a lock at `b` covers (one path at or under the other)? */
function overlaps(a: string, b: string): boolean {
  return a === b || a === '/' || b === '/' || b.startsWith(a + '/') || a.startsWith(b + '/');
}

interface Waiter {
  /** Settles the waiting promise with what the grant gives the caller. */
  resolve(req: LockRequest): void;
  reject(e: unknown): void;
  cleanup(): void;
}

export interface UpgradeOptions {
  wait?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
}

function aborted(signal: AbortSignal): LatchkeyError {
  const r: unknown = signal.reason;
  if (r instanceof LatchkeyError) return r;
  if (r instanceof Error && r.name === 'TimeoutError') return new LatchkeyError('TIMEOUT', 'timed out waiting', { cause: r });
  return new LatchkeyError('ABORTED', 'aborted while waiting', { cause: r });
}

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function checkWaitOptions(o: { wait?: boolean; timeoutMs?: number; signal?: AbortSignal }): void {
  if (o.wait !== undefined && typeof o.wait !== 'boolean') throw invalidArgument('wait must be a boolean');
  // setTimeout turns anything above 2^31-1 ms (~24.8 days) into 1 ms: refuse it rather than time out at once.
  if (o.timeoutMs !== undefined && (typeof o.timeoutMs !== 'number' || !(o.timeoutMs >= 0) || !(o.timeoutMs <= MAX_TIMEOUT_MS))) {
    throw invalidArgument(`timeoutMs must be a number from 0 to ${MAX_TIMEOUT_MS}`);
  }
  if (o.signal?.aborted) throw aborted(o.signal);
}

export class LockService {
  readonly table: LockTable;
  /** Paths marked unrecoverable (few: a set, scanned only when not empty). */
  private readonly broken = new Set<string>();
  private ceiling = Number.MAX_SAFE_INTEGER;

  constructor(private readonly target?: LockLogTarget, private readonly observers = new Observers()) {
    const onTaint = (path: string, on: boolean): void => { if (observers.any) observers.emit('taint', { path, on }); };
    if (target === undefined) {
      const nothing = (): void => {};
      this.table = new LockTable({ clock: Date.now, firstToken: Date.now() * 1000, journal: { hold: nothing, unhold: nothing, taint: onTaint } });
      return;
    }
    const { log, locks } = target;
    this.ceiling = locks.ceiling;
    const journal: LockJournal = {
      hold: (token, path, robust) => {
        // A non-robust hold is not logged (a restart must not turn it into a taint), but its token
        // still counts toward the ceiling: tokens stay strictly increasing across restarts.
        let logged = robust;
        if (robust) log.appendLock({ t: 'hold', token, path });
        if (token > this.ceiling - TOKEN_BLOCK / 2) {
          this.ceiling += TOKEN_BLOCK;
          log.appendLock({ t: 'ceiling', token: this.ceiling });
          logged = true;
        }
        if (logged) target.syncSoon();
      },
      unhold: (token, robust) => {
        if (!robust) return;
        log.appendLock({ t: 'unhold', token });
        target.syncSoon();
      },
      taint: (path, on) => {
        if (restoring) return; // the log holds these already
        onTaint(path, on);
        log.appendLock({ t: on ? 'taint' : 'untaint', path });
        target.syncSoon();
      },
    };
    let restoring = true;
    this.table = new LockTable({ clock: Date.now, firstToken: locks.tokenFloor, journal });
    for (const p of locks.taints) this.table.restoreTaint(p);
    restoring = false;
    for (const p of locks.broken) this.broken.add(p);
  }

  private brokenOver(path: string): string | undefined {
    if (this.broken.size === 0) return undefined;
    for (const b of this.broken) if (overlaps(b, path)) return b;
    return undefined;
  }

  private notRecoverable(path: string, at: string): LatchkeyError {
    return new LatchkeyError('NOT_RECOVERABLE', `lock on ${path}: ${at} was marked unrecoverable (resetLock clears it)`, { path, info: { unrecoverable: at } });
  }

  /** Throws NOT_RECOVERABLE when `path` overlaps a path marked unrecoverable. */
  private checkRecoverable(path: string): void {
    const b = this.brokenOver(path);
    if (b !== undefined) throw this.notRecoverable(path, b);
  }

  /** @internal */
  markConsistent(l: LockImpl): void {
    if (l.req.state !== 'held') throw lost(l.req, 'it was released');
    this.table.markConsistent(l.req);
  }

  /** @internal Resolves once the mark is durable. */
  markUnrecoverable(l: LockImpl): Promise<void> {
    if (l.req.state !== 'held') throw lost(l.req, 'it was released');
    const path = l.req.path;
    if (!this.broken.has(path)) {
      this.broken.add(path);
      this.target?.log.appendLock({ t: 'broken', path });
    }
    return this.target?.syncLog() ?? Promise.resolve();
  }

  /** Clears the unrecoverable marks and owner-died taints at and below `path`; resolves once that is durable. */
  resetLock(path: string): Promise<void> {
    parsePath(path);
    const under = (p: string): boolean => path === '/' || p === path || p.startsWith(path + '/');
    for (const b of [...this.broken]) if (under(b)) this.broken.delete(b);
    this.table.resetTaints(path);
    this.target?.log.appendLock({ t: 'reset', path });
    if (this.observers.any) this.observers.emit('lockReset', { path });
    return this.target?.syncLog() ?? Promise.resolve();
  }

  /**
   * An operator takes the locks held at exactly `path` from their holders
   * (the console's "force release"): each holder's lock is lost (its signal
   * aborts LOCK_LOST), the path is tainted owner-died first — the holder may
   * have been half-way through an update — and the next waiter is granted
   * with ownerDied. Resolves with how many locks were taken, once the taint
   * is durable.
   */
  forceRelease(path: string): Promise<number> {
    parsePath(path);
    const held = this.table.allHeld().filter((r) => r.path === path);
    for (const r of held) {
      if (r.state !== 'held') continue;
      const l = r.owner as LockImpl | undefined;
      this.cancelUpgrade(r, 'the lock was force-released');
      r.owner = undefined;
      this.table.restoreTaint(r.path);
      l?.lose('an operator force-released it');
      this.deliver(this.table.release(r));
    }
    return (this.target?.syncLog() ?? Promise.resolve()).then(() => held.length);
  }

  /** Counts for stats: taints and unrecoverable paths. */
  get recoveryCounts(): { taints: number; unrecoverable: number } {
    return { taints: this.table.footprint.taints, unrecoverable: this.broken.size };
  }

  // ------------------------------------------------------------------ locks

  /** A lock for `session`; resolves when granted. */
  lock(session: string, path: string, options: LockOptions = {}): Promise<Lock> {
    try {
      const l = this.lockNow(session, path, options);
      return l instanceof LockImpl ? Promise.resolve(l) : l;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * `lock` without a promise when the lock is granted at once (the server
   * answers an uncontended lock in the tick its request arrives); a promise
   * when the request waits. Throws what `lock` rejects with up front.
   */
  lockNow(session: string, path: string, options: LockOptions = {}): LockImpl | Promise<LockImpl> {
    try {
      if (options === null || typeof options !== 'object') throw invalidArgument('lock options must be an object');
      const mode: LockMode = options.mode ?? 'exclusive';
      checkWaitOptions(options);
      this.checkRecoverable(path);
      if (options.robust !== undefined && typeof options.robust !== 'boolean') throw invalidArgument('lock option robust must be a boolean');
      const req = this.table.lock(session, path, mode, options.wait !== false, options.robust !== false);
      this.deliver(this.table.drain());
      if (req.state === 'held') {
        if (req.ownerDied && this.observers.any) this.observers.emit('lockGranted', { path: req.path, session, waitMs: 0, ownerDied: true, admission: false, waited: false });
        return new LockImpl(this, req);
      }
      return this.waitFor<LockImpl>(req, options, (r) => new LockImpl(this, r), false).then((l) => {
        // Marked unrecoverable while this request waited: give the grant back.
        const b = this.brokenOver(l.path);
        if (b === undefined) return l;
        this.releaseLock(l);
        throw this.notRecoverable(l.path, b);
      });
    } catch (e) {
      if (this.observers.any && LatchkeyError.is(e, 'DEADLOCK')) this.observers.emit('deadlock', { path, session, message: e.message });
      throw e;
    }
  }

  /** @internal */
  upgradeLock(l: LockImpl, options: UpgradeOptions): Promise<void> {
    try {
      checkWaitOptions(options);
      const req = l.req;
      if (req.state !== 'held') throw lost(req, 'it was released');
      if (req.kind === 'exclusive') return Promise.resolve();
      const up = this.table.upgrade(req, options.wait !== false);
      this.deliver(this.table.drain());
      if (up.state !== 'waiting') return Promise.resolve();
      return this.waitFor<void>(up, options, () => undefined, false);
    } catch (e) {
      if (this.observers.any && LatchkeyError.is(e, 'DEADLOCK')) this.observers.emit('deadlock', { path: l.path, session: l.req.session, message: e.message });
      return Promise.reject(e);
    }
  }

  /** @internal */
  downgradeLock(l: LockImpl): void {
    if (l.req.state !== 'held') throw lost(l.req, 'it was released');
    this.cancelUpgrade(l.req, 'the lock was downgraded');
    this.deliver(this.table.downgrade(l.req));
  }

  /** @internal */
  releaseLock(l: LockImpl): void {
    const req = l.req;
    if (req.state !== 'held') return;
    this.cancelUpgrade(req, 'the lock was released');
    req.owner = undefined;
    this.deliver(this.table.release(req));
  }

  private cancelUpgrade(req: LockRequest, why: string): void {
    const up = req.link;
    if (up === undefined) return;
    const w = up.owner as Waiter;
    up.owner = undefined;
    this.deliver(this.table.cancel(up));
    w.cleanup();
    w.reject(new LatchkeyError('ABORTED', `upgrade of ${req.path} abandoned: ${why}`, { path: req.path }));
  }

  locksOf(session: string): LockInfo[] {
    return this.table.held(session).map(info);
  }

  /** The console's lock view: a bounded page in path order (LockTable.page). */
  page(o: LockPageOptions): LockPageInfo {
    const pg = this.table.page(o);
    return {
      held: pg.held,
      waiting: pg.waiting,
      next: pg.next,
      locks: pg.locks.map((l) => ({ ...info(l.req), ...(l.req.ownerDied ? { ownerDied: true } : {}), queued: l.queued, queue: l.queue.map((w) => ({ path: w.path, mode: w.req.kind, session: w.req.session, since: w.req.since })) })),
    };
  }

  /** Held and waiting counts per session id, at `visible` paths (the console's sessions view, without the table). */
  sessionCounts(visible?: (path: string) => boolean): Map<string, { held: number; waiting: number }> {
    return this.table.sessionCounts(visible);
  }

  info(): LockTableInfo {
    const waiting: LockWaiterInfo[] = [];
    for (const r of this.table.allWaiting()) {
      const mode = r.kind;
      for (const path of r.paths) waiting.push({ path, mode, session: r.session, since: r.since });
    }
    const blocked = this.table.waitersPerLock();
    return { held: this.table.allHeld().map((r) => ({ ...info(r), waiters: blocked.get(r) ?? 0, ...(r.ownerDied ? { ownerDied: true } : {}) })), waiting };
  }

  // ----------------------------------------------------- admitting writes

  /**
   * Admits a write by `session` touching `targets` (mandatory locks). Returns
   * at once when no other session's lock covers them, or a promise that
   * resolves in FIFO order with lock requests.
   */

  admit(session: string, targets: readonly WriteTarget[], opts: WriteOptions): Admission | Promise<Admission> {
    checkWaitOptions(opts);
    const req = this.table.admitWrite(session, targets, opts.wait !== false);
    if (req === undefined) return NO_ADMISSION;
    return this.waitFor<Admission>(req, opts, (r) => this.heldAdmission(r), true);
  }

  /**
   * Turns an admission `admit` just gave at once (NO_ADMISSION, in this same
   * tick) into a held one, for a write that cannot apply in this tick (it
   * waits for the value store's write bound, engine.ts `gate`): until its
   * `done()`, another session's lock overlapping the write waits for it.
   */
  holdWrite(session: string, targets: readonly WriteTarget[]): Admission {
    const r = this.table.holdWrite(session, targets);
    this.deliver(this.table.drain());
    return this.heldAdmission(r);
  }

  private heldAdmission(r: LockRequest): Admission {
    return {
      done: () => {
        if (r.state === 'held') this.deliver(this.table.release(r));
      },
    };
  }

  /** Throws LOCK_LOST unless `fence` names a lock `session` still holds. */
  checkFence(session: string, fence: Fence): void {
    const token = typeof fence === 'number' ? fence : (fence as { token?: unknown } | null)?.token;
    if (typeof token !== 'number' || !Number.isSafeInteger(token)) throw invalidArgument('fence must be a lock or its token');
    const r = this.table.byToken(token);
    if (r === undefined || r.state !== 'held') throw new LatchkeyError('LOCK_LOST', `fence ${token}: that lock is no longer held`, { info: { token } });
    if (r.session !== session) throw new LatchkeyError('LOCK_LOST', `fence ${token}: that lock is held by another session`, { path: r.path, info: { token } });
  }

  /** The session ended (died: without a clean close); release its locks. */
  sessionEnded(session: string, died: boolean): void {
    const end = this.table.endSession(session);
    for (const r of end.cancelled) {
      const w = r.owner as Waiter | undefined;
      r.owner = undefined;
      if (w === undefined) continue;
      w.cleanup();
      w.reject(new LatchkeyError('SESSION_EXPIRED', `session ${died ? 'died' : 'ended'} while waiting for ${r.path}`, { path: r.path }));
    }
    for (const r of end.released) {
      const l = r.owner as LockImpl | undefined;
      r.owner = undefined;
      l?.lose(`its session ${died ? 'died' : 'ended'}`);
    }
    this.deliver(end.granted);
  }

  // -------------------------------------------------------------- waiting

  /** Settles the promise of every request the table granted, once each. */
  private deliver(granted: readonly LockRequest[]): void {
    for (const g of granted) {
      const w = g.owner as Waiter | undefined;
      g.owner = undefined;
      if (w === undefined) continue;
      w.cleanup();
      w.resolve(g);
    }
  }

  /** Waits for a queued request; its timer or signal cancels it (and hands on what that unblocks). */
  private waitFor<T>(req: LockRequest, o: { timeoutMs?: number; signal?: AbortSignal }, make: (granted: LockRequest) => T, admission: boolean): Promise<T> {
    const t0 = performance.now();
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const signal = o.signal;
      const cancel = (e: LatchkeyError): void => {
        if (req.owner !== w) return;
        req.owner = undefined;
        w.cleanup();
        this.deliver(this.table.cancel(req));
        reject(e);
      };
      const onAbort = (): void => cancel(aborted(signal!));
      const w: Waiter = {
        resolve: (g) => {
          if (this.observers.any) this.observers.emit('lockGranted', { path: g.path, session: g.session, waitMs: performance.now() - t0, ownerDied: g.ownerDied, admission, waited: true });
          resolve(make(g));
        },
        reject,
        cleanup: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        },
      };
      req.owner = w;
      if (o.timeoutMs !== undefined) {
        timer = setTimeout(() => cancel(new LatchkeyError('TIMEOUT', `timed out after ${o.timeoutMs} ms waiting for ${req.path}`, { path: req.path })), o.timeoutMs);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

function info(r: LockRequest): LockInfo {
  return { path: r.path, mode: r.mode, session: r.session, token: r.token, since: r.since };
}

function lost(req: LockRequest, why: string): LatchkeyError {
  return new LatchkeyError('LOCK_LOST', `lock on ${req.path} is no longer held: ${why}`, { path: req.path });
}

/** One page of the lock table (LockService.page). */
export interface LockPageInfo {
  readonly held: number;
  readonly waiting: number;
  /** Cursor for the next page (pass it as `after`), when there are more. */
  readonly next: string | undefined;
  readonly locks: Array<LockInfo & { readonly queue: LockWaiterInfo[]; readonly queued: number }>;
}

/** A held lock, as the user sees it. */
export class LockImpl implements Lock {
  private controller: AbortController | undefined = undefined;
  /** Why the lock was lost; the error is made only if someone looks at the signal. */
  private lostWhy: string | undefined = undefined;
  private lostHook: (() => void) | undefined = undefined;

  constructor(private readonly service: LockService, readonly req: LockRequest) {
    req.owner = this;
    // Lost between its grant and this handle (its session ended meanwhile).
    if (req.state !== 'held') this.lostWhy = 'its session ended';
  }

  get path(): string { return this.req.path; }
  get mode(): LockMode { return this.req.mode; }
  get token(): number { return this.req.token; }
  get ownerDied(): boolean { return this.req.ownerDied; }

  async markConsistent(): Promise<void> {
    this.service.markConsistent(this);
  }

  async markUnrecoverable(): Promise<void> {
    await this.service.markUnrecoverable(this);
  }
  get held(): boolean { return this.req.state === 'held'; }

  /** Created on first use: most locks never look at it. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.lostWhy !== undefined) this.controller.abort(lost(this.req, this.lostWhy));
    }
    return this.controller.signal;
  }

  /**
   * Calls `f` once if the lock is lost (when its signal would abort; at
   * once if it is lost already). What the server watches a lock with: an
   * AbortController and listener per grant were a sixth of the server's CPU
   * for an uncontended lock + release.
   */
  whenLost(f: () => void): void {
    if (this.lostWhy !== undefined) f();
    else this.lostHook = f;
  }

  /** @internal The lock was taken away (its session ended). */
  lose(why: string): void {
    if (this.lostWhy !== undefined) return;
    this.lostWhy = why;
    this.controller?.abort(lost(this.req, why));
    const f = this.lostHook;
    this.lostHook = undefined;
    f?.();
  }

  upgrade(options: UpgradeOptions = {}): Promise<void> {
    return this.service.upgradeLock(this, options);
  }

  async downgrade(): Promise<void> {
    this.service.downgradeLock(this);
  }

  async release(): Promise<void> {
    this.service.releaseLock(this);
  }

  /** `release` without the promise (it is synchronous here); what the server answers a release with. */
  releaseNow(): void {
    this.lostHook = undefined;
    this.service.releaseLock(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.service.releaseLock(this);
  }
}
