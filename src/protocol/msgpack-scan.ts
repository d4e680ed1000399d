/**
 * A structural pre-scan of a msgpack body, before it is decoded.
 *
 * Why: decoding allocates per value, and a value can be one byte. A 4 MiB
 * frame of empty maps decodes into four million objects (measured: 1.6 s
 * and 270 MB of heap for one frame). The frame limit bounds bytes, not
 * values; this scan bounds values and nesting, walking the bytes once with
 * no allocation but a small stack, so a hostile frame costs what its bytes
 * cost to read.
 *
 * It checks structure only (lengths, counts, the reserved byte 0xc1, that
 * the body is exactly one value); types are the schemas' business. One
 * exception: extension types (fixext, ext 8/16/32) are refused. The
 * protocol has none, and msgpackr decodes some (a Set, an Error, its
 * records) by reading further values nested in the extension's payload,
 * which this scan skips as opaque bytes — values it never counted, at a
 * depth it never checked.
 */

export interface ScanLimits {
  /** Values in one message (every map key and value, array item, scalar). */
  readonly maxItems: number;
  /** Nesting of maps and arrays. */
  readonly maxDepth: number;
}

export const DEFAULT_SCAN_LIMITS: ScanLimits = { maxItems: 262_144, maxDepth: 64 };

export type ScanResult = 'ok' | 'malformed' | 'too-many-items' | 'too-deep' | 'extension';

export function scanMsgpack(b: Uint8Array, limits: ScanLimits = DEFAULT_SCAN_LIMITS): ScanResult {
  const end = b.length;
  let pos = 0;
  let items = 0;
  // Values still to read at each open level; the bottom level holds the one top value.
  const remaining: number[] = [1];
  const u16 = (at: number): number => (b[at]! << 8) | b[at + 1]!;
  const u32 = (at: number): number => ((b[at]! << 24) >>> 0) + (b[at + 1]! << 16) + (b[at + 2]! << 8) + b[at + 3]!;
  while (remaining.length > 0) {
    const top = remaining.length - 1;
    if (remaining[top] === 0) {
      remaining.pop();
      continue;
    }
    remaining[top]!--;
    if (pos >= end) return 'malformed';
    if (++items > limits.maxItems) return 'too-many-items';
    const t = b[pos++]!;
    let skip = 0; // payload bytes to skip
    let children = -1; // >= 0 for a map or array
    if (t <= 0x7f || t >= 0xe0) skip = 0;
    else if (t <= 0x8f) children = (t & 0x0f) * 2;
    else if (t <= 0x9f) children = t & 0x0f;
    else if (t <= 0xbf) skip = t & 0x1f;
    else {
      switch (t) {
        case 0xc0: case 0xc2: case 0xc3: skip = 0; break;
        case 0xc4: case 0xd9: if (pos + 1 > end) return 'malformed'; skip = b[pos]!; pos += 1; break;
        case 0xc5: case 0xda: if (pos + 2 > end) return 'malformed'; skip = u16(pos); pos += 2; break;
        case 0xc6: case 0xdb: if (pos + 4 > end) return 'malformed'; skip = u32(pos); pos += 4; break;
        case 0xc7: case 0xc8: case 0xc9: // ext 8/16/32
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: // fixext 1/2/4/8/16
          return 'extension';
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xdc: if (pos + 2 > end) return 'malformed'; children = u16(pos); pos += 2; break;
        case 0xdd: if (pos + 4 > end) return 'malformed'; children = u32(pos); pos += 4; break;
        case 0xde: if (pos + 2 > end) return 'malformed'; children = u16(pos) * 2; pos += 2; break;
        case 0xdf: if (pos + 4 > end) return 'malformed'; children = u32(pos) * 2; pos += 4; break;
        default: return 'malformed'; // 0xc1, never used
      }
    }
    if (children >= 0) {
      // Every child takes at least one byte: a count beyond the bytes left is a lie, said early.
      if (children > end - pos) return 'malformed';
      if (children > 0) {
        if (remaining.length > limits.maxDepth) return 'too-deep'; // open containers would exceed maxDepth
        remaining.push(children);
      }
      continue;
    }
    pos += skip;
    if (pos > end) return 'malformed';
  }
  return pos === end ? 'ok' : 'malformed';
}
