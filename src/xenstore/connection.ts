/**
 * One XenStore client connection: a latchkey session, its transactions and
 * watches, and the ordering of its requests. It belongs to a domain (dom0
 * for the Unix socket, a guest for its per-domain transport) and speaks
 * through an `XsTransport`, so the same code would serve a shared ring.
 *
 * Ordering. xenstored answers a connection's requests in the order received
 * and each request sees the effects of the ones before it. Requests are
 * therefore executed one after the other; a request whose handler returns a
 * promise (a commit) holds the next one back until it settles. Clients may
 * still pipeline: everything received is queued (up to `maxOutstanding`,
 * after which the socket stops being read). Replies are batched: the replies
 * to everything one socket read brought (and one settled commit let run)
 * leave in one socket write at the end of that callback; anything sent
 * outside such a batch (a watch event fired by another connection's commit)
 * goes out in one write per event-loop turn.
 *
 * Bounds. Payloads over the limit close the connection (xenstored does the
 * same: the stream cannot be resynchronised). Unread output beyond
 * `maxQueuedOutputBytes` — a client that stopped reading its watch events —
 * closes the connection too, so memory stays bounded. Bad requests get
 * ERROR replies. Nothing a client sends can throw into the event loop.
 *
 * End. However the transport ends (or the domain is released), the session
 * ends: open transactions are dropped, watches removed, and latchkey locks
 * and ephemeral nodes of the session released.
 */
import type { EngineAccess, OwnedSession } from '../engine/access.js';
import { type DomainControl, type XsConnectionContext, type XsTx, dropAll, handlers } from './dispatch.js';
import type { ReadBarrier, XsDomain } from './domains.js';
import type { XsTransport } from './transport.js';
import { toErrno, xsError } from './errno.js';
import type { XenstoreLimits } from './limits.js';
import type { WatchHub, XsWatch } from './watches.js';
import {
  XsDecoder, type XsPacket, XsType, encodePacket, errorPayload, nulTerminated, typeName, type XsTypeName,
} from './wire.js';

export interface ConnectionHost {
  readonly engine: EngineAccess;
  readonly hub: WatchHub;
  readonly limits: XenstoreLimits;
  readonly domains: DomainControl;
  /** A store whose head moves by a watch (etcd): reads wait for writes acknowledged before they arrived. */
  readonly readBarrier?: ReadBarrier | undefined;
  newTxId(): number;
  log(message: string): void;
  closed(conn: XsConnection): void;
}

/** The handlers by message type number (a lookup by name per request was a measurable cost). */
const byType: ReadonlyArray<(typeof handlers)[XsTypeName] | undefined> = (() => {
  const t: Array<(typeof handlers)[XsTypeName] | undefined> = [];
  for (const [name, n] of Object.entries(XsType)) t[n] = handlers[name as XsTypeName];
  return t;
})();

export class XsConnection implements XsConnectionContext {
  readonly txs = new Map<number, XsTx>();
  readonly watches = new Map<string, XsWatch>();
  private readonly decoder: XsDecoder;
  private readonly queue: XsPacket[] = [];
  /** With a read barrier: each queued packet's ticket, taken when it arrived (same indices as `queue`). */
  private readonly tickets: number[] | undefined;
  private queueHead = 0;
  private busy = false;
  private paused = false;
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  /** Inside onData or a settled request's continuation: replies wait for its end, then leave in one write. */
  private batching = false;
  private pendingAfterReply: Array<() => void> | undefined;
  private ended = false;
  private overflowed = false;
  /** Counters for stats and tests. */
  requests = 0;
  errors = 0;
  events = 0;

  constructor(
    private readonly transport: XsTransport,
    private readonly session: OwnedSession,
    private readonly host: ConnectionHost,
    readonly domain: XsDomain,
  ) {
    this.decoder = new XsDecoder(host.limits.maxPayload);
    this.tickets = host.readBarrier === undefined ? undefined : [];
    domain.members.add(this);
    transport.start({
      data: (chunk) => this.onData(chunk),
      close: () => this.end(),
      drain: () => this.maybeResume(),
    });
  }

  get requester(): XsDomain { return this.domain; }
  get domains(): DomainControl { return this.host.domains; }
  get engine(): EngineAccess { return this.host.engine; }
  get hub(): WatchHub { return this.host.hub; }
  get limits(): XenstoreLimits { return this.host.limits; }
  get sessionId(): string { return this.session.id; }
  newTxId(): number { return this.host.newTxId(); }
  log(message: string): void { this.host.log(message); }

  private get queued(): number {
    return this.queue.length - this.queueHead;
  }

  private onData(chunk: Uint8Array): void {
    if (this.ended) return;
    this.batching = true;
    try {
      this.receive(chunk);
    } finally {
      this.batching = false;
    }
    this.flush();
  }

  private receive(chunk: Uint8Array): void {
    this.decoder.push(chunk);
    const ticket = this.tickets === undefined ? 0 : this.host.readBarrier!.ticket();
    for (;;) {
      const ev = this.decoder.next();
      if (ev === undefined) break;
      if (ev.kind === 'oversized') {
        this.host.log(`xenstore: closing a connection that sent a ${ev.len}-byte payload (limit ${this.limits.maxPayload})`);
        this.destroy();
        return;
      }
      this.queue.push(ev.packet);
      if (this.tickets !== undefined) this.tickets[this.queue.length - 1] = ticket;
    }
    if (this.queued >= this.limits.maxOutstanding && !this.paused) {
      this.paused = true;
      this.transport.pause();
    }
    this.pump();
  }

