import { cpSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { COMMIT_BASE_BYTES, commitBytes } from '../../src/core/commit-size.js';
import { LatchkeyError } from '../../src/core/errors.js';
import type { Mutation } from '../../src/core/tree.js';
import { open } from '../../src/engine/open.js';
import { MAX_RECORD_PAYLOAD, RECORD_HEADER_SIZE, encodeRecord } from '../../src/storage/wal.js';
import { removeDir, tempDir } from '../storage/helpers.js';

const CAP = 1024 * 1024;
// set('/big/a', v) on an empty store commits put /big (24 + 4) and put /big/a (24 + 6 + |v|), plus the base 8.
const FIXED = COMMIT_BASE_BYTES + (24 + 4) + (24 + 6);

const tooLarge = (e: unknown): boolean => e instanceof LatchkeyError && e.code === 'TOO_LARGE';

test('commit size: at maxCommitBytes a set, a multi and a transaction commit and reopen; one byte past fails TOO_LARGE with nothing written, and the store still reopens', async () => {
  const dir = (await tempDir()).path;
  try {
    const kinds = ['set', 'multi', 'transaction'] as const;
    for (const kind of kinds) {
      const write = async (s: Awaited<ReturnType<typeof open>>, size: number): Promise<void> => {
        const v = new Uint8Array(size).fill(kind.length);
        if (kind === 'set') await s.set('/big/a', v);
        else if (kind === 'multi') await s.multi([{ op: 'set', path: '/big/a', value: v }]);
        else await s.transaction(async (tx) => { await tx.set('/big/a', v); }, { retries: 0 });
      };
      // One byte past: refused before anything is written.
      let s = await open(dir, { maxCommitBytes: CAP });
      const rev = s.revision;
      await assert.rejects(write(s, CAP - FIXED + 1), tooLarge, `${kind} one byte past the cap`);
      assert.equal(s.revision, rev);
      assert.equal(await s.exists('/big'), false);
      await s.close();
      s = await open(dir, { maxCommitBytes: CAP });
      assert.equal(s.revision, rev, `${kind}: nothing of the refused commit came back`);
      // Exactly at the cap: acknowledged, and read back at reopen (log replay, no snapshot).
      await write(s, CAP - FIXED);
      await s.close();
      s = await open(dir, { maxCommitBytes: CAP });
      assert.equal(s.revision, rev + 1);
      assert.equal((await s.get('/big/a'))?.value.length, CAP - FIXED);
      await s.delete('/big', { recursive: true });
      await s.close();
    }
  } finally {
    await removeDir(dir);
  }
});

test('commit size: the default cap (64 MiB) stops a transaction of 1 MiB sets at the set that crosses it, aborting it; the store reopens', async () => {
  const dir = (await tempDir()).path;
  try {
    const s = await open(dir, { durability: 'none' });
    const mib = new Uint8Array(1024 * 1024); // one buffer for every set: the test itself stays small
    const tx = s.begin();
    let refusedAt = -1;
    for (let i = 0; i < 260; i++) {
      try {
        await tx.set(`/v/${i}`, mib);
      } catch (e) {
        assert.ok(tooLarge(e), String(e));
        refusedAt = i;
        break;
      }
    }
    assert.equal(refusedAt, 63, 'the 64th MiB crosses 64 MiB with the per-change overhead');
    await assert.rejects(tx.commit(), (e: unknown) => e instanceof LatchkeyError && e.code === 'ABORTED');
    await s.set('/after', 'x');
    await s.close();
    const again = await open(dir);
    assert.equal(await again.exists('/v'), false);
    assert.equal((await again.get('/after'))?.text(), 'x');
    await again.close();
  } finally {
    await removeDir(dir);
  }
});

test('commit size: maxCommitBytes above the log reader\'s record limit is refused', async () => {
  await assert.rejects(open(undefined, { maxCommitBytes: MAX_RECORD_PAYLOAD + 1 }), (e: unknown) => e instanceof LatchkeyError && e.code === 'INVALID_ARGUMENT');
  const s = await open(undefined, { maxCommitBytes: MAX_RECORD_PAYLOAD });
  await s.close();
});

const segment = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }).filter((x) => !x.includes('/'));
const pathArb = fc.array(segment, { minLength: 1, maxLength: 4 }).map((segs) => `/${segs.join('/')}`);
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('put' as const), path: pathArb, value: fc.uint8Array({ maxLength: 70000 }) }),
  fc.record({ op: fc.constant('put' as const), path: pathArb, value: fc.uint8Array({ maxLength: 300 }), ephemeralOwner: fc.string({ unit: 'grapheme', maxLength: 40 }), seq: fc.boolean() }),
  fc.record({ op: fc.constant('del' as const), path: pathArb }),
  fc.record({ op: fc.constant('perms' as const), path: pathArb, perms: fc.array(fc.string({ unit: 'grapheme', maxLength: 300 }), { maxLength: 20 }) }),
);

test('commit size: the measure bounds the encoded log record payload from above (so a commit under the cap is a record recovery reads)', () => {
  fc.assert(fc.property(fc.array(mutationArb, { maxLength: 40 }), (muts) => {
    const payload = encodeRecord(1, muts).length - RECORD_HEADER_SIZE;
    assert.ok(payload <= commitBytes(muts), `payload ${payload} > measure ${commitBytes(muts)}`);
  }), { numRuns: 300 });
});

// A session may own more ephemeral nodes than one commit can delete: its end (and, after a crash,
// recovery's cleanup of a previous run's ephemerals) must still delete every one of them.
test('commit size: a session owning more ephemerals than one commit can delete still loses them all when it ends, and after a crash', async () => {
  await using tmp = await tempDir('latchkey-ephemeral-cap-');
  const CAP = 1024;
  const N = 200; // 200 deletes of ~40-byte paths measure ~13 KiB: about 13 commits' worth
  const dir = `${tmp.path}/data`;
  const store = await open(dir, { maxCommitBytes: CAP });
  await store.create('/e');
  const crashed = store.session();
  const ending = store.session();
  for (let i = 0; i < N; i++) {
    await crashed.create(`/e/crashed-session-node-${String(i).padStart(4, '0')}`, '', { ephemeral: true });
    await ending.create(`/e/ending-session-node-${String(i).padStart(5, '0')}`, '', { ephemeral: true });
  }
  assert.equal((await store.list('/e')).length, 2 * N);
  // A crash while `crashed` is alive: its nodes are on disk, owned by a session of a run that died.
  const copy = `${tmp.path}/crash-copy`;
  cpSync(dir, copy, { recursive: true });
  await ending.close();
  assert.deepEqual([...(await store.list('/e'))].filter((n) => n.startsWith('ending-')), [], 'the ended session\'s ephemerals are gone');
  await store.close();
  const reopened = await open(copy, { maxCommitBytes: CAP });
  try {
    assert.deepEqual([...(await reopened.list('/e'))], [], 'recovery removed the dead run\'s ephemerals');
  } finally {
    await reopened.close();
  }
});
