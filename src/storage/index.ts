/**
 * `openStorage(dir)`: the durable Storage the engine runs on.
 *
 * Order at open: claim the directory (ownership) before touching any file,
 * then recover (snapshot + log), then continue the log. Order at close: let
 * a running snapshot finish, sync and close the log, release the directory.
 *
 * Snapshot retention: the newest `snapshotsKept` (default 2) snapshots are
 * kept, and log segments only when every record in them is covered by the
 * oldest kept snapshot. So if the newest snapshot is found damaged at open,
 * the one before it plus the log still reach the same revision.
 */
import path from 'node:path';
import { LatchkeyError, assert, invalidArgument } from '../core/errors.js';
import type { Node } from '../core/tree.js';
import { errnoOf, ioError, snapshotName } from './format.js';
import { type Fs, realFs } from './fs.js';
import { acquireOwnership, type Ownership } from './ownership.js';
import { listDir, recover } from './recovery.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_CACHE_POLICY, DEFAULT_INLINE_VALUE_BYTES, DEFAULT_VALUE_FILE_BYTES, VALUE_FILE_HEADER_SIZE, ValueStore, defaultWriteBytes } from './values.js';
import { CACHE_POLICIES, type CachePolicy } from './value-cache.js';
import { writeSnapshot } from './snapshot.js';
import { TOKEN_BLOCK } from './lock-log.js';
import type { CommitLog, RecoveredCommit, RecoveredLocks, RecoveryStats, Storage, StorageStats } from './storage.js';
import { Wal } from './wal.js';

export type { CommitLog, LockEvent, RecoveredCommit, RecoveredLocks, Storage } from './storage.js';
export { FaultyFs, realFs, type Fault, type Fs } from './fs.js';
export { repair, type RepairReport } from './repair.js';
export { verify, type VerifyReport, type VerifyProblem } from './verify.js';

export type Durability = 'fsync' | 'none';

/** Default `snapshotEveryRecords`. */
export const DEFAULT_SNAPSHOT_EVERY_RECORDS = 16_384;

export interface StorageOptions {
  /**
   * 'fsync' (default): a sync resolves after an O_DSYNC write (write + fdatasync in one call); an
   * acknowledged commit survives a process crash, a kernel crash and power
   * loss (given a disk that honours flushes).
   * 'none': a sync resolves after the write(2) reached the kernel, without
   * fdatasync; acknowledged commits survive the process being killed, but
   * not a kernel crash or power loss (then the log may lose a suffix or be
   * found damaged).
   */
  durability?: Durability;
  /** Start a new log segment when the active one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  /** Bytes of log after which `needsSnapshot()` says a snapshot is due (default 64 MiB). */
  snapshotEveryBytes?: number;
  /**
   * Records (revisions) of log after which a snapshot is due once they also
   * reach half the tree's node count (default 16,384): with values on disk a
   * record is tiny, so bytes alone let the log, and reopen, grow far beyond
   * the tree. See docs/format.md, "When a snapshot is taken".
   */
  snapshotEveryRecords?: number;
  /** How many snapshots to keep (default 2, at least 1; 2 or more allows falling back from a damaged newest one). */
  snapshotsKept?: number;
  /** The file-system seam (tests inject faults through it). */
  fs?: Fs;
  /**
   * Values longer than this many bytes are stored in value files and read on
   * demand (default 1024; 0 puts every non-empty value on disk).
   */
  inlineValueBytes?: number;
  /** Bytes of values the value cache keeps in memory (default 256 MiB). */
  cacheBytes?: number;
  /** The value cache's eviction policy: 's3fifo' (default, measured better: docs/benchmarks.md, cache-policy) or 'lru'. */
  cachePolicy?: CachePolicy;
  /** Start a new value file when the active one reaches this size (default 1 GiB). */
  valueFileBytes?: number;
  /**
   * Write back-pressure: bytes of large values (those going to value files)
   * in writes admitted and not yet durable, at which new writes wait
   * (default a quarter of `cacheBytes`, at least 1 MiB; storage/values.ts).
   */
  valueWriteBytes?: number;
  /** Copy values written into the value cache once on disk (write-through); default false: reads fill it (storage/values.ts note 4). */
  cacheWrites?: boolean;
}

