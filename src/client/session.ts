/** A session of a remote store: reads, writes, transactions and locks, sent on its connection. */
import type {
  CreateOptions, DeleteOptions, Entry, Listing, ListOptions, Lock, LockInfo, LockOptions, MultiOp, MultiResult, Session,
  SetOptions, Transaction, TransactionOptions, Value, WriteOptions,
} from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { checkAtomicArgs } from '../core/ops.js';
import type { Args, RequestOp, Result, WireMultiOp } from '../protocol/messages.js';
import type { Core } from './core.js';
import { makeEntry, makeListing, toBytes } from './entry.js';
import { LockState, RemoteLock } from './lock.js';
import { RemoteTransaction } from './transaction.js';
import { writeArgs } from './util.js';
import { REMOTE_RETRY, runTransaction, throwIfAborted } from '../util/retry.js';

export class RemoteSession implements Session {
  protected ended_ = false;
  protected idValue: string;

  constructor(
    protected readonly core: Core,
    /** The session's handle on its connection (0: the connection's own session). */
    readonly handle: number,
    readonly name: string,
    /** The link generation the session lives on; undefined for the store's own session, which follows reconnections. */
    protected readonly generation: number | undefined,
  ) {
    this.idValue = handle === 0 ? core.link?.welcome.session ?? '' : `pending-${handle}`;
  }

  get id(): string {
    return this.handle === 0 ? this.core.link?.welcome.session ?? this.idValue : this.idValue;
  }

  get closed(): boolean {
    return this.ended_ || this.core.closed;
  }

  /** The session ended on the server (its connection was lost, or it was closed). */
  ended(): void {
    this.ended_ = true;
  }

  protected check(): void {
    if (this.core.closed) throw new LatchkeyError('CLOSED', 'the store is closed');
    if (this.ended_) throw new LatchkeyError('SESSION_EXPIRED', `session ${this.name} has ended`);
  }

  protected req<K extends RequestOp>(op: K, args: Args<K>, signal?: AbortSignal): Promise<Result<K>> {
    this.check();
    if (this.generation === undefined) return this.core.request(op, args, this.handle, signal);
    return this.core.requestOn(this.generation, op, args, this.handle, signal).catch((e: unknown) => {
      if (LatchkeyError.is(e, 'CONNECTION_LOST') && this.core.generation !== this.generation) {
        this.ended_ = true;
        throw new LatchkeyError('SESSION_EXPIRED', `session ${this.name} ended with its connection`, { cause: e });
      }
      throw e;
    });
  }

  /** The link generation for things (transactions, locks) made now in this session. */
  protected gen(): number {
    return this.generation ?? this.core.generation;
  }

  async get(path: string): Promise<Entry | undefined> {
    return makeEntry(await this.req('get', { path }));
  }

  async exists(path: string): Promise<boolean> {
    return this.req('exists', { path });
  }

  async list(path: string, options: ListOptions = {}): Promise<Listing> {
    const a: Args<'list'> = { path };
    if (options.after !== undefined) a.after = options.after;
    if (options.limit !== undefined) a.limit = options.limit;
    const r = await this.req('list', a);
    return makeListing(r.names, r.revision, r.more);
  }

  async set(path: string, value: Value, options: SetOptions = {}): Promise<number> {
    const a: Args<'set'> = { path, value: toBytes(value, this.core.maxValue, path), ...writeArgs(options) };
    if (options.ifVersion !== undefined) a.ifVersion = options.ifVersion;
    if (options.ifModRev !== undefined) a.ifModRev = options.ifModRev;
    if (options.ifAbsent !== undefined) a.ifAbsent = options.ifAbsent;
    return (await this.req('set', a, options.signal)) ?? 0;
  }

  async create(path: string, value?: Value, options: CreateOptions = {}): Promise<string> {
    const a: Args<'create'> = { path, value: toBytes(value, this.core.maxValue, path), ...writeArgs(options) };
    if (options.ephemeral !== undefined) a.ephemeral = options.ephemeral;
    if (options.sequential !== undefined) a.sequential = options.sequential;
    return this.req('create', a, options.signal);
  }

  async delete(path: string, options: DeleteOptions = {}): Promise<boolean> {
    const a: Args<'delete'> = { path, ...writeArgs(options) };
    if (options.recursive !== undefined) a.recursive = options.recursive;
    if (options.ifVersion !== undefined) a.ifVersion = options.ifVersion;
    return this.req('delete', a, options.signal);
  }

  async add(path: string, delta: number, options: WriteOptions = {}): Promise<number> {
    checkAtomicArgs({ op: 'add', path, delta });
    return (await this.req('add', { path, delta, ...writeArgs(options) }, options.signal))!;
  }

  async min(path: string, operand: number, options: WriteOptions = {}): Promise<number> {
    checkAtomicArgs({ op: 'min', path, operand });
    return (await this.req('min', { path, operand, ...writeArgs(options) }, options.signal))!;
  }

