/**
 * The XenStore listener: serves a latchkey store to XenStore clients
 * (libxenstore, xenstore-utils, oxenstored's test tools) on a Unix socket.
 * It is the same store: native sessions and XenStore connections see each
 * other's writes, watches fire across both.
 *
 * Lifetime: `close()` (or `await using`) stops accepting, closes every
 * connection (their sessions end), unhooks the watch hub and removes the
 * socket file. It does not close the store, which belongs to the caller.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Store } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { EmbeddedStore } from '../engine/store.js';
import { AsyncDisposableStack } from '../util/disposable.js';
import { XsConnection } from './connection.js';
import { type XenstoreLimits, resolveLimits } from './limits.js';
import { WatchHub } from './watches.js';

export interface XenstoreServerOptions {
  /** Where to listen (XENSTORED_PATH for clients). */
  socketPath: string;
  limits?: Partial<XenstoreLimits>;
  /** File mode of the socket (default 0o600: XenStore clients are dom0, i.e. privileged). */
  socketMode?: number;
  /** Where notable events go (closed connections, bugs); default: nowhere. */
  log?: (message: string) => void;
}

export interface XenstoreServerStats {
  readonly connections: number;
  readonly requests: number;
  readonly errors: number;
  readonly watchEvents: number;
  readonly watches: number;
}

export interface XenstoreServer extends AsyncDisposable {
  readonly socketPath: string;
  readonly limits: XenstoreLimits;
  stats(): XenstoreServerStats;
  close(): Promise<void>;
}

/** Starts listening; resolves once the socket accepts connections. */
export async function startXenstoreServer(store: Store, options: XenstoreServerOptions): Promise<XenstoreServer> {
  if (!(store instanceof EmbeddedStore)) {
    throw new LatchkeyError('INVALID_ARGUMENT', 'the XenStore adapter serves an embedded store (the process that owns the data)');
  }
  const limits = resolveLimits(options.limits);
  const socketPath = options.socketPath;
  await removeStaleSocket(socketPath);
  const engine = store.internals;
  // What the server makes, released in reverse order by close() (or by a failed start).
  const owned = new AsyncDisposableStack();
  const hub = new WatchHub(engine);
  owned.defer(() => hub.close());
  const log = options.log ?? (() => {});
  const conns = new Set<XsConnection>();
  const closedWaiters = new Set<() => void>();
  let nextTx = 1;
  let totals = { requests: 0, errors: 0, watchEvents: 0 };

  const host = {
    engine, hub, limits, log,
    newTxId(): number {
      // Opaque non-zero u32, unique among open transactions in practice (wraps after 4 billion).
      const id = nextTx;
      nextTx = nextTx >= 0xffff_ffff ? 1 : nextTx + 1;
      return id;
    },
    closed(conn: XsConnection): void {
      conns.delete(conn);
      totals = { requests: totals.requests + conn.requests, errors: totals.errors + conn.errors, watchEvents: totals.watchEvents + conn.events };
      if (conns.size === 0) for (const w of closedWaiters) w();
    },
  };

  const server = net.createServer((socket) => {
    if (conns.size >= limits.maxConnections || engine.closed) {
      log(`xenstore: refusing a connection (${conns.size} open, limit ${limits.maxConnections})`);
      socket.destroy();
      return;
    }
    let session;
    try {
      session = store.ownedSession({ name: `xenstore:${conns.size + 1}` });
    } catch {
      socket.destroy();
      return;
    }
    conns.add(new XsConnection(socket, session, host));
  });
  server.on('error', (e) => log(`xenstore: listener error: ${e.message}`));
  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      server.listen(socketPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
  } catch (e) {
    await owned.disposeAsync();
    throw e;
  }
  // Closing the listener (which removes its socket file) completes once every connection is gone.
  owned.defer(async () => {
    const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    const allGone = conns.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => closedWaiters.add(resolve));
    for (const c of [...conns]) c.destroy();
    await Promise.all([listenerClosed, allGone]);
  });
  try {
    chmodSync(socketPath, options.socketMode ?? 0o600);
  } catch (e) {
    log(`xenstore: cannot set the socket's mode: ${(e as Error).message}`);
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => (closing ??= owned.disposeAsync());

  return {
    socketPath,
    limits,
    stats(): XenstoreServerStats {
      let requests = totals.requests;
      let errors = totals.errors;
      let watchEvents = totals.watchEvents;
      for (const c of conns) {
        requests += c.requests;
        errors += c.errors;
        watchEvents += c.events;
      }
      return { connections: conns.size, requests, errors, watchEvents, watches: hub.size };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * A socket file left by a process that died would make listen fail with
 * EADDRINUSE. Remove it only when nobody answers on it; never remove
 * anything that is not a socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new LatchkeyError('INVALID_ARGUMENT', `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (live) throw new LatchkeyError('INVALID_ARGUMENT', `something is already listening on ${path}`);
  unlinkSync(path);
}
