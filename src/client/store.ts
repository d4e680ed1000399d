/**
 * The remote store: `connect(url)` gives an object with exactly the embedded
 * Store API (api.ts), backed by a server.
 *
 * Connection loss. The link (link.ts) fails every request in flight with
 * CONNECTION_LOST — never resent, the server may have run it. Everything the
 * lost connection's sessions owned is gone on the server, and is made gone
 * here at once: each held lock's signal aborts with LOCK_LOST, open
 * transactions turn aborted, sessions from `store.session()` end (their
 * calls fail SESSION_EXPIRED). The store itself reconnects with jittered
 * exponential backoff and gets a fresh session; requests made meanwhile wait
 * for the new connection (up to connectTimeoutMs). Watches re-subscribe from
 * the revision after the last one they delivered, so a watcher sees no gap
 * and no duplicate across the loss (or a clear error if that revision has
 * left the server's history window).
 *
 * Sync members the API requires (`revision`, `stats()`, `lockTable()`,
 * `session.id` right after `session()`, `tx.snapshotRevision` right after
 * `begin()`) answer from what the client last heard; `fetchStats()` and
 * `fetchLockTable()` ask the server.
 */
import type {
  CommitResult, CreateOptions, DeleteOptions, Entry, Listing, ListOptions, Lock, LockInfo, LockMode, LockOptions, LockTableInfo,
  MultiOp, MultiResult, Session, SessionOptions, SetOptions, Store, StoreStats, Transaction, TransactionOptions, Value,
  WatchEvent, WatchOptions, WriteOptions,
} from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { type Args, type RequestOp, type Result, type WireMultiOp, fromWireError } from '../protocol/messages.js';
import { makeEntry, makeListing, toBytes } from './entry.js';
import { type Address, Link, type LinkOptions, type Push, parseAddress } from './link.js';

export interface ConnectOptions extends LinkOptions {
  /** Reconnect after a loss (default true). */
  reconnect?: boolean;
  /** Backoff between reconnection attempts: from minBackoffMs doubling up to maxBackoffMs (defaults 50 ms, 2 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Events a watch buffers for a consumer that does not read; past it the watch ends with a resumable QUOTA (default 10,000). */
  maxWatchQueue?: number;
}

type WriteArgs = { fence?: number; wait?: boolean };

function fenceOf(f: WriteOptions['fence']): number | undefined {
  if (f === undefined) return undefined;
  return typeof f === 'number' ? f : f.token;
}

function writeArgs(o: WriteOptions): WriteArgs {
  const a: WriteArgs = {};
  const f = fenceOf(o.fence);
  if (f !== undefined) a.fence = f;
  if (o.wait !== undefined) a.wait = o.wait;
  return a;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new LatchkeyError('ABORTED', 'aborted', { cause: signal.reason });
}

/** Shared state of one remote store: the current link and everything tied to it. */
class Core {
  link: Link | undefined;
  /** Counts links: things owned by a session die with the link they were made on. */
  generation = 0;
  private connecting: Promise<Link> | undefined;
  closed = false;
  /** A reason never to reconnect (AUTH, PROTOCOL version): every call fails with it. */
  fatal: LatchkeyError | undefined;
  private nextHandle = 1;
  private revisionSeen = 0;
  readonly sessions = new Map<number, RemoteSession>();
  readonly locks = new Map<number, LockState>();
  readonly watches = new Map<number, RemoteWatch>();
  readonly txs = new Set<RemoteTransaction>();
  statsCache: StoreStats = { revision: 0, nodes: 0, commits: 0, validations: 0, replays: 0, conflicts: 0, openTransactions: 0, sessions: 0 };
  lockTableCache: LockTableInfo = { held: [], waiting: [] };
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(readonly addr: Address, readonly opts: ConnectOptions) {}

  handle(): number {
    return this.nextHandle++;
  }

