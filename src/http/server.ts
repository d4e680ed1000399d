/**
 * `latchkey serve --http HOST:PORT`: metrics, health, and the web console.
 *
 *   GET /metrics        Prometheus text format (metrics.ts)
 *   GET /healthz        200 while the process serves HTTP at all
 *   GET /readyz         200 once recovery finished and the store serves; 503 with the reason otherwise
 *   GET /               the console (static files of console/, no CDN)
 *   GET /api/...        the console's JSON reads and its event stream (api.ts)
 *   POST /api/...       the console's writes (set, delete, reset a lock's taints)
 *
 * Trust (the same tokens and grants as the TCP listener, server/auth.ts):
 * with an auth table every /api and /metrics request carries
 * `Authorization: Bearer TOKEN` and gets that token's grants; without one
 * the listener must be on a loopback address and every request is
 * read-only on the whole tree (writes need a token that grants them). The
 * health probes and the console's static files carry no data and need no
 * token. Every response is sent with a strict Content-Security-Policy (the
 * page loads only its own script; stored values are shown as text, never
 * as HTML).
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LatchkeyError } from '../core/errors.js';
import type { Store } from '../api.js';
import { EmbeddedStore } from '../engine/store.js';
import type { AuthTable, Principal } from '../server/auth.js';
import { ConsoleApi } from './api.js';
import type { Logger } from './log.js';
import { Metrics } from './metrics.js';

export interface HttpOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** An embedded store (`open()` / `open(dir)`); a remote one is served with `latchkey serve --http` on its server. */
  readonly store: Store;
  /** The latchkey server's figures (connections, watches, memory) for /metrics and the console. */
  readonly serverStats?: () => Record<string, unknown>;
  readonly auth?: AuthTable;
  readonly log: Logger;
}

/** Without an auth table: read access to everything, no writes. */
export const LOOPBACK_READER: Principal = { name: 'loopback', grants: [{ prefix: '/', access: 'read' }] };

const SECURITY_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

const STATIC: Record<string, string> = {
  '/': 'index.html',
  '/index.html': 'index.html',
  '/console.js': 'console.js',
  '/console.css': 'console.css',
};
const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The console's files: `console/` at the package root (found from this module, in dist/ or build/). */
function consoleDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      readFileSync(path.join(dir, 'console', 'index.html'));
      return path.join(dir, 'console');
    } catch {
      dir = path.dirname(dir);
    }
  }
  throw new LatchkeyError('INTERNAL', 'the console\'s files (console/index.html) are missing from the package');
}

export class HttpServer {
  readonly metrics: Metrics;
  private readonly api: ConsoleApi;
  private readonly server: http.Server;
  private readonly assets = new Map<string, Buffer>();
  private ready = false;
  private notReady = 'starting';
  address: { host: string; port: number } | undefined;

  private readonly store: EmbeddedStore;