  async max(path: string, operand: number, options: WriteOptions = {}): Promise<number> {
    checkAtomicArgs({ op: 'max', path, operand });
    return (await this.req('max', { path, operand, ...writeArgs(options) }, options.signal))!;
  }

  async append(path: string, value: Value, options: WriteOptions = {}): Promise<number> {
    return (await this.req('append', { path, value: toBytes(value, this.core.maxValue, path), ...writeArgs(options) }, options.signal)) ?? 0;
  }

  async setIfAbsent(path: string, value: Value, options: WriteOptions = {}): Promise<boolean> {
    return (await this.req('setIfAbsent', { path, value: toBytes(value, this.core.maxValue, path), ...writeArgs(options) }, options.signal)) === true;
  }

  async multi(ops: readonly MultiOp[], options: WriteOptions = {}): Promise<MultiResult> {
    if (!Array.isArray(ops)) throw invalidArgument('multi: ops must be an array');
    const wire = ops.map((o, i) => toWireMultiOp(o, i, this.core.maxValue));
    const r = await this.req('multi', { ops: wire, ...writeArgs(options) }, options.signal);
    return { revision: r.revision, results: r.results.map((x) => (x === null ? undefined : x)) };
  }

  begin(): Transaction {
    this.check();
    return new RemoteTransaction(this.core, this.handle, this.gen());
  }

  transaction<T>(fn: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return runTransaction(() => this.begin(), fn, options, REMOTE_RETRY, this.core.retryCounters);
  }

  async lock(path: string, options: LockOptions = {}): Promise<Lock> {
    this.check();
    throwIfAborted(options.signal);
    // A lock belongs to the connection its request goes out on. The store's own session follows
    // reconnections: wait for a connection first, so the generation recorded is the one the
    // request is sent on (recorded before, a lock granted on the next connection could never be
    // released: its release would go to the dead one, and the live session would hold it forever).
    if (this.generation === undefined) await this.core.current();
    const handle = this.core.handle();
    const generation = this.gen();
    const state = new LockState(handle, this, path, options.mode ?? 'exclusive');
    this.core.locks.set(handle, state);
    const a: Args<'lock'> = { lock: handle, path };
    if (options.mode !== undefined) a.mode = options.mode;
    if (options.wait !== undefined) a.wait = options.wait;
    if (options.timeoutMs !== undefined) a.timeoutMs = options.timeoutMs;
    let r: Result<'lock'>;
    try {
      r = this.generation === undefined
        ? await this.core.requestOn(generation, 'lock', a, this.handle, options.signal)
        : await this.req('lock', a, options.signal);
    } catch (e) {
      this.core.locks.delete(handle);
      throw e;
    }
    const lock = new RemoteLock(this.core, this, state, generation, path, r.mode, r.token, r.ownerDied);
    if (options.signal?.aborted) {
      // The grant won the race with the cancel: give the lock back, report the abort.
      await lock.release();
      throw new LatchkeyError('ABORTED', 'lock request aborted', { path, cause: options.signal.reason });
    }
    return lock;
  }

  /** Locks this session holds (known locally: the client saw every grant and loss). */
  locks(): LockInfo[] {
    const out: LockInfo[] = [];
    for (const st of this.core.locks.values()) {
      const l = st.lock;
      if (l !== undefined && l.held && l.owner === this) out.push({ path: l.path, mode: l.mode, session: this.id, token: l.token, since: l.since });
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.ended_ || this.core.closed) return;
    this.ended_ = true;
    for (const st of [...this.core.locks.values()]) if (st.lock?.owner === this) st.lost(new LatchkeyError('LOCK_LOST', 'the session closed'));
    if (this.generation !== undefined && this.core.generation === this.generation && this.core.link?.alive) {
      this.core.sessions.delete(this.handle);
      await this.core.link.request('endSession', { session: this.handle }).catch(() => {});
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function toWireMultiOp(o: MultiOp, i: number, maxValue: number): WireMultiOp {
  if (o === null || typeof o !== 'object') throw invalidArgument(`multi op ${i} must be an object`);
  const copy = <T extends object>(base: T, extra: Record<string, unknown>): T => {
    for (const [k, v] of Object.entries(extra)) if (v !== undefined) (base as Record<string, unknown>)[k] = v;
    return base;
  };
  switch (o.op) {
    case 'set': return copy({ op: 'set', path: o.path, value: toBytes(o.value, maxValue, o.path) }, { ifVersion: o.ifVersion, ifModRev: o.ifModRev, ifAbsent: o.ifAbsent });
    case 'create': return copy({ op: 'create', path: o.path, value: toBytes(o.value, maxValue, o.path) }, { ephemeral: o.ephemeral, sequential: o.sequential });
    case 'delete': return copy({ op: 'delete', path: o.path }, { recursive: o.recursive, ifVersion: o.ifVersion });
    case 'check': return copy({ op: 'check', path: o.path }, { version: o.version, modRev: o.modRev, exists: o.exists });
    default: throw invalidArgument(`multi op ${i}: unknown op ${JSON.stringify((o as { op: unknown }).op)}`);
  }
}

