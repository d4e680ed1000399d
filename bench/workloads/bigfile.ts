/**
 * `npm run bench -- bigfile [--quick] [--size=MiB] [--rounds=N] [--no-remote] [--only=remote|embedded]`
 * (a 16 GiB run under load needs the harness's `--timeout=SECONDS` raised):
 * BigFile and BigArray (docs/bigfile.md) beside a plain file in the same run.
 *
 * - Sequential and random read and write MB/s of one big file, 1 MiB blocks,
 *   1 MiB per call, a commit (or an fdatasync) every 16 MiB: latchkey
 *   embedded in memory (files up to 4 GiB), embedded durable (open(dir),
 *   fsync), embedded on disk not durable (durability 'none'), remote (a
 *   `latchkey serve` child, durable, over its Unix socket); the physical
 *   limit is a plain file's pwrite + fdatasync and pread in the same round.
 *   Every target writes its own copy in a fresh file or data directory and
 *   removes it after its round, so a 16 GiB run (`--size=16384`, one round)
 *   holds one copy on disk at a time. Reads of the plain file come from the
 *   OS page cache when the file fits (it was just written; dropping caches
 *   needs root on a shared machine). latchkey's reads are a fresh handle's
 *   (its cache cold) into one reused buffer (`readInto`), as the preads are.
 * - Memory-mapped peer: the plain file mapped (bench/native/mmap.cc, an
 *   N-API addon compiled now with g++ and the Node headers; "not available"
 *   with the reason when it cannot be) and read through a Uint8Array, right
 *   after the plain file's preads.
 * - Ratios against the plain file are taken per round and their median
 *   reported (wall-clock MB/s on a shared machine are noisy; the ratio of
 *   two targets measured side by side is less so), with the CPU time per
 *   MiB of the sequential read in this process (a remote server's is apart).
 * - Array row reads/s: a float64 [rows, 3] array, random single rows and
 *   sequential chunks, beside the same rows in a Float64Array in memory.
 * - Invalidation: a reader has the whole file cached; another client commits
 *   1% of its blocks; the reader's refresh() plus re-reading the whole file
 *   (only the stale blocks load), beside a fresh handle reading it all.
 * Rounds alternate the targets (ABAB); figures are medians. The load
 * average before and after is printed.
 */
import { closeSync, fdatasyncSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BigFileHandle, Store } from '../../src/api.js';
import * as latchkey from '../../src/index.js';
import { openDurable, startLatchkeyServer } from '../peers/latchkey.js';
import { tempDir } from '../peers/server.js';
import { type MmapAddon, loadMmap } from '../native/mmap.js';
import { IO_CONCURRENCY, READ_AHEAD } from '../../src/bigfile/handle.js';
import { SPARE_BUFFERS } from '../../src/bigfile/cache.js';
import { type BenchOptions, fmt, note, progress, ratio, table } from '../util.js';

const MiB = 1024 * 1024;
const BS = MiB;
const CHUNK = MiB;
const COMMIT = 16 * MiB;
/** Each handle's page cache. */
const CACHE = 64 * MiB;
/** The mapped peer maps the file in windows of this many bytes (a multiple of CHUNK). */
const WINDOW = 1024 * MiB;

const load = (): string => os.loadavg().map((x) => x.toFixed(2)).join(' ');
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
};

function chunkOf(i: number): Uint8Array {
  const b = new Uint8Array(CHUNK);
  const v = new DataView(b.buffer);
  for (let k = 0; k < CHUNK; k += 4096) v.setUint32(k, i * 7919 + k + 1);
  return b;
}

/** A deterministic order of block indices (the same for every target). */
function shuffled(n: number, count: number, seed: number): number[] {
  const out: number[] = [];
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out.push(x % n);
  }
  return out;
}

interface Target {
  name: string;
  seqWrite(bytes: number): Promise<number>;
  seqRead(bytes: number): Promise<number>;
  randRead(bytes: number, ops: number): Promise<number>;
  randWrite(bytes: number, ops: number): Promise<number>;
  /** The store's own floor for the same bytes (latchkey targets). */
  raw?(bytes: number): Promise<number>;
}

