/**
 * The engine: the heads, the commit path, sessions and counters. The public
 * Store and Session objects (store.ts, session.ts) are thin layers over it;
 * it calls its lock service (locks.ts) directly, which imports nothing back.
 *
 * Two heads:
 *  - `pending` is what writers validate against and apply to, synchronously:
 *    every commit moves it at once, so a burst of commits is ordered by
 *    arrival with no lock and no await inside the critical section;
 *  - `visible` is what readers and new transactions see: it moves only when
 *    the pipeline publishes a commit after its fsync (pipeline.ts).
 * Revisions count commits: `pending.rev >= visible.rev`, both contiguous.
 *
 * Every write goes the same way (`write`): admission by the lock service
 * (locks.ts: mandatory locks, may wait), then by the value store's write
 * bound (admission.ts `gate`: may wait, in order), fence check, synchronous
 * execution on a Workspace over the pending head, then the pipeline. An operation that fails or changes nothing
 * answers only after the state it observed is durable, so no caller can learn
 * of a commit that a crash could take back.
 */
import type { CommitResult, StoreStats, WriteOptions } from '../api.js';
import { BugError, LatchkeyError, assert, storeClosed } from '../core/errors.js';
import { type Sequencer, Workspace } from '../core/ops.js';
import { type TxState, replayAt } from '../core/transaction.js';
import { type Mutation, type Node, applyMutations, emptyRoot, lookup, lookupParent, putNodeOwned, walkTree } from '../core/tree.js';
import type { WriteTarget } from '../core/lock-table.js';
import { WatchRegistry } from '../core/watch-registry.js';
import type { Storage } from '../storage/storage.js';
import { MAX_RECORD_PAYLOAD } from '../storage/wal.js';
import { COMMIT_BASE_BYTES, DEFAULT_MAX_COMMIT_BYTES, MUTATION_OVERHEAD_BYTES, commitBytes, mutationBytes, utf8Length } from '../core/commit-size.js';
import type { CommitHook, EngineAccess } from './access.js';
import { gate, settled, writeTargets } from './admission.js';
import { type Admission, LockService, NO_ADMISSION } from './locks.js';
import { Observers } from './observe.js';
import { CommitPipeline, type Published } from './pipeline.js';
import { type CompactionOptions, ValueCompactor } from './compaction.js';
import { type RetryCounters, newRetryCounters } from '../util/retry.js';

/** Where writes touch the tree (admission.ts); importers have found them here. */
export { targetOf, targetOfOp, writeTargets } from './admission.js';

export interface EngineOptions {
  storage?: Storage;
  /** Largest value accepted, in bytes (default 1 MiB). */
  maxValueBytes?: number;
  /**
   * Largest commit accepted, as `commitBytes` measures it (core/commit-size.ts;
   * default 64 MiB, at most the log reader's record limit, 256 MiB). A larger
   * commit or transaction fails TOO_LARGE with nothing written.
   */
  maxCommitBytes?: number;
  /** Background compaction of value files (compaction.ts); false turns it off. */
  compaction?: CompactionOptions | false;
  /**
   * false: every plain set makes its own persistent path copy, as other
   * commits do, instead of joining a burst (`canBurst`); for comparisons and
   * tests, the observable result is the same.
   */
  bursts?: boolean;
}

export class Engine implements EngineAccess {
  visibleRoot: Node;
  visibleRev: number;
  /** The pending head itself; read through `pendingRoot` except on the burst path. */
  private pendingHead: Node;
  private pendingRev: number;
  /**
   * The open burst's nodes (see `commitBurst`), or undefined when none is
   * open: nodes made since the burst opened, which only the burst path may
   * change in place.
   */
  private burst: Set<object> | undefined;
  /** The root the commit hooks last saw (the visible root, or the rebuilt own root of a burst commit). */
  private hookRoot: Node;
  private readonly pipeline: CommitPipeline;
  readonly maxValueBytes: number;
  readonly maxCommitBytes: number;
  /** The lock table and its waiters; every write and commit is admitted by it (`admit`). */
  readonly locks: LockService;
  private readonly hooks: CommitHook[] = [];
  /** Watchers and the history window; its history starts with the engine, so a watcher can resume from any recent revision. */
  readonly watches: WatchRegistry;
  /**
   * Per-session write guards (the server's grants): each is called with every
   * path a commit of that session actually writes — a sequential create's
   * chosen name, auto-created parents — and throws to refuse it.
   */
  private readonly writeGuards = new Map<string, (path: string) => void>();
  /**
   * Sequence numbers handed out and maybe not committed yet, by parent path:
   * the next free number (see reserveSeq).
   */
  private readonly seqReserved = new Map<string, number>();
  private seqPruneAt = 4096;
  /** Plain writes take their sequential numbers from the same reservations as transactions. */
  private readonly sequencer: Sequencer = (parent, seen) => this.reserveSeq(parent, seen);
  /** Ephemeral nodes by owning session (kept for the pending head). */
  private readonly ephemerals = new Map<string, Set<string>>();
  readOnlyReason: string | undefined;
  closed = false;
  private snapshotting: Promise<void> | undefined;
  openTransactions = 0;
  sessionsOpen = 0;
  /** Readers of older snapshots (transactions), by revision: value compaction waits for them (pinSnapshot). */
  private readonly snapshotPins = new Map<number, number>();
  readonly counters = { commits: 0, validations: 0, replays: 0, conflicts: 0, txCommits: 0, snapshots: 0, snapshotErrors: 0, compactionCommits: 0, burstCommits: 0 };
  /** `transaction()` calls on this store's sessions: runs of fn, re-runs after CONFLICT, and calls that gave up. */
  readonly retryCounters: RetryCounters = newRetryCounters();
  lastSnapshotError: string | undefined;
  /** Reclaims dead values in value files (durable stores). */
  readonly compactor: ValueCompactor | undefined;
  /** Metrics, logs and the console listen here (observe.ts); none by default. */
  readonly observers = new Observers();

