/**
 * `openShared(dir)`: the client's shared opening (client/shared.ts) with the
 * command line's server process (cli/server-process.ts) as the way to start
 * a server. Wired here, above both layers, so the dependency is explicit.
 */
import { type RemoteStore } from './client/store.js';
import { type SharedOptions, openShared as openSharedWith } from './client/shared.js';
import { startServerProcess } from './cli/server-process.js';

export type { SharedOptions } from './client/shared.js';

/** Connects to the server of data directory `dir`, starting one if none serves it. */
export function openShared(dir: string, options: SharedOptions = {}): Promise<RemoteStore> {
  return openSharedWith(dir, options, startServerProcess);
}
