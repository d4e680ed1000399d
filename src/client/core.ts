/**
 * The shared state of one remote store: the current link, its generation,
 * and everything tied to it (sessions, locks, watches, transactions). It
 * dials, notices loss, fails what the lost link owned, and reconnects with
 * jittered exponential backoff (see store.ts for the rules).
 */
import type { LockTableInfo, StoreStats } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { type Args, type RequestOp, type Result, fromWireError } from '../protocol/messages.js';
import { type Address, Link, type LinkOptions, type Push } from './link.js';
import type { LockState } from './lock.js';
import type { RemoteSession } from './session.js';
import type { RemoteTransaction } from './transaction.js';
import type { RemoteWatch } from './watch.js';

export interface ConnectOptions extends LinkOptions {
  /** Reconnect after a loss (default true). */
  reconnect?: boolean;
  /** Backoff between reconnection attempts: from minBackoffMs doubling up to maxBackoffMs (defaults 50 ms, 2 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Events a watch buffers for a consumer that does not read; past it the watch ends with a resumable QUOTA (default 10,000). */
  maxWatchQueue?: number;
}


export class Core {
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
    // A lease given up (SESSION_EXPIRED) says so to the locks: the server cannot have granted them to anyone yet.
    const lost = e.code === 'SESSION_EXPIRED' ? e : new LatchkeyError('LOCK_LOST', `lock lost with the connection: ${e.message}`);
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