  constructor(readonly options: EngineOptions = {}) {
    const storage = options.storage;
    this.visibleRoot = this.pendingHead = this.hookRoot = storage?.root ?? emptyRoot();
    this.visibleRev = this.pendingRev = storage?.revision ?? 0;
    this.maxValueBytes = options.maxValueBytes ?? 1024 * 1024;
    this.maxCommitBytes = options.maxCommitBytes ?? DEFAULT_MAX_COMMIT_BYTES;
    if (!Number.isSafeInteger(this.maxCommitBytes) || this.maxCommitBytes < 1024 || this.maxCommitBytes > MAX_RECORD_PAYLOAD) {
      throw new LatchkeyError('INVALID_ARGUMENT', `maxCommitBytes must be an integer from 1024 to ${MAX_RECORD_PAYLOAD} (the log reader's record limit)`);
    }
    this.pipeline = new CommitPipeline(storage?.log, {
      publish: (c) => this.publish(c),
      publishedAll: () => this.maybeSnapshot(),
      sealed: () => { this.burst = undefined; },
      failed: (e) => this.failed(e),
      synced: (fsyncMs, commitMs) => { if (this.observers.any) this.observers.emit('synced', fsyncMs, commitMs); },
    }, this.visibleRev);
    const watches = this.watches = new WatchRegistry(this.visibleRev);
    // The log tail recovery replayed: a watcher can resume from before the restart.
    const tail = storage?.takeHistory?.() ?? [];
    if (tail.length > 0 && tail[tail.length - 1]!.rev === this.visibleRev) watches.recall(tail);
    this.onCommit((c) => watches.publish(c.rev, c.mutations, c.before));
    const values = storage?.values;
    if (storage !== undefined && values !== undefined && options.compaction !== false) {
      this.compactor = new ValueCompactor(this, storage, values, options.compaction ?? {});
    }
    this.locks = new LockService(storage === undefined ? undefined : { log: storage.log, locks: storage.locks, syncSoon: () => this.pipeline.syncSoon(), syncLog: () => this.pipeline.syncLog() }, this.observers);
  }

  get storage(): Storage | undefined {
    return this.options.storage;
  }

  /** Deletes ephemeral nodes left by sessions of a previous run (they all died with it). */
  async removeStaleEphemerals(): Promise<void> {
    const stale: string[] = [];
    for (const [path, node] of walkTree(this.visibleRoot)) if (node.ephemeralOwner !== undefined) stale.push(path);
    await this.deleteAll(stale);
  }

  /**
   * Deletes `paths` (recursively) in as few commits as maxCommitBytes allows.
   * A session may own more ephemeral nodes than one commit can delete, and
   * its end must not fail for that: the deletions go in batches, each a
   * commit of its own (watchers see them vanish over a few revisions). A
   * crash between batches leaves nodes of a dead session, which recovery's
   * removeStaleEphemerals deletes the same way.
   */
  private async deleteAll(paths: readonly string[]): Promise<void> {
    const room = this.maxCommitBytes - COMMIT_BASE_BYTES;
    for (let start = 0; start < paths.length;) {
      let end = start;
      for (let bytes = 0; end < paths.length; end++) {
        const b = MUTATION_OVERHEAD_BYTES + utf8Length(paths[end]!);
        if (end > start && bytes + b > room) break;
        bytes += b;
      }
      const batch = paths.slice(start, end);
      await this.write('', [], {}, (ws) => {
        for (const p of batch) ws.delete(p, { recursive: true });
      });
      start = end;
    }
  }

