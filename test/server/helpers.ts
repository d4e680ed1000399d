/** Test helpers: a server in a child process, and a raw protocol client (bytes in, decoded messages out). */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Decoded, encodeHello, serverMessageDecoder } from '../../src/protocol/codec.js';
import { PROTOCOL_MAGIC, type ServerMessage } from '../../src/protocol/messages.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CLI = path.resolve(here, '../../src/cli/main.js');

export interface ServerProcess extends AsyncDisposable {
  readonly proc: ChildProcess;
  readonly dir: string;
  readonly unix: string;
  readonly tcp: string | undefined;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  /** SIGTERM and wait for the exit; removes the data directory. Disposing does the same. */
  stop(): Promise<number | string>;
}

export async function startServer(args: readonly string[] = []): Promise<ServerProcess> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-srv-'));
  const proc = spawn(process.execPath, [CLI, 'serve', '--data', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => { err += d; });
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (out.includes('ready\n')) resolve();
    };
    proc.stdout!.on('data', check);
    void exited.then((c) => reject(new Error(`server exited (${c}) before ready: ${err}`)));
  });
  const unix = /^unix:\/\/(.*)$/m.exec(out)?.[1];
  const tcp = /^(tcp:\/\/.*)$/m.exec(out)?.[1];
  if (unix === undefined) throw new Error(`no unix address in: ${out}`);
  const stop = async (): Promise<number | string> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const c = await exited;
    rmSync(dir, { recursive: true, force: true });
    return c;
  };
  return {
    proc, dir, unix, tcp, exited,
    stdout: () => out,
    stderr: () => err,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** A socket speaking raw bytes, with what the server sends decoded. */
export class RawClient implements Disposable {
  private readonly decoder = serverMessageDecoder(64 * 1024 * 1024);
  readonly received: Decoded<ServerMessage>[] = [];
  private waiters: Array<() => void> = [];
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received.push(...this.decoder.push(chunk));
      const ws = this.waiters;
      this.waiters = [];
      for (const w of ws) w();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => {
      resolve();
      for (const w of this.waiters) w();
    }));
  }

  static async open(unixPath: string, hello = true): Promise<RawClient> {
    const sock = net.connect({ path: unixPath });
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve());
      sock.once('error', reject);
    });
    const c = new RawClient(sock);
    if (hello) {
      c.send(encodeHello({ magic: PROTOCOL_MAGIC, versions: [1] }));
      await c.waitFor((m) => m.type === 'message' && m.message.t === 'welcome');
    }
    return c;
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Waits for a received item matching `pred` (or the socket closing: then undefined). */
  async waitFor(pred: (d: Decoded<ServerMessage>) => boolean): Promise<Decoded<ServerMessage> | undefined> {
    for (;;) {
      const found = this.received.find(pred);
      if (found !== undefined) return found;
      if (this.socket.destroyed || this.socket.readableEnded) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The reply (ok or err) to request `id`. */
  async reply(id: number): Promise<ServerMessage | undefined> {
    const d = await this.waitFor((x) => x.type === 'message' && (x.message.t === 'ok' || x.message.t === 'err') && x.message.id === id);
    return d?.type === 'message' ? d.message : undefined;
  }

  /** The bye the server sent before closing, if any. */
  async bye(): Promise<ServerMessage | undefined> {
    const d = await this.waitFor((x) => x.type === 'message' && x.message.t === 'bye');
    return d?.type === 'message' ? d.message : undefined;
  }

  close(): void {
    this.socket.destroy();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
