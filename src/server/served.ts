/**
 * The served-store seam: what the server (connection.ts, dispatch.ts) needs
 * of the store it serves, written down as one interface, so the same server
 * serves the embedded engine and a store over etcd (`serve --backend etcd`).
 *
 * The embedded store implements it directly (EmbeddedStore) and adds the
 * synchronous read fast path (`inMemoryView`: a get or exists outside a
 * transaction answered in the same tick, no promise). Any other Store is
 * served through `servedStore` below, which builds the interface from the
 * public Store API plus one thing the API does not have: sessions the
 * server can end as a *death* (`end(true)`: its locks go to the next
 * waiter with ownerDied), which a backend supplies.
 */
import type { Entry, Lock, LockMode, LockTableInfo, Session, SessionInfo, SessionOptions, Store, StoreStats, WatchEvent, WatchOptions } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { WaitClaim } from '../edge/claims.js';

/** Where a served session's client is (for listSessions). */
export interface SessionOrigin {
  readonly transport: string;
  readonly address?: string;
  readonly leaseMs?: number;
}

/** A session the server ends: as a death when its client vanished, cleanly otherwise. */
export interface ServedSession extends Session {
  end(died: boolean): Promise<void>;
  /** Resolves once the session is usable and has its id (a lease granted); absent when it is at once. */
  ready?(): Promise<void>;
  /** Once ready, for a resumable session: the credential its client presents to resume it elsewhere (server/resume.ts). */
  readonly secret?: string | undefined;
  /** ms after a request's send time that the session outlives this server's answer to it (the client's resume window). */
  readonly resumeMs?: number;
}

export type { WaitClaim } from '../edge/claims.js';

/** A hello's claim to a session whose link was lost: its id, its secret, the locks it holds (handle, token), the waits it awaits. */
export interface ResumeClaim {
  readonly session: string;
  readonly secret: string;
  readonly locks: ReadonlyArray<{ readonly handle: number; readonly token: number }>;
  readonly waits?: readonly WaitClaim[];
}

/** A wait carried over by a resume: it goes on, to its lock or its failure; `abort` withdraws it (ABORTED). */
export interface ServedWait {
  readonly result: Promise<Lock>;
  abort(reason?: unknown): void;
}

/** A resumed session, the claimed locks still held and the claimed waits carried over, by the client's handle. */
export interface Resumed {
  readonly session: ServedSession;
  readonly locks: ReadonlyMap<number, Lock>;
  readonly waits: ReadonlyMap<number, ServedWait>;
}

/** What the server's watches need: batches of events, and the backlog for the memory budget. */
export interface ServedWatch {
  /** The first revision this watch delivers. */
  readonly startRevision: number;
  /** Events queued, not yet taken, and the bytes of their paths and values. */
  readonly queued: number;
  readonly queuedBytes: number;
  /** Every queued event, waiting for one; [] once ended cleanly; rejects with its error. */
  take(): Promise<WatchEvent[]>;
  return(): Promise<unknown>;
}

export interface ServedWatchOptions extends WatchOptions {
  /** Events held for a client that does not read; past it the watch ends with a resumable QUOTA. */
  maxQueue?: number;
  /** Values may be the store's own bytes (the server only encodes them). */
  shareValues?: boolean;
  /** Only events whose path passes are delivered (the principal's grants). */
  filter?: (path: string) => boolean;
  /** Called after events were queued (the server charges the backlog). */
  onQueue?: () => void;
}

/** Synchronous reads of the newest revision, for values already in memory. */
export interface SyncReads {
  /** The entry, undefined when absent, false when answering would need a disk read. */
  getInMemory(path: string): Entry | undefined | false;
  exists(path: string): boolean;
}

export interface ServedStore {
  /** The newest revision this server has seen (carried on every reply). */
  readonly revision: number;
  /** `resumable`: its client may resume it after a lost link (it has a `secret` once ready). */
  ownedSession(options: SessionOptions, origin?: SessionOrigin, resumable?: boolean): ServedSession;
  /**
   * Resumes a session after its client's link was lost (on this server or
   * another front-end of the same store). SESSION_EXPIRED when it has ended,
   * AUTH when the secret is not its. Absent: this store resumes nothing.
   */
  resumeSession?(claim: ResumeClaim, origin?: SessionOrigin): Promise<Resumed>;
  /** The sessions this server serves (and the store's own), with what they hold; `visible` filters the lock paths counted. */
  sessionList(visible?: (path: string) => boolean): SessionInfo[];
  watchInternal(path: string, options: ServedWatchOptions): ServedWatch;
  lockTable(): LockTableInfo;
  resetLock(path: string): Promise<void>;
  stats(): StoreStats;
  snapshot(): Promise<void>;
  /**
   * Installs (undefined: removes) the guard that authorizes every path a
   * session's commits actually write (a scoped token's grants). A store
   * without it cannot serve scoped tokens: the server refuses them.
   */
  guardWrites?(session: string, guard: ((path: string) => void) | undefined): void;
  /** The synchronous get/exists fast path (the embedded store). */
  inMemoryView?(): SyncReads;
}

