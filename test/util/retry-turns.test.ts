/**
 * transaction()'s turns (util/retry.ts note 5) on a real embedded store:
 * what happens when a turn cannot be had, is aborted while queued, or is not
 * due. (That a turn ends starvation is a contract test, test/contract/locks.ts,
 * run on every backend.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError, open } from '../../src/index.js';
import { TURN_AFTER_CONFLICTS as TURN } from '../../src/util/retry.js';

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
    await tx.get('/q'); // the conflict is at /q (read); the write is elsewhere, so the commit is not held up by the lock
    if (runs <= TURN) await other.set('/q', `rival ${runs}`);
    // The turn, due after this run's conflict, will queue behind this lock.
    if (runs === TURN) holder = await other.lock('/q');
    await tx.set('/w', 'mine');
  }, { signal: ac.signal, timeoutMs: 60_000 });
  for (let i = 0; i < 400 && store.lockTable().waiting.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(store.lockTable().waiting.map((w) => w.path), ['/q'], 'the turn is queued behind the lock');
  ac.abort();
  await assert.rejects(p, is('ABORTED'));
  assert.equal(store.lockTable().waiting.length, 0);
  assert.deepEqual(store.lockTable().held.map((h) => h.token), [holder!.token], "only the rival's lock is held");
  await holder!.release();
  assert.equal(store.lockTable().held.length, 0);
  assert.equal(runs, TURN);
  await store.close();
});

test('turns: none before TURN_AFTER_CONFLICTS conflicts, nor past `retries`; a turn held is given back on success and on a thrown error', async () => {
  const store = await open();
  const me = store.session();
  const other = store.session();
  const turns = (): number => store.stats().txTurns ?? 0;
  // retries: TURN - 1 → gives up after TURN runs, before any turn.
  let runs = 0;
  const t0 = turns();
  await assert.rejects(me.transaction(async (tx) => {
    runs++;
    await tx.get('/r');
    await other.set('/r', String(runs));
    await tx.set('/r', 'mine');
  }, { retries: TURN - 1 }), is('CONFLICT'));
  assert.equal(runs, TURN);
  assert.equal(turns() - t0, 0);
  // TURN forced conflicts → a turn; the next run throws: the turn is released all the same.
  runs = 0;
  await assert.rejects(me.transaction(async (tx) => {
    runs++;
    await tx.get('/r');
    if (runs <= TURN) await other.set('/r', `second ${runs}`); // new bytes: a rewrite with the same bytes does not conflict
    if (runs === TURN + 1) {
      assert.deepEqual(store.lockTable().held.map((h) => h.path), ['/r'], 'this run holds its turn');
      throw new Error('boom');
    }
    await tx.set('/r', 'mine');
  }), /boom/);
  assert.equal(turns() - t0, 1);
  assert.equal(store.lockTable().held.length, 0, 'released after the error');
  // And on success: TURN forced conflicts, a turn, a commit, nothing held after.
  runs = 0;
  await me.transaction(async (tx) => {
    runs++;
    const v = (await tx.get('/r'))?.text() ?? '';
    if (runs <= TURN) await other.set('/r', `rival ${runs}`);
    await tx.set('/r', `${v}+`);
  });
  assert.equal(runs, TURN + 1);
  assert.equal((await store.get('/r'))!.text(), `rival ${TURN}+`);
  assert.equal(turns() - t0, 2);
  assert.equal(store.lockTable().held.length, 0, 'released after the commit');
  await store.close();
});

test('turns: two calls whose turns block each other\'s commits (a transfer each way) both commit; neither fails DEADLOCK', async () => {
  const store = await open();
  await store.set('/a', '100');
  await store.set('/b', '100');
  const s3 = store.session();
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
  let read = 0;
  let releaseReads!: () => void;
  const allRead = new Promise<void>((r) => { releaseReads = r; });
  const transfer = async (from: string, to: string): Promise<number> => {
    let runs = 0;
    await store.session().transaction(async (tx) => {
      runs++;
      const f = Number((await tx.get(from))!.text());
      const t = Number((await tx.get(to))!.text());
      if (runs === 1) {
        // Both read, then a third session moves both accounts: each call conflicts, at its first read.
        if (++read === 2) {
          await s3.set('/a', '101');
          await s3.set('/b', '99');
          releaseReads();
        }
        await allRead;
      }
      // Under its turn: wait (a while at most) until the other call holds its own, so the two
      // commits each wait for the other's turn.
      if (runs === 1 + TURN) for (let i = 0; i < 100 && store.lockTable().held.length < 2; i++) await sleep(5);
      await tx.set(from, String(f - 1));
      await tx.set(to, String(t + 1));
    }, { timeoutMs: 60_000 });
    return runs;
  };
  const [r1, r2] = await Promise.all([transfer('/a', '/b'), transfer('/b', '/a')]);
  assert.ok(r1 >= 2 && r2 >= 2, `both conflicted first (${r1}, ${r2} runs)`);
  assert.equal((await store.get('/a'))!.text(), '101');
  assert.equal((await store.get('/b'))!.text(), '99');
  assert.equal(store.lockTable().held.length, 0);
  await store.close();
});
