/**
 * The pieces of the XenStore-on-etcd adapter that need no cluster: shared
 * read barriers (BarrierBatch), the node changes a mirror reload reports
 * (nodeChanges), and keep-alive crediting (KeepAliveCredit). The same paths
 * against a real cluster: test/integration/etcd-xenstore.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Workspace } from '../../src/core/ops.js';
import { emptyRoot } from '../../src/core/tree.js';
import { nodeChanges } from '../../src/etcd/mirror.js';
import { KeepAliveCredit } from '../../src/etcd/session.js';
import { BarrierBatch } from '../../src/etcd/xenstore.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function controlled(): { batch: BarrierBatch; pending: Array<{ resolve: () => void; reject: (e: Error) => void }> } {
  const pending: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  const batch = new BarrierBatch(() => new Promise<void>((resolve, reject) => pending.push({ resolve, reject })));
  return { batch, pending };
}

test('barriers: requests arriving together share one; one arriving during it waits for the next', async () => {
  const { batch, pending } = controlled();
  const t0 = batch.ticket();
  const a = batch.wait(t0);
  const b = batch.wait(t0);
  assert.ok(a instanceof Promise && b instanceof Promise);
  assert.equal(pending.length, 1, 'one barrier for both');
  // Arrives while the first is in flight: the first began before it, so it cannot cover it.
  const t1 = batch.ticket();
  const c = batch.wait(t1);
  const d = batch.wait(batch.ticket());
  assert.ok(c instanceof Promise && d instanceof Promise);
  assert.equal(pending.length, 1, 'the next barrier waits for the one in flight');
  let cDone = false;
  void c.then(() => { cDone = true; });
  pending[0]!.resolve();
  await a;
  await b;
  await new Promise((r) => setImmediate(r));
  assert.equal(cDone, false, 'not covered by a barrier begun before it arrived');
  assert.equal(pending.length, 2, 'the queued barrier began');
  pending[1]!.resolve();
  await c;
  await d;
  assert.equal(batch.count, 2, 'four requests, two barriers');
  // Arrived before the second began, which is complete: nothing to wait for.
  assert.equal(batch.wait(t1), undefined);
  // Arrives now: a new barrier.
  const e = batch.wait(batch.ticket());
  assert.ok(e instanceof Promise);
  assert.equal(pending.length, 3);
  pending[2]!.reject(new Error('no quorum'));
  await assert.rejects(e, /no quorum/);
  // A failed barrier covers nothing: the next request waits for a new one.
  const f = batch.wait(batch.ticket() - 1);
  assert.ok(f instanceof Promise);
  assert.equal(pending.length, 4);
  pending[3]!.resolve();
  await f;
});

test('mirror reload: nodeChanges reports every node created, written, deleted and every permission change', () => {
  const ws = new Workspace(emptyRoot(), 1);
  ws.set('/a/keep', bytes('1'));
  ws.set('/a/old/deep', bytes('2'));
  ws.set('/a/perm', bytes('3'));
  ws.set('/a/written', bytes('4'));
  const before = ws.root;
  const ws2 = new Workspace(before, 2);
  ws2.delete('/a/old', { recursive: true });
  ws2.set('/a/new', bytes('5'));
  ws2.setPerms('/a/perm', ['b3']);
  ws2.set('/a/written', bytes('6'));
  const changes = nodeChanges(before, ws2.root, 9);
  const seen = changes.map((c) => `${c.type} ${c.kind} ${c.rest}`).sort();
  assert.deepEqual(seen, [
    // The engine's setPerms moves the node's modRev (in etcd a permission change leaves the node key): a put too.
    'delete n /a/old', 'delete n /a/old/deep', 'put n /a/new', 'put n /a/perm', 'put n /a/written', 'put p /a/perm',
  ].sort());
  assert.ok(changes.every((c) => c.rev === 9));
  assert.equal(Buffer.from(changes.find((c) => c.rest === '/a/new')!.value!).toString(), '5');
  assert.deepEqual(nodeChanges(before, before, 9), [], 'the same tree: nothing');
});

test('keep-alive credit: from the send time of the oldest unanswered keep-alive, never a later one', () => {
  const k = new KeepAliveCredit(10);
  k.fired(1_000);
  k.fired(4_000); // fired again before the first was answered
  assert.equal(k.answered('10'), 11_000, 'the first answer is the first send\'s');
  assert.equal(k.answered('10'), 14_000);
  assert.equal(k.answered('10'), undefined, 'an answer with no send to date it: no credit');
  k.fired(20_000);
  assert.equal(k.answered('3'), 23_000, 'the answer\'s TTL when shorter');
  k.fired(30_000);
  assert.equal(k.answered('0'), undefined, 'an expired lease: no credit');
  k.fired(40_000);
  k.failed(); // that stream died; etcd3 opens another but still listens to the old one
  k.fired(41_000);
  // a late answer of the old stream (renewed at 40 000) would be dated 41 000: no answer is credited any more
  assert.equal(k.answered(undefined), undefined, 'after a failed stream, answers are not credited (the hedge keeps the lease alone)');
  k.fired(50_000);
  assert.equal(k.answered('10'), undefined);
});
