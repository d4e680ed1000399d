import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { serve } from '../../src/server/server.js';

/** Waits for `cond`, failing after a generous bound (a loaded machine is slow, not this slow). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * The server answers an uncontended lock and a release in the tick they
 * arrive and watches held locks through the engine's loss hook (whenLost),
 * not an AbortSignal: a lock taken from a remote holder must still reach it
 * as lockLost, and a released one must not.
 */
test('locks served: a lock force-released on the server is lost at the remote holder; the remote waiter gets it owner-died; a released lock is not lost', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-served-'));
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, { socket: path.join(dir, 's.sock') });
  const a = await connect(`unix://${server.socketPath!}`);
  const b = await connect(`unix://${server.socketPath!}`);
  try {
    const held = await a.lock('/jobs/f');
    const next = b.lock('/jobs/f'); // waits: answered when granted, not in the tick it arrived
    await until(() => backing.lockTable().waiting.length === 1, 'the waiter to queue');
    assert.equal(await backing.forceRelease('/jobs/f'), 1);
    const got = await next;
    assert.equal(got.ownerDied, true);
    await until(() => !held.held, 'lockLost to reach the holder');
    assert.ok(held.signal.aborted && LatchkeyError.is(held.signal.reason, 'LOCK_LOST'), String(held.signal.reason));
    await held.release(); // lost already: nothing to give back, no error
    await got.markConsistent();
    await got.release();

    // Released before the operator acts: nothing to take, nothing pushed.
    const l = await a.lock('/jobs/g');
    await l.release();
    assert.equal(await backing.forceRelease('/jobs/g'), 0);
    const again = await b.lock('/jobs/g', { wait: false });
    assert.equal(again.ownerDied, false);
    await again.release();
    assert.equal(l.signal.aborted, false);
    assert.equal(backing.lockTable().held.length, 0);
  } finally {
    await a.close();
    await b.close();
    await server.close();
    await backing.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
