/**
 * A link: one live connection to a server — socket, handshake, requests by
 * id, pushed messages. It never reconnects; when it dies, every request in
 * flight fails CONNECTION_LOST (a request is never resent: the server may
 * have executed it) and the owner (store.ts) decides what comes next.
 */
import net from 'node:net';
import tls from 'node:tls';
import { LatchkeyError } from '../core/errors.js';
import { type Decoded, encodeHello, packBody, packBodySplit, parseResult, serverMessageDecoder } from '../protocol/codec.js';
import { FrameBatch } from '../protocol/frame.js';
import { MAX_REPLY_FRAME } from '../protocol/limits.js';
import {
  type Args, type RequestOp, type Result, type ServerMessage, type WelcomeBody,
  PROTOCOL_MAGIC, SUPPORTED_VERSIONS, fromWireError,
} from '../protocol/messages.js';

export type Address =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number; tls: boolean };

export interface LinkOptions {
  token?: string;
  name?: string;
  /** TLS: trusted CA certificates (PEM); rejectUnauthorized stays on. */
  ca?: string | Buffer;
  /** TLS: accept a certificate no CA vouches for (tests, self-signed setups). */
  insecureTls?: boolean;
  connectTimeoutMs?: number;
  /**
   * Give the lease up this many milliseconds earlier still (`latchkey lock`
   * takes CMD's kill grace out of it, so CMD is dead before the server can
   * grant the lock to anyone else).
   */
  leaseMarginMs?: number;
  /** Ask the server to resume this session (docs/protocol.md, "Resuming a session"); set by the connection after a lost link. */
  resume?: { session: string; secret: string; locks: Array<{ l: number; token: number }> };
}

/**
 * The lease arithmetic (docs/architecture.md, "Leases"). The server ends a
 * session `ttl` after the last message it received, on its monotonic clock.
 * The client measures from the *send* time of the latest request that was
 * answered, S: the server received that request after S, so it cannot end
 * the session before S + ttl of server time. Clock rates differ by at most
 * LEASE_DRIFT each way, so that is at least S + ttl/(1+ρ)² of client time.
 * The client gives up earlier still, by LEASE_SLACK·ttl, for its own timer
 * firing late under load (measured: tens of milliseconds on a loaded
 * machine; a longer pause of the process is not covered — fencing tokens
 * are), and by the caller's margin.
 */
export const LEASE_DRIFT = 0.01;
export const LEASE_SLACK = 0.25;

/** How long after S the client considers its session alive, for a server lease of `ttl` ms. */
export function clientLeaseMs(ttl: number, marginMs = 0): number {
  return Math.floor(ttl / (1 + LEASE_DRIFT) ** 2 - ttl * LEASE_SLACK - marginMs);
}

export type Push = Exclude<ServerMessage, { t: 'ok' } | { t: 'err' } | { t: 'welcome' }>;

export interface LinkHandlers {
  push(m: Push): void;
  /** Called once when the link is gone; `error` says why (CONNECTION_LOST, or what the server's bye said). */
  lost(error: LatchkeyError): void;
}

/**
 * Parses a server address, or several: `tcp://h1:p1,h2:p2` (or `tls://…`)
 * names front-ends of one store (`serve --backend etcd`, docs/etcd.md); the
 * client connects to the first that answers and, when its link is lost,
 * reconnects to the next.
 */
