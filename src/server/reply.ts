/**
 * How the server encodes a reply body (connection.ts writes it).
 *
 * A reply carrying a large value (a `get` of a BigFile block) is encoded
 * with that value's bytes last — `{t, rev, r: {path, stat, revision,
 * value}}`, the order of a map's keys meaning nothing to a decoder — and
 * handed back in two parts: the head (everything up to the value's bin
 * header, in the encoder's scratch buffer) and the tail (the value's own
 * buffer, not copied). The connection queues both and writes them with one
 * writev. A client reading such a frame may put the value straight into its
 * caller's buffer (frame.ts, FrameSink); any client decodes it as before.
 */
import { LatchkeyError } from '../core/errors.js';
import { packBody, packBodySplit } from '../protocol/codec.js';
import { MAX_REPLY_FRAME } from '../protocol/limits.js';
import { toWireError } from '../protocol/messages.js';

export interface OkBody {
  /** Scratch bytes: valid until the next encode (the frame batch copies them at once). */
  readonly head: Uint8Array;
  /** A large value's own bytes, written after the head (not copied). */
  readonly tail: Uint8Array | undefined;
}

/** The body of an `ok` reply, or the error to answer instead (INTERNAL: not encodable; TOO_LARGE: past MAX_REPLY_FRAME). */
export function okBody(r: unknown, revision: number): OkBody | LatchkeyError {
  let body: OkBody;
  try {
    body = packBodySplit({ t: 'ok', rev: revision, r });
  } catch (e) {
    return new LatchkeyError('INTERNAL', `reply could not be encoded: ${(e as Error).message}`);
  }
  const n = body.head.length + (body.tail?.length ?? 0);
  if (n > MAX_REPLY_FRAME) return new LatchkeyError('TOO_LARGE', `reply of ${n} bytes exceeds ${MAX_REPLY_FRAME}; page through it (list limit/after)`);
  return body;
}

/** The body of an `err` reply. */
export function errorBody(error: unknown): Uint8Array {
  const e = toWireError(error);
  try {
    return packBody({ t: 'err', e });
  } catch {
    // info held something msgpack cannot carry: send the error without it.
    return packBody({ t: 'err', e: { code: e.code, message: e.message, ...(e.path !== undefined ? { path: e.path } : {}) } });
  }
}
