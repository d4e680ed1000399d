/**
 * The memory-mapped peer of the bigfile benchmark: `bench/native/mmap.cc`,
 * a tiny N-API addon, compiled at bench time with the C++ compiler and the
 * headers of the running Node (g++ straight, no node-gyp: node-gyp would
 * fetch headers it does not find, and there is no network). Never a
 * dependency of the library. Undefined, with the reason, when it cannot be
 * built or loaded (no compiler, no headers): the benchmark then prints
 * "not available".
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface MmapAddon {
  /** Maps [offset, offset + length) of the file read-only (offset a multiple of 4096); the ArrayBuffer is external memory over the mapping (unmapped when collected). */
  map(file: string, offset: number, length: number): ArrayBuffer;
}

export function loadMmap(): { addon: MmapAddon } | { reason: string } {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // Compiled from build/bench/native/: the source stays in bench/native/.
  const src = [path.join(here, 'mmap.cc'), path.resolve(here, '../../../bench/native/mmap.cc')].find((p) => existsSync(p));
  if (src === undefined) return { reason: 'bench/native/mmap.cc not found' };
  const headers = path.resolve(path.dirname(process.execPath), '../include/node');
  if (!existsSync(path.join(headers, 'node_api.h'))) return { reason: `no Node headers at ${headers}` };
  const outDir = path.join(here, 'out');
  const out = path.join(outDir, `lkmmap-${process.versions.modules}.node`);
  try {
    if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
      mkdirSync(outDir, { recursive: true });
      execFileSync(process.env.CXX ?? 'g++', ['-O2', '-shared', '-fPIC', '-DNODE_GYP_MODULE_NAME=lkmmap', `-I${headers}`, '-o', out, src], { stdio: 'pipe', timeout: 120_000 });
    }
    const addon = createRequire(import.meta.url)(out) as MmapAddon;
    if (typeof addon.map !== 'function') return { reason: 'the addon has no map()' };
    return { addon };
  } catch (e) {
    return { reason: `could not build or load the mmap addon: ${String((e as Error).message ?? e).split('\n')[0]}` };
  }
}
