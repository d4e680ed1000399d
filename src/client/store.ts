/**
 * The remote store: `connect(url)` gives an object with exactly the embedded
 * Store API (api.ts), backed by a server.
 *
 * Connection loss. The link (link.ts) fails every request in flight with
 * CONNECTION_LOST — never resent, the server may have run it. Everything the
 * lost connection's sessions owned is gone on the server, and is made gone
 * here at once: each held lock's signal aborts with LOCK_LOST, open
 * transactions turn aborted, sessions from `store.session()` end (their
 * calls fail SESSION_EXPIRED). The store itself reconnects with jittered
 * exponential backoff and gets a fresh session; requests made meanwhile wait
 * for the new connection (up to connectTimeoutMs). Watches re-subscribe from
 * the revision after the last one they delivered, so a watcher sees no gap
 * and no duplicate across the loss (or a clear error if that revision has
 * left the server's history window).
 *
 * Sync members the API requires (`revision`, `stats()`, `lockTable()`,
 * `session.id` right after `session()`, `tx.snapshotRevision` right after
 * `begin()`) answer from what the client last heard; `fetchStats()` and
 * `fetchLockTable()` ask the server.
 */
import type { BigArray, BigArrayOptions, BigFile, BigFileOptions, DType, LockInfo, LockTableInfo, Session, SessionInfo, SessionOptions, Store, StoreStats, WatchEvent, WatchOptions } from '../api.js';
import { openBigArray, openBigFile } from '../bigfile/index.js';
import { LatchkeyError } from '../core/errors.js';
import { ClientConnection, type ConnectOptions } from './connection.js';
import { parseAddresses } from './link.js';
import { LockState } from './lock.js';
import { RemoteSession } from './session.js';
import { RemoteWatch } from './watch.js';

export type { ConnectOptions } from './connection.js';

export class RemoteStore extends RemoteSession implements Store {
  private statsCache: StoreStats = { revision: 0, nodes: 0, commits: 0, validations: 0, replays: 0, conflicts: 0, openTransactions: 0, sessions: 0 };
  private lockTableCache: LockTableInfo = { held: [], waiting: [] };

  constructor(conn: ClientConnection) {
    super(conn, 0, conn.opts.name ?? 'default', undefined);
  }

  get revision(): number {
    return this.conn.revision;
  }

  /** The server's session id for this connection (changes after a reconnection). */
  override get id(): string {
    return this.conn.link?.welcome.session ?? '';
  }

  /** The limits the server announced. */
  get limits(): import('../protocol/limits.js').Limits | undefined {
    return this.conn.link?.welcome.limits;
  }

  /**
   * @internal For `latchkey lock`: the server's lease and the client's (ms;
   * undefined without a connection) and the connection's socket.
   */
  get lease(): { ttlMs: number; clientMs: number; socket: import('node:net').Socket } | undefined {
    const l = this.conn.link;
    if (l === undefined || !l.alive) return undefined;
    return { ttlMs: l.welcome.ttlMs, clientMs: l.leaseMs, socket: l.rawSocket };
  }

  /** True while a connection is up. */
  get connected(): boolean {
    return this.conn.link?.alive === true;
  }

  session(options: SessionOptions = {}): Session {
    this.checkOpen();
    const link = this.conn.link;
    if (link === undefined || !link.alive) throw new LatchkeyError('CONNECTION_LOST', 'not connected to the server');
    const handle = this.conn.handle();
    const name = options.name ?? `session-${handle}`;
    const s = new (class extends RemoteSession {
      setId(r: { id: string; secret?: string }): void {
        this.idValue = r.id;
        this.secret = r.secret;
      }
    })(this.conn, handle, name, this.conn.generation);
    this.conn.attach(handle, s);
    // Pipelined like begin: the session's first requests follow this one.
    link.request('session', { session: handle, name }).then((r) => s.setId(r), () => s.ended());
    return s;
  }

  /**
   * The lock table as this client knows it now: its own sessions' locks and
   * waits exactly (it saw every grant, release and loss), everyone else's as
   * of the last fetch (each call starts a new one; `fetchLockTable()` waits).
   */
  lockTable(): LockTableInfo {
    void this.fetchLockTable().catch(() => {});
    const mine = new Set<string>();
    const held: LockInfo[] = [];
    const waiting: LockTableInfo['waiting'][number][] = [];
    const sessions: RemoteSession[] = [];
    for (const m of this.conn.attached()) {
      if (m instanceof RemoteSession) sessions.push(m);
      if (!(m instanceof LockState)) continue;
      const st = m;
      mine.add(st.owner.id);
      const l = st.lock;
      if (l === undefined) waiting.push({ path: st.path, mode: st.mode, session: st.owner.id, since: st.since });
      else if (l.held) held.push({ path: l.path, mode: l.mode, session: st.owner.id, token: l.token, since: l.since });
    }
    mine.add(this.id);
    for (const sess of sessions) mine.add(sess.id);
    const cache = this.lockTableCache;
    return {
      held: [...cache.held.filter((l) => !mine.has(l.session)), ...held],
      waiting: [...cache.waiting.filter((w) => !mine.has(w.session)), ...waiting],
    };
  }

  async resetLock(path: string): Promise<void> {
    await this.req('resetLock', { path });
  }

  /** The server's open sessions (`listSessions`). */
  async fetchSessions(): Promise<SessionInfo[]> {
    return [...(await this.req('listSessions', {}))];
  }

  async fetchLockTable(): Promise<LockTableInfo> {
    const r = await this.req('lockTable', {});
    this.lockTableCache = r;
    return r;
  }

  watch(path: string, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.checkOpen();
    return new RemoteWatch(this.conn, path, options);
  }

  async snapshot(): Promise<void> {
    await this.req('snapshot', {});
  }

  /** The server's figures as of the last fetch (each call starts a new one); `fetchStats()` waits for fresh ones. */
  bigFile(path: string, options?: BigFileOptions): Promise<BigFile> {
    return openBigFile(this, path, options);
  }

  bigArray<D extends DType = DType>(path: string, options?: BigArrayOptions & { dtype?: D }): Promise<BigArray<D>> {
    return openBigArray(this, path, options) as Promise<BigArray<D>>;
  }

  stats(): StoreStats {
    void this.fetchStats().catch(() => {});
    return { ...this.statsCache, ...this.conn.retryCounters };
  }

  async fetchStats(): Promise<StoreStats> {
    const r = await this.req('stats', {});
    this.statsCache = r as unknown as StoreStats;
    return { ...this.statsCache, ...this.conn.retryCounters };
  }

  /** Waits until a connection is up (after a loss, the reconnection). */
  async ready(): Promise<void> {
    await this.conn.current();
  }

  override async close(): Promise<void> {
    if (this.conn.closed) return;
    this.conn.close();
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Connects to a latchkey server: `unix:///path/latchkey.sock`,
 * `tcp://host:port` or `tls://host:port`, or several front-ends of one store
 * (`tcp://h1:p1,h2:p2`): the first that answers, and the next after a loss.
 * Resolves once the handshake is done;
 * rejects with AUTH, PROTOCOL, QUOTA (server full) or CONNECTION_LOST.
 */
export async function connect(url: string, options: ConnectOptions = {}): Promise<RemoteStore> {
  const conn = new ClientConnection(parseAddresses(url), options);
  await conn.start();
  return new RemoteStore(conn);
}
