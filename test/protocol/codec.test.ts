import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  type Decoded, clientMessageDecoder, encodeCancel, encodeHello, encodeRequest, encodeServer, packBody, parseResult, serverMessageDecoder,
} from '../../src/protocol/codec.js';
import { HEADER_BYTES, encodeFrame } from '../../src/protocol/frame.js';
import { type ClientMessage, PROTOCOL_MAGIC, REQUEST_OPS, fromWireError, requests, toWireError } from '../../src/protocol/messages.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { DEFAULT_LIMITS } from '../../src/protocol/limits.js';

const hello = encodeHello({ magic: PROTOCOL_MAGIC, versions: [1], token: 'sekrit', name: 'w1' });

function only<M>(items: Decoded<M>[]): Decoded<M> {
  assert.equal(items.length, 1, JSON.stringify(items));
  return items[0]!;
}

function rejected(items: Decoded<ClientMessage>[], id: number, code: string, re?: RegExp): void {
  const d = only(items);
  assert.ok(d.type === 'reject', `expected reject, got ${d.type}`);
  assert.equal(d.id, id);
  assert.equal(d.error.code, code);
  if (re) assert.match(d.error.message, re);
}

function fatal<M>(items: Decoded<M>[], code = 'PROTOCOL'): LatchkeyError {
  const d = items.at(-1);
  assert.ok(d !== undefined && d.type === 'fatal', `expected fatal, got ${JSON.stringify(items)}`);
  assert.equal(d.error.code, code);
  return d.error;
}

function req(id: number, body: Record<string, unknown>): Uint8Array {
  return encodeFrame(id, packBody(body));
}

test('codec: hello, requests and cancel decode to typed messages', () => {
  const d = clientMessageDecoder(1024);
  const m1 = only(d.push(hello));
  assert.deepEqual(m1, { type: 'message', message: { t: 'hello', magic: PROTOCOL_MAGIC, versions: [1], token: 'sekrit', name: 'w1' }, size: hello.length - 8 });
  const m2 = only(d.push(encodeRequest(7, 'set', { path: '/a', value: Uint8Array.of(1, 2), ifVersion: 3 })));
  assert.ok(m2.type === 'message' && m2.message.t === 'req' && m2.message.op === 'set');
  assert.equal(m2.message.id, 7);
  assert.equal(m2.message.s, 0);
  assert.deepEqual({ ...m2.message.a, value: Array.from(m2.message.a.value) }, { path: '/a', value: [1, 2], ifVersion: 3 });
  assert.ok(m2.message.a.value instanceof Uint8Array);
  const m3 = only(d.push(encodeRequest(8, 'lock', { lock: 3, path: '/x', mode: 'shared' }, 5)));
  assert.ok(m3.type === 'message' && m3.message.t === 'req');
  assert.equal(m3.message.s, 5);
  const cancel = encodeCancel(8);
  assert.deepEqual(only(d.push(cancel)), { type: 'message', message: { t: 'cancel', id: 8 }, size: cancel.length - 8 });
});

test('codec: a pipelined stream split at every byte boundary decodes the same messages', () => {
  const bytes = Buffer.concat([
    hello,
    encodeRequest(1, 'get', { path: '/a' }),
    encodeRequest(2, 'multi', { ops: [{ op: 'set', path: '/b', value: new Uint8Array(40) }, { op: 'delete', path: '/c', recursive: true }] }),
    encodeRequest(3, 'watch', { watch: 1, path: '/', recursive: true, fromRevision: 9 }),
    encodeCancel(3),
  ]);
  const whole = clientMessageDecoder(1024).push(bytes);
  assert.equal(whole.length, 5);
  assert.ok(whole.every((d) => d.type === 'message'));
  for (let cut = 1; cut < bytes.length; cut++) {
    const d = clientMessageDecoder(1024);
    const got = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
    assert.deepEqual(got, whole, `cut at ${cut}`);
  }
});

test('codec: an unknown op fails that request only, and the stream goes on', () => {
  const d = clientMessageDecoder(1024);
  rejected(d.push(req(4, { t: 'req', op: 'frobnicate', a: {} })), 4, 'PROTOCOL', /unknown op "frobnicate"/);
  rejected(d.push(req(5, { t: 'req', op: 'toString', a: {} })), 5, 'PROTOCOL', /unknown op/);
  rejected(d.push(req(6, { t: 'req', op: '__proto__', a: {} })), 6, 'PROTOCOL', /unknown op/);
  assert.equal(only(d.push(encodeRequest(7, 'ping', {}))).type, 'message');
});

