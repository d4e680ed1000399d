/**
 * The HTTP listener: health probes, tokens and grants (read-only tokens
 * cannot write, ungranted paths are hidden), the console's JSON and its
 * event stream, the logs of session deaths, taints, deadlocks, snapshots
 * and writes, and the `serve --http` command end to end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { createLogger } from '../../src/http/log.js';
import { startHttp } from '../../src/http/server.js';
import { startServer } from '../server/helpers.js';
import { ADMIN, JOBS_WRITER, READER, served, until } from './helpers.js';

test('http: /healthz answers at once, /readyz only once the server says it is ready', async () => {
  const store = (await open()) as EmbeddedStore;
  const http = await startHttp({ host: '127.0.0.1', port: 0, store, log: createLogger({ level: 'silent' }) });
  try {
    const base = `http://127.0.0.1:${http.address!.port}`;
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const r = await fetch(`${base}/readyz`);
    assert.equal(r.status, 503);
    assert.match(await r.text(), /not ready: starting/);
    http.setReady();
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  } finally {
    await http.close();
    await store.close();
  }
});

test('http: startHttp serves an embedded store opened in this process; a remote store is refused', async () => {
  const store = await open();
  const log = createLogger({ level: 'silent' });
  const http = await startHttp({ host: '127.0.0.1', port: 0, store, log });
  try {
    await store.set('/e', 'embedded');
    const base = `http://127.0.0.1:${http.address!.port}`;
    const r = (await (await fetch(`${base}/api/get?path=/e`)).json()) as { value: string };
    assert.equal(Buffer.from(r.value, 'base64').toString(), 'embedded');
    assert.match(await (await fetch(`${base}/metrics`)).text(), /^latchkey_commits_total 1$/m);
  } finally {
    await http.close();
    await store.close();
  }
  const fake = { stats: () => ({}) } as unknown as EmbeddedStore;
  await assert.rejects(startHttp({ host: '127.0.0.1', port: 0, store: fake, log }), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'));
});

test('http: without an auth table, only loopback, and read-only', async () => {
  const store = (await open()) as EmbeddedStore;
  const log = createLogger({ level: 'silent' });
  await assert.rejects(startHttp({ host: '0.0.0.0', port: 0, store, log }), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT') && /loopback/.test(e.message));
  const http = await startHttp({ host: '127.0.0.1', port: 0, store, log });
  try {
    await store.set('/a', 'x');
    const base = `http://127.0.0.1:${http.address!.port}`;
    assert.deepEqual(await (await fetch(`${base}/api/me`)).json(), { name: 'loopback', write: false, grants: [{ prefix: '/', access: 'read' }] });
    assert.equal((await fetch(`${base}/api/get?path=/a`)).status, 200);
    const w = await fetch(`${base}/api/set`, { method: 'POST', body: JSON.stringify({ path: '/a', value: 'changed' }) });
    assert.equal(w.status, 403);
    assert.equal(((await w.json()) as { error: { code: string } }).error.code, 'PERMISSION');
    assert.equal((await store.get('/a'))!.text(), 'x');
  } finally {
    await http.close();
    await store.close();
  }
});

test('http: tokens and grants: no token 401, ungranted paths 403 and hidden, read-only tokens cannot write', async () => {
  await using s = await served();
  await s.store.set('/jobs/a', 'a');
  await s.store.set('/other/secret', 's');
  const otherLock = await s.store.lock('/other/held');
  const jobsLock = await s.store.lock('/jobs/held');
  try {
    assert.equal((await s.get('/api/list?path=/jobs')).status, 401);
    assert.equal((await s.get('/api/list?path=/jobs', 'wrong-token-123')).status, 401);
    // The reader sees /jobs, nothing else.
    const l = await s.get('/api/list?path=/jobs', READER);
    assert.equal(l.status, 200);
    assert.deepEqual(((await l.json()) as { names: string[] }).names, ['a']);
    for (const p of ['/api/list?path=/other', '/api/get?path=/other/secret', '/api/history?path=/other/secret', '/api/list?path=/']) {
      const r = await s.get(p, READER);
      assert.equal(r.status, 403, p);
      assert.doesNotMatch(await r.text(), /"value"|"names"/);
    }
    const locks = await (await s.get('/api/locks', READER)).text();
    assert.match(locks, /\/jobs\/held/);
    assert.doesNotMatch(locks, /\/other/);
    const sessions = (await (await s.get('/api/sessions', READER)).json()) as { sessions: Array<{ locksHeld: number }> };
    assert.equal(sessions.sessions.reduce((n, x) => n + x.locksHeld, 0), 1, 'only the lock on /jobs is counted');
    // Writes: the reader is refused (and nothing changes); the jobs writer inside /jobs only; admin anywhere.
    assert.equal((await (await s.get('/api/me', READER)).json() as { write: boolean }).write, false);
    const refused = await s.post('/api/set', { path: '/jobs/a', value: 'by-reader' }, READER);
    assert.equal(refused.status, 403);
    assert.equal((await s.post('/api/delete', { path: '/jobs/a' }, READER)).status, 403);
    assert.equal((await s.post('/api/reset-lock', { path: '/jobs' }, READER)).status, 403);
    assert.equal((await s.store.get('/jobs/a'))!.text(), 'a');
    assert.equal((await s.post('/api/set', { path: '/other/x', value: 'no' }, JOBS_WRITER)).status, 403);
    assert.equal(await s.store.exists('/other/x'), false);
    const ok = await s.post('/api/set', { path: '/jobs/a', value: '<b>new</b>' }, JOBS_WRITER);
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal((await s.store.get('/jobs/a'))!.text(), '<b>new</b>');
    assert.equal((await s.post('/api/delete', { path: '/other', recursive: true }, ADMIN)).status, 200);
    assert.equal(await s.store.exists('/other/secret'), false);
    // Bad input: a typed error, nothing written.
    const bad = await s.post('/api/set', { path: 'no-slash', value: 'x' }, ADMIN);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'INVALID_PATH');
    const notJson = await fetch(`${s.base}/api/set`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN}` }, body: '{nope' });
    assert.equal(notJson.status, 400);
    // The writes were logged with the principal.
    const writes = s.logs.filter((x) => x['event'] === 'console-write');
    assert.deepEqual(writes.map((x) => [x['op'], x['path'], x['principal']]), [['set', '/jobs/a', 'jobs'], ['delete', '/other', 'admin']]);
  } finally {
    await otherLock.release();
    await jobsLock.release();
  }
});

test('http: the console page and its assets come from the server, under a strict CSP', async () => {
  await using s = await served();
  for (const [p, type] of [['/', /text\/html/], ['/console.js', /text\/javascript/], ['/console.css', /text\/css/]] as const) {
    const r = await s.get(p);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type') ?? '', type);
    assert.match(r.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  }
  const html = await (await s.get('/')).text();
  assert.doesNotMatch(html, /https?:\/\//, 'no outside URL in the page');
  const js = await (await s.get('/console.js')).text();
  assert.doesNotMatch(js, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'the console never parses strings as HTML');
});

test('http: the event stream sends ticks with locks and sessions, and the watch tail filtered by grants', async () => {
  await using s = await served();
  const ctl = new AbortController();
  const r = await fetch(`${s.base}/api/events?watch=/`, { headers: { Authorization: `Bearer ${READER}` }, signal: ctl.signal });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
  const events: Array<{ event: string; data: Record<string, unknown> }> = [];
  const pump = (async () => {
    let buf = '';
    try {
      for await (const chunk of r.body!.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(block)![1]!;
          events.push({ event: ev, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown> });
        }
      }
    } catch {
      // aborted
    }
  })();
  const lock = await s.store.lock('/jobs/l');
  await s.store.set('/other/hidden', 'x');
  await s.store.set('/jobs/seen', 'y');
  await until(() => events.some((e) => e.event === 'watch' && JSON.stringify(e.data).includes('/jobs/seen')), 'the watch event');
  await until(() => events.some((e) => e.event === 'tick' && JSON.stringify(e.data['locks']).includes('/jobs/l')), 'a tick with the lock');
  ctl.abort();
  await pump;
  await lock.release();
  assert.equal(events[0]!.event, 'hello');
  assert.ok(!JSON.stringify(events).includes('/other'), 'nothing outside the grant');
});

test('logs: session deaths with their locks, taints, owner-died grants, refused deadlocks and snapshots, with their fields', async () => {
  await using s = await served();
  const a = s.store.ownedSession({ name: 'holder' });
  const b = s.store.ownedSession({ name: 'waiter' });
  const la = await a.lock('/x');
  const lb = await b.lock('/y');
  const aWaits = a.lock('/y');
  await until(() => s.store.lockTable().waiting.length === 1, 'a to wait');
  await assert.rejects(b.lock('/x'), (e: unknown) => LatchkeyError.is(e, 'DEADLOCK'));
  await a.end(true); // a dies holding /x: its wait ends, /x is tainted, and b gets it owner-died
  await assert.rejects(aWaits);
  const heir = await b.lock('/x');
  assert.equal(heir.ownerDied, true);
  await heir.markConsistent();
  await heir.release();
  await lb.release();
  void la;
  await s.store.snapshot();
  const find = (event: string): Record<string, unknown> => {
    const l = s.logs.find((x) => x['event'] === event);
    assert.ok(l !== undefined, `no ${event} line in ${JSON.stringify(s.logs)}`);
    return l;
  };
  const died = find('session-ended');
  assert.equal(died['died'], true);
  assert.equal(died['name'], 'holder');
  assert.equal(died['level'], 40);
  assert.deepEqual((died['locks'] as Array<{ path: string }>).map((l) => l.path), ['/x']);
  assert.equal(find('taint')['path'], '/x');
  assert.equal(find('untaint')['path'], '/x');
  assert.equal(find('owner-died-grant')['path'], '/x');
  const dl = find('deadlock-refused');
  assert.equal(dl['path'], '/x');
  assert.match(String(dl['reason']), /deadlock/);
  assert.equal(typeof find('snapshot')['revision'], 'number');
});

test('serve --http: a real server process with JSON logs, a token-guarded /metrics and --log-level', async () => {
  await using srv = await startServer(['--http', '127.0.0.1:0', '--log-level', 'debug']);
  const base = /^(http:\/\/127\.0\.0\.1:\d+)\/$/m.exec(srv.stdout())?.[1];
  assert.ok(base !== undefined, srv.stdout());
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  const c = await connect(`unix://${srv.unix}`, { reconnect: false });
  await c.set('/k', 'v');
  const lines = (): Array<Record<string, unknown>> => srv.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  await c.close();
  const m = await (await fetch(`${base}/metrics`)).text();
  assert.match(m, /^latchkey_commits_total 1$/m);
  await until(() => lines().some((l) => l['event'] === 'session-ended'), 'the client session end to be logged');
  const steps = lines().filter((l) => l['event'] === 'recovery').map((l) => l['step']);
  assert.deepEqual(steps, ['snapshot', 'replay', 'done']);
  assert.ok(lines().some((l) => l['event'] === 'ready' && l['level'] === 30));
});

test('serve --http: bad --http and --log-level are usage errors', async () => {
  const { run } = await import('../cli/helpers.js');
  const r1 = await run(['serve', '--memory', '--http', 'nonsense']);
  assert.equal(r1.code, 2, r1.stderr);
  assert.match(r1.stderr, /--http expects HOST:PORT/);
  const r2 = await run(['serve', '--memory', '--log-level', 'loud']);
  assert.equal(r2.code, 2, r2.stderr);
  assert.match(r2.stderr, /--log-level/);
  const r3 = await run(['serve', '--memory', '--socket', `/tmp/lk-nohttp-${process.pid}.sock`, '--http', '0.0.0.0:0']);
  assert.notEqual(r3.code, 0);
  assert.match(r3.stderr, /loopback/);
});

test('http: force-release takes a lock from its holder (write grant only); the waiter gets it owner-died', async () => {
  await using s = await served();
  const holder = s.store.ownedSession({ name: 'stuck' });
  const waiter = s.store.ownedSession({ name: 'next' });
  const lock = await holder.lock('/jobs/f');
  const next = waiter.lock('/jobs/f');
  await until(() => s.store.lockTable().waiting.length === 1, 'the waiter to queue');
  assert.equal((await s.post('/api/force-release', { path: '/jobs/f' }, READER)).status, 403);
  assert.equal(lock.held, true, 'a refused force-release changes nothing');
  const r = await s.post('/api/force-release', { path: '/jobs/f' }, JOBS_WRITER);
  assert.equal(r.status, 200);
  assert.deepEqual(await r.json(), { released: 1 });
  assert.equal(lock.held, false);
  assert.ok(lock.signal.aborted && LatchkeyError.is(lock.signal.reason, 'LOCK_LOST'));
  const got = await next;
  assert.equal(got.ownerDied, true);
  await got.release();
  await holder.end(false);
  await waiter.end(false);
  assert.ok(s.logs.some((l) => l['event'] === 'console-write' && l['op'] === 'force-release' && l['principal'] === 'jobs'));
});