  /**
   * The pending head for everything but the burst path. Reading it ends the
   * open burst: whoever holds the root may keep it, so no node in it may
   * change any more.
   */
  private get pendingRoot(): Node {
    this.burst = undefined;
    return this.pendingHead;
  }

  private set pendingRoot(root: Node) {
    this.burst = undefined;
    this.pendingHead = root;
  }

  onCommit(hook: CommitHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  checkOpen(): void {
    if (this.closed) throw storeClosed();
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.readOnlyReason !== undefined) throw new LatchkeyError('READ_ONLY', `the store is read-only: ${this.readOnlyReason}`);
  }

  /**
   * Runs `fn` on a Workspace over the pending head and commits what it wrote.
   * Resolves with fn's result and the revision it reflects, once durable.
   * (Not async: a write that needs no lock wait costs no extra ticks; it
   * never throws, every error is a rejection.)
   * `values`: the values the write sets, for the value store's write
   * back-pressure (storage/values.ts note 6), taken once its locks are
   * granted (admission.ts `gate`); every write, with values or not, queues
   * there behind writes waiting for the bound.
   */
  write<T>(session: string, targets: readonly WriteTarget[], opts: WriteOptions, fn: (ws: Workspace) => T, plan?: (ws: Workspace) => T, values?: readonly (Uint8Array | undefined)[]): Promise<{ value: T; rev: number }> {
    let admission: Admission | Promise<Admission>;
    try {
      this.checkWritable();
      admission = this.admit(session, targets, opts);
    } catch (e) {
      return Promise.reject(e);
    }
    const store = this.options.storage?.values;
    let bytes = 0;
    if (store !== undefined && values !== undefined) for (const v of values) if (v !== undefined && store.storesOnDisk(v.length)) bytes += v.length;
    const now = !(admission instanceof Promise);
    if (store === undefined || (now && bytes === 0 && !store.writesWaiting)) {
      if (admission instanceof Promise) return admission.then((a) => this.writeAdmitted(a, session, opts.fence, fn, plan));
      return settled(() => this.writeAdmitted(admission, session, opts.fence, fn, plan));
    }
    const apply = (a: Admission, fence: WriteOptions['fence']): { value: T; rev: number } | Promise<{ value: T; rev: number }> => this.writeAdmitted(a, session, fence, fn, plan);
    if (admission instanceof Promise) return admission.then((a) => this.gate(a, session, targets, opts.fence, bytes, apply));
    return settled(() => this.gate(admission, session, targets, opts.fence, bytes, apply));
  }

  /** True while writes wait for the value store's write bound (`gate`): every write queues behind them. */
  private get writesWaiting(): boolean {
    return this.options.storage?.values?.writesWaiting === true;
  }

  /** The value bound's gate (admission.ts `gate`), after lock admission `a`. */
  private gate<R>(a: Admission, session: string, targets: readonly WriteTarget[], fence: WriteOptions['fence'], bytes: number, apply: (a: Admission, fence: WriteOptions['fence']) => R | Promise<R>): R | Promise<R> {
    const store = this.options.storage?.values;
    if (store === undefined || (bytes === 0 && !store.writesWaiting)) return apply(a, fence);
    return gate(store, this.locks, a, session, targets, fence, bytes, apply, (e) => this.afterPublished(this.pendingRev, () => { throw e; }));
  }

  /**
   * `write`, answered in the same call when it can be: the result itself
   * when the commit was admitted at once and published at once (a store
   * without a log), else a promise of it. Throws (or rejects) as `write`
   * rejects. For adapters that answer a request in one callback (XenStore).
   */
  writeNow<T>(session: string, targets: readonly WriteTarget[], opts: WriteOptions, fn: (ws: Workspace) => T): { value: T; rev: number } | Promise<{ value: T; rev: number }> {
    this.checkWritable();
    const admission = this.admit(session, targets, opts);
    const apply = (a: Admission, fence: WriteOptions['fence']): { value: T; rev: number } | Promise<{ value: T; rev: number }> => this.writeAdmitted(a, session, fence, fn);
    if (admission instanceof Promise) return admission.then((a) => this.gate(a, session, targets, opts.fence, 0, apply));
    // No value bytes are counted here, but the write queues behind those waiting for the bound (order).
    if (this.writesWaiting) return this.gate(admission, session, targets, opts.fence, 0, apply);
    return this.writeAdmitted(admission, session, opts.fence, fn);
  }

