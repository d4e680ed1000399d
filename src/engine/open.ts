import type { Store } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { EngineOptions } from './engine.js';
import { EmbeddedStore } from './store.js';

export interface OpenOptions extends Omit<EngineOptions, 'storage'> {}

/**
 * Opens a store. `open()` is in memory; `open(dir)` (durable, on a data
 * directory) arrives with the storage layer.
 */
export async function open(dir?: string, options: OpenOptions = {}): Promise<Store> {
  if (dir !== undefined) throw new LatchkeyError('INVALID_ARGUMENT', 'durable open(dir) is not available in this build');
  return EmbeddedStore.create(options);
}
