/**
 * Write back-pressure (storage/values.ts note 6): the bytes of large values
 * in writes admitted and not yet durable stay within `valueWriteBytes`;
 * writes over it wait first come first served, all are acknowledged in the
 * order they were made, and one value larger than the bound goes alone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { tempDir } from './helpers.js';

interface WriteStats { writeBytesInFlight: number; writeBytesLimit: number; writesWaited: number }
const writeStats = (s: EmbeddedStore): WriteStats => (s.stats()['storage'] as { values: WriteStats }).values;
const val = (n: number, b: number): Uint8Array => new Uint8Array(n).fill(b);

test('many concurrent large sets under a small bound: the bytes in flight stay within it, every set is acknowledged, in order, and reads back', async () => {
  await using tmp = await tempDir();
  const bound = 64 * 1024;
  const s = (await open(tmp.path, { inlineValueBytes: 1024, valueWriteBytes: bound, cacheBytes: 1 << 20 })) as EmbeddedStore;
  assert.equal(writeStats(s).writeBytesLimit, bound);
  let peak = 0;
  const sample = (): void => { peak = Math.max(peak, writeStats(s).writeBytesInFlight); };
  let sampling = true;
  const loop = (): void => { sample(); if (sampling) setImmediate(loop); };
  loop();
  const n = 96;
  const order: number[] = [];
  const writes: Promise<number>[] = [];
  for (let i = 0; i < n; i++) {
    // Every fourth is small (inline): it waits behind the large ones, so order holds.
    const v = i % 4 === 3 ? val(10, i) : val(24 * 1024, i);
    writes.push(s.set(`/w/${i}`, v).then((rev) => { sample(); order.push(i); return rev; }));
    sample();
  }
  const revs = await Promise.all(writes);
  sampling = false;
  assert.ok(peak <= bound, `${peak} bytes of values in flight, bound ${bound}`);
  assert.ok(peak > 0);
  for (let i = 1; i < n; i++) assert.ok(revs[i]! > revs[i - 1]!, `set ${i} committed after set ${i - 1}`);
  assert.deepEqual(order, [...Array(n).keys()], 'acknowledged in the order made');
  const st = writeStats(s);
  assert.ok(st.writesWaited > 0, 'writes waited');
  assert.equal(st.writeBytesInFlight, 0, 'nothing left in flight');
  for (let i = 0; i < n; i++) assert.deepEqual((await s.get(`/w/${i}`))!.value, i % 4 === 3 ? val(10, i) : val(24 * 1024, i));
  await s.close();
});

test('a value larger than the bound proceeds alone; multis count all their large values; a failed write releases its bytes', async () => {
  await using tmp = await tempDir();
  const bound = 32 * 1024;
  const s = (await open(tmp.path, { inlineValueBytes: 1024, valueWriteBytes: bound })) as EmbeddedStore;
  const a = s.set('/big', val(200 * 1024, 1));
  const b = s.set('/small', val(2048, 2));
  assert.equal(writeStats(s).writeBytesInFlight, 200 * 1024, 'the large one is in flight alone');
  await Promise.all([a, b]);
  await s.multi([
    { op: 'set', path: '/m/1', value: val(20 * 1024, 3) },
    { op: 'set', path: '/m/2', value: val(20 * 1024, 4) },
  ]);
  // A failing write (version mismatch) releases what it was admitted with.
  await assert.rejects(s.set('/big', val(10 * 1024, 5), { ifVersion: 99 }));
  assert.equal(writeStats(s).writeBytesInFlight, 0);
  assert.deepEqual((await s.get('/m/2'))!.value, val(20 * 1024, 4));
  assert.deepEqual((await s.get('/big'))!.value, val(200 * 1024, 1));
  await s.close();
});

test('valueWriteBytes must be a positive integer', async () => {
  await using tmp = await tempDir();
  await assert.rejects(open(tmp.path, { valueWriteBytes: 0 }), (e: unknown) => (e as { code?: string }).code === 'INVALID_ARGUMENT');
  await assert.rejects(open(tmp.path, { valueWriteBytes: 1.5 }), (e: unknown) => (e as { code?: string }).code === 'INVALID_ARGUMENT');
});

// ------------------------------------------------- with locks and sessions

const code = (e: unknown): string | undefined => (e as { code?: string } | null)?.code;
/** A store whose bound a 200 KiB value fills alone: a large write made after it waits until it is durable. */
async function bounded(dir: string): Promise<EmbeddedStore> {
  return (await open(dir, { inlineValueBytes: 1024, valueWriteBytes: 32 * 1024 })) as EmbeddedStore;
}