  /** Executes queued requests in order until one has to wait. */
  private pump(): void {
    while (!this.busy && !this.ended && this.queued > 0) {
      const p = this.queue[this.queueHead]!;
      const ticket = this.tickets?.[this.queueHead];
      this.queue[this.queueHead++] = undefined as unknown as XsPacket;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue.splice(0, this.queueHead);
        this.tickets?.splice(0, this.queueHead);
        this.queueHead = 0;
      }
      this.requests++;
      let r: Uint8Array | Promise<Uint8Array>;
      try {
        r = ticket === undefined ? this.run(p) : this.runAfterBarrier(p, ticket);
      } catch (e) {
        this.replyError(p, e);
        continue;
      }
      if (r instanceof Uint8Array) {
        this.reply(p, r);
        continue;
      }
      this.busy = true;
      r.then((payload) => this.settled(p, payload, undefined), (e: unknown) => this.settled(p, undefined, e));
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      if (this.tickets !== undefined) this.tickets.length = 0;
      this.queueHead = 0;
    }
    this.maybeResume();
  }

  /** A request that had to wait (a commit) settled: its reply, then the requests queued behind it, in one batch. */
  private settled(p: XsPacket, payload: Uint8Array | undefined, e: unknown): void {
    this.busy = false;
    this.batching = true;
    try {
      if (payload !== undefined) this.reply(p, payload);
      else this.replyError(p, e);
      this.pump();
    } finally {
      this.batching = false;
    }
    this.flush();
  }

  private run(p: XsPacket): Uint8Array | Promise<Uint8Array> {
    const h = p.type < byType.length ? byType[p.type] : undefined;
    if (h === undefined) throw xsError('ENOSYS', `unknown message type ${p.type}`);
    return h(this, p);
  }

  /**
   * A read outside a transaction (and a transaction's snapshot, its
   * permission re-check at TRANSACTION_END, and whether a domain is
   * introduced) sees every write acknowledged before the request arrived,
   * through any front-end: it waits for a barrier begun after its arrival
   * (one shared by all the requests that arrived meanwhile).
   */
  private runAfterBarrier(p: XsPacket, ticket: number): Uint8Array | Promise<Uint8Array> {
    const t = p.type;
    const read = t === XsType.TRANSACTION_START || t === XsType.TRANSACTION_END || t === XsType.IS_DOMAIN_INTRODUCED
      || (p.txId === 0 && (t === XsType.READ || t === XsType.DIRECTORY || t === XsType.DIRECTORY_PART || t === XsType.GET_PERMS));
    const w = read ? this.host.readBarrier!.wait(ticket) : undefined;
    if (w === undefined) return this.run(p);
    return w.then(() => {
      if (this.ended) throw xsError('EIO', 'the connection closed');
      return this.run(p);
    });
  }

  private reply(p: XsPacket, payload: Uint8Array): void {
    this.send(encodePacket(p.type, p.reqId, p.txId, payload));
    const after = this.pendingAfterReply;
    this.pendingAfterReply = undefined;
    if (after !== undefined) for (const f of after) f();
  }

  private replyError(p: XsPacket, e: unknown): void {
    this.pendingAfterReply = undefined;
    const { errno, expected } = toErrno(e);
    if (!expected) this.host.log(`xenstore: bug while handling ${typeName(p.type)}: ${(e as Error)?.stack ?? String(e)}`);
    this.errors++;
    this.send(encodePacket(XsType.ERROR, p.reqId, p.txId, errorPayload(errno)));
  }

  afterReply(fn: () => void): void {
    (this.pendingAfterReply ??= []).push(fn);
  }

  watchEvent(path: string, token: string): void {
    if (this.ended) return;
    this.events++;
    this.send(encodePacket(XsType.WATCH_EVENT, 0, 0, nulTerminated([path, token])));
  }

  /** Queues bytes for the socket; one write per event-loop turn carries everything queued. */
  private send(b: Uint8Array): void {
    if (this.ended || this.overflowed) return;
    this.out.push(b);
    this.outBytes += b.length;
    // The socket's own buffer is added at flush time; within one turn only our batch grows.
    if (this.outBytes > this.limits.maxQueuedOutputBytes) {
      this.overflow(this.outBytes);
      return;
    }
    if (!this.flushScheduled && !this.batching) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.ended || this.out.length === 0) return;
    const parts = this.out;
    const bytes = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    const unread = bytes + this.transport.pendingBytes;
    if (unread > this.limits.maxQueuedOutputBytes) {
      this.overflow(unread);
      return;
    }
    if (!this.transport.write(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes)) && !this.paused) {
      // The client is not reading its replies: stop reading its requests until it does ('drain').
      this.paused = true;
      this.transport.pause();
    }
  }

  private overflow(unread: number): void {
    if (this.overflowed) return;
    this.overflowed = true;
    this.out = [];
    this.outBytes = 0;
    this.host.log(`xenstore: closing a connection that does not read its replies and events (${unread} bytes unread)`);
    // Often reached from the engine's commit hook (a watch event): end the session outside it.
    queueMicrotask(() => this.destroy());
  }

  private maybeResume(): void {
    if (!this.paused || this.ended) return;
    if (this.queued < this.limits.maxOutstanding / 2 && !this.transport.needsDrain) {
      this.paused = false;
      this.transport.resume();
    }
  }

  /** Closes this connection only (bad input, or a client that stopped reading). */
  destroy(): void {
    this.transport.destroy();
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.out = [];
    this.queue.length = 0;
    if (this.tickets !== undefined) this.tickets.length = 0;
    this.queueHead = 0;
    dropAll(this);
    this.domain.members.delete(this);
    // A connection that vanishes is a session that died (its locks go to the next holder with ownerDied).
    const done = this.session.end(true);
    done.catch(() => {}).finally(() => this.host.closed(this));
  }
}
