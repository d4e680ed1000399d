/**
 * The lock contract: what every Store implementation's sessions and locks
 * must do, seen only through api.ts (the remote client runs it too:
 * `lockContractSuite('tcp', factory)`). Each test gets a fresh store.
 */
import assert from 'node:assert/strict';
import { LatchkeyError, type Store } from '../../src/index.js';
import { type Backend, backendTest } from './suite.js';

const is = (code: string) => (e: unknown): boolean => LatchkeyError.is(e) && e.code === code;

/** True when `p` is still pending after the event loop has turned a few times. */
async function pending(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  return !done;
}

export function lockContractSuite(name: string, make: () => Promise<Backend>): void {
  const t = backendTest(`locks contract[${name}]`, make);

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

  t('sessions: ephemeral nodes go with their session', async (store) => {
    const s = store.session();
    const made = await s.create('/members/m-', 'x', { ephemeral: true, sequential: true });
    assert.ok(await store.exists(made));
    await s.close();
    assert.equal(await store.exists(made), false);
  });
}
