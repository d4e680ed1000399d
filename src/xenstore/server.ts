/**
 * The XenStore listener: serves a latchkey store to XenStore clients
 * (libxenstore, xenstore-utils, oxenstored's test tools) on a Unix socket.
 * It is the same store: native sessions and XenStore connections see each
 * other's writes, watches fire across both.
 *
 * Domains: the socket's connections are dom0. With `domainDir`, every
 * guest INTRODUCEd gets its own socket there, whose connections are that
 * domain (permissions and quotas enforced), until RELEASE closes them.
 *
 * Lifetime: `close()` (or `await using`) stops accepting, closes every
 * connection (their sessions end), unhooks the watch hub and the entry
 * counts, and removes the socket files. It does not close the store, which
 * belongs to the caller.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { SessionOptions, Store } from '../api.js';
import type { EngineAccess, OwnedSession } from '../engine/access.js';
import { LatchkeyError } from '../core/errors.js';
import { EmbeddedStore } from '../engine/store.js';
import { AsyncDisposableStack } from '../util/disposable.js';
import { XsConnection } from './connection.js';
import type { DomainControl } from './dispatch.js';
import { type DomainRecord, type DomainRegistry, DomainTable, LocalDomains, type ReadBarrier, XsDomain } from './domains.js';
import { EntryCounts, recount } from './entries.js';
import { xsError } from './errno.js';
import { type XenstoreLimits, resolveLimits } from './limits.js';
import { releaseChanges } from './ops.js';
import { socketTransport } from './transport.js';
import { WatchHub } from './watches.js';

export interface XenstoreServerOptions {
  /** Where to listen (XENSTORED_PATH for clients). Connections here are dom0. */
  socketPath: string;
  /**
   * A directory for the guests' transport: once dom0 INTRODUCEs domain N, a
   * Unix socket `<dir>/N` serves connections as domain N, until RELEASE.
   * Created with mode 0700 if missing. Without it, introduced domains have
   * no transport (their state, quotas and permissions still apply).
   */
  domainDir?: string;
  limits?: Partial<XenstoreLimits>;
  /** Where notable events go (closed connections, bugs); default: nowhere. */
  log?: (message: string) => void;
}

export interface XenstoreServerStats {
  readonly connections: number;
  readonly requests: number;
  readonly errors: number;
  readonly watchEvents: number;
  readonly watches: number;
  /** Introduced guest domains. */
  readonly domains: number;
}

export interface XenstoreServer extends AsyncDisposable {
  readonly socketPath: string;
  readonly domainDir: string | undefined;
  readonly limits: XenstoreLimits;
  stats(): XenstoreServerStats;
  close(): Promise<void>;
}

/**
 * A store the adapter can serve other than the embedded one (the etcd
 * backend, src/etcd/xenstore.ts): its engine access, and sessions a
 * connection owns (`ready` resolves once the session has its id).
 */
export interface XenstoreBackedStore extends Store {
  readonly xenstoreEngine: EngineAccess & {
    /** Reads outside a transaction (and a transaction's snapshot) wait for it: the head moves by a watch. */
    readonly readBarrier?: ReadBarrier;
    /** The domain table in the store (shared by its front-ends); without it, this process's memory. */
    readonly domains?: DomainRegistry;
  };
  ownedSession(options: SessionOptions): OwnedSession & { ready?(): Promise<void> };
}

function isBacked(store: Store): store is XenstoreBackedStore {
  return 'xenstoreEngine' in store && typeof (store as { ownedSession?: unknown }).ownedSession === 'function';
}