export interface DurableStorage extends Storage {
  readonly dir: string;
  readonly durability: Durability;
  /**
   * True when the log has grown by `snapshotEveryBytes` since the last
   * snapshot, or by max(`snapshotEveryRecords`, nodes / 2) records.
   */
  needsSnapshot(nodes?: number): boolean;
  /** Why the store is read-only (the log's first I/O failure), if it is. */
  readonly readOnly: LatchkeyError | undefined;
  /**
   * False when recovery saw no ephemeral node (none in the snapshot, none
   * created by the replayed log): the engine can skip its scan for ephemeral
   * nodes left by the previous run.
   */
  readonly mayHaveEphemerals: boolean;
}

export async function openStorage(dir: string, options: StorageOptions = {}): Promise<DurableStorage> {
  const fs = options.fs ?? realFs;
  const durability = options.durability ?? 'fsync';
  if (durability !== 'fsync' && durability !== 'none') throw invalidArgument(`durability must be 'fsync' or 'none'`);
  const segmentBytes = options.segmentBytes ?? 64 * 1024 * 1024;
  const snapshotEveryBytes = options.snapshotEveryBytes ?? 64 * 1024 * 1024;
  const snapshotEveryRecords = options.snapshotEveryRecords ?? DEFAULT_SNAPSHOT_EVERY_RECORDS;
  const snapshotsKept = options.snapshotsKept ?? 2;
  if (!(snapshotEveryRecords >= 1)) throw invalidArgument('snapshotEveryRecords must be at least 1');
  if (!(segmentBytes >= 4096)) throw invalidArgument('segmentBytes must be at least 4096');
  if (!(snapshotEveryBytes > 0)) throw invalidArgument('snapshotEveryBytes must be positive');
  if (!Number.isSafeInteger(snapshotsKept) || snapshotsKept < 1) throw invalidArgument('snapshotsKept must be a positive integer');
  const durable = durability === 'fsync';
  dir = path.resolve(dir);
  try {
    await fs.mkdir(dir);
    // The directory's own entry must be durable before anything in it is acknowledged.
    if (durable) await fs.syncDir(path.dirname(dir));
  } catch (e) {
    throw ioError('creating the data directory', dir, e);
  }
  const inlineBytes = options.inlineValueBytes ?? DEFAULT_INLINE_VALUE_BYTES;
  const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
  const valueFileBytes = options.valueFileBytes ?? DEFAULT_VALUE_FILE_BYTES;
  if (!Number.isSafeInteger(inlineBytes) || inlineBytes < 0) throw invalidArgument('inlineValueBytes must be a non-negative integer');
  if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0) throw invalidArgument('cacheBytes must be a non-negative integer');
  const cachePolicy = options.cachePolicy ?? DEFAULT_CACHE_POLICY;
  const writeBytes = options.valueWriteBytes ?? defaultWriteBytes(cacheBytes);
  if (!Number.isSafeInteger(writeBytes) || writeBytes < 1) throw invalidArgument('valueWriteBytes must be a positive integer');
  if (!CACHE_POLICIES.includes(cachePolicy)) throw invalidArgument(`cachePolicy must be one of ${CACHE_POLICIES.join(', ')}`);
  if (!Number.isSafeInteger(valueFileBytes) || valueFileBytes < 4096 || valueFileBytes > 2 ** 39) throw invalidArgument('valueFileBytes must be an integer from 4096 to 2^39');
  const ownership = await acquireOwnership(fs, dir);
  let values: ValueStore | undefined;
  try {
    const t0 = performance.now();
    const listing = await listDir(fs, dir);
    const existing = new Map<number, number>();
    for (const v of listing.valueFiles) {
      try {
        existing.set(v.n, (await fs.stat(path.join(dir, v.name))).size);
      } catch (e) {
        throw ioError('reading a value file', path.join(dir, v.name), e);
      }
    }
    // A value file cut off before its header was complete (a crash while it was created) held no value: remove it.
    const lastValue = listing.valueFiles.at(-1);
    if (lastValue !== undefined && existing.get(lastValue.n)! < VALUE_FILE_HEADER_SIZE) {
      await fs.unlink(path.join(dir, lastValue.name)).catch((e: unknown) => { throw ioError('removing a torn value file', path.join(dir, lastValue.name), e); });
      existing.delete(lastValue.n);
    }
    values = new ValueStore({ dir, fs, durable, inlineBytes, cacheBytes, cachePolicy, fileBytes: valueFileBytes, writeBytes, cacheWrites: options.cacheWrites === true }, existing);
    const rec = await recover(fs, dir, durable, values, listing);
    const wal = await Wal.open({
      dir, fs, segmentBytes, durable, segments: rec.segments, activeSize: rec.activeSize, nextRev: rec.revision + 1,
      bytesSinceSnapshot: rec.bytesAfterSnapshot, locks: rec.locks, values,
    });
    const back = rec.locks.recovered();
    // A directory written before tokens were logged handed them out from the wall clock in microseconds.
    const tokenFloor = !back.seen && rec.revision > 0 ? Math.max(back.tokenFloor, Date.now() * 1000) : back.tokenFloor;
    // lock-log.ts note 5: a durable ceiling before the first grant of this run.
    const ceiling = tokenFloor + TOKEN_BLOCK;
    // Holds of the previous run are taints from now on: say so in the log too.
    for (const [token, p] of rec.locks.held) {
      wal.appendLock({ t: 'taint', path: p });
      wal.appendLock({ t: 'unhold', token });
    }
    wal.appendLock({ t: 'ceiling', token: ceiling });
    await wal.sync();
    const locks: RecoveredLocks = { tokenFloor, ceiling, taints: back.taints, broken: back.broken };
    const recoveryMs = performance.now() - t0;
    return new FileStorage(dir, fs, durability, ownership, wal, values, rec.root, rec.revision, rec.mayHaveEphemerals, locks, {
      history: rec.history,
      snapshotEveryBytes, snapshotEveryRecords, snapshotsKept, recoveryMs,
      snapshots: rec.snapshotsKept.map((s) => s.rev),
      recovery: {
        snapshotRevision: rec.snapshot?.revision ?? 0,
        replayedRecords: rec.replayed,
        tornTails: rec.torn ? 1 : 0,
        tornBytes: rec.torn?.bytes ?? 0,
        ...(rec.torn ? { tornAt: `${rec.torn.file}:${rec.torn.offset}` } : {}),
        damagedSnapshots: rec.damagedSnapshots.map((d) => ({ file: d.file, movedTo: d.movedTo, reason: d.reason })),
      },
    });
  } catch (e) {
    await values?.close();
    await ownership.release();
    throw e;
  }
}

