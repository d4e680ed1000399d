/**
 * Child of the durability benchmark: opens a data directory in a fresh
 * process and prints one JSON line with the time open took, the revision,
 * the node count and the process's RSS (after a GC when --expose-gc is on).
 */
import { open } from '../src/engine/open.js';

const dir = process.argv[2];
if (dir !== undefined) {
  const t0 = performance.now();
  const store = await open(dir);
  const ms = performance.now() - t0;
  (globalThis as { gc?: () => void }).gc?.();
  const stats = store.stats() as unknown as { nodes: number; storage: { replayedRecords: number; snapshotRevision: number } };
  console.log(JSON.stringify({
    ms, revision: store.revision, nodes: stats.nodes, rssMiB: process.memoryUsage().rss / 2 ** 20,
    heapMiB: process.memoryUsage().heapUsed / 2 ** 20,
    replayed: stats.storage.replayedRecords, snapshotRevision: stats.storage.snapshotRevision,
  }));
  await store.close();
}