test('codec: wrong argument shapes fail that request, naming the field', () => {
  const d = clientMessageDecoder(1024);
  rejected(d.push(req(1, { t: 'req', op: 'get', a: { path: 5 } })), 1, 'PROTOCOL', /a\.path: expected a string/);
  rejected(d.push(req(2, { t: 'req', op: 'set', a: { path: '/a', value: 'text' } })), 2, 'PROTOCOL', /a\.value: expected binary/);
  rejected(d.push(req(3, { t: 'req', op: 'get', a: { path: '/a', bogus: 1 } })), 3, 'PROTOCOL', /a\.bogus: expected no such field/);
  rejected(d.push(req(4, { t: 'req', op: 'get', a: [] })), 4, 'PROTOCOL', /a: expected a map/);
  rejected(d.push(req(5, { t: 'req', op: 'get' })), 5, 'PROTOCOL', /a: expected a map/);
  rejected(d.push(req(6, { t: 'req', op: 'list', a: { path: '/', limit: -1 } })), 6, 'PROTOCOL', /a\.limit/);
  rejected(d.push(req(7, { t: 'req', op: 'list', a: { path: '/', limit: 2 ** 60 } })), 7, 'PROTOCOL', /a\.limit/);
  rejected(d.push(req(8, { t: 'req', op: 'multi', a: { ops: [{ op: 'set', path: '/a', value: new Uint8Array(1) }, { op: 'nuke', path: '/' }] } })), 8, 'PROTOCOL', /a\.ops\[1\]\.op/);
  rejected(d.push(req(9, { t: 'req', op: 'get', s: -1, a: { path: '/' } })), 9, 'PROTOCOL', /session handle/);
  rejected(d.push(req(10, { t: 'req', op: 'get', a: { path: '/' }, extra: true })), 10, 'PROTOCOL', /unexpected field extra/);
  rejected(d.push(req(11, { t: 'req', op: 'set', a: { path: '/a', value: new Uint8Array(1), ifVersion: new Date(0) } })), 11, 'PROTOCOL', /extension/);
  rejected(d.push(req(13, { t: 'req', op: 'set', a: { path: '/a', value: new Uint8Array(1), ifVersion: 'one' } })), 13, 'PROTOCOL', /ifVersion/);
  rejected(d.push(req(12, { t: 'mystery' })), 12, 'PROTOCOL', /unknown message type/);
  assert.equal(d.failed, false);
});

test('codec: nil stands for an absent optional field', () => {
  const d = clientMessageDecoder(1024);
  const m = only(d.push(req(1, { t: 'req', op: 'list', a: { path: '/', after: null, limit: null } })));
  assert.ok(m.type === 'message' && m.message.t === 'req');
  assert.deepEqual(m.message.a, { path: '/' });
});

test('codec: an oversized request frame fails that request with TOO_LARGE; the next one decodes', () => {
  const d = clientMessageDecoder(64);
  const big = encodeRequest(3, 'set', { path: '/a', value: new Uint8Array(1000) });
  const out = [...d.push(big.subarray(0, 20)), ...d.push(big.subarray(20)), ...d.push(encodeRequest(4, 'ping', {}))];
  assert.equal(out.length, 2);
  assert.ok(out[0]!.type === 'reject' && out[0]!.id === 3 && out[0]!.error.code === 'TOO_LARGE');
  assert.ok(out[1]!.type === 'message');
});

test('codec: a 4 GiB length prefix costs nothing and fails only its request', () => {
  const d = clientMessageDecoder(DEFAULT_LIMITS.maxFrame);
  const h = new Uint8Array(HEADER_BYTES);
  new DataView(h.buffer).setUint32(0, 0xffff_ffff);
  new DataView(h.buffer).setUint32(4, 9);
  rejected(d.push(h), 9, 'TOO_LARGE');
  assert.equal(d.buffered, 0);
});

test('codec: an oversized frame without a request id is fatal', () => {
  const d = clientMessageDecoder(16);
  fatal(d.push(encodeHello({ magic: PROTOCOL_MAGIC, versions: [1], token: 'x'.repeat(100) })), 'TOO_LARGE');
});

