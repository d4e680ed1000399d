/** Runs the real `latchkey` CLI as a child process (the test build's main.js) against a real server. */
import { type ChildProcess, spawn } from 'node:child_process';
import { CLI, type ServerProcess, startServer } from '../server/helpers.js';

export { CLI, startServer, type ServerProcess };

export interface Ran {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stdoutBytes: Buffer;
  readonly stderr: string;
}

export interface RunOptions {
  input?: string | Uint8Array;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs `latchkey ARGS` to completion. */
export function run(args: readonly string[], opts: RunOptions = {}): Promise<Ran> {
  const p = spawnCli(args, opts);
  return finished(p.child, p.out, p.err);
}

export interface Running {
  readonly child: ChildProcess;
  /** Everything written to stdout so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout contains `text` (rejects if the process exits first). */
  waitFor(text: string | RegExp): Promise<void>;
  readonly done: Promise<Ran>;
}

function spawnCli(args: readonly string[], opts: RunOptions): { child: ChildProcess; out: Buffer[]; err: Buffer[] } {
  // The tests' own environment must not point the CLI somewhere else.
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['LATCHKEY_URL'];
  delete env['LATCHKEY_TOKEN'];
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...env, ...opts.env },
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }),
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => err.push(d));
  child.stdin!.on('error', () => {});
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  else child.stdin!.end();
  return { child, out, err };
}

function finished(child: ChildProcess, out: Buffer[], err: Buffer[]): Promise<Ran> {
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      const bytes = Buffer.concat(out);
      resolve({ code, signal, stdout: bytes.toString('utf8'), stdoutBytes: bytes, stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** Starts `latchkey ARGS` and returns at once, for commands that keep running (lock, watch). */
export function start(args: readonly string[], opts: RunOptions & { keepStdin?: boolean } = {}): Running {
  const p = spawnCli(args, opts);
  const done = finished(p.child, p.out, p.err);
  const stdout = (): string => Buffer.concat(p.out).toString('utf8');
  return {
    child: p.child,
    stdout,
    stderr: () => Buffer.concat(p.err).toString('utf8'),
    done,
    waitFor(text) {
      return new Promise((resolve, reject) => {
        const has = (): boolean => (typeof text === 'string' ? stdout().includes(text) : text.test(stdout()));
        if (has()) return resolve();
        const onData = (): void => {
          if (has()) {
            p.child.stdout!.off('data', onData);
            resolve();
          }
        };
        p.child.stdout!.on('data', onData);
        void done.then((r) => reject(new Error(`exited (${r.code ?? r.signal}) before printing ${String(text)}: ${r.stderr}`)));
      });
    },
  };
}

/** A server in memory for one test file, and `latchkey` bound to it through LATCHKEY_URL. */
export async function cliServer(args: readonly string[] = ['--memory']): Promise<{
  server: ServerProcess;
  url: string;
  lk(args: readonly string[], opts?: RunOptions): Promise<Ran>;
  lkStart(args: readonly string[], opts?: RunOptions): Running;
}> {
  const server = await startServer(args);
  const url = `unix://${server.unix}`;
  const env = { LATCHKEY_URL: url };
  return {
    server, url,
    lk: (a, o = {}) => run(a, { ...o, env: { ...env, ...o.env } }),
    lkStart: (a, o = {}) => start(a, { ...o, env: { ...env, ...o.env } }),
  };
}