/** Starts listening; resolves once the socket accepts connections. */
export async function startXenstoreServer(store: Store, options: XenstoreServerOptions): Promise<XenstoreServer> {
  if (!(store instanceof EmbeddedStore) && !isBacked(store)) {
    throw new LatchkeyError('INVALID_ARGUMENT', 'the XenStore adapter serves an embedded store (the process that owns the data) or an etcd-backed one');
  }
  const backed = store instanceof EmbeddedStore ? undefined : store;
  const limits = resolveLimits(options.limits);
  const socketPath = path.resolve(options.socketPath);
  const domainDir = options.domainDir === undefined ? undefined : path.resolve(options.domainDir);
  await removeStaleSocket(socketPath);
  if (domainDir !== undefined) await prepareDomainDir(domainDir);
  const engine: EngineAccess = store instanceof EmbeddedStore ? store.internals : store.xenstoreEngine;
  const newSession = (name: string): OwnedSession & { ready?(): Promise<void> } => (store instanceof EmbeddedStore
    ? store.ownedSession({ name }, { transport: 'xenstore' })
    : store.ownedSession({ name }));
  // What the server makes, released in reverse order by close() (or by a failed start).
  const owned = new AsyncDisposableStack();
  const hub = new WatchHub(engine);
  owned.defer(() => hub.close());
  const entries = new EntryCounts(engine.visibleRoot);
  owned.defer(engine.onCommit((c) => entries.apply(c)));
  const log = options.log ?? (() => {});
  const table = new DomainTable();
  const conns = new Set<XsConnection>();
  const guestListeners = new Map<number, net.Server>();
  const closedWaiters = new Set<() => void>();
  let nextTx = 1;
  let totals = { requests: 0, errors: 0, watchEvents: 0 };
  let closing: Promise<void> | undefined;

  // The domain table: a cache of the registry (this process's memory, or the cluster's for etcd), kept in step
  // by its change callback: a guest introduced through any front-end gets a socket on each (domainDir).
  const registry: DomainRegistry = backed?.xenstoreEngine.domains ?? new LocalDomains();
  const opening = new Map<number, Promise<boolean>>();
  const closeGuestListener = (domid: number): void => {
    const srv = guestListeners.get(domid);
    if (srv === undefined) return;
    guestListeners.delete(domid);
    srv.close();
    unlinkQuietly(path.join(domainDir!, String(domid)));
  };
  /** Opens guest `d`'s socket (if there is a domain directory) and announces it; false when the socket could not be opened. */
  const open = async (d: XsDomain): Promise<boolean> => {
    if (domainDir !== undefined) {
      try {
        const srv = net.createServer((socket) => accept(socket, d));
        srv.on('error', (e) => log(`xenstore: domain ${d.domid} listener error: ${e.message}`));
        await listenPrivately(srv, path.join(domainDir, String(d.domid)), false);
        if (table.get(d.domid) !== d || d.releasing || closing !== undefined) {
          srv.close();
          unlinkQuietly(path.join(domainDir, String(d.domid)));
          return true;
        }
        guestListeners.set(d.domid, srv);
      } catch (e) {
        log(`xenstore: cannot open domain ${d.domid}'s transport: ${(e as Error).message}`);
        return false;
      }
    }
    if (table.get(d.domid) === d && !d.releasing) {
      d.announced = true;
      hub.fireSpecial('@introduceDomain', engine.visibleRoot);
    }
    return true;
  };
  const sync = (domid: number, rec: DomainRecord | undefined): void => {
    const d = table.get(domid);
    if (rec === undefined) {
      if (d === undefined) return;
      table.delete(domid);
      opening.delete(domid);
      closeGuestListener(domid);
      for (const m of [...d.members]) m.destroy();
      if (d.announced) hub.fireSpecial('@releaseDomain', engine.visibleRoot);
      return;
    }
    if (d === undefined) {
      const nd = new XsDomain(domid, rec.mfn, rec.port);
      nd.target = rec.target;
      nd.releasing = rec.releasing === true;
      table.add(nd);
      // Kept until the domain goes: the INTRODUCE that created it reads whether its transport opened.
      if (!nd.releasing) opening.set(domid, open(nd));
      return;
    }
    if (d.mfn !== rec.mfn || (d.releasing && rec.releasing !== true)) {
      // Released and introduced again in between (a reload after a compaction skips the revisions between): another domain.
      sync(domid, undefined);
      sync(domid, rec);
      return;
    }
    d.port = rec.port;
    d.target = rec.target;
    if (rec.releasing === true && !d.releasing) {
      d.releasing = true;
      closeGuestListener(domid);
      for (const m of [...d.members]) m.destroy();
    }
  };
  owned.defer(registry.onChange(sync));
  for (const rec of [...registry.records()]) sync(rec.domid, rec);

  const domains: DomainControl = {
    domain: (domid) => table.get(domid),
    entries: (domid) => entries.get(domid),
    async introduce(domid, mfn, port) {
      const r = await registry.introduce(domid, mfn, port);
      // Re-INTRODUCE (xenbus event channel re-creation): same page, maybe a new port.
      if (r === 'mfn') throw xsError('EINVAL', `domain ${domid} was introduced with another mfn`);
      if (r === 'busy') throw xsError('EAGAIN', `domain ${domid} is being released`);
      if (r === 'updated') return false;
      if (!(await (opening.get(domid) ?? true))) {
        await registry.remove(domid).catch(() => {});
        throw xsError('EIO', 'cannot open the domain\'s transport');
      }
      return true;
    },
    async setTarget(domid, target) {
      if (!(await registry.setTarget(domid, target))) throw xsError('ENOENT', 'domain not introduced');
    },
    async release(domid, sessionId) {
      // 1. Marked releasing: every front-end closes the guest's connections and socket. 2. Its nodes and
      // permissions go. 3. The record goes: every front-end forgets it and fires @releaseDomain.
      if (!(await registry.beginRelease(domid))) throw xsError('EINVAL', `domain ${domid} is not introduced`);
      const { deletes, perms } = releaseChanges(engine.visibleRoot, domid);
      if (deletes.length + perms.length > 0) {
        const targets = [...deletes.map((p) => ({ path: p, subtree: true })), ...perms.map(([p]) => ({ path: p, subtree: false }))];
        await engine.write(sessionId, targets, {}, (ws) => {
          // Recomputed on the head the write sees (it may have moved while waiting for locks).
          const now = releaseChanges(ws.root, domid);
          for (const p of now.deletes) ws.delete(p, { recursive: true });
          for (const [p, q] of now.perms) ws.setPerms(p, q);
        });
      }
      await registry.remove(domid);
    },
    describeWatches() {
      const lines: string[] = [];
      for (const c of conns) for (const w of c.watches.values()) lines.push(`watch D${c.domain.domid}: ${w.spelled} ${w.token}\n`);
      return lines.join('');
    },
    check() {
      const problems: string[] = [];
      const want = recount(engine.visibleRoot);
      const have = entries.snapshot();
      for (const id of new Set([...want.keys(), ...have.keys()])) {
        if ((want.get(id) ?? 0) !== (have.get(id) ?? 0)) problems.push(`dom${id} entries: counted ${have.get(id) ?? 0}, tree has ${want.get(id) ?? 0}`);
      }
      for (const d of [table.dom0, ...table.guests()]) {
        let watches = 0;
        let txs = 0;
        for (const c of conns) if (c.domain === d) { watches += c.watches.size; txs += c.txs.size; }
        if (d.watches !== watches) problems.push(`dom${d.domid} watches: counted ${d.watches}, connections hold ${watches}`);
        if (d.transactions !== txs) problems.push(`dom${d.domid} transactions: counted ${d.transactions}, connections hold ${txs}`);
      }
      return problems.join('\n');
    },
  };

  const host = {
    engine, hub, limits, log, domains,
    readBarrier: backed?.xenstoreEngine.readBarrier,
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

  function accept(socket: net.Socket, domain: XsDomain): void {
    const limit = domain.domid === 0 ? limits.maxConnections : limits.maxDomainConnections;
    const open = domain.domid === 0 ? [...conns].filter((c) => c.domain === domain).length : domain.members.size;
    if (open >= limit || engine.closed || closing !== undefined || table.get(domain.domid) !== domain || domain.releasing) {
      log(`xenstore: refusing a connection of domain ${domain.domid} (${open} open, limit ${limit})`);
      socket.destroy();
      return;
    }
    let session: OwnedSession & { ready?(): Promise<void> };
    try {
      session = newSession(`xenstore:dom${domain.domid}:${conns.size + 1}`);
    } catch {
      socket.destroy();
      return;
    }
    const ready = session.ready?.();
    if (ready === undefined) {
      conns.add(new XsConnection(socketTransport(socket), session, host, domain));
      return;
    }
    // A session with a lease to wait for (etcd): the socket is read (its 'data' listener added) once it is granted.
    ready.then(() => {
      if (socket.destroyed || closing !== undefined) {
        socket.destroy();
        void session.end(true).catch(() => {});
        return;
      }
      conns.add(new XsConnection(socketTransport(socket), session, host, domain));
    }, () => {
      socket.destroy();
      void session.end(true).catch(() => {});
    });
  }

  const server = net.createServer((socket) => accept(socket, table.dom0));
  server.on('error', (e) => log(`xenstore: listener error: ${e.message}`));
  try {
    await listenPrivately(server, socketPath, true);
  } catch (e) {
    await owned.disposeAsync();
    throw e;
  }
  // Closing the listeners completes once every connection is gone; then the socket files go.
  owned.defer(async () => {
    const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const [domid, srv] of guestListeners) {
      srv.close();
      unlinkQuietly(path.join(domainDir!, String(domid)));
    }
    guestListeners.clear();
    const allGone = conns.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => closedWaiters.add(resolve));
    for (const c of [...conns]) c.destroy();
    await Promise.all([listenerClosed, allGone]);
    unlinkQuietly(socketPath);
  });

  const close = (): Promise<void> => (closing ??= owned.disposeAsync());

  return {
    socketPath,
    domainDir,
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
      return { connections: conns.size, requests, errors, watchEvents, watches: hub.size, domains: table.guests().length };
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Listens on a Unix socket that nobody else can connect to before its mode
 * is 0600. `viaPrivateDir`: bind inside a fresh 0700 directory next to the
 * target, chmod, then rename into place (the target's directory may be
 * shared); otherwise the socket's directory is already private (the domain
 * directory). Any failure to ensure the mode fails the start.
 */
