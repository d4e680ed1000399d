/**
 * The commit pipeline (seed 000: never hold the critical section across slow I/O).
 *
 *   validate + apply  →  append  →  [group] fsync  →  publish + acknowledge
 *   (synchronous, on      (buffer,     (off the event     (in revision order)
 *    the pending head)     no I/O)      loop, one at a time)
 *
 * The engine applies a commit to its *pending* head synchronously, so the
 * next commit validates against it at once; the commit then waits here.
 * While one sync is in flight, commits that arrive join the next group
 * (group commit). When a sync resolves, its group's commits become visible
 * (readers' head moves to the group's last root) and are acknowledged, in
 * revision order; commit hooks (watches) see each commit once, in order.
 *
 * Rules that keep state consistent while the sync runs without any lock:
 *  1. One sync in flight; groups are strictly ordered.
 *  2. Readers only ever see the published head, so nothing a crash could
 *     take back is visible.
 *  3. A failed sync fails its group and every commit queued behind it (they
 *     were validated against the failed ones), rolls the pending head back to
 *     the published one, and turns the store read-only: a failed fsync is
 *     never retried and reported as success (fsyncgate).
 * Without a log (in-memory, durability irrelevant) commits publish at once.
 */
import { LatchkeyError } from '../core/errors.js';
import type { Mutation, Node } from '../core/tree.js';
import type { CommitLog } from '../storage/storage.js';

/** How soon a lock-only burst is synced when no commit comes (syncSoon). */
const SYNC_SOON_MS = 10;

export interface Published {
  readonly rev: number;
  readonly mutations: readonly Mutation[];
  readonly before: Node;
  readonly after: Node;
  /**
   * A commit of a burst (engine.ts, "Bursts"): its before and after are the
   * burst's one root as it was when the burst ended, not the commit's own.
   * The engine rebuilds the commit's own roots before a hook that needs them
   * sees it.
   */
  readonly burst?: boolean;
}

interface Pending extends Published {
  /** performance.now() at submit (commit latency for observers). */
  readonly at: number;
  /** What the commit's promise resolves with. */
  readonly result: unknown;
  resolve(result: unknown): void;
  reject(e: unknown): void;
}

export interface PipelineHost {
  /** Makes `root` at `rev` the head that readers see. */
  publish(c: Published): void;
  /** Called once when a sync failed: the store must turn read-only and roll back its pending head. */
  failed(error: LatchkeyError): void;
  /** Every commit of a group (or one commit without a log) was published: the heads are consistent again. */
  publishedAll?(): void;
  /** The pipeline took the commits so far for a sync: none of them may change any more (the engine ends its burst). */
  sealed?(): void;
  /** A group became durable: its sync's time and each commit's time since submit (observers; may be absent). */
  synced?(fsyncMs: number, commitMs: readonly number[]): void;
}

/**
 * Schedules the flush after the current synchronous burst (so commits made in
 * the same tick join one group). A resolved promise's `then`, not
 * queueMicrotask: Node wraps each queueMicrotask callback in an AsyncResource,
 * which was 3-4% of a commit.
 */
const RESOLVED = Promise.resolve();

