/**
 * The lock contract: what every Store implementation's sessions and locks
 * must do, seen only through api.ts (the remote client runs it too:
 * `lockContractSuite('tcp', factory)`). Each test gets a fresh store.
 */
import assert from 'node:assert/strict';
import { LatchkeyError, type Store } from '../../src/index.js';
import { type Backend, backendTest } from './suite.js';
import { TURN_AFTER_CONFLICTS } from '../../src/util/retry.js';

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code;

/** True when `p` is still pending after the event loop has turned a few times. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return !done;
}

export interface LockSuiteOptions {
  /** 'only': run just the server-crash tests (the backend can crash: Backend.crash). */
  crash?: 'also' | 'only';
}

export function lockContractSuite(name: string, make: () => Promise<Backend>, options: LockSuiteOptions = {}): void {
  const t = backendTest(`locks contract[${name}]`, make);
  if (options.crash !== undefined) crashTests(t);
  if (options.crash === 'only') return;

  t('lock, token, locks(), lockTable(), idempotent release', async (store) => {
    const s = store.session({ name: 'w' });
    const a = await s.lock('/jobs/1');
    const b = await s.lock('/jobs/2', { mode: 'shared' });
    assert.equal(a.mode, 'exclusive');
    assert.ok(b.token > a.token);
    assert.deepEqual(s.locks().map((l) => l.path).sort(), ['/jobs/1', '/jobs/2']);
    assert.equal(store.lockTable().held.length, 2);
    await a.release();
    await a.release();
    assert.equal(a.held, false);
    assert.deepEqual(s.locks().map((l) => l.path), ['/jobs/2']);
  });

  t('conflicts: subtree overlap, shared with shared, wait:false → LOCKED', async (store) => {
    const a = store.session();
    const b = store.session();
    await a.lock('/r', { mode: 'shared' });
    await b.lock('/r/x', { mode: 'shared' });
    await assert.rejects(b.lock('/r/x/y', { wait: false }), is('LOCKED'));
    await assert.rejects(b.lock('/', { wait: false }), is('LOCKED'));
    await b.lock('/q', { wait: false });
  });

  t('FIFO: a shared request queues behind an exclusive waiter', async (store) => {
    const [a, b, c] = [store.session(), store.session(), store.session()];
    const la = await a.lock('/f', { mode: 'shared' });
    const pb = b.lock('/f');
    const pc = c.lock('/f', { mode: 'shared' });
    assert.ok(await pending(pb));
    assert.ok(await pending(pc));
    await la.release();
    const lb = await pb;
    assert.ok(await pending(pc));
    await lb.release();
    await pc;
  });

  t('owner died: a session closed holding a lock hands it on with ownerDied; its lock signal aborts', async (store) => {
    const a = store.session();
    const la = await a.lock('/leader');
    const next = store.session().lock('/leader');
    await a.close();
    assert.equal((await next).ownerDied, true);
    assert.equal(la.signal.aborted, true);
    assert.ok(is('LOCK_LOST')(la.signal.reason));
  });

  t('robust: false: a session closed holding such a lock hands it on with no owner-died mark; a robust holder\'s mark is still reported and kept', async (store) => {
    const a = store.session();
    const la = await a.lock('/turn', { robust: false });
    const next = store.session().lock('/turn');
    await a.close();
    const ln = await next;
    assert.equal(ln.ownerDied, false, 'a non-robust holder leaves no mark');
    assert.equal(la.signal.aborted, true, 'the lock still dies with its owner');
    await ln.release();
    // A robust holder dies: a non-robust grant is told, and does not clear the mark.
    const b = store.session();
    await b.lock('/turn');
    const nr = store.session().lock('/turn', { robust: false });
    await b.close();
    const lnr = await nr;
    assert.equal(lnr.ownerDied, true);
    await lnr.markConsistent(); // a no-op for a non-robust holder: it cannot vouch for the data
    await lnr.release();
    const after = await store.session().lock('/turn');
    assert.equal(after.ownerDied, true, 'still marked for the next holder');
    await assert.rejects(store.session().lock('/x', { robust: 'no' as unknown as boolean }), is('INVALID_ARGUMENT'));
  });

  t('transaction: a read-modify-write that keeps losing to a rival takes a turn after TURN_AFTER_CONFLICTS conflicts and commits; every increment lands', async (store) => {
    const slow = store.session({ name: 'slow' });
    const fast = store.session({ name: 'fast' });
    await store.set('/turn/n', '0');
    let stop = false;
    let rivalCommits = 0;
    const rival = (async () => {
      while (!stop) {
        await fast.transaction(async (tx) => {
          const n = Number((await tx.get('/turn/n'))!.text());
          await tx.set('/turn/n', String(n + 1));
        }, { timeoutMs: 60_000 });
        rivalCommits++;
        await new Promise((r) => setImmediate(r));
      }
    })();
    let runs = 0;
    try {
      await slow.transaction(async (tx) => {
        runs++;
        const n = Number((await tx.get('/turn/n'))!.text());
        // Think until the rival has committed over our read (it always can, unless we hold the
        // turn: then its commit waits for us, and we go on after 50 ms).
        const seen = rivalCommits;
        for (let waited = 0; rivalCommits === seen && waited < 50; waited += 5) await new Promise((r) => setTimeout(r, 5));
        await tx.set('/turn/n', String(n + 1));
      }, { timeoutMs: 60_000 });
    } finally {
      stop = true;
      await rival;
    }
    assert.ok(runs <= TURN_AFTER_CONFLICTS + 1, `the slow transaction ran ${runs} times: without a turn the rival starves it`);
    assert.equal((await store.get('/turn/n'))!.text(), String(rivalCommits + 1));
    assert.equal(store.lockTable().held.length, 0, 'the turn was given back');
  });

  t('fencing: a write carrying a released lock fails LOCK_LOST', async (store) => {
    const s = store.session();
    const l = await s.lock('/f');
    await s.set('/f/v', '1', { fence: l });
    await l.release();
    await assert.rejects(s.set('/f/v', '2', { fence: l }), is('LOCK_LOST'));
    await assert.rejects(s.set('/f/v', '2', { fence: l.token }), is('LOCK_LOST'));
  });

  t('mandatory: another session\'s write waits for the lock (LOCKED with wait:false); reads do not', async (store) => {
    const a = store.session();
    const b = store.session();
    const l = await a.lock('/m');
    await a.set('/m/v', 'a');
    const w = b.set('/m/v', 'b');
    assert.ok(await pending(w));
    await assert.rejects(b.set('/m/v', 'c', { wait: false }), is('LOCKED'));
    assert.equal((await b.get('/m/v'))!.text(), 'a');
    await l.release();
    await w;
    assert.equal((await store.get('/m/v'))!.text(), 'b');
  });

  t('deadlock: the wait that closes a cycle fails DEADLOCK', async (store) => {
    const a = store.session();
    const b = store.session();
    await a.lock('/x');
    await b.lock('/y');
    const pa = a.lock('/y');
    await assert.rejects(b.lock('/x'), is('DEADLOCK'));
    await b.close();
    await pa;
  });

  t('cancellation: timeoutMs → TIMEOUT, signal → ABORTED, and the queue moves on', async (store) => {
    await store.lock('/c', { mode: 'shared' });
    const timedOut = assert.rejects(store.session().lock('/c', { timeoutMs: 10 }), is('TIMEOUT'));
    const behind = store.session().lock('/c', { mode: 'shared' });
    await timedOut;
    await behind;
    const ac = new AbortController();
    const p = store.session().lock('/c', { signal: ac.signal });
    ac.abort();
    await assert.rejects(p, is('ABORTED'));
  });

  t('markConsistent: the next holder is not told ownerDied; a release without it passes ownerDied on', async (store) => {
    const dead = store.session();
    await dead.lock('/db');
    await dead.close();
    const a = await store.session().lock('/db');
    assert.equal(a.ownerDied, true);
    await a.release(); // not vouched for
    const b = await store.session().lock('/db', { mode: 'shared' });
    assert.equal(b.ownerDied, true, 'passed on');
    await b.markConsistent();
    await b.release();
    const c = await store.session().lock('/db');
    assert.equal(c.ownerDied, false);
    await c.markConsistent(); // not told: nothing to clear, no error
    await c.release();
    await assert.rejects(c.markConsistent(), is('LOCK_LOST'));
  });

  t('markUnrecoverable: later requests overlapping the path fail NOT_RECOVERABLE, waiters too, until resetLock', async (store) => {
    const dead = store.session();
    await dead.lock('/db/t');
    await dead.close();
    const a = await store.session().lock('/db/t');
    assert.equal(a.ownerDied, true);
    const waiting = store.session().lock('/db/t');
    assert.ok(await pending(waiting));
    await a.markUnrecoverable();
    assert.equal(a.held, true, 'the marking holder keeps its lock until it releases');
    await a.release();
    await assert.rejects(waiting, is('NOT_RECOVERABLE'));
    await assert.rejects(store.session().lock('/db/t'), is('NOT_RECOVERABLE'));
    await assert.rejects(store.session().lock('/db', { mode: 'shared' }), is('NOT_RECOVERABLE'), 'a lock above covers the broken data');
    await assert.rejects(store.session().lock('/db/t/row'), is('NOT_RECOVERABLE'), 'a lock below is inside it');
    await (await store.session().lock('/db/u')).release(); // a sibling is not affected
    await store.resetLock('/db');
    const b = await store.session().lock('/db/t');
    assert.equal(b.ownerDied, false, 'reset clears the taint with the mark');
    await b.release();
  });

  t('sessions: ephemeral nodes go with their session', async (store) => {
    const s = store.session();
    const made = await s.create('/members/m-', 'x', { ephemeral: true, sequential: true });
    assert.ok(await store.exists(made));
    await s.close();
    assert.equal(await store.exists(made), false);
  });
}

