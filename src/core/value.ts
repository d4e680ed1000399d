/**
 * Node values: bytes held in memory, or a reference to bytes on disk.
 *
 * A value larger than the store's inline threshold is written to a value
 * file (storage/values.ts) and the tree keeps only a `ValueRef`: which file,
 * where, how long, and the CRC32C of the bytes. The tree stays pure: a ref
 * carries the `ValueReader` that can fetch it (an interface; the I/O lives
 * in storage), so core code that must see the bytes of a value (comparing
 * a rewrite with the old value, atomic ops, transaction replay) calls
 * `bytesOf`, which reads synchronously through the reader's cache. The
 * store's get paths never do that: they read asynchronously first
 * (engine/session.ts), so an uncached value never blocks the event loop.
 *
 * Refs are immutable like nodes; every snapshot holding one shares it.
 */
import { LatchkeyError } from './errors.js';

/** Where a value lives on disk. */
export interface ValueLocation {
  /** Value file number (`val-<file>.val`). */
  readonly file: number;
  /** Byte offset of the value's bytes in that file. */
  readonly offset: number;
  readonly length: number;
  /** CRC32C of the value's bytes. */
  readonly crc: number;
}

/**
 * What can fetch a ref's bytes (implemented by storage/values.ts). Every
 * method that returns bytes returns the caller's own (a copy: the cache
 * reuses its memory).
 */
export interface ValueReader {
  /** The bytes, from the cache or by a synchronous positional read; CORRUPT when the checksum fails. */
  readSync(ref: ValueRef): Uint8Array;
  /** The bytes, from the cache or by an asynchronous positional read (off the event loop). */
  read(ref: ValueRef): Promise<Uint8Array>;
  /** The bytes if they are in memory (cache), else undefined; never does I/O. */
  peek(ref: ValueRef): Uint8Array | undefined;
  /**
   * Copies the bytes into `dest` at `at`, from the cache or by one
   * asynchronous positional read straight into `dest` (checked, not cached).
   */
  readInto(ref: ValueRef, dest: Uint8Array, at?: number): Promise<void>;
}

export class ValueRef implements ValueLocation {
  constructor(
    readonly reader: ValueReader,
    readonly file: number,
    readonly offset: number,
    readonly length: number,
    readonly crc: number,
  ) {}
}

/** A node's value: bytes in memory or a reference to bytes on disk. */
export type Value = Uint8Array | ValueRef;

export function valueLength(v: Value): number {
  return v.length;
}

/** The bytes of `v`; a ref is read synchronously (cache first). For paths that must be synchronous. */
export function bytesOf(v: Value): Uint8Array {
  return v instanceof Uint8Array ? v : v.reader.readSync(v);
}

/** The bytes of `v`, reading a ref asynchronously when it is not cached. */
export function readValue(v: Value): Uint8Array | Promise<Uint8Array> {
  if (v instanceof Uint8Array) return v;
  return v.reader.peek(v) ?? v.reader.read(v);
}

/**
 * Copies the bytes of `v` into `dest` at `at` (one copy: a value on disk and
 * not cached is read straight into `dest`). INVALID_ARGUMENT when they do
 * not fit.
 */
export function readValueInto(v: Value, dest: Uint8Array, at = 0): void | Promise<void> {
  if (v instanceof Uint8Array) {
    if (!Number.isInteger(at) || at < 0 || at + v.length > dest.length) {
      throw new LatchkeyError('INVALID_ARGUMENT', `readValueInto: ${v.length} bytes do not fit at offset ${at} of a buffer of ${dest.length}`);
    }
    dest.set(v, at);
    return;
  }
  return v.reader.readInto(v, dest, at);
}

/** True when `a` and `b` are the same bytes (two refs to one place are equal without a read). */
export function sameValue(a: Value | undefined, b: Value | undefined): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return false;
  if (a.length !== b.length) return false;
  if (a instanceof ValueRef && b instanceof ValueRef && a.file === b.file && a.offset === b.offset) return true;
  if (a instanceof ValueRef && b instanceof ValueRef && a.crc !== b.crc) return false;
  return bytesEqualRaw(bytesOf(a), bytesOf(b));
}

function bytesEqualRaw(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