/** What a backend gives `servedStore` beyond the Store API. */
export interface ServedBackend {
  /** A session the server can end as a death (its locks go to the next waiter with ownerDied). */
  ownedSession(options: SessionOptions): ServedSession;
  /** Makes a session resumable (resolves to its secret); absent: sessions are not resumable. */
  resumable?(s: ServedSession): Promise<string>;
  /** Takes over a live session another front-end served (src/etcd/adopt.ts). */
  resumeSession?(id: string, secret: string, claims: ResumeClaim['locks'], waits?: ResumeClaim['waits']): Promise<Resumed>;
  /** Ephemeral nodes per session id (listSessions); zero for all when absent. */
  ephemeralCounts?(): ReadonlyMap<string, number>;
}

/** A ServedStore over any Store (the etcd backend): the server's view built from the public API. */
export function servedStore(store: Store, backend: ServedBackend): ServedStore {
  const sessions = new Map<ServedSession, { origin: SessionOrigin | undefined; since: number }>();
  const storeSince = Date.now();
  const served = (s: ServedSession, origin: SessionOrigin | undefined): ServedSession => {
    const end = s.end.bind(s);
    sessions.set(s, { origin, since: Date.now() });
    // Forgotten when it ends, however it ends (the server's end, its lease running out, a close).
    s.end = async (died) => {
      sessions.delete(s);
      await end(died);
    };
    return s;
  };
  const resume = backend.resumeSession?.bind(backend);
  return {
    get revision() {
      return store.revision;
    },
    ownedSession(options, origin, resumable) {
      const s = served(backend.ownedSession(options), origin);
      const makeResumable = backend.resumable;
      if (resumable === true && makeResumable !== undefined) {
        const ready = s.ready?.bind(s) ?? (() => Promise.resolve());
        let made: Promise<void> | undefined;
        s.ready = () => (made ??= ready().then(() => makeResumable.call(backend, s)).then(() => {}));
      }
      return s;
    },
    ...(resume === undefined ? {} : {
      async resumeSession(claim: ResumeClaim, origin?: SessionOrigin): Promise<Resumed> {
        const r = await resume(claim.session, claim.secret, claim.locks, claim.waits);
        return { session: served(r.session, origin), locks: r.locks, waits: r.waits };
      },
    }),
    sessionList(visible) {
      const t = store.lockTable();
      const counts = new Map<string, { held: number; waiting: number }>();
      const count = (id: string): { held: number; waiting: number } => {
        let c = counts.get(id);
        if (c === undefined) counts.set(id, (c = { held: 0, waiting: 0 }));
        return c;
      };
      for (const l of t.held) if (visible === undefined || visible(l.path)) count(l.session).held++;
      for (const w of t.waiting) if (visible === undefined || visible(w.path)) count(w.session).waiting++;
      const eph = backend.ephemeralCounts?.();
      const one = (s: Pick<Session, 'id' | 'name'>, since: number, o: SessionOrigin | undefined): SessionInfo => ({
        id: s.id, name: s.name, since, transport: o?.transport ?? 'embedded',
        ...(o?.address === undefined ? {} : { address: o.address }),
        ...(o?.leaseMs === undefined || o.leaseMs === 0 ? {} : { leaseMs: o.leaseMs }),
        locksHeld: counts.get(s.id)?.held ?? 0, locksWaiting: counts.get(s.id)?.waiting ?? 0,
        ephemerals: eph?.get(s.id) ?? 0,
      });
      // The store's own session first, when the store is one (the embedded store and the etcd store are).
      const self = store as Partial<Pick<Session, 'id' | 'name'>>;
      const out = self.id === undefined || self.name === undefined ? [] : [one({ id: self.id, name: self.name }, storeSince, undefined)];
      for (const [s, { origin, since }] of sessions) {
        // A session that ended without its end() (moved to another front-end) is forgotten here.
        if (s.closed) sessions.delete(s);
        else if (s.id !== '') out.push(one(s, since, origin));
      }
      return out;
    },
    watchInternal(path, options) {
      return new IterableWatch(store.watch(path, { ...(options.recursive === undefined ? {} : { recursive: options.recursive }), ...(options.fromRevision === undefined ? {} : { fromRevision: options.fromRevision }) }), path, store.revision + 1, options);
    },
    lockTable: () => store.lockTable(),
    resetLock: (path) => store.resetLock(path),
    stats: () => store.stats(),
    snapshot: () => store.snapshot(),
  };
}

