/**
 * A client that stops reading: the server stops writing to it, stops pumping
 * its watch (whose bounded queue then ends it with a resumable QUOTA), keeps
 * serving everyone else, and the client finds every event up to the
 * resume point, in order, once it reads again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../src/client/store.js';
import { encodeRequest } from '../../src/protocol/codec.js';
import { RawClient, startServer } from './helpers.js';

test('backpressure: a watcher that does not read ends with a resumable QUOTA; the server stays well', async () => {
  const server = await startServer(['--memory', '--limit', 'maxWatchQueue=100']);
  const writer = await connect(`unix://${server.unix}`);
  try {
    const raw = await RawClient.open(server.unix);
    raw.send(encodeRequest(1, 'watch', { watch: 7, path: '/bp', recursive: true }));
    assert.equal((await raw.reply(1))?.t, 'ok');
    raw.socket.pause(); // stop reading: replies and events pile up on the server's side
    const value = new Uint8Array(10_000).fill(7);
    const n = 2000; // 20 MB of events: past the server's 8 MiB write buffer and the 100-event queue
    for (let i = 0; i < n; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, j) => writer.set(`/bp/${i + j}`, value)));
    }
    // Everyone else is still served.
    assert.equal((await writer.get('/bp/0'))?.value.length, 10_000);
    raw.socket.resume();
    const end = await raw.waitFor((d) => d.type === 'message' && d.message.t === 'watchEnd');
    assert.ok(end?.type === 'message' && end.message.t === 'watchEnd');
    assert.equal(end.message.e.code, 'QUOTA');
    const resumeFrom = end.message.e.info?.resumeFrom as number;
    // Every event before resumeFrom arrived, gapless, in order; none from it on.
    const revs: number[] = [];
    for (const d of raw.received) if (d.type === 'message' && d.message.t === 'event') for (const e of d.message.ev) revs.push(e.revision);
    assert.ok(revs.length > 0);
    for (let i = 1; i < revs.length; i++) assert.ok(revs[i]! >= revs[i - 1]! && revs[i]! - revs[i - 1]! <= 1, `gap at ${i}`);
    assert.equal(revs.at(-1)! + 1, resumeFrom);
    assert.ok(resumeFrom <= n + 1, `resume point ${resumeFrom}`);
    raw.close();
  } finally {
    await writer.close();
    assert.equal(await server.stop(), 0);
  }
});
