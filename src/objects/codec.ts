/**
 * The stored form of an object: msgpack of `[className, fields]`, where a
 * reference to another persistent object is a msgpack extension holding
 * `[oid, className]` (ZODB's persistent reference carries the class too, so
 * a ghost of the right class is made without loading it).
 *
 * Encoding walks the fields first (`walk`): it turns persistent objects into
 * references, Maps into an extension of their own, and rejects anything that
 * would not come back as it went in — functions, symbols, class instances
 * that are not Persistent, cycles through plain data — naming the field's
 * path (`Account(1f3a).history[2].cb`). Plain values, arrays, plain objects,
 * Map, Set, Date, Uint8Array and bigint are stored inside the object; shared
 * or cyclic structure goes through Persistent objects, which are stored once.
 */
import { Packr, addExtension } from 'msgpackr';
import { LatchkeyError } from '../core/errors.js';
import { NotSerializableError } from './errors.js';
import { isPersistent, type Persistent } from './persistent.js';

/** A reference to a stored object, as `resolveConflict` and `migrate` see one. */
export class PersistentRef {
  constructor(readonly oid: string, readonly className: string) {}
}

class MapBox {
  constructor(readonly entries: unknown[]) {}
}

const REF_EXT = 41;
const MAP_EXT = 42;

/** How the decoder turns a reference into a value: the connection's cache, or a PersistentRef. */
let refReader: ((oid: string, className: string) => unknown) | undefined;
let refsSeen: string[] | undefined;

addExtension({
  Class: PersistentRef,
  type: REF_EXT,
  write: (r: PersistentRef) => [r.oid, r.className],
  read: (d: [string, string]) => {
    refsSeen?.push(d[0]);
    return refReader === undefined ? new PersistentRef(d[0], d[1]) : refReader(d[0], d[1]);
  },
});
addExtension({
  Class: MapBox,
  type: MAP_EXT,
  write: (b: MapBox) => b.entries,
  read: (d: unknown[]) => {
    const m = new Map<unknown, unknown>();
    for (let i = 0; i + 1 < d.length; i += 2) m.set(d[i], d[i + 1]);
    return m;
  },
});

const packr = new Packr({ useRecords: false, moreTypes: true });

/** Turns a live persistent object into the reference to store (assigning an oid to a new one). */
export type RefWriter = (obj: Persistent, fieldPath: string) => PersistentRef;

export function walk(v: unknown, path: string, onRef: RefWriter | undefined, stack: Set<object>): unknown {
  if (v === null || v === undefined) return v;
  switch (typeof v) {
    case 'string': case 'number': case 'boolean': case 'bigint': return v;
    case 'function': throw new NotSerializableError(path, 'a function');
    case 'symbol': throw new NotSerializableError(path, 'a symbol');
  }
  const o = v as object;
  if (isPersistent(o)) {
    if (onRef === undefined) throw new NotSerializableError(path, 'a persistent object where only plain state is allowed');
    return onRef(o, path);
  }
  if (o instanceof PersistentRef) return o;
  if (o instanceof Uint8Array) return o;
  if (o instanceof Date) return o;
  if (stack.has(o)) throw new NotSerializableError(path, 'a cycle through plain data (make the shared part a Persistent object)');
  stack.add(o);
  try {
    if (Array.isArray(o)) {
      const a = new Array<unknown>(o.length);
      for (let i = 0; i < o.length; i++) a[i] = walk(o[i], `${path}[${i}]`, onRef, stack);
      return a;
    }
    if (o instanceof Map) {
      const e: unknown[] = [];
      for (const [k, x] of o) e.push(walk(k, `${path}<key>`, onRef, stack), walk(x, `${path}.get(${String(k)})`, onRef, stack));
      return new MapBox(e);
    }
    if (o instanceof Set) {
      const s = new Set<unknown>();
      let i = 0;
      for (const x of o) s.add(walk(x, `${path}<set ${i++}>`, onRef, stack));
      return s;
    }
    const proto = Object.getPrototypeOf(o) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      const name = (o.constructor as { name?: string } | undefined)?.name ?? 'unknown';
      throw new NotSerializableError(path, `an instance of ${name} (only plain data and Persistent objects can be stored)`);
    }
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) out[k] = walk((o as Record<string, unknown>)[k], `${path}.${k}`, onRef, stack);
    return out;
  } finally {
    stack.delete(o);
  }
}

/** Packs a record whose fields have been walked already. */
export function packRecord(className: string, walked: Record<string, unknown>): Uint8Array {
  return packr.pack([className, walked]);
}

export interface Decoded {
  readonly className: string;
  readonly fields: Record<string, unknown>;
  readonly refs: string[];
}

/** Unpacks a record; references become what `reader` makes of them (PersistentRef when none). */
export function unpackRecord(bytes: Uint8Array, reader?: (oid: string, className: string) => unknown): Decoded {
  const prevReader = refReader;
  const prevSeen = refsSeen;
  const refs: string[] = [];
  refReader = reader;
  refsSeen = refs;
  let r: unknown;
  try {
    r = packr.unpack(bytes);
  } catch (e) {
    if (e instanceof LatchkeyError) throw e;
    throw new LatchkeyError('CORRUPT', `an object record does not decode: ${(e as Error).message}`, { cause: e });
  } finally {
    refReader = prevReader;
    refsSeen = prevSeen;
  }
  if (!Array.isArray(r) || typeof r[0] !== 'string' || typeof r[1] !== 'object' || r[1] === null) {
    throw new LatchkeyError('CORRUPT', 'an object record is not [className, fields]');
  }
  return { className: r[0], fields: r[1] as Record<string, unknown>, refs };
}

/** Byte equality (to skip writing an object whose state did not change). */
export function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (a === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Value equality through the stored form (resolveConflict helpers compare values with it). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  return sameBytes(packr.pack(walk(a, '', undefined, new Set())), packr.pack(walk(b, '', undefined, new Set())));
}