  /**
   * `plan`, when given, is `fn` as a plan (Workspace.planSet: mutations
   * checked, the tree left alone), used when the commit can join a burst.
   * `fence`: the fence to check (undefined when there is none, or `gate`
   * checked it already).
   */
  private writeAdmitted<T>(admission: Admission, session: string, fence: WriteOptions['fence'], fn: (ws: Workspace) => T, plan?: (ws: Workspace) => T): { value: T; rev: number } | Promise<{ value: T; rev: number }> {
    let ws: Workspace;
    let value: T;
    const burst = plan !== undefined && this.canBurst();
    try {
      this.checkWritable();
      if (fence !== undefined) this.locks.checkFence(session, fence);
      ws = new Workspace(burst ? this.pendingHead : this.pendingRoot, this.pendingRev + 1, this.sequencer, this.maxValueBytes);
      value = burst ? plan(ws) : fn(ws);
      this.checkCommit(session, ws.mutations);
    } catch (e) {
      admission.done();
      return this.afterPublished(this.pendingRev, () => { throw e; });
    }
    if (ws.mutations.length === 0) {
      admission.done();
      const rev = this.pendingRev;
      return this.afterPublished(rev, () => ({ value, rev }));
    }
    const result = { value, rev: ws.rev };
    const done = burst ? this.commitBurst(ws, result) : this.commit(ws, result);
    admission.done();
    return done ?? result;
  }

  /**
   * A plain set (no conditions) of a node whose parent exists, when it can
   * join a burst: `write` with `planSet` and `commitBurst`, minus what a
   * one-put commit does not need (the workspace, its closures, the parsed
   * path built again, a lookup of the node itself: a put needs its parent
   * only; the answer is the revision itself, with no promise chained on the
   * commit's). Anything else (no burst, the root, a value for a value
   * file, a lock wait, a missing or ephemeral parent) goes the general way,
   * with the same checks, errors and answers. Resolves with the commit's
   * revision once durable; never throws (every error is a rejection).
   */
  setPlain(session: string, path: string, segs: readonly string[], value: Uint8Array, opts: WriteOptions): Promise<number> {
    let admission: Admission | Promise<Admission>;
    try {
      this.checkWritable();
      // A value for a value file goes the general way (its write is buffered
      // there; the memory bound applies), and so does every set while writes
      // wait for that bound: a small set must not pass them (their order is kept).
      const values = this.options.storage?.values;
      if (segs.length === 0 || !this.canBurst() || values?.storesOnDisk(value.length) === true || values?.writesWaiting === true) {
        return this.write(session, [{ path, subtree: false }], opts, (ws) => ws.set(path, value), segs.length === 0 ? undefined : (ws) => ws.planSet(path, value), [value]).then(revOf);
      }
      admission = this.admit(session, [{ path, subtree: false }], opts);
    } catch (e) {
      // Never a synchronous throw: the caller gets a promise.
      return Promise.reject(e);
    }
    // After a lock wait, writes may be waiting for the value bound: it queues behind them (`gate`).
    if (admission instanceof Promise) return admission.then((a) => this.gate(a, session, [{ path, subtree: false }], opts.fence, 0, (g, fence) => this.setGeneral(g, session, path, value, fence)));
    let m: PutMutation;
    try {
      if (opts.fence !== undefined) this.locks.checkFence(session, opts.fence);
      const parent = lookupParent(this.pendingHead, segs);
      if (parent === undefined || parent.ephemeralOwner !== undefined) return settled(() => this.setGeneral(admission, session, path, value, opts.fence));
      m = { op: 'put', path, value };
      this.writeGuards.get(session)?.(path);
      this.checkCommitSize(ONE, COMMIT_BASE_BYTES + mutationBytes(m));
    } catch (e) {
      admission.done();
      return settled(() => this.afterPublished(this.pendingRev, () => { throw e; }));
    }
    const rev = this.pendingRev + 1;
    const root = putNodeOwned(this.pendingHead, segs, rev, value, undefined, undefined, (this.burst ??= new Set()));
    this.pendingHead = root;
    this.pendingRev = rev;
    this.counters.commits++;
    this.counters.burstCommits++;
    const done = this.pipeline.submit(rev, [m], root, root, undefined, rev, true);
    admission.done();
    return done ?? Promise.resolve(rev);
  }

  /** setPlain's general way, once admitted: `write`'s, with planSet. */
  private setGeneral(a: Admission, session: string, path: string, value: Uint8Array, fence: WriteOptions['fence']): Promise<number> | number {
    const r = this.writeAdmitted(a, session, fence, (ws) => ws.set(path, value), (ws) => ws.planSet(path, value));
    return r instanceof Promise ? r.then(revOf) : r.rev;
  }