test('codec: bodies that are not msgpack, or not messages, are fatal', () => {
  const cases: [string, Uint8Array][] = [
    ['truncated msgpack', encodeFrame(1, Uint8Array.of(0x82, 0xa1))],
    ['trailing bytes', encodeFrame(1, Uint8Array.of(0xc0, 0xc0))],
    ['reserved byte 0xc1', encodeFrame(1, Uint8Array.of(0xc1))],
    ['not a map', encodeFrame(1, packBody([1, 2, 3]))],
    ['a string', encodeFrame(1, packBody('hello'))],
    ['hello with an id', encodeFrame(3, packBody({ t: 'hello', magic: PROTOCOL_MAGIC, versions: [1] }))],
    ['request with id 0', encodeFrame(0, packBody({ t: 'req', op: 'get', a: { path: '/' } }))],
    ['unknown type without id', encodeFrame(0, packBody({ t: 'what' }))],
    ['hello with a wrong magic', encodeFrame(0, packBody({ t: 'hello', magic: 'redis', versions: [1] }))],
    ['cancel with id 0', encodeFrame(0, packBody({ t: 'cancel' }))],
  ];
  for (const [name, bytes] of cases) {
    const d = clientMessageDecoder(1 << 20);
    const items = d.push(bytes);
    assert.equal(items.length, 1, name);
    fatal(items);
    assert.equal(d.failed, true, name);
    assert.deepEqual(d.push(encodeRequest(1, 'ping', {})), [], `${name}: nothing after fatal`);
  }
});

test('codec: random bytes never throw; they give messages, rejects or one fatal (property)', () => {
  fc.assert(fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
    const d = clientMessageDecoder(256);
    const all: Decoded<ClientMessage>[] = [];
    for (const c of chunks) all.push(...d.push(c));
    const fatals = all.filter((x) => x.type === 'fatal');
    assert.ok(fatals.length <= 1);
    if (fatals.length === 1) assert.equal(all.at(-1)!.type, 'fatal');
    for (const x of all) if (x.type !== 'message') assert.ok(x.error instanceof LatchkeyError);
  }), { numRuns: 500 });
});

test('codec: random well-framed msgpack values never throw (property)', () => {
  fc.assert(fc.property(fc.nat({ max: 5 }), fc.anything(), (id, v) => {
    const d = clientMessageDecoder(1 << 20);
    let bytes: Uint8Array;
    try {
      bytes = packBody(v);
    } catch {
      return; // a value msgpackr itself cannot encode
    }
    if (bytes.length === 0) return;
    const items = d.push(encodeFrame(id, bytes));
    assert.equal(items.length, 1);
  }), { numRuns: 500 });
});

test('codec: server messages round trip, replies by id and pushes with id 0', () => {
  const d = serverMessageDecoder(1 << 20);
  const welcome = { t: 'welcome' as const, version: 1, session: 's1', name: 'n', ttlMs: 10_000, revision: 4, limits: DEFAULT_LIMITS };
  const bytes = Buffer.concat([
    encodeServer(0, welcome),
    encodeServer(5, { t: 'ok', r: { token: 3, ownerDied: true, mode: 'exclusive' }, rev: 9 }),
    encodeServer(6, { t: 'err', e: { code: 'LOCKED', message: 'held', path: '/a', info: { holder: 's2' } } }),
    encodeServer(0, { t: 'event', w: 2, ev: [{ type: 'put', path: '/a', revision: 10, value: Uint8Array.of(1) }, { type: 'delete', path: '/b', revision: 10 }] }),
    encodeServer(0, { t: 'lockLost', l: 3, e: { code: 'LOCK_LOST', message: 'gone' } }),
    encodeServer(0, { t: 'bye', e: { code: 'CLOSED', message: 'shutting down' } }),
  ]);
  for (let cut = 0; cut <= bytes.length; cut += 7) {
    const dd = serverMessageDecoder(1 << 20);
    const got = [...dd.push(bytes.subarray(0, cut)), ...dd.push(bytes.subarray(cut))];
    assert.equal(got.length, 6);
  }
  const got = d.push(bytes).map((x) => (x.type === 'message' ? x.message : x));
  assert.deepEqual(got[0], welcome);
  assert.deepEqual(got[1], { t: 'ok', id: 5, r: { token: 3, ownerDied: true, mode: 'exclusive' }, rev: 9 });
  assert.deepEqual(parseResult('lock', (got[1] as { r: unknown }).r), { token: 3, ownerDied: true, mode: 'exclusive' });
  assert.deepEqual(got[2], { t: 'err', id: 6, e: { code: 'LOCKED', message: 'held', path: '/a', info: { holder: 's2' } } });
  assert.equal((got[3] as { t: string }).t, 'event');
});

test('codec: a reply without an id, or a push with one, is fatal for the client', () => {
  fatal(serverMessageDecoder(1024).push(encodeServer(0, { t: 'ok', r: null, rev: 1 })));
  fatal(serverMessageDecoder(1024).push(encodeServer(3, { t: 'bye', e: { code: 'CLOSED', message: 'x' } })));
});

