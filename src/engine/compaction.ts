/**
 * Value compaction: reclaims value files whose values were overwritten or
 * deleted, in the background, while commits go on.
 *
 * Design (seed 000's rule: no lock is held across I/O; the format is in
 * docs/format.md, "Value files"):
 *
 * 1. A run seals the active value file (new values go to a new one) and
 *    waits until every commit assigned a place before the seal is published.
 *    From then on the sealed files only lose live values.
 * 2. It walks the visible root (an immutable snapshot at revision X),
 *    yielding to the event loop every few thousand nodes, and sums the live
 *    bytes of each file. Sealed files with at least half their bytes dead
 *    are the victims; a second walk of the same root lists their live refs.
 * 3. Live values of the victims are read (asynchronously, outside the cache)
 *    in batches of a few MiB; each batch is then, in one synchronous step,
 *    checked against the pending head (a node overwritten meanwhile is left
 *    alone), its bytes buffered into the active file (`store`), and a commit
 *    of `move` mutations submitted (Engine.commitMoves): the log's group sync
 *    writes the copies before the record that points at them, as for any
 *    value. Nothing waits on a lock: commits interleave between batches.
 * 4. A victim is then doomed as of revision D (the last move, or X): no tree
 *    at D or later references it. It is deleted once (a) the oldest snapshot
 *    recovery could start from is at D or later (compaction asks for
 *    snapshots; until then a fallback could still reference it), (b) no
 *    transaction or view holds a snapshot older than D (Engine.pinSnapshot),
 *    (c) no read is in flight on it (ValueStore pins), and (d) the watch
 *    history window holds no ref into it (a watch resuming from before D
 *    may report a value it had: WatchRegistry.valueFilesHeld). The window
 *    moves on with new commits, so (d) holds a file at most until the
 *    window (100,000 events or 64 MiB) has passed D.
 * 5. Crash safety: every step leaves a directory that opens with every
 *    acknowledged value readable. Copies whose move did not commit are
 *    garbage in the new file; a doomed file not yet deleted is found again
 *    by the next run (no live bytes) and deleted then.
 */
import { type Mutation, type Node, lookup } from '../core/tree.js';
import { ValueRef } from '../core/value.js';
import type { Storage } from '../storage/storage.js';
import type { ValueStore } from '../storage/values.js';

/** What compaction needs of the engine (engine.ts satisfies it; named here so the two do not import each other). */
export interface CompactionHost {
  readonly readOnlyReason: string | undefined;
  readonly visibleRoot: Node;
  readonly visibleRev: number;
  readonly watches: { valueFilesHeld(): Set<number> };
  drainPending(): Promise<void>;
  commitMoves(build: (pending: Node) => Mutation[]): Promise<number | undefined>;
  snapshot(): Promise<void>;
  oldestPinnedRevision(): number;
}

export interface CompactionOptions {
  /** Start a run once this many value bytes were written since the last one, and at least half the live bytes then (default 64 MiB). */
  scanEveryBytes?: number;
  /** How often the trigger is checked (default 1000 ms). */
  intervalMs?: number;
  /** A sealed file is compacted when at least this share of its bytes is dead (default 0.5). */
  garbageRatio?: number;
  /** Bytes of values copied per commit of moves (default 8 MiB). */
  batchBytes?: number;
}

export interface CompactionStats {
  compactionRuns: number;
  compactionFilesCompacted: number;
  compactionFilesDeleted: number;
  compactionValuesMoved: number;
  compactionBytesMoved: number;
  /** Live value bytes at the last run's walk. */
  liveValueBytes: number;
  /** Files doomed and waiting for snapshots or readers. */
  compactionDoomed: number;
  lastCompactionError?: string;
}

const YIELD_EVERY = 4096;

function yieldLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function splitSegs(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

export class ValueCompactor {
  private readonly scanEveryBytes: number;
  private readonly garbageRatio: number;
  private readonly batchBytes: number;
  private readonly timer: ReturnType<typeof setInterval>;
  private running: Promise<void> | undefined;
  private writtenAtRun = 0;
  private liveAtRun = 0;
  private doomed: { file: number; rev: number }[] = [];
  private closed = false;
  readonly counters = { compactionRuns: 0, compactionFilesCompacted: 0, compactionFilesDeleted: 0, compactionValuesMoved: 0, compactionBytesMoved: 0 };
  private lastError: string | undefined;

  constructor(private readonly engine: CompactionHost, private readonly storage: Storage, private readonly values: ValueStore, o: CompactionOptions = {}) {
    this.scanEveryBytes = o.scanEveryBytes ?? 64 * 1024 * 1024;
    this.garbageRatio = o.garbageRatio ?? 0.5;
    this.batchBytes = o.batchBytes ?? 8 * 1024 * 1024;
    this.timer = setInterval(() => this.tick(), o.intervalMs ?? 1000);
    this.timer.unref();
  }

  private due(): boolean {
    const written = this.values.stats().valueBytesWritten - this.writtenAtRun;
    return this.doomed.length > 0 || written >= Math.max(this.scanEveryBytes, this.liveAtRun / 2);
  }

  private tick(): void {
    if (this.closed || this.running !== undefined || this.engine.readOnlyReason !== undefined || !this.due()) return;
    void this.run().catch(() => undefined);
  }

  /** One run (tests and benchmarks call it directly); resolves when it is done. */
  run(): Promise<void> {
    if (this.running !== undefined) return this.running;
    const p = this.runOnce().catch((e: unknown) => {
      this.lastError = (e as Error).message;
      throw e;
    }).finally(() => { this.running = undefined; });
    this.running = p;
    return p;
  }

  private async runOnce(): Promise<void> {
    this.counters.compactionRuns++;
    this.writtenAtRun = this.values.stats().valueBytesWritten;
    // 1. Seal; wait until everything placed in the sealed files is published.
    this.values.sealActive();
    const sealedUpTo = this.values.activeFile;
    await this.engine.drainPending();
    // 2. Walk the visible root: live bytes per file.
    const root = this.engine.visibleRoot;
    const rev = this.engine.visibleRev;
    const live = new Map<number, number>();
    // An incomplete walk (closed meanwhile) decides nothing.
    if (!await this.walk(root, (_p, ref) => live.set(ref.file, (live.get(ref.file) ?? 0) + ref.length + 16))) return;
    let total = 0;
    for (const b of live.values()) total += b;
    this.liveAtRun = total;
    const victims = new Set<number>();
    for (const [file, size] of this.values.sizes) {
      if (file > sealedUpTo || this.doomed.some((d) => d.file === file)) continue;
      if ((live.get(file) ?? 0) <= size * (1 - this.garbageRatio)) victims.add(file);
    }
    if (victims.size > 0) {
      // 3. Move the victims' live values.
      const refs: { path: string; ref: ValueRef }[] = [];
      if (!await this.walk(root, (p, ref) => { if (victims.has(ref.file)) refs.push({ path: p, ref }); })) return;
      let lastRev = rev;
      for (let i = 0; i < refs.length && !this.closed;) {
        const batch: { path: string; ref: ValueRef; bytes: Uint8Array }[] = [];
        for (let bytes = 0; i < refs.length && (batch.length === 0 || bytes + refs[i]!.ref.length <= this.batchBytes); i++) {
          const { path, ref } = refs[i]!;
          batch.push({ path, ref, bytes: await this.values.read(ref, false) });
          bytes += ref.length;
        }
        const moved = await this.engine.commitMoves((pending) => this.moves(pending, batch));
        if (moved !== undefined) lastRev = moved;
      }
      if (this.closed) return;
      for (const file of victims) this.doomed.push({ file, rev: lastRev });
      this.counters.compactionFilesCompacted += victims.size;
    }
    // 4. Delete what may go; ask for the snapshots that let the rest go.
    await this.reap();
  }

  /** The moves for a batch, against the pending head: only nodes that still hold the ref read. */
  private moves(pending: Node, batch: readonly { path: string; ref: ValueRef; bytes: Uint8Array }[]): Mutation[] {
    const out: Mutation[] = [];
    for (const { path, ref, bytes } of batch) {
      const n = lookup(pending, splitSegs(path));
      if (n === undefined || !(n.value instanceof ValueRef) || n.value.file !== ref.file || n.value.offset !== ref.offset) continue;
      const to = this.values.store(bytes);
      out.push({ op: 'move', path, from: { file: ref.file, offset: ref.offset }, value: to });
      this.counters.compactionValuesMoved++;
      this.counters.compactionBytesMoved += bytes.length;
    }
    return out;
  }

  private async reap(): Promise<void> {
    if (this.doomed.length === 0) return;
    const oldestSnapshot = (): number => this.storage.oldestSnapshotRevision?.() ?? 0;
    const newest = Math.max(...this.doomed.map((d) => d.rev));
    // A snapshot at or after the newest doom, and none before it, make every doomed file unreachable from disk.
    if (oldestSnapshot() < newest && !this.closed) {
      await this.engine.snapshot();
      await this.storage.retireSnapshotsBefore?.(newest);
    }
    const keep: { file: number; rev: number }[] = [];
    // A watch resuming from the history window may read old values (a perms change reports the value it had).
    const historyHolds = this.engine.watches.valueFilesHeld();
    for (const d of this.doomed) {
      const ok = oldestSnapshot() >= d.rev && this.engine.oldestPinnedRevision() >= d.rev && !this.values.pins.has(d.file)
        && !historyHolds.has(d.file)
        && !this.closed && await this.values.deleteFile(d.file);
      if (ok) this.counters.compactionFilesDeleted++;
      else keep.push(d);
    }
    this.doomed = keep;
  }

  /** Calls `each` for every ref in the tree, yielding to the event loop now and then. */
  private async walk(root: Node, each: (path: string, ref: ValueRef) => void): Promise<boolean> {
    const stack: [string, Node][] = [['/', root]];
    let seen = 0;
    while (stack.length > 0) {
      const [p, n] = stack.pop()!;
      if (n.value instanceof ValueRef) each(p, n.value);
      for (const [name, child] of n.children.entries()) stack.push([p === '/' ? `/${name}` : `${p}/${name}`, child]);
      if (++seen % YIELD_EVERY === 0) {
        await yieldLoop();
        if (this.closed) return false;
      }
    }
    return true;
  }

  stats(): CompactionStats {
    return {
      ...this.counters,
      liveValueBytes: this.liveAtRun,
      compactionDoomed: this.doomed.length,
      ...(this.lastError === undefined ? {} : { lastCompactionError: this.lastError }),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running?.catch(() => undefined);
  }
}