  /**
   * Bursts. Plain sets that arrive while the pipeline gathers a group are
   * applied to one mutable copy of the path they share (`putNodeOwned`)
   * instead of a persistent path copy each: the nodes made since the burst
   * opened (`burst`) change in place, so a run of sets under one parent
   * copies the root, the parent and its B+tree path once. Each set is still
   * a commit of its own (its revision, its log record, its watch events, its
   * acknowledgement after the sync covering it). A burst ends (its nodes
   * become immutable) before anything else can hold a root that contains
   * them: when the pipeline takes the group for its sync (its commits become
   * visible only after that), when anything else reads the pending head
   * (`pendingRoot`), and on a failed sync. Only while a log exists (without
   * one, commits are visible at once) and no commit hook but the watch
   * registry's is installed: the registry needs a commit's old root only for
   * deletes and perms changes, which bursts never carry; a hook installed
   * while burst commits are in flight gets their own roots rebuilt (`publish`).
   */
  private canBurst(): boolean {
    return this.hooks.length === 1 && this.options.bursts !== false && this.options.storage?.log !== undefined;
  }

  /** `commit` for a plan of puts (planSet): applied in place to the open burst. */
  private commitBurst<R>(ws: Workspace, result: R): Promise<R> | undefined {
    assert(ws.rev === this.pendingRev + 1, `commit at ${ws.rev} over pending ${this.pendingRev}`);
    this.trackEphemerals(this.pendingHead, ws.mutations);
    const logged = this.loggedValues(ws.mutations);
    const owned = (this.burst ??= new Set());
    let root = this.pendingHead;
    const muts = logged ?? ws.mutations;
    assert(ws.plannedSegs.length === muts.length, 'a burst commit without its plan');
    for (let i = 0; i < muts.length; i++) {
      const m = muts[i]!;
      if (m.op !== 'put' || m.path === '/') throw new BugError(`a burst commit holds a ${m.op} of ${m.path}`);
      root = putNodeOwned(root, ws.plannedSegs[i]!, ws.rev, m.value, m.ephemeralOwner, m.seq, owned);
    }
    this.pendingHead = root;
    this.pendingRev = ws.rev;
    this.counters.commits++;
    this.counters.burstCommits++;
    return this.pipeline.submit(ws.rev, ws.mutations, root, root, logged, result, true);
  }

  /**
   * Answers with `f` once everything up to `rev` is published: a response
   * that observed the pending head must not reveal a commit a crash could
   * take back.
   */
  private afterPublished<R>(rev: number, f: () => R): R | Promise<R> {
    if (rev <= this.visibleRev) return f();
    return this.pipeline.whenPublished(rev).then(f);
  }

  private admit(session: string, targets: readonly WriteTarget[], opts: WriteOptions): Admission | Promise<Admission> {
    if (targets.length === 0) return NO_ADMISSION;
    return this.locks.admit(session, targets, opts);
  }

  /**
   * Reserves the number of a sequential child of `parent`, like a database
   * sequence: no one else gets it, whether or not the caller commits. A
   * transaction reserves when its create runs and replays with that number
   * at commit, so two transactions each creating their own child of /q
   * never conflict; a transaction that aborts leaves a gap. `seen` is the
   * parent's counter in the caller's view. The committed counter is a
   * maximum (tree.ts `nextSeq`), so it survives a restart; reservations do
   * not need to (their transactions died with the process).
   */
  reserveSeq(parent: string, seen: number): number {
    const head = lookup(this.pendingRoot, splitSegs(parent))?.seq ?? 0;
    const n = Math.max(seen, head, this.seqReserved.get(parent) ?? 0);
    if (!this.seqReserved.has(parent) && this.seqReserved.size >= this.seqPruneAt) {
      // Forget parents whose reservations have all committed (or been passed by the committed counter).
      for (const [p, next] of this.seqReserved) if ((lookup(this.pendingRoot, splitSegs(p))?.seq ?? 0) >= next) this.seqReserved.delete(p);
      this.seqPruneAt = Math.max(4096, 2 * this.seqReserved.size);
    }
    this.seqReserved.set(parent, n + 1);
    return n;
  }

  /** Installs (or with undefined removes) the guard that authorizes every path `session` writes. */
  guardWrites(session: string, guard: ((path: string) => void) | undefined): void {
    if (guard === undefined) this.writeGuards.delete(session);
    else this.writeGuards.set(session, guard);
  }

  /** Runs `session`'s write guard over `muts` (from index `from`); throws what it throws. */
  checkGuard(session: string, muts: readonly Mutation[], from = 0): void {
    const guard = this.writeGuards.get(session);
    if (guard === undefined) return;
    for (let i = from; i < muts.length; i++) guard(muts[i]!.path);
  }

