/**
 * Recovery: newest valid snapshot + replay of the log after it.
 *
 * Rules (docs/format.md, "Recovery"):
 *
 * 1. Snapshots are tried newest first. One that fails verification is
 *    damaged: it is moved aside (renamed `*.damaged`, never deleted) and the
 *    next older one is tried, which works when the log still covers it
 *    (segments are kept back to the second-newest snapshot for this reason).
 *    With no valid snapshot, recovery starts from the empty tree at
 *    revision 0, which needs the log from revision 1.
 * 2. Every segment that holds a record after the snapshot is read whole and
 *    every record in it verified (also the ones the snapshot covers): damage
 *    there is reported, never skipped. Segments whose records the snapshot
 *    covers entirely are not read at open — they are kept only for the
 *    fallback of rule 1, which reads and verifies them when it needs them;
 *    `repair` verifies everything.
 * 3. Records after the snapshot's revision must be contiguous (each one the
 *    previous plus one, starting at snapshot+1). A gap, or a bad record that
 *    is not a torn tail, fails with CORRUPT naming file, offset and revision.
 * 4. Only the last segment may end in a torn tail (see `scanSegment`); it is
 *    cut off with ftruncate + fdatasync and counted. A last segment whose
 *    header never made it to disk holds no record and is removed.
 * 5. Leftover `snap-*.snap.tmp` and `wal-*.log.tmp` files (a crash while
 *    writing a snapshot, or while replacing a segment that held only lock
 *    records) are removed: the rename that would have published them never
 *    happened, and the file they would have replaced is whole.
 */
import path from 'node:path';
import { BugError, LatchkeyError } from '../core/errors.js';
import { type Mutation, type Node, applyMutations, emptyRoot } from '../core/tree.js';
import { TreeBuilder } from '../core/tree-builder.js';
import { DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_EVENTS } from '../core/watch-registry.js';
import { corrupt, errnoOf, ioError, parseSegmentName, parseSnapshotName } from './format.js';
import type { Fs } from './fs.js';
import type { RecoveredCommit } from './storage.js';
import { readSnapshot } from './snapshot.js';
import { LockImage, unpackEvents, unpackImage } from './lock-log.js';
import { RECORD_TYPE_LOCK_IMAGE, type RefMaker, type ScannedLockRecord, type SegmentRef, decodeMutations, scanSegment } from './wal.js';
import { CommonReplay } from './wal-decode.js';
import { parseValueFileName } from './values.js';

export interface DirListing {
  /** Ascending by revision. */
  readonly snapshots: { name: string; rev: number }[];
  /** Ascending by first revision. */
  readonly segments: SegmentRef[];
  readonly temps: string[];
  /** Value files (values.ts), ascending by number. */
  readonly valueFiles: { name: string; n: number }[];
}

export async function listDir(fs: Fs, dir: string): Promise<DirListing> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (e) {
    throw ioError('listing the data directory', dir, e);
  }
  const snapshots: { name: string; rev: number }[] = [];
  const segments: SegmentRef[] = [];
  const temps: string[] = [];
  const valueFiles: { name: string; n: number }[] = [];
  for (const name of names) {
    const v = parseValueFileName(name);
    if (v !== undefined) { valueFiles.push({ name, n: v }); continue; }
    const s = parseSnapshotName(name);
    if (s !== undefined) { snapshots.push({ name, rev: s }); continue; }
    const w = parseSegmentName(name);
    if (w !== undefined) { segments.push({ name, firstRev: w }); continue; }
    if (/^(snap-\d{20}\.snap|wal-\d{20}\.log)\.tmp$/.test(name)) temps.push(name);
  }
  snapshots.sort((a, b) => a.rev - b.rev);
  segments.sort((a, b) => a.firstRev - b.firstRev);
  valueFiles.sort((a, b) => a.n - b.n);
  return { snapshots, segments, temps, valueFiles };
}

/** Where the log first fails, for recovery's error and for repair. */
export interface LogProblem {
  readonly segment: number;
  readonly file: string;
  readonly offset: number;
  /** The revision of the bad record, or the one expected there. */
  readonly revision: number | undefined;
  readonly reason: string;
}

