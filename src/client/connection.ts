/**
 * The client's connection to one server, across reconnections: the current
 * link (link.ts), its generation, and what lives on it. It dials, notices
 * loss, tells what the lost link owned, and reconnects with jittered
 * exponential backoff (see store.ts for the rules).
 *
 * What lives on a connection registers here through two small interfaces
 * and never edits the connection's state:
 *  - a `LinkMember` (a session, a lock, a transaction, a watch's current
 *    subscription) lives on one link under a handle: `attach(handle, m)`
 *    routes the server's pushes for that handle to it, and tells it once
 *    when that link is lost; `detach(handle)` when it ends first;
 *  - a `LinkFollower` (a watch) outlives links: `follow(f)` tells it of each
 *    new link (to subscribe again) and of the end of the connection (closed,
 *    or a reason never to reconnect).
 * A call made while the link is down awaits the next connection attempt that
 * succeeds (up to connectTimeoutMs); nothing polls.
 */
import type { LockMode } from '../api.js';
import { LatchkeyError, storeClosed } from '../core/errors.js';
import { type Args, type RequestOp, type Result, type WelcomeBody, fromWireError } from '../protocol/messages.js';
import { DisposableStack } from '../util/disposable.js';
import { type RetryCounters, newRetryCounters } from '../util/retry.js';
import { type Address, Link, type LinkOptions, type Push, type ReadIntoResult } from './link.js';

export interface ConnectOptions extends LinkOptions {
  /** Reconnect after a loss (default true). */
  reconnect?: boolean;
  /** Backoff between reconnection attempts: from minBackoffMs doubling up to maxBackoffMs (defaults 50 ms, 2 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Events a watch buffers for a consumer that does not read; past it the watch ends with a resumable QUOTA (default 10,000). */
  maxWatchQueue?: number;
}

/** Something that lives on one link under a handle. */
export interface LinkMember {
  /** A message the server pushed for this handle (watch events, lockLost, sessionEnd). */
  pushed?(m: Push): void;
  /** The link it lived on is gone; called once, after which it is detached. */
  linkLost(e: LatchkeyError): void;
}

/** What a member asks the next link's hello to carry over: a session of the connection (by its handle), a held lock, a lock wait. */
export type ResumeItem =
  | { readonly kind: 'session'; readonly session: string; readonly secret: string }
  | { readonly kind: 'held'; readonly s: number; readonly l: number; readonly token: number }
  | { readonly kind: 'wait'; readonly s: number; readonly l: number; readonly path: string; readonly mode: LockMode; readonly wait?: boolean; readonly timeoutMs?: number };

/**
 * A member that can outlive its link while its session is resumed on the
 * next one (an extra session, a held lock, a lock wait): it is not told of
 * the loss until the resume failed or its window passed.
 */
export interface ResumableMember extends LinkMember {
  /** Its claim while it may be carried over; undefined once it may not (released, lost, ended). */
  resumeClaim(): ResumeItem | undefined;
  /** Carried over to the link of `generation`. */
  resumed(generation: number): void;
}

type SessionClaim = { session: string; secret: string; locks: Array<{ l: number; token: number }>; waits: Array<{ l: number; path: string; mode: LockMode; wait?: boolean; timeoutMs?: number }> };

/** The hello's resume from what a claim keeps: the connection's session, then the extra ones, each with its locks and waits. */
function helloResume(claim: Claim): NonNullable<LinkOptions['resume']> {
  const items = [...claim.kept].flatMap(([h, m]) => {
    const it = m.resumeClaim();
    return it === undefined ? [] : [{ h, it }];
  });
  const sessions = new Map<number, SessionClaim>([[0, { session: claim.session, secret: claim.secret, locks: [], waits: [] }]]);
  for (const { h, it } of items) if (it.kind === 'session') sessions.set(h, { session: it.session, secret: it.secret, locks: [], waits: [] });
  for (const { it } of items) {
    if (it.kind === 'held') sessions.get(it.s)?.locks.push({ l: it.l, token: it.token });
    else if (it.kind === 'wait') sessions.get(it.s)?.waits.push({ l: it.l, path: it.path, mode: it.mode, ...(it.wait === undefined ? {} : { wait: it.wait }), ...(it.timeoutMs === undefined ? {} : { timeoutMs: it.timeoutMs }) });
  }
  // Fields left out when empty: a server of the first resume (no waits, no extra sessions) still understands the rest.
  const wire = (c: SessionClaim): { session: string; secret: string; locks: SessionClaim['locks']; waits?: SessionClaim['waits'] } => ({ session: c.session, secret: c.secret, locks: c.locks, ...(c.waits.length === 0 ? {} : { waits: c.waits }) });
  const extra = [...sessions].filter(([s]) => s !== 0).map(([s, c]) => ({ s, ...wire(c) }));
  return { ...wire(sessions.get(0)!), ...(extra.length === 0 ? {} : { sessions: extra }) };
}

