/** Backends for the big file tests: the same store reached embedded, over the Unix socket and over TCP, with a second client on it. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Store } from '../../src/api.js';
import { connect } from '../../src/client/store.js';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { serve } from '../../src/server/server.js';

export interface BigBackend {
  readonly name: string;
  /** The first client. */
  readonly store: Store;
  /** Another client of the same store (a new connection when remote; the same embedded store otherwise). */
  other(): Promise<Store>;
  cleanup(): Promise<void>;
}

export type BackendKind = 'embedded' | 'unix' | 'tcp';
export const KINDS: readonly BackendKind[] = ['embedded', 'unix', 'tcp'];

export async function backend(kind: BackendKind, options: { durable?: boolean; maxValueBytes?: number; maxTxOps?: number } = {}): Promise<BigBackend> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-bigfile-'));
  const engineOpts = options.maxValueBytes === undefined ? {} : { maxValueBytes: options.maxValueBytes };
  const backing = (await (options.durable === true ? open(path.join(dir, 'data'), engineOpts) : open(undefined, engineOpts))) as EmbeddedStore;
  if (kind === 'embedded') {
    return {
      name: kind,
      store: backing,
      other: async () => backing,
      async cleanup() {
        await backing.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const limits = options.maxTxOps === undefined ? {} : { limits: { maxTxOps: options.maxTxOps } };
  const server = await serve(backing, kind === 'unix'
    ? { socket: path.join(dir, 'latchkey.sock'), ...limits }
    : { listen: { host: '127.0.0.1', port: 0 }, insecureLoopback: true, ...limits });
  const url = kind === 'unix' ? `unix://${server.socketPath}` : `tcp://127.0.0.1:${server.tcpAddress?.port ?? 0}`;
  const clients: Store[] = [await connect(url)];
  return {
    name: kind,
    store: clients[0]!,
    async other() {
      const c = await connect(url);
      clients.push(c);
      return c;
    },
    async cleanup() {
      for (const c of clients) await c.close().catch(() => {});
      await server.close();
      await backing.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
