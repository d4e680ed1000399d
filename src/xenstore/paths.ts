/**
 * XenStore paths and permissions, pure.
 *
 * Paths use only `[A-Za-z0-9-/_@]`; no empty, doubled or trailing '/' (the
 * root '/' aside). A path not starting with '/' is relative to the
 * connection's home, /local/domain/<domid> (socket clients are dom0). Limits
 * follow xs_wire.h: 3072 bytes absolute, 2048 relative. On top of these,
 * latchkey's own path rules apply (a segment is at most 255 bytes).
 *
 * Permissions are strings `<letter><domid>`: n (none), r (read), w (write),
 * b (both); the first names the owner and the access of every domain not
 * listed. They are kept verbatim (normalised) in the node's `perms`.
 */
import { MAX_SEGMENT_BYTES } from '../core/path.js';
import { xsError } from './errno.js';

export interface PathLimits {
  /** Longest absolute path, in bytes (XENSTORE_ABS_PATH_MAX, 3072). */
  readonly absPathMax: number;
  /** Longest relative path as sent, in bytes (XENSTORE_REL_PATH_MAX, 2048). */
  readonly relPathMax: number;
}

export const DEFAULT_PATH_LIMITS: PathLimits = { absPathMax: 3072, relPathMax: 2048 };

export const DEFAULT_PERMS: readonly string[] = Object.freeze(['n0']);

export function homeOf(domid: number): string {
  return `/local/domain/${domid}`;
}

function validChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 47 || c === 95 || c === 64;
}

/** Checks the characters and the '/' structure of an absolute path; throws EINVAL. */
function checkShape(p: string): void {
  if (p === '/') return;
  if (p.charCodeAt(p.length - 1) === 47) throw xsError('EINVAL', `trailing '/' in ${p}`);
  let segStart = 1;
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (!validChar(c)) throw xsError('EINVAL', `invalid character in path`);
    if (c === 47 && i > 0) {
      if (i === segStart) throw xsError('EINVAL', `empty segment in ${p}`);
      if (i - segStart > MAX_SEGMENT_BYTES) throw xsError('EINVAL', `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
      segStart = i + 1;
    }
  }
  if (p.length - segStart > MAX_SEGMENT_BYTES) throw xsError('EINVAL', `a segment is longer than ${MAX_SEGMENT_BYTES} bytes`);
}

/** A request path, resolved: `abs` is the store path; `relative` says how the client spelled it. */
export interface XsPath {
  readonly abs: string;
  readonly relative: boolean;
}

/** Validates and resolves a path against `home`; throws EINVAL. (All characters are ASCII, so length = bytes.) */
export function resolvePath(p: string, home: string, limits: PathLimits = DEFAULT_PATH_LIMITS): XsPath {
  if (p.length === 0) throw xsError('EINVAL', 'empty path');
  if (p.charCodeAt(0) === 47) {
    if (p.length > limits.absPathMax) throw xsError('EINVAL', `path longer than ${limits.absPathMax} bytes`);
    checkShape(p);
    return { abs: p, relative: false };
  }
  if (p.length > limits.relPathMax) throw xsError('EINVAL', `relative path longer than ${limits.relPathMax} bytes`);
  const abs = home + '/' + p;
  if (abs.length > limits.absPathMax) throw xsError('EINVAL', `path longer than ${limits.absPathMax} bytes`);
  checkShape(abs);
  return { abs, relative: true };
}

/** What a client is told for `abs`: relative to `home` when it spoke relatively. */
export function presentPath(abs: string, home: string, relative: boolean): string {
  if (relative && abs.length > home.length + 1 && abs.startsWith(home) && abs.charCodeAt(home.length) === 47) return abs.slice(home.length + 1);
  return abs;
}

/** A special watch path (`@introduceDomain`, `@releaseDomain`, …): '@' then path characters. */
export function isSpecialPath(p: string): boolean {
  if (p.length < 2 || p.charCodeAt(0) !== 64) return false;
  for (let i = 1; i < p.length; i++) if (!validChar(p.charCodeAt(i))) return false;
  return true;
}

const PERM = /^[nrwb](0|[1-9][0-9]{0,4})$/;

/** Parses SET_PERMS entries; throws EINVAL unless there is at least one and each is `[nrwb]<domid 0..65535>`. */
export function parsePerms(entries: readonly string[]): string[] {
  if (entries.length === 0) throw xsError('EINVAL', 'SET_PERMS needs at least one permission');
  return entries.map((e) => {
    // Leading zeros ("r007") are accepted as xenstored does and normalised.
    const norm = e.length > 2 && /^[nrwb]0+[0-9]/.test(e) ? e[0]! + String(Number(e.slice(1))) : e;
    if (!PERM.test(norm) || Number(norm.slice(1)) > 65535) throw xsError('EINVAL', `invalid permission ${JSON.stringify(e)}`);
    return norm;
  });
}

/** Parses a decimal domain id 0..65535; throws EINVAL. */
export function parseDomid(s: string | undefined): number {
  if (s === undefined || !/^[0-9]{1,5}$/.test(s)) throw xsError('EINVAL', 'invalid domain id');
  const n = Number(s);
  if (n > 65535) throw xsError('EINVAL', 'invalid domain id');
  return n;
}
