import { test } from 'node:test';
import assert from 'node:assert/strict';
import { files, tempDir } from './helpers.js';
import { runCrashTest } from './crash-harness.js';

test('crash: 32 SIGKILLs of a process running concurrent durable transactions lose nothing acknowledged, leave nothing partial', async () => {
  await using tmp = await tempDir('latchkey-crash-');
  const dir = tmp.path;
  const r = await runCrashTest({ dir, kills: 32, workers: 16, maxLifeMs: 450 });
  assert.equal(r.kills, 32);
  assert.ok(r.acknowledged > 0, 'the child acknowledged transactions');
  assert.ok(r.present >= r.acknowledged);
  assert.ok(r.killedBeforeReady < r.kills, 'kills landed during commits');
  assert.ok((await files(dir, /\.snap$/)).length > 0, 'snapshots were taken (and segments rotated) between kills');
});

test("crash: with durability 'none', acknowledged transactions still survive SIGKILL (the kernel has them)", async () => {
  await using tmp = await tempDir('latchkey-crash-none-');
  const dir = tmp.path;
  const r = await runCrashTest({ dir, kills: 10, workers: 16, maxLifeMs: 450, durability: 'none' });
  assert.ok(r.acknowledged > 0);
});
