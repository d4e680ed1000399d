/**
 * Authentication and permissions.
 *
 * An auth file (JSON) maps tokens to grants on path prefixes:
 *
 *     { "tokens": [
 *         { "token": "s3cret", "name": "worker",
 *           "grants": [ { "prefix": "/jobs", "access": "write" },
 *                       { "prefix": "/",     "access": "read"  } ] } ] }
 *
 * Access levels are ordered read < write < admin; a grant on a prefix covers
 * the node at the prefix and everything below it. A request needs, per path
 * it touches, the level its op asks for (dispatch.ts says which); the best
 * grant covering that path decides. Tokens are compared by their SHA-256
 * digests with a constant-time compare, so timing says nothing about them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { SessionInfo } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { isPrefixPath, parsePath } from '../core/path.js';

export type Access = 'read' | 'write' | 'admin';
const rank: Record<Access, number> = { read: 1, write: 2, admin: 3 };

export interface Grant {
  readonly prefix: string;
  readonly access: Access;
}

export interface Principal {
  readonly name: string;
  /** undefined: everything is allowed (no auth configured, a trusted Unix socket). */
  readonly grants: readonly Grant[] | undefined;
}

export const TRUSTED: Principal = { name: 'trusted', grants: undefined };

interface TokenEntry {
  readonly digest: Buffer;
  readonly principal: Principal;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export class AuthTable {
  private constructor(private readonly entries: readonly TokenEntry[]) {}

  static fromJson(text: string, source = 'auth file'): AuthTable {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new LatchkeyError('INVALID_ARGUMENT', `${source}: not JSON: ${(e as Error).message}`);
    }
    const bad = (what: string): never => { throw new LatchkeyError('INVALID_ARGUMENT', `${source}: ${what}`); };
    if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { tokens?: unknown }).tokens)) bad('expected {"tokens": [...]}');
    const entries: TokenEntry[] = [];
    for (const [i, t] of ((doc as { tokens: unknown[] }).tokens).entries()) {
      if (typeof t !== 'object' || t === null) bad(`tokens[${i}] is not an object`);
      const { token, name, grants } = t as { token?: unknown; name?: unknown; grants?: unknown };
      if (typeof token !== 'string' || token.length < 8) bad(`tokens[${i}].token must be a string of at least 8 characters`);
      if (!Array.isArray(grants)) bad(`tokens[${i}].grants must be an array`);
      const gs: Grant[] = [];
      for (const [j, g] of (grants as unknown[]).entries()) {
        const { prefix, access } = (g ?? {}) as { prefix?: unknown; access?: unknown };
        if (typeof prefix !== 'string') bad(`tokens[${i}].grants[${j}].prefix must be a path`);
        try {
          parsePath(prefix);
        } catch (e) {
          bad(`tokens[${i}].grants[${j}].prefix: ${(e as Error).message}`);
        }
        if (access !== 'read' && access !== 'write' && access !== 'admin') bad(`tokens[${i}].grants[${j}].access must be read, write or admin`);
        gs.push({ prefix: prefix as string, access: access as Access });
      }
      entries.push({ digest: digest(token as string), principal: { name: typeof name === 'string' ? name : `token${i}`, grants: gs } });
    }
    return new AuthTable(entries);
  }

  static load(file: string): AuthTable {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new LatchkeyError('INVALID_ARGUMENT', `cannot read auth file ${file}: ${(e as Error).message}`, { cause: e });
    }
    return AuthTable.fromJson(text, file);
  }

  /** The principal a token names, or undefined. Looks at every entry so timing does not tell which matched. */
  authenticate(token: string | undefined): Principal | undefined {
    if (token === undefined) return undefined;
    const d = digest(token);
    let found: Principal | undefined;
    for (const e of this.entries) if (timingSafeEqual(e.digest, d)) found = e.principal;
    return found;
  }
}

/** Throws PERMISSION unless `p` may do `need` at `path`. */
export function authorize(p: Principal, path: string, need: Access): void {
  if (p.grants === undefined) return;
  let best = 0;
  for (const g of p.grants) if (isPrefixPath(g.prefix, path) && rank[g.access] > best) best = rank[g.access];
  if (best < rank[need]) {
    throw new LatchkeyError('PERMISSION', `${p.name} may not ${need} ${path}`, { path, info: { need } });
  }
}

/** True when `p` may read `path` (no throw). */
/**
 * The sessions a principal may see (listSessions, the console). Without
 * grants, or granted `/`: all of them. Otherwise: its own, and those holding or awaiting a
 * lock on a path it may read (the counts are already filtered by `canRead`);
 * only its own carry their address — another client's address is not a
 * restricted token's to know.
 */
export function sessionsVisibleTo(p: Principal, all: readonly SessionInfo[], own: ReadonlySet<string> = new Set()): SessionInfo[] {
  if (p.grants === undefined || canRead(p, '/')) return [...all]; // sees the whole tree: sees every session
  return all
    .filter((s) => own.has(s.id) || s.locksHeld + s.locksWaiting > 0)
    .map((s) => {
      if (own.has(s.id) || s.address === undefined) return s;
      const { address: _hidden, ...rest } = s;
      return rest;
    });
}

/**
 * True when what `p`'s commits write must be checked path by path (the
 * engine's write guard): it may write somewhere but not everywhere. Not
 * for a token without grants, one granted write or admin on `/`, nor one
 * that may only read (every write request is refused before it runs).
 */
export function needsWriteGuard(p: Principal): boolean {
  if (p.grants === undefined || p.grants.some((g) => g.prefix === '/' && g.access !== 'read')) return false;
  return p.grants.some((g) => g.access !== 'read');
}

export function canRead(p: Principal, path: string): boolean {
  if (p.grants === undefined) return true;
  for (const g of p.grants) if (isPrefixPath(g.prefix, path)) return true; // every level includes read
  return false;
}

/**
 * A recursive watch on `path` is allowed when `p` may read `path` or some
 * node below it; its events are then filtered with `canRead`, so a watch on
 * an ancestor of a grant sees exactly the granted part.
 */
export function authorizeRecursiveWatch(p: Principal, path: string): void {
  if (p.grants === undefined) return;
  if (p.grants.some((g) => isPrefixPath(path, g.prefix) || isPrefixPath(g.prefix, path))) return;
  throw new LatchkeyError('PERMISSION', `${p.name} may not read ${path} or anything below it`, { path, info: { need: 'read' } });
}
