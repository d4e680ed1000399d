import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cliServer } from './helpers.js';

describe('cli: watch', () => {
  let t: Awaited<ReturnType<typeof cliServer>>;
  before(async () => { t = await cliServer(); });
  after(async () => { await t.server.stop(); });

  test('cli: watch -r --from streams the events in order until interrupted', async () => {
    const from = (JSON.parse((await t.lk(['stats', '--json'])).stdout) as { revision: number }).revision + 1;
    await t.lk(['set', '/w/a', '1']);
    await t.lk(['set', '/w/b', 'two words']);
    await t.lk(['set', '/other', 'x']);
    await t.lk(['set', '/w/bin'], { input: Buffer.from([0, 255]) });
    await t.lk(['rm', '/w/a']);
    const w = t.lkStart(['watch', '-r', '/w', '--from', String(from)]);
    await w.waitFor('delete /w/a');
    // A live event, after the history.
    await t.lk(['set', '/w/c', 'live']);
    await w.waitFor('put /w/c live');
    w.child.kill('SIGINT');
    const r = await w.done;
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n').map((l) => l.replace(/^\d+ /, ''));
    assert.deepEqual(lines, ['put /w ""', 'put /w/a 1', 'put /w/b "two words"', 'put /w/bin base64:AP8=', 'delete /w/a', 'put /w/c live']);
    const revs = r.stdout.trim().split('\n').map((l) => Number(l.split(' ')[0]));
    assert.deepEqual(revs, [...revs].sort((a, b) => a - b));
  });

  test('cli: watch --json', async () => {
    const from = (JSON.parse((await t.lk(['stats', '--json'])).stdout) as { revision: number }).revision + 1;
    await t.lk(['set', '/j', 'v']);
    const w = t.lkStart(['watch', '/j', '--json', '--from', String(from)]);
    await w.waitFor('\n');
    w.child.kill('SIGTERM');
    const r = await w.done;
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.stdout.split('\n')[0]!), { type: 'put', path: '/j', revision: from, value: 'v' });
  });
});