  /** Everything checked about a commit before it touches the pending head. */
  private checkCommit(session: string, muts: readonly Mutation[]): void {
    this.checkGuard(session, muts);
    this.checkCommitSize(muts);
  }

  /** TOO_LARGE unless a commit of `muts` is within maxCommitBytes (so its log record is one recovery reads). */
  checkCommitSize(muts: readonly Mutation[], bytes = commitBytes(muts)): void {
    if (bytes > this.maxCommitBytes) {
      throw new LatchkeyError('TOO_LARGE', `commit of ${bytes} bytes (${muts.length} changes); the limit is ${this.maxCommitBytes}`, { info: { size: bytes, limit: this.maxCommitBytes } });
    }
  }

  private fenceCheck(session: string, fence: NonNullable<WriteOptions['fence']>): void {
    this.locks.checkFence(session, fence);
  }

  /** Moves the pending head to `ws` and hands the commit to the pipeline. Synchronous up to the returned promise. */
  private commit<R>(ws: Workspace, result: R): Promise<R> | undefined {
    assert(ws.rev === this.pendingRev + 1, `commit at ${ws.rev} over pending ${this.pendingRev}`);
    const before = this.pendingRoot;
    this.trackEphemerals(before, ws.mutations);
    const { root, logged } = this.valuesToDisk(before, ws);
    this.pendingRoot = root;
    this.pendingRev = ws.rev;
    this.counters.commits++;
    return this.pipeline.submit(ws.rev, ws.mutations, before, root, logged, result);
  }

  /**
   * Values above the inline threshold go to value files (storage/values.ts):
   * each is buffered there (no I/O yet; the log sync writes it before the
   * record) and the tree and the log record get a ref instead of the bytes.
   * The tree is rebuilt by applying the commit again with refs (the
   * workspace's copy held the bytes); watchers still get the bytes.
   */
  private valuesToDisk(before: Node, ws: Workspace): { root: Node; logged: readonly Mutation[] | undefined } {
    const logged = this.loggedValues(ws.mutations);
    if (logged === undefined) return { root: ws.root, logged: undefined };
    return { root: applyMutations(before, ws.rev, logged), logged };
  }

  /** `muts` with each large value stored in a value file and replaced by its ref, or undefined when none is large. */
  private loggedValues(muts: readonly Mutation[]): Mutation[] | undefined {
    const values = this.options.storage?.values;
    if (values === undefined) return undefined;
    let logged: Mutation[] | undefined;
    for (let i = 0; i < muts.length; i++) {
      const m = muts[i]!;
      if (m.op !== 'put' || !(m.value instanceof Uint8Array) || !values.storesOnDisk(m.value.length)) continue;
      logged ??= muts.slice();
      logged[i] = { ...m, value: values.store(m.value) };
    }
    return logged;
  }

  pinSnapshot(rev: number): () => void {
    this.snapshotPins.set(rev, (this.snapshotPins.get(rev) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.snapshotPins.get(rev) ?? 1) - 1;
      if (left === 0) this.snapshotPins.delete(rev);
      else this.snapshotPins.set(rev, left);
    };
  }

  /** The oldest revision a pinned snapshot reader holds, or the visible revision when none does. */
  oldestPinnedRevision(): number {
    let min = this.visibleRev;
    for (const r of this.snapshotPins.keys()) if (r < min) min = r;
    return min;
  }

  /**
   * Commits value moves (compaction.ts), built synchronously by `build`
   * against the pending head, as one commit of `move` mutations: logged,
   * ordered and published like any commit, watchers told nothing. Resolves
   * with its revision once durable (undefined: nothing to move).
   */
  commitMoves(build: (pending: Node) => Mutation[]): Promise<number | undefined> {
    this.checkWritable();
    const muts = build(this.pendingRoot);
    if (muts.length === 0) return Promise.resolve(undefined);
    const rev = this.pendingRev + 1;
    const before = this.pendingRoot;
    const after = applyMutations(before, rev, muts);
    this.pendingRoot = after;
    this.pendingRev = rev;
    this.counters.compactionCommits++;
    return this.pipeline.submit(rev, [], before, after, muts, rev) ?? Promise.resolve(rev);
  }

  /** Resolves once every commit up to the pending head is published. */
  /** True when every commit on the pending head is published (drainPending has nothing to wait for). */
  get settled(): boolean {
    return this.pendingRev === this.visibleRev;
  }

  drainPending(): Promise<void> {
    return this.pipeline.whenPublished(this.pendingRev);
  }

  /** Commits a transaction: direct when its snapshot is the pending head, else validate + replay. */
  async commitTx(session: string, tx: TxState, opts: WriteOptions): Promise<CommitResult> {
    return this.commitTxNow(session, tx, opts);
  }