export class CommitPipeline {
  private group: Pending[] = [];
  private syncing = false;
  private waiters: Array<{ rev: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private failure: LatchkeyError | undefined;
  private publishedRev: number;
  private nudge: ReturnType<typeof setTimeout> | undefined;
  /** syncLog callers, served by the next sync that starts. */
  private logWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  /** drain() callers: woken when no sync is in flight. */
  private idleWaiters: Array<() => void> = [];
  syncs = 0;
  synced = 0;

  private readonly startFlush = (): void => void this.flush();

  constructor(private readonly log: CommitLog | undefined, private readonly host: PipelineHost, rev: number) {
    this.publishedRev = rev;
  }

  get inFlight(): number {
    return this.group.length;
  }

  /**
   * Returns undefined when the commit was published at once (no log), else
   * a promise of `result` once it is (the caller's answer, so it needs no
   * promise of its own on top). `logged` is what the log records when it
   * differs from what watchers see (values moved to value files are refs there).
   */
  submit<R>(rev: number, mutations: readonly Mutation[], before: Node, after: Node, logged: readonly Mutation[] | undefined, result: R, burst = false): Promise<R> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.log === undefined) {
      this.publishOne({ rev, mutations, before, after, burst });
      this.host.publishedAll?.();
      return undefined;
    }
    this.log.append(rev, logged ?? mutations);
    return new Promise<R>((resolve, reject) => {
      this.group.push({ rev, mutations, before, after, burst, at: performance.now(), result, resolve: resolve as (r: unknown) => void, reject });
      if (!this.syncing) {
        this.syncing = true;
        void RESOLVED.then(this.startFlush);
      }
    });
  }

  /** Resolves when every commit up to `rev` is published (immediately if it is). */
  whenPublished(rev: number): Promise<void> {
    if (rev <= this.publishedRev) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ rev, resolve, reject }));
  }

  private publishOne(c: Published): void {
    this.publishedRev = c.rev;
    this.host.publish(c);
  }

  /**
   * Asks for a sync of what the log holds besides commits (lock events)
   * within a few milliseconds, unless a commit's sync covers it first: lock
   * events have no fsync of their own, but should not wait for the next
   * write indefinitely either.
   */
  syncSoon(): void {
    if (this.log === undefined || this.failure !== undefined || this.nudge !== undefined) return;
    this.nudge = setTimeout(() => {
      this.nudge = undefined;
      if (this.syncing || this.failure !== undefined || !this.log!.unsynced) return;
      this.syncing = true;
      void this.flush();
    }, SYNC_SOON_MS);
    this.nudge.unref();
  }

  /** Resolves once everything appended to the log so far (lock events too) is durable. */
  syncLog(): Promise<void> {
    if (this.log === undefined) return Promise.resolve();
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.logWaiters.push({ resolve, reject });
      if (!this.syncing) {
        this.syncing = true;
        void RESOLVED.then(this.startFlush);
      }
    });
  }

  private async flush(): Promise<void> {
    do {
      const batch = this.group;
      const logWaiters = this.logWaiters;
      this.group = [];
      this.logWaiters = [];
      this.host.sealed?.();
      const t0 = performance.now();
      try {
        await this.log!.sync();
      } catch (e) {
        const err = e instanceof LatchkeyError ? e : new LatchkeyError('INTERNAL', `log sync failed: ${(e as Error).message}`, { cause: e });
        for (const w of logWaiters) w.reject(err);
        this.fail(err, batch);
        return;
      }
      for (const w of logWaiters) w.resolve();
      if (batch.length === 0) continue;
      this.syncs++;
      this.synced += batch.length;
      for (const c of batch) this.publishOne(c);
      this.host.publishedAll?.();
      for (const c of batch) c.resolve(c.result);
      if (this.host.synced !== undefined) {
        const t1 = performance.now();
        this.host.synced(t1 - t0, batch.map((c) => t1 - c.at));
      }
      this.wakeWaiters();
    } while (this.group.length > 0 || this.logWaiters.length > 0);
    this.syncing = false;
    this.wakeIdle();
  }

  private wakeIdle(): void {
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  private wakeWaiters(): void {
    if (this.waiters.length === 0) return;
    const keep: typeof this.waiters = [];
    for (const w of this.waiters) (w.rev <= this.publishedRev ? w.resolve() : keep.push(w));
    this.waiters = keep;
  }

  private fail(err: LatchkeyError, batch: Pending[]): void {
    this.failure = err;
    const all = [...batch, ...this.group];
    this.group = [];
    this.syncing = false;
    this.host.failed(err);
    for (const c of all) c.reject(err);
    // What those callers observed will never be durable: they fail too.
    for (const w of this.waiters) w.reject(err);
    this.waiters = [];
    for (const w of this.logWaiters) w.reject(err);
    this.logWaiters = [];
    this.wakeIdle();
  }

  /** Resolves once nothing is waiting for a sync. */
  async drain(): Promise<void> {
    if (this.nudge !== undefined) clearTimeout(this.nudge);
    this.nudge = undefined;
    // A sync in flight may carry no commit (lock events): wait for the loop to go idle, not for a revision.
    while (this.syncing && this.failure === undefined) await new Promise<void>((r) => this.idleWaiters.push(r));
  }
}
