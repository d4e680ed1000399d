/**
 * The server over the served-store seam's generic path (src/server/served.ts
 * `servedStore`): what `serve --backend etcd` uses — no synchronous read fast
 * path, watches through a Store's iterator (IterableWatch), sessions made
 * asynchronously (their `ready()` holds the welcome), listSessions kept by
 * the adapter — exercised here over an embedded store, where it must keep
 * every promise the contract suites check.
 */
import { contractSuite } from './suite.js';
import { lockContractSuite } from './locks.js';
import { remote } from './backends.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { type ServedStore, servedStore } from '../../src/server/served.js';

/** The embedded store seen only through the Store API, its sessions ready a turn of the event loop later (as an etcd lease is). */
export function generic(s: EmbeddedStore): ServedStore {
  return servedStore(s, {
    ownedSession(o) {
      const session = s.ownedSession(o);
      return Object.assign(session, { ready: () => new Promise<void>((resolve) => setImmediate(resolve)) });
    },
  });
}

contractSuite('remote-served-tcp', () => remote('tcp', {}, false, {}, generic));
lockContractSuite('remote-served-unix', () => remote('unix', {}, false, {}, generic));