  /**
   * `commitTx`, answered in the same call when it can be (admitted at once
   * and published at once, or nothing to commit), else a promise; throws
   * what `commitTx` rejects with.
   */
  commitTxNow(session: string, tx: TxState, opts: WriteOptions): CommitResult | Promise<CommitResult> {
    if (!tx.hasWrites) return { revision: tx.snapshotRev, replayed: false };
    this.checkWritable();
    const targets = writeTargets(tx);
    // An immediate admission holds nothing, so the commit must apply in the
    // same tick, unless it queues behind writes waiting for the value bound
    // (`gate`: its values are not counted, but it keeps its place in the order).
    const pending = this.admit(session, targets, opts);
    const apply = (a: Admission, fence: WriteOptions['fence']): CommitResult | Promise<CommitResult> => this.commitTxAdmitted(a, session, tx, fence);
    if (pending instanceof Promise) return pending.then((a) => this.gate(a, session, targets, opts.fence, 0, apply));
    if (this.writesWaiting) return this.gate(pending, session, targets, opts.fence, 0, apply);
    return this.commitTxAdmitted(pending, session, tx, opts.fence);
  }

  private commitTxAdmitted(admission: Admission, session: string, tx: TxState, fence: WriteOptions['fence']): CommitResult | Promise<CommitResult> {
    let ws: Workspace;
    let replayed = false;
    try {
      this.checkWritable();
      if (fence !== undefined) this.locks.checkFence(session, fence);
      if (tx.snapshotRev === this.pendingRev) {
        ws = tx.ws;
      } else {
        this.counters.validations++;
        const r = replayAt(tx.record, this.pendingRoot, this.pendingRev + 1, this.maxValueBytes);
        if (!r.ok) {
          this.counters.conflicts++;
          if (this.observers.any) this.observers.emit('conflict', { path: r.path, session });
          throw new LatchkeyError('CONFLICT', `transaction conflicts at ${r.path}: a response would differ at head`, { path: r.path, info: { op: r.index } });
        }
        ws = r.ws;
        replayed = r.replayed;
        if (replayed) this.counters.replays++;
      }
      this.checkCommit(session, ws.mutations);
    } catch (e) {
      admission.done();
      throw e;
    }
    this.counters.txCommits++;
    if (ws.mutations.length === 0) {
      admission.done();
      const rev = this.pendingRev;
      return this.afterPublished(rev, () => ({ revision: rev, replayed }));
    }
    const result = { revision: ws.rev, replayed };
    const done = this.commit(ws, result);
    admission.done();
    return done ?? result;
  }

  private publish(c: Published): void {
    this.visibleRoot = c.after;
    this.visibleRev = c.rev;
    let seen = c;
    if (c.burst === true && this.hooks.length > 1) {
      // A hook that needs this commit's own roots was installed while its burst was in flight: rebuild them.
      seen = { rev: c.rev, mutations: c.mutations, before: this.hookRoot, after: applyMutations(this.hookRoot, c.rev, c.mutations) };
    }
    this.hookRoot = seen.after;
    for (const h of this.hooks) {
      try {
        h(seen);
      } catch (e) {
        // A hook is a bug if it throws; keep publishing for everyone else.
        queueMicrotask(() => { throw new BugError(`commit hook threw: ${(e as Error).message}`); });
      }
    }
  }

  private failed(e: LatchkeyError): void {
    this.readOnlyReason = e.message;
    if (this.observers.any) this.observers.emit('readOnly', { reason: e.message });
    this.pendingRoot = this.visibleRoot;
    this.pendingRev = this.visibleRev;
    this.hookRoot = this.visibleRoot;
  }

  /** Keeps the per-session index of ephemeral nodes in step with the pending head. */
  private trackEphemerals(before: Node, muts: readonly Mutation[]): void {
    for (const m of muts) {
      if (m.op === 'move') continue;
      if (m.op === 'put') {
        if (m.ephemeralOwner !== undefined) {
          let set = this.ephemerals.get(m.ephemeralOwner);
          if (set === undefined) this.ephemerals.set(m.ephemeralOwner, (set = new Set()));
          set.add(m.path);
        }
        continue;
      }
      if (this.ephemerals.size === 0) continue;
      // Ephemeral nodes have no children, so a deleted subtree holds them only as leaves.
      const gone = lookup(before, splitSegs(m.path));
      if (gone === undefined) continue;
      if (gone.children.size === 0) {
        if (gone.ephemeralOwner !== undefined) this.ephemerals.get(gone.ephemeralOwner)?.delete(m.path);
        continue;
      }
      for (const [p, n] of walkTree(gone, m.path)) if (n.ephemeralOwner !== undefined) this.ephemerals.get(n.ephemeralOwner)?.delete(p);
    }
  }

