/**
 * Arguments as they enter the library, checked and shaped once: values to
 * bytes under the size limit, list and multi options, optional fields copied
 * only when given. The session and transaction edges (session.ts) and the
 * server's dispatcher use these; nothing below them checks the API's shapes
 * again.
 */
import type { ListOptions, MultiOp, Value } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { parsePath } from '../core/path.js';

/** The one TOO_LARGE for a value: thrown by `toBytes`, and by the server for values that arrive as bytes. */
export function checkValueSize(path: string, size: number, limit: number): void {
  if (size > limit) throw new LatchkeyError('TOO_LARGE', `value for ${path} is ${size} bytes; the limit is ${limit}`, { path, info: { size, limit } });
}

/**
 * A value as bytes of its own: a copy of the caller's array (the tree is
 * immutable, and a caller mutating its array afterwards must not change what
 * was written), refused with TOO_LARGE above `maxBytes`.
 */
export function toBytes(v: Value | undefined, maxBytes: number, path: string): Uint8Array {
  let b: Uint8Array;
  if (v === undefined) b = new Uint8Array(0);
  else if (typeof v === 'string') b = Buffer.from(v, 'utf8');
  else if (v instanceof Uint8Array) b = Uint8Array.prototype.slice.call(v);
  else throw new LatchkeyError('INVALID_ARGUMENT', `value for ${path} must be a string or Uint8Array, not ${typeof v}`, { path });
  checkValueSize(path, b.length, maxBytes);
  return b;
}

/**
 * Copies the fields of `src` named in `keys` that are defined: the options a
 * caller gave, and nothing it left out (wire arguments carry no undefineds).
 */
export function definedFields<T extends object, K extends keyof T>(src: T | undefined, keys: readonly K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  if (src === undefined) return out;
  for (const k of keys) if (src[k] !== undefined) out[k] = src[k];
  return out;
}

export function checkOptions(o: unknown, what: string): void {
  if (o === null || typeof o !== 'object') throw invalidArgument(`${what} must be an object`);
}

/** Listing options, checked: `after` a string, `limit` a positive integer. */
export function listArgs(options: ListOptions): ListOptions {
  checkOptions(options, 'list options');
  const { after, limit } = options;
  if (after !== undefined && typeof after !== 'string') throw invalidArgument('list: `after` must be a string');
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw invalidArgument('list: `limit` must be a positive integer');
  return definedFields(options, ['after', 'limit']);
}

export const SET_CONDITIONS = ['ifVersion', 'ifModRev', 'ifAbsent'] as const;
export const CREATE_FLAGS = ['ephemeral', 'sequential'] as const;
export const DELETE_FLAGS = ['recursive', 'ifVersion'] as const;
export const CHECK_EXPECT = ['version', 'modRev', 'exists'] as const;

export type SetConditions = { ifVersion?: number; ifModRev?: number; ifAbsent?: boolean };
export type CreateFlags = { ephemeral?: boolean; sequential?: boolean };
export type DeleteFlags = { recursive?: boolean; ifVersion?: number };
export type CheckExpect = { version?: number; modRev?: number; exists?: boolean };

/** A multi op after the edge: path checked, value bytes, only the fields given (the wire's shape too). */
export type CheckedMultiOp =
  | ({ op: 'set'; path: string; value: Uint8Array } & SetConditions)
  | ({ op: 'create'; path: string; value: Uint8Array } & CreateFlags)
  | ({ op: 'delete'; path: string } & DeleteFlags)
  | ({ op: 'check'; path: string } & CheckExpect);

/** Checks and shapes a multi's ops; an error names the op's index. */
export function multiArgs(ops: readonly MultiOp[], maxValueBytes: number): CheckedMultiOp[] {
  if (!Array.isArray(ops)) throw invalidArgument('multi: ops must be an array');
  return ops.map((o, i) => multiOp(o, i, maxValueBytes));
}

function multiOp(o: MultiOp, i: number, maxValueBytes: number): CheckedMultiOp {
  if (o === null || typeof o !== 'object') throw invalidArgument(`multi op ${i} must be an object`);
  parsePath(o.path);
  switch (o.op) {
    case 'set': return { op: 'set', path: o.path, value: toBytes(o.value, maxValueBytes, o.path), ...definedFields(o, SET_CONDITIONS) };
    case 'create': return { op: 'create', path: o.path, value: toBytes(o.value, maxValueBytes, o.path), ...definedFields(o, CREATE_FLAGS) };
    case 'delete': return { op: 'delete', path: o.path, ...definedFields(o, DELETE_FLAGS) };
    case 'check': return { op: 'check', path: o.path, ...definedFields(o, CHECK_EXPECT) };
    default: throw invalidArgument(`multi op ${i}: unknown op ${JSON.stringify((o as { op: unknown }).op)}`);
  }
}
