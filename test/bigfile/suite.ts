/** The big file promises, run against one backend kind (embedded, unix, tcp): one file per kind runs it. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { BugError, LatchkeyError, type Store } from '../../src/index.js';
import type { BigFileHandleImpl } from '../../src/bigfile/handle.js';
import { type BackendKind, type BigBackend, backend } from './backends.js';

const BS = 512;

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 31 + i * 7 + 1) & 0xff;
  return b;
}

async function rejects(p: Promise<unknown> | (() => unknown), code: string): Promise<LatchkeyError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    assert.ok(LatchkeyError.is(e), `expected LatchkeyError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

export function bigFileSuite(kind: BackendKind): void {
  let b: BigBackend;
  let store: Store;
  let n = 0;
  const fresh = (): string => `/bf/${kind}/f${++n}`;
  before(async () => {
    b = await backend(kind);
    store = b.store;
  });
  after(async () => {
    await b.cleanup();
  });

  test(`${kind}: write, commit, read back; never-written bytes are zeros and take no space`, async () => {
    const p = fresh();
    const f = await store.bigFile(p, { blockSize: BS });
    await using h = await f.open({ cacheBytes: 16 * BS });
    assert.equal(h.size, 0);
    h.write(10 * BS + 3, bytes(100, 1));
    assert.equal(h.size, 10 * BS + 103);
    // Uncommitted writes are visible to the handle itself.
    assert.deepEqual(await h.read(10 * BS + 3, 100), bytes(100, 1));
    await h.commit();
    assert.deepEqual([...await store.list(`${p}/b`)], ['10']);
    await using h2 = await f.open();
    assert.equal(h2.size, 10 * BS + 103);
    const all = await h2.read(0, h2.size);
    assert.deepEqual(all.subarray(0, 10 * BS + 3), new Uint8Array(10 * BS + 3));
    assert.deepEqual(all.subarray(10 * BS + 3), bytes(100, 1));
    // Past the end: clipped.
    assert.equal((await h2.read(h2.size, 10)).length, 0);
    assert.equal((await h2.read(h2.size - 5, 10)).length, 5);
    // A block rewritten as zeros is deleted, not stored.
    h2.write(10 * BS, new Uint8Array(103));
    await h2.commit();
    assert.deepEqual([...await store.list(`${p}/b`)], []);
    assert.equal((await f.info()).size, 10 * BS + 103);
  });

  test(`${kind}: partial writes to unloaded blocks keep the stored bytes around them`, async () => {
    const f = await store.bigFile(fresh(), { blockSize: BS });
    await using a = await f.open();
    a.write(0, bytes(3 * BS, 2));
    await a.commit();
    await using h = await f.open();
    h.write(BS - 10, bytes(20, 3)); // across blocks 0 and 1, neither loaded
    const want = bytes(3 * BS, 2);
    want.set(bytes(20, 3), BS - 10);
    assert.deepEqual(await h.read(0, 3 * BS), want);
    await h.commit();
    await a.refresh();
    assert.deepEqual(await a.read(0, 3 * BS), want);
  });

  test(`${kind}: a handle reads one snapshot until refresh; another client's commit invalidates exactly its blocks`, async () => {
    const p = fresh();
    const f = await store.bigFile(p, { blockSize: BS });
    const other = await b.other();
    const g = await other.bigFile(p);
    await using w = await g.open();
    w.write(0, bytes(8 * BS, 4));
    await w.commit();
    await using r = await f.open({ cacheBytes: 16 * BS });
    const before = await r.read(0, 8 * BS);
    assert.equal(r.stats().loads, 8);
    w.write(2 * BS + 1, bytes(5, 5)); // block 2
    w.write(6 * BS, bytes(BS, 6)); // block 6
    await w.commit();
    // Same snapshot: the old bytes, from the cache.
    assert.deepEqual(await r.read(0, 8 * BS), before);
    assert.equal(r.stats().loads, 8);
    await r.refresh();
    assert.equal(r.stats().invalidations, 2);
    assert.equal(r.stats().fullDrops, 0);
    const after = await r.read(0, 8 * BS);
    assert.equal(r.stats().loads, 10, 'only the two stale blocks were loaded again');
    const want = bytes(8 * BS, 4);
    want.set(bytes(5, 5), 2 * BS + 1);
    want.set(bytes(BS, 6), 6 * BS);
    assert.deepEqual(after, want);
    // The writer's own commit does not invalidate its own pages.
    assert.equal(w.stats().invalidations, 0);
  });

  test(`${kind}: writing a block another client changed is CONFLICT naming it, and nothing is stored; reads never conflict`, async () => {
    const p = fresh();
    const f = await store.bigFile(p, { blockSize: BS });
    const other = await b.other();
    await using a = await f.open();
    a.write(0, bytes(4 * BS, 7));
    await a.commit();
    await using x = await (await other.bigFile(p)).open();
    await a.read(0, 4 * BS); // a read every block
    x.write(BS, bytes(10, 8)); // block 1
    x.write(3 * BS, bytes(10, 9)); // block 3
    await x.commit();
    // a wrote block 3 (blind) and block 2: CONFLICT names block 3 only.
    a.write(3 * BS + 100, bytes(10, 10));
    a.write(2 * BS, bytes(10, 11));
    const e = await rejects(a.commit(), 'CONFLICT');
    assert.deepEqual(e.info?.['blocks'], [3]);
    assert.match(e.message, /block 3/);
    // Nothing of a's was stored; a is reset to the head.
    await using c = await f.open();
    const want = bytes(4 * BS, 7);
    want.set(bytes(10, 8), BS);
    want.set(bytes(10, 9), 3 * BS);
    assert.deepEqual(await c.read(0, 4 * BS), want);
    assert.deepEqual(await a.read(0, 4 * BS), want);
    // a read block 1 before x changed it, and writes only block 0 now: no conflict (reads are not checked).
    await x.refresh();
    x.write(BS, bytes(10, 12));
    await x.commit();
    a.write(0, bytes(5, 13));
    await a.commit();
  });

  test(`${kind}: truncation frees blocks; the cut bytes read as zeros when the file grows again`, async () => {
    const p = fresh();
    const f = await store.bigFile(p, { blockSize: BS });
    await using h = await f.open();
    h.write(0, bytes(6 * BS, 14));
    await h.commit();
    assert.equal((await store.list(`${p}/b`)).length, 6);
    await using h2 = await f.open();
    await h2.truncate(BS + 100);
    assert.equal(h2.size, BS + 100);
    h2.write(3 * BS, bytes(4, 15)); // grows again past the cut
    await h2.commit();
    assert.deepEqual([...(await store.list(`${p}/b`))].sort(), ['0', '1', '3']);
    assert.deepEqual((await store.get(`${p}/b/1`))!.value.subarray(100), new Uint8Array(BS - 100));
    await h.refresh();
    const want = new Uint8Array(3 * BS + 4);
    want.set(bytes(6 * BS, 14).subarray(0, BS + 100));
    want.set(bytes(4, 15), 3 * BS);
    assert.deepEqual(await h.read(0, h.size), want);
    await h.truncate(0);
    await h.commit();
    assert.deepEqual([...await store.list(`${p}/b`)], []);
    assert.equal((await f.info()).size, 0);
  });

  test(`${kind}: a change feed entry it cannot read drops every clean page (never none); a deleted file is NOT_FOUND at the boundary`, async () => {
    const p = fresh();
    const f = await store.bigFile(p, { blockSize: BS });
    await using h = await f.open();
    h.write(0, bytes(4 * BS, 30));
    await h.commit();
    await using r = await f.open();
    await r.read(0, 4 * BS);
    const other = await b.other();
    // Another writer changes block 2 around the API and says so in a form the feed does not know.
    await other.multi([{ op: 'set', path: `${p}/b/2`, value: bytes(BS, 31) }, { op: 'set', path: `${p}/log`, value: 'garbage' }]);
    await r.refresh();
    assert.equal(r.stats().fullDrops, 1);
    const want = bytes(4 * BS, 30);
    want.set(bytes(BS, 31), 2 * BS);
    assert.deepEqual(await r.read(0, 4 * BS), want);
    // The file is deleted: the snapshot still reads; the next boundary says NOT_FOUND, and so do reads after it.
    await other.delete(p, { recursive: true });
    assert.deepEqual(await r.read(0, 4 * BS), want);
    await rejects(r.refresh(), 'NOT_FOUND');
    await rejects(r.read(0, 1), 'NOT_FOUND');
    await rejects(() => r.write(0, bytes(1, 1)), 'NOT_FOUND');
  });

  test(`${kind}: abort discards writes; refresh refuses uncommitted writes`, async () => {
    const f = await store.bigFile(fresh(), { blockSize: BS });
    await using h = await f.open();
    h.write(0, bytes(100, 16));
    await rejects(h.refresh(), 'INVALID_ARGUMENT');
    await h.abort();
    assert.equal(h.size, 0);
    assert.equal(h.stats().dirtyBytes, 0);
    assert.equal((await h.read(0, 100)).length, 0);
  });

  test(`${kind}: seed 000 rules: one writeout at a time, no write, truncate, abort or refresh during it`, async () => {
    const f = await store.bigFile(fresh(), { blockSize: BS });
    await using h = await f.open();
    h.write(0, bytes(4 * BS, 17));
    const c = h.commit();
    await rejects(() => h.write(0, bytes(1, 1)), 'BUSY');
    await rejects(h.truncate(0), 'BUSY');
    await rejects(h.abort(), 'BUSY');
    await rejects(h.refresh(), 'BUSY');
    await rejects(h.commit(), 'BUSY');
    await c;
    h.write(0, bytes(1, 1)); // allowed again
    await h.abort();
  });

  test(`${kind}: storage is never called with the handle lock held (asserted in code)`, async () => {
    const p = fresh();
    let handle: BigFileHandleImpl | undefined;
    let calls = 0;
    let underLock = 0;
    const watchTx = <T extends object>(t: T): T => new Proxy(t, {
      get(target, prop, recv) {
        const v = Reflect.get(target, prop, recv) as unknown;
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          calls++;
          if (handle?.lockIsHeld === true) underLock++;
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const spy = new Proxy(store, {
      get(target, prop, recv) {
        const v = Reflect.get(target, prop, recv) as unknown;
        if (typeof v !== 'function' || prop === 'bigFile' || prop === 'bigArray') return v;
        return (...args: unknown[]) => {
          calls++;
          if (handle?.lockIsHeld === true) underLock++;
          const r = (v as (...a: unknown[]) => unknown).apply(target, args);
          return prop === 'begin' ? watchTx(r as object) : r;
        };
      },
    });
    const { openBigFile } = await import('../../src/bigfile/index.js');
    const f = await openBigFile(spy, p, { blockSize: BS });
    handle = (await f.open({ cacheBytes: 8 * BS })) as BigFileHandleImpl;
    assert.throws(() => handle!.write(0, bytes(20 * BS, 18)), /maxDirtyBytes/); // 20 blocks > maxDirty (4)
    handle.write(0, bytes(4 * BS, 18));
    await handle.commit();
    await handle.read(0, 4 * BS);
    await handle.truncate(BS);
    await handle.commit();
    await handle.close();
    assert.ok(calls > 10);
    assert.equal(underLock, 0);
    // And the assertion itself fires.
    const h = (await f.open()) as BigFileHandleImpl;
    assert.throws(() => h.probeStorageUnderLock(), (e: unknown) => e instanceof BugError && /handle lock held/.test(e.message));
    await h.close();
  });

  test(`${kind}: the cache stays within cacheBytes, also for a read larger than it`, async () => {
    const f = await store.bigFile(fresh(), { blockSize: BS });
    await using h = await f.open({ cacheBytes: 32 * BS });
    for (let i = 0; i < 4; i++) {
      h.write(i * 16 * BS, bytes(16 * BS, 19 + i));
      await h.commit();
      assert.ok(h.stats().cachedBytes <= 32 * BS);
    }
    await using r = await f.open({ cacheBytes: 4 * BS });
    const all = await r.read(0, 64 * BS);
    assert.deepEqual(all.subarray(48 * BS), bytes(16 * BS, 22));
    assert.ok(r.stats().cachedBytes <= 4 * BS, `${r.stats().cachedBytes}`);
  });

  test(`${kind}: bad input is a typed error and changes nothing`, async () => {
    await store.set('/bf-plain', 'hello');
    await rejects(store.bigFile('/bf-plain'), 'INVALID_ARGUMENT');
    assert.equal((await store.get('/bf-plain'))!.text(), 'hello');
    await rejects(store.bigFile('/bf-x', { blockSize: 3 }), 'INVALID_ARGUMENT');
    await rejects(store.bigFile('/bf-missing', { create: false }), 'NOT_FOUND');
    assert.equal(await store.exists('/bf-missing'), false);
    const p = fresh();
    const f = await store.bigFile(p, { blockSize: BS });
    await rejects(store.bigFile(p, { blockSize: 1024 }), 'INVALID_ARGUMENT');
    await rejects(store.bigArray(p, { dtype: 'float64', shape: [0] }), 'INVALID_ARGUMENT');
    await rejects(f.open({ cacheBytes: BS }), 'INVALID_ARGUMENT');
    await using h = await f.open({ cacheBytes: 8 * BS });
    await rejects(h.read(-1, 3), 'INVALID_ARGUMENT');
    await rejects(() => h.write(1.5, new Uint8Array(1)), 'INVALID_ARGUMENT');
    await rejects(() => h.write(0, 'abc' as unknown as Uint8Array), 'INVALID_ARGUMENT');
    h.write(0, bytes(2 * BS, 1));
    await rejects(() => h.write(2 * BS, bytes(3 * BS, 1)), 'TOO_LARGE'); // past maxDirtyBytes (4 blocks)
    assert.equal(h.size, 2 * BS, 'the refused write changed nothing');
    await h.close();
    await rejects(h.read(0, 1), 'CLOSED');
  });

  test(`${kind}: big arrays of every dtype: append, get, set, chunks, shape and dtype stored`, async () => {
    const cases = [
      ['int8', Int8Array.from([-1, 2, -3, 4, 5, -6])], ['uint8', Uint8Array.from([1, 2, 250, 4, 5, 6])],
      ['int16', Int16Array.from([-300, 2, 3, 4, 5, 6])], ['uint16', Uint16Array.from([65000, 2, 3, 4, 5, 6])],
      ['int32', Int32Array.from([-70000, 2, 3, 4, 5, 6])], ['uint32', Uint32Array.from([4e9, 2, 3, 4, 5, 6])],
      ['int64', BigInt64Array.from([-(2n ** 62n), 2n, 3n, 4n, 5n, 6n])], ['uint64', BigUint64Array.from([2n ** 63n, 2n, 3n, 4n, 5n, 6n])],
      ['float32', Float32Array.from([1.5, 2, 3, 4, 5, -6.25])], ['float64', Float64Array.from([Math.PI, 2, 3, 4, 5, 1e300])],
    ] as const;
    for (const [dtype, sample] of cases) {
      const p = fresh();
      await using a = await store.bigArray(p, { dtype, shape: [0, 3], blockSize: BS });
      const rows = 200; // several blocks, rows straddling block edges for every item size
      const Ctor = sample.constructor as unknown as { new(n: number): typeof sample };
      const data = new Ctor(rows * 3);
      for (let i = 0; i < rows * 3; i++) (data as unknown as Array<number | bigint>)[i] = sample[i % 6]!;
      await a.append(data as never);
      assert.deepEqual(a.shape, [rows, 3]);
      await a.commit();
      const info = await (await store.bigFile(p).catch(() => undefined))?.info();
      assert.equal(info, undefined, 'bigFile() refuses an array');
      const meta = JSON.parse((await store.get(p))!.text()) as { dtype: string; shape: number[] };
      assert.equal(meta.dtype, dtype);
      assert.deepEqual(meta.shape, [rows, 3]);
      const got = await a.get(50, 60);
      assert.equal(got.constructor, sample.constructor);
      assert.deepEqual(got, data.subarray(150, 180));
      a.set(55, sample.subarray(0, 3) as never);
      await a.commit();
      await using b2 = await store.bigArray(p);
      assert.equal(b2.dtype, dtype);
      assert.deepEqual((await b2.get(55, 56)), sample.subarray(0, 3));
      let seen = 0;
      for await (const chunk of b2.chunks({ rows: 64 })) {
        assert.ok(chunk.length <= 64 * 3);
        seen += chunk.length / 3;
      }
      assert.equal(seen, rows);
    }
    const p = fresh();
    await using a = await store.bigArray(p, { dtype: 'float64', shape: [0, 3], blockSize: BS });
    await rejects(a.append(new Float32Array(3) as never), 'INVALID_ARGUMENT');
    await rejects(a.append(new Float64Array(4)), 'INVALID_ARGUMENT');
    await rejects(() => a.set(0, new Float64Array(3)), 'INVALID_ARGUMENT');
    await rejects(a.get(0, 1), 'INVALID_ARGUMENT');
    await rejects(store.bigArray(p, { dtype: 'int32' }), 'INVALID_ARGUMENT');
    await rejects(store.bigArray(p, { shape: [0, 4] }), 'INVALID_ARGUMENT');
    await rejects(store.bigArray(fresh(), { dtype: 'complex' as never, shape: [0] }), 'INVALID_ARGUMENT');
    await rejects(store.bigArray(fresh()), 'INVALID_ARGUMENT');
  });
}