  ephemeralCount(session: string): number {
    return this.ephemerals.get(session)?.size ?? 0;
  }

  /** Paths of the ephemeral nodes a session owns at the pending head. */
  ephemeralsOf(session: string): string[] {
    return [...(this.ephemerals.get(session) ?? [])];
  }

  /** Deletes a dead or closed session's ephemeral nodes (in one commit unless they outgrow maxCommitBytes). */
  async endSession(session: string, died: boolean, name = session): Promise<void> {
    // Its writes still waiting for the value bound fail as its lock waiters
    // do, before its guard and its ephemerals go (none may apply after).
    this.options.storage?.values?.cancelWaiters(session, new LatchkeyError('SESSION_EXPIRED', `session ${died ? 'died' : 'ended'} while its write waited for the value write bound`));
    this.writeGuards.delete(session);
    const held = this.observers.any ? this.locks.locksOf(session) : [];
    this.locks.sessionEnded(session, died);
    const mine = this.ephemerals.get(session);
    if (this.observers.any) this.observers.emit('sessionEnded', { session, name, died, locks: held, ephemerals: mine?.size ?? 0 });
    this.ephemerals.delete(session);
    if (mine === undefined || mine.size === 0 || this.readOnlyReason !== undefined) return;
    await this.deleteAll([...mine]);
  }

  private maybeSnapshot(): void {
    const storage = this.options.storage;
    if (storage === undefined || this.snapshotting !== undefined) return;
    if (!storage.needsSnapshot(this.visibleRoot.size)) return;
    void this.snapshot().catch(() => {});
  }

  /** Writes a snapshot of the visible (durable) head while commits continue. */
  snapshot(): Promise<void> {
    const storage = this.options.storage;
    if (storage === undefined) return Promise.resolve();
    if (this.snapshotting !== undefined) return this.snapshotting;
    const revision = this.visibleRev;
    const t0 = performance.now();
    const p = storage.snapshot(this.visibleRoot, revision).then(
      () => {
        this.counters.snapshots++;
        if (this.observers.any) this.observers.emit('snapshot', { revision, ms: performance.now() - t0 });
      },
      (e: unknown) => {
        this.counters.snapshotErrors++;
        this.lastSnapshotError = (e as Error).message;
        if (this.observers.any) this.observers.emit('snapshot', { revision, ms: performance.now() - t0, error: this.lastSnapshotError });
        throw e;
      },
    ).finally(() => { this.snapshotting = undefined; });
    this.snapshotting = p;
    return p;
  }

  stats(): StoreStats {
    const s: Record<string, unknown> = {
      revision: this.visibleRev,
      pendingRevision: this.pendingRev,
      nodes: this.visibleRoot.size,
      ...this.counters,
      ...this.retryCounters,
      groupSyncs: this.pipeline.syncs,
      commitsPerSync: this.pipeline.syncs === 0 ? 0 : this.pipeline.synced / this.pipeline.syncs,
      openTransactions: this.openTransactions,
      sessions: this.sessionsOpen,
      locksHeld: this.locks.table.size.held,
      lockWaiters: this.locks.table.size.waiting,
      lockWakeups: this.locks.table.counters.wakeups,
      lockGrants: this.locks.table.counters.grants,
      deadlocks: this.locks.table.counters.deadlocks,
      ownerDiedTaints: this.locks.recoveryCounts.taints,
      unrecoverableLocks: this.locks.recoveryCounts.unrecoverable,
    };
    if (this.readOnlyReason !== undefined) s.readOnly = this.readOnlyReason;
    if (this.lastSnapshotError !== undefined) s.lastSnapshotError = this.lastSnapshotError;
    if (this.options.storage) s.storage = this.options.storage.stats();
    const v = this.options.storage?.values?.stats();
    if (v !== undefined) {
      s.cacheHits = v.cacheHits;
      s.cacheMisses = v.cacheMisses;
      s.cacheEvictions = v.cacheEvictions;
      s.cacheBytes = v.cacheBytes;
      s.cacheLimit = v.cacheLimit;
    }
    if (this.compactor !== undefined) Object.assign(s, this.compactor.stats());
    return s as unknown as StoreStats;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.compactor?.close();
    await this.pipeline.drain();
    if (this.snapshotting) await this.snapshotting.catch(() => {});
    await this.options.storage?.close();
    this.watches.endAll(storeClosed());
  }
}

function splitSegs(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

const revOf = (r: { rev: number }): number => r.rev;
type PutMutation = Extract<Mutation, { op: 'put' }>;
/** checkCommitSize's list for a one-mutation commit whose size is given (only its length is read, for the message). */
const ONE: readonly Mutation[] = [{ op: 'del', path: '/' }];
