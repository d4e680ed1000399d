/** A session of a remote store: reads, writes, transactions and locks, sent on its connection. */
import type { Entry, Listing, ListOptions, Lock, LockInfo, LockOptions, MultiResult, Transaction, WriteOptions } from '../api.js';
import { LatchkeyError, storeClosed } from '../core/errors.js';
import { type CheckedMultiOp, type CreateFlags, type DeleteFlags, type SetConditions, definedFields } from '../edge/args.js';
import { entryOf, makeListing } from '../edge/entry.js';
import { SessionEdge } from '../edge/session.js';
import type { Args, RequestOp, Result } from '../protocol/messages.js';
import type { ClientConnection, ResumableMember, ResumeItem } from './connection.js';
import type { Push } from './link.js';
import { LockState, RemoteLock } from './lock.js';
import { RemoteTransaction } from './transaction.js';
import { writeArgs } from './util.js';
import { REMOTE_RETRY, type RetryCounters, throwIfAborted } from '../util/retry.js';
import type { AtomicOp } from '../core/ops.js';

const toEntry = (w: Result<'get'>): Entry | undefined => (w === null ? undefined : entryOf(w));
const revOrZero = (r: Result<'set'>): number => r ?? 0;

/**
 * A session of a remote store. Sessions from `store.session()` live on one
 * link at a time (attached under their handle: the server's sessionEnd, or
 * the link's loss, ends them), except that a resumable one (its server gave
 * it a secret) is carried to the next link when the connection resumes its
 * sessions there; the store's own session (handle 0) follows reconnections.
 */
export class RemoteSession extends SessionEdge implements ResumableMember {
  protected ended_ = false;
  protected idValue: string;
  /** The credential that resumes this session after a lost link (from the server's answer to `session`). */
  protected secret: string | undefined;

  constructor(
    protected readonly conn: ClientConnection,
    /** The session's handle on its connection (0: the connection's own session). */
    readonly handle: number,
    readonly name: string,
    /** The link generation the session lives on; undefined for the store's own session, which follows reconnections. */
    protected generation: number | undefined,
  ) {
    super();
    this.idValue = handle === 0 ? conn.link?.welcome.session ?? '' : `pending-${handle}`;
  }

  get id(): string {
    return this.handle === 0 ? this.conn.link?.welcome.session ?? this.idValue : this.idValue;
  }

  get closed(): boolean {
    return this.ended_ || this.conn.closed;
  }

  /** The session ended on the server (it was closed, or its connection was lost). */
  ended(): void {
    this.ended_ = true;
  }

  pushed(m: Push): void {
    if (m.t === 'sessionEnd') this.ended();
  }

  linkLost(): void {
    this.ended();
  }

  /** Its locks and waits go with it when the connection resumes it. */
  get resumable(): boolean {
    return this.handle === 0 || (this.secret !== undefined && !this.ended_);
  }

  resumeClaim(): ResumeItem | undefined {
    if (this.handle === 0 || this.secret === undefined || this.ended_ || this.conn.closed || this.idValue.startsWith('pending-')) return undefined;
    return { kind: 'session', session: this.idValue, secret: this.secret };
  }

  resumed(generation: number): void {
    this.generation = generation;
  }

  /** While the connection carries this session to the next link: waits for that (true when it lives on there). */
  private async carriedOver(): Promise<boolean> {
    if (this.generation === undefined || !this.conn.carried(this)) return false;
    // resumed() moves it to the new link before whoever waits for a link is told of it.
    await this.conn.current();
    return !this.ended_ && this.generation === this.conn.generation;
  }

  /** This session's locks, requested or held, on the current link. */
  private *lockStates(): Generator<LockState> {
    for (const m of this.conn.attached()) if (m instanceof LockState && m.owner === this) yield m;
  }

  protected checkOpen(): void {
    if (this.conn.closed) throw storeClosed();
    if (this.ended_) throw new LatchkeyError('SESSION_EXPIRED', `session ${this.name} has ended`);
  }

  protected req<K extends RequestOp>(op: K, args: Args<K>, signal?: AbortSignal): Promise<Result<K>> {
    this.checkOpen();
    if (this.generation === undefined) return this.conn.request(op, args, this.handle, signal);
    if (this.conn.carried(this)) {
      // Its link is lost and a resume carries it: sent on the next link once it lives there.
      return this.carriedOver().then(() => this.req(op, args, signal));
    }
    return this.conn.requestOn(this.generation, op, args, this.handle, signal).catch((e: unknown) => {
      if (LatchkeyError.is(e, 'CONNECTION_LOST') && this.conn.generation !== this.generation && !this.conn.carried(this)) {
        this.ended_ = true;
        throw new LatchkeyError('SESSION_EXPIRED', `session ${this.name} ended with its connection`, { cause: e });
      }
      throw e;
    });
  }

  /** The link generation for things (transactions, locks) made now in this session. */
  protected gen(): number {
    return this.generation ?? this.conn.generation;
  }

  protected get maxValueBytes(): number {
    return this.conn.maxValue;
  }

  // Not async where a `.then` does: each async layer is a promise and ticks per call (docs/architecture.md).
  protected _get(path: string): Promise<Entry | undefined> {
    return this.req('get', { path }).then(toEntry);
  }

  protected _exists(path: string): Promise<boolean> {
    return this.req('exists', { path });
  }

  protected async _list(path: string, options: ListOptions): Promise<Listing> {
    const r = await this.req('list', { path, ...options });
    return makeListing(r.names, r.revision, r.more);
  }

