/**
 * Opening a data directory shared by many processes, as with TDB: the first
 * process to open it starts a server for it (a detached `latchkey serve`
 * that exits once no client has been connected for `idleExitMs`), and every
 * process — that one included — connects to the server's socket
 * `DIR/latchkey.sock`.
 *
 * Racing starters need no coordination of their own: the storage layer lets
 * one process own a data directory at a time, so of two servers started at
 * once one serves and the other exits; both starters just keep connecting
 * until the socket answers.
 *
 * Starting the server is the caller's part (`startServer`): the client knows
 * nothing of the command line. src/shared.ts wires it to
 * cli/server-process.ts, which runs `latchkey serve`.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { LatchkeyError } from '../core/errors.js';
import { type ConnectOptions, type RemoteStore, connect } from './store.js';

export interface SharedOptions extends ConnectOptions {
  /** The server exits once no client has been connected for this long (default 30 s). */
  idleExitMs?: number;
  /** How long to keep trying to reach a server being started (default 10 s). */
  startTimeoutMs?: number;
}

/** Starts a server for data directory `dir` that exits once idle for `idleExitMs`; fire and forget. */
export type StartServer = (dir: string, idleExitMs: number) => void;

export async function openShared(dir: string, options: SharedOptions, startServer: StartServer): Promise<RemoteStore> {
  const abs = path.resolve(dir);
  mkdirSync(abs, { recursive: true });
  const url = `unix://${path.join(abs, 'latchkey.sock')}`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  const idle = options.idleExitMs ?? 30_000;
  let startedAt = 0;
  let wait = 5;
  for (;;) {
    try {
      return await connect(url, { connectTimeoutMs: 2000, ...options });
    } catch (e) {
      // Nobody serves the directory (yet): start a server once, then keep knocking.
      if (!LatchkeyError.is(e, 'CONNECTION_LOST')) throw e;
      if (Date.now() > deadline) throw new LatchkeyError('CONNECTION_LOST', `no server for ${abs} within ${options.startTimeoutMs ?? 10_000} ms`, { cause: e });
      // (Again after a while: the server that won a race may have gone idle and exited meanwhile.)
      if (startedAt === 0 || Date.now() - startedAt > 3000) {
        startedAt = Date.now();
        startServer(abs, idle);
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(200, wait * 2);
    }
  }
}
