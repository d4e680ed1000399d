/**
 * `latchkey serve --xenstore-socket`: one process serves the same durable
 * store to latchkey clients and XenStore clients; each sees the other's
 * writes and watches fire across both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '../../src/client/store.js';
import type { WatchEvent } from '../../src/api.js';
import { CLI } from '../server/helpers.js';
import { XsClient } from './client.js';

test('xenstore: latchkey serve --xenstore-socket shares one durable store between both protocols, across restarts', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-xs-cli-'));
  const xsPath = path.join(dir, 'xenstored.sock');
  const start = async (): Promise<{ exited: Promise<number | string>; stop: () => void; out: string }> => {
    const proc = spawn(process.execPath, [CLI, 'serve', '--data', path.join(dir, 'data'), '--xenstore-socket', xsPath, '--xenstore-limit', 'maxWatches=4'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | string>((resolve) => proc.on('exit', (c, s) => resolve(c ?? s ?? -1)));
    let out = '';
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('ready\n')) resolve();
      });
      void exited.then((c) => reject(new Error(`server exited ${c}`)));
    });
    return { exited, stop: () => proc.kill('SIGTERM'), out };
  };
  try {
    const s1 = await start();
    assert.match(s1.out, new RegExp(`^xenstore ${xsPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    const native = await connect(`unix://${path.join(dir, 'data', 'latchkey.sock')}`, { reconnect: false });
    const xs = await XsClient.connect(xsPath);
    const watch = native.watch('/local/domain/7', { recursive: true })[Symbol.asyncIterator]();
    await xs.write('/local/domain/7/name', 'guest');
    const ev = (await watch.next()).value as WatchEvent;
    assert.equal(ev.path, '/local/domain/7');
    assert.equal((await native.get('/local/domain/7/name'))?.text(), 'guest');
    await xs.watch('/native', 'tok');
    assert.deepEqual(await xs.nextEvent(), { path: '/native', token: 'tok' });
    await native.set('/native', 'from latchkey');
    assert.deepEqual(await xs.nextEvent(), { path: '/native', token: 'tok' });
    assert.equal(await xs.read('/native'), 'from latchkey');
    // The limit flag reached the adapter.
    for (const t of ['a', 'b', 'c']) await xs.watch('/native', t);
    await assert.rejects(xs.watch('/native', 'd'), /EQUOTA/);
    await watch.return?.();
    await native.close();
    s1.stop();
    await xs.whenClosed();
    assert.equal(await s1.exited, 0);
    // Acknowledged XenStore writes are durable.
    const s2 = await start();
    const xs2 = await XsClient.connect(xsPath);
    assert.equal(await xs2.read('/local/domain/7/name'), 'guest');
    assert.equal(await xs2.read('/native'), 'from latchkey');
    await xs2.close();
    s2.stop();
    assert.equal(await s2.exited, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