/** A target made fresh for one round (its own file or data directory), removed by `close`: a 16 GiB run never holds two copies on disk. */
interface Instance extends Target {
  close(): Promise<void>;
  /** A remote target's server process CPU time so far (ms). */
  serverCpuMs?(): number | undefined;
}

interface Kind {
  name: string;
  make(): Promise<Instance>;
}

const mbps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);

function plainTarget(dir: string): Kind {
  const name = 'plain file (pwrite + fdatasync / pread)';
  return {
    name,
    async make() {
      const file = path.join(dir, 'plain.bin');
      const buf = Buffer.alloc(CHUNK);
      return {
        name,
        async seqWrite(bytes) {
          rmSync(file, { force: true });
          const fd = openSync(file, 'w');
          const t0 = performance.now();
          for (let at = 0; at < bytes; at += CHUNK) {
            writeSync(fd, chunkOf(at / CHUNK), 0, CHUNK, at);
            if ((at + CHUNK) % COMMIT === 0) fdatasyncSync(fd);
          }
          fdatasyncSync(fd);
          const ms = performance.now() - t0;
          closeSync(fd);
          return mbps(bytes, ms);
        },
        async seqRead(bytes) {
          const fd = openSync(file, 'r');
          const t0 = performance.now();
          for (let at = 0; at < bytes; at += CHUNK) readSync(fd, buf, 0, CHUNK, at);
          const ms = performance.now() - t0;
          closeSync(fd);
          return mbps(bytes, ms);
        },
        async randRead(bytes, ops) {
          const fd = openSync(file, 'r');
          const t0 = performance.now();
          for (const i of shuffled(bytes / BS, ops, 7)) readSync(fd, buf, 0, CHUNK, i * BS);
          const ms = performance.now() - t0;
          closeSync(fd);
          return mbps(ops * CHUNK, ms);
        },
        async randWrite(bytes, ops) {
          const fd = openSync(file, 'r+');
          const t0 = performance.now();
          let n = 0;
          for (const i of shuffled(bytes / BS, ops, 11)) {
            writeSync(fd, chunkOf(i + 1), 0, CHUNK, i * BS);
            if (++n % (COMMIT / CHUNK) === 0) fdatasyncSync(fd);
          }
          fdatasyncSync(fd);
          const ms = performance.now() - t0;
          closeSync(fd);
          return mbps(ops * CHUNK, ms);
        },
        async close() {
          rmSync(file, { force: true });
        },
      };
    },
  };
}

/**
 * The same plain file memory-mapped (bench/native: a tiny N-API addon built
 * now) and read through a Uint8Array over the mapping: each 1 MiB read is a
 * copy out of the mapping into the caller's buffer, as pread copies out of
 * the page cache. Run on the plain file's instance, right beside its preads
 * (the mapping cannot write a file; its write columns are "—").
 */
function mmapReads(dir: string, addon: MmapAddon): Pick<Target, 'seqRead' | 'randRead'> {
  const buf = new Uint8Array(CHUNK);
  // The file as windows of at most 1 GiB (one ArrayBuffer holds at most 4 GiB), all mapped at once.
  const views = (bytes: number): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (let at = 0; at < bytes; at += WINDOW) out.push(new Uint8Array(addon.map(path.join(dir, 'plain.bin'), at, Math.min(WINDOW, bytes - at))));
    return out;
  };
  const at = (m: Uint8Array[], off: number): Uint8Array => m[Math.floor(off / WINDOW)]!.subarray(off % WINDOW, (off % WINDOW) + CHUNK);
  return {
    async seqRead(bytes) {
      const t0 = performance.now();
      const m = views(bytes);
      for (let off = 0; off < bytes; off += CHUNK) buf.set(at(m, off));
      return mbps(bytes, performance.now() - t0);
    },
    async randRead(bytes, ops) {
      const t0 = performance.now();
      const m = views(bytes);
      for (const i of shuffled(bytes / BS, ops, 7)) buf.set(at(m, i * BS));
      return mbps(ops * CHUNK, performance.now() - t0);
    },
  };
}