/** Promises that outlive a server crash (durable backends only). */
function crashTests(t: (title: string, fn: (s: Store, b: Backend) => Promise<void>) => void): void {
  t('crash: a lock held at a crash, with a write under it, comes back owner-died; a released one does not; tokens keep increasing', async (store, b) => {
    const s = store.session();
    const held = await s.lock('/job');
    await s.set('/job/state', 'half-done', { fence: held });
    const done = await s.lock('/other');
    await done.release();
    await s.set('/other/state', 'finished');
    const after = await b.crash!();
    const next = await after.session().lock('/job');
    assert.equal(next.ownerDied, true, 'the holder died with the server');
    assert.ok(next.token > held.token && next.token > done.token, `token ${next.token} after ${done.token}`);
    const other = await after.session().lock('/other');
    assert.equal(other.ownerDied, false);
    // The taint is logged like any other: a second crash keeps it until someone marks it consistent.
    await next.release();
    await other.release();
    await after.set('/tick', '1');
    const again = await b.crash!();
    const third = await again.session().lock('/job');
    assert.equal(third.ownerDied, true);
    await third.markConsistent();
    await third.release();
    await again.set('/tick', '2');
    const last = await b.crash!();
    const fourth = await last.session().lock('/job');
    assert.equal(fourth.ownerDied, false);
    assert.ok(fourth.token > third.token);
  });

  t('crash: a non-robust lock held at a crash comes back free and unmarked; tokens keep increasing past it', async (store, b) => {
    const s = store.session();
    let last = await s.lock('/turn', { robust: false });
    // More non-robust grants, none of them logged as a hold: their tokens still count.
    for (let i = 0; i < 20; i++) {
      await last.release();
      last = await s.lock('/turn', { robust: false });
    }
    await s.set('/turn/x', '1');
    const after = await b.crash!();
    const next = await after.session().lock('/turn');
    assert.equal(next.ownerDied, false, 'a non-robust hold is not remembered as a taint');
    assert.ok(next.token > last.token, `token ${next.token} after ${last.token}`);
  });

  t('crash: an unrecoverable mark is durable when markUnrecoverable resolves; so is resetLock', async (store, b) => {
    const dead = store.session();
    await dead.lock('/db');
    await dead.close();
    const l = await store.session().lock('/db');
    await l.markUnrecoverable();
    const after = await b.crash!();
    await assert.rejects(after.session().lock('/db'), is('NOT_RECOVERABLE'));
    await after.resetLock('/db');
    const again = await b.crash!();
    const n = await again.session().lock('/db');
    assert.equal(n.ownerDied, false);
  });
}