const isResumable = (m: LinkMember): m is ResumableMember => typeof (m as Partial<ResumableMember>).resumeClaim === 'function';

/** What the client carries to the next link after a loss: the session's credential and the locks it keeps meanwhile. */
interface Claim {
  readonly session: string;
  readonly secret: string;
  readonly kept: Map<number, ResumableMember>;
  timer: NodeJS.Timeout | undefined;
}

/** Something that outlives links (a watch resubscribes on each). */
export interface LinkFollower {
  /** A new link is up. */
  linkUp(): void;
  /** There will be no more links: the store closed, or a reason never to reconnect. */
  connectionEnded(e: LatchkeyError): void;
}

interface LinkWaiter {
  resolve(l: Link): void;
  reject(e: unknown): void;
}

/** The handle a push is addressed to. */
function handleOf(m: Push): number {
  switch (m.t) {
    case 'event': return m.w;
    case 'watchEnd': return m.w;
    case 'lockLost': return m.l;
    case 'sessionEnd': return m.s;
    default: return 0; // nothing is attached under 0
  }
}

export class ClientConnection {
  link: Link | undefined;
  /** Counts links: things owned by a session die with the link they were made on. */
  generation = 0;
  private connecting: Promise<Link> | undefined;
  closed = false;
  /** A reason never to reconnect (AUTH, PROTOCOL version): every call fails with it. */
  private fatal: LatchkeyError | undefined;
  private nextHandle = 1;
  private revisionSeen = 0;
  private readonly members = new Map<number, LinkMember>();
  private readonly followers = new Set<LinkFollower>();
  private readonly linkWaiters = new Set<LinkWaiter>();
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** This client's transaction() loops, by all its sessions (they run here, not on the server). */
  readonly retryCounters: RetryCounters = newRetryCounters();
  /** Released by close(), in reverse order: the reconnection timer, whoever waits for a link, the link. */
  private readonly owned = new DisposableStack();

  /** The address dialled next (an index into `addrs`): it moves on after a failed dial or a lost link. */
  private addrIndex = 0;
  /** Set after a lost link whose session is resumable (docs/protocol.md, "Resuming a session"). */
  private claim: Claim | undefined;

  constructor(readonly addrs: readonly Address[], readonly opts: ConnectOptions) {
    if (addrs.length === 0) throw new LatchkeyError('INVALID_ARGUMENT', 'no server address');
    this.owned.defer(() => this.link?.close());
    this.owned.defer(() => this.end(storeClosed()));
    this.owned.defer(() => clearTimeout(this.retryTimer));
    this.owned.defer(() => this.dropClaim(storeClosed()));
  }

  handle(): number {
    return this.nextHandle++;
  }

  get revision(): number {
    return Math.max(this.revisionSeen, this.link?.revision ?? 0);
  }

  get maxValue(): number {
    return this.link?.welcome.limits.maxValue ?? 1024 * 1024;
  }

  // ------------------------------------------------------------ registration

  /** Routes pushes for `handle` to `m`, and tells it when the current link is lost. */
  attach(handle: number, m: LinkMember): void {
    this.members.set(handle, m);
  }

  /** `handle` ended before its link did. */
  detach(handle: number, m?: LinkMember): void {
    if (m === undefined || this.members.get(handle) === m) this.members.delete(handle);
  }

  /** What lives on the current link now, and what a resume carries to the next (for local views of it: lockTable, locks). */
  *attached(): IterableIterator<LinkMember> {
    yield* this.members.values();
    if (this.claim !== undefined) yield* this.claim.kept.values();
  }

  /** True while `m` waits for its session's resume on the next link. */
  carried(m: LinkMember): boolean {
    return this.claim !== undefined && [...this.claim.kept.values()].some((k) => k === m);
  }

  /** Tells `f` of every new link and of the connection's end; returns the unfollow. */
  follow(f: LinkFollower): () => void {
    this.followers.add(f);
    return () => this.followers.delete(f);
  }

  // ------------------------------------------------------------ the link

