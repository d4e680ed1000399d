/**
 * Peer servers the harness starts: found on PATH (Debian packages, see
 * `npm run bench:setup`), bound to 127.0.0.1 on a free port, given a fresh
 * temporary data directory, and always stopped at the end of the run — on
 * success, on a thrown workload, on SIGINT/SIGTERM, and (SIGKILL of the child
 * as a last resort) when this process exits.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { benchTmpDir } from '../fsync.js';

export const HOST = '127.0.0.1';

/** Absolute path of an executable, or undefined when it is not installed. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/usr/bin', '/usr/local/bin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** First line of `bin --version`-style output, for the report. */
export function versionOf(bin: string, args: readonly string[]): string | undefined {
  try {
    return execFileSync(bin, args, { encoding: 'utf8', timeout: 5000 }).split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

/** A free TCP port on loopback (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(benchTmpDir(), `latchkey-bench-${prefix}-`));
}

export interface RunningServer {
  readonly name: string;
  readonly child: ChildProcess;
  /** Runs before the server is stopped (close clients first, so they do not reconnect). */
  onStop(fn: () => void): void;
  /** What it printed (stdout and stderr, the last 4 KiB). */
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<RunningServer>();
const tempDirs = new Set<string>();

export function forgetTempDirLater(dir: string): void {
  tempDirs.add(dir);
}

/**
 * Starts `bin args…` and polls `ready()` until it answers (bounded by
 * `timeoutMs`). Output is kept (last 4 KiB) to explain a failed start.
 * `keepDir`: the data directory outlives the server (a restart reuses it;
 * the caller registers it with forgetTempDirLater and removes it).
 */
export async function startServer(name: string, bin: string, args: readonly string[], ready: (output: string) => Promise<boolean>, dataDir: string, timeoutMs = 15_000, keepDir = false, pollMs = 50): Promise<RunningServer> {
  if (!keepDir) tempDirs.add(dataDir);
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (b: Buffer): void => {
    output = (output + b.toString()).slice(-4096);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited = false;
  const cleanups: (() => void)[] = [];
  const exit = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    resolve();
  }));
  const server: RunningServer = {
    name,
    child,
    onStop(fn) {
      cleanups.push(fn);
    },
    output: () => output,
    async stop() {
      running.delete(server);
      for (const fn of cleanups.splice(0)) {
        try {
          fn();
        } catch {
          // a client that fails to close must not keep the server running
        }
      }
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exit;
        clearTimeout(t);
      }
      if (!keepDir) {
        rmSync(dataDir, { recursive: true, force: true });
        tempDirs.delete(dataDir);
      }
    },
  };
  running.add(server);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (exited) {
      await server.stop();
      throw new Error(`${name} exited during start-up: ${output.trim().slice(-600)}`);
    }
    if (await ready(output).catch(() => false)) return server;
    if (performance.now() > deadline) {
      await server.stop();
      throw new Error(`${name} did not answer within ${timeoutMs} ms: ${output.trim().slice(-600)}`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Resident set size of a process in MiB (Linux /proc), or NaN. */
export function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Stops every server still running and removes temp dirs; main.ts calls this in `finally`. */
export async function stopAll(): Promise<void> {
  for (const s of [...running]) await s.stop().catch(() => {});
  for (const d of [...tempDirs]) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

// Last resort when the process ends some other way (uncaught error, process.exit):
// nothing async can run here, so kill outright; the OS reclaims the rest.
process.on('exit', () => {
  for (const s of running) s.child.kill('SIGKILL');
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