  get revision(): number {
    return Math.max(this.revisionSeen, this.link?.revision ?? 0);
  }

  get maxValue(): number {
    return this.link?.welcome.limits.maxValue ?? 1024 * 1024;
  }

  async start(): Promise<void> {
    await this.dial();
  }

  private dial(): Promise<Link> {
    this.connecting ??= Link.open(this.addr, this.opts, {
      push: (m) => this.onPush(m),
      lost: (e) => this.onLost(e),
    }).then((link) => {
      this.connecting = undefined;
      if (this.closed) {
        link.close();
        throw new LatchkeyError('CLOSED', 'the store is closed');
      }
      this.link = link;
      this.generation++;
      this.attempt = 0;
      this.revisionSeen = Math.max(this.revisionSeen, link.revision);
      this.resubscribeWatches();
      return link;
    }, (e: unknown) => {
      this.connecting = undefined;
      throw e;
    });
    return this.connecting;
  }

  /** The live link, waiting for a reconnection in progress. */
  async current(): Promise<Link> {
    if (this.closed) throw new LatchkeyError('CLOSED', 'the store is closed');
    if (this.fatal !== undefined) throw this.fatal;
    if (this.link?.alive) return this.link;
    if (this.opts.reconnect === false) throw new LatchkeyError('CONNECTION_LOST', 'the connection was lost (reconnect is off)');
    return this.connecting ?? this.waitForLink();
  }

  private waitForLink(): Promise<Link> {
    return new Promise((resolve, reject) => {
      const deadline = Date.now() + (this.opts.connectTimeoutMs ?? 10_000);
      const poll = (): void => {
        if (this.closed) return reject(new LatchkeyError('CLOSED', 'the store is closed'));
        if (this.fatal !== undefined) return reject(this.fatal);
        if (this.link?.alive) return resolve(this.link);
        if (this.connecting !== undefined) {
          this.connecting.then(resolve, () => setTimeout(poll, 10));
          return;
        }
        if (Date.now() > deadline) return reject(new LatchkeyError('CONNECTION_LOST', 'no connection to the server'));
        setTimeout(poll, 10);
      };
      poll();
    });
  }

  /** Sends a request on the live link (waiting for one if reconnecting). */
  request<K extends RequestOp>(op: K, args: Args<K>, session = 0, signal?: AbortSignal): Promise<Result<K>> {
    const link = this.link;
    // Not an async function: on the hot path (connected) the request is encoded now, with one promise.
    if (link !== undefined && link.alive && !this.closed) return link.request(op, args, session, signal);
    return this.current().then((l) => l.request(op, args, session, signal));
  }

  /** Sends on the link of `generation` only: things owned by a dead session must not reach its successor. */
  requestOn<K extends RequestOp>(generation: number, op: K, args: Args<K>, session: number, signal?: AbortSignal): Promise<Result<K>> {
    if (this.link === undefined || this.generation !== generation || !this.link.alive) {
      return Promise.reject(new LatchkeyError('CONNECTION_LOST', 'the connection this belongs to was lost'));
    }
    return this.link.request(op, args, session, signal);
  }

  private onPush(m: Push): void {
    switch (m.t) {
      case 'event':
        this.watches.get(m.w)?.events(m.ev);
        return;
      case 'watchEnd':
        this.watches.get(m.w)?.ended(fromWireError(m.e));
        return;
      case 'lockLost':
        this.locks.get(m.l)?.lost(fromWireError(m.e));
        return;
      case 'sessionEnd':
        this.sessions.get(m.s)?.ended();
        return;
    }
  }

