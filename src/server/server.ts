/**
 * The server: serves one embedded store on a Unix socket and, when asked, on
 * TCP (optionally TLS). Each accepted connection is a Connection
 * (connection.ts) whose sessions live exactly as long as it does.
 *
 * Trust: the Unix socket is created mode 0600, so only its owner can
 * connect; without an auth table its clients may do anything. TCP demands a
 * token from the auth table, unless the server was started with
 * `insecureLoopback` on a loopback address. With an auth table every client,
 * Unix or TCP, must present a token and gets that token's grants.
 *
 * `close()` is the graceful shutdown: stop accepting, let every connection
 * finish its requests in flight and end its sessions cleanly, remove the
 * socket file. The caller then closes the store (which drains the commit
 * pipeline: every acknowledged commit is durable before the process exits).
 */
import { chmodSync, existsSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { LatchkeyError } from '../core/errors.js';
import type { ServedStore } from './served.js';
import { AsyncDisposableStack } from '../util/disposable.js';
import { encodeServer } from '../protocol/codec.js';
import { DEFAULT_LIMITS, type Limits } from '../protocol/limits.js';
import type { AuthTable } from './auth.js';
import { DEFAULT_MAX_MEMORY, MemoryBudget } from './budget.js';
import { Connection } from './connection.js';

export interface ServeOptions {
  /** Unix socket path; none when undefined. */
  socket?: string;
  /** TCP address to listen on. Port 0 picks a free one. */
  listen?: { host: string; port: number };
  /** PEM certificate and key (file paths) for TLS on the TCP listener. */
  tls?: { cert: string; key: string };
  auth?: AuthTable;
  /** Allow TCP clients without a token; only on a loopback address. */
  insecureLoopback?: boolean;
  limits?: Partial<Limits>;
  /**
   * Server-wide memory budget in bytes (default 1 GiB) for what clients make
   * it hold: requests in flight, open transactions, queued replies, watch
   * backlogs (budget.ts). Past it the largest holder is closed with BUSY.
   */
  maxMemory?: number;
  /** Heartbeat lease of TCP sessions (default 10 s). */
  ttlMs?: number;
  /** Time a new connection has to send its hello (default 10 s), then it is closed. */
  helloTimeoutMs?: number;
  /** Call `onIdle` once no client has been connected for this long (from start, or since the last one left). */
  idleExitMs?: number;
  onIdle?: () => void;
}

export const DEFAULT_TTL_MS = 10_000;

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export class LatchkeyServer {
  private readonly connections = new Set<Connection>();
  /**
   * What the server made, released by `close()` in reverse order: each
   * listener (stop accepting, shut the connections down, wait for it), then
   * the Unix socket's file, then the idle timer.
   */
  private readonly owned = new AsyncDisposableStack();
  private closing: Promise<void> | undefined;
  private connectionsShut: Promise<unknown> | undefined;
  readonly limits: Limits;
  /** Where it listens (for printing, and for tests). */
  socketPath: string | undefined;
  tcpAddress: { host: string; port: number } | undefined;
  private accepted = 0;
  private refused = 0;
  readonly budget: MemoryBudget;

  private constructor(readonly store: ServedStore, private readonly opts: ServeOptions) {
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    const max = opts.maxMemory ?? DEFAULT_MAX_MEMORY;
    if (!Number.isSafeInteger(max) || max < 1024 * 1024) throw new LatchkeyError('INVALID_ARGUMENT', 'serve: maxMemory must be at least 1 MiB');
    this.budget = new MemoryBudget(max);
    this.owned.defer(() => clearTimeout(this.idleTimer));
  }

  static async start(store: ServedStore, opts: ServeOptions): Promise<LatchkeyServer> {
    const s = new LatchkeyServer(store, opts);
    if (opts.socket === undefined && opts.listen === undefined) throw new LatchkeyError('INVALID_ARGUMENT', 'serve: give a socket path, a TCP address, or both');
    if (opts.listen !== undefined && opts.auth === undefined) {
      if (!opts.insecureLoopback) throw new LatchkeyError('INVALID_ARGUMENT', 'serve: TCP needs an auth file (--auth), or --insecure-loopback on a loopback address');
      if (!isLoopback(opts.listen.host)) throw new LatchkeyError('INVALID_ARGUMENT', `serve: --insecure-loopback refuses to listen on ${opts.listen.host}, which is not a loopback address`);
    }
    try {
      if (opts.socket !== undefined) await s.listenUnix(opts.socket);
      if (opts.listen !== undefined) await s.listenTcp(opts.listen.host, opts.listen.port);
    } catch (e) {
      await s.close();
      throw e;
    }
    s.armIdle();
    return s;
  }

  private async listenUnix(path: string): Promise<void> {
    if (existsSync(path)) {
      // A socket file left by a dead server is removed; a live server keeps it; anything else is not ours to delete.
      if (!statSync(path).isSocket()) throw new LatchkeyError('EXISTS', `${path} exists and is not a socket`, { path });
      if (await isServing(path)) throw new LatchkeyError('EXISTS', `a server is already listening on ${path}`, { path });
      unlinkSync(path);
    }
    const server = net.createServer((sock) => this.accept(sock, 'unix'));
    // Create the socket file 0600 from the start (no window where others may connect).
    const old = process.umask(0o177);
    try {
      await listen(server, { path });
    } finally {
      process.umask(old);
    }
    this.owned.defer(() => {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    });
    this.own(server);
    chmodSync(path, 0o600);
    this.socketPath = path;
  }

  private async listenTcp(host: string, port: number): Promise<void> {
    const onSocket = (sock: net.Socket): void => {
      sock.setNoDelay(true);
      this.accept(sock, 'tcp');
    };
    let server: net.Server;
    if (this.opts.tls !== undefined) {
      let cert: Buffer;
      let key: Buffer;
      try {
        cert = readFileSync(this.opts.tls.cert);
        key = readFileSync(this.opts.tls.key);
      } catch (e) {
        throw new LatchkeyError('INVALID_ARGUMENT', `cannot read TLS certificate or key: ${(e as Error).message}`, { cause: e });
      }
      server = tls.createServer({ cert, key }, onSocket);
      server.on('tlsClientError', () => {}); // a failed handshake concerns that client only
    } else {
      server = net.createServer(onSocket);
    }
    await listen(server, { host, port });
    this.own(server);
    const a = server.address();
    if (a !== null && typeof a === 'object') this.tcpAddress = { host: a.address, port: a.port };
  }

  private accept(sock: net.Socket, transport: 'unix' | 'tcp'): void {
    if (this.closing !== undefined || this.connections.size >= this.limits.maxConnections) {
      this.refused++;
      const e = this.closing !== undefined ? { code: 'CLOSED', message: 'the server is shutting down' } : { code: 'QUOTA', message: `the server has ${this.limits.maxConnections} connections` };
      sock.on('error', () => {});
      sock.resume(); // read (and drop) its input, so its end is seen and the socket closes
      sock.end(encodeServer(0, { t: 'bye', e }));
      // Not unref'd: a server closing must not wait on this socket, nor exit before it is gone.
      const t = setTimeout(() => sock.destroy(), 1000);
      sock.once('close', () => clearTimeout(t));
      return;
    }
    this.accepted++;
    const c = new Connection(sock, {
      store: this.store,
      limits: this.limits,
      ttlMs: transport === 'tcp' ? this.opts.ttlMs ?? DEFAULT_TTL_MS : 0,
      auth: this.opts.auth,
      transport,
      helloTimeoutMs: this.opts.helloTimeoutMs ?? 10_000,
      stats: () => this.stats(),
      budget: this.budget,
      closed: (conn) => {
        this.connections.delete(conn);
        this.armIdle();
      },
    });
    this.connections.add(c);
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }

  private idleTimer: NodeJS.Timeout | undefined;

  /** With `idleExitMs`, starts counting when the last connection is gone. */
  private armIdle(): void {
    const ms = this.opts.idleExitMs;
    if (ms === undefined || this.connections.size > 0 || this.closing !== undefined || this.idleTimer !== undefined) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.connections.size === 0 && this.closing === undefined) this.opts.onIdle?.();
    }, ms);
  }

  stats(): Record<string, unknown> {
    let watches = 0;
    let watchBacklog = 0;
    for (const c of this.connections) {
      const b = c.watchBacklog();
      watches += b.watches;
      watchBacklog += b.events;
    }
    return { connections: this.connections.size, accepted: this.accepted, refused: this.refused, watches, watchBacklog, ...this.budget.stats() };
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** A listener is closed with the server: it stops accepting, the connections shut down, then its close completes. */
  private own(listener: net.Server): void {
    this.owned.defer(async () => {
      // A listener's close completes only once its connections are gone: start it, end them, then wait.
      const stopped = new Promise<void>((resolve) => listener.close(() => resolve()));
      await this.shutConnections();
      await stopped;
    });
  }

  /** Graceful close of every connection, once. */
  private shutConnections(): Promise<unknown> {
    return (this.connectionsShut ??= Promise.allSettled([...this.connections].map((c) => c.shutdown())));
  }

  /** Graceful shutdown; idempotent. Does not close the store. */
  close(): Promise<void> {
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    // `closing` is set before anything is released: from here on connections are refused.
    this.closing ??= Promise.resolve().then(() => this.owned.disposeAsync());
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function listen(server: net.Server, opts: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => reject(new LatchkeyError('INVALID_ARGUMENT', `cannot listen on ${opts.path ?? `${opts.host}:${opts.port}`}: ${e.message}`, { cause: e }));
    server.once('error', onError);
    server.listen(opts, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** True when something accepts connections on the Unix socket at `path`. */
function isServing(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function serve(store: ServedStore, opts: ServeOptions): Promise<LatchkeyServer> {
  return LatchkeyServer.start(store, opts);
}