test('a write waiting for the bound holds its place in the lock table: another session cannot lock its path until it applies', async () => {
  await using tmp = await tempDir();
  const s = await bounded(tmp.path);
  const a = s.session();
  const b = s.session();
  const big = a.set('/big', val(200 * 1024, 1));
  const x = a.set('/x', val(2048, 2)); // no lock covers /x: admitted at once, then waits for the bound
  assert.equal(writeStats(s).writesWaited, 1, 'the set of /x waits');
  const waitingAt = s.stats().pendingRevision as number;
  // A's write was made first: B's exclusive lock on /x must not be granted before it applies.
  await assert.rejects(b.lock('/x', { wait: false }), (e: unknown) => code(e) === 'LOCKED');
  let appliedAtGrant: number | undefined;
  const lk = b.lock('/x').then((l) => { appliedAtGrant = s.stats().pendingRevision as number; return l; });
  const l = await lk;
  assert.ok(appliedAtGrant! > waitingAt, `B's lock granted at pending revision ${appliedAtGrant}, after A's set of /x (waiting at ${waitingAt})`);
  const xRev = await x;
  // B writes under its lock; A's write is not inside it.
  const bRev = await b.set('/x', val(2048, 3), { fence: l });
  assert.ok(bRev > xRev);
  await l.release();
  await big;
  assert.deepEqual((await s.get('/x'))!.value, val(2048, 3));
  assert.equal(s.lockTable().held.length, 0);
  await s.close();
});

test('a pipelined set with a fence, then the release of that lock: the set waiting for the bound still applies', async () => {
  await using tmp = await tempDir();
  const s = await bounded(tmp.path);
  const a = s.session();
  const l = await a.lock('/f');
  const big = a.set('/big', val(200 * 1024, 1));
  const set = a.set('/f', val(2048, 4), { fence: l });
  const rel = l.release();
  await Promise.all([big, set, rel]);
  assert.deepEqual((await s.get('/f'))!.value, val(2048, 4));
  // Its place was held: another session's lock on /f was granted only after (and nothing is left held).
  const b = s.session();
  await (await b.lock('/f', { wait: false })).release();
  // A fence that names no held lock still fails, whether or not the write waits.
  const big2 = a.set('/big', val(200 * 1024, 5));
  await assert.rejects(a.set('/f', val(2048, 6), { fence: l }), (e: unknown) => code(e) === 'LOCK_LOST');
  await big2;
  assert.deepEqual((await s.get('/f'))!.value, val(2048, 4));
  await s.close();
});

test('a session that ends fails its writes waiting for the bound (SESSION_EXPIRED): no ephemeral outlives it, later writes go on', async () => {
  await using tmp = await tempDir();
  const s = await bounded(tmp.path);
  const a = s.session();
  const b = s.session();
  const big = b.set('/big', val(200 * 1024, 1));
  const eph = a.create('/e', val(2048, 2), { ephemeral: true });
  const put = a.set('/a', val(2048, 3));
  const after = b.set('/after', val(2048, 4)); // queued behind A's writes
  const outcomes = Promise.allSettled([eph, put]);
  await a.close();
  const [e1, e2] = await outcomes;
  assert.equal(e1.status, 'rejected');
  assert.equal(code((e1 as PromiseRejectedResult).reason), 'SESSION_EXPIRED');
  assert.equal(e2.status, 'rejected');
  assert.equal(code((e2 as PromiseRejectedResult).reason), 'SESSION_EXPIRED');
  await Promise.all([big, after]);
  assert.equal(await s.get('/e'), undefined, 'no ephemeral node of the ended session');
  assert.equal(await s.get('/a'), undefined);
  assert.deepEqual((await s.get('/after'))!.value, val(2048, 4));
  assert.equal(writeStats(s).writeBytesInFlight, 0);
  assert.equal(s.lockTable().held.length, 0);
  await s.close();
});

