/**
 * Paths: absolute, '/'-separated. Segments are non-empty, contain no NUL, are
 * not '.' or '..', and are at most 255 UTF-8 bytes; a whole path is at most
 * 4096 UTF-8 bytes. '/' is the root. A trailing '/' is refused (one spelling
 * per node).
 *
 * Parsing is on every request's hot path, so a bounded cache keeps the
 * segment arrays of recently seen paths. Cached arrays are frozen and shared.
 */
import { LatchkeyError } from './errors.js';

export const MAX_PATH_BYTES = 4096;
export const MAX_SEGMENT_BYTES = 255;

const ROOT: readonly string[] = Object.freeze([]);
const CACHE_LIMIT = 65536;
let cache = new Map<string, readonly string[]>();

function invalid(path: unknown, reason: string): LatchkeyError {
  const shown = typeof path === 'string' ? JSON.stringify(path.length > 80 ? path.slice(0, 80) + '…' : path) : String(typeof path);
  return new LatchkeyError('INVALID_PATH', `invalid path ${shown}: ${reason}`, typeof path === 'string' ? { path } : {});
}

/** UTF-8 byte length without allocating. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { n += 4; i++; } else n += 3;
    } else n += 3;
  }
  return n;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdfff) {
      if (c <= 0xdbff && i + 1 < s.length) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) { i++; continue; }
      }
      return true;
    }
  }
  return false;
}

/** Validates `path` and returns its segments (empty for '/'). Throws INVALID_PATH. */
export function parsePath(path: unknown): readonly string[] {
  if (typeof path === 'string') {
    const hit = cache.get(path);
    if (hit !== undefined) return hit;
  }
  const segs = parseUncached(path);
  if (cache.size >= CACHE_LIMIT) cache = new Map();
  cache.set(path as string, segs);
  return segs;
}

function parseUncached(path: unknown): readonly string[] {
  if (typeof path !== 'string') throw invalid(path, 'a path must be a string');
  if (path === '/') return ROOT;
  if (path.length === 0) throw invalid(path, 'empty path');
  if (path.charCodeAt(0) !== 47) throw invalid(path, "a path must be absolute (start with '/')");
  if (path.length > MAX_PATH_BYTES || utf8Length(path) > MAX_PATH_BYTES) throw invalid(path, `longer than ${MAX_PATH_BYTES} bytes`);
  if (path.indexOf('\0') >= 0) throw invalid(path, 'contains a NUL character');
  if (hasLoneSurrogate(path)) throw invalid(path, 'not valid Unicode (lone surrogate)');
  const segs = path.slice(1).split('/');
  for (const s of segs) {
    if (s.length === 0) throw invalid(path, path.endsWith('/') ? "trailing '/'" : "empty segment ('//')");
    if (s === '.' || s === '..') throw invalid(path, `segment '${s}' is not allowed`);
    if (s.length > MAX_SEGMENT_BYTES / 3 && utf8Length(s) > MAX_SEGMENT_BYTES) throw invalid(path, `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
  }
  return Object.freeze(segs);
}

/** Validates a single child name (as used by list's `after`). */
export function validName(name: string): boolean {
  return name.length > 0 && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0') && utf8Length(name) <= MAX_SEGMENT_BYTES;
}

export function joinPath(segs: readonly string[], upto = segs.length): string {
  if (upto === 0) return '/';
  let s = '';
  for (let i = 0; i < upto; i++) s += '/' + segs[i];
  return s;
}

export function childPath(parent: string, name: string): string {
  return parent === '/' ? '/' + name : parent + '/' + name;
}

export function parentPath(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

/** True when `a` equals `b` or is an ancestor of it. */
export function isPrefixPath(a: string, b: string): boolean {
  if (a === '/') return true;
  return b === a || (b.startsWith(a) && b.charCodeAt(a.length) === 47);
}

/** True when the subtrees at a and b overlap (one contains the other). */
export function pathsOverlap(a: string, b: string): boolean {
  return isPrefixPath(a, b) || isPrefixPath(b, a);
}

/**
 * Orders names by Unicode code point, which is the order of their UTF-8
 * bytes (what etcd and byte-keyed stores use), not JavaScript's UTF-16 order.
 */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        // Surrogates (D800–DFFF) encode code points above FFFF: move them above E000–FFFF.
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}
