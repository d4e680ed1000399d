/**
 * Resuming a session across front-ends, on the store API (docs/etcd.md
 * "Resuming a session"): two stores on one prefix stand for front-ends A and
 * B. Needs a cluster: test/integration/etcd.sh runs it with LK_ETCD_ENDPOINTS set.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Etcd3 } from 'etcd3';
import { LatchkeyError } from '../../src/core/errors.js';
import { type EtcdStore, connectEtcd } from '../../src/etcd/store.js';

const endpoints = process.env.LK_ETCD_ENDPOINTS;
if (endpoints === undefined) throw new Error('set LK_ETCD_ENDPOINTS=host:port,host:port,… (test/integration/etcd.sh does)');

async function pair(): Promise<{ a: EtcdStore; b: EtcdStore; raw: Etcd3; prefix: string; done(): Promise<void> }> {
  const prefix = `/lk-resume-${randomBytes(6).toString('hex')}`;
  const url = `etcd://${endpoints}/?prefix=${prefix}&ttl=8`;
  const a = await connectEtcd(url);
  const b = await connectEtcd(url);
  const raw = new Etcd3({ hosts: endpoints!.split(',').map((h) => `http://${h}`) });
  return {
    a, b, raw, prefix,
    async done() {
      await a.close().catch(() => {});
      await b.close().catch(() => {});
      await raw.delete().prefix(prefix + '/').exec();
      await raw.delete().key(prefix + '/r').exec();
      raw.close();
    },
  };
}

const leaseTtl = async (raw: Etcd3, id: string): Promise<number> => Number((await raw.leaseClient.leaseTimeToLive({ ID: id })).TTL);

test('request ids of an adopted session never repeat the old front-end\'s', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const sa = p.a.servedBackend().ownedSession({ name: 'ids' });
    const secret = await sa.resumable();
    const la = await sa.lock('/ids/a');
    const { session: sb, locks } = await p.b.resumeSession(sa.id, secret, [{ handle: 1, token: la.token }]);
    assert.equal(locks.size, 1, 'the held lock is given back');
    await sb.lock('/ids/b');
    // What A would name its next request, were one already past its checks when the session moved.
    const stray = sa.nextId();
    const keys = (await p.raw.getAll().prefix(`${p.prefix}/q/`).keys()).map((k) => k.slice(`${p.prefix}/q/`.length));
    assert.equal(keys.length, 2, `both requests are queued: ${keys.join(' ')}`);
    assert.ok(!keys.includes(stray), `A's next id ${stray} is not one of B's (${keys.join(' ')})`);
    await sb.close();
  } finally {
    await p.done();
  }
});

test('a session closed on A while B resumes it: never both resumed and revoked', { timeout: 300_000 }, async () => {
  const p = await pair();
  try {
    let resumed = 0;
    let refused = 0;
    for (let i = 0; i < 8; i++) {
      const sa = p.a.servedBackend().ownedSession({ name: `race-${i}` });
      const secret = await sa.resumable();
      const id = sa.id;
      // A's close starts at once, or a little later (after B's adoption, before or after A's mirror shows it).
      const closing = new Promise<void>((r) => setTimeout(r, (i % 4) * 15)).then(() => sa.close());
      const [closeA, resumeB] = await Promise.allSettled([closing, p.b.resumeSession(id, secret, [])]);
      assert.equal(closeA.status, 'fulfilled');
      if (resumeB.status === 'fulfilled') {
        resumed++;
        assert.ok(await leaseTtl(p.raw, id) > 0, `session ${id} resumed on B: its lease lives after A's close`);
        assert.equal(resumeB.value.session.closed, false, 'and B still serves it');
        await resumeB.value.session.close();
      } else {
        refused++;
        assert.ok(LatchkeyError.is(resumeB.reason, 'SESSION_EXPIRED'), `a refused resume is SESSION_EXPIRED: ${String(resumeB.reason)}`);
      }
      assert.ok(await leaseTtl(p.raw, id) <= 0, `session ${id}: revoked once closed where it lives`);
    }
    console.log(`# race: ${resumed} resumed on B, ${refused} refused`);
  } finally {
    await p.done();
  }
});

test('a resume that fails after adoption lets the lease go, does not revoke it', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const sa = p.a.servedBackend().ownedSession({ name: 'let-go' });
    const secret = await sa.resumable();
    const la = await sa.lock('/let-go/x');
    const { session: sb, locks } = await p.b.resumeSession(sa.id, secret, [{ handle: 7, token: la.token }]);
    assert.equal(locks.size, 1);
    sb.letGo(new LatchkeyError('SESSION_EXPIRED', 'test: the resume failed'));
    assert.equal(sb.closed, true);
    assert.ok(await leaseTtl(p.raw, sa.id) > 0, 'the lease still lives: the lock is not handed on before the client gave it up');
    const q = await p.raw.getAll().prefix(`${p.prefix}/q/`).keys();
    assert.equal(q.length, 1, 'the claimed lock is still queued (held) in etcd');
    assert.notEqual(await p.raw.get(`${p.prefix}/s/${sa.id}`).string(), null, 'its record is still there: another front-end may still resume it');
    await p.raw.leaseClient.leaseRevoke({ ID: sa.id });
  } finally {
    await p.done();
  }
});

test('a wait in flight is carried over: B waits on in its FIFO place and is granted at the release; aborted, it is withdrawn', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const holder = p.a.servedBackend().ownedSession({ name: 'holder' });
    const sa = p.a.servedBackend().ownedSession({ name: 'waiter' });
    const behind = p.a.servedBackend().ownedSession({ name: 'behind' });
    const secret = await sa.resumable();
    const held = await holder.lock('/w');
    const onA = sa.lock('/w').then(() => 'granted', (e: unknown) => e);
    while (p.a.lockTable().waiting.length < 1) await new Promise((r) => setTimeout(r, 20));
    const third = behind.lock('/w');
    while (p.a.lockTable().waiting.length < 2) await new Promise((r) => setTimeout(r, 20));
    const before = await p.raw.getAll().prefix(`${p.prefix}/q/`).exec();
    const { session: sb, waits } = await p.b.resumeSession(sa.id, secret, [], [{ handle: 3, path: '/w', mode: 'exclusive' }, { handle: 4, path: '/nothing', mode: 'shared' }]);
    assert.deepEqual([...waits.keys()], [3], 'the wait with a queued request is carried over; one with none is not');
    const onAres = await onA;
    assert.ok(LatchkeyError.is(onAres, 'SESSION_EXPIRED'), `A's wait ends (the session moved): ${String(onAres)}`);
    const after = await p.raw.getAll().prefix(`${p.prefix}/q/`).exec();
    const order = (r: typeof before): string[] => r.kvs.slice().sort((x, y) => Number(x.create_revision) - Number(y.create_revision)).map((kv) => kv.key.toString());
    assert.deepEqual(order(after), order(before), 'the queue keeps its order (the request rewritten in place)');
    await held.release();
    const got = await waits.get(3)!.result;
    assert.equal(got.ownerDied, false);
    assert.ok(got.token > held.token);
    let thirdGot = false;
    void third.then(() => { thirdGot = true; });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(thirdGot, false, 'the wait queued behind it is not granted first');
    await got.release();
    await (await third).release();
    // An adopted wait aborted: withdrawn (ABORTED), nothing taken.
    const h2 = await holder.lock('/w2');
    const w2 = sb.lock('/w2').then(() => 'granted', (e: unknown) => e);
    while (p.b.lockTable().waiting.length < 1) await new Promise((r) => setTimeout(r, 20));
    const secret2 = sb.secret!;
    const { waits: again } = await p.a.resumeSession(sb.id, secret2, [], [{ handle: 9, path: '/w2', mode: 'exclusive' }]);
    assert.ok(LatchkeyError.is(await w2, 'SESSION_EXPIRED'));
    again.get(9)!.abort(new Error('test abort'));
    assert.ok(await again.get(9)!.result.then(() => false, (e: unknown) => LatchkeyError.is(e, 'ABORTED')), 'an aborted carried wait fails ABORTED');
    await h2.release();
    const free = await holder.lock('/w2', { wait: false });
    assert.equal(free.ownerDied, false, 'the withdrawn wait took nothing');
    await free.release();
  } finally {
    await p.done();
  }
});

test('a wait granted on A whose answer never reached the client comes back granted: same token, ownerDied as granted', { timeout: 120_000 }, async () => {
  const p = await pair();
  try {
    const dying = p.a.servedBackend().ownedSession({ name: 'dying' });
    const sa = p.a.servedBackend().ownedSession({ name: 'waiter' });
    const secret = await sa.resumable();
    await dying.ready();
    await dying.lock('/g');
    const granted = sa.lock('/g');
    while (p.a.lockTable().waiting.length < 1) await new Promise((r) => setTimeout(r, 20));
    await p.raw.leaseClient.leaseRevoke({ ID: dying.id }); // the holder dies: A grants the wait with ownerDied
    const onA = await granted;
    assert.equal(onA.ownerDied, true);
    const { waits, locks } = await p.b.resumeSession(sa.id, secret, [], [{ handle: 2, path: '/g', mode: 'exclusive' }]);
    assert.equal(locks.size, 0);
    const onB = await waits.get(2)!.result;
    assert.equal(onB.token, onA.token, 'the same grant: the same fencing token');
    assert.equal(onB.ownerDied, true, 'ownerDied as A granted it (its held marker says so)');
    assert.equal(onB.held, true);
    await onB.markConsistent();
    await onB.release();
  } finally {
    await p.done();
  }
});