interface Extra {
  history: RecoveredCommit[] | undefined;
  snapshotEveryBytes: number;
  snapshotEveryRecords: number;
  snapshotsKept: number;
  recoveryMs: number;
  snapshots: number[];
  recovery: RecoveryStats;
}

class FileStorage implements DurableStorage {
  private closed = false;
  private snapshotting: Promise<void> = Promise.resolve();
  private snapshotRevs: number[];
  private snapshotCount = 0;
  private lastSnapshotMs = 0;
  /** Value compaction retired older snapshots (retireSnapshotsBefore): the empty tree is no fallback any more. */
  private retired = false;

  constructor(
    readonly dir: string,
    private readonly fs: Fs,
    readonly durability: Durability,
    private readonly ownership: Ownership,
    private readonly wal: Wal,
    readonly values: ValueStore,
    readonly root: Node,
    readonly revision: number,
    readonly mayHaveEphemerals: boolean,
    readonly locks: RecoveredLocks,
    private readonly extra: Extra,
  ) {
    this.snapshotRevs = [...extra.snapshots];
  }

  get log(): CommitLog {
    return this.wal;
  }

  takeHistory(): readonly RecoveredCommit[] {
    const h = this.extra.history ?? [];
    this.extra.history = undefined;
    return h;
  }

