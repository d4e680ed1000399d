/**
 * The codec: frames (frame.ts) carrying msgpack bodies checked against the
 * message schemas (messages.ts). Pure: bytes in, typed messages out, and
 * typed PROTOCOL errors for everything else; no sockets, no timers.
 *
 * What a decoder reports, and what the receiver does with it:
 *  - `message`: a well-formed message.
 *  - `reject`:  a request whose frame was sound but whose content is not
 *               (unknown op, wrong argument shapes, body over maxFrame). Its
 *               id is known, so only that request fails; the stream goes on.
 *  - `fatal`:   the stream cannot be trusted any more (not msgpack, not a
 *               message, empty frame). The receiver sends a `bye` carrying the
 *               error and closes that connection only. The decoder reports
 *               nothing after a fatal.
 *
 * msgpack is decoded with records and shared structures off, binary data
 * copied out of the frame (a small value must not pin a large socket chunk),
 * and 64-bit integers as numbers (the schemas then demand safe integers).
 */
import { Packr, Unpackr } from 'msgpackr';
import { LatchkeyError } from '../core/errors.js';
import { type FrameEvent, FrameReader, type FrameSink, encodeFrame } from './frame.js';
import {
  type Args, type ClientMessage, type HelloBody, type RequestOp, type ServerBody, type ServerMessage,
  helloBody, isRequestOp, requests, serverBody,
} from './messages.js';
import { DEFAULT_SCAN_LIMITS, type ScanLimits, scanMsgpack } from './msgpack-scan.js';
import { FALLBACK, readMsgpack } from './msgpack-read.js';
import { MsgpackWriter, type Split } from './msgpack-write.js';
import { ShapeError, isPlainObject } from './schema.js';

// skipValues (leave out keys whose value is undefined) is supported by msgpackr but missing from its typings.
const packr = new Packr({ useRecords: false, skipValues: [undefined], encodeUndefinedAsNil: true, variableMapSize: true } as ConstructorParameters<typeof Packr>[0]);
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, copyBuffers: true, int64AsType: 'number' });
/** For a body in a buffer of its own (assembled from several chunks): its byte strings are views of it, not copies. */
const unpackrShared = new Unpackr({ useRecords: false, mapsAsObjects: true, copyBuffers: false, int64AsType: 'number' });

export type Decoded<M> =
  | {
    readonly type: 'message'; readonly message: M; /** bytes of the frame body */ readonly size?: number;
    /** The message's last byte string went to the frame sink's buffer: this many bytes (see FrameSink). */
    readonly sunk?: number;
  }
  | { readonly type: 'reject'; readonly id: number; readonly error: LatchkeyError }
  | { readonly type: 'fatal'; readonly error: LatchkeyError };

class Reject {
  constructor(readonly id: number, readonly error: LatchkeyError) {}
}

function protocolError(message: string, info?: Record<string, unknown>): LatchkeyError {
  return new LatchkeyError('PROTOCOL', message, info === undefined ? {} : { info });
}

function shapeError(e: ShapeError): LatchkeyError {
  return protocolError(`malformed message: ${e.message}`, { at: e.at });
}

/** Decodes one msgpack body; throws PROTOCOL for anything that is not exactly one msgpack value. */
export function unpackBody(body: Uint8Array, owned = false): unknown {
  try {
    return (owned ? unpackrShared : unpackr).unpack(body);
  } catch (e) {
    // msgpackr throws plain Errors (and RangeError on absurd nesting): all of it is the peer's fault.
    throw protocolError(`frame body is not msgpack: ${e instanceof Error ? e.message.slice(0, 200) : String(e)}`);
  }
}

export function packBody(body: unknown): Uint8Array {
  return packr.pack(body);
}

const writer = new MsgpackWriter();

/**
 * `packBody` into a reused buffer (msgpack-write.ts): the bytes are valid
 * only until the next call, so the caller copies them out at once (a frame
 * batch's `add` does). Falls back to msgpackr for what the writer leaves to it.
 */
export function packBodyScratch(body: unknown): Uint8Array {
  return writer.encode(body) ?? packr.pack(body);
}

/** Byte strings at least this long are written from their own buffer, not copied into the frame (packBodySplit). */
export const SPLIT_MIN = 64 * 1024;

