import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WatchRegistry } from '../../src/core/watch-registry.js';

const put = (path: string): { op: 'put'; path: string; value: Uint8Array } => ({ op: 'put', path, value: new Uint8Array([1]) });

test('watch registry: recalling a log tail larger than the history window keeps its newest commits (it threw "out of order" once the window trimmed)', () => {
  const w = new WatchRegistry(5, { maxEvents: 2 });
  w.recall([1, 2, 3, 4, 5].map((rev) => ({ rev, mutations: [put(`/k${rev}`)], before: undefined })));
  assert.equal(w.oldestRevision, 4);
});

test('watch registry: a recalled tail with a gap is still refused', () => {
  const w = new WatchRegistry(5, { maxEvents: 2 });
  assert.throws(() => w.recall([1, 2, 4, 5].map((rev) => ({ rev, mutations: [put(`/k${rev}`)], before: undefined }))), /recalled commit 4 out of order/);
});
