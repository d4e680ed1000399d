/**
 * `repair(dir)`: makes a damaged data directory open again, keeping the
 * longest valid prefix of its history and never deleting anything.
 *
 * 1. Damaged snapshots are moved aside (`<name>.damaged`); the newest valid
 *    one (or the empty tree) is the base.
 * 2. The log is checked (checksums, contiguity, that every commit applies)
 *    from the base on. At the first problem:
 *    - if the damaged segment is not needed (the base snapshot covers it
 *      and a later segment continues right after the snapshot), it alone is
 *      moved aside: nothing is lost;
 *    - otherwise the segment is moved aside and a copy of its valid prefix
 *      (up to the damaged record) is written under its name, and every
 *      later segment is moved aside. The revisions after the prefix are
 *      lost, and reported.
 * 3. Repeat until the directory recovers cleanly.
 *
 * Repair claims the directory like `open` does, so it cannot run under a
 * live store. A torn tail is not damage; repair leaves it for open to cut.
 */
import path from 'node:path';
import { LatchkeyError } from '../core/errors.js';
import { type Node, emptyRoot } from '../core/tree.js';
import { errnoOf, ioError } from './format.js';
import { type Fs, realFs, writeAll } from './fs.js';
import { acquireOwnership } from './ownership.js';
import { listDir, replayRecord, walkLog } from './recovery.js';
import { readSnapshot } from './snapshot.js';
import { readOnlyValues } from './values.js';
import { SEGMENT_HEADER_SIZE, highestRevisionAfter } from './wal.js';

export interface RepairReport {
  readonly dir: string;
  /** True when nothing needed repair. */
  readonly clean: boolean;
  /** The revision the directory now recovers to. */
  readonly revision: number;
  /**
   * Revisions that existed (or may have) and are no longer recoverable:
   * `from`..`to`, with `to` undefined when the damage hides how far the log went.
   */
  readonly lost: { from: number; to: number | undefined } | undefined;
  readonly movedAside: { file: string; to: string; reason: string }[];
  /** Segments rewritten with their valid prefix. */
  readonly truncated: { file: string; keptBytes: number }[];
}

async function moveAside(fs: Fs, file: string): Promise<string> {
  for (let i = 0; ; i++) {
    const to = file + (i === 0 ? '.damaged' : `.damaged.${i}`);
    try {
      await fs.stat(to);
      continue; // exists: never overwrite an earlier casualty
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
    await fs.rename(file, to);
    return to;
  }
}

export async function repair(dir: string, options: { fs?: Fs } = {}): Promise<RepairReport> {
  const fs = options.fs ?? realFs;
  dir = path.resolve(dir);
  const ownership = await acquireOwnership(fs, dir);
  try {
    return await repairOwned(fs, dir);
  } finally {
    await ownership.release();
  }
}

async function repairOwned(fs: Fs, dir: string): Promise<RepairReport> {
  const movedAside: { file: string; to: string; reason: string }[] = [];
  const truncated: { file: string; keptBytes: number }[] = [];
  let lostFrom: number | undefined;
  let lostTo: number | undefined;
  const noteLost = (from: number, to: number | undefined): void => {
    lostFrom = lostFrom === undefined ? from : Math.min(lostFrom, from);
    if (to !== undefined) lostTo = Math.max(lostTo ?? 0, to);
  };

  // 1. Snapshots.
  let listing = await listDir(fs, dir);
  // Refs are carried, never read: repair works on the log and snapshots only.
  const refs = readOnlyValues(dir, fs);
  let base: Node = emptyRoot();
  let snapRev = 0;
  const damagedRevs: number[] = [];
  for (let i = listing.snapshots.length - 1; i >= 0; i--) {
    const s = listing.snapshots[i]!;
    const file = path.join(dir, s.name);
    try {
      const loaded = await readSnapshot(fs, file, refs);
      if (loaded.revision !== s.rev) throw new LatchkeyError('CORRUPT', `snapshot holds revision ${loaded.revision}, its name says ${s.rev}`);
      base = loaded.root;
      snapRev = s.rev;
      break;
    } catch (e) {
      if (!LatchkeyError.is(e, 'CORRUPT')) throw e;
      movedAside.push({ file, to: await moveAside(fs, file), reason: e.message });
      damagedRevs.push(s.rev);
    }
  }

  // 2–3. The log, until it walks cleanly.
  for (let round = 0; ; round++) {
    if (round > 1000) throw new LatchkeyError('INTERNAL', `repair of ${dir} does not converge`);
    listing = await listDir(fs, dir);
    let root = base;
    const walk = await walkLog(fs, dir, listing.segments, snapRev, (rev, payload, at) => {
      root = replayRecord(root, rev, payload, at, undefined, refs);
    });
    const p = walk.problem;
    if (p === undefined) {
      const revision = Math.max(snapRev, walk.reach);
      for (const r of damagedRevs) if (r > revision) noteLost(revision + 1, r);
      const clean = movedAside.length === 0 && truncated.length === 0;
      return { dir, clean, revision, lost: lostFrom === undefined ? undefined : { from: lostFrom, to: lostTo }, movedAside, truncated };
    }
    const segs = listing.segments;
    const next = segs.slice(p.segment + 1).find((s) => s.firstRev <= snapRev + 1);
    if (p.revision !== undefined && p.revision <= snapRev && next !== undefined) {
      // Covered by the snapshot, and the log goes on after it elsewhere.
      movedAside.push({ file: p.file, to: await moveAside(fs, p.file), reason: p.reason });
      continue;
    }
    // Keep the prefix of the damaged segment, move it and everything after aside.
    const kept = Math.max(snapRev, walk.reach);
    let maxSeen: number | undefined;
    const seen = (r: number | undefined): void => { if (r !== undefined) maxSeen = Math.max(maxSeen ?? 0, r); };
    for (let j = segs.length - 1; j > p.segment; j--) {
      const file = path.join(dir, segs[j]!.name);
      const later = await fs.readFile(file).catch(() => undefined);
      if (later !== undefined) seen(highestRevisionAfter(later, SEGMENT_HEADER_SIZE));
      movedAside.push({ file, to: await moveAside(fs, file), reason: `follows damage at ${p.file}:${p.offset}` });
    }
    const buf = await fs.readFile(p.file);
    seen(highestRevisionAfter(buf, p.offset));
    const to = await moveAside(fs, p.file);
    movedAside.push({ file: p.file, to, reason: p.reason });
    if (p.offset > SEGMENT_HEADER_SIZE) {
      const fh = await fs.open(p.file, 'create');
      try {
        await writeAll(fh, [buf.subarray(0, p.offset)], 0);
        await fh.sync();
      } catch (e) {
        throw ioError('writing the repaired segment', p.file, e);
      } finally {
        await fh.close();
      }
      truncated.push({ file: p.file, keptBytes: p.offset });
    }
    await fs.syncDir(dir);
    noteLost(kept + 1, maxSeen !== undefined && maxSeen > kept ? maxSeen : undefined);
  }
}
