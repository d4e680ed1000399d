import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { findBinary, freePort, rssMiB, startServer, stopAll, tempDir } from '../../bench/peers/server.js';

test('peers: a binary that is not installed is reported as missing, not guessed', () => {
  assert.equal(findBinary('latchkey-no-such-peer-binary'), undefined);
  assert.ok(findBinary('node') !== undefined || findBinary(process.execPath.split('/').at(-1)!) !== undefined);
});

test('peers: freePort gives a usable TCP port number', async () => {
  const a = await freePort();
  assert.ok(a > 0 && a < 65536);
});

test('peers: stopAll stops every started server and removes its temp dir', async () => {
  const dir = tempDir('selftest');
  const s = await startServer('sleeper', process.execPath, ['-e', 'setInterval(() => {}, 1000)'], async () => true, dir);
  assert.ok(Number.isFinite(rssMiB(s.child.pid)));
  let closed = false;
  s.onStop(() => {
    closed = true;
  });
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  await stopAll();
  await exited;
  assert.ok(closed);
  assert.notEqual(s.child.exitCode ?? s.child.signalCode, null);
  assert.equal(existsSync(dir), false);
});

test('peers: a server that exits during start-up fails with its output, and its dir is removed', async () => {
  const dir = tempDir('selftest');
  await assert.rejects(
    startServer('crasher', process.execPath, ['-e', 'console.error("bad flag"); process.exit(3)'], async () => false, dir, 5000),
    /crasher exited during start-up: bad flag/,
  );
  assert.equal(existsSync(dir), false);
});
