/** A durable store served on TCP and on --http in this process, with an auth table (tests of src/http). */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { open } from '../../src/engine/open.js';
import type { EmbeddedStore } from '../../src/engine/store.js';
import { createLogger, logEngineEvents } from '../../src/http/log.js';
import { type HttpServer, startHttp } from '../../src/http/server.js';
import { AuthTable } from '../../src/server/auth.js';
import { type LatchkeyServer, serve } from '../../src/server/server.js';

export const ADMIN = 'admin-token-0001';
export const JOBS_WRITER = 'jobs-writer-0001';
export const READER = 'reader-token-0001';

export const AUTH = JSON.stringify({
  tokens: [
    { token: ADMIN, name: 'admin', grants: [{ prefix: '/', access: 'admin' }] },
    { token: JOBS_WRITER, name: 'jobs', grants: [{ prefix: '/jobs', access: 'write' }] },
    { token: READER, name: 'reader', grants: [{ prefix: '/jobs', access: 'read' }] },
  ],
});

export interface Served extends AsyncDisposable {
  readonly store: EmbeddedStore;
  readonly server: LatchkeyServer;
  readonly http: HttpServer;
  /** tcp://127.0.0.1:PORT */
  readonly url: string;
  /** http://127.0.0.1:PORT */
  readonly base: string;
  /** Every log line written so far, parsed. */
  readonly logs: Array<Record<string, unknown>>;
  get(p: string, token?: string): Promise<Response>;
  post(p: string, body: unknown, token?: string): Promise<Response>;
}

export async function served(o: { auth?: boolean; ttlMs?: number } = {}): Promise<Served> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-http-'));
  const store = (await open(dir)) as EmbeddedStore;
  const auth = o.auth === false ? undefined : AuthTable.fromJson(AUTH);
  const server = await serve(store, { listen: { host: '127.0.0.1', port: 0 }, ...(auth === undefined ? { insecureLoopback: true } : { auth }), ttlMs: o.ttlMs ?? 10_000 });
  const logs: Array<Record<string, unknown>> = [];
  let partial = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      partial += chunk.toString('utf8');
      let i;
      while ((i = partial.indexOf('\n')) >= 0) {
        logs.push(JSON.parse(partial.slice(0, i)) as Record<string, unknown>);
        partial = partial.slice(i + 1);
      }
      cb();
    },
  });
  const log = createLogger({ level: 'debug', pretty: false, destination: sink });
  const detach = logEngineEvents(store, log);
  const http = await startHttp({ host: '127.0.0.1', port: 0, store, serverStats: () => server.stats(), log, ...(auth === undefined ? {} : { auth }) });
  http.setReady();
  const base = `http://127.0.0.1:${http.address!.port}`;
  const hdr = (token?: string): Record<string, string> => (token === undefined ? {} : { Authorization: `Bearer ${token}` });
  return {
    store, server, http, logs, base,
    url: `tcp://127.0.0.1:${server.tcpAddress!.port}`,
    get: (p, token) => fetch(`${base}${p}`, { headers: hdr(token) }),
    post: (p, body, token) => fetch(`${base}${p}`, { method: 'POST', headers: { ...hdr(token), 'Content-Type': 'application/json' }, body: JSON.stringify(body) }),
    async [Symbol.asyncDispose]() {
      await http.close();
      detach();
      await server.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves once `pred` holds, checked after each event-loop turn (up to `ms`). */
export async function until(pred: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
