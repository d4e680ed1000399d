/**
 * Writeout (storeblk): a handle's dirty blocks stored in one transaction of
 * their own, and the CONFLICT that names the blocks another client changed.
 * docs/bigfile.md, "Commit (writeout)". Runs outside the handle's lock
 * (seed 000, rule 1): every store call goes through `h.storage`, which
 * refuses to run with the lock held, and the page state is read under
 * `h.locked`, synchronously. During writeout the handle refuses writes,
 * truncation and discards (rule 3), so dirty pages are pinned and unchanged;
 * each value stored is a copy of its page (rule 4).
 */
import type { BigFileInfo, Store, Transaction } from '../api.js';
import { BugError, LatchkeyError } from '../core/errors.js';
import type { PageCache } from './cache.js';
import { blockPath, blocksDir, encodeChange, encodeMeta, logPath, toRanges } from './meta.js';
import { IO_CONCURRENCY, allZero, layBase, pool } from './pages.js';

/** The change feed's value stays well under any value limit; past it a commit reports "everything changed". */
const MAX_CHANGE_BYTES = 64 * 1024;

type Gate = <T>(fn: () => T) => T;

/** What writeout needs of a handle. */
export interface WriteoutHost {
  readonly path: string;
  readonly blockSize: number;
  readonly store: Store;
  /** The snapshot's transaction (reads only). */
  readonly snap: Transaction;
  readonly snapshot: number;
  readonly snapSize: number;
  readonly snapModRev: number;
  readonly cache: PageCache;
  metaFor(size: number): BigFileInfo;
  /** The handle's size and truncation mark (read under the lock). */
  plan(): { size: number; truncatedTo: number };
  /** Counts a read made by the snapshot's transaction. */
  countRead(): void;
  locked: Gate;
  storage: Gate;
}


/**
 * Stores the dirty blocks, deletions and metadata in one transaction of
 * their own (the snapshot's transaction only ever reads, so reading a block
 * another client changed never makes a commit conflict: only writing one
 * does). Each block written is checked against its modRev in the snapshot
 * (or its absence), so the commit is CONFLICT when another client changed
 * it; a commit that resizes the file or creates a block checks that the
 * size did not move either. Undefined when there is nothing to store.
 */
export async function writeout(h: WriteoutHost): Promise<{ revision: number; changed: number; size: number } | undefined> {
  const bs = h.blockSize;
  const snap = h.snap;
  const plan = h.locked(() => ({
    dirty: h.cache.entries().filter(([, p]) => p.dirty).map(([i]) => i),
    ...h.plan(),
  }));
  if (plan.dirty.length === 0 && plan.size === h.snapSize && plan.truncatedTo === h.snapSize) return undefined;
  const changed = new Set<number>(plan.dirty);
  // The snapshot's modRev (and base) of every dirty block: dirty pages are pinned (never evicted) and unchanged during writeout.
  await pool(plan.dirty, IO_CONCURRENCY, async (i) => {
    const p = h.locked(() => h.cache.get(i));
    if (p === undefined || !p.dirty) throw new BugError(`bigfile: dirty page ${i} changed during writeout`);
    if (p.known && p.based) return;
    h.countRead();
    const e = await h.storage(() => snap.get(blockPath(h.path, i)));
    h.locked(() => {
      layBase(p, e?.value, plan.truncatedTo - i * bs);
      p.known = true;
      p.modRev = e?.stat.modRev;
    });
  });
  // Blocks the truncation cut off entirely, as the snapshot has them.
  const gone: number[] = [];
  if (plan.truncatedTo < h.snapSize) {
    const firstGone = Math.ceil(plan.truncatedTo / bs);
    let after: string | undefined;
    for (;;) {
      const names = await h.storage(() => snap.list(blocksDir(h.path), after === undefined ? { limit: 10000 } : { after, limit: 10000 }));
      for (const n of names) {
        const i = Number(n);
        if (Number.isSafeInteger(i) && i >= firstGone && !changed.has(i)) gone.push(i);
      }
      if (!names.more) break;
      after = names.at(-1);
    }
    for (const i of gone) changed.add(i);
  }
  const tx = h.storage(() => h.store.begin());
  try {
    let sizeMatters = plan.size !== h.snapSize || plan.truncatedTo !== h.snapSize;
    // Checks and writes, each block's check right before its write; every value a copy (rule 4).
    await pool(plan.dirty, IO_CONCURRENCY, async (i) => {
      const { bytes, modRev } = h.locked(() => {
        const p = h.cache.get(i)!;
        const len = Math.max(0, Math.min(bs, plan.size - i * bs));
        return { bytes: len === 0 || allZero(p.data, len) ? undefined : p.data.slice(0, len), modRev: p.modRev };
      });
      const at = blockPath(h.path, i);
      // The check and the write go out together (pipelined over a socket); a failed check fails the commit whatever the write did.
      if (modRev === undefined) {
        sizeMatters = true;
        await Promise.all([
          h.storage(() => tx.check(at, { exists: false })),
          bytes !== undefined ? h.storage(() => tx.set(at, bytes)) : undefined,
        ]);
      } else {
        await Promise.all([
          h.storage(() => tx.check(at, { modRev })),
          bytes !== undefined ? h.storage(() => tx.set(at, bytes)) : h.storage(() => tx.delete(at)),
        ]);
      }
    });
    await pool(gone, IO_CONCURRENCY, async (i) => {
      await h.storage(() => tx.delete(blockPath(h.path, i)));
    });
    if (sizeMatters) await h.storage(() => tx.check(h.path, { modRev: h.snapModRev }));
    if (plan.size !== h.snapSize) await h.storage(() => tx.set(h.path, encodeMeta(h.metaFor(plan.size))));
    await h.storage(() => tx.set(logPath(h.path), encodeChange(toRanges(changed), MAX_CHANGE_BYTES)));
    const r = await h.storage(() => tx.commit());
    return { revision: r.revision, changed: changed.size, size: plan.size };
  } catch (e) {
    if (tx.state === 'open') await h.storage(() => tx.abort()).catch(() => {});
    throw e;
  }
}

/** A CONFLICT naming the dirty blocks another client changed since the snapshot (and whether it resized the file). */
export async function nameConflict(h: WriteoutHost, e: LatchkeyError): Promise<LatchkeyError> {
  const seen = h.locked(() => h.cache.entries().filter(([, p]) => p.dirty && p.known).map(([i, p]) => ({ i, modRev: p.modRev })));
  const blocks: number[] = [];
  await pool(seen, IO_CONCURRENCY, async ({ i, modRev }) => {
    const now = await h.storage(() => h.store.get(blockPath(h.path, i)));
    if (now?.stat.modRev !== modRev) blocks.push(i);
  }).catch(() => {});
  const meta = await h.storage(() => h.store.get(h.path)).catch(() => undefined);
  const resized = meta?.stat.modRev !== h.snapModRev;
  blocks.sort((a, b) => a - b);
  const what = [blocks.length > 0 ? `block${blocks.length > 1 ? 's' : ''} ${blocks.join(', ')}` : '', resized ? 'its size' : ''].filter((s) => s !== '').join(' and ') || 'the file';
  return new LatchkeyError('CONFLICT', `bigfile ${h.path}: another client changed ${what} since this handle's snapshot (r${h.snapshot}); nothing was stored, the handle's writes are discarded`, {
    path: e.path ?? h.path, cause: e, info: { blocks, resized, snapshotRevision: h.snapshot },
  });
}