test('writes that carry no large value queue behind writes waiting for the bound: delete, atomic ops, transaction commits keep their order', async () => {
  await using tmp = await tempDir();
  const s = await bounded(tmp.path);
  const a = s.session();
  const tx = a.begin();
  await tx.set('/t', 'from the transaction');
  const big = a.set('/big', val(200 * 1024, 1));
  const setA = a.set('/a', val(2048, 2)); // waits
  const delA = a.delete('/a'); // made after: must apply after
  const setN = a.set('/n', val(2048, 3));
  const absentN = a.setIfAbsent('/n', 'small');
  const setT = a.set('/t', val(2048, 4));
  const commit = tx.commit();
  const [, revA, deleted, revN, created, revT, committed] = await Promise.all([big, setA, delA, setN, absentN, setT, commit]);
  assert.equal(deleted, true, 'the delete found /a');
  assert.equal(await s.get('/a'), undefined, 'and /a is gone');
  assert.equal(created, false, 'setIfAbsent found /n');
  assert.deepEqual((await s.get('/n'))!.value, val(2048, 3));
  assert.equal((await s.get('/t'))!.text(), 'from the transaction');
  assert.ok(revA < revN && revN < revT && revT < committed.revision, 'revisions in the order the writes were made');
  await s.close();
});

test('a write through writeNow (the XenStore way) queues behind writes waiting for the bound', async () => {
  await using tmp = await tempDir();
  const s = await bounded(tmp.path);
  const big = s.set('/big', val(200 * 1024, 1));
  const setW = s.set('/w', val(2048, 2));
  const now = s.internals.writeNow('xs', [{ path: '/w', subtree: false }], {}, (ws) => ws.set('/w', new TextEncoder().encode('later')));
  assert.ok(now instanceof Promise, 'it waits');
  const [, revW, r] = await Promise.all([big, setW, now]);
  assert.ok(r.rev > revW);
  assert.equal((await s.get('/w'))!.text(), 'later');
  await s.close();
});

test('setPlain answers every error with a rejected promise, never a synchronous throw', async () => {
  await using tmp = await tempDir();
  const s = await bounded(tmp.path);
  const engine = (s as unknown as { engine: { setPlain(session: string, path: string, segs: readonly string[], value: Uint8Array, opts: object): Promise<number> } }).engine;
  await s.set('/p', 'parent');
  // A fence naming no lock: refused on the burst path.
  let p: Promise<number> | undefined;
  assert.doesNotThrow(() => { p = engine.setPlain('x', '/p/c', ['p', 'c'], new Uint8Array(1), { fence: 424242 }); });
  await assert.rejects(p!, (e: unknown) => code(e) === 'LOCK_LOST');
  // Bad wait options: refused before admission.
  assert.doesNotThrow(() => { p = engine.setPlain('x', '/p/c', ['p', 'c'], new Uint8Array(1), { timeoutMs: -1 }); });
  await assert.rejects(p!, (e: unknown) => code(e) === 'INVALID_ARGUMENT');
  await s.close();
  assert.doesNotThrow(() => { p = engine.setPlain('x', '/p/c', ['p', 'c'], new Uint8Array(1), {}); });
  await assert.rejects(p!, (e: unknown) => code(e) === 'CLOSED');
});
