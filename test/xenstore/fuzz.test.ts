/**
 * Random well-framed requests — any type number, payloads of path-like and
 * arbitrary bytes, random tx ids — on one connection, as dom0 or as a guest
 * (through its domain socket, permissions and quotas applying): every request gets
 * exactly one reply, in order, either of its own type or ERROR with a known
 * errno; no handler ever fails as a bug; the server keeps serving.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { open } from '../../src/index.js';
import { startXenstoreServer } from '../../src/xenstore/server.js';
import { XsType, nulTerminated, splitStrings, utf8 } from '../../src/xenstore/wire.js';
import { XsClient } from './client.js';

const ERRNOS = new Set(['EINVAL', 'EACCES', 'EEXIST', 'EISDIR', 'ENOENT', 'ENOMEM', 'ENOSPC', 'EIO', 'ENOTEMPTY', 'ENOSYS', 'EROFS', 'EBUSY', 'EAGAIN', 'EISCONN', 'E2BIG', 'EQUOTA']);

const piece = fc.oneof(
  fc.constantFrom('/a', '/a/b', 'rel', '/', '@releaseDomain', 'T', 'F', '0', '7', '99999', 'r5', 'n0', 'x', '', '//', '/a/', 'help', 'check', 'print'),
  fc.string({ maxLength: 12 }),
);
const payload = fc.oneof(
  fc.array(piece, { maxLength: 5 }).map((parts) => utf8(parts.map((p) => p + '\0').join(''))),
  fc.uint8Array({ maxLength: 64 }),
  fc.array(piece, { maxLength: 3 }).map((parts) => utf8(parts.join('\0'))),
);
const request = fc.record({
  type: fc.oneof(fc.integer({ min: 0, max: 27 }), fc.constant(0xffff), fc.constant(0xffff_ffff)),
  tx: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 }), fc.constant(0xffff_ffff)),
  payload,
});

test('xenstore fuzz: random requests get one reply each, in order, typed or a known errno; never a bug', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latchkey-xs-fuzz-'));
  const logs: string[] = [];
  const store = await open();
  const domainDir = path.join(dir, 'domains');
  const server = await startXenstoreServer(store, { socketPath: path.join(dir, 'xs.sock'), domainDir, log: (m) => logs.push(m) });
  const dom0 = await XsClient.connect(server.socketPath);
  try {
    await fc.assert(fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 40 }), fc.boolean(), async (reqs, asGuest) => {
      if (asGuest) {
        // (Re-)introduce guest 3 (a fuzzed RELEASE may have removed it); its home is its own.
        await dom0.raw(XsType.INTRODUCE, nulTerminated(['3', '33', '1']));
        await dom0.write('/local/domain/3/x', '1');
        await dom0.setPerms('/local/domain/3', ['n3']);
      }
      const c = await XsClient.connect(asGuest ? path.join(domainDir, '3') : server.socketPath);
      try {
        // All pipelined at once.
        const replies = await Promise.all(reqs.map((r) => c.raw(r.type, r.payload, r.tx)));
        replies.forEach((rep, i) => {
          const req = reqs[i]!;
          assert.equal(rep.txId, req.tx >>> 0);
          if (rep.type === XsType.ERROR) {
            const [errno] = splitStrings(rep.payload);
            assert.ok(ERRNOS.has(errno ?? ''), `unknown errno ${JSON.stringify(errno)}`);
          } else {
            assert.equal(rep.type, req.type);
          }
        });
        const ids = replies.map((r) => r.reqId);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      } finally {
        if (!c.closed) await c.close();
      }
    }), { numRuns: 200 });
    await dom0.close();
    assert.deepEqual(logs.filter((l) => l.includes('bug')), []);
    const c = await XsClient.connect(server.socketPath);
    await c.write('/alive', 'yes');
    assert.equal(await c.read('/alive'), 'yes');
    await c.close();
  } finally {
    await server.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
