/**
 * Transaction.readInto: what a BigFile handle loads blocks with — a value
 * straight into the caller's buffer, from memory, the value cache or one
 * positional read of a value file (checked, not cached); over a socket, from
 * the reply's bytes as they arrive (test/client/readinto.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, openSync, readdirSync, readSync, rmSync, writeSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LatchkeyError, open } from '../../src/index.js';
import { backend } from './backends.js';

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7 + 1) & 0xff;
  return b;
}

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => LatchkeyError.is(e) && e.code === code);
}

test('Transaction.readInto in memory: the value and its stat, undefined when absent, TOO_LARGE when the target is short, bytes past the value untouched', async () => {
  await using store = await open();
  await store.set('/v', bytes(3000, 1));
  const tx = store.begin();
  try {
    const target = new Uint8Array(4000).fill(9);
    const r = await tx.readInto!('/v', target);
    assert.equal(r?.length, 3000);
    assert.equal(r?.stat.modRev, (await store.get('/v'))!.stat.modRev);
    assert.deepEqual(target.subarray(0, 3000), bytes(3000, 1));
    assert.ok(target.subarray(3000).every((x) => x === 9));
    assert.equal(await tx.readInto!('/absent', target), undefined);
    await rejects(tx.readInto!('/v', new Uint8Array(2999)), 'TOO_LARGE');
    await rejects(tx.readInto!('no-slash', target), 'INVALID_PATH');
    await rejects(tx.readInto!('/v', [1, 2, 3] as unknown as Uint8Array), 'INVALID_ARGUMENT');
  } finally {
    await tx.abort();
  }
  // A closed transaction refuses.
  await rejects(tx.readInto!('/v', new Uint8Array(4000)), 'ABORTED');
});

test('Transaction.readInto on disk: a value file entry read straight into the target (checked), from the cache or not; a corrupt entry is CORRUPT', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-readinto-'));
  try {
    const value = bytes(64 * 1024, 2);
    {
      await using store = await open(dir, { inlineValueBytes: 1024 });
      await store.set('/big', value);
      const tx = store.begin();
      const t = new Uint8Array(value.length);
      assert.equal((await tx.readInto!('/big', t))?.length, value.length); // from the value cache (just written)
      assert.deepEqual(t, value);
      await tx.abort();
    }
    // Reopened: the value cache is cold, so the read is a positional read into the target.
    {
      await using store = await open(dir, { inlineValueBytes: 1024 });
      const tx = store.begin();
      const t = new Uint8Array(value.length + 10);
      assert.equal((await tx.readInto!('/big', t))?.length, value.length);
      assert.deepEqual(t.subarray(0, value.length), value);
      await tx.abort();
    }
    // Flip one byte of the value in its file: the checksum fails, CORRUPT.
    const file = readdirSync(dir, { recursive: true }).map(String).find((n) => n.endsWith('.val'))!;
    const fd = openSync(path.join(dir, file), 'r+');
    const whole = new Uint8Array(1 << 20);
    const n = readSync(fd, whole, 0, whole.length, 0);
    const at = Buffer.from(whole.subarray(0, n)).indexOf(Buffer.from(value.subarray(0, 64)));
    assert.ok(at > 0, 'the value is in its file');
    writeSync(fd, new Uint8Array([whole[at + 100]! ^ 0xff]), 0, 1, at + 100);
    closeSync(fd);
    {
      await using store = await open(dir, { inlineValueBytes: 1024 });
      const tx = store.begin();
      await rejects(tx.readInto!('/big', new Uint8Array(value.length)), 'CORRUPT');
      await tx.abort();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a remote transaction has readInto (and says it is remote): a BigFile handle over a socket loads through it into pages, and reads the same bytes', async () => {
  const b = await backend('unix');
  try {
    const tx = b.store.begin();
    assert.equal(typeof tx.readInto, 'function');
    assert.equal(tx.remote, true);
    await tx.abort();
    const f = await b.store.bigFile('/ri', { blockSize: 512 });
    await using h = await f.open({ cacheBytes: 4 * 512 });
    for (let at = 0; at < 10 * 512; at += 1024) {
      h.write(at, bytes(10 * 512, 3).subarray(at, at + 1024));
      await h.commit();
    }
    await using r = await f.open({ cacheBytes: 4 * 512 });
    const t = new Uint8Array(512);
    // Sequential reads of a file larger than the cache: embedded they stream past it; remote they go through pages.
    for (let at = 0; at < 10 * 512; at += 512) {
      assert.equal(await r.readInto(at, t), 512);
      assert.deepEqual(t, bytes(10 * 512, 3).subarray(at, at + 512));
    }
    assert.ok(r.stats().cachedBytes <= 4 * 512);
  } finally {
    await b.cleanup();
  }
});
