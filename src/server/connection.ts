/**
 * One client connection: the byte stream, its sessions, and everything they
 * hold (transactions, locks, watches, requests in flight).
 *
 * Lifetime (seed 004, lockfs: the lock is the file descriptor's):
 *  - hello → welcome: the connection's own session (handle 0) opens; the
 *    client may open more on it (`session`), all ending with it.
 *  - Requests are dispatched in arrival order and answered as they finish,
 *    so a lock wait never holds up the requests behind it.
 *  - The socket closing, for any reason, ends every session as a death
 *    (locks go to the next waiter with ownerDied, transactions abort,
 *    ephemeral nodes go). A TCP connection also holds a lease: silence for
 *    ttlMs (no request, no ping) is a death too. And over TCP a close the
 *    client did not announce (`goodbye`) may be a cut the client has not
 *    seen yet: its sessions keep their locks and ephemeral nodes until the
 *    lease runs out (lastSeen + ttl), so the lock is never granted to
 *    another before the client has given its lease up (docs/architecture.md,
 *    "Leases"). Requests in flight, transactions and watches end at once.
 *    A Unix socket closes on both sides together: no linger.
 *  - A fatal protocol error sends `bye` with the error and closes this
 *    connection only. Graceful shutdown finishes what is in flight, sends
 *    `bye` CLOSED, and ends the sessions cleanly.
 *
 * Bounds: a frame is at most maxFrame (the decoder holds no more); requests
 * in flight at most maxInFlight; when the client does not read its replies
 * the socket stops being read (backpressure), and watches stop being pumped
 * so their bounded queues fill and end with a resumable QUOTA.
 */
import type { Socket } from 'node:net';
import type { Lock, Session } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import type { OwnedSession, ServedLock } from '../engine/access.js';
import { type Decoded, clientMessageDecoder, encodeServer, packBody } from '../protocol/codec.js';
import { FrameBatch } from '../protocol/frame.js';
import { type Limits, MAX_HELLO_FRAME } from '../protocol/limits.js';
import {
  type ClientMessage, type HelloBody, type RequestMessage, type RequestOp, type ServerBody, type WireEvent,
  PROTOCOL_VERSION, SUPPORTED_VERSIONS, toWireError,
} from '../protocol/messages.js';
import { DisposableStack } from '../util/disposable.js';
import { type AuthTable, type Principal, TRUSTED, authorize, needsWriteGuard } from './auth.js';
import type { BudgetHolder, MemoryBudget } from './budget.js';
import { type HelloSession, resumeOrOpen, welcomeOf } from './resume.js';
import type { ServedSession, ServedStore, ServedWait, ServedWatch, SessionOrigin } from './served.js';
import { type ConnContext, type LockSlot, NOT_SYNC, type Request, type TxSlot, checkAccess, handlers } from './dispatch.js';
import { errorBody, okBody } from './reply.js';
import { RequestSignal } from './signal.js';

/** Requests that only free what the connection holds: served even when the server is over its memory budget. */
const FREEING: ReadonlySet<RequestOp> = new Set<RequestOp>(['commit', 'abort', 'release', 'downgrade', 'unwatch', 'endSession', 'ping']);
/** Bytes charged per request in flight on top of its body (its objects, its promise). */
const REQUEST_OVERHEAD = 256;
/** Bytes charged per event queued on a watch on top of its value. */
const EVENT_OVERHEAD = 96;

/** Pause reading a client whose unread replies pass this many bytes. */
const WRITE_HIGH_WATER = 8 * 1024 * 1024;
/** Watch events are pushed in frames of about this size, split between revisions. */
const PUSH_BYTES = 256 * 1024;

export interface ConnectionOptions {
  readonly store: ServedStore;
  readonly limits: Limits;
  /** Heartbeat lease; 0 for none (Unix sockets). */
  readonly ttlMs: number;
  readonly auth: AuthTable | undefined;
  readonly transport: 'unix' | 'tcp';
  /** Time a new connection has to send its hello. */
  readonly helloTimeoutMs: number;
  readonly stats: () => Record<string, unknown>;
  readonly closed: (c: Connection) => void;
  /** The server-wide memory budget this connection is charged against. */
  readonly budget: MemoryBudget;
}

