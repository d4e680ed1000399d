/**
 * The named ways into the embedded store for the layers that serve it: the
 * server (src/server) and the XenStore adapter (src/xenstore). They use
 * these interfaces, never the engine's class or a downcast, so what they
 * depend on is written down here.
 */
import type { CommitResult, Lock, LockOptions, Session, WriteOptions } from '../api.js';
import type { WriteTarget } from '../core/lock-table.js';
import type { Workspace } from '../core/ops.js';
import type { TxState } from '../core/transaction.js';
import type { Node } from '../core/tree.js';
import type { Published } from './pipeline.js';

export type CommitHook = (c: Published) => void;

/** What an adapter beside the server (the XenStore adapter) uses of the engine. */
export interface EngineAccess {
  /** The head readers and new transactions see, and its revision. */
  readonly visibleRoot: Node;
  readonly visibleRev: number;
  readonly closed: boolean;
  /** Transactions open in the store (an adapter counts its own TxStates here for stats). */
  openTransactions: number;
  /**
   * Declares a reader of the snapshot at `rev` (a transaction): value
   * compaction keeps every value file that snapshot references until the
   * returned unpin is called (once).
   */
  pinSnapshot(rev: number): () => void;
  /** Runs `fn` on a Workspace over the pending head and commits what it wrote, once admitted and durable. */
  write<T>(session: string, targets: readonly WriteTarget[], opts: WriteOptions, fn: (ws: Workspace) => T): Promise<{ value: T; rev: number }>;
  /**
   * `write`, answered in the same call when it can be (admitted and published
   * at once: a store without a log), else a promise; throws what `write` rejects with.
   */
  writeNow<T>(session: string, targets: readonly WriteTarget[], opts: WriteOptions, fn: (ws: Workspace) => T): { value: T; rev: number } | Promise<{ value: T; rev: number }>;
  /** Commits a transaction (validation and replay against the head). */
  commitTx(session: string, tx: TxState, opts: WriteOptions): Promise<CommitResult>;
  /** `commitTx`, answered in the same call when it can be, as `writeNow`. */
  commitTxNow(session: string, tx: TxState, opts: WriteOptions): CommitResult | Promise<CommitResult>;
  /** Called once per published commit, in revision order; returns the unhook. */
  onCommit(hook: CommitHook): () => void;
  /**
   * Installs (undefined: removes) the guard that authorizes every path a
   * session's commits actually write (the server's grants); it throws to refuse.
   */
  guardWrites(session: string, guard: ((path: string) => void) | undefined): void;
  /** Watchers registered and the history window (counts, for stats and tests). */
  readonly watches: { readonly size: number; readonly oldestRevision: number };
}

/**
 * A session whose maker ends it: a server or XenStore connection, whose
 * socket vanishing is the session's death (its locks go to the next holder
 * with ownerDied), not a clean close.
 */
export interface OwnedSession extends Session {
  end(died: boolean): Promise<void>;
}

/**
 * A lock as the server holds it for a client: released without a promise
 * and watched for loss without an AbortSignal (each was a measurable part
 * of an uncontended lock + release on the server, docs/architecture.md).
 */
export interface ServedLock extends Lock {
  /** What `release()` does, synchronously. */
  releaseNow(): void;
  /** Calls `f` once when the lock is lost (at once if it is already); not after releaseNow. */
  whenLost(f: () => void): void;
}

/** A session that can grant a lock in the tick it is asked for (the embedded engine's). */
export interface LockNow {
  /** The lock when granted at once, a promise when it waits; throws what `lock` would reject with. */
  lockNow(path: string, options: LockOptions): ServedLock | Promise<ServedLock>;
}
