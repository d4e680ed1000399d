/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * log record, snapshot block and value (see docs/format.md).
 *
 * Two implementations, one result:
 * - `@node-rs/crc32` (napi-rs; SSE4.2 / ARMv8 CRC instructions; prebuilt
 *   binaries shipped as per-platform npm packages, so it installs from the
 *   npm registry with no build step) for inputs of 256 bytes and more:
 *   about 7x the JS one on 256 KiB values, which capped the scan of values
 *   on disk (docs/benchmarks.md). Below 256 bytes the call costs more than
 *   it saves.
 * - Slicing-by-8 in JS (eight 256-entry tables, eight bytes per step): for
 *   short inputs, and the fallback when the native package is missing or
 *   fails its self-check at load, or when LATCHKEY_CRC32C=js.
 *
 * Castagnoli rather than the zlib CRC32: better error detection for the
 * record sizes we write, and the same checksum ext4, iSCSI and etcd's
 * successors use, so external tools can verify our files.
 */
import { createRequire } from 'node:module';

const POLY = 0x82f63b78;

const TABLES: Uint32Array[] = (() => {
  const t: Uint32Array[] = [];
  for (let k = 0; k < 8; k++) t.push(new Uint32Array(256));
  const t0 = t[0]!;
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let j = 0; j < 8; j++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    let c = t0[i]!;
    for (let k = 1; k < 8; k++) {
      c = t0[c & 0xff]! ^ (c >>> 8);
      t[k]![i] = c >>> 0;
    }
  }
  return t;
})();

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];

/** The JS CRC32C over `buf[start, end)` (the fallback; exported for tests and benches). */
export function crc32cJs(buf: Uint8Array, crc = 0, start = 0, end = buf.length): number {
  let c = ~crc >>> 0;
  let i = start;
  const end8 = end - ((end - start) & 7);
  while (i < end8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c = T7[a & 0xff]! ^ T6[(a >>> 8) & 0xff]! ^ T5[(a >>> 16) & 0xff]! ^ T4[a >>> 24]!
      ^ T3[buf[i + 4]!]! ^ T2[buf[i + 5]!]! ^ T1[buf[i + 6]!]! ^ T0[buf[i + 7]!]!;
    i += 8;
  }
  while (i < end) c = T0[(c ^ buf[i++]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Inputs at least this long go to the native CRC32C when it loaded. */
export const NATIVE_MIN_BYTES = 256;

type NativeCrc = (input: Uint8Array, initial?: number) => number;

function loadNative(): NativeCrc | undefined {
  // LATCHKEY_CRC32C=js keeps the JS implementation (side-by-side benches; a way out should the native one misbehave).
  if (process.env['LATCHKEY_CRC32C'] === 'js') return undefined;
  try {
    const f = (createRequire(import.meta.url)('@node-rs/crc32') as { crc32c?: NativeCrc }).crc32c;
    if (typeof f !== 'function') return undefined;
    // Self-check against the JS tables (also with a start value and an offset view) before trusting it.
    const probe = new Uint8Array(1000);
    for (let i = 0; i < probe.length; i++) probe[i] = (i * 131 + 7) & 0xff;
    const view = probe.subarray(3, 997);
    if (f(view) >>> 0 !== crc32cJs(probe, 0, 3, 997)) return undefined;
    if (f(view, 0x1234567) >>> 0 !== crc32cJs(probe, 0x1234567, 3, 997)) return undefined;
    return f;
  } catch {
    return undefined;
  }
}

const native = loadNative();

/** Which implementation checksums long inputs ('native' or 'js'). */
export const crc32cImplementation: 'native' | 'js' = native === undefined ? 'js' : 'native';

/**
 * Continues a CRC32C over `buf[start, end)`. Start with `crc32c(buf)`; to
 * checksum pieces in sequence pass the previous result as `crc`.
 */
export function crc32c(buf: Uint8Array, crc = 0, start = 0, end = buf.length): number {
  if (native !== undefined && end - start >= NATIVE_MIN_BYTES) {
    return native(start === 0 && end === buf.length ? buf : buf.subarray(start, end), crc) >>> 0;
  }
  return crc32cJs(buf, crc, start, end);
}
