/**
 * The embedded Store: the engine plus its default session. Store-level
 * operations (sessions, lock table, watches, snapshots, stats, close) live
 * here; reads and writes are the default session's.
 */
import type { BigArray, BigArrayOptions, BigFile, BigFileOptions, DType, LockTableInfo, Session, SessionOptions, Store, StoreStats, WatchEvent, WatchOptions } from '../api.js';
import { openBigArray, openBigFile } from '../bigfile/index.js';
import type { EngineAccess, OwnedSession } from './access.js';
import { Engine, type EngineOptions } from './engine.js';
import { SessionImpl } from './session.js';
import { type InternalWatchOptions, type Watch, watch } from './watch.js';

export class EmbeddedStore extends SessionImpl implements Store {
  private readonly sessions = new Set<SessionImpl>();

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

  session(options: SessionOptions = {}): Session {
    return this.ownedSession(options);
  }

  /** A session for a server or XenStore connection, which ends it (as a death when its socket vanishes). */
  ownedSession(options: SessionOptions = {}): OwnedSession {
    this.checkOpen();
    const engine = this.engine;
    const sessions = this.sessions;
    const s = new (class extends SessionImpl {
      override async end(died: boolean): Promise<void> {
        sessions.delete(this);
        await super.end(died);
      }
    })(engine, options.name);
    sessions.add(s);
    return s;
  }

  lockTable(): LockTableInfo {
    return this.engine.locks.info();
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
    for (const s of [...this.sessions]) await s.close().catch(() => {});
    await super.close().catch(() => {});
    await this.engine.close();
  }

  override async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
