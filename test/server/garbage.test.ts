/**
 * Garbage in: a server in its own process gets hostile and broken input on
 * some connections; each gets a typed error (or is closed with a `bye`), the
 * server stays up, and a well-behaved client on another connection is
 * unaffected throughout.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type RemoteStore } from '../../src/client/store.js';
import { encodeHello, encodeRequest, packBody } from '../../src/protocol/codec.js';
import { HEADER_BYTES, encodeFrame } from '../../src/protocol/frame.js';
import { PROTOCOL_MAGIC, type ServerMessage } from '../../src/protocol/messages.js';
import { RawClient, type ServerProcess, startServer } from './helpers.js';

let server: ServerProcess;
let good: RemoteStore;
let counter = 0;

before(async () => {
  server = await startServer();
  good = await connect(`unix://${server.unix}`);
});

after(async () => {
  await good.close();
  const code = await server.stop();
  assert.equal(code, 0, `server exit: ${server.stderr()}`);
});

/** The well-behaved client still reads and writes, on the same server process. */
async function stillServing(): Promise<void> {
  const k = `/good/${++counter}`;
  await good.set(k, 'ok');
  assert.equal((await good.get(k))?.text(), 'ok');
  assert.equal(server.proc.exitCode, null);
}

function errCode(m: ServerMessage | undefined): string | undefined {
  return m !== undefined && (m.t === 'err' || m.t === 'bye') ? m.e.code : undefined;
}

function header(length: number, id: number): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES);
  new DataView(h.buffer).setUint32(0, length);
  new DataView(h.buffer).setUint32(4, id);
  return h;
}

test('garbage: random bytes instead of a hello get a bye and a close', async () => {
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.open(server.unix, false);
    const junk = randomBytes(8 + (i * 37) % 500);
    junk[0] = 1 + (junk[0]! % 255); // a length of at least 16 MiB: never a hello still incomplete
    c.send(junk);
    const b = await c.bye();
    assert.ok(['PROTOCOL', 'TOO_LARGE'].includes(errCode(b) ?? ''), `got ${JSON.stringify(b)}`);
    await c.closed;
  }
  await stillServing();
});

test('garbage: random bytes after the handshake close only that connection', async () => {
  for (let i = 0; i < 20; i++) {
    const c = await RawClient.open(server.unix);
    c.send(randomBytes(64 + i * 13));
    // Whatever the bytes read as (a bad frame, an oversized one being skipped, a frame still incomplete),
    // the server answers only this connection; hang up and check the others.
    setTimeout(() => c.socket.end(), 20).unref();
    await c.closed;
  }
  await stillServing();
});

test('garbage: a truncated frame and a hang-up leave the server well', async () => {
  const c = await RawClient.open(server.unix);
  const f = encodeRequest(1, 'set', { path: '/t', value: new Uint8Array(100) });
  c.send(f.subarray(0, 50));
  c.socket.end();
  await c.closed;
  assert.equal(await good.exists('/t'), false);
  await stillServing();
});

test('garbage: a 4 GiB length prefix fails its request with TOO_LARGE; before the hello it closes', async () => {
  const c = await RawClient.open(server.unix);
  c.send(header(0xffff_ffff, 9));
  assert.equal(errCode(await c.reply(9)), 'TOO_LARGE');
  c.close();
  const d = await RawClient.open(server.unix, false);
  d.send(header(0xffff_ffff, 0));
  assert.equal(errCode(await d.bye()), 'TOO_LARGE');
  await d.closed;
  await stillServing();
});

test('garbage: wrong shapes and unknown ops fail that request only; the connection goes on', async () => {
  const c = await RawClient.open(server.unix);
  c.send(encodeFrame(1, packBody({ t: 'req', op: 'get', a: { path: 42 } })));
  c.send(encodeFrame(2, packBody({ t: 'req', op: 'launchMissiles', a: {} })));
  c.send(encodeFrame(3, packBody({ t: 'req', op: 'set', a: { path: '/x', value: 'not bytes' } })));
  c.send(encodeFrame(4, packBody({ t: 'req', op: 'multi', a: { ops: 'nope' } })));
  c.send(encodeFrame(5, packBody({ t: 'req', op: 'get', a: { path: '/', tx: -1 } })));
  c.send(encodeRequest(6, 'ping', {}));
  for (const id of [1, 2, 3, 4, 5]) assert.equal(errCode(await c.reply(id)), 'PROTOCOL', `request ${id}`);
  assert.equal((await c.reply(6))?.t, 'ok');
  c.close();
  await stillServing();
});

test('garbage: a body that is not msgpack gets a PROTOCOL bye and closes only that connection', async () => {
  const c = await RawClient.open(server.unix);
  c.send(encodeFrame(1, Uint8Array.of(0xc1, 0xc1, 0xc1)));
  assert.equal(errCode(await c.bye()), 'PROTOCOL');
  await c.closed;
  await stillServing();
});

