import { test } from 'node:test';
import assert from 'node:assert/strict';
import { files, removeDir, tempDir } from './helpers.js';
import { runCrashTest } from './crash-harness.js';

test('crash: 32 SIGKILLs of a process running concurrent durable transactions lose nothing acknowledged, leave nothing partial', async () => {
  const dir = await tempDir('latchkey-crash-');
  try {
    const r = await runCrashTest({ dir, kills: 32, workers: 16, maxLifeMs: 450 });
    assert.equal(r.kills, 32);
    assert.ok(r.acknowledged > 0, 'the child acknowledged transactions');
    assert.ok(r.present >= r.acknowledged);
    assert.ok(r.killedBeforeReady < r.kills, 'kills landed during commits');
    assert.ok((await files(dir, /\.snap$/)).length > 0, 'snapshots were taken (and segments rotated) between kills');
  } finally {
    await removeDir(dir);
  }
});

test("crash: with durability 'none', acknowledged transactions still survive SIGKILL (the kernel has them)", async () => {
  const dir = await tempDir('latchkey-crash-none-');
  try {
    const r = await runCrashTest({ dir, kills: 10, workers: 16, maxLifeMs: 450, durability: 'none' });
    assert.ok(r.acknowledged > 0);
  } finally {
    await removeDir(dir);
  }
});
