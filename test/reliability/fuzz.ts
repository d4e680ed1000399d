/**
 * Structure-aware protocol fuzzing, shared by `npm test` (thousands of
 * frames) and the soak (hundreds of thousands). It starts from valid request
 * frames (test/server/helpers.ts's RawClient speaks the protocol; codec.ts
 * encodes) and mutates them the way a confused or hostile peer would: a
 * field of the wrong type, an unknown op or field, a truncated body, huge
 * msgpack counts, deep nesting, invalid UTF-8 in a path, flipped bytes.
 *
 * What must hold, checked per frame: every answer is `ok` or an `err` whose
 * code is one of ErrorCodes and not INTERNAL (a bug, not bad input); a frame
 * that breaks the connection gets a typed `bye` and closes only that
 * connection; no request goes unanswered while its connection is open; the
 * server process never exits, and its memory stays bounded (RSS sampled
 * from /proc).
 *
 * Ops that may legitimately wait forever (lock, upgrade) are never sent,
 * nor cancels (a cancel has no answer of its own): an unanswered request
 * would then be no evidence of anything.
 */
import { readFileSync } from 'node:fs';
import { isErrorCode } from '../../src/core/errors.js';
import { packBody } from '../../src/protocol/codec.js';
import { HEADER_BYTES, encodeFrame, frameHeader } from '../../src/protocol/frame.js';
import type { ServerMessage } from '../../src/protocol/messages.js';
import { RawClient } from '../server/helpers.js';

export interface FuzzReport {
  frames: number;
  ok: number;
  errors: Record<string, number>;
  byes: Record<string, number>;
  connections: number;
  /** Frames sent on a connection that closed before answering them (after a bye: expected). */
  unansweredAfterClose: number;
  maxRssBytes: number;
  violations: string[];
}