  protected _set(path: string, value: Uint8Array, cond: SetConditions, options: WriteOptions): Promise<number> {
    return this.req('set', { path, value, ...cond, ...writeArgs(options) }, options.signal).then(revOrZero);
  }

  protected _create(path: string, value: Uint8Array, flags: CreateFlags, options: WriteOptions): Promise<string> {
    return this.req('create', { path, value, ...flags, ...writeArgs(options) }, options.signal);
  }

  protected _delete(path: string, flags: DeleteFlags, options: WriteOptions): Promise<boolean> {
    return this.req('delete', { path, ...flags, ...writeArgs(options) }, options.signal);
  }

  protected async _multi(ops: CheckedMultiOp[], options: WriteOptions): Promise<MultiResult> {
    const r = await this.req('multi', { ops, ...writeArgs(options) }, options.signal);
    return { revision: r.revision, results: r.results.map((x) => (x === null ? undefined : x)) };
  }

  protected async _atomic(op: AtomicOp, options: WriteOptions): Promise<number | boolean> {
    const w = writeArgs(options);
    switch (op.op) {
      case 'add': return (await this.req('add', { path: op.path, delta: op.delta, ...w }, options.signal))!;
      case 'min':
      case 'max': return (await this.req(op.op, { path: op.path, operand: op.operand, ...w }, options.signal))!;
      case 'append': return (await this.req('append', { path: op.path, value: op.value, ...w }, options.signal)) ?? 0;
      case 'setIfAbsent': return (await this.req('setIfAbsent', { path: op.path, value: op.value, ...w }, options.signal)) === true;
    }
  }

  protected readonly retryPolicy = REMOTE_RETRY;

  protected get retryCounters(): RetryCounters {
    return this.conn.retryCounters;
  }

  protected _begin(): Transaction {
    return new RemoteTransaction(this.conn, this.handle, this.gen());
  }

  protected async _lock(path: string, options: LockOptions): Promise<Lock> {
    throwIfAborted(options.signal);
    // A lock belongs to the connection its request goes out on. The store's own session follows
    // reconnections: wait for a connection first, so the generation recorded is the one the
    // request is sent on (recorded before, a lock granted on the next connection could never be
    // released: its release would go to the dead one, and the live session would hold it forever).
    if (this.generation === undefined && this.conn.link?.alive !== true) await this.conn.current();
    else if (this.generation !== undefined && this.conn.carried(this)) await this.carriedOver(); // carried to the next link: its locks live there
    this.checkOpen();
    const handle = this.conn.handle();
    let generation = this.gen();
    const state = new LockState(handle, this, path, options.mode ?? 'exclusive');
    this.conn.attach(handle, state);
    const a: Args<'lock'> = { lock: handle, path, ...definedFields(options, ['mode', 'wait', 'timeoutMs', 'robust']) };
    state.request = { ...definedFields(options, ['wait', 'timeoutMs']), sent: performance.now() };
    let r: Result<'lock'>;
    try {
      r = this.generation === undefined
        ? await this.conn.requestOn(generation, 'lock', a, this.handle, options.signal)
        : await this.req('lock', a, options.signal);
    } catch (e) {
      [r, generation] = await this.stillWaiting(state, e, options.signal).catch((err: unknown) => {
        state.request = undefined;
        this.conn.detach(handle, state);
        throw err;
      });
    }
    state.request = undefined;
    const lock = new RemoteLock(this.conn, this, state, generation, path, r.mode, r.token, r.ownerDied);
    if (options.signal?.aborted) {
      // The grant won the race with the cancel: give the lock back, report the abort.
      await lock.release();
      throw new LatchkeyError('ABORTED', 'lock request aborted', { path, cause: options.signal.reason });
    }
    return lock;
  }

  /**
   * A lock request whose link was lost while its session is carried to the
   * next link: it goes on there (the server carried the wait over, `awaitLock`
   * answers as `lock` would), again after each loss, until it is answered or
   * the session was not resumed. While the link is down its signal and its
   * timeout still end it (LockState.reattached). Any other failure is the request's.
   */
  private async stillWaiting(state: LockState, e: unknown, signal: AbortSignal | undefined): Promise<[Result<'lock'>, number]> {
    for (;;) {
      if (!LatchkeyError.is(e, 'CONNECTION_LOST') || !this.conn.carried(state)) throw e;
      const generation = await state.reattached(signal);
      try {
        return [await this.conn.requestOn(generation, 'awaitLock', { lock: state.handle }, this.handle, signal), generation];
      } catch (err) {
        e = err;
      }
    }
  }

  /** Locks this session holds (known locally: the client saw every grant and loss; while a resume carries them, those it keeps). */
  locks(): LockInfo[] {
    const out: LockInfo[] = [];
    for (const st of this.lockStates()) {
      const l = st.lock;
      if (l !== undefined && l.held) out.push({ path: l.path, mode: l.mode, session: this.id, token: l.token, since: l.since });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.ended_ || this.conn.closed) return;
    this.ended_ = true;
    for (const st of [...this.lockStates()]) if (st.lock !== undefined) st.lost(new LatchkeyError('LOCK_LOST', 'the session closed'));
    if (this.generation !== undefined && this.conn.generation === this.generation && this.conn.link?.alive) {
      this.conn.detach(this.handle, this);
      await this.conn.link.request('endSession', { session: this.handle }).catch(() => {});
    }
  }
}
