/**
 * How a big file lies in the tree (docs/bigfile.md, "Layout"):
 *
 *   PATH          JSON metadata {latchkey: 'bigfile'|'bigarray', v, blockSize, size, dtype?, shape?}
 *   PATH/log      the change feed: every commit through a handle sets it to the block ranges it changed
 *   PATH/b/N      block N (decimal), its bytes; shorter than blockSize at the end, absent when all zero
 *
 * Pure: no I/O, no store.
 */
import type { AnyTypedArray, BigFileInfo, DType } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';

export const DEFAULT_BLOCK_SIZE = 1024 * 1024;
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 256 * 1024 * 1024;

export const logPath = (path: string): string => `${path}/log`;
export const blocksDir = (path: string): string => `${path}/b`;
export const blockPath = (path: string, index: number): string => `${path}/b/${index}`;

export interface DTypeInfo {
  readonly size: number;
  readonly make: (buf: ArrayBuffer, byteOffset: number, length: number) => AnyTypedArray;
}

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = {
  int8: { size: 1, make: (b, o, n) => new Int8Array(b, o, n) },
  int16: { size: 2, make: (b, o, n) => new Int16Array(b, o, n) },
  int32: { size: 4, make: (b, o, n) => new Int32Array(b, o, n) },
  int64: { size: 8, make: (b, o, n) => new BigInt64Array(b, o, n) },
  uint8: { size: 1, make: (b, o, n) => new Uint8Array(b, o, n) },
  uint16: { size: 2, make: (b, o, n) => new Uint16Array(b, o, n) },
  uint32: { size: 4, make: (b, o, n) => new Uint32Array(b, o, n) },
  uint64: { size: 8, make: (b, o, n) => new BigUint64Array(b, o, n) },
  float32: { size: 4, make: (b, o, n) => new Float32Array(b, o, n) },
  float64: { size: 8, make: (b, o, n) => new Float64Array(b, o, n) },
};

const CTOR_DTYPE = new Map<unknown, DType>([
  [Int8Array, 'int8'], [Int16Array, 'int16'], [Int32Array, 'int32'], [BigInt64Array, 'int64'],
  [Uint8Array, 'uint8'], [Uint16Array, 'uint16'], [Uint32Array, 'uint32'], [BigUint64Array, 'uint64'],
  [Float32Array, 'float32'], [Float64Array, 'float64'],
]);

/** The dtype a typed array holds (undefined for anything else, e.g. Uint8ClampedArray). */
export function dtypeOf(a: unknown): DType | undefined {
  return a !== null && typeof a === 'object' ? CTOR_DTYPE.get(a.constructor) : undefined;
}

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}

/** Blocks are stored little-endian, as typed arrays hold them here; a big-endian host would read them wrong. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface Meta extends BigFileInfo {
  readonly v: 1;
}

export function encodeMeta(m: BigFileInfo): string {
  const o: Record<string, unknown> = { latchkey: m.kind, v: 1, blockSize: m.blockSize, size: m.size };
  if (m.dtype !== undefined) o['dtype'] = m.dtype;
  if (m.shape !== undefined) o['shape'] = m.shape;
  return JSON.stringify(o);
}

/** The metadata in a node's value; INVALID_ARGUMENT when the node is not a big file. */
export function decodeMeta(path: string, value: Uint8Array): Meta {
  let o: unknown;
  try {
    o = JSON.parse(new TextDecoder().decode(value));
  } catch {
    o = undefined;
  }
  const r = parseMeta(o);
  if (r === undefined) throw new LatchkeyError('INVALID_ARGUMENT', `${path} is not a big file (its value is not big file metadata)`, { path });
  return r;
}

/** The metadata, or undefined when `o` is not big file metadata (`latchkey ls -l` asks of every node). */
export function parseMeta(o: unknown): Meta | undefined {
  if (o === null || typeof o !== 'object') return undefined;
  const r = o as Record<string, unknown>;
  const kind = r['latchkey'];
  if ((kind !== 'bigfile' && kind !== 'bigarray') || r['v'] !== 1) return undefined;
  const blockSize = r['blockSize'];
  const size = r['size'];
  if (!Number.isSafeInteger(blockSize) || !Number.isSafeInteger(size) || (size as number) < 0) return undefined;
  const m: { -readonly [K in keyof Meta]: Meta[K] } = { kind, v: 1, blockSize: blockSize as number, size: size as number };
  if (kind === 'bigarray') {
    const dtype = r['dtype'];
    const shape = r['shape'];
    if (!isDType(dtype) || !Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return undefined;
    m.dtype = dtype;
    m.shape = shape as number[];
  }
  return m;
}

export function checkBlockSize(n: unknown): number {
  if (!Number.isSafeInteger(n) || (n as number) < MIN_BLOCK_SIZE || (n as number) > MAX_BLOCK_SIZE) {
    throw invalidArgument(`blockSize must be an integer from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE} (and at most the store's value limit)`);
  }
  return n as number;
}

export function checkOffset(name: string, n: unknown): number {
  if (!Number.isSafeInteger(n) || (n as number) < 0) throw invalidArgument(`${name} must be a non-negative safe integer, not ${String(n)}`);
  return n as number;
}

/** Block indices as sorted, merged [first, last] ranges: the change feed's value. */
export function toRanges(indices: Iterable<number>): Array<[number, number]> {
  const sorted = [...indices].sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (const i of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && i <= last[1] + 1) last[1] = Math.max(last[1], i);
    else out.push([i, i]);
  }
  return out;
}

/** A change feed entry: the block ranges one commit changed, or `all` when they did not fit in a value. */
export interface Change {
  readonly ranges: ReadonlyArray<readonly [number, number]>;
  readonly all: boolean;
}

export function encodeChange(ranges: ReadonlyArray<readonly [number, number]>, maxBytes: number): string {
  const s = JSON.stringify({ r: ranges });
  return s.length <= maxBytes ? s : JSON.stringify({ all: true });
}

/** A feed value this code did not write reads as "everything may have changed" (never as nothing). */
export function decodeChange(value: Uint8Array | undefined): Change {
  try {
    const o = JSON.parse(new TextDecoder().decode(value)) as { r?: unknown; all?: unknown };
    if (o.all !== true && Array.isArray(o.r) && o.r.every((x) => Array.isArray(x) && x.length === 2 && Number.isSafeInteger(x[0]) && Number.isSafeInteger(x[1]))) {
      return { ranges: o.r as Array<[number, number]>, all: false };
    }
  } catch {
    // fall through
  }
  return { ranges: [], all: true };
}