interface WatchSlot {
  readonly w: ServedWatch;
  readonly session: number;
}

type AnyRequest = Request<RequestOp>;

type InFlight = RequestSignal;

export class Connection implements ConnContext, BudgetHolder {
  readonly store: ServedStore;
  readonly limits: Limits;
  principal: Principal = TRUSTED;
  readonly txs = new Map<number, TxSlot>();
  readonly locks = new Map<number, LockSlot>();
  readonly pendingLocks = new Set<number>();
  /** Lock waits a resume carried over, until the client's `awaitLock` takes each (they count in pendingLocks). */
  readonly adoptedWaits = new Map<number, { readonly session: number; readonly wait: ServedWait }>();
  private readonly watches = new Map<number, WatchSlot>();
  private readonly sessions = new Map<number, ServedSession>();
  private readonly inflight = new Map<number, InFlight>();
  private readonly decoder = clientMessageDecoder(MAX_HELLO_FRAME);
  private greeted = false;
  /** Messages that came while the hello's session was being made (set only then; `greeted` is still false). */
  private held: Decoded<ClientMessage>[] | undefined;
  private state: 'open' | 'draining' | 'closed' = 'open';
  private readonly out = new FrameBatch();
  private flushQueued = false;
  /** Monotonic (performance.now): the lease must not move with the wall clock (docs/architecture.md, "Leases"). */
  private lastSeen = performance.now();
  private lease: NodeJS.Timeout | undefined;
  private readonly helloTimer: NodeJS.Timeout;
  private drainWaiters: Array<() => void> = [];
  private pausedForWrites = false;
  /** Bytes charged to the budget: in flight, output queued, per transaction, per watch. */
  private chargedInFlight = 0;
  private chargedOutput = 0;
  private readonly chargedTx = new Map<number, number>();
  private chargedTxTotal = 0;
  private readonly chargedWatch = new Map<number, number>();
  private chargedWatchTotal = 0;
  /** Set once destroy() has credited everything back: later settlements charge nothing. */
  private budgetReleased = false;
  /**
   * Everything the connection holds, released once, in reverse order of
   * creation, by `release` — the one ending that `destroy` (the socket went)
   * and `shutdown` (graceful) share.
   */
  private readonly owned = new DisposableStack();
  /** How the sessions end when released: died (not a clean close) or closed. */
  private sessionsDie = true;
  /** The sessions' ends, started by `release`. */
  private sessionsEnded: Promise<unknown> = Promise.resolve();
  private saidGoodbye = false;
  /** Milliseconds the sessions' end waits for (set by destroy: the lease left after an unannounced TCP close). */
  private sessionsLinger = 0;

