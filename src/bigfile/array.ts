/**
 * BigArray: a typed N-dimensional array in C order over a big file handle.
 * Row r of shape [rows, ...tail] is bytes [r·rowBytes, (r+1)·rowBytes);
 * `get` reads only the blocks its rows touch and returns a fresh typed
 * array of exactly those rows.
 */
import type { AnyTypedArray, BigArray, BigFileHandle, DType, TypedArrayOf } from '../api.js';
import { invalidArgument } from '../core/errors.js';
import { DTYPES, checkOffset, dtypeOf } from './meta.js';

const DEFAULT_CHUNK_BYTES = 1024 * 1024;

export class BigArrayImpl<D extends DType = DType> implements BigArray<D> {
  readonly path: string;
  private readonly itemSize: number;
  private readonly rowElems: number;
  private readonly rowBytes: number;

  constructor(readonly handle: BigFileHandle, readonly dtype: D, private readonly tail: readonly number[]) {
    this.path = handle.path;
    this.itemSize = DTYPES[dtype].size;
    this.rowElems = tail.reduce((a, b) => a * b, 1);
    this.rowBytes = this.rowElems * this.itemSize;
  }

  get rows(): number {
    return Math.floor(this.handle.size / this.rowBytes);
  }

  get shape(): readonly number[] {
    return [this.rows, ...this.tail];
  }

  private bytesOf(data: TypedArrayOf<D>, what: string): Uint8Array {
    if (dtypeOf(data) !== this.dtype) throw invalidArgument(`${what}: ${this.path} holds ${this.dtype}; got ${dtypeOf(data) ?? typeof data}`);
    const a = data as AnyTypedArray;
    if (a.length % this.rowElems !== 0) throw invalidArgument(`${what}: ${a.length} elements are not whole rows of ${this.rowElems}`);
    return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  }

  async append(data: TypedArrayOf<D>): Promise<void> {
    const bytes = this.bytesOf(data, 'append');
    this.handle.write(this.rows * this.rowBytes, bytes);
  }

  set(row: number, data: TypedArrayOf<D>): void {
    checkOffset('row', row);
    const bytes = this.bytesOf(data, 'set');
    const rows = bytes.length / this.rowBytes;
    if (row + rows > this.rows) throw invalidArgument(`set: rows [${row}, ${row + rows}) pass the ${this.rows} rows (append() grows the array)`);
    this.handle.write(row * this.rowBytes, bytes);
  }

  async get(start: number, end: number): Promise<TypedArrayOf<D>> {
    checkOffset('start', start);
    checkOffset('end', end);
    if (end < start || end > this.rows) throw invalidArgument(`get: rows [${start}, ${end}) are not within [0, ${this.rows})`);
    const bytes = await this.handle.read(start * this.rowBytes, (end - start) * this.rowBytes);
    // read() returns a fresh buffer at offset 0, so it is aligned for any dtype.
    return DTYPES[this.dtype].make(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.length / this.itemSize) as TypedArrayOf<D>;
  }

  async *chunks(options: { rows?: number; start?: number; end?: number } = {}): AsyncIterable<TypedArrayOf<D>> {
    const step = options.rows ?? Math.max(1, Math.floor(DEFAULT_CHUNK_BYTES / this.rowBytes));
    if (!Number.isSafeInteger(step) || step < 1) throw invalidArgument('chunks: rows must be a positive integer');
    const end = Math.min(options.end ?? this.rows, this.rows);
    for (let r = options.start ?? 0; r < end; r += step) yield await this.get(r, Math.min(end, r + step));
  }

  commit(): Promise<{ revision: number }> {
    return this.handle.commit();
  }

  abort(): Promise<void> {
    return this.handle.abort();
  }

  refresh(): Promise<void> {
    return this.handle.refresh();
  }

  close(): Promise<void> {
    return this.handle.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
