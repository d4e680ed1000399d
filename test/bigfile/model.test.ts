/**
 * Model-based property test: random reads, writes, truncations, commits,
 * aborts, refreshes and reopenings of a BigFile against a plain Uint8Array
 * (the handle's view) and a second one (what is committed).
 */
import { after, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { open } from '../../src/index.js';
import type { BigFileHandle } from '../../src/api.js';

const BS = 512;
const MAX = 12 * BS;

type Op =
  | { op: 'write'; offset: number; length: number; seed: number }
  | { op: 'read'; offset: number; length: number }
  | { op: 'readOn'; length: number }
  | { op: 'truncate'; size: number }
  | { op: 'commit' }
  | { op: 'abort' }
  | { op: 'refresh' }
  | { op: 'reopen' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('write' as const), offset: fc.nat(MAX), length: fc.integer({ min: 1, max: 3 * BS }), seed: fc.nat(255) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('read' as const), offset: fc.nat(MAX + BS), length: fc.nat(4 * BS) }) },
  // Continues the previous read (read-ahead; past the cache, the streaming path that reads straight into the target), through readInto.
  { weight: 3, arbitrary: fc.record({ op: fc.constant('readOn' as const), length: fc.integer({ min: 1, max: 3 * BS }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), size: fc.nat(MAX) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'commit' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'abort' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'refresh' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

/** A growable byte array: the model. */
class Model {
  bytes = new Uint8Array(0);
  write(offset: number, data: Uint8Array): void {
    if (offset + data.length > this.bytes.length) this.resize(offset + data.length);
    this.bytes.set(data, offset);
  }
  resize(n: number): void {
    const b = new Uint8Array(n);
    b.set(this.bytes.subarray(0, Math.min(n, this.bytes.length)));
    this.bytes = b;
  }
  clone(): Model {
    const m = new Model();
    m.bytes = this.bytes.slice();
    return m;
  }
}

for (const where of ['in memory', 'on disk (blocks in value files)'] as const) test(`BigFile against a Uint8Array model, ${where}: reads, writes, truncate, commit, abort, refresh, reopen`, async () => {
  let run = 0;
  const dir = where === 'in memory' ? undefined : mkdtempSync(path.join(os.tmpdir(), 'lk-bf-model-'));
  after(() => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); });
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
    // On disk every block is a value file entry (inline threshold below a block), read with Transaction.readInto; a small store value cache, so most loads read the file.
    await using store = dir === undefined ? await open() : await open(path.join(dir, String(run + 1)), { durability: 'none', inlineValueBytes: 64, cacheBytes: 2 * BS });
    const f = await store.bigFile(`/model/${++run}`, { blockSize: BS });
    // A small cache, so pages are evicted and loaded again.
    const opts = { cacheBytes: 8 * BS, maxDirtyBytes: 4 * BS };
    let h: BigFileHandle = await f.open(opts);
    let local = new Model();
    let committed = new Model();
    let readEnd = 0;
    try {
      for (const o of ops) {
        switch (o.op) {
          case 'write': {
            const data = Uint8Array.from({ length: o.length }, (_, i) => (o.seed + i * 13) & 0xff || 1);
            try {
              h.write(o.offset, data);
              local.write(o.offset, data);
            } catch (e) {
              assert.equal((e as { code?: string }).code, 'TOO_LARGE'); // past maxDirtyBytes: nothing written
            }
            break;
          }
          case 'read': {
            const got = await h.read(o.offset, o.length);
            const want = local.bytes.subarray(Math.min(o.offset, local.bytes.length), Math.min(o.offset + o.length, local.bytes.length));
            assert.deepEqual(got, want);
            readEnd = o.offset + got.length;
            break;
          }
          case 'readOn': {
            const target = new Uint8Array(o.length).fill(0xee);
            const n = await h.readInto(readEnd, target);
            const want = local.bytes.subarray(Math.min(readEnd, local.bytes.length), Math.min(readEnd + o.length, local.bytes.length));
            assert.equal(n, want.length);
            assert.deepEqual(target.subarray(0, n), want);
            assert.ok(target.subarray(n).every((x) => x === 0xee), 'readInto wrote past what it answers');
            readEnd += n;
            if (n === 0) readEnd = 0;
            break;
          }
          case 'truncate':
            await h.truncate(o.size);
            local.resize(o.size);
            break;
          case 'commit':
            await h.commit();
            committed = local.clone();
            break;
          case 'abort':
            await h.abort();
            local = committed.clone();
            break;
          case 'refresh':
            try {
              await h.refresh();
            } catch (e) {
              assert.equal((e as { code?: string }).code, 'INVALID_ARGUMENT'); // uncommitted writes
            }
            break;
          case 'reopen': {
            // A fresh handle sees exactly what is committed.
            await using g = await f.open(opts);
            assert.equal(g.size, committed.bytes.length);
            assert.deepEqual(await g.read(0, g.size), committed.bytes);
            break;
          }
        }
        assert.equal(h.size, local.bytes.length);
      }
      await h.commit();
      await h.close();
      h = await f.open(opts);
      assert.deepEqual(await h.read(0, h.size), local.bytes);
      // No block past the end is stored, and none is all zeros.
      for (const name of await store.list(`${f.path}/b`)) {
        const v = (await store.get(`${f.path}/b/${name}`))!.value;
        assert.ok(Number(name) * BS < local.bytes.length, `block ${name} is past the end`);
        assert.ok(v.some((x) => x !== 0), `block ${name} is all zeros and stored`);
      }
    } finally {
      await h.close();
    }
  }), { numRuns: 150 });
});
