/**
 * `store.bigFile(path)` and `store.bigArray(path)`: find or create the
 * file's node, and open handles on it. One implementation for every
 * backend: it uses only the public Store API (api.ts).
 */
import type { BigArray, BigArrayOptions, BigFile, BigFileHandle, BigFileHandleOptions, BigFileInfo, BigFileOptions, Store } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import { BigArrayImpl } from './array.js';
import { BigFileHandleImpl, type MetaFor } from './handle.js';
import { DEFAULT_BLOCK_SIZE, DTYPES, LITTLE_ENDIAN, type Meta, blocksDir, checkBlockSize, decodeMeta, encodeMeta, isDType, logPath } from './meta.js';

class BigFileImpl implements BigFile {
  constructor(private readonly store: Store, readonly path: string, readonly blockSize: number, private readonly metaFor: MetaFor) {}

  open(options: BigFileHandleOptions = {}): Promise<BigFileHandle> {
    return BigFileHandleImpl.open(this.store, this.path, this.blockSize, options, this.metaFor);
  }

  async info(): Promise<BigFileInfo> {
    const e = await this.store.get(this.path);
    if (e === undefined) throw new LatchkeyError('NOT_FOUND', `bigfile ${this.path} does not exist`, { path: this.path });
    const { v: _v, ...info } = decodeMeta(this.path, e.value);
    return info;
  }
}

/**
 * The file's metadata, creating the file (its node, PATH/log and PATH/b) from
 * `fresh` when missing. An existing node that is not a big file is
 * INVALID_ARGUMENT, and is left alone.
 */
async function findOrCreate(store: Store, path: string, create: boolean, fresh: () => BigFileInfo): Promise<Meta> {
  if (!LITTLE_ENDIAN) throw new LatchkeyError('INVALID_ARGUMENT', 'big files store little-endian blocks; this host is big-endian');
  parsePath(path);
  if (path === '/') throw invalidArgument('a big file cannot be the root');
  return store.transaction(async (tx) => {
    const e = await tx.get(path);
    if (e !== undefined) return decodeMeta(path, e.value);
    if (!create) throw new LatchkeyError('NOT_FOUND', `bigfile ${path} does not exist`, { path });
    const m = fresh();
    await tx.set(path, encodeMeta(m));
    await tx.set(logPath(path), '');
    await tx.set(blocksDir(path), '');
    return { ...m, v: 1 };
  });
}

export async function openBigFile(store: Store, path: string, options: BigFileOptions = {}): Promise<BigFile> {
  const blockSize = checkBlockSize(options.blockSize ?? DEFAULT_BLOCK_SIZE);
  const m = await findOrCreate(store, path, options.create !== false, () => ({ kind: 'bigfile', blockSize, size: 0 }));
  if (m.kind !== 'bigfile') throw invalidArgument(`${path} is a big array: open it with bigArray()`);
  if (options.blockSize !== undefined && m.blockSize !== blockSize) {
    throw invalidArgument(`${path} has blockSize ${m.blockSize}, not ${blockSize} (fixed at creation)`);
  }
  return new BigFileImpl(store, path, m.blockSize, (size) => ({ kind: 'bigfile', blockSize: m.blockSize, size }));
}

export async function openBigArray(store: Store, path: string, options: BigArrayOptions = {}): Promise<BigArray> {
  const { dtype, shape } = options;
  if (dtype !== undefined && !isDType(dtype)) throw invalidArgument(`bigArray: unknown dtype ${String(dtype)} (${Object.keys(DTYPES).join(', ')})`);
  if (shape !== undefined && (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))) {
    throw invalidArgument('bigArray: shape must be a non-empty array of non-negative integers');
  }
  const blockSize = checkBlockSize(options.blockSize ?? DEFAULT_BLOCK_SIZE);
  const m = await findOrCreate(store, path, options.create !== false, () => {
    if (dtype === undefined || shape === undefined) throw invalidArgument(`bigArray ${path} does not exist; creating it needs dtype and shape`);
    const rowBytes = shape.slice(1).reduce((a, b) => a * b, DTYPES[dtype].size);
    if (rowBytes === 0) throw invalidArgument('bigArray: a row must hold at least one element (no zero dimension after the first)');
    if (shape[0]! > 0) throw invalidArgument('bigArray: create with shape [0, ...] and append rows');
    return { kind: 'bigarray', blockSize, size: 0, dtype, shape };
  });
  if (m.kind !== 'bigarray') throw invalidArgument(`${path} is a big file, not a big array`);
  if (dtype !== undefined && m.dtype !== dtype) throw invalidArgument(`${path} holds ${m.dtype}, not ${dtype}`);
  const tail = m.shape!.slice(1);
  if (shape !== undefined && (shape.length !== m.shape!.length || shape.slice(1).some((d, k) => d !== tail[k]))) {
    throw invalidArgument(`${path} has shape [*, ${tail.join(', ')}]; asked for [${shape.join(', ')}]`);
  }
  if (options.blockSize !== undefined && m.blockSize !== blockSize) throw invalidArgument(`${path} has blockSize ${m.blockSize}, not ${blockSize}`);
  const d = m.dtype!;
  const rowBytes = tail.reduce((a, b) => a * b, DTYPES[d].size);
  const metaFor: MetaFor = (size) => ({ kind: 'bigarray', blockSize: m.blockSize, size, dtype: d, shape: [Math.floor(size / rowBytes), ...tail] });
  const handle = await BigFileHandleImpl.open(store, path, m.blockSize, { cacheBytes: options.cacheBytes, maxDirtyBytes: options.maxDirtyBytes }, metaFor);
  return new BigArrayImpl(handle, d, tail);
}
