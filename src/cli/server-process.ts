/**
 * Starting `latchkey serve` as a detached child process, for
 * `open(dir, { shared: true })` (client/shared.ts gets it from src/shared.ts,
 * so the client layer never names the command line's files).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('./main.js', import.meta.url));

/** Starts a server for `dir` that exits once no client has been connected for `idleExitMs`. */
export function startServerProcess(dir: string, idleExitMs: number): void {
  const child = spawn(process.execPath, [CLI, 'serve', '--data', dir, '--idle-exit-ms', String(idleExitMs)], {
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', () => {}); // a failed start shows as a socket that never answers
  child.unref();
}
