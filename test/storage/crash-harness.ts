/**
 * The crash test, shared by `npm test` (30+ kills) and `npm run soak:crash`.
 *
 * A child process (test/fixtures/crash-writer.ts) runs concurrent durable
 * transactions and prints each acknowledgement; we SIGKILL it at a random
 * moment (sometimes while it is still opening, i.e. mid-recovery), reopen
 * the directory here and check:
 *  - every acknowledged transaction is fully present, with its values;
 *  - no transaction is partially present (all KEYS keys or none), and all
 *    its keys carry one revision;
 *  - revisions are contiguous: the transactions present are exactly the
 *    commits 1..revision, one per revision (nothing else commits);
 *  - each shared key holds the id of a present transaction, written at that
 *    transaction's revision.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Store } from '../../src/api.js';
import { open } from '../../src/engine/open.js';
import { KEYS, OPEN_OPTIONS, SHARED } from '../fixtures/crash-config.js';

const writerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'crash-writer.js');

/** Acknowledgements of a long life: about 2.5× OPEN_OPTIONS.snapshotEveryBytes of log. */
const LONG_LIFE_ACKS = 600;

export interface CrashOptions {
  dir: string;
  kills: number;
  workers?: number;
  /** Longest time the child runs before its SIGKILL. */
  maxLifeMs?: number;
  seed?: number;
  /** The child's durability (default 'fsync'; 'none' promises survival of SIGKILL too). */
  durability?: 'fsync' | 'none';
  log?: (line: string) => void;
}

export interface CrashReport {
  kills: number;
  killedBeforeReady: number;
  acknowledged: number;
  present: number;
  revision: number;
  seed: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/**
 * Runs one child and SIGKILLs it `lifeMs` after it started (`fromReady`
 * false: the kill may land while it is still opening and recovering) or
 * after it said it is ready (`fromReady` true: the kill lands among commits,
 * however slow the machine is), or `lifeMs` after its `afterAcks`-th
 * acknowledgement (a life long enough to write a snapshot's worth of log
 * and rotate segments, whatever the machine's speed: a loaded machine once
 * went 32 timed lives without reaching the snapshot threshold).
 */
function runChild(dir: string, runId: string, workers: number, lifeMs: number, durability: string, fromReady: boolean, afterAcks = 0): Promise<{ acks: Map<string, number>; ready: boolean; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [writerScript, dir, runId, String(workers), durability], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acks = new Map<string, number>();
    let ready = false;
    let buf = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith('ready ')) {
          ready = true;
          if (fromReady && afterAcks === 0) timer = setTimeout(() => child.kill('SIGKILL'), lifeMs);
        }
        const m = /^ack (\S+) (-?\d+)$/.exec(line);
        if (m) {
          acks.set(m[1]!, Number(m[2]));
          if (afterAcks > 0 && acks.size === afterAcks) timer = setTimeout(() => child.kill('SIGKILL'), lifeMs);
        }
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { stderr += d; });
    let timer = fromReady ? undefined : setTimeout(() => child.kill('SIGKILL'), lifeMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`crash writer exited by itself (code ${code}, signal ${signal}): ${stderr}`));
      else resolve({ acks, ready, stderr });
    });
  });
}

async function check(store: Store, acked: Map<string, number>): Promise<number> {
  const revision = store.revision;
  const ids = store.list('/t').catch(() => [] as string[]);
  const byRev = new Map<number, string>();
  for (const id of await ids) {
    const keys = await store.list(`/t/${id}`);
    if (keys.length !== KEYS) throw new Error(`transaction ${id} is partially present: ${keys.length} of ${KEYS} keys`);
    let rev: number | undefined;
    for (let k = 0; k < KEYS; k++) {
      const e = await store.get(`/t/${id}/${k}`);
      if (e === undefined || e.text() !== `${id}:${k}`) throw new Error(`transaction ${id}: key ${k} is ${e === undefined ? 'missing' : `"${e.text()}"`}`);
      if (rev !== undefined && e.stat.modRev !== rev) throw new Error(`transaction ${id}: keys at revisions ${rev} and ${e.stat.modRev}`);
      rev = e.stat.modRev;
    }
    if (byRev.has(rev!)) throw new Error(`transactions ${byRev.get(rev!)} and ${id} share revision ${rev}`);
    byRev.set(rev!, id);
  }
  for (const [id, rev] of acked) {
    const e = await store.get(`/t/${id}/0`);
    if (e === undefined) throw new Error(`acknowledged transaction ${id} (revision ${rev}) is lost`);
    if (e.stat.modRev !== rev) throw new Error(`acknowledged transaction ${id} was at revision ${rev}, is at ${e.stat.modRev}`);
  }
  for (let r = 1; r <= revision; r++) {
    if (!byRev.has(r)) throw new Error(`revision ${r} of ${revision} holds no transaction (revisions not contiguous)`);
  }
  if (byRev.size !== revision) throw new Error(`${byRev.size} transactions for ${revision} revisions`);
  for (let i = 0; i < SHARED; i++) {
    const e = await store.get(`/last/${i}`);
    if (e === undefined) continue;
    const writer = byRev.get(e.stat.modRev);
    if (writer !== e.text()) throw new Error(`/last/${i} = ${e.text()} at revision ${e.stat.modRev}, which is ${writer}'s`);
  }
  return byRev.size;
}

export async function runCrashTest(o: CrashOptions): Promise<CrashReport> {
  const seed = o.seed ?? (Date.now() % 1_000_000);
  const random = rng(seed);
  const workers = o.workers ?? 16;
  const maxLife = o.maxLifeMs ?? 500;
  const acked = new Map<string, number>();
  let killedBeforeReady = 0;
  let present = 0;
  let revision = 0;
  for (let i = 0; i < o.kills; i++) {
    const life = 20 + Math.floor(random() * maxLife);
    const fromReady = i % 2 === 1;
    // Every fourth life runs until it has written more than a snapshot's worth of log.
    const afterAcks = i % 4 === 3 ? LONG_LIFE_ACKS : 0;
    const run = await runChild(o.dir, `r${i}`, workers, life, o.durability ?? 'fsync', fromReady, afterAcks);
    if (!run.ready) killedBeforeReady++;
    for (const [id, rev] of run.acks) acked.set(id, rev);
    const store = await open(o.dir, OPEN_OPTIONS);
    try {
      present = await check(store, acked);
      revision = store.revision;
    } catch (e) {
      throw new Error(`crash test (seed ${seed}) after kill ${i + 1} (life ${life} ms): ${(e as Error).message}`, { cause: e });
    } finally {
      await store.close();
    }
    o.log?.(`kill ${i + 1}: ${life} ms after ${afterAcks > 0 ? `ack ${afterAcks}` : fromReady ? 'ready' : 'spawn'}${run.ready ? '' : ' (still opening)'}, ${run.acks.size} acks; ${present} transactions present, revision ${revision}`);
  }
  return { kills: o.kills, killedBeforeReady, acknowledged: acked.size, present, revision, seed };
}