type Rng = () => number;
const pick = <T>(random: Rng, xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const int = (random: Rng, n: number): number => Math.floor(random() * n);

function path(random: Rng): string {
  return pick(random, ['/', '/f', '/f/a', '/f/b/c', `/f/${int(random, 50)}`, '/f/' + 'x'.repeat(int(random, 300)), '', 'relative', '/a//b', '/a/../b', '/\u0000', '/é/ü', '/f/' + '\ud800']);
}

function value(random: Rng): Uint8Array {
  return new Uint8Array(pick(random, [0, 1, 16, 1000, 70_000]));
}

/** A valid request (op and args) that cannot wait forever. */
function validRequest(random: Rng): { op: string; a: Record<string, unknown> } {
  const handle = 1 + int(random, 4);
  const templates: Array<() => { op: string; a: Record<string, unknown> }> = [
    () => ({ op: 'get', a: { path: path(random) } }),
    () => ({ op: 'exists', a: { path: path(random) } }),
    () => ({ op: 'list', a: { path: path(random), limit: 1 + int(random, 10) } }),
    () => ({ op: 'set', a: { path: path(random), value: value(random), wait: false } }),
    () => ({ op: 'set', a: { path: path(random), value: value(random), ifVersion: int(random, 3), wait: false } }),
    () => ({ op: 'create', a: { path: path(random), value: value(random), ephemeral: random() < 0.5, sequential: random() < 0.3, wait: false } }),
    () => ({ op: 'delete', a: { path: path(random), recursive: random() < 0.2, wait: false } }),
    () => ({ op: 'multi', a: { ops: [{ op: 'set', path: path(random), value: value(random) }, { op: 'check', path: path(random), exists: random() < 0.5 }], wait: false } }),
    () => ({ op: 'begin', a: { tx: handle } }),
    () => ({ op: 'set', a: { path: path(random), value: value(random), tx: handle } }),
    () => ({ op: 'commit', a: { tx: handle, wait: false } }),
    () => ({ op: 'abort', a: { tx: handle } }),
    () => ({ op: 'check', a: { path: path(random), tx: handle, version: int(random, 3) } }),
    () => ({ op: 'release', a: { lock: handle } }),
    () => ({ op: 'downgrade', a: { lock: handle } }),
    () => ({ op: 'locks', a: {} }),
    () => ({ op: 'lockTable', a: {} }),
    () => ({ op: 'watch', a: { watch: handle, path: path(random), recursive: random() < 0.5, fromRevision: int(random, 5) } }),
    () => ({ op: 'unwatch', a: { watch: handle } }),
    () => ({ op: 'session', a: { session: handle, name: 'fz' } }),
    () => ({ op: 'endSession', a: { session: handle } }),
    () => ({ op: 'stats', a: {} }),
    () => ({ op: 'ping', a: {} }),
  ];
  return pick(random, templates)();
}

/** A value of some random type, sometimes absurd. */
function junkValue(random: Rng, depth = 0): unknown {
  const k = int(random, depth > 2 ? 9 : 12);
  switch (k) {
    case 0: return pick(random, [-1, 0, 2 ** 53, -(2 ** 63), 1.5, Number.NaN, Infinity, 2 ** 32]);
    case 1: return pick(random, ['', 'x', '/', 'x'.repeat(10_000)]);
    case 2: return random() < 0.5;
    case 3: return null;
    case 4: return new Uint8Array(int(random, 64));
    case 5: return path(random);
    case 6: return undefined;
    case 7: return 'get';
    case 8: return { t: 'req' };
    case 9: return Array.from({ length: int(random, 5) }, () => junkValue(random, depth + 1));
    case 10: return Object.fromEntries(Array.from({ length: int(random, 5) }, (_, i) => [pick(random, ['path', 'value', 'tx', 'op', `k${i}`]), junkValue(random, depth + 1)]));
    default: return { path: junkValue(random, depth + 1), ops: [junkValue(random, depth + 1)] };
  }
}

/** Nested arrays `depth` deep, encoded by hand (an encoder would refuse or recurse). */
function deepNesting(depth: number): Uint8Array {
  const b = new Uint8Array(depth + 1);
  b.fill(0x91, 0, depth); // fixarray of one element, again and again
  b[depth] = 0xc0;
  return b;
}

/** Replaces the bytes of `marker` in `body` (a packed message) by `bytes` of the same length. */
function splice(body: Uint8Array, marker: string, bytes: readonly number[]): Uint8Array {
  const m = Buffer.from(marker);
  const i = Buffer.from(body).indexOf(m);
  if (i < 0) return body;
  const out = Uint8Array.from(body);
  out.set(bytes, i);
  return out;
}

/**
 * One frame to send as request `id`: a mutation of a valid request.
 * `request` mutations keep the frame and its msgpack whole, so they fail
 * (or succeed) as that request only; `stream` mutations break the msgpack
 * or the framing and end the connection (a fuzzer sending those at the
 * same rate would spend all its frames on closed connections).
 */
export function mutatedFrame(random: Rng, id: number, level: 'request' | 'stream' = 'request'): Uint8Array {
  const req = validRequest(random);
  const r = random();
  if (level === 'request') {
    if (r < 0.45) {
      // A field of the wrong type, or one field too many.
      const keys = Object.keys(req.a);
      const k = keys.length > 0 && random() < 0.8 ? pick(random, keys) : pick(random, ['path', 'bogus', 'tx', 'fence', 'value']);
      return encodeFrame(id, packBody({ t: 'req', op: req.op, a: { ...req.a, [k]: junkValue(random) } }));
    }
    if (r < 0.6) {
      // The envelope itself is wrong: op, session handle, type, arguments, an extra field.
      const env = pick(random, [
        { t: 'req', op: junkValue(random), a: req.a },
        { t: 'req', op: req.op, s: junkValue(random), a: req.a },
        { t: 'req', op: req.op, a: junkValue(random) },
        { t: junkValue(random), op: req.op, a: req.a },
        { t: 'req', op: req.op, a: req.a, extra: 1 },
      ]);
      return encodeFrame(id, packBody(env));
    }
    if (r < 0.7) {
      // Invalid UTF-8 in a path: a lone continuation byte, an overlong NUL, a surrogate, 0xff.
      const body = packBody({ t: 'req', op: req.op === 'multi' ? 'get' : req.op, a: { ...req.a, path: '/fz/QQQQ' } });
      return encodeFrame(id, splice(body, 'QQQQ', pick(random, [[0x80, 0x41, 0x41, 0x41], [0xc0, 0x80, 0x41, 0x41], [0xed, 0xa0, 0x80, 0x41], [0xff, 0xfe, 0xfd, 0xfc]])));
    }
    if (r < 0.8) {
      // Nesting a decoder survives, in place of a field.
      return encodeFrame(id, nested(req, deepNesting(pick(random, [10, 100, 1_000]))));
    }
    // Valid: mutations need state to reach deep (a transaction to commit, a watch to end).
    return encodeFrame(id, packBody({ t: 'req', op: req.op, a: req.a }));
  }
  if (r < 0.25) {
    // Huge counts: an array, map, string or binary header claiming ~4 G elements or bytes, with little behind it.
    const header = pick(random, [[0xdd, 0xff, 0xff, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], [0xdb, 0xff, 0xff, 0xff, 0xf0], [0xc6, 0x7f, 0xff, 0xff, 0xff]]);
    return encodeFrame(id, nested(req, Uint8Array.from(header)));
  }
  if (r < 0.45) {
    // Deep nesting past any recursion limit, in a field or as the whole body.
    const deep = deepNesting(pick(random, [100_000, 1_000_000]));
    return encodeFrame(id, random() < 0.5 ? deep : nested(req, deep));
  }
  if (r < 0.7) {
    // A truncated body (the frame length is honest: the msgpack inside is cut).
    const body = packBody({ t: 'req', op: req.op, a: req.a });
    const cut = int(random, body.length);
    if (cut > 0) return encodeFrame(id, body.subarray(0, cut));
    // An empty body: the encoder refuses to make one, so write the header by hand.
    const h = new Uint8Array(HEADER_BYTES);
    frameHeader(h, 0, id);
    return h;
  }
  if (r < 0.85) {
    // Flipped bits anywhere in the body.
    const body = Uint8Array.from(packBody({ t: 'req', op: req.op, a: req.a }));
    for (let n = 1 + int(random, 3); n > 0; n--) {
      const i = int(random, body.length);
      body[i] = body[i]! ^ (1 << int(random, 8));
    }
    return encodeFrame(id, body);
  }
  // Not a map at all, or trailing bytes after the message.
  if (random() < 0.5) return encodeFrame(id, packBody(junkValue(random)));
  return encodeFrame(id, Uint8Array.from([...packBody({ t: 'req', op: req.op, a: req.a }), 0xc0]));
}

/** The packed request with its `path` argument replaced by raw msgpack `raw`. */
function nested(req: { op: string; a: Record<string, unknown> }, raw: Uint8Array): Uint8Array {
  const body = packBody({ t: 'req', op: req.op === 'multi' ? 'get' : req.op, a: { ...req.a, path: 'DDDDD' } });
  const i = Buffer.from(body).indexOf(Buffer.from('DDDDD')) - 1; // at the fixstr header
  return Uint8Array.from([...body.subarray(0, i), ...raw, ...body.subarray(i + 6)]);
}

export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? 0 : Number(m[1]) * 1024;
}

