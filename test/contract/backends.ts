/** Remote backends for the contract suite: a server in this process on a real socket, and a client connected to it. */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type OpenOptions, open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { connect } from '../../src/client/store.js';
import type { ServedStore } from '../../src/server/served.js';
import { type ServeOptions, serve } from '../../src/server/server.js';
import type { Store } from '../../src/api.js';
import type { Backend } from './suite.js';

/**
 * A server on a real socket and a client connected to it. `durable`: the
 * server's store lives in a directory, and the backend can crash it (see
 * Backend.crash: the directory is copied as it is on disk, the server is
 * closed, a new one serves the copy at the same address).
 */
export async function remote(kind: 'unix' | 'tcp', extra: Partial<ServeOptions> = {}, durable = false, openOptions: OpenOptions = {}, asServed?: (s: EmbeddedStore) => ServedStore): Promise<Backend> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-contract-'));
  let data = path.join(dir, 'data-0');
  let backing = (await (durable ? open(data, openOptions) : open())) as EmbeddedStore;
  const served = (s: EmbeddedStore): ServedStore => (asServed === undefined ? s : asServed(s));
  let server = await serve(served(backing), kind === 'unix'
    ? { socket: path.join(dir, 'latchkey.sock'), ...extra }
    : { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ...extra });
  const port = server.tcpAddress?.port ?? 0;
  const url = kind === 'unix' ? `unix://${server.socketPath}` : `tcp://127.0.0.1:${port}`;
  const store = await connect(url);
  let crashes = 0;
  const backend: Backend = {
    store,
    async cleanup() {
      await store.close();
      await server.close();
      await backing.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (durable) {
    backend.crash = async () => {
      const copy = path.join(dir, `data-${++crashes}`);
      cpSync(data, copy, { recursive: true });
      await server.close();
      await backing.close();
      data = copy;
      backing = (await open(data, openOptions)) as EmbeddedStore;
      server = await serve(served(backing), kind === 'unix'
        ? { socket: path.join(dir, 'latchkey.sock'), ...extra }
        : { listen: { host: '127.0.0.1', port }, insecureLoopback: true, ...extra });
      await store.exists('/'); // waits for the client to reconnect
      return store;
    };
  }
  return backend;
}

/** An embedded store in a directory; `crash` opens a copy of the directory as it is on disk. */
export async function disk(options: OpenOptions = {}): Promise<Backend> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-contract-'));
  let data = path.join(dir, 'data-0');
  const first = await open(data, options);
  const old: Store[] = [first];
  let crashes = 0;
  const backend: Backend = {
    store: first,
    async cleanup() {
      for (const s of old) await s.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
    async crash() {
      const copy = path.join(dir, `data-${++crashes}`);
      cpSync(data, copy, { recursive: true });
      data = copy;
      const s = await open(data, options);
      old.push(s);
      backend.store = s;
      return s;
    },
  };
  return backend;
}
