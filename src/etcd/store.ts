/**
 * latchkey on an etcd cluster: `connectEtcd('etcd://h1:p1,h2:p2/?prefix=/latchkey')`
 * gives a Store with the embedded store's API. The store is its default
 * session (a lease of its own); `session()` makes more. See docs/etcd.md
 * for the key layout, the mapping of each promise and its limits.
 */
import type { BigArray, BigArrayOptions, BigFile, BigFileOptions, DType, Lock, LockTableInfo, Session, SessionOptions, Store, StoreStats, WatchEvent, WatchOptions } from '../api.js';
import { openBigArray, openBigFile } from '../bigfile/index.js';
import { LatchkeyError } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import { walkTree } from '../core/tree.js';
import { type HeldClaim, adoptLease, rebuildLocks } from './adopt.js';
import { EtcdBackend, type EtcdOptions, parseEtcdUrl } from './backend.js';
import { Locks } from './locks.js';
import { type AdoptedLease, EtcdSession } from './session.js';
import { EtcdWatch } from './watch.js';
import { xenstoreAccess } from './xenstore.js';

export class EtcdStore extends EtcdSession implements Store {
  private readonly sessions = new Set<EtcdSession>();

  constructor(backend: EtcdBackend, locks: Locks) {
    super(backend, locks, 'default');
  }

  get revision(): number {
    return this.backend.mirror.rev;
  }

  session(options: SessionOptions = {}): Session {
    return this.ownedSession(options);
  }

  /**
   * A session whose maker ends it, as a death when its client vanished
   * (`end(true)`: the lease is revoked, its locks go to the next waiter with
   * ownerDied): what `latchkey serve --backend etcd` gives each connection.
   */
  ownedSession(options: SessionOptions = {}, adopted?: AdoptedLease): EtcdSession {
    this.checkOpen();
    const sessions = this.sessions;
    // Forgotten when it ends, however it ends: a server makes one per connection.
    const s = new (class extends EtcdSession {
      override async end(died: boolean): Promise<void> {
        sessions.delete(this);
        await super.end(died);
      }
    })(this.backend, this.lockService, options.name, adopted);
    sessions.add(s);
    return s;
  }

  /** What the XenStore adapter serves this store through (xenstore.ts; `latchkey serve --backend etcd --xenstore-socket`). */
  get xenstoreEngine(): ReturnType<typeof xenstoreAccess> {
    this.xsAccess ??= xenstoreAccess(this.backend, this.lockService, (id) => {
      for (const s of this.sessions) if (s.id === id) return s.endSignal;
      return undefined;
    });
    return this.xsAccess;
  }

  private xsAccess: ReturnType<typeof xenstoreAccess> | undefined;

  /**
   * Resumes a session another front-end served (adopt.ts): takes its live
   * lease over and gives back the held locks the client claims (by token),
   * keyed by the client's handles. SESSION_EXPIRED when the lease is gone,
   * AUTH when the secret is not the session's.
   */
  async resumeSession(id: string, secret: string, claims: readonly HeldClaim[]): Promise<{ session: EtcdSession; locks: Map<number, Lock> }> {
    this.checkOpen();
    const sessions = this.sessions;
    const adopted = await adoptLease(this.backend, id, secret);
    const session = this.ownedSession({ name: adopted.name }, adopted);
    try {
      await session.ready();
      session.secret = secret;
      const locks = await rebuildLocks(this.backend, this.lockService, session, claims);
      return { session, locks };
    } catch (e) {
      // The lease is adopted (the old front-end let go): revoking it now would hand the session's locks to
      // waiters while its client, told to try another server, still trusts them until its resume window
      // closes. Keep-alives stop instead: etcd expires the lease at its TTL, after that window; or another
      // front-end adopts it meanwhile.
      sessions.delete(session);
      session.letGo(e instanceof LatchkeyError && e.code === 'SESSION_EXPIRED' ? e : new LatchkeyError('SESSION_EXPIRED', `session ${id} could not be resumed here: ${e instanceof Error ? e.message : String(e)}`));
      throw e;
    }
  }

  /** What the server's `servedStore` needs beyond the Store API (its ServedBackend, src/server/served.ts). */
  servedBackend(): {
    ownedSession(o: SessionOptions): EtcdSession;
    ephemeralCounts(): Map<string, number>;
    resumable(s: EtcdSession): Promise<string>;
    resumeSession(id: string, secret: string, claims: readonly HeldClaim[]): Promise<{ session: EtcdSession; locks: Map<number, Lock> }>;
  } {
    return {
      ownedSession: (o) => this.ownedSession(o),
      ephemeralCounts: () => this.ephemeralCounts(),
      resumable: (s) => s.resumable(),
      resumeSession: (id, secret, claims) => this.resumeSession(id, secret, claims),
    };
  }

  /** Ephemeral nodes per owning session id, in this client's mirror (listSessions). */
  ephemeralCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [, n] of walkTree(this.backend.mirror.root)) {
      if (n.ephemeralOwner !== undefined) counts.set(n.ephemeralOwner, (counts.get(n.ephemeralOwner) ?? 0) + 1);
    }
    return counts;
  }

  lockTable(): LockTableInfo {
    return this.lockService.table();
  }

  async resetLock(path: string): Promise<void> {
    this.checkOpen();
    parsePath(path);
    await this.lockService.resetLock(path);
  }

  watch(path: string, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    this.checkOpen();
    parsePath(path);
    return new EtcdWatch(this.backend, path, options);
  }

  bigFile(path: string, options?: BigFileOptions): Promise<BigFile> {
    return openBigFile(this, path, options);
  }

  bigArray<D extends DType = DType>(path: string, options?: BigArrayOptions & { dtype?: D }): Promise<BigArray<D>> {
    return openBigArray(this, path, options) as Promise<BigArray<D>>;
  }

  /** etcd keeps its own snapshots and log; there is nothing for a client to write. */
  async snapshot(): Promise<void> {
    this.checkOpen();
  }

  stats(): StoreStats {
    const b = this.backend;
    return {
      revision: b.mirror.rev, nodes: b.mirror.root.size, commits: b.commits, validations: b.validations, replays: b.replays,
      conflicts: b.conflicts, openTransactions: b.openTransactions, sessions: b.sessionsOpen, ...b.retryCounters,
      backend: 'etcd', endpoints: b.options.endpoints.join(','), prefix: b.keys.root,
    };
  }

  override async close(): Promise<void> {
    if (this.backend.closed) return;
    for (const s of [...this.sessions]) await s.close().catch(() => {});
    await super.close().catch(() => {});
    await this.backend.close();
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Connects to an etcd cluster; rejects CONNECTION_LOST when no member answers. */
export async function connectEtcd(url: string | EtcdOptions): Promise<EtcdStore> {
  const backend = new EtcdBackend(typeof url === 'string' ? parseEtcdUrl(url) : url);
  await backend.start();
  const store = new EtcdStore(backend, new Locks(backend));
  try {
    await store.ready();
  } catch (e) {
    await backend.close();
    throw e;
  }
  return store;
}
