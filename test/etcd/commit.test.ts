/**
 * What a plain write's Txn compares (src/etcd/commit.ts), without a
 * cluster: everything the write's computation read must be pinned, as the
 * write is computed on a head that may lag the cluster (backend.ts write()).
 * The same against a real cluster, on a head held back on purpose:
 * test/integration/etcd-stale.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ICompare } from 'etcd3';
import { Workspace } from '../../src/core/ops.js';
import { type Node, emptyRoot } from '../../src/core/tree.js';
import { PinnedWorkspace, PlanBuilder } from '../../src/etcd/commit.js';
import { Keys } from '../../src/etcd/keys.js';
import { type XsCaller, workspaceTarget, xsRm, xsWrite } from '../../src/xenstore/ops.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const keys = new Keys('/t');

/** A base tree written at revision 5: /a (version 1), /d with perms, /d/old. */
function base(): Node {
  const w = new Workspace(emptyRoot(), 5);
  w.set('/a', bytes('1'));
  w.set('/d/old', bytes('o'));
  w.setPerms('/d', ['n5', 'w7']);
  return w.root;
}

function compares(root: Node, fn: (ws: PinnedWorkspace) => void): { compare: ICompare[]; writes: number } {
  const ws = new PinnedWorkspace(root, 6);
  fn(ws);
  const plan = new PlanBuilder(keys, root);
  plan.diff(ws, (o) => o);
  return { compare: plan.build(`${keys.root}/r`).compare, writes: plan.writes };
}

function modCompare(c: readonly ICompare[], path: string): ICompare | undefined {
  const k = keys.node(path);
  return c.find((x) => x.key?.toString() === k && x.target === 'Mod');
}

test('a multi\'s check op is compared like a conditional set\'s target: the checked node\'s mod_revision', () => {
  const root = base();
  const { compare, writes } = compares(root, (ws) => {
    ws.write({ op: 'check', path: '/a', version: 1 });
    ws.write({ op: 'set', path: '/b', value: bytes('x') });
  });
  assert.ok(writes > 0);
  assert.equal(modCompare(compare, '/a')?.mod_revision, 5, 'the checked node as the check saw it');
  // A check of absence: mod_revision 0.
  const absent = compares(root, (ws) => {
    ws.write({ op: 'check', path: '/nope', exists: false });
    ws.write({ op: 'set', path: '/b', value: bytes('x') });
  });
  assert.equal(modCompare(absent.compare, '/nope')?.mod_revision, 0);
});

test('a delete that deleted nothing and an atomic op that changed nothing are compared in a multi', () => {
  const root = base();
  const { compare } = compares(root, (ws) => {
    assert.equal(ws.write({ op: 'delete', path: '/gone' }), false);
    assert.equal(ws.write({ op: 'add', path: '/a', delta: 0 }), 1);
    ws.write({ op: 'set', path: '/b', value: bytes('x') });
  });
  assert.equal(modCompare(compare, '/gone')?.mod_revision, 0, 'absent, as the answer "not deleted" assumed');
  assert.equal(modCompare(compare, '/a')?.mod_revision, 5, 'the value add answered from');
});

test('a creation compares its nearest existing ancestor\'s mod_revision (XenStore judged and copied its permissions)', () => {
  const root = base();
  const guest7: XsCaller = { who: { domid: 7, target: undefined }, reserveEntries: () => {}, checked: () => {} };
  const { compare } = compares(root, (ws) => xsWrite(workspaceTarget(ws), guest7, '/d/x/y', bytes('v')));
  assert.equal(modCompare(compare, '/d')?.mod_revision, 5, 'the parent whose perms allowed the write and were copied');
  assert.equal(modCompare(compare, '/d/x')?.mod_revision, 0);
  assert.equal(modCompare(compare, '/d/x/y')?.mod_revision, 0);
  // A write of an existing node compares the node itself, not its parent.
  const dom0: XsCaller = { ...guest7, who: { domid: 0, target: undefined } };
  const again = compares(root, (ws) => xsWrite(workspaceTarget(ws), dom0, '/d/old', bytes('v')));
  assert.equal(modCompare(again.compare, '/d/old')?.mod_revision, 5);
  assert.equal(modCompare(again.compare, '/d'), undefined);
  // Creating directly under the root (no key: modRev 0) compares the root key as absent.
  const top = compares(root, (ws) => ws.set('/top', bytes('t')));
  assert.equal(modCompare(top.compare, '/')?.mod_revision, 0);
});

test('XenStore RM compares the parent it checked for, and the node it found absent', () => {
  const root = base();
  const dom0: XsCaller = { who: { domid: 0, target: undefined }, reserveEntries: () => {}, checked: () => {} };
  const { compare, writes } = compares(root, (ws) => xsRm(workspaceTarget(ws), dom0, '/d/none'));
  assert.equal(writes, 0, 'nothing to delete: the backend answers it after a barrier');
  assert.equal(modCompare(compare, '/d')?.mod_revision, 5);
  assert.equal(modCompare(compare, '/d/none')?.mod_revision, 0);
});