  get readOnly(): LatchkeyError | undefined {
    return this.wal.failed;
  }

  needsSnapshot(nodes = 0): boolean {
    if (this.wal.bytesSinceSnapshot >= this.extra.snapshotEveryBytes) return true;
    return this.recordsSinceSnapshot >= Math.max(this.extra.snapshotEveryRecords, nodes / 2);
  }

  /** Records a reopen would replay now: durable revisions after the newest snapshot. */
  get recordsSinceSnapshot(): number {
    return this.wal.durableRevision - (this.snapshotRevs.at(-1) ?? 0);
  }

  oldestSnapshotRevision(): number {
    return this.snapshotRevs.length >= this.extra.snapshotsKept || this.retired ? this.snapshotRevs[0] ?? 0 : 0;
  }

  retireSnapshotsBefore(rev: number): Promise<void> {
    const run = this.snapshotting.catch(() => undefined).then(async () => {
      const keep = this.snapshotRevs.filter((r) => r >= rev);
      if (keep.length === 0) return;
      const drop = this.snapshotRevs.filter((r) => r < rev);
      this.snapshotRevs = keep;
      this.retired = true;
      for (const r of drop) {
        await this.fs.unlink(path.join(this.dir, snapshotName(r))).catch((e: unknown) => { if (errnoOf(e) !== 'ENOENT') throw e; });
      }
      await this.wal.removeSegmentsThrough(keep[0]!);
    });
    this.snapshotting = run;
    return run;
  }

  snapshot(root: Node, rev: number): Promise<void> {
    if (this.closed) return Promise.reject(new LatchkeyError('CLOSED', 'storage is closed'));
    // Snapshots run one at a time, in the order asked.
    const run = this.snapshotting.catch(() => undefined).then(() => this.writeSnapshot(root, rev));
    this.snapshotting = run;
    return run;
  }

  private async writeSnapshot(root: Node, rev: number): Promise<void> {
    assert(rev <= this.wal.durableRevision, `snapshot of revision ${rev} beyond the durable log (${this.wal.durableRevision})`);
    if (this.snapshotRevs.length > 0 && rev <= this.snapshotRevs[this.snapshotRevs.length - 1]!) return;
    const covered = this.wal.bytesSinceSnapshot;
    const t0 = performance.now();
    await writeSnapshot(this.fs, this.dir, root, rev, this.durability === 'fsync');
    this.lastSnapshotMs = performance.now() - t0;
    this.snapshotCount++;
    this.snapshotRevs.push(rev);
    this.wal.coveredBySnapshot(covered);
    this.wal.requestRotation();
    // Retire what the oldest kept snapshot covers.
    const drop = this.snapshotRevs.splice(0, Math.max(0, this.snapshotRevs.length - this.extra.snapshotsKept));
    for (const r of drop) {
      await this.fs.unlink(path.join(this.dir, snapshotName(r))).catch((e: unknown) => { if (errnoOf(e) !== 'ENOENT') throw e; });
    }
    // While fewer snapshots than `snapshotsKept` exist, the empty tree at
    // revision 0 is the oldest fallback: keep the whole log.
    const oldest = this.snapshotRevs.length >= this.extra.snapshotsKept || this.retired ? this.snapshotRevs[0]! : 0;
    await this.wal.removeSegmentsThrough(oldest);
  }

  stats(): StorageStats {
    return {
      dir: this.dir,
      durability: this.durability,
      ...this.wal.stats(),
      bytesSinceSnapshot: this.wal.bytesSinceSnapshot,
      recordsSinceSnapshot: this.recordsSinceSnapshot,
      snapshots: this.snapshotCount,
      snapshotRevisions: [...this.snapshotRevs],
      lastSnapshotMs: this.lastSnapshotMs,
      recoveryMs: this.extra.recoveryMs,
      ...this.extra.recovery,
      values: this.values.stats(),
      ...(this.wal.failed ? { readOnly: this.wal.failed.message } : {}),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.snapshotting.catch(() => undefined);
      await this.wal.close();
      await this.values.close();
    } finally {
      await this.ownership.release();
    }
  }
}
