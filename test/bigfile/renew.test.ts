/**
 * A handle's snapshot transaction is renewed before a server's per-transaction
 * operation cap (maxTxOps) — here a server capped at 100 operations and a
 * handle renewing after 50 loads — while the file is unchanged; once another
 * client changed the file, a load that needs renewal fails COMPACTED and
 * refresh() reads on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/index.js';
import { backend } from './backends.js';

const BS = 512;

test('renewal: a handle reads 400 blocks in one snapshot through a server capped at 100 operations per transaction', async () => {
  const b = await backend('unix', { maxTxOps: 100 });
  try {
    const f = await b.store.bigFile('/renew/f', { blockSize: BS });
    const w = await f.open({ cacheBytes: 64 * BS });
    const want = new Uint8Array(400 * BS);
    for (let i = 0; i < want.length; i++) want[i] = (i * 7 + 3) & 0xff;
    for (let at = 0; at < want.length; at += 16 * BS) {
      w.write(at, want.subarray(at, at + 16 * BS));
      await w.commit();
    }
    const opts = { cacheBytes: 8 * BS, renewAfterOps: 50 } as { cacheBytes: number };
    const r = await f.open(opts);
    assert.deepEqual(await r.read(0, want.length), want);
    assert.deepEqual(await r.read(0, want.length), want, 'and again, with the cache evicted');
    // A commit by another client: the old snapshot can no longer be renewed.
    const other = await b.other();
    const x = await (await other.bigFile('/renew/f')).open();
    x.write(0, new Uint8Array([1, 2, 3]));
    await x.commit();
    await assert.rejects(r.read(0, want.length), (e: unknown) => LatchkeyError.is(e, 'COMPACTED'));
    await r.refresh();
    const now = await r.read(0, want.length);
    assert.deepEqual(now.subarray(0, 3), new Uint8Array([1, 2, 3]));
    assert.deepEqual(now.subarray(3), want.subarray(3));
    // Without renewal the same read hits the server's cap: the test can fail.
    const noRenew = await f.open({ cacheBytes: 8 * BS, renewAfterOps: 1e9 } as { cacheBytes: number });
    await assert.rejects(noRenew.read(0, want.length), (e: unknown) => LatchkeyError.is(e, 'QUOTA'));
    await noRenew.close();
    await x.close();
    await r.close();
    await w.close();
  } finally {
    await b.cleanup();
  }
});