  /** The first connection: each address in turn until one answers (fails with the last one's error). */
  async start(): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await this.dial();
        return;
      } catch (e) {
        // A reason never to connect (AUTH, a protocol version) is the same on every front-end; any other PROTOCOL error (not a latchkey port, a bad frame) is that address's.
        if (i + 1 >= this.addrs.length || LatchkeyError.is(e, 'AUTH') || (LatchkeyError.is(e, 'PROTOCOL') && e.info?.supported !== undefined)) throw e;
      }
    }
  }

  private dial(): Promise<Link> {
    const addr = this.addrs[this.addrIndex % this.addrs.length]!;
    const claim = this.claim;
    const opts = claim === undefined ? this.opts : {
      ...this.opts,
      resume: helloResume(claim),
    };
    this.connecting ??= Link.open(addr, opts, {
      push: (m) => this.members.get(handleOf(m))?.pushed?.(m),
      lost: (e) => this.onLost(e),
    }).then((link) => {
      this.connecting = undefined;
      if (this.closed) {
        link.close();
        throw storeClosed();
      }
      this.link = link;
      this.generation++;
      this.attempt = 0;
      if (claim !== undefined) this.resumed(claim, link);
      this.revisionSeen = Math.max(this.revisionSeen, link.revision);
      for (const w of [...this.linkWaiters]) w.resolve(link);
      this.linkWaiters.clear();
      for (const f of [...this.followers]) f.linkUp();
      return link;
    }, (e: unknown) => {
      this.connecting = undefined;
      this.addrIndex++; // the next attempt tries the next front-end
      // A server that refused the hello's resume field (older than it) or the token: no resume there.
      if (claim !== undefined && (LatchkeyError.is(e, 'AUTH') || (LatchkeyError.is(e, 'PROTOCOL') && e.info?.supported === undefined))) {
        this.dropClaim(new LatchkeyError('LOCK_LOST', `the session could not be resumed: ${(e as Error).message}`));
      }
      throw e;
    });
    return this.connecting;
  }

  /** The live link, awaiting a reconnection in progress (up to connectTimeoutMs). */
  current(): Promise<Link> {
    if (this.closed) return Promise.reject(storeClosed());
    if (this.fatal !== undefined) return Promise.reject(this.fatal);
    if (this.link?.alive) return Promise.resolve(this.link);
    if (this.opts.reconnect === false) return Promise.reject(new LatchkeyError('CONNECTION_LOST', 'the connection was lost (reconnect is off)'));
    return new Promise((resolve, reject) => {
      const w: LinkWaiter = {
        resolve: (l) => { clearTimeout(timer); resolve(l); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      const timer = setTimeout(() => {
        this.linkWaiters.delete(w);
        reject(new LatchkeyError('CONNECTION_LOST', 'no connection to the server'));
      }, this.opts.connectTimeoutMs ?? 10_000);
      this.linkWaiters.add(w);
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

  /** requestOn for a `get` read into `into` (Link.requestInto). */
  requestIntoOn(generation: number, args: Args<'get'>, into: Uint8Array, session: number): Promise<ReadIntoResult | null> {
    if (this.link === undefined || this.generation !== generation || !this.link.alive) {
      return Promise.reject(new LatchkeyError('CONNECTION_LOST', 'the connection this belongs to was lost'));
    }
    return this.link.requestInto(args, into, session);
  }

  private onLost(e: LatchkeyError): void {
    // With several front-ends, the next one first: the one just lost is likely down.
    if (this.addrs.length > 1) this.addrIndex++;
    const link = this.link;
    if (link !== undefined) this.revisionSeen = Math.max(this.revisionSeen, link.revision);
    this.link = undefined;
    const members = [...this.members.entries()];
    this.members.clear();
    const claim = link === undefined ? undefined : this.claimAfter(link, e);
    for (const [h, m] of members) {
      const it = claim === undefined || !isResumable(m) ? undefined : m.resumeClaim();
      // A held lock only within the window (lease safety); a session or a wait until a server answers the claim.
      if (claim !== undefined && it !== undefined && (it.kind !== 'held' || claim.timer !== undefined)) claim.kept.set(h, m as ResumableMember);
      else m.linkLost(e);
    }
    if (e.code === 'AUTH' || (e.code === 'PROTOCOL' && e.info?.supported !== undefined)) this.fatal = e;
    // Not reconnecting: later calls fail with why the link ended (CLOSED when the server shut down: nothing of theirs ran).
    if (this.opts.reconnect === false && this.fatal === undefined) this.fatal = e.code === 'CLOSED' ? e : new LatchkeyError('CONNECTION_LOST', `the connection was lost (reconnect is off): ${e.message}`, { cause: e });
    if (this.closed || this.fatal !== undefined || this.opts.reconnect === false) {
      this.end(this.fatal ?? e);
      return;
    }
    this.scheduleReconnect();
  }

  /**
   * After losing `link`: the claim to resume its session on the next one,
   * when the session is resumable and the loss is not one the session ended
   * with (the client's own lease given up, a graceful close, AUTH). Held
   * locks are kept meanwhile only until the link's resume window from the
   * last answered request (the lease-safety rule): then they are lost with
   * SESSION_EXPIRED, and the claim dropped, so the session dies at its lease's
   * end and its locks go on with ownerDied. A claim with no lock kept stays
   * until a server answers it (its ephemerals live as long as its lease).
   */
  private claimAfter(link: Link, e: LatchkeyError): Claim | undefined {
    const w = link.welcome;
    if (w?.secret === undefined || this.closed || this.opts.reconnect === false || ['SESSION_EXPIRED', 'CLOSED', 'AUTH'].includes(e.code)) return undefined;
    const left = link.answeredFrom + link.resumeWindowMs - performance.now();
    const claim: Claim = { session: w.session, secret: w.secret, kept: new Map(), timer: undefined };
    if (left > 0) {
      claim.timer = setTimeout(() => {
        if (this.claim !== claim) return;
        claim.timer = undefined;
        // With no lock at stake the claim stays (the session's ephemerals live as long as its lease).
        if ([...claim.kept.values()].some((m) => m.resumeClaim()?.kind === 'held')) this.dropClaim(new LatchkeyError('SESSION_EXPIRED', `the session was not resumed within ${link.resumeWindowMs} ms of its last answer: its locks are given up before its lease can end`));
      }, left);
      claim.timer.unref();
    }
    this.claim = claim;
    return claim;
  }

  /**
   * The link after a claim: each session resumed goes on on it with the
   * kept locks and waits the server carried over; the others are lost (a
   * session not resumed ends with the server's reason).
   */
  private resumed(claim: Claim, link: Link): void {
    if (this.claim === claim) {
      clearTimeout(claim.timer);
      this.claim = undefined;
    }
    const w = link.welcome;
    type Outcome = Pick<WelcomeBody, 'resumed' | 'locks' | 'waits' | 'resumeError'>;
    const outcomes = new Map<number, Outcome>([[0, w], ...(w.sessions ?? []).map((x): [number, Outcome] => [x.s, x])]);
    const carried = (s: number, list: 'locks' | 'waits', h: number): boolean => {
      const o = outcomes.get(s);
      return o?.resumed === true && (o[list] ?? []).includes(h);
    };
    const notResumed = (s: number): LatchkeyError => {
      const e = outcomes.get(s)?.resumeError;
      return e === undefined ? new LatchkeyError('SESSION_EXPIRED', 'the session could not be resumed: the server does not resume it') : fromWireError(e);
    };
    // Held locks the server still holds that the client gave up meanwhile (its window passed, released): hand them back.
    for (const [s, o] of outcomes) {
      if (o.resumed !== true) continue;
      for (const h of o.locks ?? []) {
        const it = claim.kept.get(h)?.resumeClaim();
        if (it?.kind !== 'held') link.request('release', { lock: h }, s).catch(() => {});
      }
    }
    // Every claim read before any member is told (a session's end would take its locks' claims with it).
    const items = [...claim.kept].map(([h, m]) => ({ h, m, it: m.resumeClaim() }));
    claim.kept.clear();
    for (const { h, m, it } of items) {
      let keep = false;
      let why: LatchkeyError;
      // LockState.linkLost puts 'lock lost with the connection: ' before a LOCK_LOST's message.
      if (it === undefined) why = new LatchkeyError('LOCK_LOST', 'it was given up meanwhile');
      else if (it.kind === 'session') {
        keep = outcomes.get(h)?.resumed === true;
        why = notResumed(h);
      } else if (outcomes.get(it.s)?.resumed !== true) {
        const e = notResumed(it.s);
        why = it.kind === 'held' ? new LatchkeyError('LOCK_LOST', `the session could not be resumed: ${e.message}`, { cause: e }) : e;
      } else if (it.kind === 'held') {
        keep = carried(it.s, 'locks', h);
        why = new LatchkeyError('LOCK_LOST', 'it was not held when the session was resumed');
      } else {
        keep = carried(it.s, 'waits', h);
        why = new LatchkeyError('CONNECTION_LOST', 'the lock request did not reach the store before the connection was lost');
      }
      if (keep) {
        this.members.set(h, m);
        m.resumed(this.generation);
      } else m.linkLost(why);
    }
  }

  /** No resume: the kept locks are lost with `e`. */
  private dropClaim(e: LatchkeyError): void {
    const claim = this.claim;
    if (claim === undefined) return;
    this.claim = undefined;
    clearTimeout(claim.timer);
    const kept = [...claim.kept.values()];
    claim.kept.clear();
    for (const m of kept) m.linkLost(e);
  }

  /** No more links: fail whoever waits for one, and every follower. */
  private end(e: LatchkeyError): void {
    for (const w of [...this.linkWaiters]) w.reject(e);
    this.linkWaiters.clear();
    for (const f of [...this.followers]) f.connectionEnded(e);
  }

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
          this.end(e);
          return;
        }
        this.scheduleReconnect();
      });
    }, ms);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.owned.dispose();
  }
}
