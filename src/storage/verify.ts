/**
 * `verify(dir)`: checks a data directory without changing it — the offline
 * half of `repair`, for `latchkey check`.
 *
 * It reads with the same code recovery and repair use (listDir, readSnapshot,
 * walkLog, replayRecord), but renames, truncates and deletes nothing, and
 * does not claim the directory: it can run beside a live server. Then the
 * last segment may be growing under it; a partial record at its end reads
 * as a torn tail, which is reported but is not damage (recovery cuts it).
 *
 * Unlike open, every snapshot is read and every segment verified, including
 * those the newest snapshot covers: they are what a fallback would need.
 */
import path from 'node:path';
import { LatchkeyError } from '../core/errors.js';
import { type Node, emptyRoot, walkTree } from '../core/tree.js';
import { ValueRef } from '../core/value.js';
import { VALUE_FILE_HEADER_SIZE, checkValueFileHeader, readOnlyValues, valueFileName } from './values.js';
import { type Fs, readAt, realFs } from './fs.js';
import { listDir, replayRecord, walkLog } from './recovery.js';
import { readSnapshot } from './snapshot.js';

export interface VerifyProblem {
  readonly file: string;
  readonly offset?: number;
  readonly revision?: number;
  readonly reason: string;
}

export interface VerifyReport {
  readonly dir: string;
  /** True when nothing is damaged (a torn tail is not damage). */
  readonly ok: boolean;
  /** The revision the directory recovers to as it is (through fallbacks), when it recovers. */
  readonly revision: number | undefined;
  readonly snapshots: { file: string; revision: number; nodes?: number; ok: boolean }[];
  readonly segments: { file: string; firstRevision: number }[];
  readonly torn: { file: string; offset: number; bytes: number; reason: string } | undefined;
  readonly problems: VerifyProblem[];
  /** Leftover snapshot temp files (a crash while writing one); open removes them. */
  readonly temps: string[];
  /** Value files, and the values the recovered tree references that were read and checked (CRC32C). */
  readonly valueFiles: { file: string; bytes: number; ok: boolean }[];
  readonly valuesChecked: number;
  readonly valueBytesChecked: number;
}

export async function verify(dir: string, options: { fs?: Fs } = {}): Promise<VerifyReport> {
  const fs = options.fs ?? realFs;
  dir = path.resolve(dir);
  await fs.stat(dir).catch((e: unknown) => {
    throw new LatchkeyError('NOT_FOUND', `no data directory at ${dir}`, { cause: e, path: dir });
  });
  const listing = await listDir(fs, dir);
  const problems: VerifyProblem[] = [];
  const snapshots: VerifyReport['snapshots'] = [];
  const refs = readOnlyValues(dir, fs);
  let base: Node = emptyRoot();
  let snapRev = 0;
  let baseFound = false;
  // Newest first, like recovery; all of them are read (a later fallback may need any).
  for (let i = listing.snapshots.length - 1; i >= 0; i--) {
    const s = listing.snapshots[i]!;
    const file = path.join(dir, s.name);
    try {
      const loaded = await readSnapshot(fs, file, refs);
      if (loaded.revision !== s.rev) throw new LatchkeyError('CORRUPT', `snapshot holds revision ${loaded.revision}, its name says ${s.rev}`);
      snapshots.unshift({ file, revision: s.rev, nodes: loaded.nodes, ok: true });
      if (!baseFound) {
        base = loaded.root;
        snapRev = s.rev;
        baseFound = true;
      }
    } catch (e) {
      if (!LatchkeyError.is(e, 'CORRUPT')) throw e;
      snapshots.unshift({ file, revision: s.rev, ok: false });
      const info = e.info ?? {};
      problems.push({ file, ...(typeof info['offset'] === 'number' ? { offset: info['offset'] } : {}), revision: s.rev, reason: e.message });
    }
  }
  let root = base;
  const walk = await walkLog(fs, dir, listing.segments, snapRev, (rev, payload, at) => {
    root = replayRecord(root, rev, payload, at, undefined, refs);
  }, true);
  if (walk.problem !== undefined) {
    const p = walk.problem;
    problems.push({ file: p.file, offset: p.offset, ...(p.revision === undefined ? {} : { revision: p.revision }), reason: p.reason });
  }
  const reached = Math.max(snapRev, walk.reach);
  for (const s of snapshots) {
    if (!s.ok && s.revision > reached) {
      problems.push({ file: s.file, revision: reached + 1, reason: `the log does not cover revisions ${reached + 1}..${s.revision} that this damaged snapshot held` });
    }
  }
  // Value files: each header, then every value the recovered tree references, read and checksummed.
  const valueFiles: VerifyReport['valueFiles'] = [];
  for (const v of listing.valueFiles) {
    const file = path.join(dir, v.name);
    let ok = true;
    let bytes = 0;
    try {
      const fh = await fs.open(file, 'read');
      try {
        bytes = (await fh.stat()).size;
        const why = checkValueFileHeader(await readAt(fh, VALUE_FILE_HEADER_SIZE, 0), v.n);
        if (why !== undefined) {
          ok = false;
          problems.push({ file, offset: 0, reason: `value file header: ${why}` });
        }
      } finally {
        await fh.close();
      }
    } catch (e) {
      ok = false;
      problems.push({ file, reason: `cannot read the value file: ${(e as Error).message}` });
    }
    valueFiles.push({ file, bytes, ok });
  }
  let valuesChecked = 0;
  let valueBytesChecked = 0;
  if (walk.problem === undefined) {
    for (const [p, n] of walkTree(root)) {
      if (!(n.value instanceof ValueRef)) continue;
      try {
        await refs.read(n.value);
        valuesChecked++;
        valueBytesChecked += n.value.length;
      } catch (e) {
        if (!(e instanceof LatchkeyError)) throw e;
        const info = e.info ?? {};
        problems.push({
          file: typeof info['file'] === 'string' ? info['file'] : path.join(dir, valueFileName(n.value.file)),
          offset: n.value.offset, reason: `value of ${p}: ${e.message}`,
        });
      }
    }
  }
  await refs.close();
  return {
    dir,
    valueFiles, valuesChecked, valueBytesChecked,
    ok: problems.length === 0,
    revision: walk.problem === undefined ? reached : undefined,
    snapshots,
    segments: listing.segments.map((s) => ({ file: path.join(dir, s.name), firstRevision: s.firstRev })),
    torn: walk.torn === undefined ? undefined : { file: walk.torn.file, offset: walk.torn.offset, bytes: walk.torn.bytes, reason: walk.torn.reason },
    problems,
    temps: listing.temps.map((t) => path.join(dir, t)),
  };
}