export interface LogWalk {
  /** Highest revision of a valid record (0 when the log is empty). */
  readonly lastRev: number;
  /** Highest revision the snapshot + contiguous log reach. */
  readonly reach: number;
  readonly torn: { segment: number; file: string; offset: number; bytes: number; reason: string } | undefined;
  /** Valid size of the last segment; undefined when its header is torn. */
  readonly lastValidEnd: number | undefined;
  readonly problem: LogProblem | undefined;
  /** Records applied (only when `apply` was given). */
  readonly replayed: number;
  /** Bytes of the records after `snapRev` (they count toward the next automatic snapshot). */
  readonly bytesAfter: number;
}

/**
 * Reads the segments in order and checks them against `snapRev`. Calls
 * `apply` for each record after `snapRev`, in order. Stops at the first
 * problem and returns it (it does not throw for damage).
 */
export async function walkLog(
  fs: Fs, dir: string, segments: readonly SegmentRef[], snapRev: number,
  apply?: (rev: number, payload: Uint8Array, where: { file: string; offset: number }) => void,
  verifyCovered = true,
  onLocks?: (r: ScannedLockRecord, payload: Uint8Array, where: { file: string; offset: number }) => void,
): Promise<LogWalk> {
  let expect: number | undefined;
  let lastRev = 0;
  let reach = snapRev;
  let replayed = 0;
  let bytesAfter = 0;
  let torn: LogWalk['torn'];
  let lastValidEnd: number | undefined;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const file = path.join(dir, seg.name);
    const isLast = i === segments.length - 1;
    const problem = (offset: number, revision: number | undefined, reason: string): LogWalk =>
      ({ lastRev, reach, torn, lastValidEnd, replayed, bytesAfter, problem: { segment: i, file, offset, revision, reason } });
    // A gap between segments matters only if the snapshot does not cover it.
    if (seg.firstRev > reach + 1 && seg.firstRev - 1 > snapRev) {
      return problem(0, reach + 1, `revision gap: the log resumes at ${seg.firstRev}, expected ${reach + 1}`);
    }
    if (expect !== undefined && seg.firstRev < expect) {
      return problem(0, seg.firstRev, `segment overlaps the previous one (starts at ${seg.firstRev}, expected ${expect})`);
    }
    const next = segments[i + 1];
    if (!verifyCovered && next !== undefined && next.firstRev - 1 <= snapRev) {
      // Every record here is covered by the snapshot in use: not needed now.
      lastRev = next.firstRev - 1;
      expect = next.firstRev;
      continue;
    }
    let buf: Uint8Array;
    try {
      buf = await fs.readFile(file);
    } catch (e) {
      throw ioError('reading the log', file, e);
    }
    const scan = scanSegment(buf, file, seg.firstRev, isLast);
    if (onLocks) {
      for (const r of scan.lockRecords) {
        try {
          onLocks(r, buf.subarray(r.payloadStart, r.payloadEnd), { file, offset: r.offset });
        } catch (e) {
          if (!LatchkeyError.is(e, 'CORRUPT')) throw e;
          return problem(r.offset, r.rev, String(e.info?.['reason'] ?? e.message));
        }
      }
    }
    for (const r of scan.records) {
      if (r.rev > snapRev) {
        if (r.rev !== reach + 1) return problem(r.offset, reach + 1, `revision gap: found ${r.rev}, expected ${reach + 1}`);
        if (apply) {
          try {
            apply(r.rev, buf.subarray(r.payloadStart, r.payloadEnd), { file, offset: r.offset });
          } catch (e) {
            if (!LatchkeyError.is(e, 'CORRUPT')) throw e;
            return problem(r.offset, r.rev, String(e.info?.['reason'] ?? e.message));
          }
          replayed++;
        }
        reach = r.rev;
        bytesAfter += r.payloadEnd - r.offset;
      }
      lastRev = r.rev;
    }
    if (scan.damage) return problem(scan.damage.offset, scan.damage.revision ?? (scan.records.at(-1)?.rev ?? seg.firstRev - 1) + 1, scan.damage.reason);
    if (scan.torn) {
      torn = { segment: i, file, offset: scan.torn.offset, bytes: scan.size - scan.torn.offset, reason: scan.torn.reason };
    }
    if (isLast) lastValidEnd = scan.torn?.offset === 0 ? undefined : scan.validEnd;
    expect = (scan.records.at(-1)?.rev ?? seg.firstRev - 1) + 1;
  }
  return { lastRev, reach, torn, lastValidEnd, problem: undefined, replayed, bytesAfter };
}