  private onLost(e: LatchkeyError): void {
    if (this.link !== undefined) this.revisionSeen = Math.max(this.revisionSeen, this.link.revision);
    this.link = undefined;
    const lost = new LatchkeyError('LOCK_LOST', `lock lost with the connection: ${e.message}`);
    for (const l of [...this.locks.values()]) l.lost(lost);
    this.locks.clear();
    for (const t of [...this.txs]) t.connectionLost();
    this.txs.clear();
    for (const s of [...this.sessions.values()]) s.ended();
    this.sessions.clear();
    for (const w of this.watches.values()) w.detach();
    this.watches.clear();
    if (e.code === 'AUTH' || (e.code === 'PROTOCOL' && e.info?.supported !== undefined)) this.fatal = e;
    // Not reconnecting: later calls fail with why the link ended (CLOSED when the server shut down: nothing of theirs ran).
    if (this.opts.reconnect === false && this.fatal === undefined) this.fatal = e.code === 'CLOSED' ? e : new LatchkeyError('CONNECTION_LOST', `the connection was lost (reconnect is off): ${e.message}`, { cause: e });
    if (this.closed || this.fatal !== undefined || this.opts.reconnect === false) {
      for (const w of [...this.allWatches]) w.fail(this.fatal ?? e);
      return;
    }
    this.scheduleReconnect();
  }

  /** Every watch still wanted by a consumer, attached or not. */
  readonly allWatches = new Set<RemoteWatch>();

  private scheduleReconnect(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    const min = this.opts.minBackoffMs ?? 50;
    const max = this.opts.maxBackoffMs ?? 2000;
    const ms = Math.min(max, min * 2 ** this.attempt) * (0.5 + Math.random() / 2);
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closed) return;
      this.dial().catch((e: unknown) => {
        if (LatchkeyError.is(e, 'AUTH')) {
          this.fatal = e;
          for (const w of [...this.allWatches]) w.fail(e);
          return;
        }
        this.scheduleReconnect();
      });
    }, ms);
  }

  private resubscribeWatches(): void {
    for (const w of this.allWatches) w.attach();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    const closed = new LatchkeyError('CLOSED', 'the store is closed');
    for (const w of [...this.allWatches]) w.fail(closed);
    this.link?.close();
  }
}

// ------------------------------------------------------------------ sessions

class RemoteSession implements Session {
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

