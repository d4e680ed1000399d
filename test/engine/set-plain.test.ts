/**
 * The plain set's own path (Engine.setPlain: a set without conditions that
 * joins a burst without a workspace) keeps every check and answer of the
 * general write: lock waits and LOCKED, fences, write guards, missing and
 * ephemeral parents, TOO_LARGE, revisions in order, and the watch history
 * a watcher resumes from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Store } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { open } from '../../src/engine/open.js';
import { tempDir } from '../storage/helpers.js';

const code = (e: unknown): string | undefined => (e instanceof LatchkeyError ? e.code : undefined);

async function withStore(f: (s: Store) => Promise<void>): Promise<void> {
  await using dir = await tempDir('latchkey-set-plain-');
  const s = await open(dir.path, { durability: 'none' });
  try {
    await f(s);
  } finally {
    await s.close();
  }
}

test('set-plain: a thousand sets in one tick answer consecutive revisions, and the tree and reopened store hold the last values', async () => {
  await using dir = await tempDir('latchkey-set-plain-');
  const s = await open(dir.path, { durability: 'none' });
  await s.set('/p', '');
  const before = s.revision;
  const revs = await Promise.all(Array.from({ length: 1000 }, (_, i) => s.set(`/p/k${i % 100}`, `v${i}`)));
  assert.deepEqual(revs, Array.from({ length: 1000 }, (_, i) => before + 1 + i));
  assert.equal(s.revision, before + 1000);
  const e = await s.get('/p/k7');
  assert.equal(e?.text(), 'v907');
  assert.equal(e?.stat.version, 10);
  assert.equal(e?.stat.modRev, before + 908);
  assert.equal(e?.stat.createRev, before + 8);
  await s.close();
  const again = await open(dir.path, { durability: 'none' });
  assert.equal((await again.get('/p/k99'))?.text(), 'v999');
  assert.equal(again.revision, before + 1000);
  await again.close();
});

test('set-plain: missing parents are created as by any set; a parent that is ephemeral fails INVALID_ARGUMENT with nothing written', async () => {
  await withStore(async (s) => {
    const rev = await s.set('/a/b/c', 'x');
    assert.equal((await s.get('/a/b'))?.text(), '');
    assert.equal((await s.get('/a/b/c'))?.stat.modRev, rev);
    await s.create('/eph', '', { ephemeral: true });
    const at = s.revision;
    await assert.rejects(s.set('/eph/child', 'y'), (e) => code(e) === 'INVALID_ARGUMENT');
    assert.equal(s.revision, at);
    assert.equal(await s.get('/eph/child'), undefined);
  });
});

test('set-plain: another session\'s lock makes a set wait for its release, or fail LOCKED with wait: false; a stale fence fails LOCK_LOST', async () => {
  await withStore(async (s) => {
    const other = s.session();
    const lock = await other.lock('/locked');
    await assert.rejects(s.set('/locked/x', 'no', { wait: false }), (e) => code(e) === 'LOCKED');
    let done = false;
    const waiting = s.set('/locked/x', 'later').then((r) => { done = true; return r; });
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(done, false, 'the set waits for the lock');
    await lock.release();
    const rev = await waiting;
    assert.equal((await s.get('/locked/x'))?.stat.modRev, rev);
    const mine = await s.lock('/mine');
    const token = mine.token;
    assert.equal(typeof (await s.set('/mine/a', '1', { fence: mine })), 'number');
    await mine.release();
    await assert.rejects(s.set('/mine/a', '2', { fence: token }), (e) => code(e) === 'LOCK_LOST');
    assert.equal((await s.get('/mine/a'))?.text(), '1');
    await other.close();
  });
});

test('set-plain: a write guard that refuses the path fails the set with its error and writes nothing; TOO_LARGE values are refused', async () => {
  await using dir = await tempDir('latchkey-set-plain-');
  const s = await open(dir.path, { durability: 'none', maxValueBytes: 64 }) as unknown as EmbeddedStore;
  await s.set('/g', '');
  const at = s.revision;
  s.guardWrites(s.id, (p) => { if (p.startsWith('/g/no')) throw new LatchkeyError('PERMISSION', `not ${p}`); });
  await assert.rejects(s.set('/g/no', 'x'), (e) => code(e) === 'PERMISSION');
  assert.equal(s.revision, at);
  assert.equal(await s.get('/g/no'), undefined);
  assert.equal(typeof (await s.set('/g/yes', 'x')), 'number');
  s.guardWrites(s.id, undefined);
  await assert.rejects(s.set('/g/big', 'x'.repeat(65)), (e) => code(e) === 'TOO_LARGE');
  await s.close();
});

test('set-plain: a watch resuming from a revision in the history window gets the same events a live watch got, across puts and other commits', async () => {
  await withStore(async (s) => {
    const live: string[] = [];
    const first = s.revision + 1;
    const ac = new AbortController();
    const seen = (async () => {
      for await (const e of s.watch('/', { recursive: true, signal: ac.signal })) {
        live.push(`${e.revision} ${e.type} ${e.path} ${e.value === undefined ? '' : Buffer.from(e.value).toString()}`);
      }
    })().catch(() => {});
    await Promise.all(Array.from({ length: 200 }, (_, i) => s.set(`/w/k${i % 17}`, `v${i}`)));
    await s.multi([{ op: 'set', path: '/w/m1', value: 'a' }, { op: 'set', path: '/w/m2', value: 'b' }]);
    await s.delete('/w/k3');
    await Promise.all(Array.from({ length: 50 }, (_, i) => s.set(`/w/k${i % 5}`, `u${i}`)));
    const last = s.revision;
    while (live.length < 1 || !live.at(-1)!.startsWith(`${last} `)) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await seen;
    for (const from of [first, first + 150, last - 49, last]) {
      const resumed: string[] = [];
      for await (const e of s.watch('/', { recursive: true, fromRevision: from })) {
        resumed.push(`${e.revision} ${e.type} ${e.path} ${e.value === undefined ? '' : Buffer.from(e.value).toString()}`);
        if (e.revision === last) break;
      }
      assert.deepEqual(resumed, live.filter((x) => Number(x.split(' ')[0]) >= from), `from ${from}`);
    }
  });
});
