import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cliServer } from './helpers.js';

describe('cli: txn', () => {
  let t: Awaited<ReturnType<typeof cliServer>>;
  before(async () => { t = await cliServer(); });
  after(async () => { await t.server.stop(); });

  test('cli: txn runs the script as one transaction and prints the reads after the commit', async () => {
    await t.lk(['set', '/q/1', 'job one']);
    const script = [
      '# move job 1 from the queue to running',
      'get /q/1',
      'exists /run/1',
      'check /q/1 version=1',
      'check /run/1 absent',
      'rm /q/1',
      'create /run/1 "worker a"',
      'set /bin base64:AAEC',
      'ls /run',
      '',
    ].join('\n');
    const r = await t.lk(['txn'], { input: script });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^\/q\/1 = "job one"\n\/run\/1 absent\n\/run: 1\nOK revision \d+\n$/);
    assert.equal((await t.lk(['get', '/run/1'])).stdout, 'worker a');
    assert.equal((await t.lk(['get', '/q/1'])).code, 3);
    assert.deepEqual((await t.lk(['get', '/bin'])).stdoutBytes, Buffer.from([0, 1, 2]));
  });

  test('cli: txn --json prints one object per read and the commit', async () => {
    await t.lk(['set', '/j', 'x']);
    const r = await t.lk(['txn', '--json'], { input: 'get /j\nset /j y\n' });
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines[0]!['value'], 'x');
    assert.equal(lines[1]!['committed'], true);
  });

  test('cli: a check that does not hold → CONFLICT, exit 4, nothing written', async () => {
    await t.lk(['set', '/c', 'v1']);
    await t.lk(['set', '/c', 'v2']);
    const r = await t.lk(['txn'], { input: 'set /c/other 1\ncheck /c version=1\nset /c v3\n' });
    assert.equal(r.code, 4);
    assert.equal(r.stdout, 'CONFLICT\n');
    assert.match(r.stderr, /CONFLICT/);
    assert.equal((await t.lk(['get', '/c'])).stdout, 'v2');
    assert.equal((await t.lk(['get', '/c/other'])).code, 3);
  });

  test('cli: a bad line is a usage error naming it, before anything is sent', async () => {
    const r = await t.lk(['txn'], { input: 'set /ok 1\nfrob /x\n' });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /line 2: unknown operation frob/);
    assert.equal((await t.lk(['get', '/ok'])).code, 3);
  });

  test('cli: an error inside the transaction aborts it with its code', async () => {
    await t.lk(['set', '/e', '1']);
    const r = await t.lk(['txn'], { input: 'set /e/child 1\ncreate /e\n' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /EXISTS/);
    assert.equal((await t.lk(['get', '/e/child'])).code, 3);
  });
});