export interface Recovered {
  readonly root: Node;
  readonly revision: number;
  readonly snapshot: { file: string; revision: number } | undefined;
  /** Segments left after recovery, ascending. */
  readonly segments: SegmentRef[];
  /** Valid size of the last segment to continue appending to, or undefined to start a new one. */
  readonly activeSize: number | undefined;
  readonly torn: { file: string; offset: number; bytes: number; reason: string } | undefined;
  readonly damagedSnapshots: { file: string; rev: number; movedTo: string; reason: string }[];
  readonly replayed: number;
  readonly bytesAfterSnapshot: number;
  /** False when no node can have an ephemeral owner (none in the snapshot, none created by the log). */
  readonly mayHaveEphemerals: boolean;
  readonly snapshotsKept: { name: string; rev: number }[];
  /** The commits replayed after the snapshot, for the watch history window. */
  readonly history: RecoveredCommit[];
  /** The lock state the log holds (lock-log.ts): holds at the crash, taints, unrecoverable paths, token ceiling. */
  readonly locks: LockImage;
}

/** Folds one verified lock record into `img`; a payload of the wrong shape is CORRUPT. */
export function replayLocks(img: LockImage, r: ScannedLockRecord, payload: Uint8Array, at: { file: string; offset: number }): void {
  const bad = (): LatchkeyError => {
    const reason = 'lock record does not decode';
    return corrupt(`corrupt write-ahead log ${at.file} at offset ${at.offset} (revision ${r.rev}): ${reason}`, { ...at, revision: r.rev, reason });
  };
  if (r.type === RECORD_TYPE_LOCK_IMAGE) {
    const got = unpackImage(payload);
    if (got === undefined) throw bad();
    img.restore(got.encode(), true);
    return;
  }
  const events = unpackEvents(payload);
  if (events === undefined) throw bad();
  for (const e of events) img.apply(e);
}

function where(p: LogProblem): string {
  return `${p.file} at offset ${p.offset}${p.revision !== undefined ? ` (revision ${p.revision})` : ''}`;
}

export function logCorrupt(p: LogProblem, extra = ''): LatchkeyError {
  return corrupt(`corrupt write-ahead log ${where(p)}: ${p.reason}${extra}`, { file: p.file, offset: p.offset, revision: p.revision });
}

/** Decodes and applies one verified record; a record that does not apply is CORRUPT. */
export function replayRecord(root: Node, rev: number, payload: Uint8Array, at: { file: string; offset: number }, each?: (m: Mutation) => void, refs?: RefMaker): Node {
  const muts = decodeMutations(payload, { ...at, revision: rev }, refs);
  if (each) for (const m of muts) each(m);
  try {
    return applyMutations(root, rev, muts);
  } catch (e) {
    if (!(e instanceof BugError)) throw e;
    const reason = `the commit does not apply (${e.message})`;
    throw corrupt(`corrupt write-ahead log ${at.file} at offset ${at.offset} (revision ${rev}): ${reason}`, { ...at, revision: rev, reason });
  }
}

/** Applies one decoded commit to `builder`; a commit that does not apply is CORRUPT (the builder is then abandoned). */
function applyOrCorrupt(builder: TreeBuilder, rev: number, muts: readonly Mutation[], at: { file: string; offset: number }): void {
  try {
    builder.apply(rev, muts);
  } catch (e) {
    throw notApplied(e, rev, at);
  }
}

/** A BugError from applying a commit (a parent missing, …) as the log's CORRUPT; anything else as it is. */
function notApplied(e: unknown, rev: number, at: { file: string; offset: number }): unknown {
  if (!(e instanceof BugError)) return e;
  const reason = `the commit does not apply (${e.message})`;
  return corrupt(`corrupt write-ahead log ${at.file} at offset ${at.offset} (revision ${rev}): ${reason}`, { ...at, revision: rev, reason });
}

