/**
 * Two processes and a remote client on one object graph: a latchkey server
 * in a child process, two worker processes on its Unix socket, and this
 * process on its TCP port. All three change the same Counter (merged by
 * resolveConflict), the same Account field (conflicts, re-runs) and insert
 * into the same PBTree; every change must land, and this process's cached
 * objects must be invalidated exactly where others changed them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/index.js';
import { Counter, ObjectDB, PBTree, isGhost } from '../../src/objects/index.js';
import { Account } from '../fixtures/objects-classes.js';
import { startServer } from '../server/helpers.js';

const WORKER = fileURLToPath(new URL('../fixtures/objects-worker.js', import.meta.url));
const M = 40;

test('objects: two processes and a remote client on one graph — invalidation, conflicts, resolution', async () => {
  await using server = await startServer(['--memory', '--listen', '127.0.0.1:0', '--insecure-loopback']);
  const store = await connect(server.tcp!);
  try {
    const db = await ObjectDB.open(store, { prefix: '/graph' });
    await db.transaction(async (root) => {
      root.counter = new Counter();
      root.account = new Account();
      root.untouched = new Account();
      const t = (root.tree = new PBTree<string, number>()) as PBTree<string, number>;
      for (let i = 0; i < 400; i++) await t.set(`base-${String(i).padStart(4, '0')}`, i);
    });
    await using mine = db.connect();
    const cached = await mine.transaction(async (root) => ({
      counter: await (root.counter as Counter).load(),
      account: await (root.account as Account).load(),
      untouched: await (root.untouched as Account).load(),
    }));

    const children = ['1', '2'].map((id) => spawn(process.execPath, [WORKER, `unix://${server.unix}`, id, String(M)], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const outs = children.map((c) => {
      let out = '';
      c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      const ready = new Promise<void>((resolve, reject) => {
        c.stdout.on('data', () => { if (out.startsWith('ready\n')) resolve(); });
        c.once('exit', (code) => reject(new Error(`worker exited ${code} before ready: ${out}`)));
      });
      const exit = new Promise<{ code: number | null; out: () => string }>((resolve) => c.once('exit', (code) => resolve({ code, out: () => out })));
      return { ready, exit };
    });
    await Promise.all(outs.map((o) => o.ready));
    for (const c of children) c.stdin.end('go\n');
    // This process works on the same objects over TCP meanwhile, through the pool.
    for (let i = 0; i < M; i++) {
      await db.transaction(async (root) => { (await (root.counter as Counter).load()).add(1); }, { timeoutMs: 60_000 });
      await db.transaction(async (root) => { (await (root.account as Account).load()).balance += 1; }, { timeoutMs: 60_000 });
      await db.transaction(async (root) => { await (root.tree as PBTree<string, number>).set(`w0-${String(i).padStart(5, '0')}`, i); }, { timeoutMs: 60_000 });
    }
    const results = await Promise.all(outs.map((o) => o.exit));
    const figures = results.map((r) => {
      assert.equal(r.code, 0, `a worker failed: ${r.out()}`);
      return JSON.parse(r.out().split('\n')[1]!) as { resolved: number; retries: number; invalidations: number; seen: number };
    });

    // Invalidation: this connection's cached objects that others changed are ghosts at its next boundary;
    // the one nobody changed is still loaded.
    await mine.transaction(async (root) => {
      assert.equal(root.counter, cached.counter, 'identity map: the same object');
      assert.equal(isGhost(cached.counter), true);
      assert.equal(isGhost(cached.account), true);
      assert.equal(isGhost(cached.untouched), false, 'an object nobody changed is not invalidated');
      assert.equal((await cached.counter.load()).value, 3 * M);
      assert.equal((await cached.account.load()).balance, 3 * M);
      const t = root.tree as PBTree<string, number>;
      assert.equal(await t.size(), 400 + 3 * M);
      for (const w of ['0', '1', '2']) assert.equal(await t.get(`w${w}-${String(M - 1).padStart(5, '0')}`), M - 1);
    });
    assert.ok(mine.stats().invalidations >= 2);
    const all = [...figures, db.stats()];
    assert.ok(all.reduce((a, f) => a + f.resolved, 0) > 0, `some conflicts were merged by resolveConflict: ${JSON.stringify(all)}`);
    assert.ok(figures.every((f) => f.invalidations > 0), 'each worker saw the others\' changes by invalidation');
    assert.ok(figures.every((f) => f.seen >= M), JSON.stringify(figures));
    await db.close();
  } finally {
    await store.close();
  }
});
