import assert from 'node:assert/strict';
import test from 'node:test';
import { BrokenCircuitError } from 'cockatiel';
import { GRPCDeadlineExceededError, GRPCUnavailableError, isRecoverableError } from 'etcd3';
import { CallDeadlineError, MemberHealth } from '../../src/etcd/faults.js';

const deadline = (): never => {
  throw new GRPCDeadlineExceededError('Deadline exceeded');
};
const refused = (): never => {
  throw new GRPCUnavailableError('connect ECONNREFUSED');
};

test('etcd member health: one deadline miss does not take a member out; three in a row do', async () => {
  const h = new MemberHealth({ outMs: 60_000, deadlineMisses: 3 });
  const a = h.policy('a');
  h.policy('b');
  for (let i = 0; i < 2; i++) await assert.rejects(a.execute(deadline), CallDeadlineError);
  assert.equal(h.outNow(), 0);
  assert.equal(await a.execute(() => 1), 1, 'a success clears the misses');
  for (let i = 0; i < 2; i++) await assert.rejects(a.execute(deadline), CallDeadlineError);
  assert.equal(h.outNow(), 0);
  await assert.rejects(a.execute(deadline), CallDeadlineError);
  assert.equal(h.outNow(), 1);
  await assert.rejects(a.execute(() => 1), BrokenCircuitError, 'a member out refuses calls while another is in');
});

test('etcd member health: a deadline miss is not etcd3-recoverable (not resent, channels not reset); a refused connection takes the member out at once', async () => {
  const h = new MemberHealth({ outMs: 60_000, deadlineMisses: 3 });
  const a = h.policy('a');
  const b = h.policy('b');
  const e = await a.execute(deadline).then(() => undefined, (x: unknown) => x);
  assert.ok(e instanceof CallDeadlineError && !isRecoverableError(e), 'etcd3 resends and resets on recoverable errors only');
  await assert.rejects(b.execute(refused), GRPCUnavailableError);
  assert.equal(h.outNow(), 1);
  await assert.rejects(b.execute(() => 1), BrokenCircuitError);
});

test('etcd member health: the last member is never taken out of rotation', async () => {
  const h = new MemberHealth({ outMs: 60_000, deadlineMisses: 1 });
  const ps = ['a', 'b', 'c'].map((m) => h.policy(m));
  for (const p of ps.slice(0, 2)) await assert.rejects(p.execute(refused), GRPCUnavailableError);
  // c is the only member in: its failure takes it out too, but with every member out, each takes calls again.
  await assert.rejects(ps[2]!.execute(deadline), CallDeadlineError);
  assert.equal(h.outNow(), 3);
  assert.equal(await ps[1]!.execute(() => 'served'), 'served', 'with every member out, a member takes calls');
  assert.equal(h.outNow(), 2, 'a success puts the member back');
  await assert.rejects(ps[0]!.execute(() => 1), BrokenCircuitError, 'one member is in again: the others stay out');
});
