import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { connect } from '../../src/client/store.js';
import { serve } from '../../src/server/server.js';
import { AuthTable, authorize } from '../../src/server/auth.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { RawClient, startServer } from './helpers.js';

const authJson = JSON.stringify({
  tokens: [
    { token: 'writer-token-1', name: 'writer', grants: [{ prefix: '/jobs', access: 'write' }, { prefix: '/', access: 'read' }] },
    { token: 'reader-token-1', name: 'reader', grants: [{ prefix: '/jobs', access: 'read' }] },
    { token: 'admin-token-1', name: 'admin', grants: [{ prefix: '/', access: 'admin' }] },
  ],
});

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e, code as never);

test('auth: prefixes cover their subtree only, and the best grant wins', () => {
  const table = AuthTable.fromJson(authJson);
  const w = table.authenticate('writer-token-1')!;
  assert.equal(w.name, 'writer');
  authorize(w, '/jobs', 'write');
  authorize(w, '/jobs/1/x', 'write');
  authorize(w, '/other', 'read');
  assert.throws(() => authorize(w, '/jobsX', 'write'), is('PERMISSION'));
  assert.throws(() => authorize(w, '/', 'admin'), is('PERMISSION'));
  assert.equal(table.authenticate('nope'), undefined);
  assert.equal(table.authenticate(undefined), undefined);
  assert.throws(() => AuthTable.fromJson('{"tokens":[{"token":"short","grants":[]}]}'), is('INVALID_ARGUMENT'));
  assert.throws(() => AuthTable.fromJson('{"tokens":[{"token":"longenough","grants":[{"prefix":"rel","access":"read"}]}]}'), is('INVALID_ARGUMENT'));
  assert.throws(() => AuthTable.fromJson('not json'), is('INVALID_ARGUMENT'));
});

test('auth: TCP needs a token; a wrong one is refused with AUTH; grants give PERMISSION', async () => {
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, auth: AuthTable.fromJson(authJson) });
  const url = `tcp://127.0.0.1:${server.tcpAddress!.port}`;
  try {
    await assert.rejects(connect(url, { reconnect: false }), is('AUTH'));
    await assert.rejects(connect(url, { token: 'wrong-token-123' }), is('AUTH'));
    const writer = await connect(url, { token: 'writer-token-1' });
    const reader = await connect(url, { token: 'reader-token-1' });
    await writer.set('/jobs/1', 'x');
    await assert.rejects(writer.set('/elsewhere', 'x'), is('PERMISSION'));
    assert.equal((await reader.get('/jobs/1'))?.text(), 'x');
    await assert.rejects(reader.get('/elsewhere'), is('PERMISSION'));
    await assert.rejects(reader.set('/jobs/2', 'y'), is('PERMISSION'));
    await assert.rejects(reader.multi([{ op: 'check', path: '/jobs/1', exists: true }, { op: 'set', path: '/jobs/3', value: 'z' }]), is('PERMISSION'));
    await assert.rejects(writer.snapshot(), is('PERMISSION'));
    assert.equal(await backing.exists('/jobs/2'), false);
    await writer.close();
    await reader.close();
  } finally {
    await server.close();
    await backing.close();
  }
});

test('auth: TCP without an auth file is refused unless insecureLoopback on a loopback address', async () => {
  const backing = (await open()) as EmbeddedStore;
  try {
    await assert.rejects(serve(backing, { listen: { host: '127.0.0.1', port: 0 } }), is('INVALID_ARGUMENT'));
    await assert.rejects(serve(backing, { listen: { host: '0.0.0.0', port: 0 }, insecureLoopback: true }), is('INVALID_ARGUMENT'));
  } finally {
    await backing.close();
  }
});

test('auth: the Unix socket is created mode 0600', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-auth-'));
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { socket: path.join(dir, 's.sock') });
  try {
    assert.equal(statSync(path.join(dir, 's.sock')).mode & 0o777, 0o600);
  } finally {
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('auth: TLS on TCP with a token', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  } catch {
    t.skip('openssl is not available to make a certificate');
    rmSync(dir, { recursive: true, force: true });
    return;
  }
  writeFileSync(path.join(dir, 'auth.json'), authJson);
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, tls: { cert, key }, auth: AuthTable.load(path.join(dir, 'auth.json')) });
  try {
    const url = `tls://127.0.0.1:${server.tcpAddress!.port}`;
    // An unknown CA is refused…
    await assert.rejects(connect(url, { token: 'admin-token-1', reconnect: false }), is('CONNECTION_LOST'));
    // …and accepted when trusted.
    const s = await connect(url, { token: 'admin-token-1', ca: readFileSync(cert) });
    await s.set('/tls', 'yes');
    assert.equal((await s.get('/tls'))?.text(), 'yes');
    await s.close();
  } finally {
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server: a live server\'s socket is not taken over; a stale one is replaced; a regular file is never deleted', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-sock-'));
  const sock = path.join(dir, 's.sock');
  const a = (await open()) as EmbeddedStore;
  const first = await serve(a, { socket: sock });
  try {
    await assert.rejects(serve(a, { socket: sock }), is('EXISTS'));
    const file = path.join(dir, 'precious');
    writeFileSync(file, 'keep me');
    await assert.rejects(serve(a, { socket: file }), is('EXISTS'));
    assert.equal(readFileSync(file, 'utf8'), 'keep me');
  } finally {
    await first.close();
  }
  // A socket file left behind by a SIGKILLed server (nobody listening) is replaced.
  const dead = await startServer(['--memory']);
  dead.proc.kill('SIGKILL');
  await dead.exited;
  assert.ok(statSync(dead.unix).isSocket(), 'the killed server left its socket file');
  const second = await serve(a, { socket: dead.unix });
  const c = await connect(`unix://${dead.unix}`);
  await c.set('/x', '1');
  await c.close();
  await second.close();
  await a.close();
  rmSync(dead.dir, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

test('server: past maxConnections a new client is refused with QUOTA; others are unaffected', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-max-'));
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { socket: path.join(dir, 's.sock'), limits: { maxConnections: 2 } });
  const url = `unix://${server.socketPath}`;
  try {
    const a = await connect(url);
    const b = await connect(url);
    await assert.rejects(connect(url, { reconnect: false }), is('QUOTA'));
    await a.set('/still', 'fine');
    assert.equal((await b.get('/still'))?.text(), 'fine');
    await a.close();
    // A slot freed is a slot to take (the server notices the close asynchronously).
    let c;
    for (let i = 0; i < 100 && c === undefined; i++) {
      c = await connect(url, { reconnect: false }).catch((e: unknown) => {
        if (!is('QUOTA')(e)) throw e;
        return undefined;
      });
      if (c === undefined) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(c !== undefined);
    await c.close();
    await b.close();
  } finally {
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('server: a connection that never sends its hello is closed with a bye', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-hello-'));
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { socket: path.join(dir, 's.sock'), helloTimeoutMs: 50 });
  try {
    const raw = await RawClient.open(server.socketPath!, false);
    const bye = await raw.bye();
    assert.ok(bye?.t === 'bye' && bye.e.code === 'PROTOCOL' && /no hello/.test(bye.e.message));
    await raw.closed;
    assert.equal(server.connectionCount, 0);
  } finally {
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
