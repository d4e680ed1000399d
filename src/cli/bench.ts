/**
 * `latchkey bench [WORKLOAD…] [--quick]`: the benchmark suite, which lives in
 * the source tree (bench/, with its peer clients as devDependencies), not in
 * the published package. From a checkout this runs `npm run bench` there;
 * from an installed package it says where to get the suite instead of
 * failing obscurely.
 *
 * The `latchkey` command's entry (cli/main.ts, with the server) dispatches
 * `bench` here: `case 'bench': process.exitCode = await benchCommand(rest)`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout this CLI was built from, when there is one (dist/cli or build/src/cli inside it). */
export function sourceRoot(from = path.dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from, i = 0; i < 4; i++, dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'bench', 'main.ts')) && existsSync(path.join(dir, 'package.json'))) return dir;
  }
  return undefined;
}

export function benchCommand(argv: readonly string[]): Promise<number> {
  const root = sourceRoot();
  if (root === undefined) {
    process.stderr.write('latchkey bench: the benchmark suite runs from a source checkout of latchkey: there, run `npm ci` and `npm run bench` (see docs/benchmarks.md)\n');
    return Promise.resolve(2);
  }
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  return new Promise((resolve) => {
    const child = spawn(npm, ['run', '--silent', 'bench', '--', ...argv], { cwd: root, stdio: 'inherit' });
    child.once('error', (e) => {
      process.stderr.write(`latchkey bench: ${e.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