  async transaction<T>(fn: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const retries = options.retries ?? 10;
    if (!Number.isSafeInteger(retries) || retries < 0) throw invalidArgument('transaction: retries must be a non-negative integer');
    const signal = options.signal;
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal);
      const tx = this.begin();
      try {
        const result = await fn(tx);
        throwIfAborted(signal);
        await tx.commit(signal ? { signal } : {});
        return result;
      } catch (e) {
        await tx.abort();
        if (!LatchkeyError.is(e, 'CONFLICT') || attempt >= retries) throw e;
        await backoff(attempt, signal);
      }
    }
  }

  async lock(path: string, options: LockOptions = {}): Promise<Lock> {
    this.check();
    throwIfAborted(options.signal);
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
      r = await this.req('lock', a, options.signal);
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

/** Jittered exponential backoff between transaction retries: 0.1 ms · 2^n, capped at 50 ms. */
function backoff(attempt: number, signal: AbortSignal | undefined): Promise<void> {
  const ms = Math.random() * Math.min(50, 0.1 * 2 ** attempt);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new LatchkeyError('ABORTED', 'aborted', { cause: signal?.reason }));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// ------------------------------------------------------------------ transactions

class RemoteTransaction implements Transaction {
  state: 'open' | 'committed' | 'aborted' = 'open';
  private snapshot: number;
  private readonly handle: number;
  private readonly began: Promise<void>;
  private beginError: LatchkeyError | undefined;
  private abortReason: string | undefined;
  private committing = false;

  constructor(private readonly core: Core, private readonly session: number, private readonly generation: number) {
    this.handle = core.handle();
    this.snapshot = core.revision;
    core.txs.add(this);
    // Sent now, not awaited: the transaction's first operations follow it down the same pipe.
    this.began = core.requestOn(generation, 'begin', { tx: this.handle }, session).then(
      (r) => { this.snapshot = r.snapshotRevision; },
      (e: unknown) => {
        this.beginError = e as LatchkeyError;
        this.finish('aborted', (e as Error).message);
      },
    );
  }

  /** Known once the server answered `begin`; until then, the newest revision the client had seen. */
  get snapshotRevision(): number {
    return this.snapshot;
  }

  connectionLost(): void {
    this.finish('aborted', 'the connection was lost');
  }

  private finish(state: 'committed' | 'aborted', reason?: string): void {
    if (this.state !== 'open') return;
    this.state = state;
    this.abortReason = reason;
    this.core.txs.delete(this);
  }

  private ensureOpen(): void {
    if (this.committing) throw new LatchkeyError('INVALID_ARGUMENT', 'transaction is committing');
    if (this.state === 'committed') throw new LatchkeyError('CLOSED', 'transaction already committed');
    if (this.state === 'aborted') throw this.beginError ?? new LatchkeyError('ABORTED', `transaction aborted${this.abortReason ? `: ${this.abortReason}` : ''}`);
  }

  private async op<K extends RequestOp>(op: K, args: Args<K>): Promise<Result<K>> {
    this.ensureOpen();
    try {
      return await this.core.requestOn(this.generation, op, args, this.session);
    } catch (e) {
      await this.began;
      if (this.beginError !== undefined) throw this.beginError;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) this.finish('aborted', 'the connection was lost');
      throw e;
    }
  }

  async get(path: string): Promise<Entry | undefined> {
    return makeEntry(await this.op('get', { path, tx: this.handle }));
  }

  async exists(path: string): Promise<boolean> {
    return this.op('exists', { path, tx: this.handle });
  }

  async list(path: string, options: ListOptions = {}): Promise<Listing> {
    const a: Args<'list'> = { path, tx: this.handle };
    if (options.after !== undefined) a.after = options.after;
    if (options.limit !== undefined) a.limit = options.limit;
    const r = await this.op('list', a);
    return makeListing(r.names, r.revision, r.more);
  }

  async set(path: string, value: Value, options: { ifVersion?: number; ifModRev?: number; ifAbsent?: boolean } = {}): Promise<void> {
    const a: Args<'set'> = { path, value: toBytes(value, this.core.maxValue, path), tx: this.handle };
    if (options.ifVersion !== undefined) a.ifVersion = options.ifVersion;
    if (options.ifModRev !== undefined) a.ifModRev = options.ifModRev;
    if (options.ifAbsent !== undefined) a.ifAbsent = options.ifAbsent;
    await this.op('set', a);
  }

  async create(path: string, value?: Value, options: { ephemeral?: boolean; sequential?: boolean } = {}): Promise<string> {
    const a: Args<'create'> = { path, value: toBytes(value, this.core.maxValue, path), tx: this.handle };
    if (options.ephemeral !== undefined) a.ephemeral = options.ephemeral;
    if (options.sequential !== undefined) a.sequential = options.sequential;
    return this.op('create', a);
  }

  async delete(path: string, options: { recursive?: boolean; ifVersion?: number } = {}): Promise<boolean> {
    const a: Args<'delete'> = { path, tx: this.handle };
    if (options.recursive !== undefined) a.recursive = options.recursive;
    if (options.ifVersion !== undefined) a.ifVersion = options.ifVersion;
    return this.op('delete', a);
  }

  async check(path: string, expect: { version?: number; modRev?: number; exists?: boolean }): Promise<void> {
    if (expect === null || typeof expect !== 'object') throw invalidArgument('check: expectations must be an object');
    const a: Args<'check'> = { path, tx: this.handle };
    if (expect.version !== undefined) a.version = expect.version;
    if (expect.modRev !== undefined) a.modRev = expect.modRev;
    if (expect.exists !== undefined) a.exists = expect.exists;
    await this.op('check', a);
  }

  async commit(options: WriteOptions = {}): Promise<CommitResult> {
    this.ensureOpen();
    this.committing = true;
    try {
      const r = await this.core.requestOn(this.generation, 'commit', { tx: this.handle, ...writeArgs(options) }, this.session, options.signal);
      this.committing = false;
      this.finish('committed');
      return r;
    } catch (e) {
      this.committing = false;
      await this.began;
      const err = this.beginError ?? e;
      this.finish('aborted', LatchkeyError.is(err) ? err.code : 'error');
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.state !== 'open' || this.committing) return;
    this.finish('aborted', 'aborted by caller');
    await this.core.requestOn(this.generation, 'abort', { tx: this.handle }, this.session).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }
}

