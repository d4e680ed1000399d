/**
 * `latchkey serve`: the server on a data directory (or in memory).
 *
 *   latchkey serve [--data DIR] [--socket PATH] [--listen HOST:PORT]
 *                  [--tls-cert FILE --tls-key FILE] [--auth FILE]
 *                  [--insecure-loopback] [--ttl-ms N] [--max-value BYTES] [--max-commit BYTES]
 *                  [--max-frame BYTES] [--max-connections N] [--max-memory BYTES] [--durability fsync|none] [--memory]
 *                  [--limit NAME=N]… [--idle-exit-ms N]   (any limit of src/protocol/limits.ts)
 *                  [--xenstore-socket PATH [--xenstore-limit NAME=N]… [--xenstore-domain-dir DIR]]
 *                  [--http HOST:PORT] [--log-level LEVEL] [--log-pretty]
 *
 * --http serves /metrics (Prometheus), /healthz, /readyz and the web console
 * (src/http/server.ts) with the same tokens and grants as TCP; without
 * --auth only on a loopback address, and read-only. Logs (pino) go to
 * stderr: JSON lines, or pretty ones on a terminal or with --log-pretty.
 *
 * --xenstore-socket also serves the store in the XenStore wire protocol
 * (docs/xenstore.md): xenstore-utils and libxenstore clients connect with
 * XENSTORED_PATH=PATH and share the store with latchkey clients, as dom0;
 * --xenstore-domain-dir gives each guest domain dom0 introduces a socket
 * DIR/<domid> of its own (docs/xenstore.md, "Domains").
 *
 * --backend etcd://h1:p1,h2:p2/?prefix=/latchkey&ttl=10 serves a store on an
 * etcd cluster (src/etcd, docs/etcd.md) instead of a data directory: several
 * such front-ends can serve one cluster at once, and a client given all of
 * them (`tcp://a:p,b:p`) reconnects to another when its front-end dies.
 * Sessions are etcd leases. Not with it (refused, INVALID_ARGUMENT): the
 * XenStore socket, the HTTP console, and the data-directory options.
 *
 * Prints where it listens, one address a line (`unix://…`, `tcp://…`), then
 * `ready`. SIGTERM / SIGINT shut it down gracefully and it exits 0. Unlike
 * the client commands it owns its exit (process.exit once shut down), so
 * `run` resolves undefined once it is listening.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Store } from '../../api.js';
import { BugError, LatchkeyError } from '../../core/errors.js';
import { open } from '../../engine/open.js';
import { EmbeddedStore } from '../../engine/store.js';
import { DEFAULT_LIMITS, type Limits } from '../../protocol/limits.js';
import { AuthTable } from '../../server/auth.js';
import { type ServedStore, servedStore } from '../../server/served.js';
import { type ServeOptions, serve } from '../../server/server.js';
import { type XenstoreServer, startXenstoreServer } from '../../xenstore/server.js';
import { LOG_LEVELS, type LogLevel, createLogger, logEngineEvents, logRecovery } from '../../http/log.js';
import type { HttpServer } from '../../http/server.js';
import { type Command, UsageError, parse, parseCount } from '../command.js';

const usage = `usage: latchkey serve [--data DIR | --backend etcd://HOST:PORT[,HOST:PORT...][/?prefix=/P&ttl=S]]
                      [--socket PATH] [--listen HOST:PORT]
                      [--tls-cert FILE --tls-key FILE] [--auth FILE] [--insecure-loopback]
                      [--ttl-ms N] [--max-value BYTES] [--max-commit BYTES] [--max-frame BYTES] [--max-connections N]
                      [--max-memory BYTES] [--durability fsync|none] [--memory] [--limit NAME=N]...
                      [--cache BYTES] [--inline-values BYTES]   (value cache size, default 256 MiB; values
                                        longer than --inline-values, default 1024, live in value files)
                      [--idle-exit-ms N]   (exit once no client was connected for N ms)
                      [--xenstore-socket PATH [--xenstore-limit NAME=N]... [--xenstore-domain-dir DIR]]
                      [--http HOST:PORT]   (metrics, health, web console; loopback unless --auth)
                      [--log-level fatal|error|warn|info|debug|trace|silent] [--log-pretty]`;

function parseHostPort(s: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s);
  if (m === null) throw new UsageError(`${flag} expects HOST:PORT, got ${s}`);
  const port = Number(m[3]);
  if (port > 65535) throw new UsageError(`${flag}: port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

function positiveInt(name: string, v: string | undefined): number | undefined {
  const n = parseCount(v, `--${name}`);
  if (n === 0) throw new UsageError(`--${name} expects a positive integer, got ${v}`);
  return n;
}

async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, {
    data: { type: 'string' },
    backend: { type: 'string' },
    socket: { type: 'string' },
    listen: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    auth: { type: 'string' },
    'insecure-loopback': { type: 'boolean' },
    'ttl-ms': { type: 'string' },
    'max-value': { type: 'string' },
    'max-commit': { type: 'string' },
    'max-memory': { type: 'string' },
    'max-frame': { type: 'string' },
    'max-connections': { type: 'string' },
    durability: { type: 'string' },
    cache: { type: 'string' },
    'inline-values': { type: 'string' },
    memory: { type: 'boolean' },
    limit: { type: 'string', multiple: true },
    'idle-exit-ms': { type: 'string' },
    'xenstore-socket': { type: 'string' },
    'xenstore-limit': { type: 'string', multiple: true },
    'xenstore-domain-dir': { type: 'string' },
    http: { type: 'string' },
    'log-level': { type: 'string' },
    'log-pretty': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const backend = values.backend;
  // The etcd client (etcd3, gRPC) and the HTTP console are loaded only when asked for: an embedded
  // server's start does not pay their module loading (about a quarter of a second of CPU here).
  if (backend !== undefined) checkBackendFlags(backend, values, (await import('../../etcd/backend.js')).parseEtcdUrl);
  const data = path.resolve(values.data ?? './latchkey-data');
  if (backend === undefined) mkdirSync(data, { recursive: true });
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
  if (values['tls-cert'] !== undefined && values.listen === undefined) throw new UsageError('TLS needs --listen');

  if (values.durability !== undefined && values.durability !== 'fsync' && values.durability !== 'none') throw new UsageError('--durability is fsync or none');
  // --memory: nothing on disk but the socket (tests, benchmarks, scratch servers).
  const maxValue = positiveInt('max-value', values['max-value']);
  // The engine enforces the value limit too: give it the same one.
  const maxCommit = positiveInt('max-commit', values['max-commit']);
  if (maxCommit !== undefined && maxCommit > 256 * 1024 * 1024) throw new UsageError('--max-commit is at most 268435456 (the log reader\'s record limit)');
  const engineOpts = {
    ...(maxValue === undefined ? {} : { maxValueBytes: maxValue }),
    ...(maxCommit === undefined ? {} : { maxCommitBytes: maxCommit }),
  };

  const limits: Partial<{ -readonly [K in keyof Limits]: Limits[K] }> = {};
  for (const spec of values.limit ?? []) {
    const m = /^(\w+)=(\d+)$/.exec(spec);
    if (m === null || !(m[1]! in DEFAULT_LIMITS)) throw new UsageError(`--limit expects NAME=N with NAME one of ${Object.keys(DEFAULT_LIMITS).join(', ')}; got ${spec}`);
    limits[m[1] as keyof Limits] = positiveInt('limit', m[2]);
  }
  const maxFrame = positiveInt('max-frame', values['max-frame']);
  const maxConnections = positiveInt('max-connections', values['max-connections']);
  if (maxValue !== undefined) limits.maxValue = maxValue;
  if (maxFrame !== undefined) limits.maxFrame = maxFrame;
  if (maxConnections !== undefined) limits.maxConnections = maxConnections;
  const opts: ServeOptions = { limits };
  // On etcd there is no data directory to hold a default socket: a socket only when asked for.
  if (values.socket !== undefined || backend === undefined) opts.socket = path.resolve(values.socket ?? path.join(data, 'latchkey.sock'));
  const maxMemory = positiveInt('max-memory', values['max-memory']);
  if (maxMemory !== undefined) opts.maxMemory = maxMemory;
  if (values.listen !== undefined) opts.listen = parseHostPort(values.listen);
  if (values['tls-cert'] !== undefined && values['tls-key'] !== undefined) opts.tls = { cert: values['tls-cert'], key: values['tls-key'] };
  if (values.auth !== undefined) opts.auth = AuthTable.load(values.auth);
  if (values['insecure-loopback']) opts.insecureLoopback = true;
  const ttl = positiveInt('ttl-ms', values['ttl-ms']);
  if (ttl !== undefined) opts.ttlMs = ttl;
  const idle = positiveInt('idle-exit-ms', values['idle-exit-ms']);
  if (idle !== undefined) {
    opts.idleExitMs = idle;
    opts.onIdle = () => stop('idle');
  }

  const xenstoreLimits: Record<string, number> = {};
  for (const l of values['xenstore-limit'] ?? []) {
    const m = /^([A-Za-z]+)=([0-9]+)$/.exec(l);
    if (m === null) throw new UsageError(`--xenstore-limit expects NAME=N (e.g. maxTransactions=100), got ${l}`);
    xenstoreLimits[m[1]!] = Number(m[2]);
  }
  if (values['xenstore-limit'] !== undefined && values['xenstore-socket'] === undefined) throw new UsageError('--xenstore-limit needs --xenstore-socket');
  if (values['xenstore-domain-dir'] !== undefined && values['xenstore-socket'] === undefined) throw new UsageError('--xenstore-domain-dir needs --xenstore-socket');
  // The idle count sees latchkey connections only: it would stop a server XenStore clients still use.
  if (idle !== undefined && values['xenstore-socket'] !== undefined) throw new UsageError('--idle-exit-ms cannot be combined with --xenstore-socket');

  const logLevel = values['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new UsageError(`--log-level is one of ${LOG_LEVELS.join(', ')}; got ${logLevel}`);
  const httpAt = values.http === undefined ? undefined : parseHostPort(values.http, '--http');
  const log = createLogger({ level: logLevel as LogLevel, ...(values['log-pretty'] ? { pretty: true } : {}) });

  // Every argument is checked: open the store.
  const cache = values.cache === undefined ? undefined : parseCount(values.cache, '--cache');
  const inline = values['inline-values'] === undefined ? undefined : parseCount(values['inline-values'], '--inline-values');
  let store: ServedStore & { close(): Promise<void> };
  let embedded: EmbeddedStore | undefined;
  let xsStore: Store | undefined;
  if (backend !== undefined) {
    const { connectEtcd } = await import('../../etcd/store.js');
    const etcd = await connectEtcd(backend);
    xsStore = etcd;
    // Object.assign, not a spread: the served store's `revision` is a getter, and a spread would freeze it.
    store = Object.assign(servedStore(etcd, etcd.servedBackend()), { close: () => etcd.close() });
  } else {
    const s = values.memory ? await open(undefined, engineOpts)
      : await open(data, {
        ...engineOpts,
        ...(values.durability === undefined ? {} : { durability: values.durability }),
        ...(cache === undefined ? {} : { cacheBytes: cache }),
        ...(inline === undefined ? {} : { inlineValueBytes: inline }),
      });
    if (!(s instanceof EmbeddedStore)) throw new BugError('open() did not return an embedded store');
    embedded = s;
    xsStore = s;
    store = s;
    logRecovery(s, log);
    logEngineEvents(s, log);
  }

  let stopping = false;
  let server: Awaited<ReturnType<typeof serve>> | undefined;
  let xenstore: XenstoreServer | undefined;
  let httpServer: HttpServer | undefined;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`latchkey: ${signal}: shutting down\n`);
    log.info({ event: 'shutdown', signal }, `${signal}: shutting down`);
    void (async () => {
      await httpServer?.close();
      await xenstore?.close();
      await server?.close();
      await store.close();
      process.exit(0);
    })().catch((e: unknown) => {
      process.stderr.write(`latchkey: shutdown failed: ${(e as Error).message}\n`);
      process.exit(1);
    });
  };
  server = await serve(store, opts);
  if (values['xenstore-socket'] !== undefined && xsStore !== undefined) {
    try {
      xenstore = await startXenstoreServer(xsStore, {
        socketPath: path.resolve(values['xenstore-socket']), limits: xenstoreLimits,
        ...(values['xenstore-domain-dir'] === undefined ? {} : { domainDir: path.resolve(values['xenstore-domain-dir']) }),
        log: (m) => process.stderr.write(`latchkey: ${m}\n`),
      });
    } catch (e) {
      await server.close();
      await store.close();
      throw new Error(`--xenstore-socket: ${(e as Error).message}`, { cause: e });
    }
  }
  if (httpAt !== undefined && embedded !== undefined) {
    const srv = server;
    try {
      const { startHttp } = await import('../../http/server.js');
      httpServer = await startHttp({ host: httpAt.host, port: httpAt.port, store: embedded, serverStats: () => srv.stats(), log, ...(opts.auth === undefined ? {} : { auth: opts.auth }) });
    } catch (e) {
      await xenstore?.close();
      await server.close();
      await store.close();
      throw e;
    }
  }
  process.stdout.write(backend !== undefined ? `backend ${backend}\n` : `data ${values.memory ? '(in memory)' : data}\n`);
  if (server.socketPath !== undefined) process.stdout.write(`unix://${server.socketPath}\n`);
  if (server.tcpAddress !== undefined) {
    const h = server.tcpAddress.host.includes(':') ? `[${server.tcpAddress.host}]` : server.tcpAddress.host;
    process.stdout.write(`${opts.tls ? 'tls' : 'tcp'}://${h}:${server.tcpAddress.port}\n`);
  }
  if (xenstore !== undefined) process.stdout.write(`xenstore ${xenstore.socketPath}\n`);
  if (xenstore?.domainDir !== undefined) process.stdout.write(`xenstore-domains ${xenstore.domainDir}\n`);
  if (httpServer?.address !== undefined) {
    const h = httpServer.address.host.includes(':') ? `[${httpServer.address.host}]` : httpServer.address.host;
    process.stdout.write(`http://${h}:${httpServer.address.port}/\n`);
  }
  httpServer?.setReady();
  log.info({ event: 'ready', revision: store.revision, socket: server.socketPath, tcp: server.tcpAddress, http: httpServer?.address }, 'ready');
  process.stdout.write('ready\n');

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * What `--backend etcd://…` cannot be combined with: the data-directory
 * options and the HTTP console (it reaches the embedded engine's
 * internals). docs/etcd.md, "Limits". The XenStore socket and guests'
 * sockets are served (the domain table is in the cluster).
 */
