import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SessionInfo } from '../../src/api.js';
import { type Principal, sessionsVisibleTo } from '../../src/server/auth.js';

const row = (id: string, held: number, address?: string): SessionInfo => ({
  id, name: id, since: 0, transport: 'tcp', ...(address === undefined ? {} : { address }), locksHeld: held, locksWaiting: 0, ephemerals: 0,
});
const all = [row('mine', 0, '127.0.0.1:1'), row('locker', 1, '127.0.0.1:2'), row('idle', 0, '127.0.0.1:3')];

test('sessionsVisibleTo: no grants or a grant on / sees every session with its address', () => {
  const open: Principal = { name: 'open' } as Principal;
  const root: Principal = { name: 'root', grants: [{ prefix: '/', access: 'read' }] } as Principal;
  assert.deepEqual(sessionsVisibleTo(open, all), all);
  assert.deepEqual(sessionsVisibleTo(root, all, new Set(['mine'])), all);
});

test('sessionsVisibleTo: a token granted a subtree sees its own and lock-holding sessions, only its own address', () => {
  const jobs: Principal = { name: 'jobs', grants: [{ prefix: '/jobs', access: 'write' }] } as Principal;
  const seen = sessionsVisibleTo(jobs, all, new Set(['mine']));
  assert.deepEqual(seen.map((s) => s.id), ['mine', 'locker']);
  assert.equal(seen[0]!.address, '127.0.0.1:1');
  assert.equal(seen[1]!.address, undefined);
});
