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
import { XsType, nulTerminated } from '../../src/xenstore/wire.js';

test('xenstore: latchkey serve --xenstore-socket shares one durable store between both protocols, across restarts', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-xs-cli-'));
  const xsPath = path.join(dir, 'xenstored.sock');
  const start = async (): Promise<{ exited: Promise<number | string>; stop: () => void; out: string }> => {
    const proc = spawn(process.execPath, [CLI, 'serve', '--data', path.join(dir, 'data'), '--xenstore-socket', xsPath, '--xenstore-limit', 'maxValueBytes=8', '--xenstore-domain-dir', path.join(dir, 'domains')], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    // From a revision, so the write below is seen however late the watch subscribes.
    const from = (await native.get('/'))!.revision + 1;
    const watch = native.watch('/local/domain/7', { recursive: true, fromRevision: from })[Symbol.asyncIterator]();
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
    await xs.write('/eight', '12345678');
    await assert.rejects(xs.write('/eight', '123456789'), /E2BIG/);
    // The domain directory too: an introduced guest gets its socket there, and speaks as that domain.
    await xs.setPerms('/local/domain/7/name', ['n0', 'r7']);
    await xs.request(XsType.INTRODUCE, nulTerminated(['7', '1234', '5']));
    const guest = await XsClient.connect(path.join(dir, 'domains', '7'));
    assert.equal(await guest.read('name'), 'guest');
    await assert.rejects(guest.read('/native'), /EACCES/);
    await xs.request(XsType.RELEASE, nulTerminated(['7']));
    await guest.whenClosed();
    await watch.return?.();
    await native.close();
    s1.stop();
    await xs.whenClosed();
    assert.equal(await s1.exited, 0);
    // Acknowledged XenStore writes are durable.
    const s2 = await start();
    const xs2 = await XsClient.connect(xsPath);
    assert.equal(await xs2.read('/local/domain/7/name'), 'guest');
    assert.deepEqual(await xs2.getPerms('/local/domain/7/name'), ['n0']); // RELEASE dropped domain 7's entry
    assert.equal(await xs2.read('/native'), 'from latchkey');
    await xs2.close();
    s2.stop();
    assert.equal(await s2.exited, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
