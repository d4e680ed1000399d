/**
 * The embedded Store: the engine plus its default session. Store-level
 * operations (sessions, lock table, watches, snapshots, stats, close) live
 * here; reads and writes are the default session's.
 */
import type { BigArray, BigArrayOptions, BigFile, BigFileOptions, DType, LockTableInfo, ReadView, Session, SessionInfo, SessionOptions, Store, StoreStats, WatchEvent, WatchOptions } from '../api.js';
import { openBigArray, openBigFile } from '../bigfile/index.js';
import type { EngineAccess, OwnedSession } from './access.js';
import { Engine, type EngineOptions } from './engine.js';
import type { EngineEvents } from './observe.js';
import { SessionImpl } from './session.js';
import { StoreView } from './view.js';
import { type InternalWatchOptions, type Watch, watch } from './watch.js';
import type { LockPageOptions } from '../core/lock-page.js';
import type { LockPageInfo } from './locks.js';

/** Where a served session's client is (for listSessions). */
export interface SessionOrigin {
  readonly transport: string;
  readonly address?: string;
  readonly leaseMs?: number;
}

export class EmbeddedStore extends SessionImpl implements Store {
  private readonly sessions = new Map<SessionImpl, SessionOrigin | undefined>();

  constructor(engine: Engine) {
    super(engine, 'default');
  }

  static create(options: EngineOptions = {}): EmbeddedStore {
    return new EmbeddedStore(new Engine(options));
  }

  /** The engine as the layers that serve the store may use it (access.ts). */
  get internals(): EngineAccess {
    return this.engine;
  }

  get revision(): number {
    return this.engine.visibleRev;
  }

  /** Authorizes every path a session's commits write (the server's scoped tokens; EngineAccess.guardWrites). */
  guardWrites(session: string, guard: ((path: string) => void) | undefined): void {
    this.engine.guardWrites(session, guard);
  }

  /** Synchronous reads on the newest published revision (api.ts ReadView). */
  view(): ReadView {
    return new StoreView(this.engine);
  }

  /** @internal A view that pins nothing, for reads that never touch a value file (the server's synchronous get and exists). */
  inMemoryView(): StoreView {
    return new StoreView(this.engine, false);
  }

  session(options: SessionOptions = {}): Session {
    return this.ownedSession(options);
  }

  /** A session for a server or XenStore connection, which ends it (as a death when its socket vanishes). */
  ownedSession(options: SessionOptions = {}, origin?: SessionOrigin): OwnedSession {
    this.checkOpen();
    const engine = this.engine;
    const sessions = this.sessions;
    const s = new (class extends SessionImpl {
      override async end(died: boolean): Promise<void> {
        sessions.delete(this);
        await super.end(died);
      }
    })(engine, options.name);
    sessions.set(s, origin);
    return s;
  }

  /**
   * The open sessions (this store's default one first), with what they hold.
   * `visible` filters the lock paths counted (a principal's grants); `t`
   * is the lock table to count from (a caller that has one saves a pass).
   */
  sessionList(visible?: (path: string) => boolean): SessionInfo[] {
    const counts = this.engine.locks.sessionCounts(visible);
    const one = (s: SessionImpl, o: SessionOrigin | undefined): SessionInfo => ({
      id: s.id, name: s.name, since: s.since, transport: o?.transport ?? 'embedded',
      ...(o?.address === undefined ? {} : { address: o.address }),
      ...(o?.leaseMs === undefined || o.leaseMs === 0 ? {} : { leaseMs: o.leaseMs }),
      locksHeld: counts.get(s.id)?.held ?? 0, locksWaiting: counts.get(s.id)?.waiting ?? 0,
      ephemerals: this.engine.ephemeralCount(s.id),
    });
    const out = [one(this, undefined)];
    for (const [s, o] of this.sessions) out.push(one(s, o));
    return out;
  }

  /** The oldest revision a watch may start from (the history window). */
  get oldestWatchRevision(): number {
    return this.engine.watches.oldestRevision;
  }

  /** Adds an observer of the engine's events (metrics, logs, the console); returns its removal. */
  observe(o: EngineEvents): () => void {
    return this.engine.observers.add(o);
  }

  /** A bounded page of held locks in path order with their queues and totals (the console's lock view). */
  lockPage(o: LockPageOptions): LockPageInfo {
    return this.engine.locks.page(o);
  }

  lockTable(): LockTableInfo {
    return this.engine.locks.info();
  }

  /** Takes the locks held at `path` from their holders, leaving the path owner-died (LockService.forceRelease); resolves with their count. */
  forceRelease(path: string): Promise<number> {
    this.checkOpen();
    return this.engine.locks.forceRelease(path);
  }

  async resetLock(path: string): Promise<void> {
    this.checkOpen();
    await this.engine.locks.resetLock(path);
  }

  watch(path: string, options: WatchOptions = {}): AsyncIterable<WatchEvent> {
    return watch(this.engine, path, options);
  }

  /** watch() with the server's knobs (queue bound, shared value bytes) and its batch interface. */
  watchInternal(path: string, options: InternalWatchOptions): Watch {
    return watch(this.engine, path, options);
  }

  snapshot(): Promise<void> {
    this.checkOpen();
    return this.engine.snapshot();
  }

  stats(): StoreStats {
    return this.engine.stats();
  }

  bigFile(path: string, options?: BigFileOptions): Promise<BigFile> {
    return openBigFile(this, path, options);
  }

  bigArray<D extends DType = DType>(path: string, options?: BigArrayOptions & { dtype?: D }): Promise<BigArray<D>> {
    return openBigArray(this, path, options) as Promise<BigArray<D>>;
  }

  /** Ends every session (cleanly), waits for in-flight commits, releases storage. */
  override async close(): Promise<void> {
    if (this.engine.closed) return;
    for (const s of [...this.sessions.keys()]) await s.close().catch(() => {});
    await super.close().catch(() => {});
    await this.engine.close();
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
