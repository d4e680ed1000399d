/**
 * `latchkey serve --backend`: what it refuses, before it connects to
 * anything (no etcd needed; serving from etcd is tested by
 * test/integration/etcd.sh, which starts a cluster).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from './helpers.js';

test('serve --backend: a bad URL, data-directory options, no listener, a domain directory without a XenStore socket and the console are refused with a clear error', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-serve-backend-'));
  const sock = path.join(dir, 's.sock');
  try {
    const cases: Array<[string[], number, RegExp]> = [
      [['--backend', 'redis://x:1', '--socket', sock], 2, /--backend expects etcd:\/\//],
      [['--backend', 'etcd://nohostport', '--socket', sock], 2, /INVALID_ARGUMENT.*host:port/],
      [['--backend', 'etcd://127.0.0.1:1', '--data', dir, '--socket', sock], 2, /--data is an option of the embedded store/],
      [['--backend', 'etcd://127.0.0.1:1', '--memory', '--socket', sock], 2, /--memory is an option of the embedded store/],
      [['--backend', 'etcd://127.0.0.1:1'], 2, /--backend needs --socket PATH or --listen/],
      // Guests' sockets are served from etcd now (the domain table is in the cluster): only the socket's absence is refused.
      [['--backend', 'etcd://127.0.0.1:1', '--socket', sock, '--xenstore-domain-dir', path.join(dir, 'dom')], 2, /--xenstore-domain-dir needs --xenstore-socket/],
      [['--backend', 'etcd://127.0.0.1:1', '--socket', sock, '--http', '127.0.0.1:0'], 2, /INVALID_ARGUMENT: --http is not available with --backend etcd/],
    ];
    for (const [args, code, re] of cases) {
      const r = await run(['serve', ...args]);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re, args.join(' '));
      assert.doesNotMatch(r.stdout, /ready/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
