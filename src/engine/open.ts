import type { Store } from '../api.js';
import { openStorage, type StorageOptions } from '../storage/index.js';
import { Engine, type EngineOptions } from './engine.js';
import { EmbeddedStore } from './store.js';

export interface OpenOptions extends Omit<EngineOptions, 'storage'>, StorageOptions {}

/**
 * Opens a store. `open()` is in memory; `open(dir)` is durable on a data
 * directory (created if missing; one store per directory at a time).
 *
 * `durability` (only with a directory):
 * - 'fsync' (default): a commit resolves only after its log record was
 *   written and fdatasync'ed; acknowledged commits survive a process crash,
 *   an OS crash and power loss (on a disk that honours flushes), and no
 *   reader ever sees a commit before that.
 * - 'none': a commit resolves once its record was handed to the kernel
 *   (write(2), no fdatasync); acknowledged commits survive the process being
 *   killed, but an OS crash or power loss may lose the most recent ones.
 */
export async function open(dir?: string, options: OpenOptions = {}): Promise<Store> {
  if (dir === undefined) return EmbeddedStore.create(options);
  const { durability, segmentBytes, snapshotsKept, snapshotEveryBytes, snapshotEveryRecords, fs, inlineValueBytes, cacheBytes, cachePolicy, valueFileBytes, valueWriteBytes, cacheWrites, ...engineOptions } = options;
  const storage = await openStorage(dir, { durability, segmentBytes, snapshotsKept, snapshotEveryBytes, snapshotEveryRecords, fs, inlineValueBytes, cacheBytes, cachePolicy, valueFileBytes, valueWriteBytes, cacheWrites });
  let engine: Engine;
  try {
    engine = new Engine({ ...engineOptions, storage });
  } catch (e) {
    await storage.close();
    throw e;
  }
  const store = new EmbeddedStore(engine);
  try {
    // Sessions of the previous run died with it: their ephemeral nodes go now
    // (the scan walks the whole tree, so skip it when recovery saw none).
    if (storage.mayHaveEphemerals) await engine.removeStaleEphemerals();
  } catch (e) {
    await store.close();
    throw e;
  }
  return store;
}
