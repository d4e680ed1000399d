import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cliServer, run, startServer } from './helpers.js';

describe('cli: node commands', () => {
  let t: Awaited<ReturnType<typeof cliServer>>;
  before(async () => { t = await cliServer(); });
  after(async () => { await t.server.stop(); });

  test('cli: set then get prints the value as it is', async () => {
    assert.equal((await t.lk(['set', '/a/b', 'hello'])).code, 0);
    const r = await t.lk(['get', '/a/b']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, 'hello');
  });

  test('cli: set reads the value from stdin, binary included', async () => {
    const bytes = Buffer.from([0, 1, 2, 255, 10, 13]);
    assert.equal((await t.lk(['set', '/bin'], { input: bytes })).code, 0);
    const r = await t.lk(['get', '/bin']);
    assert.deepEqual(r.stdoutBytes, bytes);
    const j = JSON.parse((await t.lk(['get', '/bin', '--json'])).stdout) as { base64: string; stat: { version: number } };
    assert.equal(j.base64, bytes.toString('base64'));
    assert.equal(j.stat.version, 1);
  });

  test('cli: get of a missing node exits 3 with NOT_FOUND on stderr', async () => {
    const r = await t.lk(['get', '/nope']);
    assert.equal(r.code, 3);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /NOT_FOUND/);
  });

  test('cli: --if-version not met exits 4 and leaves the value', async () => {
    await t.lk(['set', '/v', 'one']);
    const r = await t.lk(['set', '/v', 'two', '--if-version', '7']);
    assert.equal(r.code, 4);
    assert.match(r.stderr, /CONFLICT/);
    assert.equal((await t.lk(['get', '/v'])).stdout, 'one');
    assert.equal((await t.lk(['set', '/v', 'two', '--if-version', '1'])).code, 0);
    assert.equal((await t.lk(['get', '/v'])).stdout, 'two');
  });

  test('cli: add creates a counter at 0, adds (negative too), prints the new value; a non-integer exits 2', async () => {
    const r = await t.lk(['add', '/ctr/a', '5']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '5\n');
    assert.equal((await t.lk(['add', '/ctr/a', '-7'])).stdout, '-2\n');
    assert.deepEqual(JSON.parse((await t.lk(['add', '/ctr/a', '3', '--json'])).stdout), { path: '/ctr/a', value: 1 });
    assert.equal((await t.lk(['get', '/ctr/a'])).stdout, '1');
    await t.lk(['set', '/ctr/s', 'text']);
    const bad = await t.lk(['add', '/ctr/s', '1']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /INVALID_ARGUMENT/);
    assert.equal((await t.lk(['get', '/ctr/s'])).stdout, 'text');
    assert.equal((await t.lk(['add', '/ctr/a', '1.5'])).code, 2);
    assert.equal((await t.lk(['add', '/ctr/a'])).code, 2);
  });

  test('cli: ls lists children sorted; -r draws the tree; --json', async () => {
    await t.lk(['set', '/t/b/x', '1']);
    await t.lk(['set', '/t/a', '2']);
    await t.lk(['set', '/t/b/y', '3']);
    assert.equal((await t.lk(['ls', '/t'])).stdout, 'a\nb\n');
    assert.deepEqual(JSON.parse((await t.lk(['ls', '/t', '--json'])).stdout), ['a', 'b']);
    assert.equal((await t.lk(['ls', '-r', '/t'])).stdout, '/t\n├── a\n└── b\n    ├── x\n    └── y\n');
    assert.deepEqual(JSON.parse((await t.lk(['ls', '-r', '/t', '--json'])).stdout), ['/t', '/t/a', '/t/b', '/t/b/x', '/t/b/y']);
    const long = (await t.lk(['ls', '-l', '/t'])).stdout.split('\n');
    assert.match(long[0]!, /^VERSION\s+MODREV\s+CHILDREN\s+BYTES/);
    assert.match(long[2]!, /\s2\s+0\s+b$/);
  });

  test('cli: rm needs -r for a subtree; -f tolerates a missing node', async () => {
    await t.lk(['set', '/r/x/y', '1']);
    const r = await t.lk(['rm', '/r/x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NOT_EMPTY/);
    assert.equal((await t.lk(['rm', '-r', '/r/x'])).code, 0);
    assert.equal((await t.lk(['get', '/r/x'])).code, 3);
    assert.equal((await t.lk(['rm', '/r/x'])).code, 3);
    assert.equal((await t.lk(['rm', '-f', '/r/x'])).code, 0);
  });

  test('cli: stat shows the metadata', async () => {
    await t.lk(['set', '/s', 'abc']);
    await t.lk(['set', '/s', 'abcd']);
    const j = JSON.parse((await t.lk(['stat', '/s', '--json'])).stdout) as Record<string, number>;
    assert.equal(j['version'], 2);
    assert.equal(j['size'], 4);
    assert.match((await t.lk(['stat', '/s'])).stdout, /^version\s+2$/m);
  });

  test('cli: mkdir needs the parent; -p makes parents and tolerates an existing node', async () => {
    const r = await t.lk(['mkdir', '/m/n']);
    assert.equal(r.code, 3);
    assert.equal((await t.lk(['mkdir', '-p', '/m/n'])).code, 0);
    assert.equal((await t.lk(['mkdir', '/m/o'])).code, 0);
    const again = await t.lk(['mkdir', '/m/o']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /EXISTS/);
    await t.lk(['set', '/m/n', 'kept']);
    assert.equal((await t.lk(['mkdir', '-p', '/m/n'])).code, 0);
    assert.equal((await t.lk(['get', '/m/n'])).stdout, 'kept');
  });

  test('cli: stats --json and top --once', async () => {
    const s = JSON.parse((await t.lk(['stats', '--json'])).stdout) as { revision: number; nodes: number };
    assert.ok(s.revision > 0);
    assert.ok(s.nodes > 0);
    const top = await t.lk(['top', '--once']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, new RegExp(`revision ${s.revision}\\b`));
    assert.match(top.stdout, /HELD LOCKS \(0\)/);
    // Sessions from listSessions: the server's own default one and top's own, over the Unix socket.
    assert.match(top.stdout, /SESSIONS \([2-9]\d*\)/);
    assert.match(top.stdout, /SESSION +NAME +VIA +ADDRESS +AGE +LEASE +HELD +WAITING +EPHEMERAL/);
    assert.match(top.stdout, /\bunix\b/);
  });

  test('cli: top without a terminal prints a frame each interval and ends on SIGINT', async () => {
    const top = t.lkStart(['top', '--interval', '100ms']);
    await top.waitFor(/HELD LOCKS[\s\S]*HELD LOCKS/);
    top.child.kill('SIGINT');
    const r = await top.done;
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /\x1b\[/, 'no screen control codes into a pipe');
    assert.match(r.stdout, /per second: commits \d/);
  });

  test('cli: snapshot on an in-memory server answers', async () => {
    const r = await t.lk(['snapshot']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('cli: --url beats LATCHKEY_URL; nothing listening exits 69', async () => {
    const r = await t.lk(['get', '/a/b', '--url', 'unix:///nonexistent/latchkey.sock']);
    assert.equal(r.code, 69);
    assert.match(r.stderr, /CONNECTION_LOST/);
  });

  test('cli: with no --url nor LATCHKEY_URL it uses ./latchkey-data/latchkey.sock', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'lk-cwd-'));
    mkdirSync(path.join(cwd, 'latchkey-data'));
    const local = await startServer(['--memory', '--socket', path.join(cwd, 'latchkey-data', 'latchkey.sock')]);
    try {
      assert.equal((await run(['set', '/here', 'local'], { cwd })).code, 0);
      assert.equal((await run(['get', '/here'], { cwd })).stdout, 'local');
      assert.equal((await t.lk(['get', '/here'])).code, 3, 'not on the other server');
    } finally {
      await local.stop();
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe('cli: usage', () => {
  const commands = ['serve', 'get', 'set', 'ls', 'rm', 'stat', 'mkdir', 'lock', 'watch', 'txn', 'top', 'stats', 'snapshot', 'check', 'repair', 'export', 'import', 'bench'];

  test('cli: every command has --help with examples', async () => {
    for (const c of commands) {
      const r = await run([c, '--help']);
      assert.equal(r.code, 0, c);
      assert.match(r.stdout, new RegExp(`usage: latchkey ${c}\\b`), c);
      if (c !== 'serve') assert.match(r.stdout, /examples:/, c);
    }
    const all = await run(['--help']);
    for (const c of commands) assert.match(all.stdout, new RegExp(`^  ${c}\\s`, 'm'));
    assert.match(all.stdout, /75\s+locked/);
  });

  test('cli: unknown command and bad options exit 2', async () => {
    assert.equal((await run(['frobnicate'])).code, 2);
    const r = await run(['get', '/a', '--bogus']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--bogus/);
    assert.equal((await run(['get'])).code, 2);
  });

  test('cli: serve reports bad options like every command (usage error, exit 2)', async () => {
    const cwd = mkdtempSync(path.join(os.tmpdir(), 'lk-cwd-'));
    try {
      const bogus = await run(['serve', '--bogus'], { cwd });
      assert.equal(bogus.code, 2);
      assert.match(bogus.stderr, /^latchkey serve: .*--bogus/);
      assert.match(bogus.stderr, /latchkey serve --help for usage/);
      const zero = await run(['serve', '--memory', '--ttl-ms', '0'], { cwd });
      assert.equal(zero.code, 2);
      assert.match(zero.stderr, /--ttl-ms expects a positive integer, got 0/);
      const notCount = await run(['serve', '--memory', '--max-value', '1e3'], { cwd });
      assert.equal(notCount.code, 2);
      assert.match(notCount.stderr, /--max-value expects a non-negative integer, got 1e3/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