async function listenPrivately(server: net.Server, target: string, viaPrivateDir: boolean): Promise<void> {
  const tmpDir = viaPrivateDir ? mkdtempSync(path.join(path.dirname(target), '.xenstore-')) : undefined;
  const bindPath = tmpDir === undefined ? target : path.join(tmpDir, 's');
  try {
    if (tmpDir !== undefined) chmodSync(tmpDir, 0o700);
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      server.once('error', onError);
      server.listen(bindPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
    try {
      chmodSync(bindPath, 0o600);
      if ((statSync(bindPath).mode & 0o777) !== 0o600) throw new Error(`mode is ${(statSync(bindPath).mode & 0o777).toString(8)}`);
      if (tmpDir !== undefined) renameSync(bindPath, target);
    } catch (e) {
      server.close();
      unlinkQuietly(bindPath);
      throw new LatchkeyError('INVALID_ARGUMENT', `cannot make ${target} private (mode 0600): ${(e as Error).message}`);
    }
  } finally {
    if (tmpDir !== undefined) {
      try { rmdirSync(tmpDir); } catch { /* already empty and gone, or left for the operator to see */ }
    }
  }
}

/**
 * Creates the domain directory (0700) or checks an existing one, and removes
 * the per-domain sockets a dead server left. A socket that answers belongs to
 * a live server: the start fails rather than cut that server's guests off.
 */
async function prepareDomainDir(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new LatchkeyError('INVALID_ARGUMENT', `${dir} is not a directory`);
  chmodSync(dir, 0o700);
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (/^[0-9]+$/.test(name) && lstatSync(p).isSocket()) await removeStaleSocket(p);
  }
}

function unlinkQuietly(p: string): void {
  try {
    if (lstatSync(p).isSocket()) unlinkSync(p);
  } catch { /* gone already */ }
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
