/**
 * The console's lock view at scale: with 100,000 held locks, /api/locks
 * answers one bounded page in path order (300 locks, their FIFO queues) with
 * the totals, pages on from a cursor, and counts only readable paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_LOCKS } from '../../src/http/api.js';
import { ADMIN, READER, served, until } from './helpers.js';

interface Page {
  held: number;
  waiting: number;
  next: string | null;
  locks: Array<{ path: string; session: string; queued: number; queue: Array<{ session: string; path: string }> }>;
}

const LOCKS = 100_000;
const name = (i: number): string => `/jobs/l${String(i).padStart(6, '0')}`;

test('http: with 100,000 held locks /api/locks returns one bounded page in path order with the totals, and pages on', async () => {
  await using s = await served();
  const holders = Array.from({ length: 100 }, (_, i) => s.store.ownedSession({ name: `h${i}` }));
  // Taken in a shuffled order, so path order is not the order of grant.
  const order = Array.from({ length: LOCKS }, (_, i) => (i * 7919) % LOCKS);
  for (let i = 0; i < LOCKS; i += 1000) await Promise.all(order.slice(i, i + 1000).map((k) => holders[k % 100]!.lock(name(k))));
  await s.store.ownedSession({ name: 'other' }).lock('/other/x');
  const waiter = s.store.ownedSession({ name: 'w' });
  const waits = [waiter.lock(name(0)).catch(() => {}), waiter.lock(name(LOCKS - 1)).catch(() => {})];
  await until(() => s.store.lockTable().waiting.length === 2, 'two waiters');

  const first = (await (await s.get('/api/locks', ADMIN)).json()) as Page;
  assert.equal(first.held, LOCKS + 1);
  assert.equal(first.waiting, 2);
  assert.equal(first.locks.length, MAX_LOCKS);
  assert.deepEqual(first.locks.map((l) => l.path), Array.from({ length: MAX_LOCKS }, (_, i) => name(i)));
  assert.equal(first.next, name(MAX_LOCKS - 1));
  assert.deepEqual(first.locks[0]!.queue.map((w) => [w.session, w.path]), [[waiter.id, name(0)]]);
  assert.equal(first.locks[0]!.queued, 1);
  assert.equal(first.locks[1]!.queued, 0);

  const second = (await (await s.get(`/api/locks?after=${encodeURIComponent(first.next!)}`, ADMIN)).json()) as Page;
  assert.equal(second.locks.length, MAX_LOCKS);
  assert.equal(second.locks[0]!.path, name(MAX_LOCKS));
  assert.equal(second.held, LOCKS + 1);

  // The last page: the remaining /jobs locks, then /other/x, and no cursor.
  const last = (await (await s.get(`/api/locks?after=${encodeURIComponent(name(LOCKS - 10))}`, ADMIN)).json()) as Page;
  assert.deepEqual(last.locks.map((l) => l.path), [...Array.from({ length: 9 }, (_, i) => name(LOCKS - 9 + i)), '/other/x']);
  assert.equal(last.next, null);
  assert.equal(last.locks[8]!.queued, 1);

  // A reader granted /jobs sees /jobs only, and the totals count /jobs only.
  const r = (await (await s.get(`/api/locks?after=${encodeURIComponent(name(LOCKS - 2))}`, READER)).json()) as Page;
  assert.equal(r.held, LOCKS);
  assert.deepEqual(r.locks.map((l) => l.path), [name(LOCKS - 1)]);

  // Shared holders of one path stay on one page (the cursor is a path): two readers of a path
  // sorting 300th and 301st move both to the next page, which the page before ends short of.
  const readers = [s.store.ownedSession({ name: 'r1' }), s.store.ownedSession({ name: 'r2' })];
  const shared = `${name(MAX_LOCKS - 2)}s`;
  for (const rd of readers) await rd.lock(shared, { mode: 'shared' });
  const split = (await (await s.get('/api/locks', ADMIN)).json()) as Page;
  assert.equal(split.locks.length, MAX_LOCKS - 1);
  assert.equal(split.next, name(MAX_LOCKS - 2));
  const after = (await (await s.get(`/api/locks?after=${encodeURIComponent(split.next!)}`, ADMIN)).json()) as Page;
  assert.deepEqual(after.locks.slice(0, 3).map((l) => l.path), [shared, shared, name(MAX_LOCKS - 1)]);
  for (const rd of readers) await rd.end(false);

  // A bad cursor is a typed error.
  const bad = await s.get('/api/locks?after=nope', ADMIN);
  assert.equal(bad.status, 400);
  assert.match(await bad.text(), /INVALID_PATH/);

  await waiter.end(false);
  await Promise.all(waits);
});
