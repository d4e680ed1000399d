/**
 * The XenStore wire format (Xen's docs/misc/xenstore.txt and
 * xen/include/public/io/xs_wire.h), pure: bytes in, packets out.
 *
 * A message is a 16-byte header of four little-endian u32 — type, req_id,
 * tx_id, len — followed by `len` bytes of payload (at most 4096). Payloads
 * are mostly NUL-terminated strings; READ replies and WRITE values are raw
 * bytes. Errors travel as an ERROR message whose payload is the errno *name*
 * ("ENOENT\0"), never a number.
 *
 * The decoder never throws on input: a header announcing more than the
 * payload limit is reported as a fatal `oversized` event (xenstored kills
 * such a connection; the caller closes only that one).
 */

export const HEADER_BYTES = 16;
/** XENSTORE_PAYLOAD_MAX: the payload limit in both directions. */
export const PAYLOAD_MAX = 4096;

/** Message types, numbered as in xs_wire.h (XS_CONTROL was XS_DEBUG). */
export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESTRICT: 20,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
  GET_FEATURE: 23,
  SET_FEATURE: 24,
  GET_QUOTA: 25,
  SET_QUOTA: 26,
} as const;

export type XsTypeName = keyof typeof XsType;

const typeNames: readonly string[] = (() => {
  const names: string[] = [];
  for (const [k, v] of Object.entries(XsType)) names[v] = k;
  return names;
})();

/** The name of a type number (for logs), or `UNKNOWN(n)`. */
export function typeName(type: number): string {
  return typeNames[type] ?? `UNKNOWN(${type})`;
}

/** The errno names xenstored sends (xs_wire.h's table, plus oxenstored's EQUOTA). */
export type XsErrno =
  | 'EINVAL' | 'EACCES' | 'EEXIST' | 'EISDIR' | 'ENOENT' | 'ENOMEM' | 'ENOSPC' | 'EIO'
  | 'ENOTEMPTY' | 'ENOSYS' | 'EROFS' | 'EBUSY' | 'EAGAIN' | 'EISCONN' | 'E2BIG' | 'EQUOTA';

export interface XsHeader {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
}

export interface XsPacket extends XsHeader {
  readonly payload: Uint8Array;
}

export type XsDecodeEvent =
  | { readonly kind: 'packet'; readonly packet: XsPacket }
  /** The header announced `len` > the limit: the stream cannot be trusted any more. */
  | { readonly kind: 'oversized'; readonly header: XsHeader; readonly len: number };

function putU32le(out: Uint8Array, at: number, v: number): void {
  out[at] = v & 0xff;
  out[at + 1] = (v >>> 8) & 0xff;
  out[at + 2] = (v >>> 16) & 0xff;
  out[at + 3] = (v >>> 24) & 0xff;
}

function getU32le(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16)) + b[at + 3]! * 0x1000000;
}

/** Writes a header at `at` (bytes by hand: a DataView per message was a measurable cost). */
export function encodeHeader(out: Uint8Array, at: number, type: number, reqId: number, txId: number, len: number): void {
  putU32le(out, at, type);
  putU32le(out, at + 4, reqId);
  putU32le(out, at + 8, txId);
  putU32le(out, at + 12, len);
}

/**
 * One whole message: header + payload. The caller keeps payloads within
 * PAYLOAD_MAX. A Buffer (a socket takes it as it is; a plain Uint8Array
 * would be wrapped in a Buffer on every write) with memory of its own, not
 * a slice of Node's pool: `.buffer` is this message alone, from offset 0.
 */
export function encodePacket(type: number, reqId: number, txId: number, payload: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafeSlow(HEADER_BYTES + payload.length);
  encodeHeader(out, 0, type, reqId, txId, payload.length);
  out.set(payload, HEADER_BYTES);
  return out;
}

const encoder = new TextEncoder();
// ignoreBOM: a leading U+FEFF is kept, as utf8Slice keeps it and as the C
// daemons keep every byte of a path or token
const decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Node's Buffer#utf8Slice (a string straight from a range of bytes, no view made), where there is one. */
const utf8Slice = (Buffer.prototype as unknown as { utf8Slice?: (start: number, end: number) => string }).utf8Slice;

/** The UTF-8 text of `b[start..end)` (invalid sequences become U+FFFD, as TextDecoder without `fatal`). */
function text(b: Uint8Array, start: number, end: number): string {
  if (utf8Slice !== undefined) return utf8Slice.call(b, start, end);
  return decoder.decode(b.subarray(start, end));
}