test('codec: a reply that does not fit its op is a PROTOCOL error', () => {
  assert.throws(() => parseResult('get', { path: '/a' }), (e: unknown) => LatchkeyError.is(e, 'PROTOCOL') && /get reply/.test(e.message));
  assert.equal(parseResult('get', null), null);
  assert.throws(() => parseResult('exists', 'yes'), { code: 'PROTOCOL' });
});

test('codec: errors cross the wire with code, message, path and info intact', () => {
  const e = new LatchkeyError('DEADLOCK', 'cycle', { path: '/a', info: { cycle: ['s1', 's2'] }, cause: new Error('not sent') });
  const d = serverMessageDecoder(1024);
  const m = only(d.push(encodeServer(3, { t: 'err', e: toWireError(e) })));
  assert.ok(m.type === 'message' && m.message.t === 'err');
  const back = fromWireError(m.message.e);
  assert.ok(back instanceof LatchkeyError);
  assert.equal(back.code, 'DEADLOCK');
  assert.equal(back.message, 'cycle');
  assert.equal(back.path, '/a');
  assert.deepEqual(back.info, { cycle: ['s1', 's2'] });
  assert.equal(toWireError(new TypeError('boom')).code, 'INTERNAL');
  const unknown = fromWireError({ code: 'FUTURE_CODE', message: 'new' });
  assert.equal(unknown.code, 'INTERNAL');
  assert.equal(unknown.info?.code, 'FUTURE_CODE');
});

test('codec: the request table has an args and a result schema for every op', () => {
  for (const op of REQUEST_OPS) {
    assert.equal(typeof requests[op].args, 'function', op);
    assert.equal(typeof requests[op].result, 'function', op);
  }
});

test('codec: replies are read loosely (a newer server may add fields), requests strictly', () => {
  assert.deepEqual(parseResult('lock', { token: 3, ownerDied: false, mode: 'shared', fresh: 1 }), { token: 3, ownerDied: false, mode: 'shared', fresh: 1 });
  const t = parseResult('lockTable', { held: [{ path: '/a', mode: 'exclusive', session: 's', token: 1, since: 5, waiters: 2 }], waiting: [] });
  assert.equal(t.held[0]!.waiters, 2);
  assert.throws(() => parseResult('lock', { token: 3, ownerDied: 'no', mode: 'shared' }), { code: 'PROTOCOL' });
  const d = clientMessageDecoder(1024);
  rejected(d.push(req(1, { t: 'req', op: 'lock', a: { lock: 1, path: '/a', newOption: true } })), 1, 'PROTOCOL', /no such field/);
});

test('codec: a message with too many values or too deep is refused before decoding, for that request only', () => {
  const d = clientMessageDecoder(8 * 1024 * 1024);
  // Four million empty maps in one array: decoding would allocate ~270 MB; the scan refuses it.
  const n = 4 * 1024 * 1024;
  const body = new Uint8Array(n);
  body[0] = 0xdd;
  new DataView(body.buffer).setUint32(1, n - 5);
  body.fill(0x80, 5);
  rejected(d.push(encodeFrame(3, body)), 3, 'TOO_LARGE', /more than 262144 values/);
  rejected(d.push(encodeFrame(4, new Uint8Array(200_000).fill(0x91))), 4, 'TOO_LARGE', /nests deeper/);
  assert.equal(only(d.push(encodeRequest(5, 'ping', {}))).type, 'message');
});

test('codec: a request holding a msgpack extension fails that request with PROTOCOL; the stream goes on', async () => {
  const { Packr } = await import('msgpackr');
  const rich = new Packr({ moreTypes: true, structuredClone: true } as ConstructorParameters<typeof Packr>[0]);
  const d = clientMessageDecoder(1 << 20);
  only(d.push(hello));
  // A Set of 100 nested arrays: msgpackr would decode values the pre-scan never saw.
  const nested = new Set(Array.from({ length: 100 }, (_, i) => [[[[i]]]]));
  rejected(d.push(encodeFrame(5, rich.pack({ t: 'req', op: 'get', a: { path: '/', extra: nested } }))), 5, 'PROTOCOL', /extension/);
  rejected(d.push(encodeFrame(6, Uint8Array.of(0x83, 0xa1, 0x74, 0xa3, 0x72, 0x65, 0x71, 0xa2, 0x6f, 0x70, 0xa3, 0x67, 0x65, 0x74, 0xa1, 0x61, 0xd6, 0xff, 0, 0, 0, 0))), 6, 'PROTOCOL', /extension/);
  const m = only(d.push(encodeRequest(7, 'ping', {})));
  assert.ok(m.type === 'message' && m.message.t === 'req' && m.message.op === 'ping');
  fatal(d.push(encodeFrame(0, rich.pack({ t: 'cancel', x: new Date(0) }))));
});
