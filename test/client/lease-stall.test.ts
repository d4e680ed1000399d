/**
 * The client's lease check after a stall of its own process: answers that
 * reached the socket while the event loop was blocked count before the link
 * is given up (timers run before the poll phase that reads them). The server
 * runs in a child process, so it answers while the test blocks its own loop.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Link, clientLeaseMs } from '../../src/client/link.js';
import type { LatchkeyError } from '../../src/core/errors.js';
import { startServer } from '../server/helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('lease check: an answer that arrived while the loop was blocked keeps the link, past the previous answer\'s deadline', async () => {
  // Over TCP: a session's lease (ttlMs) is a TCP client's (a local socket's client has none).
  await using srv = await startServer(['--ttl-ms', '3000', '--memory', '--listen', '127.0.0.1:0', '--insecure-loopback']);
  const [host, port] = srv.tcp!.replace(/^tcp:\/\//, '').split(':');
  const outcomes: string[] = [];
  // A loaded machine may keep the server from answering within the block: then the link is rightly
  // given up, and another attempt is made. Without the deferred check every attempt gives it up.
  for (let attempt = 0; attempt < 4; attempt++) {
    let lost: LatchkeyError | undefined;
    const link = await Link.open({ kind: 'tcp', host: host!, port: Number(port), tls: false }, {}, { push: () => {}, lost: (e) => { lost = e; } });
    try {
      const leaseMs = clientLeaseMs(link.welcome.ttlMs);
      await link.request('ping', {});
      // Let the newest answer age a little (pings go every leaseMs/3), so the request below extends the lease.
      while (performance.now() - link.answeredFrom < 100) await sleep(10);
      // The stall comes in the check phase (as in any I/O callback): the next turn runs its timers, the
      // lease check among them, before its poll phase reads what came meanwhile. (A stall in the timers
      // phase would not show it: that turn's clock is from before the stall.)
      await new Promise<void>((resolve) => setImmediate(resolve));
      const before = link.answeredFrom;
      const sent = performance.now();
      if (sent - before > leaseMs / 4) {
        outcomes.push('a ping came between: no setup');
        continue;
      }
      const r = link.request('ping', {}).then(() => 'answered', (e: LatchkeyError) => e.code);
      // The request leaves in a nextTick (frames of one tick in one write); no poll phase runs before the block.
      await new Promise<void>((resolve) => process.nextTick(resolve));
      // Blocked past the deadline the previous answer gave, well before the one this request's answer gives.
      const until = before + leaseMs + 50;
      while (performance.now() < until) { /* a stalled process */ }
      const got = await r;
      await sleep(20);
      if (got === 'answered' && lost === undefined && link.alive) return;
      outcomes.push(`${got}, lost: ${lost?.code ?? 'no'} (${lost?.message ?? ''})`);
    } finally {
      link.close();
    }
  }
  assert.fail(`the link was given up although its answer was in: ${outcomes.join('; ')}`);
});
