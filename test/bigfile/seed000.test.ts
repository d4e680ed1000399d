/**
 * Seed 000 (wendelin.core fb4bfb32): one handle commits (storeblk) while
 * invalidations for it arrive from another client's commit. In wendelin.core
 * this deadlocked (the committer held the virtmem lock and waited for the
 * storage lock; the invalidation held the storage lock and waited for
 * virtmem). Here both parties commit at once, a thousand times, over a shared
 * embedded store and over the Unix socket (two connections); each round ends
 * with both handles refreshed and reading every block, which must be the
 * last committed bytes: no deadlock, no lost page, no stale page.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatchkeyError, type Store } from '../../src/index.js';
import { type BackendKind, backend } from './backends.js';

const BS = 512;
const BLOCKS = 8;
const ROUNDS = 1000;

function page(round: number, who: number): Uint8Array {
  const b = new Uint8Array(BS);
  const v = new DataView(b.buffer);
  for (let i = 0; i + 8 <= BS; i += 8) {
    v.setUint32(i, round);
    v.setUint32(i + 4, who);
  }
  return b;
}

/** Fails the round instead of hanging the run: a deadlock shows as this. */
function deadline<T>(p: Promise<T>, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`deadlock? ${what} did not finish in 60 s`)), 60_000);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

async function scenario(kind: BackendKind): Promise<void> {
  const b = await backend(kind);
  try {
    const s1: Store = b.store;
    const s2: Store = await b.other();
    const path = '/seed000/file';
    const f1 = await s1.bigFile(path, { blockSize: BS });
    const f2 = await s2.bigFile(path);
    const a = await f1.open({ cacheBytes: 4 * BLOCKS * BS });
    const c = await f2.open({ cacheBytes: 4 * BLOCKS * BS });
    const model: Uint8Array[] = Array.from({ length: BLOCKS }, () => new Uint8Array(BS));
    a.write(0, new Uint8Array(BLOCKS * BS));
    await a.commit();
    await c.refresh();
    let conflicts = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      // Both handles have every block cached, so the other's commit must invalidate some of them.
      await Promise.all([a.read(0, BLOCKS * BS), c.read(0, BLOCKS * BS)]);
      // Disjoint blocks most rounds (both commit); the same block every 7th round (exactly one commits).
      const ia = (round * 2) % BLOCKS;
      const ic = round % 7 === 0 ? ia : (round * 2 + 1) % BLOCKS;
      a.write(ia * BS, page(round, 1));
      c.write(ic * BS, page(round, 2));
      const [ra, rc] = await deadline(Promise.allSettled([a.commit(), c.commit()]), `round ${round}'s commits`);
      const okA = ra.status === 'fulfilled';
      const okC = rc.status === 'fulfilled';
      for (const r of [ra, rc]) {
        if (r.status === 'rejected') {
          assert.ok(LatchkeyError.is(r.reason, 'CONFLICT'), `round ${round}: ${String(r.reason)}`);
          assert.deepEqual((r.reason as LatchkeyError).info?.['blocks'], [ia]);
          conflicts++;
        }
      }
      if (ia === ic) {
        assert.ok(okA !== okC, `round ${round}: exactly one of two writers of block ${ia} commits (a ${okA}, c ${okC})`);
      } else {
        assert.ok(okA && okC, `round ${round}: disjoint blocks both commit`);
      }
      // Apply in revision order (the later commit wins a shared block; only one commits it anyway).
      const done = [okA ? { i: ia, p: page(round, 1), rev: (ra as PromiseFulfilledResult<{ revision: number }>).value.revision } : undefined,
        okC ? { i: ic, p: page(round, 2), rev: (rc as PromiseFulfilledResult<{ revision: number }>).value.revision } : undefined]
        .filter((x) => x !== undefined).sort((x, y) => x.rev - y.rev);
      for (const d of done) model[d.i] = d.p;
      await deadline(Promise.all([a.refresh(), c.refresh()]), `round ${round}'s refreshes`);
      const want = new Uint8Array(BLOCKS * BS);
      model.forEach((m, i) => want.set(m, i * BS));
      const [ga, gc] = await Promise.all([a.read(0, BLOCKS * BS), c.read(0, BLOCKS * BS)]);
      if (!Buffer.from(ga).equals(want)) assert.fail(`round ${round}: handle a read a stale or lost page`);
      if (!Buffer.from(gc).equals(want)) assert.fail(`round ${round}: handle c read a stale or lost page`);
    }
    assert.equal(conflicts, Math.floor(ROUNDS / 7));
    // Exact invalidation, never a full reload.
    assert.equal(a.stats().fullDrops + c.stats().fullDrops, 0);
    assert.ok(a.stats().invalidations >= ROUNDS - conflicts);
    await a.close();
    await c.close();
  } finally {
    await b.cleanup();
  }
}

test('seed 000: two handles commit at once while each other\'s invalidations arrive, 1000 rounds (embedded)', () => scenario('embedded'));
test('seed 000: the same over the Unix socket, two connections, 1000 rounds', () => scenario('unix'));
