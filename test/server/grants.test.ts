/**
 * Every operation under a prefix grant, one table: a principal with write on
 * /jobs (and nothing else) can do everything inside /jobs and nothing, read
 * or write, outside it — including through the paths a write chooses itself
 * (sequential names, auto-created parents), a recursive watch on an
 * ancestor, and the lock views.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Store, WatchEvent } from '../../src/api.js';
import { type RemoteStore, connect } from '../../src/client/store.js';
import { renderTop } from '../../src/cli/commands/top.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { AuthTable } from '../../src/server/auth.js';
import { serve } from '../../src/server/server.js';
import { run } from '../cli/helpers.js';

const TOKEN = 'jobs-writer-token';
const authJson = JSON.stringify({ tokens: [{ token: TOKEN, name: 'jobs', grants: [{ prefix: '/jobs', access: 'write' }, { prefix: '/new/inner', access: 'write' }] }] });

type Expect = 'ok' | 'PERMISSION';
interface Row {
  readonly name: string;
  readonly expect: Expect;
  readonly run: (c: RemoteStore, env: Env) => Promise<unknown>;
  /** Checked after the row ran (ok or refused), with the trusted store. */
  readonly after?: (backing: Store, result: unknown) => Promise<void> | void;
}
interface Env {
  readonly url: string;
  readonly backing: EmbeddedStore;
}

const outside = (s: string): boolean => /\/(other|jobs0|jobsX)/.test(s);
const noOutside = (what: string, v: unknown): void => {
  const text = JSON.stringify(v);
  assert.ok(!outside(text), `${what} shows a path outside the grant: ${text}`);
};

async function collect(w: AsyncIterator<WatchEvent>, until: string): Promise<WatchEvent[]> {
  const got: WatchEvent[] = [];
  for (;;) {
    const r = await w.next();
    assert.ok(r.done !== true, 'watch ended early');
    got.push(r.value);
    if (r.value.path === until) return got;
  }
}

