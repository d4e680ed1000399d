/**
 * The runnable daemon (`dist/xenstore/main.js`) on a data directory: acknowledged
 * XenStore writes survive a graceful restart; SIGTERM exits 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XsClient } from './client.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/xenstore/main.js');

async function start(args: string[]): Promise<{ exited: Promise<number | string>; stop: () => void }> {
  const proc = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (c, s) => resolve(c ?? s ?? -1)));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('XenStore protocol on')) resolve();
    });
    void exited.then((c) => reject(new Error(`daemon exited ${c}`)));
  });
  return { exited, stop: () => proc.kill('SIGTERM') };
}

test('xenstore main: a durable daemon keeps acknowledged writes across a restart and exits 0 on SIGTERM', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-xs-main-'));
  const sock = path.join(dir, 'xenstored.sock');
  try {
    const d1 = await start(['--socket', sock, '--data', path.join(dir, 'data'), '--limit', 'maxValueBytes=8']);
    const c = await XsClient.connect(sock);
    const tx = await c.start();
    await c.write('/local/domain/7/name', 'guest', tx);
    await c.end(tx);
    await c.setPerms('/local/domain/7', ['b7']);
    await assert.rejects(c.write('/a', '123456789'), /E2BIG/); // --limit reached the adapter
    d1.stop();
    await c.whenClosed();
    assert.equal(await d1.exited, 0);
    const d2 = await start(['--socket', sock, '--data', path.join(dir, 'data')]);
    const c2 = await XsClient.connect(sock);
    assert.equal(await c2.read('/local/domain/7/name'), 'guest');
    assert.deepEqual(await c2.getPerms('/local/domain/7'), ['b7']);
    await c2.close();
    d2.stop();
    assert.equal(await d2.exited, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('xenstore main: bad arguments exit 2 with a usage line', async () => {
  const proc = spawn(process.execPath, [MAIN, '--limit', 'nonsense'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const code = await new Promise((resolve) => proc.on('exit', resolve));
  assert.equal(code, 2);
  assert.match(err, /usage|--limit/);
});