test('garbage: oversized values and invalid paths get typed errors', async () => {
  const c = await RawClient.open(server.unix);
  c.send(encodeRequest(1, 'set', { path: '/big', value: new Uint8Array(2 * 1024 * 1024) }));
  c.send(encodeRequest(2, 'set', { path: 'no-slash', value: new Uint8Array(1) }));
  c.send(encodeRequest(3, 'get', { path: '/a/../b' }));
  c.send(encodeRequest(4, 'create', { path: '/x\0y' }));
  c.send(encodeRequest(5, 'list', { path: '/' + 'y'.repeat(5000) }));
  c.send(encodeRequest(6, 'multi', { ops: [{ op: 'set', path: '/ok', value: new Uint8Array(1) }, { op: 'set', path: 'bad', value: new Uint8Array(1) }] }));
  assert.equal(errCode(await c.reply(1)), 'TOO_LARGE');
  for (const id of [2, 3, 4, 5, 6]) assert.equal(errCode(await c.reply(id)), 'INVALID_PATH', `request ${id}`);
  assert.equal(await good.exists('/big'), false);
  assert.equal(await good.exists('/ok'), false);
  c.close();
  await stillServing();
});

test('garbage: a wrong protocol version or magic is refused with a bye', async () => {
  const c = await RawClient.open(server.unix, false);
  c.send(encodeHello({ magic: PROTOCOL_MAGIC, versions: [99] }));
  const b = await c.bye();
  assert.equal(errCode(b), 'PROTOCOL');
  assert.match(b?.t === 'bye' ? b.e.message : '', /no common protocol version/);
  await c.closed;
  const d = await RawClient.open(server.unix, false);
  d.send(encodeFrame(0, packBody({ t: 'hello', magic: 'HTTP/1.1', versions: [1] })));
  assert.equal(errCode(await d.bye()), 'PROTOCOL');
  await stillServing();
});

test('garbage: a request before the hello is refused', async () => {
  const c = await RawClient.open(server.unix, false);
  c.send(encodeRequest(1, 'get', { path: '/' }));
  assert.equal(errCode(await c.bye()), 'PROTOCOL');
  await c.closed;
  await stillServing();
});

test('garbage: 10,000 watches from one session hit QUOTA past the limit; the rest keep working', async () => {
  const c = await RawClient.open(server.unix);
  const n = 10_000;
  for (let i = 1; i <= n; i++) c.send(encodeRequest(i, 'watch', { watch: i, path: `/w/${i}` }));
  let ok = 0;
  let quota = 0;
  for (let i = 1; i <= n; i++) {
    const r = await c.reply(i);
    if (r?.t === 'ok') ok++;
    else if (errCode(r) === 'QUOTA') quota++;
  }
  assert.equal(ok + quota, n);
  assert.ok(quota > 0, 'some watches must be refused');
  assert.ok(ok >= 1, 'the first watches are accepted');
  // The accepted watches still deliver.
  await good.set('/w/1', 'hello');
  const ev = await c.waitFor((d) => d.type === 'message' && d.message.t === 'event');
  assert.ok(ev?.type === 'message' && ev.message.t === 'event' && ev.message.ev[0]?.path === '/w/1');
  c.close();
  await stillServing();
});

test('garbage: open transactions past the limit get QUOTA for those requests only', async () => {
  const c = await RawClient.open(server.unix);
  const n = 1100; // the default limit is 1,024 per connection
  for (let i = 1; i <= n; i++) c.send(encodeRequest(i, 'begin', { tx: i }));
  const codes = new Map<string, number>();
  for (let i = 1; i <= n; i++) {
    const r = await c.reply(i);
    const k = r?.t === 'ok' ? 'ok' : errCode(r) ?? 'none';
    codes.set(k, (codes.get(k) ?? 0) + 1);
  }
  assert.deepEqual(Object.fromEntries(codes), { ok: 1024, QUOTA: 76 });
  c.send(encodeRequest(n + 1, 'abort', { tx: 1 }));
  c.send(encodeRequest(n + 2, 'begin', { tx: n + 2 }));
  assert.equal((await c.reply(n + 2))?.t, 'ok', 'a slot freed by abort is usable again');
  c.close();
  await stillServing();
});

test('garbage: a frame of four million one-byte values is refused before decoding', async () => {
  const c = await RawClient.open(server.unix);
  const n = 4 * 1024 * 1024 - 64; // just under the default 4 MiB frame limit
  const body = new Uint8Array(n);
  body[0] = 0xdd;
  new DataView(body.buffer).setUint32(1, n - 5);
  body.fill(0x80, 5);
  c.send(encodeFrame(11, body));
  assert.equal(errCode(await c.reply(11)), 'TOO_LARGE');
  c.send(encodeRequest(12, 'ping', {}));
  assert.equal((await c.reply(12))?.t, 'ok');
  c.close();
  await stillServing();
});

test('garbage: a broken frame in the middle of a pipelined burst still gets its bye', async () => {
  // The client is still writing when the server gives up on the stream: closing with that input
  // unread resets the connection, and the client then loses the bye that says why.
  for (let i = 0; i < 5; i++) {
    const c = await RawClient.open(server.unix);
    const burst: Uint8Array[] = [encodeFrame(1, Uint8Array.of(0xc1))];
    for (let id = 2; id < 2000; id++) burst.push(encodeRequest(id, 'set', { path: `/burst/${id}`, value: new Uint8Array(512) }));
    for (const f of burst) c.send(f);
    assert.equal(errCode(await c.bye()), 'PROTOCOL', `attempt ${i}: the bye arrives`);
    await c.closed;
  }
  await stillServing();
});
