/**
 * openShared(dir): processes racing to open one data directory end up on one
 * server, started on demand as a detached process that exits once idle; the
 * data is durable across servers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openShared } from '../../src/shared.js';
import { connect } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { open } from '../../src/index.js';

test('shared: racing openers share one on-demand server, which exits when idle; data outlives it', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-shared-'));
  try {
    // Half through the public open(dir, { shared: true }), half through openShared: one race.
    const stores = await Promise.all([0, 1, 2, 3].map((i) => (i % 2 === 0 ? open(dir, { shared: true, idleExitMs: 300 }) : openShared(dir, { idleExitMs: 300 }))));
    await Promise.all(stores.map((s, i) => s.set(`/who/${i}`, String(i))));
    for (const s of stores) assert.deepEqual([...(await s.list('/who'))], ['0', '1', '2', '3']);
    const st = await (stores[1] as Awaited<ReturnType<typeof openShared>>).fetchStats();
    assert.equal((st.server as { connections: number }).connections, 4, 'one server for all');
    await Promise.all(stores.map((s) => s.close()));
    // Idle for 300 ms: the server exits and its socket stops answering.
    await new Promise((r) => setTimeout(r, 600));
    const gone = Date.now() + 10_000;
    for (;;) {
      try {
        const probe = await connect(`unix://${path.join(dir, 'latchkey.sock')}`, { reconnect: false, connectTimeoutMs: 500 });
        await probe.close();
      } catch (e) {
        if (LatchkeyError.is(e, 'CONNECTION_LOST')) break;
        throw e;
      }
      assert.ok(Date.now() < gone, 'the idle server should have exited');
      // Wait longer than the idle time between probes: a probe is a client too.
      await new Promise((r) => setTimeout(r, 600));
    }
    const again = await openShared(dir, { idleExitMs: 300 });
    assert.equal((await again.get('/who/3'))?.text(), '3');
    await again.close();
  } finally {
    // Let the last server see it is idle and exit before the directory goes.
    await new Promise((r) => setTimeout(r, 600));
    rmSync(dir, { recursive: true, force: true });
  }
});