function errorCodeOf(m: ServerMessage): string | undefined {
  return m.t === 'err' || m.t === 'bye' ? m.e.code : undefined;
}

/**
 * Sends `frames` mutated frames to the server at `unixPath` (pid `pid`) in
 * batches of `batch`, on as many connections as the server closes; checks
 * every answer. `replyTimeoutMs` bounds the wait for a batch's answers.
 */
export async function fuzzServer(o: {
  unixPath: string; pid: number; frames: number; random: Rng; batch?: number; replyTimeoutMs?: number; maxRssBytes?: number;
  /** Called between connections: the well-behaved client's check. */
  between?: () => Promise<void>;
}): Promise<FuzzReport> {
  const rep: FuzzReport = { frames: 0, ok: 0, errors: {}, byes: {}, connections: 0, unansweredAfterClose: 0, maxRssBytes: 0, violations: [] };
  const batch = o.batch ?? 64;
  const timeout = o.replyTimeoutMs ?? 10_000;
  const violation = (s: string): void => {
    if (rep.violations.length < 50) rep.violations.push(s);
  };
  while (rep.frames < o.frames && rep.violations.length === 0) {
    const c = await RawClient.open(o.unixPath);
    rep.connections++;
    let id = 0;
    // A connection lives for a random number of batches, unless a frame makes the server close it.
    for (let b = 1 + int(o.random, 8); b > 0 && rep.frames < o.frames && !c.socket.destroyed; b--) {
      const sent: Array<[number, Uint8Array]> = [];
      const n = Math.min(batch, o.frames - rep.frames);
      // The connection's last frame breaks the stream, now and then.
      const breakAt = b === 1 && o.random() < 0.5 ? n - 1 : -1;
      for (let i = 0; i < n; i++) {
        const f = mutatedFrame(o.random, ++id, i === breakAt ? 'stream' : 'request');
        sent.push([id, f]);
        c.send(f);
        rep.frames++;
      }
      const deadline = Date.now() + timeout;
      for (const [fid, f] of sent) {
        const left = deadline - Date.now();
        const m = await Promise.race([c.reply(fid), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), Math.max(0, left)).unref())]);
        if (m === 'timeout') {
          violation(`request ${fid} unanswered after ${timeout} ms on an open connection: ${Buffer.from(f.subarray(0, 64)).toString('hex')}`);
          break;
        }
        if (m === undefined) {
          rep.unansweredAfterClose++;
          continue;
        }
        if (m.t === 'ok') rep.ok++;
        else {
          const code = errorCodeOf(m) ?? '(none)';
          rep.errors[code] = (rep.errors[code] ?? 0) + 1;
          if (!isErrorCode(code) || code === 'INTERNAL') violation(`request ${fid}: ${code} ${m.t === 'err' ? m.e.message : ''} for ${Buffer.from(f.subarray(0, 64)).toString('hex')}`);
        }
      }
    }
    if (c.socket.destroyed || c.socket.readableEnded) {
      const bye = c.received.find((d) => d.type === 'message' && d.message.t === 'bye');
      const code = bye?.type === 'message' ? errorCodeOf(bye.message) ?? '(none)' : '(no bye)';
      rep.byes[code] = (rep.byes[code] ?? 0) + 1;
      if (code !== 'PROTOCOL' && code !== 'TOO_LARGE' && code !== 'QUOTA') violation(`connection closed with ${code}`);
    }
    c.close();
    await c.closed;
    try {
      process.kill(o.pid, 0);
    } catch {
      violation('the server process is gone');
      break;
    }
    rep.maxRssBytes = Math.max(rep.maxRssBytes, rssOf(o.pid));
    if (o.maxRssBytes !== undefined && rep.maxRssBytes > o.maxRssBytes) violation(`server RSS ${(rep.maxRssBytes / 2 ** 20).toFixed(0)} MiB > ${(o.maxRssBytes / 2 ** 20).toFixed(0)} MiB`);
    await o.between?.();
  }
  return rep;
}
