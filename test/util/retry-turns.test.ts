/**
 * transaction()'s turns (util/retry.ts note 5) on a real embedded store:
 * what happens when a turn cannot be had, is aborted while queued, or is not
 * due. (That a turn ends starvation is a contract test, test/contract/locks.ts,
 * run on every backend.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError, open } from '../../src/index.js';

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code;

test('turns: a turn that cannot be had (NOT_RECOVERABLE) is no error: the loop backs off and commits', async () => {
  const store = await open();
  const me = store.session();
  const other = store.session();
  const dead = store.session();
  await dead.lock('/p');
  await dead.close();
  const l = await store.session().lock('/p');
  await l.markUnrecoverable();
  await l.release();
  let runs = 0;
  const before = store.stats().txTurns ?? 0;
  await me.transaction(async (tx) => {
    runs++;
    const v = (await tx.get('/p'))?.text() ?? '';
    if (runs <= 3) await other.set('/p', `rival ${runs}`); // a conflict, forced
    await tx.set('/p', `${v}+`);
  });
  assert.equal(runs, 4);
  assert.equal((await store.get('/p'))!.text(), 'rival 3+');
  assert.equal((store.stats().txTurns ?? 0) - before, 0, 'no turn was granted');
  assert.equal(store.lockTable().held.length, 0);
  await store.close();
});

test('turns: aborted while queued for a turn: ABORTED, nothing left held or waiting', async () => {
  const store = await open();
  const me = store.session();
  const other = store.session();
  const ac = new AbortController();
  let runs = 0;
  let holder: Awaited<ReturnType<typeof other.lock>> | undefined;
  const p = me.transaction(async (tx) => {
    runs++;
    await tx.get('/q');
    await other.set('/q', `rival ${runs}`);
    // After the second conflict the turn will queue behind this lock.
    if (runs === 2) holder = await other.lock('/q');
    await tx.set('/q', 'mine');
  }, { signal: ac.signal, timeoutMs: 60_000 });
  for (let i = 0; i < 200 && store.lockTable().waiting.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.lockTable().waiting.length, 1, 'the turn is queued behind the lock');
  ac.abort();
  await assert.rejects(p, is('ABORTED'));
  assert.equal(store.lockTable().waiting.length, 0);
  assert.deepEqual(store.lockTable().held.map((h) => h.token), [holder!.token], "only the rival's lock is held");
  await holder!.release();
  assert.equal(store.lockTable().held.length, 0);
  await store.close();
});

test('turns: none before the second conflict, nor past `retries`; a turn held is given back on success and on a thrown error', async () => {
  const store = await open();
  const me = store.session();
  const other = store.session();
  const turns = (): number => store.stats().txTurns ?? 0;
  // retries: 1 → gives up after the second run, before any turn.
  let runs = 0;
  const t0 = turns();
  await assert.rejects(me.transaction(async (tx) => {
    runs++;
    await tx.get('/r');
    await other.set('/r', String(runs));
    await tx.set('/r', 'mine');
  }, { retries: 1 }), is('CONFLICT'));
  assert.equal(runs, 2);
  assert.equal(turns() - t0, 0);
  // Two forced conflicts → a turn; the third run throws: the turn is released all the same.
  runs = 0;
  await assert.rejects(me.transaction(async (tx) => {
    runs++;
    await tx.get('/r');
    if (runs <= 2) await other.set('/r', String(runs));
    if (runs === 3) {
      assert.equal(store.lockTable().held.length, 1, 'run 3 holds its turn');
      throw new Error('boom');
    }
    await tx.set('/r', 'mine');
  }), /boom/);
  assert.equal(turns() - t0, 1);
  assert.equal(store.lockTable().held.length, 0, 'released after the error');
  await store.close();
});
