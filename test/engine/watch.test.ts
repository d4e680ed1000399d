import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { open } from '../../src/engine/open.js';
import type { WatchEvent } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { WatchRegistry, type WatchEventData } from '../../src/core/watch-registry.js';
import { Workspace } from '../../src/core/ops.js';
import { emptyRoot } from '../../src/core/tree.js';
import { Engine } from '../../src/engine/engine.js';
import { EmbeddedStore } from '../../src/engine/store.js';

function brief(e: WatchEvent): string {
  return `${e.revision} ${e.type} ${e.path}${e.value !== undefined ? `=${Buffer.from(e.value).toString()}` : ''}`;
}

async function take(it: AsyncIterator<WatchEvent>, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    assert.equal(r.done, false);
    out.push(brief(r.value));
  }
  return out;
}

test('watch: one event per changed node, in revision order; a recursive delete gives one delete per node', async () => {
  const store = await open();
  const it = store.watch('/', { recursive: true })[Symbol.asyncIterator]();
  await store.set('/a/b', 'x');           // rev 1: put /a (parent), put /a/b
  await store.set('/a/c', 'y');           // rev 2
  await store.delete('/a', { recursive: true }); // rev 3: /a, /a/b, /a/c
  assert.deepEqual(await take(it, 6), ['1 put /a=', '1 put /a/b=x', '2 put /a/c=y', '3 delete /a', '3 delete /a/b', '3 delete /a/c']);
  await it.return!();
  await store.close();
});

test('watch: a plain watch sees its node only; a recursive one its subtree only', async () => {
  const store = await open();
  const plain = store.watch('/a')[Symbol.asyncIterator]();
  const sub = store.watch('/b', { recursive: true })[Symbol.asyncIterator]();
  await store.set('/a', '1');
  await store.set('/a/child', '2');
  await store.set('/b/x/y', '3');
  await store.set('/bb', '4');
  await store.set('/a', '5');
  await store.set('/b', '6');
  assert.deepEqual(await take(plain, 2), ['1 put /a=1', '5 put /a=5']);
  assert.deepEqual(await take(sub, 3), ['3 put /b=', '3 put /b/x=', '3 put /b/x/y=3'].slice(0, 3));
  assert.deepEqual(await take(sub, 1), ['6 put /b=6']);
  await store.close();
});

test('watch: fromRevision replays the history window; a compacted revision fails clearly', async () => {
  const store = await open();
  for (let i = 1; i <= 5; i++) await store.set('/k', String(i));
  const it = store.watch('/k', { fromRevision: 3 })[Symbol.asyncIterator]();
  assert.deepEqual(await take(it, 3), ['3 put /k=3', '4 put /k=4', '5 put /k=5']);
  await store.set('/k', '6');
  assert.deepEqual(await take(it, 1), ['6 put /k=6']);
  await it.return!();
  await store.close();

  // A registry whose window holds 3 events: older revisions are compacted.
  const reg = new WatchRegistry(0, { maxEvents: 3 });
  let root = emptyRoot();
  for (let rev = 1; rev <= 6; rev++) {
    const ws = new Workspace(root, rev);
    ws.set('/k', new Uint8Array([rev]));
    reg.publish(rev, ws.mutations, root);
    root = ws.root;
  }
  assert.equal(reg.oldestRevision, 4);
  const sink = { deliver: () => {}, end: () => {} };
  assert.throws(() => reg.subscribe('/k', false, 3, sink), (e: unknown) => LatchkeyError.is(e, 'COMPACTED') && e.info?.compacted === true && e.info.oldestRevision === 4);
  const got: number[] = [];
  reg.subscribe('/k', false, 4, { deliver: (rev) => got.push(rev), end: () => {} });
  assert.deepEqual(got, [4, 5, 6]);
});

test('watch: a consumer past its queue limit gets a resumable QUOTA, and resuming is gapless with no duplicates', async () => {
  const store = (await open()) as EmbeddedStore;
  const w = store.watchInternal('/q', { recursive: true, maxQueue: 5 });
  for (let i = 0; i < 20; i++) await store.set(`/q/${i}`, String(i)); // /q itself is created at rev 1
  const seen: string[] = [];
  let resumeFrom = -1;
  try {
    for await (const e of w) seen.push(brief(e));
    assert.fail('expected QUOTA');
  } catch (e) {
    assert.ok(LatchkeyError.is(e, 'QUOTA'), String(e));
    resumeFrom = e.info?.resumeFrom as number;
  }
  assert.ok(seen.length >= 1 && seen.length <= 6, `got ${seen.length}`);
  const it = store.watch('/q', { recursive: true, fromRevision: resumeFrom })[Symbol.asyncIterator]();
  const total = 21 - seen.length;
  seen.push(...await take(it, total));
  const expected = ['1 put /q=', '1 put /q/0=0', ...Array.from({ length: 19 }, (_, i) => `${i + 2} put /q/${i + 1}=${i + 1}`)];
  assert.deepEqual(seen, expected);
  await store.close();
});

