import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError } from '../../src/core/errors.js';
import { Keys, depthOf, overlaps, parentOf } from '../../src/etcd/keys.js';
import { parseEtcdUrl } from '../../src/etcd/backend.js';
import { connect } from '../../src/index.js';

test('etcd keys: a directory\'s children are one range, in name order, and keys parse back', () => {
  const k = new Keys('/lk');
  assert.equal(k.node('/'), '/lk/n/000/');
  assert.equal(k.node('/a/b'), '/lk/n/002/a/b');
  const kids = ['/a/b/x', '/a/b/y', '/a/b/x0'].map((p) => k.node(p));
  for (const key of kids) assert.ok(key.startsWith('/lk/n/003/a/b/'), key);
  assert.ok(!k.node('/a/b/x/deeper').startsWith('/lk/n/003/a/b/'), 'grandchildren are outside the range');
  assert.deepEqual(k.parse(k.node('/a/b')), { kind: 'n', rest: '/a/b' });
  assert.deepEqual(k.parse(k.children('/a')), { kind: 'c', rest: '/a' });
  assert.deepEqual(k.parse(k.of('q', '12.3')), { kind: 'q', rest: '12.3' });
  assert.deepEqual(k.parse(k.of('d', '/a')), { kind: 'd', rest: '/a' });
  assert.equal(k.parse('/other/n/001/a'), undefined);
  assert.equal(depthOf('/'), 0);
  assert.equal(depthOf('/a/b'), 2);
  assert.equal(parentOf('/a'), '/');
  assert.equal(parentOf('/a/b'), '/a');
  assert.ok(overlaps('/a', '/a/b') && overlaps('/a/b', '/a') && overlaps('/', '/x'));
  assert.ok(!overlaps('/a', '/ab') && !overlaps('/a/b', '/a/c'));
});

test('etcd URL: endpoints, prefix, ttl and timeout; bad URLs are INVALID_ARGUMENT', () => {
  assert.deepEqual(parseEtcdUrl('etcd://127.0.0.1:2379,127.0.0.1:22379/?prefix=/latchkey&ttl=7'),
    { endpoints: ['127.0.0.1:2379', '127.0.0.1:22379'], prefix: '/latchkey', ttlSeconds: 7 });
  assert.deepEqual(parseEtcdUrl('etcd://h:1'), { endpoints: ['h:1'] });
  assert.deepEqual(parseEtcdUrl('etcd://h:1/?timeout=2500'), { endpoints: ['h:1'], callTimeoutMs: 2500 });
  const bad = (e: unknown): boolean => e instanceof LatchkeyError && e.code === 'INVALID_ARGUMENT';
  for (const u of ['etcd://', 'etcd://host', 'http://h:1', 'etcd://h:1/?prefix=rel', 'etcd://h:1/?ttl=1', 'etcd://h:1/?ttl=x', 'etcd://h:1/?timeout=50', 'etcd://h:1/?timeout=1.5']) {
    assert.throws(() => parseEtcdUrl(u), bad, u);
  }
});

test('etcd connect: a cluster nobody answers for is CONNECTION_LOST, not a hang', async () => {
  // A port just closed: nothing listens on it.
  const net = await import('node:net');
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  await assert.rejects(connect(`etcd://127.0.0.1:${port}/?prefix=/t`), (e: unknown) => e instanceof LatchkeyError && e.code === 'CONNECTION_LOST');
  await assert.rejects(connect('etcd://nohost'), (e: unknown) => e instanceof LatchkeyError && e.code === 'INVALID_ARGUMENT');
});
