/**
 * A client process holding a lock, an open transaction and an ephemeral node
 * is SIGKILLed. Its connection closing is its session's death: the waiter in
 * another process is granted the lock with ownerDied, the transaction is
 * gone, the ephemeral node is deleted.
 *
 * This file is also the holder: run with LK_HOLDER=<socket url> it connects,
 * takes what it holds, prints "held", and waits to be killed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from '../../src/client/store.js';
import type { WatchEvent } from '../../src/api.js';
import { startServer } from './helpers.js';

async function holder(url: string): Promise<void> {
  const store = await connect(url, { name: 'holder' });
  await store.create('/members/holder', 'alive', { ephemeral: true });
  const tx = store.begin();
  await tx.set('/uncommitted', 'never');
  await store.lock('/res');
  process.stdout.write('held lock\n');
  await new Promise(() => {}); // until SIGKILL
}

if (process.env.LK_HOLDER !== undefined) {
  await holder(process.env.LK_HOLDER);
} else {
  test('death: SIGKILL of a holder process frees its lock (ownerDied), its transaction and its ephemeral nodes', async (t) => {
    const server = await startServer();
    const url = `unix://${server.unix}`;
    const waiter = await connect(url, { name: 'waiter' });
    try {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], { env: { ...process.env, LK_HOLDER: url }, stdio: ['ignore', 'pipe', 'inherit'] });
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('\n')) resolve(out.trim());
        });
        child.on('exit', (c) => reject(new Error(`holder exited early (${c})`)));
      });
      assert.equal(line, 'held lock');
      assert.equal((await waiter.get('/members/holder'))?.text(), 'alive');
      const it = waiter.watch('/members', { recursive: true })[Symbol.asyncIterator]();
      await waiter.set('/sync', '1'); // the watch is registered once a later request is answered
      let grantedAt = 0;
      const granted = waiter.lock('/res').then((l) => { grantedAt = performance.now(); return l; });
      // Kill only once the server has the waiter queued (else it could find the lock free, not orphaned).
      while ((await waiter.fetchLockTable()).waiting.length === 0) await new Promise((r) => setTimeout(r, 1));
      const killedAt = performance.now();
      child.kill('SIGKILL');
      const ev = await it.next();
      assert.deepEqual({ type: (ev.value as WatchEvent).type, path: (ev.value as WatchEvent).path }, { type: 'delete', path: '/members/holder' });
      assert.equal(await waiter.exists('/members/holder'), false);
      assert.equal(await waiter.exists('/uncommitted'), false);
      const st = await waiter.fetchStats();
      assert.equal(st.openTransactions, 0, 'the holder\'s transaction was aborted');
      const lock = await granted;
      const ms = grantedAt - killedAt;
      assert.equal(lock.ownerDied, true);
      t.diagnostic(`death-to-grant ${ms.toFixed(2)} ms`);
      await lock.release();
      await it.return!();
    } finally {
      await waiter.close();
      assert.equal(await server.stop(), 0);
    }
  });
}
