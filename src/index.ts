import type { Store } from './api.js';
import { type SharedOptions, openShared } from './shared.js';
import { invalidArgument } from './core/errors.js';
import { type ConnectOptions, type RemoteStore, connect as connectRemote } from './client/store.js';
import { type EtcdStore, connectEtcd } from './etcd/store.js';
import { open as openEmbedded, type OpenOptions as EmbeddedOpenOptions } from './engine/open.js';

export * from './api.js';
export { LatchkeyError, BugError, ErrorCodes } from './core/errors.js';
export type { ErrorCode } from './core/errors.js';
export { RemoteStore } from './client/store.js';
export type { ConnectOptions } from './client/store.js';
export { EtcdStore, connectEtcd } from './etcd/store.js';
export { serve, LatchkeyServer } from './server/server.js';
export type { ServeOptions } from './server/server.js';
export { AuthTable } from './server/auth.js';
export { openShared } from './shared.js';
export type { SharedOptions } from './shared.js';

export type OpenOptions =
  | (EmbeddedOpenOptions & { shared?: false })
  | (SharedOptions & { shared: true });

/**
 * Opens a store.
 * - `open()`: in memory, in this process.
 * - `open(dir)`: durable on a data directory, owned by this process.
 * - `open(dir, { shared: true })`: the directory's server — connects to the
 *   one serving `dir`, or starts one as a detached child (it exits once idle);
 *   any number of processes can open the same directory this way.
 */
export async function open(dir?: string, options: OpenOptions = {}): Promise<Store> {
  if (options.shared === true) {
    if (dir === undefined) throw invalidArgument('open: { shared: true } needs a data directory');
    const { shared: _shared, ...rest } = options;
    return openShared(dir, rest);
  }
  const { shared: _shared, ...rest } = options;
  return openEmbedded(dir, rest);
}

/**
 * Connects to a store by URL: a latchkey server (`unix:///path/latchkey.sock`,
 * `tcp://host:port`, `tls://host:port`), or an etcd cluster
 * (`etcd://host:port,host:port/?prefix=/latchkey&ttl=10`, docs/etcd.md).
 */
export function connect(url: `etcd://${string}`, options?: ConnectOptions): Promise<EtcdStore>;
export function connect(url: string, options?: ConnectOptions): Promise<RemoteStore>;
export function connect(url: string, options: ConnectOptions = {}): Promise<RemoteStore | EtcdStore> {
  if (typeof url === 'string' && url.startsWith('etcd://')) return connectEtcd(url);
  return connectRemote(url, options);
}