test('watch: break and abort unsubscribe; an aborted watch throws ABORTED', async () => {
  const engine = new Engine();
  const store = new EmbeddedStore(engine);
  const ac = new AbortController();
  const it = store.watch('/x', { signal: ac.signal })[Symbol.asyncIterator]();
  const p = it.next();
  ac.abort();
  await assert.rejects(p, { code: 'ABORTED' });
  await store.set('/y', '1');
  let n = 0;
  for await (const _ of store.watch('/y', { fromRevision: 1 })) {
    n++;
    break;
  }
  assert.equal(n, 1);
  assert.equal(engine.watches.size, 0);
  await store.close();
});

test('watch: events match a replay of the commits (property)', async () => {
  await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom('set', 'del'), fc.constantFrom('/a', '/a/b', '/a/b/c', '/d', '/a/e')), { minLength: 1, maxLength: 30 }), async (ops) => {
    const store = (await open()) as EmbeddedStore;
    const w = store.watchInternal('/a', { recursive: true, maxQueue: 1e6 });
    const model = new Map<string, string>();
    const expected: string[] = [];
    let rev = 0;
    for (const [op, path] of ops) {
      if (op === 'set') {
        const r = await store.set(path, 'v');
        if (r === rev) continue;
        rev = r;
        // parents created on the way
        const segs = path.slice(1).split('/');
        for (let i = 1; i <= segs.length; i++) {
          const p = '/' + segs.slice(0, i).join('/');
          if (i < segs.length && model.has(p)) continue;
          model.set(p, i === segs.length ? 'v' : '');
          if (p === '/a' || p.startsWith('/a/')) expected.push(`${rev} put ${p}`);
        }
      } else {
        const existed = [...model.keys()].filter((p) => p === path || p.startsWith(path + '/')).sort();
        const r = await store.delete(path, { recursive: true });
        if (!r) continue;
        rev++;
        for (const p of existed) {
          model.delete(p);
          if (p === '/a' || p.startsWith('/a/')) expected.push(`${rev} delete ${p}`);
        }
      }
    }
    // In memory, commits publish synchronously: every event is queued by now.
    const live: WatchEventData[] = w.queued > 0 ? await w.take() : [];
    await store.close();
    assert.deepEqual(live.map((e) => `${e.revision} ${e.type} ${e.path}`), expected);
  }), { numRuns: 50 });
});

test('watch: a perms change is reported as a put of the unchanged value', async () => {
  const s = (await open()) as EmbeddedStore;
  await s.set('/w/p', 'val');
  const ac = new AbortController();
  const it = s.watch('/w', { recursive: true, fromRevision: s.revision + 1, signal: ac.signal })[Symbol.asyncIterator]();
  await s.internals.write('', [], {}, (ws) => ws.setPerms('/w/p', ['n0']));
  const ev = (await it.next()).value as { type: string; path: string; value?: Uint8Array };
  assert.equal(ev.type, 'put');
  assert.equal(ev.path, '/w/p');
  assert.equal(Buffer.from(ev.value!).toString(), 'val');
  ac.abort();
  await s.close();
});

test('watch: the history window survives a restart (rebuilt from the log tail): a watch resumes with exactly the events it would have had; before the snapshot it fails COMPACTED naming the oldest revision', async () => {
  const { removeDir, tempDir } = await import('../storage/helpers.js');
  const dir = (await tempDir()).path;
  try {
    let store = await open(dir);
    await store.set('/base', 'b');
    await store.snapshot(); // revision 1: recovery starts here, the window after it
    await store.set('/a/b', 'x');
    await store.set('/a/c', 'y');
    await store.create('/q/j-', 'job', { sequential: true });
    await store.delete('/a', { recursive: true });
    await store.multi([{ op: 'set', path: '/m', value: '1' }, { op: 'delete', path: '/q', recursive: true }]);
    const head = store.revision;
    const live = store.watch('/', { recursive: true, fromRevision: 2 })[Symbol.asyncIterator]();
    const before = await take(live, 11);
    await live.return!();
    await store.close();

    store = await open(dir);
    assert.equal(store.revision, head);
    const resumed = store.watch('/', { recursive: true, fromRevision: 2 })[Symbol.asyncIterator]();
    assert.deepEqual(await take(resumed, 11), before);
    await store.set('/after', 'z');
    assert.deepEqual(await take(resumed, 1), [`${head + 1} put /after=z`]);
    await resumed.return!();
    const sub = store.watch('/a', { recursive: true, fromRevision: 4 })[Symbol.asyncIterator]();
    assert.deepEqual(await take(sub, 3), before.filter((l) => /^\d+ \w+ \/a\b/.test(l) && Number(l.split(' ')[0]) >= 4));
    await sub.return!();
    assert.throws(() => store.watch('/', { fromRevision: 1 })[Symbol.asyncIterator](), (e: unknown) =>
      LatchkeyError.is(e, 'COMPACTED') && e.info?.['oldestRevision'] === 2);
    await store.close();
  } finally {
    await removeDir(dir);
  }
});

test('watch: recalling more history than the window holds keeps the newest commits (the window trims as it fills)', () => {
  const reg = new WatchRegistry(10, { maxBytes: 100 });
  const v = new Uint8Array(40);
  const commits = Array.from({ length: 10 }, (_, i) => ({ rev: i + 1, mutations: [{ op: 'put' as const, path: `/k${i}`, value: v }], before: undefined }));
  reg.recall(commits);
  assert.ok(reg.oldestRevision > 1 && reg.oldestRevision <= 10, `oldest ${reg.oldestRevision}`);
});
