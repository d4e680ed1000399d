/**
 * Shape checks for decoded messages: tiny composable validators whose static
 * types are inferred, so one definition gives both the check run on untrusted
 * input and the TypeScript type the server and client program against.
 *
 * A validator either returns a fresh, well-typed value or throws ShapeError
 * naming where (`a.ops[3].path`) and what was expected. Objects are strict:
 * an unknown key is an error, so a typo in a client is found at once rather
 * than silently ignored. msgpack has no `undefined`; an absent key and `nil`
 * both read as "not given" for optional fields.
 */

export class ShapeError extends Error {
  constructor(readonly at: string, readonly expected: string) {
    super(`${at || 'message'}: expected ${expected}`);
    this.name = 'ShapeError';
  }
}

export type Schema<T> = (v: unknown, at: string) => T;
/** A schema marked optional: the key may be absent (or nil). */
export type OptSchema<T> = Schema<T | undefined> & { readonly optional: true };
export type Infer<S> = S extends Schema<infer T> ? T : never;

type Props = Record<string, Schema<unknown>>;
type Flat<T> = { [K in keyof T]: T[K] } & {};
type RequiredKeys<P> = { [K in keyof P]: P[K] extends { optional: true } ? never : K }[keyof P];
type OptionalKeys<P> = { [K in keyof P]: P[K] extends { optional: true } ? K : never }[keyof P];
export type ObjectOf<P extends Props> = Flat<
  { [K in RequiredKeys<P>]: Infer<P[K]> } & { [K in OptionalKeys<P>]?: Exclude<Infer<P[K]>, undefined> }
>;

export const str: Schema<string> = (v, at) => {
  if (typeof v !== 'string') throw new ShapeError(at, 'a string');
  return v;
};

export const bool: Schema<boolean> = (v, at) => {
  if (typeof v !== 'boolean') throw new ShapeError(at, 'a boolean');
  return v;
};

/** A non-negative safe integer: ids, revisions, counts. */
export const uint: Schema<number> = (v, at) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ShapeError(at, 'a non-negative integer');
  return v;
};

/** A safe integer of either sign: deltas and values of atomic ops. */
export const int: Schema<number> = (v, at) => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new ShapeError(at, 'an integer');
  return v;
};

/** Any finite number (timestamps, rates in stats). */
export const num: Schema<number> = (v, at) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ShapeError(at, 'a finite number');
  return v;
};

/** Binary data, always handed out as a plain Uint8Array (msgpackr gives a Buffer or not depending on its input). */
export const bytes: Schema<Uint8Array> = (v, at) => {
  if (!(v instanceof Uint8Array)) throw new ShapeError(at, 'binary data');
  return Object.getPrototypeOf(v) === Uint8Array.prototype ? v : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
};

export const nil: Schema<null> = (v, at) => {
  if (v !== null && v !== undefined) throw new ShapeError(at, 'nil');
  return null;
};

export function literal<const T extends string>(...values: T[]): Schema<T> {
  const set: ReadonlySet<string> = new Set(values);
  return (v, at) => {
    if (typeof v !== 'string' || !set.has(v)) throw new ShapeError(at, `one of ${values.join(', ')}`);
    return v as T;
  };
}

export function opt<T>(s: Schema<T>): OptSchema<T> {
  const f = ((v: unknown, at: string) => (v === undefined || v === null ? undefined : s(v, at))) as OptSchema<T>;
  (f as { optional: boolean }).optional = true;
  return f;
}

export function nullable<T>(s: Schema<T>): Schema<T | null> {
  return (v, at) => (v === undefined || v === null ? null : s(v, at));
}

export function arrayOf<T>(s: Schema<T>, max = Infinity): Schema<T[]> {
  return (v, at) => {
    if (!Array.isArray(v)) throw new ShapeError(at, 'an array');
    if (v.length > max) throw new ShapeError(at, `at most ${max} items`);
    for (let i = 0; i < v.length; i++) {
      const x: unknown = v[i];
      const r = s(x, `${at}[${i}]`);
      if (r !== x) v[i] = r;
    }
    return v as T[];
  };
}

export function union<A, B>(a: Schema<A>, b: Schema<B>, expected: string): Schema<A | B> {
  return (v, at) => {
    try {
      return a(v, at);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
    }
    try {
      return b(v, at);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      throw new ShapeError(at, expected);
    }
  };
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Any map with string keys, taken as is (error `info`, `stats`). */
export const anyMap: Schema<Record<string, unknown>> = (v, at) => {
  if (!isPlainObject(v)) throw new ShapeError(at, 'a map');
  return v;
};

/**
 * A map with these fields. Strict by default (an unknown field is an error:
 * what a server accepts). `loose` keeps unknown fields: what a client accepts
 * in replies, so a newer server may add fields without breaking older clients.
 */
export function object<P extends Props>(props: P, opts: { loose?: boolean } = {}): Schema<ObjectOf<P>> {
  const keys = Object.keys(props);
  const strict = opts.loose !== true;
  // The fields' labels for the last `at` seen (a schema is nearly always checked at one place):
  // building `${at}.${k}` for every field of every message was garbage on the request path.
  let labelsAt: string | undefined;
  let labels: string[] = [];
  return (v, at) => {
    if (!isPlainObject(v)) throw new ShapeError(at, 'a map');
    if (strict) {
      for (const k in v) {
        if (!Object.prototype.hasOwnProperty.call(props, k)) throw new ShapeError(at === '' ? k : `${at}.${k}`, 'no such field');
      }
    }
    // Checked in place: decoded maps are fresh objects nobody else holds, and copying each
    // one doubled the garbage of every request. nil optional fields are removed.
    if (labelsAt !== at) {
      labels = keys.map((k) => (at === '' ? k : `${at}.${k}`));
      labelsAt = at;
    }
    const ls = labels; // a nested check of this same schema may replace `labels`
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      const x = v[k];
      const r = props[k]!(x, ls[i]!);
      if (r === undefined) {
        if (x !== undefined) delete v[k];
      } else if (r !== x) v[k] = r;
    }
    return v as ObjectOf<P>;
  };
}

/** A map discriminated by a string field: picks the schema by that field's value. */
export function tagged<K extends string, V extends Record<string, Schema<unknown>>>(
  key: K, variants: V,
): Schema<{ [T in keyof V]: Infer<V[T]> }[keyof V]> {
  const names = Object.keys(variants);
  return (v, at) => {
    if (!isPlainObject(v)) throw new ShapeError(at, 'a map');
    const tag = v[key];
    if (typeof tag !== 'string' || !Object.prototype.hasOwnProperty.call(variants, tag)) {
      throw new ShapeError(at === '' ? key : `${at}.${key}`, `one of ${names.join(', ')}`);
    }
    return variants[tag]!(v, at) as { [T in keyof V]: Infer<V[T]> }[keyof V];
  };
}
