/**
 * The mirror's reload against a stand-in etcd client (only `kv.range`): a
 * reload answered after the mirror got past its revision must not put the
 * tree back. The same mirror against a real cluster: test/integration/
 * etcd-xenstore.ts (compaction reload) and etcd-reads.ts (reads after writes
 * through another front-end).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Etcd3, IKeyValue } from 'etcd3';
import { lookup } from '../../src/core/tree.js';
import { Keys } from '../../src/etcd/keys.js';
import { Mirror } from '../../src/etcd/mirror.js';

const keys = new Keys('/t');

function kv(path: string, value: string, rev: number): IKeyValue {
  return { key: Buffer.from(keys.node(path)), value: Buffer.from(value), create_revision: String(rev), mod_revision: String(rev), version: '1', lease: '0' } as IKeyValue;
}

/** A client whose ranges answer when the test says, with what it says. */
function standIn(): { client: Etcd3; answer(i: number, rev: number, kvs: IKeyValue[]): void } {
  const pending: Array<(r: unknown) => void> = [];
  const client = { kv: { range: () => new Promise((resolve) => pending.push(resolve)) } } as unknown as Etcd3;
  return { client, answer: (i, rev, kvs) => pending[i]!({ header: { revision: String(rev) }, kvs }) };
}

interface Internals {
  load(): Promise<void>;
  apply(events: ReadonlyArray<{ type: 'put' | 'delete'; kv: IKeyValue }>, rev: number): void;
}

const valueAt = (m: Mirror, path: string): string | undefined => {
  const n = lookup(m.root, path.slice(1).split('/'));
  return n === undefined ? undefined : Buffer.from(n.value as Uint8Array).toString();
};

test('mirror reload: a reload answered after a later one (whose watch applied more) leaves the newer tree', async () => {
  const { client, answer } = standIn();
  const m = new Mirror(client, keys, () => client);
  const inner = m as unknown as Internals;
  // A cancelled watch's reload asks first; a restart's reload asks and is answered first, its watch applies revision 10.
  const first = inner.load();
  const second = inner.load();
  answer(1, 9, [kv('/a', 'new', 9)]);
  await second;
  inner.apply([{ type: 'put', kv: kv('/b', 'b', 10) }], 10);
  assert.equal(m.rev, 10);
  // Then the first reload's answer, from revision 7.
  answer(0, 7, [kv('/a', 'old', 7)]);
  await first;
  assert.equal(m.rev, 10);
  assert.equal(valueAt(m, '/a'), 'new', 'the tree was not put back to revision 7');
  assert.equal(valueAt(m, '/b'), 'b', 'what revision 10 wrote is still there');
});

test('mirror reload: a reload at a later revision replaces the tree and reports the changes', async () => {
  const { client, answer } = standIn();
  const m = new Mirror(client, keys, () => client);
  const inner = m as unknown as Internals;
  const first = inner.load();
  answer(0, 5, [kv('/a', 'one', 5)]);
  await first;
  const seen: string[] = [];
  m.listen((changes) => { for (const c of changes) seen.push(`${c.type} ${c.rest}`); });
  const next = inner.load();
  answer(1, 8, [kv('/a', 'two', 8), kv('/c', 'c', 7)]);
  await next;
  assert.equal(m.rev, 8);
  assert.equal(valueAt(m, '/a'), 'two');
  assert.equal(valueAt(m, '/c'), 'c');
  assert.deepEqual(seen.sort(), ['put /a', 'put /c']);
});
