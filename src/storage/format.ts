/**
 * Names and byte-level helpers shared by the log, the snapshots, recovery
 * and repair. The layouts themselves are documented in docs/format.md and at
 * the top of wal.ts and snapshot.ts.
 */
import { LatchkeyError } from '../core/errors.js';

/** Revisions are stored as u64 but must stay exact in a JS number. */
export const MAX_REV = Number.MAX_SAFE_INTEGER;

const REV_DIGITS = 20;

export function segmentName(firstRev: number): string {
  return `wal-${String(firstRev).padStart(REV_DIGITS, '0')}.log`;
}
export function snapshotName(rev: number): string {
  return `snap-${String(rev).padStart(REV_DIGITS, '0')}.snap`;
}

const SEGMENT_RE = /^wal-(\d{20})\.log$/;
const SNAPSHOT_RE = /^snap-(\d{20})\.snap$/;

/** The first revision a segment file's name promises, or undefined if the name is not a segment's. */
export function parseSegmentName(name: string): number | undefined {
  const m = SEGMENT_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}
export function parseSnapshotName(name: string): number | undefined {
  const m = SNAPSHOT_RE.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function writeU64(dv: DataView, off: number, v: number): void {
  dv.setUint32(off, v % 0x1_0000_0000, true);
  dv.setUint32(off + 4, Math.floor(v / 0x1_0000_0000), true);
}
/** Reads a u64; undefined when it does not fit a safe integer. */
export function readU64(dv: DataView, off: number): number | undefined {
  const hi = dv.getUint32(off + 4, true);
  if (hi > 0x1f_ffff) return undefined;
  return hi * 0x1_0000_0000 + dv.getUint32(off, true);
}

export function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function corrupt(message: string, info: Record<string, unknown>): LatchkeyError {
  return new LatchkeyError('CORRUPT', message, { info });
}

/** The errno code of a Node fs error, if it has one. */
export function errnoOf(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/**
 * Converts a failed disk operation (the storage edge's one conversion):
 * `READ_ONLY` when the log failed (the store accepts no more commits),
 * `IO` for anything else (a snapshot, reading at open, repair).
 */
export function ioError(what: string, file: string, e: unknown, info: Record<string, unknown> = {}, code: 'READ_ONLY' | 'IO' = 'IO'): LatchkeyError {
  if (e instanceof LatchkeyError) return e;
  const errno = errnoOf(e) ?? 'EUNKNOWN';
  const tail = code === 'READ_ONLY' ? '; the store is read-only' : '';
  return new LatchkeyError(code, `${what} failed (${errno}) on ${file}${tail}`, {
    cause: e, info: { errno, file, ...info },
  });
}