/**
 * `packBodyScratch` for a body that may carry a large value: a body ending
 * in a byte string of SPLIT_MIN bytes or more comes back as `head` (scratch,
 * valid until the next encode) and `tail` (the caller's bytes, not copied);
 * the frame is head + tail. See MsgpackWriter.encodeSplit for the key order.
 */
export function packBodySplit(body: unknown): Split {
  return writer.encodeSplit(body, SPLIT_MIN) ?? { head: packr.pack(body), tail: undefined };
}

/** An incremental decoder over one direction of a connection. */
export class Decoder<M> {
  private readonly frames: FrameReader;
  private dead = false;
  private readonly scratch: FrameEvent[] = [];

  constructor(maxFrame: number, private readonly parse: (id: number, v: unknown) => M, private readonly scanLimits: ScanLimits = DEFAULT_SCAN_LIMITS) {
    this.frames = new FrameReader(maxFrame);
  }

  get maxFrame(): number {
    return this.frames.maxFrame;
  }

  set maxFrame(n: number) {
    this.frames.maxFrame = n;
  }

  get failed(): boolean {
    return this.dead;
  }

  /** Where a large reply's value may go (see FrameSink; the client's readInto). */
  set sink(s: FrameSink | undefined) {
    this.frames.sink = s;
  }

  /** Bytes held for an incomplete frame (bounded by maxFrame + header). */
  get buffered(): number {
    return this.frames.buffered;
  }

  push(chunk: Uint8Array): Decoded<M>[] {
    const out: Decoded<M>[] = [];
    if (this.dead) return out;
    const frames = this.scratch;
    frames.length = 0;
    this.frames.push(chunk, frames);
    for (const f of frames) {
      if (f.type === 'fatal') {
        this.fail(out, f.error);
        break;
      }
      if (f.type === 'oversized') {
        if (f.id === 0) {
          this.fail(out, new LatchkeyError('TOO_LARGE', `frame of ${f.size} bytes exceeds the limit of ${this.frames.maxFrame}`, { info: { size: f.size, limit: this.frames.maxFrame } }));
          break;
        }
        out.push({ type: 'reject', id: f.id, error: new LatchkeyError('TOO_LARGE', `request frame of ${f.size} bytes exceeds the limit of ${this.frames.maxFrame}`, { info: { size: f.size, limit: this.frames.maxFrame } }) });
        continue;
      }
      const shape = scanMsgpack(f.body, this.scanLimits);
      if (shape !== 'ok') {
        if (shape === 'malformed') {
          this.fail(out, protocolError('frame body is not one well-formed msgpack value'));
          break;
        }
        if (shape === 'extension') {
          // Well framed, so only this request fails (a frame without an id is fatal).
          const e = protocolError('msgpack extension types are not accepted');
          if (f.id === 0) {
            this.fail(out, e);
            break;
          }
          out.push({ type: 'reject', id: f.id, error: e });
          continue;
        }
        // Too many values or too deep: the bytes were sound, the message is too big to decode.
        const e = new LatchkeyError('TOO_LARGE', `message ${shape === 'too-deep' ? `nests deeper than ${this.scanLimits.maxDepth}` : `has more than ${this.scanLimits.maxItems} values`}`, { info: { ...this.scanLimits } });
        if (f.id === 0) {
          this.fail(out, e);
          break;
        }
        out.push({ type: 'reject', id: f.id, error: e });
        continue;
      }
      try {
        // The scan passed: the small reader decodes it, or leaves it to msgpackr (msgpack-read.ts).
        let v = readMsgpack(f.body, f.owned !== true);
        if (v === FALLBACK) v = unpackBody(f.body, f.owned === true);
        const message = this.parse(f.id, v);
        out.push(f.sunk === undefined ? { type: 'message', message, size: f.body.length } : { type: 'message', message, size: f.body.length + f.sunk, sunk: f.sunk });
      } catch (e) {
        if (e instanceof Reject) {
          out.push({ type: 'reject', id: e.id, error: e.error });
          continue;
        }
        this.fail(out, e instanceof ShapeError ? shapeError(e) : e instanceof LatchkeyError ? e : protocolError(String(e)));
        break;
      }
    }
    frames.length = 0;
    return out;
  }

  private fail(out: Decoded<M>[], error: LatchkeyError): void {
    this.dead = true;
    out.push({ type: 'fatal', error });
  }
}