  constructor(private readonly socket: Socket, private readonly opts: ConnectionOptions) {
    this.store = opts.store;
    this.limits = opts.limits;
    const owned = this.owned;
    // Last of all: the server forgets the connection.
    owned.defer(() => opts.closed(this));
    owned.defer(() => {
      for (const w of this.drainWaiters) w();
      this.drainWaiters = [];
    });
    owned.defer(() => {
      const sessions = [...this.sessions.values()];
      this.sessions.clear();
      const died = this.sessionsDie;
      const end = (): Promise<unknown> => Promise.allSettled(sessions.map((s) => s.end(died)));
      const linger = this.sessionsLinger;
      // A close over TCP the client did not announce: the sessions keep their locks until the lease runs out (see the header).
      if (linger > 0 && sessions.length > 0) setTimeout(() => void end(), linger).unref();
      else this.sessionsEnded = end();
    });
    owned.defer(() => {
      this.locks.clear();
      this.txs.clear();
      // Carried waits not yet taken by an awaitLock go on (as a resumable session's own waits do): they end
      // with their session, so the client can carry them over again after this loss.
      this.adoptedWaits.clear();
    });
    owned.defer(() => {
      for (const { w } of this.watches.values()) void w.return();
      this.watches.clear();
    });
    owned.defer(() => {
      const lost = new LatchkeyError('CONNECTION_LOST', 'the connection closed');
      for (const f of this.inflight.values()) f.abort(lost);
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        this.onData(chunk);
      } catch (e) {
        // Nothing below throws by design; if a bug does, it costs this connection, never the server.
        this.fatal(new LatchkeyError('INTERNAL', `connection failed: ${(e as Error).message}`));
      }
    });
    socket.on('error', () => {}); // 'close' follows; a reset is a death like any other
    socket.on('close', () => this.destroy(true));
    socket.on('drain', () => this.onDrain());
    if (opts.ttlMs > 0) this.armLease(opts.ttlMs);
    // A connection that never says hello must not hold a connection slot forever.
    this.helloTimer = setTimeout(() => {
      if (!this.greeted) this.fatal(new LatchkeyError('PROTOCOL', `no hello within ${opts.helloTimeoutMs} ms`));
    }, opts.helloTimeoutMs);
    this.helloTimer.unref();
    owned.defer(() => clearTimeout(this.helloTimer));
    opts.budget.add(this);
    owned.defer(() => this.releaseBudget());
  }

  /** Everything it held is let go: nothing stays charged to the budget. */
  private releaseBudget(): void {
    this.charge(-this.charged);
    this.chargedInFlight = this.chargedOutput = this.chargedTxTotal = this.chargedWatchTotal = 0;
    this.chargedTx.clear();
    this.chargedWatch.clear();
    this.budgetReleased = true;
    this.opts.budget.remove(this);
  }

  get charged(): number {
    return this.chargedInFlight + this.chargedOutput + this.chargedTxTotal + this.chargedWatchTotal;
  }

  evict(error: LatchkeyError): void {
    // Its queued replies are what it is evicted for: drop them rather than push them at a peer that does not read.
    this.out.takeParts();
    this.fatal(error, 100);
  }

  private charge(n: number): void {
    if (n !== 0 && !this.budgetReleased) this.opts.budget.charge(n);
  }

  watchQueued(handle: number): void {
    const slot = this.watches.get(handle);
    if (slot !== undefined) this.syncWatch(handle, slot.w);
  }

  /** Re-reads what a transaction holds (after each of its requests). */
  private syncTx(handle: number): void {
    const slot = this.txs.get(handle);
    const now = slot === undefined || this.state === 'closed' ? 0 : (slot.tx as { footprint?: number }).footprint ?? 0;
    const before = this.chargedTx.get(handle) ?? 0;
    if (now === 0) this.chargedTx.delete(handle);
    else this.chargedTx.set(handle, now);
    this.chargedTxTotal += now - before;
    this.charge(now - before);
  }

  /** Re-reads the bytes of replies queued (in the batch and on the socket). */
  private syncOutput(): void {
    const now = this.state === 'closed' || this.socket.destroyed ? 0 : this.socket.writableLength + this.out.size;
    const d = now - this.chargedOutput;
    this.chargedOutput = now;
    this.charge(d);
  }

  /** Re-reads the backlog of a watch (events queued, not yet pumped). */
  private syncWatch(handle: number, w: ServedWatch | undefined): void {
    const now = w === undefined || this.state === 'closed' ? 0 : w.queuedBytes + w.queued * EVENT_OVERHEAD;
    const before = this.chargedWatch.get(handle) ?? 0;
    if (now === 0) this.chargedWatch.delete(handle);
    else this.chargedWatch.set(handle, now);
    this.chargedWatchTotal += now - before;
    this.charge(now - before);
  }

  goodbye(): void {
    this.saidGoodbye = true;
  }

  get watchCount(): number {
    return this.watches.size;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  // ------------------------------------------------------------ input

  private onData(chunk: Buffer): void {
    if (this.state !== 'open') return;
    this.lastSeen = performance.now();
    let items: Decoded<ClientMessage>[];
    try {
      items = this.decoder.push(chunk);
    } catch (e) {
      // The decoder reports errors as values; a throw here is a bug, but still only this connection's problem.
      this.fatal(new LatchkeyError('INTERNAL', `decoder failed: ${(e as Error).message}`));
      return;
    }
    this.handle(items);
  }

  private handle(items: Decoded<ClientMessage>[]): void {
    for (const item of items) {
      if (this.state !== 'open') return;
      if (item.type === 'fatal') {
        this.fatal(item.error);
        return;
      }
      if (!this.greeted) {
        if (this.held !== undefined) {
          this.held.push(item); // the hello's session is being made: after its welcome
          continue;
        }
        if (item.type === 'message' && item.message.t === 'hello') this.hello(item.message);
        else this.fatal(new LatchkeyError('PROTOCOL', 'the first message must be hello'));
        continue;
      }
      if (item.type === 'reject') {
        this.reply(item.id, undefined, item.error);
        continue;
      }
      const m = item.message;
      if (m.t === 'req') this.request(m, item.size ?? 0);
      else if (m.t === 'cancel') this.inflight.get(m.id)?.abort(new LatchkeyError('ABORTED', 'request cancelled by the client'));
      else this.fatal(new LatchkeyError('PROTOCOL', 'hello after the handshake'));
    }
  }

  private hello(h: HelloBody): void {
    if (!h.versions.includes(PROTOCOL_VERSION)) {
      this.fatal(new LatchkeyError('PROTOCOL', `no common protocol version: client speaks ${h.versions.join(', ')}, server ${SUPPORTED_VERSIONS.join(', ')}`, { info: { supported: SUPPORTED_VERSIONS } }));
      return;
    }
    const auth = this.opts.auth;
    if (auth !== undefined) {
      const p = auth.authenticate(h.token);
      if (p === undefined) {
        this.fatal(new LatchkeyError('AUTH', h.token === undefined ? 'this server requires a token' : 'token not accepted'));
        return;
      }
      this.principal = p;
    }
    clearTimeout(this.helloTimer);
    this.decoder.maxFrame = this.limits.maxFrame;
    const fresh = (): ServedSession => {
      const s = this.store.ownedSession(h.name === undefined ? {} : { name: h.name }, this.origin(), true);
      this.sessions.set(0, s); // ends with the connection from now on (at once when the guard refuses it)
      this.guard(s);
      return s;
    };
    if (h.resume !== undefined) return this.greetWhen(resumeOrOpen(this.store, h.resume, this.origin(), fresh, (s) => this.abandon([s])));
    let s: ServedSession;
    try {
      s = fresh();
    } catch (e) {
      return this.fatal(e instanceof LatchkeyError ? e : new LatchkeyError('INTERNAL', String(e)));
    }
    if (s.ready !== undefined) return this.greetWhen(s.ready().then(() => ({ session: s, locks: new Map(), waits: new Map(), extra: [] })));
    this.greeted = true;
    this.send(0, welcomeOf({ session: s, locks: new Map(), waits: new Map() }, this.opts.ttlMs, this.store.revision, this.limits));
  }

  /** A session made asynchronously (an etcd lease, a resume): what the client sends before its welcome waits. */
  private greetWhen(made: Promise<HelloSession>): void {
    this.held = [];
    this.socket.pause();
    made.then((r) => {
      const extra = r.extra.flatMap((x) => (x.resumed === undefined ? [] : [{ s: x.s, ...x.resumed }]));
      // Gone meanwhile: a resumed session lingers as after any cut (its client may resume it elsewhere).
      if (this.state !== 'open') {
        this.abandon([...(this.sessions.get(0) !== r.session ? [r.session] : []), ...extra.map((x) => x.session)]);
        return;
      }
      // The connection's own session and the extra ones resumed: one path (handle 0 is the connection's).
      const all = [{ s: 0, session: r.session, locks: r.locks, waits: r.waits }, ...extra];
      for (const x of all) this.sessions.set(x.s, x.session); // all end with the connection from now on, even if a guard refuses one
      for (const x of all) {
        this.guard(x.session); // a resumed session too (a fresh one was guarded already: the same check again)
        for (const [handle, lock] of x.locks) this.trackLock(handle, x.s, lock);
        for (const [handle, wait] of x.waits) {
          this.pendingLocks.add(handle);
          this.adoptedWaits.set(handle, { session: x.s, wait });
        }
      }
      this.greeted = true;
      this.send(0, welcomeOf(r, this.opts.ttlMs, this.store.revision, this.limits));
      const held = this.held ?? [];
      this.held = undefined;
      this.socket.resume();
      this.handle(held);
    }).catch((e: unknown) => this.fatal(e instanceof LatchkeyError ? e : new LatchkeyError('INTERNAL', String(e))));
  }

  /** Resumed sessions this connection will not serve: they linger as after a cut (their client may resume them elsewhere). */
  private abandon(sessions: readonly ServedSession[]): void {
    if (sessions.length > 0) setTimeout(() => { for (const g of sessions) void g.end(true).catch(() => {}); }, this.opts.ttlMs).unref();
  }

  private request(m: RequestMessage, size: number): void {
    if (this.inflight.has(m.id)) {
      this.fatal(new LatchkeyError('PROTOCOL', `request id ${m.id} is already in flight`));
      return;
    }
    if (!FREEING.has(m.op)) {
      try {
        this.opts.budget.admit();
      } catch (e) {
        this.reply(m.id, undefined, e);
        return;
      }
    }
    if (this.inflight.size < this.limits.maxInFlight && this.answerNow(m)) return;
    if (this.inflight.size >= this.limits.maxInFlight) {
      this.reply(m.id, undefined, new LatchkeyError('QUOTA', `more than ${this.limits.maxInFlight} requests in flight on this connection`, { info: { limit: this.limits.maxInFlight } }));
      return;
    }
    const cost = size + REQUEST_OVERHEAD;
    this.chargedInFlight += cost;
    this.charge(cost);
    if (this.state !== 'open') return; // this request put the server over budget and this connection was the largest
    const tx = (m.a as { tx?: unknown }).tx;
    const settled = (): void => {
      this.chargedInFlight -= cost;
      this.charge(-cost);
      if (typeof tx === 'number') this.syncTx(tx);
    };
    // The controller is made only when something listens to the signal or aborts it (RequestSignal).
    const slot = new RequestSignal();
    const req: AnyRequest = { id: m.id, s: m.s, a: m.a, signal: slot.signal };
    let r: unknown;
    try {
      checkAccess(this.principal, m.op, m.a as never);
      r = (handlers[m.op].run as (c: ConnContext, r: AnyRequest) => unknown)(this, req);
    } catch (e) {
      settled();
      this.reply(m.id, undefined, e);
      return;
    }
    if (!(r instanceof Promise)) {
      // Known in this tick (a lock granted at once, a release, a begin): no promise, nothing in flight.
      settled();
      this.reply(m.id, r, undefined);
      return;
    }
    slot.done = r.then(
      (v) => {
        this.inflight.delete(m.id);
        settled();
        this.reply(m.id, v, undefined);
      },
      (e: unknown) => {
        this.inflight.delete(m.id);
        settled();
        this.reply(m.id, undefined, e);
      },
    );
    this.inflight.set(m.id, slot);
  }

  /** Answers a read outside a transaction synchronously (dispatch.ts `sync`); false when it must run as a request in flight. */
  private answerNow(m: RequestMessage): boolean {
    const h = handlers[m.op] as { sync?: (c: ConnContext, s: number, a: unknown) => unknown };
    if (h.sync === undefined) return false;
    let r: unknown;
    try {
      checkAccess(this.principal, m.op, m.a as never);
      r = h.sync(this, m.s, m.a);
    } catch (e) {
      this.reply(m.id, undefined, e);
      return true;
    }
    if (r === NOT_SYNC) return false;
    this.reply(m.id, r, undefined);
    return true;
  }

  // ------------------------------------------------------------ output

  private reply(id: number, r: unknown, error: unknown): void {
    if (this.state === 'closed') return;
    if (error === undefined) {
      const ok = okBody(r, this.store.revision);
      if (!(ok instanceof LatchkeyError)) {
        this.write(id, ok.head, ok.tail);
        return;
      }
      error = ok;
    }
    this.write(id, errorBody(error));
  }

  private send(id: number, body: ServerBody): void {
    if (this.state === 'closed') return;
    this.write(id, packBody(body));
  }

  /** Queues a frame; frames queued in the same tick leave in one write. */
  private write(id: number, body: Uint8Array, tail?: Uint8Array): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    // A large value (tail) is written from its own buffer after the rest of its frame, not copied.
    this.out.addSplit(id, body, tail);
    // Charged as it is queued: replies that finish in one tick all wait in the batch until the flush.
    const n = body.length + (tail?.length ?? 0);
    this.chargedOutput += n;
    this.charge(n);
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(() => this.flush());
    }
  }

  private flush(): void {
    this.flushQueued = false;
    const parts = this.out.takeParts();
    if (parts.length === 0 || this.socket.destroyed) return;
    if (parts.length === 1) this.socket.write(parts[0]!);
    else {
      // Split frames: written in order as one writev.
      this.socket.cork();
      for (const p of parts) this.socket.write(p);
      this.socket.uncork();
    }
    this.syncOutput();
    if (this.socket.writableLength > WRITE_HIGH_WATER && !this.pausedForWrites) {
      this.pausedForWrites = true;
      this.socket.pause();
    }
  }

  private onDrain(): void {
    this.syncOutput();
    if (this.pausedForWrites) {
      this.pausedForWrites = false;
      if (this.state === 'open') this.socket.resume();
    }
    const ws = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of ws) w();
  }

  private drained(): Promise<void> {
    if (this.socket.writableLength <= WRITE_HIGH_WATER || this.state === 'closed') return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Where this connection's sessions come from (listSessions). */
  private origin(): SessionOrigin {
    const a = this.opts.transport === 'tcp' ? this.socket.remoteAddress : undefined;
    return { transport: this.opts.transport, ...(a === undefined ? {} : { address: `${a}:${this.socket.remotePort}` }), leaseMs: this.opts.ttlMs };
  }

  // ------------------------------------------------------------ ConnContext

  session(handle: number): Session {
    const s = this.sessions.get(handle);
    if (s === undefined || s.closed) throw new LatchkeyError('SESSION_EXPIRED', `no open session ${handle} on this connection`, { info: { session: handle } });
    return s;
  }

  async openSession(handle: number, name: string | undefined): Promise<Session> {
    if (this.sessions.has(handle)) throw invalidArgument(`session handle ${handle} is in use`);
    if (this.sessions.size >= this.limits.maxSessions) {
      throw new LatchkeyError('QUOTA', `more than ${this.limits.maxSessions} sessions on this connection`, { info: { limit: this.limits.maxSessions } });
    }
    const s = this.store.ownedSession(name === undefined ? {} : { name }, this.origin(), true);
    this.sessions.set(handle, s);
    try {
      this.guard(s);
      await s.ready?.();
    } catch (e) {
      this.sessions.delete(handle);
      void s.end(true).catch(() => {});
      throw e;
    }
    return s;
  }

  /**
   * A scoped principal's sessions are authorized on the paths their commits
   * actually write, not only on the paths requests name: a sequential
   * create's chosen name (`/jobs` + counter is a sibling of `/jobs`) and the
   * parents `set` and `create` make are checked before anything is committed.
   * A store that cannot guard its commits (etcd) does not serve scoped tokens.
   */
  private guard(s: { readonly id: string }): void {
    const p = this.principal;
    if (p.grants === undefined) return;
    if (this.store.guardWrites === undefined) {
      if (!needsWriteGuard(p)) return; // it may write everywhere, or nowhere
      throw new LatchkeyError('AUTH', 'this server\'s backend cannot check the writes of a token that may write only below /; use one granted / or a read-only one (docs/etcd.md)');
    }
    this.store.guardWrites(s.id, (path) => authorize(p, path, 'write'));
  }

  async endSession(handle: number): Promise<void> {
    const s = this.sessions.get(handle);
    if (s === undefined) return;
    this.forgetSession(handle);
    await s.close();
  }

  /** Drops the connection's handles that belong to a session (the engine ends the things themselves). */
  private forgetSession(handle: number): void {
    this.sessions.delete(handle);
    for (const [k, t] of this.txs) if (t.session === handle) this.txs.delete(k);
    for (const [k, l] of this.locks) if (l.session === handle) this.locks.delete(k);
    for (const [k, w] of this.watches) {
      if (w.session !== handle) continue;
      this.watches.delete(k);
      void w.w.return();
    }
  }

  addWatch(handle: number, session: number, w: ServedWatch): void {
    if (this.watches.has(handle)) {
      void w.return();
      throw invalidArgument(`watch handle ${handle} is in use`);
    }
    this.watches.set(handle, { w, session });
    void this.pump(handle, w);
  }

  removeWatch(handle: number): boolean {
    const slot = this.watches.get(handle);
    if (slot === undefined) return false;
    this.watches.delete(handle);
    void slot.w.return();
    return true;
  }

  private async pump(handle: number, w: ServedWatch): Promise<void> {
    try {
      for (;;) {
        this.syncWatch(handle, w);
        const evs = await w.take();
        this.syncWatch(handle, w); // taken: what was queued is now output
        if (evs.length === 0 || this.watches.get(handle)?.w !== w || this.state === 'closed') return;
        let batch: WireEvent[] = [];
        let bytes = 0;
        for (let i = 0; i < evs.length; i++) {
          const e = evs[i]!;
          batch.push(e.value === undefined ? { type: e.type, path: e.path, revision: e.revision } : { type: e.type, path: e.path, revision: e.revision, value: e.value });
          bytes += e.path.length + (e.value?.length ?? 0) + 16;
          const next = evs[i + 1];
          // Split only between revisions: the client resumes after the last revision it got whole.
          if (bytes >= PUSH_BYTES && (next === undefined || next.revision !== e.revision)) {
            this.send(0, { t: 'event', w: handle, ev: batch });
            batch = [];
            bytes = 0;
          }
        }
        if (batch.length > 0) this.send(0, { t: 'event', w: handle, ev: batch });
        await this.drained();
      }
    } catch (e) {
      this.syncWatch(handle, undefined);
      if (this.watches.get(handle)?.w !== w) return;
      this.watches.delete(handle);
      this.send(0, { t: 'watchEnd', w: handle, e: toWireError(e) });
    } finally {
      this.syncWatch(handle, undefined);
    }
  }

  trackLock(handle: number, session: number, lock: Lock): void {
    this.locks.set(handle, { lock, session });
    const lost = (): void => {
      if (this.locks.get(handle)?.lock !== lock) return; // released on request, or its session ended
      this.locks.delete(handle);
      const reason: unknown = lock.signal.reason;
      this.send(0, { t: 'lockLost', l: handle, e: toWireError(reason instanceof LatchkeyError ? reason : new LatchkeyError('LOCK_LOST', 'lock lost', { path: lock.path })) });
    };
    // The embedded store's locks call back on loss: no AbortController per grant (ServedLock).
    const when = (lock as Partial<ServedLock>).whenLost;
    if (when !== undefined) when.call(lock, lost);
    else if (lock.signal.aborted) lost();
    else lock.signal.addEventListener('abort', lost, { once: true });
  }

  sessionIds(): ReadonlySet<string> {
    const ids = new Set<string>();
    for (const s of this.sessions.values()) ids.add(s.id);
    return ids;
  }

  serverStats(): Record<string, unknown> {
    return this.opts.stats();
  }

  /** Watches open and events queued on them, not yet pushed (metrics). */
  watchBacklog(): { watches: number; events: number } {
    let events = 0;
    for (const { w } of this.watches.values()) events += w.queued;
    return { watches: this.watches.size, events };
  }

  // ------------------------------------------------------------ ending

  private armLease(ttl: number): void {
    this.owned.defer(() => clearTimeout(this.lease));
    const check = (): void => {
      if (this.state !== 'open') return;
      const idle = performance.now() - this.lastSeen;
      if (idle >= ttl) {
        this.fatal(new LatchkeyError('SESSION_EXPIRED', `no message for ${Math.round(idle)} ms; the lease is ${ttl} ms`));
        return;
      }
      this.lease = setTimeout(check, Math.ceil(ttl - idle));
      this.lease.unref();
    };
    this.lease = setTimeout(check, ttl);
    this.lease.unref();
  }

  /** The stream is broken (or the peer misbehaved): say why, then close this connection, a death for its sessions. */
  private fatal(error: LatchkeyError, lingerMs = 1000): void {
    if (this.state === 'closed') return;
    try {
      this.flush();
      this.socket.write(encodeServer(0, { t: 'bye', e: toWireError(error) }));
    } catch {
      // nothing more to say to this peer
    }
    this.socket.end();
    // Keep reading (and discarding: onData ignores a closed connection) what the peer still sends:
    // closing with input unread resets the connection, and a client still writing its pipelined
    // requests would lose the bye that says why. Do not wait for the peer to close its side: a
    // hostile one might not.
    this.socket.resume();
    const t = setTimeout(() => this.socket.destroy(), lingerMs);
    this.socket.once('close', () => clearTimeout(t));
    this.destroy(true, true);
  }

  /**
   * The socket is gone (or going): ends everything the connection holds.
   * `died`: its sessions die (not a clean close). `lingering`: the socket is
   * being closed after a bye, which owns its end.
   */
  destroy(died: boolean, lingering = false): void {
    if (this.state === 'closed') return;
    if (died && !lingering && !this.socket.destroyed && this.socket.writableLength === 0) this.socket.destroySoon();
    if (died && !lingering && this.opts.ttlMs > 0 && this.greeted && !this.saidGoodbye) {
      this.sessionsLinger = Math.ceil(this.lastSeen + this.opts.ttlMs - performance.now());
    }
    this.release(died);
  }

  /** Releases what the connection holds (once): timers, requests in flight, watches, handles, sessions. */
  private release(died: boolean): void {
    this.state = 'closed';
    this.sessionsDie = died;
    this.owned.dispose();
  }

  /**
   * Graceful close: read no more, let requests in flight finish (waits are
   * cancelled), say bye, end the sessions cleanly.
   */
  async shutdown(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'draining';
    this.socket.pause();
    const closing = new LatchkeyError('CLOSED', 'the server is shutting down');
    // Requests still waiting (for a lock, for admission) are cancelled; commits already applied finish.
    for (const f of this.inflight.values()) f.abort(closing);
    await Promise.allSettled([...this.inflight.values()].map((f) => f.done));
    if (this.greeted) {
      try {
        this.flush();
        this.socket.write(encodeServer(0, { t: 'bye', e: toWireError(closing) }));
      } catch {
        // the peer is gone already
      }
    }
    // Read and discard what the client still sends: closing with unread input would reset the
    // connection, and the client could lose the bye that tells it those requests never ran.
    this.socket.resume();
    this.release(false);
    await this.sessionsEnded;
    await new Promise<void>((resolve) => {
      if (this.socket.destroyed) return resolve();
      // Bounded, and not unref'd: shutdown must finish even if nothing else keeps the process alive.
      const t = setTimeout(() => { this.socket.destroy(); resolve(); }, 1000);
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.socket.end();
    });
  }
}
