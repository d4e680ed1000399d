import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FaultProxy } from '../reliability/fault-proxy.js';
import { cliServer } from './helpers.js';

/** A CMD that prints `ready`, then waits; on SIGTERM it prints `said` and exits with `code`. */
const TERM_EXITS = (code: number, said: string): string =>
  `process.on('SIGTERM', () => { if (${JSON.stringify(said)}) console.log(${JSON.stringify(said)}); process.exit(${code}); }); console.log('ready'); setInterval(() => {}, 1000);`;

/** Kills a process by the pid it wrote to `file` (the orphaned CMD of a SIGKILLed latchkey). */
function killPidFile(file: string): void {
  try {
    process.kill(Number(readFileSync(file, 'utf8').trim()), 'SIGKILL');
  } catch { /* already gone */ }
}

// A CMD that waits in the background keeps its sleep off our pipes (and kills it
// when it ends): the test's "done" waits for stdout to close.
describe('cli: lock -- cmd', () => {
  let t: Awaited<ReturnType<typeof cliServer>>;
  let tmp: string;
  before(async () => {
    t = await cliServer();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'lk-lock-'));
  });
  after(async () => {
    await t.server.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  test('cli: lock runs CMD with the fencing token and exits with its status', async () => {
    const r = await t.lk(['lock', '/l/a', '--', 'sh', '-c', 'echo "fence=$LATCHKEY_FENCE died=${LATCHKEY_OWNER_DIED-unset} path=$LATCHKEY_LOCK_PATH"; exit 7']);
    assert.equal(r.code, 7, r.stderr);
    const m = /^fence=(\d+) died=unset path=\/l\/a$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    // The lock was released when CMD exited: it can be taken again at once, with a newer token.
    const again = await t.lk(['lock', '/l/a', '--no-wait', '--', 'sh', '-c', 'echo $LATCHKEY_FENCE']);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(Number(again.stdout.trim()) > Number(m[1]));
  });

  test('cli: --no-wait while locked exits 75; --timeout too; a shared lock admits shared ones', async () => {
    const holder = t.lkStart(['lock', '/l/b', '--shared', '--', 'sh', '-c', 'echo held; exec sleep 100']);
    await holder.waitFor('held\n');
    const busy = await t.lk(['lock', '/l/b', '--no-wait', '--', 'echo', 'never']);
    assert.equal(busy.code, 75);
    assert.equal(busy.stdout, '');
    assert.match(busy.stderr, /LOCKED/);
    const timed = await t.lk(['lock', '/l/b', '--timeout', '200ms', '--', 'echo', 'never']);
    assert.equal(timed.code, 75);
    assert.match(timed.stderr, /TIMEOUT/);
    // Writes into a locked subtree wait (mandatory locks); --no-wait makes set fail LOCKED → 75.
    assert.equal((await t.lk(['set', '/l/b/x', '1', '--no-wait'])).code, 75);
    const shared = await t.lk(['lock', '/l/b', '--shared', '--no-wait', '--', 'echo', 'shared too']);
    assert.equal(shared.code, 0);
    assert.equal(shared.stdout, 'shared too\n');
    holder.child.kill('SIGTERM');
    await holder.done;
  });

  test('cli: the holder SIGKILLed → its CMD is killed, and only then the waiter is granted with LATCHKEY_OWNER_DIED=1', async () => {
    const pidFile = path.join(tmp, 'orphan.pid');
    const holder = t.lkStart(['lock', '/l/c', '--', 'sh', '-c', `echo $$ > ${pidFile}; echo held; exec sleep 100`]);
    try {
      await holder.waitFor('held\n');
      const waiter = t.lkStart(['lock', '/l/c', '--', 'sh', '-c', `kill -0 $(cat ${pidFile}) 2>/dev/null && echo "old CMD alive"; echo "died=\${LATCHKEY_OWNER_DIED-unset}"`]);
      // The waiter is queued once the lock table shows it (no sleeping on a guess).
      for (;;) {
        const s = JSON.parse((await t.lk(['stats', '--json'])).stdout) as { lockWaiters: number };
        if (s.lockWaiters > 0) break;
      }
      holder.child.kill('SIGKILL');
      const r = await waiter.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'died=1\n');
    } finally {
      killPidFile(pidFile); // only if the test failed: the guardian killed it
    }
  });

  test('cli: owner died — CMD sees LATCHKEY_OWNER_DIED=1; exit 0 marks the lock consistent, a failure leaves it; --unrecoverable-on-failure; --reset', async () => {
    const died = ['sh', '-c', 'echo "died=${LATCHKEY_OWNER_DIED-unset}"; exit ${STATUS:-0}'];
    const holder = t.lkStart(['lock', '/l/h', '--', 'sh', '-c', 'echo held; exec sleep 100']);
    await holder.waitFor('held\n');
    holder.child.kill('SIGKILL');
    const failed = await t.lk(['lock', '/l/h', '--', ...died], { env: { STATUS: '3' } });
    assert.equal(failed.code, 3, failed.stderr);
    assert.equal(failed.stdout, 'died=1\n');
    const repaired = await t.lk(['lock', '/l/h', '--', ...died]);
    assert.equal(repaired.code, 0, repaired.stderr);
    assert.equal(repaired.stdout, 'died=1\n', 'a failed repair passes ownerDied on');
    assert.equal((await t.lk(['lock', '/l/h', '--', ...died])).stdout, 'died=unset\n', 'exit 0 marked it consistent');

    const again = t.lkStart(['lock', '/l/h', '--', 'sh', '-c', 'echo held; exec sleep 100']);
    await again.waitFor('held\n');
    again.child.kill('SIGKILL');
    const broke = await t.lk(['lock', '/l/h', '--unrecoverable-on-failure', '--', ...died], { env: { STATUS: '1' } });
    assert.equal(broke.code, 1);
    const refused = await t.lk(['lock', '/l/h/sub', '--', 'echo', 'never']);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, '');
    assert.match(refused.stderr, /NOT_RECOVERABLE/);
    assert.equal((await t.lk(['lock', '--reset', '/l/h'])).code, 0);
    assert.equal((await t.lk(['lock', '/l/h', '--', ...died])).stdout, 'died=unset\n', 'reset clears both marks');
  });

  test('cli: signals to latchkey are forwarded to CMD, which decides the exit status', async () => {
    // CMD is a node script, not `sh -c "trap …; sleep & wait"`: a shell can miss a
    // trapped signal that lands between `sleep &` and `wait` (a flaky hang).
    const p = t.lkStart(['lock', '/l/d', '--', process.execPath, '-e', TERM_EXITS(5, 'got TERM')]);
    await p.waitFor('ready\n');
    p.child.kill('SIGTERM');
    const r = await p.done;
    assert.equal(r.code, 5, r.stderr);
    assert.match(r.stdout, /got TERM/);
    // And the lock went with it.
    assert.equal((await t.lk(['lock', '/l/d', '--no-wait', '--', 'true'])).code, 0);
  });

  test('cli: CMD killed by a signal → 128+N; a missing CMD → 127', async () => {
    assert.equal((await t.lk(['lock', '/l/e', '--', 'sh', '-c', 'kill -KILL $$'])).code, 128 + 9);
    const r = await t.lk(['lock', '/l/e', '--', 'no-such-command-latchkey']);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /cannot run/);
  });

  test('cli: lock without a command is a usage error', async () => {
    assert.equal((await t.lk(['lock', '/l/f'])).code, 2);
    assert.equal((await t.lk(['lock', '/l/f', '--timeout', 'soon', '--', 'true'])).code, 2);
  });

  test('cli: a partition — CMD gets SIGTERM, then SIGKILL after --kill-grace, and is dead before the next holder is granted', async () => {
    // A 1.5 s lease and a 500 ms grace: were the grace not taken out of the client's lease, CMD would
    // die after the server's lease ended (the waiter would see it alive); a 900 ms lease left the
    // holder so little slack that a loaded machine's ping round trip once lost it before CMD started.
    const own = await cliServer(['--memory', '--listen', '127.0.0.1:0', '--insecure-loopback', '--ttl-ms', '1500']);
    const port = Number(/:(\d+)$/.exec(own.server.tcp!)![1]);
    const proxy = new FaultProxy(port);
    await proxy.start();
    const pidFile = path.join(tmp, 'stubborn.pid');
    // CMD ignores SIGTERM: only the SIGKILL after the grace stops it.
    const stubborn = `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); process.on('SIGTERM', () => console.log('TERM ignored')); console.log('ready'); setInterval(() => {}, 1000);`;
    const holder = own.lkStart(['lock', '/l/p', '--kill-grace', '500ms', '--url', `tcp://127.0.0.1:${proxy.port}`, '--', process.execPath, '-e', stubborn]);
    try {
      await holder.waitFor('ready\n');
      // The default grace (1 s) would not fit this 1.5 s lease: a usage error, exit 2.
      assert.equal((await own.lk(['lock', '/l/q', '--url', own.server.tcp!, '--', 'true'])).code, 2);
      const waiter = own.lkStart(['lock', '/l/p', '--kill-grace', '100ms', '--url', own.server.tcp!, '--', 'sh', '-c', `kill -0 $(cat ${pidFile}) 2>/dev/null && echo "old CMD alive"; echo "died=\${LATCHKEY_OWNER_DIED-unset}"`]);
      proxy.set('c2s', { kind: 'drop' });
      proxy.set('s2c', { kind: 'drop' });
      const r = await waiter.done;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'died=1\n');
      const h = await holder.done;
      assert.equal(h.code, 1);
      assert.match(h.stdout, /TERM ignored/);
      assert.match(h.stderr, /SESSION_EXPIRED/);
    } finally {
      killPidFile(pidFile);
      await proxy.close();
      await own.server.stop();
    }
  });

  test('cli: the lock lost while CMD runs (server gone) terminates CMD and says so', async () => {
    const own = await cliServer();
    const p = own.lkStart(['lock', '/l/g', '--', process.execPath, '-e', TERM_EXITS(143, '')]);
    await p.waitFor('ready\n');
    own.server.proc.kill('SIGKILL');
    const r = await p.done;
    await own.server.stop();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /lock on \/l\/g was lost/);
  });
});
