import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LatchkeyError, open } from '../../src/index.js';
import { EmbeddedStore } from '../../src/engine/store.js';
import { TxState } from '../../src/core/transaction.js';
import { bytesOf } from '../../src/core/value.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

test('writeNow: in memory the result comes in the same call, published; errors are thrown', async () => {
  const s = await open();
  assert.ok(s instanceof EmbeddedStore);
  const e = s.internals;
  const r = e.writeNow('', [], {}, (ws) => {
    ws.write({ op: 'set', path: '/a', value: enc('1') });
    return 'done';
  });
  assert.ok(!(r instanceof Promise));
  assert.equal(r.value, 'done');
  assert.equal(r.rev, e.visibleRev);
  assert.equal(new TextDecoder().decode(bytesOf(e.visibleRoot.children.get('a')!.value)), '1');
  // nothing written: the head's revision, at once
  const none = e.writeNow('', [], {}, () => 7);
  assert.ok(!(none instanceof Promise));
  assert.deepEqual(none, { value: 7, rev: r.rev });
  // a failing write throws its error in the same call, and commits nothing
  assert.throws(() => e.writeNow('', [], {}, (ws) => ws.write({ op: 'check', path: '/a', exists: false })), (err: unknown) => LatchkeyError.is(err, 'CONFLICT'));
  assert.equal(e.visibleRev, r.rev);
  // write() keeps its promise form for the same failure
  await assert.rejects(e.write('', [], {}, (ws) => ws.write({ op: 'check', path: '/a', exists: false })), (err: unknown) => LatchkeyError.is(err, 'CONFLICT'));
  await s.close();
});

test('commitTxNow: in memory commits in the same call; a conflict is thrown; on disk it is a promise', async () => {
  const s = await open();
  assert.ok(s instanceof EmbeddedStore);
  const e = s.internals;
  const tx = new TxState(e.visibleRoot, e.visibleRev);
  tx.write({ op: 'set', path: '/t', value: enc('x') });
  const r = e.commitTxNow('', tx, {});
  assert.ok(!(r instanceof Promise));
  assert.equal(r.revision, e.visibleRev);
  assert.ok(e.visibleRoot.children.get('t') !== undefined);
  // a transaction that read /t, then /t changes: CONFLICT, thrown
  const t2 = new TxState(e.visibleRoot, e.visibleRev);
  t2.get('/t');
  t2.write({ op: 'set', path: '/u', value: enc('y') });
  await s.set('/t', 'changed');
  assert.throws(() => e.commitTxNow('', t2, {}), (err: unknown) => LatchkeyError.is(err, 'CONFLICT'));
  // and commitTx rejects for the same
  const t3 = new TxState(e.visibleRoot, e.visibleRev);
  t3.get('/t');
  t3.write({ op: 'set', path: '/u', value: enc('y') });
  await s.set('/t', 'changed again');
  await assert.rejects(e.commitTx('', t3, {}), (err: unknown) => LatchkeyError.is(err, 'CONFLICT'));
  await s.close();

  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-writenow-'));
  try {
    const d = await open(path.join(dir, 'data'));
    assert.ok(d instanceof EmbeddedStore);
    const de = d.internals;
    const w = de.writeNow('', [], {}, (ws) => ws.write({ op: 'set', path: '/a', value: enc('1') }));
    assert.ok(w instanceof Promise, 'a durable commit waits for its sync');
    const before = de.visibleRev;
    const done = await w;
    assert.equal(done.rev, before + 1);
    assert.equal(de.visibleRev, done.rev);
    const t = new TxState(de.visibleRoot, de.visibleRev);
    t.write({ op: 'set', path: '/b', value: enc('2') });
    const c = de.commitTxNow('', t, {});
    assert.ok(c instanceof Promise);
    assert.equal((await c).revision, de.visibleRev);
    await d.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