export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b);
}

/** `strings` each followed by a NUL ("a\0b\0"), the usual reply shape. */
export function nulTerminated(strings: readonly string[]): Uint8Array {
  let n = 0;
  const parts = strings.map((s) => {
    const b = encoder.encode(s);
    n += b.length + 1;
    return b;
  });
  const out = new Uint8Array(n);
  let at = 0;
  for (const b of parts) {
    out.set(b, at);
    at += b.length + 1;
  }
  return out;
}

/** An ERROR reply's payload: the errno name and a NUL. */
export function errorPayload(errno: XsErrno): Uint8Array {
  return nulTerminated([errno]);
}

/**
 * Splits a request payload into its NUL-terminated strings. A final string
 * without its NUL is still taken (lenient, as xenstored is); an empty
 * payload has no strings.
 */
export function splitStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(text(payload, start, i));
      start = i + 1;
    }
  }
  if (start < payload.length) out.push(text(payload, start, payload.length));
  return out;
}

/** The first NUL-terminated string of a payload (or all of it without a NUL); undefined when empty. */
export function firstString(payload: Uint8Array): string | undefined {
  if (payload.length === 0) return undefined;
  const i = payload.indexOf(0);
  return text(payload, 0, i < 0 ? payload.length : i);
}

/**
 * Splits "first\0rest…" where `rest` is raw bytes (WRITE's value may hold
 * NULs). Undefined when there is no NUL at all.
 */
export function splitFirst(payload: Uint8Array): { first: string; rest: Uint8Array } | undefined {
  const i = payload.indexOf(0);
  if (i < 0) return undefined;
  return { first: text(payload, 0, i), rest: payload.subarray(i + 1) };
}

/**
 * Incremental decoder. `push` chunks as they arrive; `next` returns the next
 * complete event or undefined when more bytes are needed. Payload views may
 * alias the pushed chunks; they stay valid (chunks are never reused here).
 * Payloads are plain Uint8Arrays even when the chunks are Buffers (a view of
 * a Buffer made by `subarray` is a Buffer, whose construction costs more).
 */
export class XsDecoder {
  private chunks: Uint8Array[] = [];
  /** Bytes of chunks[0] already consumed. */
  private off = 0;
  private buffered = 0;
  private failed = false;

  constructor(private readonly maxPayload = PAYLOAD_MAX) {}

  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): void {
    if (this.failed || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
  }

  next(): XsDecodeEvent | undefined {
    if (this.failed || this.buffered < HEADER_BYTES) return undefined;
    let head = this.chunks[0]!;
    let at = this.off;
    if (head.length - at < HEADER_BYTES) {
      head = this.peek(HEADER_BYTES);
      at = 0;
    }
    const len = getU32le(head, at + 12);
    if (len > this.maxPayload) {
      const header: XsHeader = { type: getU32le(head, at), reqId: getU32le(head, at + 4), txId: getU32le(head, at + 8) };
      this.failed = true;
      this.chunks = [];
      this.off = 0;
      this.buffered = 0;
      return { kind: 'oversized', header, len };
    }
    if (this.buffered < HEADER_BYTES + len) return undefined;
    const type = getU32le(head, at);
    const reqId = getU32le(head, at + 4);
    const txId = getU32le(head, at + 8);
    this.skip(HEADER_BYTES);
    const payload = this.take(len);
    return { kind: 'packet', packet: { type, reqId, txId, payload } };
  }

  /** The first `n` buffered bytes (n <= buffered, spanning chunks), copied. */
  private peek(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    for (let i = 0; at < n; i++) {
      const c = this.chunks[i]!;
      const from = i === 0 ? this.off : 0;
      const k = Math.min(c.length - from, n - at);
      out.set(c.subarray(from, from + k), at);
      at += k;
    }
    return out;
  }

  /** Drops `n` buffered bytes. */
  private skip(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const left = c.length - this.off;
      if (left > n) {
        this.off += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.off = 0;
    }
  }

  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.chunks[0]!;
    if (first.length - this.off >= n) {
      const out = new Uint8Array(first.buffer, first.byteOffset + this.off, n);
      this.skip(n);
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.off, n - at);
      out.set(c.subarray(this.off, this.off + k), at);
      at += k;
      this.skip(k);
    }
    return out;
  }
}