// ---------------------------------------------------------------- client → server

/** Parses one body sent by a client. Throws Reject (that request only), ShapeError or LatchkeyError (fatal). */
export function parseClientMessage(id: number, v: unknown): ClientMessage {
  if (!isPlainObject(v)) throw protocolError('message is not a map');
  switch (v.t) {
    case 'hello':
      if (id !== 0) throw protocolError('hello must have id 0');
      return helloBody(v, '');
    case 'cancel':
      if (id === 0) throw protocolError('cancel must name a request id');
      for (const k in v) if (k !== 't') throw protocolError(`cancel: unexpected field ${k}`);
      return { t: 'cancel', id };
    case 'req': {
      if (id === 0) throw protocolError('request id 0 is reserved');
      const { op, s, a } = v;
      for (const k in v) if (k !== 't' && k !== 'op' && k !== 's' && k !== 'a') throw new Reject(id, protocolError(`request: unexpected field ${k}`, { at: k }));
      if (!isRequestOp(op)) throw new Reject(id, protocolError(`unknown op ${typeof op === 'string' ? JSON.stringify(op.slice(0, 64)) : typeof op}`, { op: typeof op === 'string' ? op.slice(0, 64) : null }));
      if (s !== undefined && s !== null && (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0)) {
        throw new Reject(id, protocolError('request: s must be a session handle', { at: 's', op }));
      }
      try {
        const args = requests[op].args(a, 'a');
        return { t: 'req', id, op, s: (s as number | null | undefined) ?? 0, a: args } as ClientMessage;
      } catch (e) {
        if (e instanceof ShapeError) throw new Reject(id, protocolError(`${op}: ${e.message}`, { at: e.at, op }));
        throw e;
      }
    }
    default:
      if (id !== 0) throw new Reject(id, protocolError('unknown message type', { t: typeof v.t === 'string' ? v.t.slice(0, 64) : null }));
      throw protocolError('unknown message type');
  }
}

/** What the server reads: messages from a client. */
export function clientMessageDecoder(maxFrame: number): Decoder<ClientMessage> {
  return new Decoder(maxFrame, parseClientMessage);
}

export function encodeHello(body: Omit<HelloBody, 't'>): Uint8Array {
  return encodeFrame(0, packBody({ t: 'hello', ...body }));
}

export function encodeRequest<K extends RequestOp>(id: number, op: K, args: Args<K>, session = 0): Uint8Array {
  return encodeFrame(id, packBody(session === 0 ? { t: 'req', op, a: args } : { t: 'req', op, s: session, a: args }));
}

export function encodeCancel(id: number): Uint8Array {
  return encodeFrame(id, packBody({ t: 'cancel' }));
}

// ---------------------------------------------------------------- server → client

export function parseServerMessage(id: number, v: unknown): ServerMessage {
  const m = serverBody(v, '');
  const replies = m.t === 'ok' || m.t === 'err';
  // Replies answer a request id; pushes (welcome, events, bye…) carry 0.
  if (replies !== (id !== 0)) throw protocolError(`${m.t} with id ${id}`);
  if (!replies) return m;
  // m is a fresh decoded map: give it its id in place rather than copying it per reply.
  (m as { id?: number }).id = id;
  return m as ServerMessage;
}

/** What the client reads: messages from a server. */
export function serverMessageDecoder(maxFrame: number): Decoder<ServerMessage> {
  // Replies may be long listings (a page of a million names): the client trusts its server more.
  return new Decoder(maxFrame, parseServerMessage, { maxItems: maxFrame, maxDepth: 64 });
}

/** Checks a reply against the result schema of the op it answers; PROTOCOL if it does not fit. */
export function parseResult<K extends RequestOp>(op: K, r: unknown): ReturnType<(typeof requests)[K]['result']> {
  try {
    return requests[op].result(r, 'r') as ReturnType<(typeof requests)[K]['result']>;
  } catch (e) {
    if (e instanceof ShapeError) throw protocolError(`${op} reply: ${e.message}`, { at: e.at, op });
    throw e;
  }
}

/** Encodes a server message; `id` for ok/err replies, 0 for pushes. */
export function encodeServer(id: number, body: ServerBody): Uint8Array {
  return encodeFrame(id, packBody(body));
}