// ------------------------------------------------------------------ locks

/** A lock handle's state from request to end: lockLost may arrive before the grant's reply. */
class LockState {
  lock: RemoteLock | undefined;
  lostError: LatchkeyError | undefined;
  readonly since = Date.now();
  constructor(readonly handle: number, readonly owner: RemoteSession, readonly path: string, readonly mode: LockMode) {}

  lost(e: LatchkeyError): void {
    if (this.lostError !== undefined) return;
    this.lostError = e;
    this.lock?.markLost(e);
  }
}

class RemoteLock implements Lock {
  private readonly ctl = new AbortController();
  private released = false;
  readonly since = Date.now();

  constructor(
    private readonly core: Core,
    readonly owner: RemoteSession,
    private readonly state: LockState,
    private readonly generation: number,
    readonly path: string,
    public mode: LockMode,
    public token: number,
    readonly ownerDied: boolean,
  ) {
    state.lock = this;
    if (state.lostError !== undefined) this.markLost(state.lostError);
  }

  get signal(): AbortSignal {
    return this.ctl.signal;
  }

  get held(): boolean {
    return !this.released && !this.ctl.signal.aborted;
  }

  markLost(e: LatchkeyError): void {
    this.core.locks.delete(this.state.handle);
    if (!this.released && !this.ctl.signal.aborted) this.ctl.abort(e.code === 'LOCK_LOST' ? e : new LatchkeyError('LOCK_LOST', e.message, { path: this.path, cause: e }));
  }

  private checkHeld(): void {
    if (this.released) throw new LatchkeyError('LOCK_LOST', `lock on ${this.path} was released`, { path: this.path });
    if (this.ctl.signal.aborted) throw this.ctl.signal.reason as LatchkeyError;
  }