  private constructor(private readonly opts: HttpOptions) {
    if (!(opts.store instanceof EmbeddedStore)) throw new LatchkeyError('INVALID_ARGUMENT', 'startHttp needs an embedded store (open() or open(dir)); serve a remote one with `latchkey serve --http` on its server');
    this.store = opts.store;
    this.metrics = new Metrics({ store: this.store, ...(opts.serverStats === undefined ? {} : { server: opts.serverStats }) });
    this.api = new ConsoleApi({ store: this.store, log: opts.log, metrics: this.metrics, ...(opts.serverStats === undefined ? {} : { serverStats: opts.serverStats }) });
    const dir = consoleDir();
    for (const f of new Set(Object.values(STATIC))) this.assets.set(f, readFileSync(path.join(dir, f)));
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => this.fail(res, e));
    });
    this.server.on('clientError', (_e, sock) => sock.destroy());
  }

  static async start(opts: HttpOptions): Promise<HttpServer> {
    if (opts.auth === undefined && !isLoopback(opts.host)) {
      throw new LatchkeyError('INVALID_ARGUMENT', `--http on ${opts.host}, which is not a loopback address, needs an auth file (--auth)`);
    }
    const s = new HttpServer(opts);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(new LatchkeyError('INVALID_ARGUMENT', `cannot listen on ${opts.host}:${opts.port} (--http): ${e.message}`, { cause: e }));
      s.server.once('error', onError);
      s.server.listen({ host: opts.host, port: opts.port }, () => {
        s.server.off('error', onError);
        resolve();
      });
    }).catch((e: unknown) => {
      s.metrics.close();
      s.api.close();
      throw e;
    });
    const a = s.server.address();
    if (a !== null && typeof a === 'object') s.address = { host: a.address, port: a.port };
    return s;
  }

  /** /readyz answers 200 from now on (the serve command calls it once every listener is up). */
  setReady(): void {
    this.ready = true;
  }

  private readiness(): string | undefined {
    if (!this.ready) return this.notReady;
    const s = this.store.stats() as unknown as Record<string, unknown>;
    if (typeof s['readOnly'] === 'string') return `read-only: ${s['readOnly']}`;
    return undefined;
  }

  /** The principal of a request, or undefined after answering 401. */
  private principal(req: http.IncomingMessage, res: http.ServerResponse): Principal | undefined {
    const auth = this.opts.auth;
    if (auth === undefined) return LOOPBACK_READER;
    const h = req.headers.authorization;
    const m = h === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(h);
    const p = m === null ? undefined : auth.authenticate(m[1]);
    if (p === undefined) {
      this.send(res, 401, { error: { code: 'AUTH', message: h === undefined ? 'this server requires a token (Authorization: Bearer …)' : 'token not accepted' } }, { 'WWW-Authenticate': 'Bearer realm="latchkey"' });
      return undefined;
    }
    return p;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const route = url.pathname;
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (route === '/healthz') return this.text(res, 200, 'ok\n');
      if (route === '/readyz') {
        const why = this.readiness();
        return why === undefined ? this.text(res, 200, 'ready\n') : this.text(res, 503, `not ready: ${why}\n`);
      }
      const file = STATIC[route];
      if (file !== undefined) {
        res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
        res.end(req.method === 'HEAD' ? undefined : this.assets.get(file));
        return;
      }
      if (route === '/metrics') {
        if (this.principal(req, res) === undefined) return;
        const body = await this.metrics.text();
        res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': this.metrics.contentType });
        res.end(body);
        return;
      }
    }
    if (route.startsWith('/api/')) {
      const p = this.principal(req, res);
      if (p === undefined) return;
      if (route === '/api/events' && req.method === 'GET') {
        this.api.stream(p, url, req, res, SECURITY_HEADERS);
        return;
      }
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      const result = await this.api.call(p, req.method ?? 'GET', route.slice(5), url.searchParams, body);
      if (result === undefined) return this.send(res, 404, { error: { code: 'NOT_FOUND', message: `no ${req.method} ${route}` } });
      return this.send(res, 200, result);
    }
    this.send(res, 404, { error: { code: 'NOT_FOUND', message: `no ${route}` } });
  }

  private text(res: http.ServerResponse, status: number, body: string): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
    res.end(body);
  }

  private send(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
    if (res.headersSent) {
      res.end();
      return;
    }
    res.writeHead(status, { ...SECURITY_HEADERS, ...extra, 'Content-Type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
  }

  /** A handler's error as a typed JSON error: PERMISSION 403, NOT_FOUND 404, bad input 400, else 500 (logged). */
  private fail(res: http.ServerResponse, e: unknown): void {
    if (LatchkeyError.is(e)) {
      const status = e.code === 'PERMISSION' ? 403 : e.code === 'NOT_FOUND' ? 404 : e.code === 'INTERNAL' ? 500 : e.code === 'AUTH' ? 401 : 400;
      if (status === 500) this.opts.log.error({ err: e }, 'console request failed');
      this.send(res, status, { error: { code: e.code, message: e.message } });
      return;
    }
    this.opts.log.error({ err: e }, 'console request failed');
    this.send(res, 500, { error: { code: 'INTERNAL', message: (e as Error).message } });
  }

  /** Stops listening, ends the event streams, detaches from the engine. */
  async close(): Promise<void> {
    this.api.close();
    this.metrics.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

const MAX_BODY = 2 * 1024 * 1024;

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new LatchkeyError('TOO_LARGE', `request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(size === 0 ? {} : JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch (e) {
        reject(new LatchkeyError('INVALID_ARGUMENT', `request body is not JSON: ${(e as Error).message}`));
      }
    });
    req.on('error', reject);
  });
}

export function startHttp(opts: HttpOptions): Promise<HttpServer> {
  return HttpServer.start(opts);
}
