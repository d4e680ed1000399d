/**
 * The seam between the engine and durable storage.
 *
 * The engine applies a commit to its pending head synchronously, calls
 * `log.append` (buffering only, no I/O), and later `log.sync()` for a whole
 * group of commits; a commit is acknowledged and made visible only after the
 * sync that covers it resolved. The engine never holds state across the
 * await other than the group it is syncing (seed 000: slow I/O outside the
 * critical section).
 */
import type { Mutation, Node } from '../core/tree.js';
import type { LockEvent } from './lock-log.js';
import type { ValueStats, ValueStore } from './values.js';

export type { LockEvent } from './lock-log.js';

/** The lock state a store starts from (lock-log.ts, note 4). */
export interface RecoveredLocks {
  /** Tokens of this run start above it. */
  readonly tokenFloor: number;
  /** The durable ceiling: tokens up to it may be handed out before a new ceiling is logged. */
  readonly ceiling: number;
  /** Paths whose next holder is told ownerDied: taints, and holds the previous run never released. */
  readonly taints: readonly string[];
  /** Paths marked unrecoverable. */
  readonly broken: readonly string[];
}

export interface CommitLog {
  /** Buffers one commit's record. Synchronous; does no I/O. */
  append(rev: number, mutations: readonly Mutation[]): void;
  /**
   * Buffers a lock event (no I/O, no fsync of its own): it goes out before
   * the next commit's record, or with the next sync. Ignored once the log
   * failed or closed.
   */
  appendLock(e: LockEvent): void;
  /** True when something appended awaits a sync. */
  readonly unsynced: boolean;
  /**
   * Writes and fsyncs everything appended so far. At most one sync is in
   * flight at a time (the engine guarantees it). Rejects with a
   * LatchkeyError (e.g. code READ_ONLY/INTERNAL with the errno as cause) on
   * I/O failure; after a failure the log accepts nothing more.
   */
  sync(): Promise<void>;
  /** Bytes of log written since the last snapshot (drives automatic snapshots). */
  readonly bytesSinceSnapshot: number;
}

/** A commit replayed from the log at open, for the watch history window. */
export interface RecoveredCommit {
  readonly rev: number;
  readonly mutations: readonly Mutation[];
  /** The root before the commit; kept only when its events need it (deletes, perms changes). */
  readonly before: Node | undefined;
}

/** The write-ahead log's counters. */
export interface WalStats {
  records: number;
  syncs: number;
  bytesWritten: number;
  segments: number;
  rotations: number;
}

/** What recovery found when the directory was opened. */
export interface RecoveryStats {
  /** Revision of the snapshot recovery started from (0: the empty tree). */
  snapshotRevision: number;
  replayedRecords: number;
  tornTails: number;
  tornBytes: number;
  /** `file:offset` of a torn tail, when there was one. */
  tornAt?: string;
  damagedSnapshots: { file: string; movedTo: string; reason: string }[];
}

/** A durable storage's figures (in the store's `stats().storage`). */
export interface StorageStats extends WalStats, RecoveryStats {
  dir: string;
  durability: string;
  bytesSinceSnapshot: number;
  /** Durable records after the newest snapshot (what a reopen would replay). */
  recordsSinceSnapshot: number;
  /** Snapshots written by this process. */
  snapshots: number;
  snapshotRevisions: number[];
  lastSnapshotMs: number;
  recoveryMs: number;
  /** Why the log stopped taking commits, once it has. */
  readOnly?: string;
  /** Value files and the value cache (values.ts). */
  values?: ValueStats;
}

export interface Storage {
  /** State recovered at open. */
  readonly root: Node;
  readonly revision: number;
  readonly log: CommitLog;
  readonly locks: RecoveredLocks;
  /** Where values above the inline threshold go (durable storage only). */
  readonly values?: ValueStore;
  /**
   * The revision of the oldest snapshot recovery could fall back to (0 while
   * fewer than `snapshotsKept` exist: the whole log is the fallback).
   * A value file no tree at or after it references can be deleted.
   */
  oldestSnapshotRevision?(): number;
  /**
   * Removes the snapshots older than `rev` when one at or after it exists
   * (and the log only they needed): value compaction deleting a file that
   * only those older states reference gives up that fallback for it.
   */
  retireSnapshotsBefore?(rev: number): Promise<void>;
  /** True when enough log has accumulated that a snapshot is due (the storage layer owns the policy). */
  needsSnapshot(nodes?: number): boolean;
  /** Writes a snapshot of `root` (durable state at `rev`) while commits continue; then drops covered log. */
  snapshot(root: Node, rev: number): Promise<void>;
  stats(): StorageStats;
  /**
   * The commits recovery replayed after its snapshot, in order, ending at
   * `revision`; handed over once (the store's watch history starts with
   * them, so watchers resume across a restart), then forgotten here.
   */
  takeHistory?(): readonly RecoveredCommit[];
  /** Flushes and releases the directory (ownership included). */
  close(): Promise<void>;
}
