import assert from 'node:assert/strict';
import test from 'node:test';
import { BrokenCircuitError } from 'cockatiel';
import { GRPCDeadlineExceededError, GRPCUnavailableError, isRecoverableError } from 'etcd3';
import { CallDeadlineError, KeepAliveHedge, LeaderTerm, MemberHealth } from '../../src/etcd/faults.js';

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

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

test('leader term: a call answered before the check needs no probe', async () => {
  let probes = 0;
  const t = new LeaderTerm(async () => {
    probes++;
    return 9;
  }, 10_000);
  t.note('3');
  assert.deepEqual(await t.race(Promise.resolve('ok'), t.term), { value: 'ok' });
  assert.equal(probes, 0);
  await assert.rejects(t.race(Promise.reject(new Error('refused')), t.term), /refused/, 'a failed call fails the race');
});

test('leader term: a call still waiting when a newer term shows up is "moved"; the same term keeps it waiting', async () => {
  let term = 4;
  const t = new LeaderTerm(async () => term, 1);
  t.note(4);
  let answer!: (v: string) => void;
  const call = new Promise<string>((r) => (answer = r));
  const r = t.race(call, t.term);
  while (t.probes < 2) await tick(); // probed again and again while the call waits on the same term
  term = 5;
  assert.equal(await r, 'moved');
  assert.equal(t.term, 5);
  // A later call sent under term 5: not moved by term 5.
  const r2 = t.race(new Promise<string>((res) => setTimeout(() => res('late'), 30)), t.term);
  assert.deepEqual(await r2, { value: 'late' });
  answer('ignored');
});

test('leader term: a call sent before any term was seen is not "moved" by the first probe; a change after it is', async () => {
  let term = 6;
  const t = new LeaderTerm(async () => term, 1);
  assert.equal(t.term, 0, 'nothing seen yet');
  let answer!: (v: string) => void;
  const call = new Promise<string>((r) => (answer = r));
  const r = t.race(call, t.term);
  let moved = false;
  void r.then((x) => { moved = x === 'moved'; });
  // The first probe gives the call's term (6), later ones the same: still waiting (a moved call stops probing).
  while (t.probes < 3 && !moved) await tick();
  answer('slow but fine');
  assert.deepEqual(await r, { value: 'slow but fine' }, 'term 6 seen after a send under an unknown term is not a move');
  // Unknown again at the send (a fresh LeaderTerm): a change after the first probe is a move.
  const t2 = new LeaderTerm(async () => term, 1);
  const r2 = t2.race(new Promise<string>(() => {}), t2.term);
  while (t2.probes < 2) await tick();
  term = 7;
  assert.equal(await r2, 'moved');
});

test('leader term: learn() notes the term before the first call', async () => {
  const t = new LeaderTerm(async () => 11, 10_000);
  await t.learn();
  assert.equal(t.term, 11);
});

test('leader term: a failing probe is ignored and the call keeps waiting', async () => {
  const t = new LeaderTerm(async () => {
    throw new Error('member down');
  }, 1);
  t.note(2);
  assert.deepEqual(await t.race(new Promise<string>((res) => setTimeout(() => res('answered'), 20)), t.term), { value: 'answered' });
  assert.equal(t.term, 2);
});

test('keep-alive hedge: none while keep-alives are answered; one (at a time) when the oldest unanswered is too old, credited from its send time', async () => {
  const sends: Array<(ttl: number) => void> = [];
  const credits: Array<[number, number]> = [];
  let gone = 0;
  const h = new KeepAliveHedge({
    afterMs: 1000,
    send: () => new Promise<number>((r) => sends.push(r)),
    credit: (at, ttl) => credits.push([at, ttl]),
    gone: () => gone++,
  });
  h.fired(0);
  h.answered();
  h.tick(5000);
  assert.equal(sends.length, 0, 'nothing unanswered: no hedge');
  h.fired(10_000);
  h.tick(10_500);
  assert.equal(sends.length, 0, 'not old enough yet');
  h.fired(11_000);
  h.tick(11_200);
  assert.equal(sends.length, 1, 'the oldest (10 000) is 1 200 ms old');
  h.tick(11_400);
  assert.equal(sends.length, 1, 'one hedge at a time');
  const before = Date.now();
  sends[0]!(10);
  await tick();
  assert.equal(credits.length, 1);
  assert.ok(credits[0]![0] >= before - 1000 && credits[0]![0] <= before, 'credited from its send time');
  assert.equal(credits[0]![1], 10);
  h.tick(11_600);
  assert.equal(sends.length, 2, 'still unanswered on the stream: another hedge');
  sends[1]!(0);
  await tick();
  assert.equal(gone, 1, 'TTL 0: the lease is gone');
  h.failed();
  h.tick(20_000);
  assert.equal(sends.length, 2, 'a failed stream leaves nothing unanswered');
});

test('keep-alive hedge alone (after the lease\'s stream failed): one keep-alive every afterMs on its own stream, whatever the stream says', async () => {
  const sends: Array<(ttl: number) => void> = [];
  const credits: Array<[number, number]> = [];
  const h = new KeepAliveHedge({ afterMs: 1000, send: () => new Promise<number>((r) => sends.push(r)), credit: (at, ttl) => credits.push([at, ttl]), gone: () => assert.fail('not gone') });
  h.failed();
  h.alone();
  h.tick(10_000);
  assert.equal(sends.length, 1, 'nothing unanswered on the stream, yet a keep-alive goes');
  h.tick(10_100);
  assert.equal(sends.length, 1, 'one at a time');
  sends[0]!(10);
  await tick();
  assert.equal(credits.length, 1);
  h.fired(10_200);
  h.answered(); // the stream's answers change nothing now
  h.tick(10_500);
  assert.equal(sends.length, 1, 'not before afterMs since the last');
  h.tick(11_000);
  assert.equal(sends.length, 2, 'the next after afterMs');
});

test('keep-alive hedge: a failed hedge frees the next one', async () => {
  let n = 0;
  const h = new KeepAliveHedge({ afterMs: 10, send: async () => { n++; throw new Error('refused'); }, credit: () => assert.fail('no credit'), gone: () => assert.fail('not gone') });
  h.fired(0);
  h.tick(100);
  await tick();
  h.tick(200);
  assert.equal(n, 2);
});