const rows: Row[] = [
  // reads
  { name: 'get inside', expect: 'ok', run: (c) => c.get('/jobs/a') },
  { name: 'get outside', expect: 'PERMISSION', run: (c) => c.get('/other/secret') },
  { name: 'get the root', expect: 'PERMISSION', run: (c) => c.get('/') },
  { name: 'exists inside', expect: 'ok', run: (c) => c.exists('/jobs/a') },
  { name: 'exists outside', expect: 'PERMISSION', run: (c) => c.exists('/other') },
  { name: 'list inside', expect: 'ok', run: (c) => c.list('/jobs') },
  { name: 'list the root', expect: 'PERMISSION', run: (c) => c.list('/') },
  { name: 'stat (get\'s stat) outside', expect: 'PERMISSION', run: async (c) => (await c.get('/other/secret'))?.stat },
  // writes
  { name: 'set inside', expect: 'ok', run: (c) => c.set('/jobs/b', 'x') },
  { name: 'set outside', expect: 'PERMISSION', run: (c) => c.set('/other/x', 'x') },
  { name: 'set on a sibling name', expect: 'PERMISSION', run: (c) => c.set('/jobsX', 'x') },
  {
    name: 'set below a grant whose parent is missing (it would create /new outside the grant)', expect: 'PERMISSION', run: (c) => c.set('/new/inner/x', 'x'),
    after: async (b) => assert.equal(await b.exists('/new'), false),
  },
  { name: 'create inside', expect: 'ok', run: (c) => c.create('/jobs/c', 'x') },
  {
    name: 'sequential create inside', expect: 'ok', run: (c) => c.create('/jobs/job-', 'x', { sequential: true }),
    after: (_b, r) => assert.match(String(r), /^\/jobs\/job-\d{10}$/),
  },
  {
    name: 'sequential create on the grant itself (a sibling /jobs0000000000)', expect: 'PERMISSION', run: (c) => c.create('/jobs', 'x', { sequential: true }),
    after: async (b) => assert.deepEqual([...await b.list('/')].filter((n) => n.startsWith('jobs0')), []),
  },
  { name: 'ephemeral create inside', expect: 'ok', run: (c) => c.create('/jobs/eph', 'x', { ephemeral: true }) },
  { name: 'ephemeral create outside', expect: 'PERMISSION', run: (c) => c.create('/other/eph', 'x', { ephemeral: true }) },
  { name: 'ephemeral sequential on the grant itself', expect: 'PERMISSION', run: (c) => c.create('/jobs', 'x', { ephemeral: true, sequential: true }) },
  { name: 'delete inside', expect: 'ok', run: (c) => c.delete('/jobs/c') },
  { name: 'delete outside', expect: 'PERMISSION', run: (c) => c.delete('/other/secret') },
  // transactions
  { name: 'transaction inside', expect: 'ok', run: (c) => c.transaction(async (tx) => { await tx.get('/jobs/a'); await tx.set('/jobs/t', 'x'); await tx.create('/jobs/q-', 'x', { sequential: true }); }) },
  { name: 'transaction reading outside', expect: 'PERMISSION', run: (c) => c.transaction(async (tx) => { await tx.get('/other/secret'); }, { retries: 0 }) },
  { name: 'transaction writing outside', expect: 'PERMISSION', run: (c) => c.transaction(async (tx) => { await tx.set('/other/t', 'x'); }, { retries: 0 }) },
  {
    name: 'transaction sequential create on the grant itself', expect: 'PERMISSION',
    run: (c) => c.transaction(async (tx) => { await tx.create('/jobs', 'x', { sequential: true }); }, { retries: 0 }),
    after: async (b) => assert.deepEqual([...await b.list('/')].filter((n) => n.startsWith('jobs0')), []),
  },
  {
    name: 'transaction set below a grant whose parent is missing', expect: 'PERMISSION',
    run: (c) => c.transaction(async (tx) => { await tx.set('/new/inner/y', 'x'); }, { retries: 0 }),
    after: async (b) => assert.equal(await b.exists('/new'), false),
  },
  {
    name: 'multi set below a grant whose parent is missing', expect: 'PERMISSION', run: (c) => c.multi([{ op: 'set', path: '/new/inner/z', value: 'x' }]),
    after: async (b) => assert.equal(await b.exists('/new'), false),
  },
  // multi
  { name: 'multi inside', expect: 'ok', run: (c) => c.multi([{ op: 'check', path: '/jobs/a', exists: true }, { op: 'create', path: '/jobs/m-', value: 'x', sequential: true }]) },
  { name: 'multi with one write outside', expect: 'PERMISSION', run: (c) => c.multi([{ op: 'set', path: '/jobs/m', value: 'x' }, { op: 'set', path: '/other/m', value: 'x' }]) },
  {
    name: 'multi sequential create on the grant itself', expect: 'PERMISSION', run: (c) => c.multi([{ op: 'create', path: '/jobs', value: 'x', sequential: true }]),
    after: async (b) => assert.equal(await b.exists('/jobs/m'), false),
  },
  // watches
  {
    name: 'watch inside', expect: 'ok',
    run: async (c, { backing }) => {
      const from = backing.revision + 1;
      await backing.set('/jobs/w1', 'x');
      const w = c.watch('/jobs', { recursive: true, fromRevision: from })[Symbol.asyncIterator]();
      assert.equal((await w.next()).value?.path, '/jobs/w1');
      await w.return?.();
    },
  },
  { name: 'watch outside', expect: 'PERMISSION', run: async (c) => { for await (const _ of c.watch('/other')) break; } },
  { name: 'plain watch on the root', expect: 'PERMISSION', run: async (c) => { for await (const _ of c.watch('/')) break; } },
  { name: 'recursive watch on a disjoint path', expect: 'PERMISSION', run: async (c) => { for await (const _ of c.watch('/other', { recursive: true })) break; } },
  {
    name: 'recursive watch on the root delivers only the granted subtree', expect: 'ok',
    run: async (c, { backing }) => {
      const from = backing.revision + 1;
      await backing.set('/other/seen-by-nobody', 'secret');
      await backing.set('/jobsX', 'sibling');
      await backing.set('/jobs/w2', 'x');
      await backing.delete('/other/seen-by-nobody');
      await backing.set('/jobs/w3', 'x');
      const w = c.watch('/', { recursive: true, fromRevision: from })[Symbol.asyncIterator]();
      const evs = await collect(w, '/jobs/w3');
      await w.return?.();
      assert.deepEqual(evs.map((e) => e.path), ['/jobs/w2', '/jobs/w3']);
    },
  },
  // locks and the lock views
  { name: 'lock inside', expect: 'ok', run: (c) => c.lock('/jobs/l') },
  { name: 'lock outside', expect: 'PERMISSION', run: (c) => c.lock('/other/l') },
  {
    name: 'lock table shows only the granted subtree', expect: 'ok',
    run: async (c) => {
      const t = await c.fetchLockTable();
      assert.deepEqual(t.held.map((l) => l.path), ['/jobs/l']);
      assert.equal(t.waiting.length, 0);
      noOutside('lockTable', t);
      noOutside('locks', c.locks());
    },
  },
  {
    name: 'listSessions counts only locks on granted paths', expect: 'ok',
    run: async (c) => {
      const all = await c.fetchSessions();
      const mine = all.find((x) => x.locksHeld === 1);
      assert.ok(mine !== undefined && mine.transport === 'tcp' && /^127\.0\.0\.1:\d+$/.test(mine.address ?? ''), JSON.stringify(all));
      // The backing store's default session holds only /other/x: a token granted /jobs does not see it.
      assert.equal(all.reduce((n, x) => n + x.locksHeld, 0), 1, JSON.stringify(all));
      assert.ok(all.every((x) => x.locksHeld + x.locksWaiting > 0 || x === mine), `only sessions with a readable lock, and its own: ${JSON.stringify(all)}`);
      assert.ok(all.every((x) => x === mine || x.address === undefined), `no other client's address: ${JSON.stringify(all)}`);
      noOutside('listSessions', all);
    },
  },
  {
    name: 'top view shows only the granted subtree', expect: 'ok',
    run: async (c, { url }) => {
      const sample = { at: Date.now(), stats: await c.fetchStats(), locks: await c.fetchLockTable() };
      const screen = renderTop(sample, undefined, url, 50);
      assert.match(screen, /\/jobs\/l/);
      noOutside('top', screen);
    },
  },
  // admin and bulk
  { name: 'stats (counters, no paths)', expect: 'ok', run: async (c) => noOutside('stats', await c.fetchStats()) },
  { name: 'snapshot (needs admin on /)', expect: 'PERMISSION', run: (c) => c.snapshot() },
  {
    name: 'export inside', expect: 'ok',
    run: async (_c, { url }) => {
      const r = await run(['export', '/jobs'], { env: { LATCHKEY_URL: url, LATCHKEY_TOKEN: TOKEN } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /"path":"\/jobs\/a"/);
      noOutside('export', r.stdout);
    },
  },
  {
    name: 'export of the root', expect: 'ok',
    run: async (_c, { url }) => {
      const r = await run(['export', '/'], { env: { LATCHKEY_URL: url, LATCHKEY_TOKEN: TOKEN } });
      assert.equal(r.code, 1);
      assert.match(r.stderr, /PERMISSION/);
      assert.equal(r.stdout, '');
    },
  },
];

test('grants: every operation under a prefix grant reaches exactly the granted subtree', async () => {
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { listen: { host: '127.0.0.1', port: 0 }, auth: AuthTable.fromJson(authJson) });
  const url = `tcp://127.0.0.1:${server.tcpAddress!.port}`;
  const env: Env = { url, backing };
  await backing.set('/jobs/a', 'a');
  await backing.set('/other/secret', 's');
  const outsideLock = await backing.lock('/other/x');
  const c = await connect(url, { token: TOKEN, reconnect: false });
  try {
    for (const row of rows) {
      let result: unknown;
      let error: unknown;
      try {
        result = await row.run(c, env);
      } catch (e) {
        error = e;
      }
      if (row.expect === 'ok') assert.equal(error, undefined, `${row.name}: ${String(error)}`);
      else assert.ok(LatchkeyError.is(error, row.expect), `${row.name}: expected ${row.expect}, got ${error === undefined ? 'success' : String(error)}`);
      await row.after?.(backing, result);
    }
    // Nothing outside the grant was written by any row.
    assert.deepEqual([...await backing.list('/')].sort(), ['jobs', 'jobsX', 'other']);
    assert.deepEqual([...await backing.list('/other')], ['secret']);
  } finally {
    await c.close();
    await outsideLock.release();
    await server.close();
    await backing.close();
  }
});
