import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cliServer } from './helpers.js';

describe('cli: export / import', () => {
  let a: Awaited<ReturnType<typeof cliServer>>;
  let b: Awaited<ReturnType<typeof cliServer>>;
  before(async () => { [a, b] = await Promise.all([cliServer(), cliServer()]); });
  after(async () => { await Promise.all([a.server.stop(), b.server.stop()]); });

  test('cli: export then import into another server round-trips the tree, binary included', async () => {
    const bin = Buffer.from([0, 1, 2, 0xfe, 0xff, 10]);
    await a.lk(['set', '/cfg/name', 'latchkey']);
    await a.lk(['set', '/cfg/multi', 'line one\nline two']);
    await a.lk(['set', '/cfg/bin'], { input: bin });
    await a.lk(['mkdir', '-p', '/cfg/empty/dir']);
    await a.lk(['set', '/outside', 'not exported']);
    const dump = await a.lk(['export', '/cfg']);
    assert.equal(dump.code, 0, dump.stderr);
    const lines = dump.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines[0]!['latchkey'], 'dump');
    assert.deepEqual(lines.slice(1).map((l) => l['path']), ['/cfg', '/cfg/bin', '/cfg/empty', '/cfg/empty/dir', '/cfg/multi', '/cfg/name']);
    assert.equal(lines.find((l) => l['path'] === '/cfg/bin')!['base64'], bin.toString('base64'));

    const imp = await b.lk(['import', '--batch', '2'], { input: dump.stdout });
    assert.equal(imp.code, 0, imp.stderr);
    assert.equal(imp.stdout, 'imported 6 node(s)\n');
    assert.deepEqual((await b.lk(['get', '/cfg/bin'])).stdoutBytes, bin);
    assert.equal((await b.lk(['get', '/cfg/multi'])).stdout, 'line one\nline two');
    assert.equal((await b.lk(['ls', '-r', '/cfg'])).stdout, (await a.lk(['ls', '-r', '/cfg'])).stdout);
    assert.equal((await b.lk(['get', '/outside'])).code, 3);
    // Exporting the copy gives the same nodes.
    const again = await b.lk(['export', '/cfg']);
    assert.deepEqual(again.stdout.split('\n').slice(1), dump.stdout.split('\n').slice(1));
  });

  test('cli: a large import batches under the limits and draws no progress bar when stderr is not a terminal', async () => {
    const lines = [JSON.stringify({ latchkey: 'dump', version: 1, path: '/big', revision: 1 })];
    for (let i = 0; i < 1500; i++) lines.push(JSON.stringify({ path: `/big/n${String(i).padStart(4, '0')}`, value: `v${i}` }));
    const r = await b.lk(['import'], { input: lines.join('\n') + '\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'imported 1500 node(s)\n');
    assert.equal(r.stderr, '');
    assert.equal((await b.lk(['get', '/big/n1499'])).stdout, 'v1499');
    const ex = await b.lk(['export', '/big']);
    assert.equal(ex.stderr, '');
    assert.equal(ex.stdout.trim().split('\n').length, 1 + 1 + 1500);
  });

  test('cli: import rejects a broken line with its number', async () => {
    const r = await b.lk(['import'], { input: '{"path":"/x","value":"1"}\nnot json\n' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /line 2/);
  });
});