/**
 * A ServedWatch over a Store's watch iterator: a loop reads the iterator
 * into a bounded queue of whole revisions, as the engine's watch does. When
 * a revision would pass the bound, the watch stops before it and ends with
 * QUOTA carrying `resumeFrom` (watching again from there loses nothing).
 */
export class IterableWatch implements ServedWatch {
  private queue: WatchEvent[] = [];
  queuedBytes = 0;
  /** The revision being gathered: its events are queued only when a later revision (or a pause) shows it complete. */
  private pending: WatchEvent[] = [];
  private ended: { error?: LatchkeyError } | undefined;
  private waiter: (() => void) | undefined;
  private readonly it: AsyncIterator<WatchEvent>;
  private readonly maxQueue: number;
  readonly startRevision: number;

  constructor(source: AsyncIterable<WatchEvent>, private readonly path: string, now: number, private readonly options: ServedWatchOptions) {
    this.it = source[Symbol.asyncIterator]();
    this.maxQueue = options.maxQueue ?? 10_000;
    this.startRevision = options.fromRevision ?? now;
    void this.pull();
  }

  get queued(): number {
    return this.queue.length;
  }

  private async pull(): Promise<void> {
    try {
      for (;;) {
        const r = await this.it.next();
        if (this.ended !== undefined) return;
        if (r.done === true) {
          this.flushPending();
          this.finish();
          return;
        }
        const ev = r.value;
        if (this.options.filter !== undefined && !this.options.filter(ev.path)) continue;
        if (this.pending.length > 0 && this.pending[0]!.revision !== ev.revision) this.flushPending();
        if (this.ended !== undefined) return;
        this.pending.push(ev);
        this.settleSoon();
      }
    } catch (e) {
      this.flushPending();
      this.finish(e instanceof LatchkeyError ? e : new LatchkeyError('INTERNAL', `watch ${this.path}: ${String(e)}`));
    }
  }

  private settling = false;

  /**
   * The revision gathered is complete once the iterator has nothing more at
   * once: it hands out a whole etcd watch response (whole revisions) within
   * one turn of the event loop, so a check after the turn sees it all.
   */
  private settleSoon(): void {
    if (this.settling) return;
    this.settling = true;
    setImmediate(() => {
      this.settling = false;
      this.flushPending();
    });
  }

  private flushPending(): void {
    const evs = this.pending;
    if (evs.length === 0 || this.ended !== undefined) return;
    this.pending = [];
    if (this.queue.length > 0 && this.queue.length + evs.length > this.maxQueue) {
      const rev = evs[0]!.revision;
      this.finish(new LatchkeyError('QUOTA', `watch fell more than ${this.maxQueue} events behind; resume from revision ${rev}`, { info: { resumeFrom: rev, limit: this.maxQueue } }), true);
      return;
    }
    for (const e of evs) {
      this.queue.push(e);
      this.queuedBytes += e.path.length + (e.value?.length ?? 0);
    }
    this.wake();
    this.options.onQueue?.();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Ends the source; `keep`: the consumer still takes what is queued before the error. */
  private finish(error?: LatchkeyError, keep = false): void {
    if (this.ended !== undefined) return;
    this.ended = error === undefined ? {} : { error };
    if (!keep) {
      this.queue = [];
      this.queuedBytes = 0;
    }
    this.pending = [];
    void this.it.return?.().catch(() => {});
    this.wake();
  }

  async take(): Promise<WatchEvent[]> {
    for (;;) {
      if (this.queue.length > 0) {
        const out = this.queue;
        this.queue = [];
        this.queuedBytes = 0;
        return out;
      }
      if (this.ended !== undefined) {
        if (this.ended.error !== undefined) throw this.ended.error;
        return [];
      }
      await new Promise<void>((resolve) => { this.waiter = resolve; });
    }
  }

  async return(): Promise<unknown> {
    this.finish();
    return undefined;
  }
}