function latchkeyTarget(name: string, store: Store, close: () => Promise<void>): Instance {
  const p = '/bench/bigfile/data';
  const handle = async (): Promise<BigFileHandle> => (await store.bigFile(p, { blockSize: BS })).open({ cacheBytes: CACHE, maxDirtyBytes: 32 * MiB });
  // Reads go into one buffer reused by every call, as the plain file's preads do (read() would allocate a fresh one each time).
  const buf = new Uint8Array(CHUNK);
  return {
    name,
    close,
    async seqWrite(bytes) {
      await store.delete(p, { recursive: true });
      const h = await handle();
      const t0 = performance.now();
      for (let at = 0; at < bytes; at += CHUNK) {
        h.write(at, chunkOf(at / CHUNK));
        if ((at + CHUNK) % COMMIT === 0) await h.commit();
      }
      await h.commit();
      const ms = performance.now() - t0;
      await h.close();
      return mbps(bytes, ms);
    },
    async seqRead(bytes) {
      const h = await handle();
      const t0 = performance.now();
      for (let at = 0; at < bytes; at += CHUNK) await h.readInto(at, buf);
      const ms = performance.now() - t0;
      await h.close();
      return mbps(bytes, ms);
    },
    async randRead(bytes, ops) {
      const h = await handle();
      const t0 = performance.now();
      for (const i of shuffled(bytes / BS, ops, 7)) await h.readInto(i * BS, buf);
      const ms = performance.now() - t0;
      await h.close();
      return mbps(ops * CHUNK, ms);
    },
    async randWrite(bytes, ops) {
      const h = await handle();
      const t0 = performance.now();
      for (const i of shuffled(bytes / BS, ops, 11)) {
        if (h.stats().dirtyBytes >= 16 * MiB) await h.commit();
        h.write(i * BS, chunkOf(i + 1));
      }
      await h.commit();
      const ms = performance.now() - t0;
      await h.close();
      return mbps(ops * CHUNK, ms);
    },
    raw: (bytes) => rawWrite(store, bytes),
  };
}

/** The store's own floor for the same bytes: 16 sets of 1 MiB per transaction, no BigFile (what a writeout costs below the handle). */
async function rawWrite(store: Store, bytes: number): Promise<number> {
  await store.delete('/bench/bigfile/raw', { recursive: true });
  const t0 = performance.now();
  for (let at = 0; at < bytes; at += COMMIT) {
    const tx = store.begin();
    await Promise.all(Array.from({ length: COMMIT / CHUNK }, (_, k) => tx.set(`/bench/bigfile/raw/${at / CHUNK + k}`, chunkOf(at / CHUNK + k))));
    await tx.commit();
  }
  const ms = performance.now() - t0;
  await store.delete('/bench/bigfile/raw', { recursive: true });
  return mbps(bytes, ms);
}

type Fig = { sw: number[]; sr: number[]; rr: number[]; rw: number[]; raw: number[]; cpuRead: number[]; rss: number[] };