  async upgrade(options: { wait?: boolean; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    this.checkHeld();
    const a: Args<'upgrade'> = { lock: this.state.handle };
    if (options.wait !== undefined) a.wait = options.wait;
    if (options.timeoutMs !== undefined) a.timeoutMs = options.timeoutMs;
    const r = await this.core.requestOn(this.generation, 'upgrade', a, this.owner.handle, options.signal);
    this.mode = 'exclusive';
    this.token = r.token;
  }

  async downgrade(): Promise<void> {
    this.checkHeld();
    await this.core.requestOn(this.generation, 'downgrade', { lock: this.state.handle }, this.owner.handle);
    this.mode = 'shared';
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.core.locks.delete(this.state.handle);
    if (this.ctl.signal.aborted) return; // lost already: nothing to give back
    await this.core.requestOn(this.generation, 'release', { lock: this.state.handle }, this.owner.handle).catch((e: unknown) => {
      // With the connection gone the server released it already.
      if (!LatchkeyError.is(e, 'CONNECTION_LOST')) throw e;
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}

// ------------------------------------------------------------------ watches

class RemoteWatch implements AsyncIterableIterator<WatchEvent> {
  private queue: WatchEvent[] = [];
  private head = 0;
  private handle = 0;
  /** The next revision this watch must deliver (where it resumes after a loss). */
  private nextRev: number | undefined;
  private endError: LatchkeyError | undefined;
  private done = false;
  private waiter: (() => void) | undefined;
  private readonly maxQueue: number;
  private readonly onAbort: () => void;

  constructor(private readonly core: Core, readonly path: string, private readonly options: WatchOptions) {
    this.maxQueue = core.opts.maxWatchQueue ?? 10_000;
    this.nextRev = options.fromRevision;
    this.onAbort = () => this.fail(new LatchkeyError('ABORTED', 'watch aborted', { path, cause: options.signal?.reason }));
    if (options.signal?.aborted) throw new LatchkeyError('ABORTED', 'watch aborted', { path, cause: options.signal.reason });
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    core.allWatches.add(this);
    if (core.link?.alive) this.attach();
  }

  private get queued(): number {
    return this.queue.length - this.head;
  }

  /** Subscribes on the current link, from where the last link left off. */
  attach(): void {
    if (this.done || this.endError !== undefined || this.handle !== 0) return;
    const link = this.core.link;
    if (link === undefined || !link.alive) return;
    const handle = this.core.handle();
    this.handle = handle;
    this.core.watches.set(handle, this);
    const a: Args<'watch'> = { watch: handle, path: this.path };
    if (this.options.recursive !== undefined) a.recursive = this.options.recursive;
    if (this.nextRev !== undefined) a.fromRevision = this.nextRev;
    link.request('watch', a).then((r) => {
      if (this.handle === handle) this.nextRev ??= r.revision;
    }, (e: unknown) => {
      if (this.handle !== handle) return;
      if (LatchkeyError.is(e, 'CONNECTION_LOST')) return; // attach again on the next link
      this.fail(e as LatchkeyError);
    });
  }

  /** The link is gone: forget its handle; the next link re-attaches. */
  detach(): void {
    this.handle = 0;
  }

  events(evs: ReadonlyArray<{ type: 'put' | 'delete'; path: string; revision: number; value?: Uint8Array }>): void {
    if (this.done || this.endError !== undefined || evs.length === 0) return;
    if (this.queued > 0 && this.queued + evs.length > this.maxQueue) {
      this.stopServer();
      this.endError = new LatchkeyError('QUOTA', `watch fell more than ${this.maxQueue} events behind; resume from revision ${evs[0]!.revision}`, {
        path: this.path, info: { resumeFrom: evs[0]!.revision, limit: this.maxQueue },
      });
      this.wake();
      return;
    }
    for (const e of evs) this.queue.push(e);
    // Pushes end on a revision boundary (the server splits only between revisions).
    this.nextRev = evs[evs.length - 1]!.revision + 1;
    this.wake();
  }

  ended(e: LatchkeyError): void {
    this.core.watches.delete(this.handle);
    this.handle = 0;
    if (this.endError === undefined && !this.done) this.endError = e;
    this.wake();
  }

  private stopServer(): void {
    const h = this.handle;
    if (h === 0) return;
    this.core.watches.delete(h);
    this.handle = 0;
    const link = this.core.link;
    if (link?.alive) link.request('unwatch', { watch: h }).catch(() => {});
  }

  /** Ends the watch at once with an error. */
  fail(e: LatchkeyError): void {
    if (this.done) return;
    this.stopServer();
    this.endError ??= e;
    this.queue = [];
    this.head = 0;
    this.finish();
  }

  private finish(): void {
    this.done = true;
    this.core.allWatches.delete(this);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  async next(): Promise<IteratorResult<WatchEvent>> {
    for (;;) {
      if (this.queued > 0) {
        const ev = this.queue[this.head++]!;
        if (this.head === this.queue.length) {
          this.queue = [];
          this.head = 0;
        }
        return { value: ev, done: false };
      }
      if (this.endError !== undefined) {
        const e = this.endError;
        if (!this.done) {
          this.stopServer();
          this.finish();
        }
        throw e;
      }
      if (this.done) return { value: undefined, done: true };
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
  }

  async return(): Promise<IteratorResult<WatchEvent>> {
    this.stopServer();
    this.queue = [];
    this.head = 0;
    this.finish();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.return();
  }
}

// ------------------------------------------------------------------ the store

export class RemoteStore extends RemoteSession implements Store {
  constructor(core: Core) {
    super(core, 0, core.opts.name ?? 'default', undefined);
  }

  get revision(): number {
    return this.core.revision;
  }

  /** The server's session id for this connection (changes after a reconnection). */
  override get id(): string {
    return this.core.link?.welcome.session ?? '';
  }

  /** The limits the server announced. */
  get limits(): import('../protocol/limits.js').Limits | undefined {
    return this.core.link?.welcome.limits;
  }

  /** True while a connection is up. */
  get connected(): boolean {
    return this.core.link?.alive === true;
  }

  session(options: SessionOptions = {}): Session {
    this.check();
    const link = this.core.link;
    if (link === undefined || !link.alive) throw new LatchkeyError('CONNECTION_LOST', 'not connected to the server');
    const handle = this.core.handle();
    const name = options.name ?? `session-${handle}`;
    const s = new (class extends RemoteSession {
      setId(id: string): void {
        this.idValue = id;
      }
    })(this.core, handle, name, this.core.generation);
    this.core.sessions.set(handle, s);
    // Pipelined like begin: the session's first requests follow this one.
    link.request('session', { session: handle, name }).then((r) => s.setId(r.id), () => s.ended());
    return s;
  }

  /**
   * The lock table as this client knows it now: its own sessions' locks and
   * waits exactly (it saw every grant, release and loss), everyone else's as
   * of the last fetch (each call starts a new one; `fetchLockTable()` waits).
   */
  lockTable(): LockTableInfo {
    void this.fetchLockTable().catch(() => {});
    const mine = new Set<string>();
    const held: LockInfo[] = [];
    const waiting: LockTableInfo['waiting'][number][] = [];
    for (const st of this.core.locks.values()) {
      mine.add(st.owner.id);
      const l = st.lock;
      if (l === undefined) waiting.push({ path: st.path, mode: st.mode, session: st.owner.id, since: st.since });
      else if (l.held) held.push({ path: l.path, mode: l.mode, session: st.owner.id, token: l.token, since: l.since });
    }
    mine.add(this.id);
    for (const sess of this.core.sessions.values()) mine.add(sess.id);
    const cache = this.core.lockTableCache;
    return {
      held: [...cache.held.filter((l) => !mine.has(l.session)), ...held],
      waiting: [...cache.waiting.filter((w) => !mine.has(w.session)), ...waiting],
    };
  }

  async fetchLockTable(): Promise<LockTableInfo> {
    const r = await this.req('lockTable', {});
    this.core.lockTableCache = r;
    return r;
  }

  watch(path: string, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.check();
    return new RemoteWatch(this.core, path, options);
  }

  async snapshot(): Promise<void> {
    await this.req('snapshot', {});
  }

  /** The server's figures as of the last fetch (each call starts a new one); `fetchStats()` waits for fresh ones. */
  stats(): StoreStats {
    void this.fetchStats().catch(() => {});
    return this.core.statsCache;
  }

  async fetchStats(): Promise<StoreStats> {
    const r = await this.req('stats', {});
    this.core.statsCache = r as unknown as StoreStats;
    return this.core.statsCache;
  }

  /** Waits until a connection is up (after a loss, the reconnection). */
  async ready(): Promise<void> {
    await this.core.current();
  }

  override async close(): Promise<void> {
    if (this.core.closed) return;
    this.core.close();
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Connects to a latchkey server: `unix:///path/latchkey.sock`,
 * `tcp://host:port` or `tls://host:port`. Resolves once the handshake is done;
 * rejects with AUTH, PROTOCOL, QUOTA (server full) or CONNECTION_LOST.
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<RemoteStore> {
  const core = new Core(parseAddress(url), options);
  await core.start();
  return new RemoteStore(core);
}