export function parseAddresses(url: string): Address[] {
  const m = /^(tcp|tls):\/\/([^/?#]*,[^/?#]*)(\/?)$/.exec(url);
  if (m === null) return [parseAddress(url)];
  const hosts = m[2]!.split(',');
  if (hosts.some((h) => h === '')) throw new LatchkeyError('INVALID_ARGUMENT', `empty address in ${url} (tcp://host:port,host:port)`);
  return hosts.map((h) => parseAddress(`${m[1]}://${h}`));
}

export function parseAddress(url: string): Address {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LatchkeyError('INVALID_ARGUMENT', `not a latchkey address: ${url} (unix:///path, tcp://host:port, tls://host:port)`);
  }
  if (u.protocol === 'unix:') {
    const path = decodeURIComponent(u.pathname);
    if (path === '') throw new LatchkeyError('INVALID_ARGUMENT', `unix address without a path: ${url}`);
    return { kind: 'unix', path };
  }
  if (u.protocol === 'tcp:' || u.protocol === 'tls:') {
    const port = Number(u.port);
    if (u.hostname === '' || !Number.isInteger(port) || port <= 0) throw new LatchkeyError('INVALID_ARGUMENT', `address needs host:port: ${url}`);
    return { kind: 'tcp', host: u.hostname.replace(/^\[|\]$/g, ''), port, tls: u.protocol === 'tls:' };
  }
  throw new LatchkeyError('INVALID_ARGUMENT', `unknown scheme ${u.protocol} in ${url} (unix:, tcp:, tls:)`);
}

/** The buffer a plain socket reads into (reused for every read). */
const READ_BUFFER = 256 * 1024;

interface Pending {
  readonly op: RequestOp;
  /** A `get` whose value goes into this buffer (requestInto): the frame reader may put it there as it arrives. */
  readonly into?: Uint8Array;
  /** When it was sent (performance.now): an answer proves the server saw us after this. */
  readonly sent: number;
  resolve(r: unknown): void;
  reject(e: LatchkeyError): void;
}

/** What a requestInto answers: the entry without its value (in the caller's buffer), and the value's length. */
export interface ReadIntoResult {
  readonly length: number;
  readonly entry: Result<'get'> & object;
}

function intoResult(r: Result<'get'>, into: Uint8Array, sunk: number | undefined): ReadIntoResult | null {
  if (r === null) return null;
  if (sunk !== undefined) return { length: sunk, entry: r };
  const v = r.value;
  if (v.length > into.length) {
    throw new LatchkeyError('TOO_LARGE', `readInto: the value at ${r.path} is ${v.length} bytes, the target ${into.length}`, { path: r.path });
  }
  into.set(v);
  return { length: v.length, entry: r };
}

export class Link {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly decoder = serverMessageDecoder(MAX_REPLY_FRAME);
  private dead: LatchkeyError | undefined;
  welcome!: WelcomeBody;
  /** Highest store revision any message carried. */
  revision = 0;
  private readonly out = new FrameBatch();
  private flushQueued = false;
  private pinger: NodeJS.Timeout | undefined;
  /** Send time of the latest answered request (see clientLeaseMs). */
  private leaseFrom = performance.now();
  private leaseTimer: NodeJS.Timeout | undefined;
  /** The client's lease, ms after leaseFrom (0: the server set no ttl). */
  leaseMs = 0;
  /** close() ended the socket after its goodbye: die must not reset it. */
  private graceful = false;

  private constructor(private readonly socket: net.Socket, private readonly handlers: LinkHandlers, private readonly leaseMarginMs = 0) {
    // A large reply to a requestInto is read straight into the caller's buffer, not into a frame of its own.
    this.decoder.sink = (id) => this.pending.get(id)?.into;
  }

  /** @internal The connection's socket (`latchkey lock` hands it to its guardian process). */
  get rawSocket(): net.Socket {
    return this.socket;
  }

  /** Connects and completes the handshake. Rejects with the server's reason (AUTH, PROTOCOL, QUOTA…) or CONNECTION_LOST. */
  static open(addr: Address, opts: LinkOptions, handlers: LinkHandlers): Promise<Link> {
    return new Promise((resolve, reject) => {
      let sock: net.Socket;
      const event = addr.kind === 'tcp' && addr.tls ? 'secureConnect' : 'connect';
      // Plain sockets read into one reused buffer (the frame reader copies out what it keeps, synchronously):
      // a fresh 64 KiB chunk per read was most of the collector's work on a large value's reply.
      let link: Link | undefined;
      const onread = { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: (n: number, buf: Uint8Array): boolean => { link?.onData(buf.subarray(0, n)); return true; } };
      if (addr.kind === 'unix') sock = net.connect({ path: addr.path, onread });
      else if (addr.tls) {
        const o: tls.ConnectionOptions = { host: addr.host, port: addr.port };
        if (net.isIP(addr.host) === 0) o.servername = addr.host;
        if (opts.ca !== undefined) o.ca = opts.ca;
        if (opts.insecureTls) o.rejectUnauthorized = false;
        sock = tls.connect(o);
      } else sock = net.connect({ host: addr.host, port: addr.port, onread });
      let settled = false;
      const fail = (e: LatchkeyError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.destroy();
        reject(e);
      };
      const timer = setTimeout(() => fail(new LatchkeyError('CONNECTION_LOST', `connecting timed out after ${opts.connectTimeoutMs ?? 10_000} ms`)), opts.connectTimeoutMs ?? 10_000);
      timer.unref();
      link = new Link(sock, {
        push: (m) => handlers.push(m),
        lost: (e) => {
          if (!settled) fail(e);
          else handlers.lost(e);
        },
      }, opts.leaseMarginMs);
      sock.on('error', (e) => link.die(new LatchkeyError('CONNECTION_LOST', `connection failed: ${e.message}`, { cause: e })));
      sock.on('close', () => link.die(new LatchkeyError('CONNECTION_LOST', 'the connection closed')));
      if (addr.kind === 'tcp' && addr.tls) sock.on('data', (chunk: Buffer) => link!.onData(chunk));
      link.onWelcome = (w) => {
        if (settled) return;
        if (w.ttlMs > 0 && clientLeaseMs(w.ttlMs, opts.leaseMarginMs) < w.ttlMs / 3) {
          fail(new LatchkeyError('INVALID_ARGUMENT', `a lease margin of ${opts.leaseMarginMs ?? 0} ms leaves too little of the server's ${w.ttlMs} ms lease (a ping goes every ${Math.floor(w.ttlMs / 3)} ms)`));
          return;
        }
        settled = true;
        clearTimeout(timer);
        link.welcome = w;
        link.revision = w.revision;
        // A session resumable within resumeMs of an answer: pings keep that window mostly ahead (see resumeWindowMs).
        const resumeWindow = link.resumeWindowMs;
        if (w.ttlMs > 0 || resumeWindow > 0) {
          // Three pings per window, as the server has three per lease: the client's window
          // (less its margin, e.g. lock -- CMD's kill grace) is the shorter, so it sets the pace.
          const windows = [...(w.ttlMs > 0 ? [w.ttlMs, clientLeaseMs(w.ttlMs, opts.leaseMarginMs)] : []), ...(resumeWindow > 0 ? [resumeWindow] : [])];
          link.startPings(Math.min(...windows));
          link.startLease(w.ttlMs, resumeWindow);
        }
        resolve(link);
      };
      sock.once(event, () => {
        if (addr.kind === 'tcp') sock.setNoDelay(true);
        const hello: { magic: typeof PROTOCOL_MAGIC; versions: number[]; token?: string; name?: string; resume?: LinkOptions['resume'] } = { magic: PROTOCOL_MAGIC, versions: [...SUPPORTED_VERSIONS] };
        if (opts.token !== undefined) hello.token = opts.token;
        if (opts.name !== undefined) hello.name = opts.name;
        if (opts.resume !== undefined) hello.resume = opts.resume;
        link.leaseFrom = performance.now(); // the welcome answers this hello
        sock.write(encodeHello(hello));
      });
    });
  }

  private onWelcome: (w: WelcomeBody) => void = () => {};

  /**
   * How long after `answeredFrom` the session's locks stay safe once this
   * link is lost, while the client resumes it elsewhere (0: not resumable).
   * The server's `resumeMs` says the session outlives its answer to a
   * request by that much; the client takes the same drift and slack off as
   * for its own lease (clientLeaseMs) and its margin.
   */
  get resumeWindowMs(): number {
    const r = this.welcome?.resumeMs ?? 0;
    return this.welcome?.secret === undefined || r <= 0 ? 0 : Math.max(0, clientLeaseMs(r, this.leaseMarginMs));
  }

  /** Send time of the latest answered request (performance.now). */
  get answeredFrom(): number {
    return this.leaseFrom;
  }

  get alive(): boolean {
    return this.dead === undefined;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  private onData(chunk: Uint8Array): void {
    let items: Decoded<ServerMessage>[];
    try {
      items = this.decoder.push(chunk);
    } catch (e) {
      this.die(new LatchkeyError('PROTOCOL', `decoder failed: ${(e as Error).message}`));
      return;
    }
    for (const it of items) {
      if (this.dead !== undefined) return;
      if (it.type !== 'message') {
        this.die(it.error);
        return;
      }
      this.onMessage(it.message, it.sunk);
    }
  }

  private onMessage(m: ServerMessage, sunk?: number): void {
    switch (m.t) {
      case 'welcome':
        this.onWelcome(m);
        return;
      case 'ok': {
        if (m.rev > this.revision) this.revision = m.rev;
        const p = this.pending.get(m.id);
        if (p === undefined) return; // a reply to nothing we wait for: ignore it
        this.pending.delete(m.id);
        if (p.sent > this.leaseFrom) this.leaseFrom = p.sent;
        try {
          const r = parseResult(p.op, m.r);
          p.resolve(p.into === undefined ? r : intoResult(r as Result<'get'>, p.into, sunk));
        } catch (e) {
          p.reject(e as LatchkeyError);
        }
        return;
      }
      case 'err': {
        const p = this.pending.get(m.id);
        if (p === undefined) return;
        this.pending.delete(m.id);
        if (p.sent > this.leaseFrom) this.leaseFrom = p.sent;
        p.reject(fromWireError(m.e));
        return;
      }
      case 'bye':
        this.die(fromWireError(m.e));
        return;
      default:
        if (m.t === 'event') for (const e of m.ev) if (e.revision > this.revision) this.revision = e.revision;
        this.handlers.push(m);
    }
  }

  private startPings(windowMs: number): void {
    // A ping every window/3 keeps both leases (the lease timer decides when it is lost).
    const every = Math.max(10, Math.floor(windowMs / 3));
    this.pinger = setInterval(() => {
      this.request('ping', {}).catch(() => {});
    }, every);
    this.pinger.unref();
  }

  /**
   * Gives the session up, strictly before the server can expire it: at
   * leaseFrom + leaseMs (clientLeaseMs) every request in flight fails, the
   * link refuses new ones, and the owner is told SESSION_EXPIRED.
   *
   * A resumable session (resumeWindowMs > 0: a front-end over etcd, whose
   * lease lives only that long after its last answer) bounds the silence
   * sooner: after two thirds of the window with no answer the link is
   * dropped as lost, so the last third is left to resume the session on
   * another front-end. Without it a hung front-end (stopped, its socket
   * still open) let the client trust its locks for the whole TCP lease,
   * past the etcd lease that the stopped front-end no longer kept alive.
   */
  private startLease(ttl: number, resumeWindow: number): void {
    const silentMs = resumeWindow > 0 ? Math.max(1, Math.floor((resumeWindow * 2) / 3)) : Infinity;
    if (ttl <= 0 && silentMs === Infinity) return;
    const expires = ttl > 0 ? clientLeaseMs(ttl, this.leaseMarginMs) : Infinity;
    this.leaseMs = Math.min(expires, silentMs);
    const check = (): void => {
      if (this.dead !== undefined) return;
      const left = this.leaseFrom + this.leaseMs - performance.now();
      if (left <= 0) {
        const quiet = Math.round(performance.now() - this.leaseFrom);
        if (silentMs <= expires) {
          this.die(new LatchkeyError('CONNECTION_LOST', `no answer to a request sent in the last ${quiet} ms: the link is given up to resume the session elsewhere within its ${resumeWindow} ms window`));
        } else {
          this.die(new LatchkeyError('SESSION_EXPIRED', `no answer to a request sent in the last ${quiet} ms: the session is given up before the server's ${ttl} ms lease can end it`));
        }
        return;
      }
      this.leaseTimer = setTimeout(check, Math.ceil(left));
      this.leaseTimer.unref();
    };
    check();
  }

  /**
   * A `get` whose value is read into `into` (Transaction.readInto): a large
   * reply's value goes there straight from the socket's chunks (frame.ts,
   * FrameSink), a small one is copied. Bytes of `into` past the value are
   * left as they were; TOO_LARGE when the value does not fit (`into` may
   * then hold part of it). Until this settles, `into` belongs to the link.
   */
  requestInto(args: Args<'get'>, into: Uint8Array, session = 0): Promise<ReadIntoResult | null> {
    return this.request('get', args, session, undefined, into) as unknown as Promise<ReadIntoResult | null>;
  }

  request<K extends RequestOp>(op: K, args: Args<K>, session = 0, signal?: AbortSignal, into?: Uint8Array): Promise<Result<K>> {
    if (this.dead !== undefined) return Promise.reject(this.dead);
    let id = this.nextId;
    while (this.pending.has(id)) id = id >= 0xffff_ffff ? 1 : id + 1;
    this.nextId = id >= 0xffff_ffff ? 1 : id + 1;
    let body: Uint8Array;
    let tail: Uint8Array | undefined;
    try {
      // Into a scratch buffer: `write` below copies it into the batch before anything else encodes.
      // A large value (a BigFile block) is left out of it and copied once, into a buffer of its own
      // that is written after the frame's head: no frame-sized batch buffer to grow and zero-fill.
      const split = packBodySplit(session === 0 ? { t: 'req', op, a: args } : { t: 'req', op, s: session, a: args });
      body = split.head;
      if (split.tail !== undefined) {
        tail = Buffer.allocUnsafe(split.tail.length);
        tail.set(split.tail);
      }
    } catch (e) {
      return Promise.reject(new LatchkeyError('INVALID_ARGUMENT', `${op}: cannot encode the request: ${(e as Error).message}`));
    }
    const size = body.length + (tail?.length ?? 0);
    if (size > this.welcome.limits.maxFrame) {
      return Promise.reject(new LatchkeyError('TOO_LARGE', `${op} request of ${size} bytes exceeds the server's frame limit of ${this.welcome.limits.maxFrame}`, { info: { size, limit: this.welcome.limits.maxFrame } }));
    }
    return new Promise<Result<K>>((resolve, reject) => {
      this.pending.set(id, { op, sent: performance.now(), resolve: resolve as (r: unknown) => void, reject, ...(into !== undefined ? { into } : {}) });
      this.write(id, body, tail);
      if (signal !== undefined) {
        // Cancelling asks the server; the request still ends with its reply (ABORTED, or the result if it won the race).
        const onAbort = (): void => {
          if (this.pending.has(id) && this.dead === undefined) this.write(id, packBody({ t: 'cancel' }));
        };
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  /** Queues a frame; frames queued in the same tick leave in one write. */
  private write(id: number, body: Uint8Array, tail?: Uint8Array): void {
    this.out.addSplit(id, body, tail);
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(() => {
        this.flushQueued = false;
        if (this.dead === undefined) this.flushOut();
      });
    }
  }

  /** Writes what is queued, in order (several segments when large values are queued: one writev). */
  private flushOut(): void {
    const parts = this.out.takeParts();
    if (parts.length === 1) this.socket.write(parts[0]!);
    else if (parts.length > 1) {
      this.socket.cork();
      for (const p of parts) this.socket.write(p);
      this.socket.uncork();
    }
  }

  /** The link is gone: fail what is in flight, tell the owner once. */
  die(error: LatchkeyError): void {
    if (this.dead !== undefined) return;
    this.dead = error;
    if (this.pinger !== undefined) clearInterval(this.pinger);
    if (this.leaseTimer !== undefined) clearTimeout(this.leaseTimer);
    if (!this.graceful) this.socket.destroy();
    const lost = error.code === 'CONNECTION_LOST' || error.code === 'CLOSED' ? error : new LatchkeyError('CONNECTION_LOST', `connection lost: ${error.message}`, { cause: error });
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(lost);
    this.handlers.lost(error);
  }

  /**
   * Closes the link on purpose. Says `goodbye` first: over TCP the server
   * otherwise holds the session's locks until its lease runs out (it cannot
   * tell a close from a cut), and the FIN follows the frame (end, not a reset).
   */
  close(): void {
    if (this.dead === undefined && this.welcome !== undefined) {
      this.request('goodbye', {}).catch(() => {});
      this.flushOut();
      this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), 1000);
      t.unref();
      this.socket.once('close', () => clearTimeout(t));
      this.graceful = true;
    }
    this.die(new LatchkeyError('CLOSED', 'the client closed the connection'));
  }
}
