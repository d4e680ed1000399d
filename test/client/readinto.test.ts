/**
 * Transaction.readInto over a socket: a `get` whose reply's value the link
 * reads straight into the caller's buffer (frame.ts, FrameSink). Values of
 * every size exact, bytes past them untouched, a short target TOO_LARGE
 * (the connection goes on), pipelined reads, and a server killed with
 * SIGKILL in the middle of a read: the read fails, nothing stored is lost.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LatchkeyError } from '../../src/core/errors.js';
import { connect } from '../../src/client/store.js';
import { SINK_MIN } from '../../src/protocol/frame.js';
import { backend } from '../bigfile/backends.js';

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 97 + i * 13 + (i >> 9)) & 0xff;
  return b;
}

const SIZES = [0, 1, 100, 4095, SINK_MIN - 1, SINK_MIN, SINK_MIN + 1, 200_000, 1024 * 1024 - 1, 1024 * 1024];

for (const kind of ['unix', 'tcp'] as const) {
  test(`readInto over ${kind}: every size exact (sunk or copied), stat as get's, bytes past untouched, absent undefined, a short target TOO_LARGE and the link goes on`, async () => {
    const b = await backend(kind);
    try {
      const s = b.store;
      for (const [i, n] of SIZES.entries()) await s.set(`/v/${i}`, bytes(n, i + 1));
      const tx = s.begin();
      try {
        for (const [i, n] of SIZES.entries()) {
          const target = new Uint8Array(n + 33).fill(0xee);
          const r = await tx.readInto!(`/v/${i}`, target);
          assert.equal(r?.length, n, `size ${n}`);
          assert.equal(r?.stat.modRev, (await s.get(`/v/${i}`))!.stat.modRev);
          assert.deepEqual(target.subarray(0, n), bytes(n, i + 1), `size ${n}: bytes`);
          assert.ok(target.subarray(n).every((x) => x === 0xee), `size ${n}: bytes past the value untouched`);
        }
        assert.equal(await tx.readInto!('/v/absent', new Uint8Array(10)), undefined);
        // Too small by one byte: TOO_LARGE, as embedded (the large value is then read whole and refused), for a small and a large value.
        for (const i of [2, SIZES.length - 1]) {
          await assert.rejects(tx.readInto!(`/v/${i}`, new Uint8Array(SIZES[i]! - 1)), (e: unknown) => LatchkeyError.is(e, 'TOO_LARGE'));
        }
        await assert.rejects(tx.readInto!('/v/0', 'x' as unknown as Uint8Array), (e: unknown) => LatchkeyError.is(e, 'INVALID_ARGUMENT'));
        await assert.rejects(tx.readInto!('no-slash', new Uint8Array(1)), (e: unknown) => LatchkeyError.is(e, 'INVALID_PATH'));
        // Pipelined: all at once, each into its own buffer (the replies interleave with nothing, but arrive back to back in chunks).
        const targets = SIZES.map((n) => new Uint8Array(n));
        const rs = await Promise.all(SIZES.map((_, i) => tx.readInto!(`/v/${i}`, targets[i]!)));
        rs.forEach((r, i) => {
          assert.equal(r?.length, SIZES[i]);
          assert.deepEqual(targets[i], bytes(SIZES[i]!, i + 1));
        });
      } finally {
        await tx.abort();
      }
      // The connection went on after the refusals: a plain get still answers the right bytes.
      assert.deepEqual((await s.get(`/v/${SIZES.length - 1}`))!.value, bytes(1024 * 1024, SIZES.length));
      // A value read by get is a plain Uint8Array of its own (not a Buffer over the reply).
      const v = (await s.get('/v/7'))!.value;
      assert.equal(Object.getPrototypeOf(v), Uint8Array.prototype);
    } finally {
      await b.cleanup();
    }
  });
}

test('a BigFile over a socket reads back what was written through remote readInto loads, across block and read sizes', async () => {
  const b = await backend('unix');
  try {
    const bs = 256 * 1024;
    const size = 9 * bs + 1234;
    const data = bytes(size, 5);
    const f = await b.store.bigFile('/big', { blockSize: bs });
    {
      await using h = await f.open({ cacheBytes: 4 * bs });
      for (let at = 0; at < size; at += 2 * bs) {
        h.write(at, data.subarray(at, Math.min(size, at + 2 * bs)));
        await h.commit();
      }
    }
    for (const step of [bs, 100_000, 3 * bs + 7]) {
      await using r = await (await (await b.other()).bigFile('/big')).open({ cacheBytes: 3 * bs });
      const t = new Uint8Array(step);
      for (let at = 0; at < size; at += step) {
        const n = await r.readInto(at, t);
        assert.equal(n, Math.min(step, size - at));
        assert.deepEqual(t.subarray(0, n), data.subarray(at, at + n), `step ${step} at ${at}`);
      }
    }
  } finally {
    await b.cleanup();
  }
});

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

async function startServer(data: string, socket: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [cli, 'serve', '--data', data, '--socket', socket], { stdio: ['ignore', 'ignore', 'inherit'] });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (existsSync(socket)) {
      try {
        const c = await connect(`unix://${socket}`, { reconnect: false });
        await c.close();
        return child;
      } catch {
        // not answering yet
      }
    }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('the server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a server killed (SIGKILL) in the middle of remote reads: the reads fail CONNECTION_LOST, and after a restart every block reads back exact', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-readinto-kill-'));
  const data = path.join(dir, 'data');
  const socket = path.join(dir, 's.sock');
  let child = await startServer(data, socket);
  try {
    const bs = 1024 * 1024;
    const blocks = 24;
    const content = bytes(blocks * bs, 9);
    {
      const s = await connect(`unix://${socket}`, { reconnect: false });
      const f = await s.bigFile('/k', { blockSize: bs });
      const h = await f.open({ cacheBytes: 16 * bs, maxDirtyBytes: 8 * bs });
      for (let i = 0; i < blocks; i += 8) {
        h.write(i * bs, content.subarray(i * bs, (i + 8) * bs));
        await h.commit();
      }
      await h.close();
      await s.close();
    }
    // Many reads in flight (each 1 MiB reply is several chunks), the server killed once the first has come back.
    const s = await connect(`unix://${socket}`, { reconnect: false });
    const tx = s.begin();
    const targets = Array.from({ length: blocks }, () => new Uint8Array(bs));
    let first = true;
    const reads = targets.map((t, i) => tx.readInto!(`/k/b/${i}`, t).then((r) => {
      if (first) {
        first = false;
        child.kill('SIGKILL');
      }
      return r;
    }));
    const settled = await Promise.allSettled(reads);
    let lost = 0;
    settled.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        // One that came back before the kill is whole and exact.
        assert.equal(r.value?.length, bs);
        assert.deepEqual(targets[i], content.subarray(i * bs, (i + 1) * bs));
      } else {
        lost++;
        assert.ok(LatchkeyError.is(r.reason, 'CONNECTION_LOST') || LatchkeyError.is(r.reason, 'ABORTED'), String(r.reason));
      }
    });
    assert.ok(lost > 0, 'some reads were cut by the kill');
    await s.close().catch(() => {});
    await new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve())));
    // Restarted on the same data: every block is there, exact.
    child = await startServer(data, socket);
    const s2 = await connect(`unix://${socket}`, { reconnect: false });
    try {
      await using h = await (await s2.bigFile('/k')).open({ cacheBytes: 4 * bs });
      assert.equal(h.size, blocks * bs);
      const t = new Uint8Array(bs);
      for (let i = 0; i < blocks; i++) {
        assert.equal(await h.readInto(i * bs, t), bs);
        assert.deepEqual(t, content.subarray(i * bs, (i + 1) * bs), `block ${i}`);
      }
    } finally {
      await s2.close();
    }
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
