import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { verify } from '../../src/storage/index.js';
import { tempDir } from '../storage/helpers.js';

function val(key: number, round: number, n = 3000): Uint8Array {
  const b = new Uint8Array(n);
  b.fill((key * 7 + round) & 0xff);
  new DataView(b.buffer).setUint32(0, round, true);
  return b;
}

async function valueFileBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) if (f.endsWith('.val')) n += (await stat(path.join(dir, f))).size;
  return n;
}

test('compaction moves live values out of mostly dead files, deletes them, and changes nothing observable', async () => {
  await using tmp = await tempDir();
  const opts = { inlineValueBytes: 0, valueFileBytes: 64 * 1024, compaction: { scanEveryBytes: 1 << 30, intervalMs: 1e6 } };
  const s = (await open(tmp.path, opts)) as EmbeddedStore;
  const engine = s.internals as unknown as { compactor: { run(): Promise<void> } };
  // Keys 0..4 are written once (their file stays mostly dead around them), the others 20 times.
  const last = (k: number): number => (k < 5 ? 0 : 19);
  for (let round = 0; round < 20; round++) {
    for (let k = round === 0 ? 0 : 5; k < 20; k++) await s.set(`/k/${k}`, val(k, round));
  }
  const before = await valueFileBytes(tmp.path);
  const stat0 = (await s.get('/k/3'))!.stat;
  const events: string[] = [];
  const w = s.watch('/k', { recursive: true });
  const it = w[Symbol.asyncIterator]();
  const seen = (async () => { for (;;) { const r = await it.next(); if (r.done) return; events.push(r.value.path); } })();
  await engine.compactor.run();
  const after = await valueFileBytes(tmp.path);
  assert.ok(after < before / 3, `value files ${before} → ${after} bytes`);
  const st = s.stats() as Record<string, number>;
  assert.ok(st['compactionFilesDeleted']! > 0);
  assert.ok(st['compactionValuesMoved']! > 0);
  for (let k = 0; k < 20; k++) assert.deepEqual((await s.get(`/k/${k}`))!.value, val(k, last(k)));
  assert.deepEqual((await s.get('/k/3'))!.stat, stat0, 'a moved value keeps its stat');
  await s.set('/k/0', val(0, 20));
  await s.close();
  await seen.catch(() => undefined);
  assert.deepEqual(events, ['/k/0'], 'watchers are not told of moves');
  assert.equal((await verify(tmp.path)).ok, true);
  const s2 = await open(tmp.path, opts);
  for (let k = 1; k < 20; k++) assert.deepEqual((await s2.get(`/k/${k}`))!.value, val(k, last(k)));
  assert.deepEqual((await s2.get('/k/0'))!.value, val(0, 20));
  assert.ok(await valueFileBytes(tmp.path) < before / 3);
  await s2.close();
});

test('a transaction holding an old snapshot keeps the files it may read until it ends', async () => {
  await using tmp = await tempDir();
  const opts = { inlineValueBytes: 0, valueFileBytes: 16 * 1024, compaction: { scanEveryBytes: 1 << 30, intervalMs: 1e6 } };
  const s = (await open(tmp.path, opts)) as EmbeddedStore;
  const engine = s.internals as unknown as { compactor: { run(): Promise<void> } };
  for (let k = 0; k < 10; k++) await s.set(`/k/${k}`, val(k, 0));
  const tx = s.begin();
  for (let round = 1; round < 10; round++) for (let k = 0; k < 10; k++) await s.set(`/k/${k}`, val(k, round));
  await engine.compactor.run();
  // The transaction's snapshot still references round 0, in files compaction doomed.
  for (let k = 0; k < 10; k++) assert.deepEqual((await tx.get(`/k/${k}`))!.value, val(k, 0));
  const doomed = (s.stats() as Record<string, number>)['compactionDoomed']!;
  assert.ok(doomed > 0, 'files wait for the transaction');
  tx.abort();
  await engine.compactor.run();
  assert.equal((s.stats() as Record<string, number>)['compactionDoomed'], 0);
  for (let k = 0; k < 10; k++) assert.deepEqual((await s.get(`/k/${k}`))!.value, val(k, 9));
  await s.close();
});

test('a watch resuming from before a compaction gets the value a perms change reports: the history window keeps the files it may read', async () => {
  await using tmp = await tempDir();
  const opts = { inlineValueBytes: 0, valueFileBytes: 16 * 1024, compaction: { scanEveryBytes: 1 << 30, intervalMs: 1e6 } };
  for (const reopen of [false, true]) {
    const dir = path.join(tmp.path, String(reopen));
    let s = (await open(dir, opts)) as EmbeddedStore;
    await s.set('/p', val(99, 0));
    for (let k = 0; k < 10; k++) await s.set(`/k/${k}`, val(k, 0));
    const from = s.revision + 1;
    await s.internals.write('', [], {}, (ws) => ws.setPerms('/p', ['n0']));
    for (let round = 1; round < 10; round++) for (let k = 0; k < 10; k++) await s.set(`/k/${k}`, val(k, round));
    if (reopen) {
      // The window is rebuilt from the log: its commits hold refs.
      await s.close();
      s = (await open(dir, opts)) as EmbeddedStore;
    }
    const engine = s.internals as unknown as { compactor: { run(): Promise<void> } };
    await engine.compactor.run();
    await engine.compactor.run();
    const st = s.stats() as Record<string, number>;
    assert.ok(st['compactionValuesMoved']! > 0, 'the value of /p moved');
    assert.ok(st['compactionDoomed']! > 0, 'its old file waits for the history window');
    const ac = new AbortController();
    const it = s.watch('/p', { fromRevision: from, signal: ac.signal })[Symbol.asyncIterator]();
    const ev = (await it.next()).value as { type: string; path: string; value?: Uint8Array };
    assert.equal(ev.type, 'put');
    assert.deepEqual(new Uint8Array(ev.value!), val(99, 0));
    ac.abort();
    assert.deepEqual((await s.get('/p'))!.value, val(99, 0));
    await s.close();
  }
});

test('a view keeps the value files of its snapshot until it is closed', async () => {
  await using tmp = await tempDir();
  const opts = { inlineValueBytes: 0, cacheBytes: 0, valueFileBytes: 16 * 1024, compaction: { scanEveryBytes: 1 << 30, intervalMs: 1e6 } };
  const s = (await open(tmp.path, opts)) as EmbeddedStore;
  const engine = s.internals as unknown as { compactor: { run(): Promise<void> } };
  for (let k = 0; k < 10; k++) await s.set(`/k/${k}`, val(k, 0));
  const view = s.view();
  for (let round = 1; round < 10; round++) for (let k = 0; k < 10; k++) await s.set(`/k/${k}`, val(k, round));
  await engine.compactor.run();
  assert.ok((s.stats() as Record<string, number>)['compactionDoomed']! > 0, 'files wait for the view');
  // No cache: each read is a pread of the file the view's tree references.
  for (let k = 0; k < 10; k++) assert.deepEqual(view.get(`/k/${k}`)!.value, val(k, 0));
  view.close();
  await engine.compactor.run();
  assert.equal((s.stats() as Record<string, number>)['compactionDoomed'], 0);
  for (let k = 0; k < 10; k++) assert.deepEqual((await s.get(`/k/${k}`))!.value, val(k, 9));
  await s.close();
});