export default async function bigfile(o: BenchOptions): Promise<void> {
  const sizeArg = o.args.find((a) => a.startsWith('--size='));
  const sizeMiB = sizeArg !== undefined ? Number(sizeArg.slice('--size='.length)) : o.quick ? 16 : 512;
  const bytes = sizeMiB * MiB;
  const big = sizeMiB > 4096;
  const roundsArg = o.args.find((a) => a.startsWith('--rounds='));
  const rounds = roundsArg !== undefined ? Number(roundsArg.slice('--rounds='.length)) : o.quick || big ? 1 : 3;
  // --no-remote: leave the remote target out (a 16 GiB write over the socket is the longest part of a big run).
  // --only=remote / --only=embedded: the plain file (and its mapped peer) beside those targets only (a 16 GiB run in two parts).
  const only = o.args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  if (only !== undefined && only !== 'remote' && only !== 'embedded') throw new Error(`--only=${only}: remote or embedded`);
  const withRemote = !o.args.includes('--no-remote') && only !== 'embedded';
  const withEmbedded = only !== 'remote';
  const ops = Math.min(sizeMiB, o.quick ? 16 : big ? 1024 : 256);
  const loadBefore = load();
  const dir = tempDir('bigfile');
  const mm = loadMmap();
  // In memory only when the file fits comfortably (a 16 GiB run on a 24 GiB machine does not).
  const kinds: Kind[] = [plainTarget(dir)];
  const MMAP = 'plain file memory-mapped, read through a Uint8Array';
  const mapped = 'addon' in mm ? mmapReads(dir, mm.addon) : undefined;
  const storeKind = (name: string, opener: (d: string) => Promise<Store>): Kind => ({
    name,
    async make() {
      const d = path.join(dir, `lk-${Math.random().toString(36).slice(2)}`);
      const s = await opener(d);
      return latchkeyTarget(name, s, async () => {
        await s.close();
        rmSync(d, { recursive: true, force: true });
      });
    },
  });
  if (withEmbedded) {
    if (!big) kinds.push(storeKind('latchkey embedded, in memory', () => latchkey.open()));
    kinds.push(storeKind('latchkey embedded, durable (fsync)', (d) => openDurable(d)));
    kinds.push(storeKind('latchkey embedded, on disk, not durable (durability none)', (d) => openDurable(d, { durability: 'none' })));
  }
  if (withRemote) {
    const name = 'latchkey remote (unix socket, durable server)';
    kinds.push({
      name,
      async make() {
        const server = await startLatchkeyServer();
        const s = await server.connect('unix');
        const t = latchkeyTarget(name, s, async () => {
          await s.close().catch(() => {});
          await server.stop().catch(() => {});
          rmSync(server.dataDir, { recursive: true, force: true });
        });
        return { ...t, serverCpuMs: () => server.cpuMs() };
      },
    });
  }
  const figures = new Map<string, Fig>();
  for (const n of [...kinds.map((k) => k.name), MMAP]) figures.set(n, { sw: [], sr: [], rr: [], rw: [], raw: [], cpuRead: [], rss: [] });
  const plainName = kinds[0]!.name;
  // Per-round ratios against the plain file of the same round.
  const ratios = new Map<string, { sr: number[]; sw: number[] }>();
  const bar = progress('bigfile', rounds * kinds.length + 2);
  // The array and invalidation sections: in memory, or on disk for a big run (its blocks would not fit in memory beside the rest).
  const mem = big ? await openDurable(path.join(dir, 'aux')) : await latchkey.open();
  const server = withRemote ? await startLatchkeyServer() : undefined;
  const remote = server !== undefined ? await server.connect('unix') : undefined;
  const rssBase = process.memoryUsage().rss;
  try {
    for (let r = 0; r < rounds; r++) {
      // ABAB: every other round runs the targets in reverse order.
      const order = r % 2 === 0 ? kinds : [...kinds].reverse();
      const round = new Map<string, { sr: number; sw: number }>();
      for (const k of order) {
        const f = figures.get(k.name)!;
        const t = await k.make();
        try {
          const cw0 = process.cpuUsage();
          const sw0 = t.serverCpuMs?.();
          const sw = await t.seqWrite(bytes);
          const cw = process.cpuUsage(cw0);
          const sw1 = t.serverCpuMs?.();
          f.sw.push(sw);
          const rss0 = process.memoryUsage().rss;
          const c0 = process.cpuUsage();
          const sr0 = t.serverCpuMs?.();
          const sr = await t.seqRead(bytes);
          const c = process.cpuUsage(c0);
          const sr1 = t.serverCpuMs?.();
          const perMiB = (ms: number): string => fmt(ms / (bytes / MiB), 3);
          // CPU per MiB of the sequential write and read, this process and (remote) the server's: what load does not change.
          const cpuNote = `CPU ms/MiB: write ${perMiB((cw.user + cw.system) / 1000)}${sw0 !== undefined && sw1 !== undefined ? ` (server ${perMiB(sw1 - sw0)})` : ''}, read ${perMiB((c.user + c.system) / 1000)}${sr0 !== undefined && sr1 !== undefined ? ` (server ${perMiB(sr1 - sr0)})` : ''}`;
          f.sr.push(sr);
          f.cpuRead.push((c.user + c.system) / 1000 / (bytes / MiB));
          f.rss.push(process.memoryUsage().rss - rss0);
          round.set(k.name, { sr, sw });
          if (k.name === plainName && mapped !== undefined) {
            // The mapped reads of the same file, right after its preads (and before them every other round).
            const m = figures.get(MMAP)!;
            const c1 = process.cpuUsage();
            const msr = await mapped.seqRead(bytes);
            const cm = process.cpuUsage(c1);
            m.sr.push(msr);
            m.cpuRead.push((cm.user + cm.system) / 1000 / (bytes / MiB));
            round.set(MMAP, { sr: msr, sw: NaN });
            m.rr.push(await mapped.randRead(bytes, ops));
          }
          f.rr.push(await t.randRead(bytes, ops));
          f.rw.push(await t.randWrite(bytes, ops));
          if (t.raw !== undefined && !big) f.raw.push(await t.raw(bytes));
          // Each target's figures as they come (a long run cut short by the harness's timeout keeps them in its log).
          console.log(`bigfile round ${r + 1} ${k.name}: seq write ${fmt(sw, 0)}, seq read ${fmt(sr, 0)} (${fmt(f.cpuRead.at(-1)!, 3)} CPU ms/MiB), random read ${fmt(f.rr.at(-1)!, 0)}, random write ${fmt(f.rw.at(-1)!, 0)} MB/s; RSS growth over the read ${fmt(f.rss.at(-1)! / MiB, 1)} MiB; ${cpuNote}; load ${load()}`);
        } finally {
          await t.close();
        }
        bar.tick();
      }
      const p = round.get(plainName)!;
      for (const [name, v] of round) {
        if (name === plainName) continue;
        if (!ratios.has(name)) ratios.set(name, { sr: [], sw: [] });
        ratios.get(name)!.sr.push(v.sr / p.sr);
        ratios.get(name)!.sw.push(v.sw / p.sw);
      }
    }
    const plain = figures.get(plainName)!;
    const names = [plainName, ...(mapped !== undefined ? [MMAP] : []), ...kinds.slice(1).map((k) => k.name)];
    const rows: Array<Array<string | number>> = names.map((name) => {
      const f = figures.get(name)!;
      const rr = ratios.get(name);
      const mmapped = name === MMAP;
      return [name, mmapped ? '—' : median(f.sw), median(f.sr), median(f.rr), mmapped ? '—' : median(f.rw), median(f.cpuRead),
        name === plainName ? '1×' : `${mmapped ? '—' : ratio(median(rr!.sw), 1)} / ${ratio(median(rr!.sr), 1)}`];
    });
    if (!('addon' in mm)) rows.splice(1, 0, ['plain file memory-mapped: not available', '—', '—', '—', '—', '—', `— (${mm.reason})`]);
    table(`BigFile MB/s, ${sizeMiB} MiB file, 1 MiB blocks and calls, commit/fdatasync every 16 MiB, cacheBytes ${CACHE / MiB} MiB (median of ${rounds})`,
      ['target', 'seq write', 'seq read', 'random read', 'random write', 'seq read CPU ms/MiB (this process)', 'write / read vs plain (median of per-round ratios)'], rows, { chart: { columns: [1, 2, 3, 4], unit: 'MB/s' } });
    if (!big) {
      table(`Sequential write MB/s: BigFile beside the store's own floor (transactions of 16 × 1 MiB set, no BigFile), same store, same run (median of ${rounds})`,
        ['store', 'BigFile seq write', 'store floor', 'BigFile / floor'],
        kinds.filter((k) => k.name.startsWith('latchkey')).map((k) => [k.name, median(figures.get(k.name)!.sw), median(figures.get(k.name)!.raw), ratio(median(figures.get(k.name)!.sw), median(figures.get(k.name)!.raw))]), { chart: false });
    }
    const rat = (prefix: string, key: 'sr' | 'sw'): string => {
      const k = kinds.find((x) => x.name.startsWith(prefix));
      return k === undefined ? '—' : ratio(median(ratios.get(k.name)![key]), 1);
    };
    note(`bigfile goals (issue 16), ratios against the plain file in the same round (median of ${rounds}): embedded sequential read ${rat('latchkey embedded, durable', 'sr')} of pread (durable store; in memory ${rat('latchkey embedded, in memory', 'sr')}, not durable ${rat('latchkey embedded, on disk', 'sr')}; goal ≥ 0.7×), remote ${rat('latchkey remote', 'sr')} (goal ≥ 0.5×), durable sequential write ${rat('latchkey embedded, durable', 'sw')} of pwrite + fdatasync (goal ≥ 0.5×). Every read is warm in the OS page cache on both sides when the file fits in memory (dropping caches needs root); latchkey's reads are a fresh handle's (its own cache cold), into a reused buffer (readInto), as the preads are.`);
    const rssOf = (prefix: string): string => {
      const k = kinds.find((x) => x.name.startsWith(prefix));
      return k === undefined ? '—' : `${fmt(Math.max(...figures.get(k.name)!.rss) / MiB, 1)} MiB`;
    };
    note(`bigfile memory: RSS growth of this process over a sequential read with cacheBytes ${CACHE / MiB} MiB: embedded durable ${rssOf('latchkey embedded, durable')}, remote client ${rssOf('latchkey remote')} (bound: cacheBytes + ${IO_CONCURRENCY} loads in flight + ${READ_AHEAD} read-ahead + ${SPARE_BUFFERS} spare blocks; the embedded store's own value cache, 256 MiB by default, is apart from it). RSS of the whole process at the end of the rounds: ${fmt(process.memoryUsage().rss / MiB, 0)} MiB (${fmt(rssBase / MiB, 0)} MiB before them).`);
    bar.tick();
    // Array rows.
    const rowsN = o.quick ? 100_000 : 2_000_000;
    const arrRows: Array<Array<string | number>> = [];
    const plainArr = new Float64Array(rowsN * 3);
    for (let i = 0; i < plainArr.length; i++) plainArr[i] = i;
    const memName = big ? 'embedded, durable' : 'embedded, in memory';
    for (const [name, s] of [[memName, mem], ...(remote !== undefined ? [['remote (unix socket)', remote] as const] : [])] as const) {
      const ap = `/bench/bigfile/arr-${name.split(' ')[0]}`;
      await s.delete(ap, { recursive: true });
      const a = await s.bigArray(ap, { dtype: 'float64', shape: [0, 3], blockSize: BS, cacheBytes: 128 * MiB, maxDirtyBytes: 32 * MiB });
      const step = Math.floor((16 * MiB) / 24);
      for (let r0 = 0; r0 < rowsN; r0 += step) {
        await a.append(plainArr.subarray(r0 * 3, Math.min(rowsN, r0 + step) * 3));
        await a.commit();
      }
      await a.close();
      const b = await s.bigArray(ap, { cacheBytes: 128 * MiB });
      const idx = shuffled(rowsN, o.quick ? 20_000 : 200_000, 3);
      let t = performance.now();
      for (const i of idx) await b.get(i, i + 1);
      const randPerSec = idx.length / ((performance.now() - t) / 1000);
      t = performance.now();
      let seen = 0;
      for await (const c of b.chunks({ rows: 65536 })) seen += c.length / 3;
      const seqPerSec = seen / ((performance.now() - t) / 1000);
      await b.close();
      arrRows.push([`latchkey BigArray, ${name}`, randPerSec, seqPerSec]);
    }
    const idx = shuffled(rowsN, o.quick ? 20_000 : 200_000, 3);
    let t = performance.now();
    for (const i of idx) plainArr.slice(i * 3, i * 3 + 3);
    const plainRand = idx.length / ((performance.now() - t) / 1000);
    t = performance.now();
    for (let r0 = 0; r0 < rowsN; r0 += 65536) plainArr.slice(r0 * 3, Math.min(rowsN, r0 + 65536) * 3);
    const plainSeq = rowsN / ((performance.now() - t) / 1000);
    arrRows.push(['Float64Array in memory (slice per read)', plainRand, plainSeq]);
    table(`BigArray float64 [${rowsN}, 3]: rows/s (random: one row per get, cache warm after first touch; sequential: chunks of 65,536 rows)`,
      ['target', 'random rows/s', 'sequential rows/s'], arrRows, { chart: { columns: [1, 2], unit: 'rows/s', log: true } });
    bar.tick();

    // Invalidation: 1% of the blocks changed by another client.
    const invMiB = o.quick ? 8 : 128;
    const inv: Array<Array<string | number>> = [];
    for (const [name, s1, s2] of [['embedded', mem, mem], ...(server !== undefined && remote !== undefined ? [['remote (unix socket)', remote, await server.connect('unix')] as const] : [])] as const) {
      const ip = `/bench/bigfile/inv-${name.split(' ')[0]}`;
      await s1.delete(ip, { recursive: true });
      const w = await (await s1.bigFile(ip, { blockSize: BS })).open({ cacheBytes: 64 * MiB });
      for (let at = 0; at < invMiB * MiB; at += CHUNK) {
        w.write(at, chunkOf(at / CHUNK));
        if ((at + CHUNK) % COMMIT === 0) await w.commit();
      }
      await w.commit();
      const reader = await (await s2.bigFile(ip)).open({ cacheBytes: (invMiB + 4) * MiB });
      await reader.read(0, invMiB * MiB);
      const changed = Math.max(1, Math.round(invMiB / 100));
      for (let k = 0; k < changed; k++) w.write(((k * 37) % invMiB) * BS, chunkOf(1000 + k));
      await w.commit();
      let t1 = performance.now();
      await reader.refresh();
      const refreshMs = performance.now() - t1;
      await reader.read(0, invMiB * MiB);
      const rereadMs = performance.now() - t1;
      const stats = reader.stats();
      await reader.close();
      const fresh = await (await s2.bigFile(ip)).open({ cacheBytes: (invMiB + 4) * MiB });
      t1 = performance.now();
      await fresh.read(0, invMiB * MiB);
      const fullMs = performance.now() - t1;
      await fresh.close();
      await w.close();
      inv.push([`${name}: ${changed} of ${invMiB} blocks changed`, refreshMs, rereadMs, fullMs, stats.invalidations, ratio(rereadMs, fullMs)]);
    }
    table(`Invalidation: another client commits 1% of a ${invMiB} MiB file's blocks; the reader's refresh() and re-read (ms)`,
      ['case', 'refresh ms', 'refresh + re-read all ms', 'fresh handle reads all ms', 'pages dropped', 're-read / full'], inv, { chart: false });
    bar.tick();
  } finally {
    bar.done();
    await remote?.close().catch(() => {});
    await server?.stop().catch(() => {});
    await mem.close();
    rmSync(dir, { recursive: true, force: true });
  }
  note(`bigfile: ${sizeMiB} MiB file${sizeMiB < 16 * 1024 ? ' (the issue asks 16 GiB: `npm run bench -- bigfile --size=16384`, a run of its own)' : ''}; each target writes its own copy and removes it before the next; load average before ${loadBefore}, after ${load()} (2 cores shared with other engineers: figures taken under load).`);
}
