/** Remote backends for the contract suite: a server in this process on a real socket, and a client connected to it. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { connect } from '../../src/client/store.js';
import { type ServeOptions, serve } from '../../src/server/server.js';
import type { Backend } from './suite.js';

export async function remote(kind: 'unix' | 'tcp', extra: Partial<ServeOptions> = {}): Promise<Backend> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-contract-'));
  const backing = (await open()) as EmbeddedStore;
  const server = await serve(backing, kind === 'unix'
    ? { socket: path.join(dir, 'latchkey.sock'), ...extra }
    : { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ...extra });
  const url = kind === 'unix' ? `unix://${server.socketPath}` : `tcp://127.0.0.1:${server.tcpAddress!.port}`;
  const store = await connect(url);
  return {
    store,
    async cleanup() {
      await store.close();
      await server.close();
      await backing.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