function checkBackendFlags(backend: string, values: Record<string, unknown>, parseEtcdUrl: (url: string) => unknown): void {
  if (!backend.startsWith('etcd://')) throw new UsageError(`--backend expects etcd://HOST:PORT[,HOST:PORT...]; got ${backend}`);
  parseEtcdUrl(backend); // a malformed URL fails here, before anything listens
  for (const flag of ['data', 'memory', 'durability', 'cache', 'inline-values', 'max-commit']) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} is an option of the embedded store; it cannot be combined with --backend`);
  }
  for (const flag of ['http']) {
    if (values[flag] !== undefined) {
      throw new LatchkeyError('INVALID_ARGUMENT', `--${flag} is not available with --backend etcd yet: it uses the embedded engine's internals (docs/etcd.md, "Limits")`);
    }
  }
  if (values['socket'] === undefined && values['listen'] === undefined) throw new UsageError('--backend needs --socket PATH or --listen HOST:PORT (there is no data directory for a default socket)');
}

export const serveCmd: Command = {
  help: `${usage}

Serves the store on DIR/latchkey.sock (mode 0600) and, with --listen, on TCP.
Prints each address it listens on, then "ready". SIGTERM/SIGINT: graceful exit 0.

examples:
  latchkey serve                                  # ./latchkey-data, its socket
  latchkey serve --data /var/lib/latchkey --listen 0.0.0.0:7700 --auth tokens.json
  latchkey serve --memory --socket /tmp/lk.sock   # scratch server, nothing on disk
  latchkey serve --backend etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379 --listen 0.0.0.0:7700 --auth tokens.json
                                                  # a front-end of a store on etcd; run several`,
  async run(argv) {
    await serveCommand(argv);
    return undefined;
  },
};
