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