/** A replayed commit of the common shape in the history window: its mutations are made only if it stays there. */
interface PendingCommit {
  readonly rev: number;
  /** The record's payload: a view of its segment's buffer until the next segment is read, then a copy. */
  payload: Uint8Array;
  /** The values the tree got, shared with the history's mutations. */
  readonly values: Array<Uint8Array | undefined>;
  readonly before: Node | undefined;
}

export async function recover(fs: Fs, dir: string, durable: boolean, refs?: RefMaker, listed?: DirListing): Promise<Recovered> {
  const listing = listed ?? await listDir(fs, dir);
  for (const t of listing.temps) await fs.unlink(path.join(dir, t)).catch((e: unknown) => { if (errnoOf(e) !== 'ENOENT') throw e; });

  const snaps = [...listing.snapshots];
  const damagedSnapshots: Recovered['damagedSnapshots'] = [];
  let root: Node = emptyRoot();
  let snapRev = 0;
  let snapshot: Recovered['snapshot'];
  let mayHaveEphemerals = false;
  while (snaps.length > 0) {
    const s = snaps[snaps.length - 1]!;
    const file = path.join(dir, s.name);
    try {
      const loaded = await readSnapshot(fs, file, refs);
      if (loaded.revision !== s.rev) throw corrupt(`snapshot ${file} holds revision ${loaded.revision}, its name says ${s.rev}`, { file, offset: 16 });
      root = loaded.root;
      mayHaveEphemerals = loaded.ephemerals > 0;
      snapRev = s.rev;
      snapshot = { file, revision: s.rev };
      break;
    } catch (e) {
      if (!LatchkeyError.is(e, 'CORRUPT')) throw e;
      snaps.pop();
      damagedSnapshots.push({ file, rev: s.rev, movedTo: file + '.damaged', reason: e.message });
    }
  }

  // The tail of the log for the watch history window, trimmed as replay goes: a commit is
  // dropped once the newer ones alone reach the window's default bounds (the registry would
  // drop it), so replay does not hold every mutation of the log until the engine starts.
  // The per-commit sizes live in two number arrays compacted with the history, not in an
  // object per commit kept to the end.
  // A commit of the common shape (puts with inline values, deletes: wal-decode.ts) goes straight into
  // the builder, with no Mutation per put; its history entry keeps a copy of the payload and the
  // values, and its mutations are made only if it is still in the window at the end.
  const history: Array<RecoveredCommit | PendingCommit> = [];
  const histEvents: number[] = [];
  const histBytes: number[] = [];
  let historyHead = 0;
  let keptEvents = 0;
  let keptBytes = 0;
  const locks = new LockImage();
  // The commits are applied to a transient builder (core/tree-builder.ts), not by path
  // copies: the tree is frozen once at the end, and in between only when a commit of the
  // history needs the root before it (one with a delete or a perms change).
  const builder = new TreeBuilder(root);
  const common = new CommonReplay();
  let segmentFile = '';
  const walk = await walkLog(fs, dir, listing.segments, snapRev, (rev, payload, at) => {
    if (at.file !== segmentFile) {
      // A new segment: the window's payloads still viewing the last one are copied, so its buffer can go.
      segmentFile = at.file;
      for (let i = historyHead; i < history.length; i++) {
        const c = history[i]!;
        if ('payload' in c) c.payload = Uint8Array.prototype.slice.call(c.payload);
      }
    }
    let events: number;
    let bytes: number;
    if (common.scan(payload)) {
      const before = common.hasDelete ? builder.root() : undefined;
      events = common.count;
      bytes = common.bytes;
      let values: Array<Uint8Array | undefined>;
      try {
        values = common.apply(payload, rev, builder);
      } catch (e) {
        throw notApplied(e, rev, at);
      }
      history.push({ rev, payload, values, before });
    } else {
      const muts = decodeMutations(payload, { ...at, revision: rev }, refs);
      const mutations: Mutation[] = [];
      let needsBefore = false;
      bytes = 0;
      for (let i = 0; i < muts.length; i++) {
        const m = muts[i]!;
        if (m.op === 'move') continue; // watchers are never told of value moves
        mutations.push(m);
        bytes += m.path.length;
        if (m.op !== 'put') needsBefore = true;
        else {
          bytes += m.value.length;
          if (m.ephemeralOwner !== undefined) mayHaveEphemerals = true;
        }
      }
      const before = needsBefore ? builder.root() : undefined;
      applyOrCorrupt(builder, rev, muts, at);
      history.push({ rev, mutations, before });
      events = mutations.length;
    }
    // at least one event per mutation (a delete counts its subtree in the registry)
    histEvents.push(events);
    histBytes.push(bytes);
    keptEvents += events;
    keptBytes += bytes;
    while (history.length - historyHead > 1 && (keptEvents > DEFAULT_HISTORY_EVENTS || keptBytes > DEFAULT_HISTORY_BYTES)) {
      keptEvents -= histEvents[historyHead]!;
      keptBytes -= histBytes[historyHead]!;
      history[historyHead] = undefined as unknown as RecoveredCommit;
      historyHead++;
    }
    if (historyHead >= 1024 && historyHead * 2 >= history.length) {
      history.splice(0, historyHead);
      histEvents.splice(0, historyHead);
      histBytes.splice(0, historyHead);
      historyHead = 0;
    }
  }, false, (r, payload, at) => replayLocks(locks, r, payload, at));
  const lostSnapshot = damagedSnapshots.length > 0 ? `; damaged snapshot(s): ${damagedSnapshots.map((d) => d.file).join(', ')}` : '';
  if (walk.problem) throw logCorrupt(walk.problem, lostSnapshot);
  root = builder.root();
  // A damaged snapshot newer than what the fallback reaches: revisions would be lost.
  const reached = Math.max(snapRev, walk.reach);
  const beyond = damagedSnapshots.find((d) => d.rev > reached);
  if (beyond !== undefined) {
    throw corrupt(`cannot recover: ${beyond.file} is damaged and the log does not cover revisions ${reached + 1}..${beyond.rev} (${beyond.reason})`, { file: beyond.file, offset: 0, revision: reached + 1 });
  }

  // Only now that the state is known to be recoverable, change files.
  for (const d of damagedSnapshots) {
    await fs.rename(d.file, d.movedTo);
  }
  const segments = [...listing.segments];
  let activeSize = walk.lastValidEnd;
  if (walk.torn) {
    const t = walk.torn;
    if (t.offset === 0) {
      // The header itself is torn: the segment never held a record.
      await fs.unlink(t.file);
      segments.pop();
      activeSize = undefined;
    } else {
      const fh = await fs.open(t.file, 'readwrite');
      try {
        await fh.truncate(t.offset);
        if (durable) await fh.datasync();
      } finally {
        await fh.close();
      }
    }
  }
  const revision = Math.max(snapRev, walk.reach);
  // The log must continue at revision+1. If the last segment ends elsewhere
  // (its records are all covered by a newer snapshot, or it was just
  // removed), appends go to a new segment.
  const last = segments.at(-1);
  if (last !== undefined && activeSize !== undefined && walk.lastRev !== revision && !(walk.lastRev === 0 && last.firstRev === revision + 1)) {
    activeSize = undefined;
  }
  if (activeSize === undefined && segments.some((s) => s.firstRev === revision + 1)) {
    throw new BugError(`log segment for revision ${revision + 1} exists but was not continued`);
  }
  return {
    root, revision, snapshot, segments, activeSize,
    torn: walk.torn ? { file: walk.torn.file, offset: walk.torn.offset, bytes: walk.torn.bytes, reason: walk.torn.reason } : undefined,
    damagedSnapshots, replayed: walk.replayed, bytesAfterSnapshot: walk.bytesAfter, mayHaveEphemerals, snapshotsKept: snaps, locks,
    // A torn or dropped tail is not in walk.reach; neither is it here.
    history: history.slice(historyHead).filter((c) => c.rev <= revision)
      .map((c) => ('payload' in c ? { rev: c.rev, mutations: common.mutations(c.payload, c.values), before: c.before } : c)),
  };
}
