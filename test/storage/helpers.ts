/** Shared helpers for the storage tests: temp dirs, a tiny commit driver, tree dumps, byte surgery. */
import { mkdtemp, readFile, rm, writeFile, readdir, cp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Workspace } from '../../src/core/ops.js';
import { type Node, walkTree } from '../../src/core/tree.js';
import { bytesOf } from '../../src/core/value.js';
import type { DurableStorage } from '../../src/storage/index.js';

/** A fresh directory, removed with everything in it when disposed: `await using tmp = await tempDir()`. */
export interface TempDir extends AsyncDisposable {
  readonly path: string;
}

export async function tempDir(prefix = 'latchkey-storage-'): Promise<TempDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  return { path: dir, [Symbol.asyncDispose]: () => removeDir(dir) };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export async function copyDir(from: string, prefix = 'latchkey-copy-'): Promise<string> {
  const to = await mkdtemp(path.join(os.tmpdir(), prefix));
  await cp(from, to, { recursive: true });
  return to;
}

/** Drives commits against a storage the way the engine does: apply, append, sync. */
export class Driver {
  root: Node;
  rev: number;
  constructor(readonly storage: DurableStorage) {
    this.root = storage.root;
    this.rev = storage.revision;
  }

  /** Appends one commit (not yet synced). */
  stage(fn: (ws: Workspace) => void): void {
    const ws = new Workspace(this.root, this.rev + 1);
    fn(ws);
    this.storage.log.append(this.rev + 1, ws.mutations);
    this.root = ws.root;
    this.rev++;
  }

  async commit(fn: (ws: Workspace) => void): Promise<void> {
    this.stage(fn);
    await this.storage.log.sync();
  }

  /** n commits, each setting /k/<i % keys> and /log/<rev>. */
  async many(n: number, keys = 7): Promise<void> {
    for (let i = 0; i < n; i++) {
      const r = this.rev + 1;
      await this.commit((ws) => {
        ws.set(`/k/${r % keys}`, enc(`value ${r}`));
        ws.set(`/log/${String(r).padStart(6, '0')}`, enc(`rev ${r}`));
        if (r % 5 === 0) ws.delete(`/k/${(r + 3) % keys}`);
        if (r % 7 === 0) ws.setPerms('/log', [`n${r}`, 'r1']);
      });
    }
  }
}

export function enc(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

/** Everything observable about a tree, as plain data for deepEqual. */
export function dump(root: Node): unknown[] {
  const out: unknown[] = [];
  for (const [p, n] of walkTree(root)) {
    out.push([p, Buffer.from(bytesOf(n.value)).toString('hex'), n.createRev, n.modRev, n.version, n.childrenRev, n.seq, n.ephemeralOwner ?? null, n.size, n.perms ?? null]);
  }
  return out;
}

export async function flipBit(file: string, offset: number, bit = 0): Promise<void> {
  const b = await readFile(file);
  b[offset]! ^= 1 << bit;
  await writeFile(file, b);
}

export async function files(dir: string, re: RegExp): Promise<string[]> {
  return (await readdir(dir)).filter((n) => re.test(n)).sort();
}
