/**
 * Persistent: the base class of stored objects, and the ghost state machine.
 *
 * Design (see docs/objects.md, "Ghosts and seed 003"):
 *  1. Every Persistent is a Proxy over its own instance (the constructor
 *     returns it), so an assignment `obj.x = v` is seen: it marks the object
 *     changed and joins it to its connection's transaction (ZODB's
 *     `_p_changed = True`). Mutating a value in place (`obj.list.push(v)`) is
 *     not seen: call `obj.changed()`.
 *  2. States: New (made by `new`, no oid yet) → saved at commit when reachable
 *     → Loaded ⇄ Changed; Loaded → Ghost on invalidation or eviction; Ghost →
 *     Loaded only through `load()`.
 *  3. The seed 003 rule: a ghost becomes Loaded in ONE synchronous block that
 *     first installs every field and then flips the status (`install`). The
 *     fetch, decode, migrate and default filling all happen before that block,
 *     on a state object no one else can see. Nothing can run between "fields
 *     installed" and "status Loaded", and nothing before it can read a field
 *     (a ghost's field read throws GhostError, it never answers `undefined`).
 *  4. Single flight: the first `load()` of a ghost starts one fetch and stores
 *     its promise on the object; every other `load()` in that cache generation
 *     awaits the same promise. Invalidation bumps the generation: a fetch
 *     started before it finishes without installing anything. A failed fetch
 *     leaves the object a ghost and rejects every waiter with the same error;
 *     the next `load()` tries again.
 *  5. `__testing.markLoadedBeforeInstall` re-creates the seed's bug (status
 *     first, fields after an await) so the seed-003 test can prove its checker
 *     would see it. Never set outside that test.
 */
import { LatchkeyError } from '../core/errors.js';
import { GhostError, notInTransaction } from './errors.js';

export const META: unique symbol = Symbol('latchkey.persistent');

export const Status = { New: 0, Ghost: 1, Loaded: 2, Changed: 3 } as const;
export type Status = typeof Status[keyof typeof Status];

/** What a connection gives an object: loads, change registration, access order. */
export interface Jar {
  /** Increments at every transaction start of the connection. */
  readonly txSerial: number;
  /** Fetches and prepares the state (decode, migrate, defaults) without touching the object. */
  fetchState(m: Meta): Promise<FetchedState>;
  /** After install or a first access in a transaction: LRU order, eviction. */
  accessed(m: Meta): void;
  /** The object changed: throws when there is no open transaction. */
  registerChanged(m: Meta): void;
}

export interface FetchedState {
  readonly fields: Record<string, unknown>;
  readonly raw: Uint8Array;
  readonly modRev: number;
  readonly refs: readonly string[];
  /** Defaults that hold new persistent objects were filled: the object must be saved. */
  readonly mustSave: boolean;
}

export interface Meta {
  /** The proxy: what everyone holds. */
  self: Persistent;
  /** The instance behind the proxy: where fields live. */
  readonly target: Record<string | symbol, unknown>;
  oid: string | undefined;
  jar: Jar | undefined;
  status: Status;
  loading: Promise<void> | undefined;
  /** Cache generation: bumped by every ghostify, so a stale fetch installs nothing. */
  gen: number;
  /** modRev of the stored state the fields came from (0: never stored). */
  modRev: number;
  /** The stored bytes the fields came from (skip unchanged writes; `old` of resolveConflict). */
  raw: Uint8Array | undefined;
  /** Oids the stored state referenced (to tell new references at commit). */
  refs: readonly string[];
  /** txSerial of the jar's transaction that last touched it: touched objects are not evicted. */
  lastTx: number;
}

export const __testing = { markLoadedBeforeInstall: false };

export interface PersistentClass<T extends Persistent = Persistent> {
  new (): T;
  readonly prototype: T;
  resolveConflict?(oldState: Record<string, unknown>, committedState: Record<string, unknown>, myState: Record<string, unknown>): Record<string, unknown>;
  migrate?(state: Record<string, unknown>): Record<string, unknown> | void;
}

function className(m: Meta): string {
  return (m.target.constructor as { name?: string } | undefined)?.name ?? 'Persistent';
}

function markChanged(m: Meta): void {
  if (m.status === Status.Loaded) {
    const jar = m.jar;
    if (jar === undefined) return;
    jar.registerChanged(m);
    m.status = Status.Changed;
  }
}

// Reading these on a ghost is not a field read: promise resolution asks for `then`, inspection for the rest.
const passThrough = new Set(['then', 'toJSON', 'constructor', 'inspect', 'asymmetricMatch', '$$typeof']);

const handler: ProxyHandler<Record<string | symbol, unknown>> = {
  get(target, prop, receiver) {
    if (typeof prop === 'symbol') return Reflect.get(target, prop, receiver);
    const m = target[META] as Meta;
    if (m.status === Status.Ghost) {
      if (prop in target) return Reflect.get(target, prop, receiver);
      if (passThrough.has(prop)) return undefined;
      throw new GhostError(className(m), m.oid, prop);
    }
    if (m.jar !== undefined && m.lastTx !== m.jar.txSerial) m.jar.accessed(m);
    return Reflect.get(target, prop, receiver);
  },
  set(target, prop, value, receiver) {
    if (typeof prop === 'symbol') return Reflect.set(target, prop, value);
    const m = target[META] as Meta;
    if (m.status === Status.Ghost) throw new GhostError(className(m), m.oid, prop);
    return Reflect.set(target, prop, value, receiver);
  },
  defineProperty(target, prop, desc) {
    if (typeof prop !== 'symbol') {
      const m = target[META] as Meta;
      if (m.status === Status.Ghost) throw new GhostError(className(m), m.oid, prop);
      markChanged(m);
    }
    return Reflect.defineProperty(target, prop, desc);
  },
  deleteProperty(target, prop) {
    if (typeof prop !== 'symbol') {
      const m = target[META] as Meta;
      if (m.status === Status.Ghost) throw new GhostError(className(m), m.oid, prop);
      markChanged(m);
    }
    return Reflect.deleteProperty(target, prop);
  },
};

function attach(target: Record<string | symbol, unknown>, status: Status): Persistent {
  const m: Meta = {
    self: undefined as unknown as Persistent, target, oid: undefined, jar: undefined, status,
    loading: undefined, gen: 0, modRev: 0, raw: undefined, refs: [], lastTx: -1,
  };
  Object.defineProperty(target, META, { value: m, enumerable: false, writable: false, configurable: false });
  const p = new Proxy(target, handler) as unknown as Persistent;
  m.self = p;
  return p;
}

export class Persistent {
  declare readonly [META]: Meta;

  constructor() {
    // Returning the proxy makes it `this` for the subclass's field initializers too.
    return attach(this as unknown as Record<string | symbol, unknown>, Status.New) as this;
  }

  /** Loads the state if this is a ghost (single flight); resolves to this object, loaded. */
  load(): Promise<this> {
    const m = this[META];
    if (m.status !== Status.Ghost) {
      if (m.jar !== undefined && m.lastTx !== m.jar.txSerial) m.jar.accessed(m);
      return Promise.resolve(this);
    }
    return loadGhost(m).then(() => this);
  }

  /** Marks the object changed, for mutations the proxy cannot see (`this.items.push(x)`): ZODB's `_p_changed = True`. */
  changed(): void {
    const m = this[META];
    if (m.status === Status.Ghost) throw new GhostError(className(m), m.oid, 'changed()');
    if (m.status === Status.Loaded && m.jar === undefined) throw notInTransaction('changed()');
    markChanged(m);
  }
}

/** A ghost of `cls` (no constructor run: the state comes from the store). */
export function makeGhost(cls: PersistentClass, oid: string, jar: Jar): Persistent {
  const target = Object.create(cls.prototype) as Record<string | symbol, unknown>;
  const p = attach(target, Status.Ghost);
  const m = p[META];
  m.oid = oid;
  m.jar = jar;
  return p;
}

export function metaOf(obj: Persistent): Meta {
  return obj[META];
}

export function isPersistent(v: unknown): v is Persistent {
  return typeof v === 'object' && v !== null && (v as Record<symbol, unknown>)[META] !== undefined;
}

function loadGhost(m: Meta): Promise<void> {
  if (m.loading !== undefined) return m.loading;
  const jar = m.jar;
  if (jar === undefined) return Promise.reject(new LatchkeyError('INVALID_ARGUMENT', 'a ghost without a connection'));
  const gen = m.gen;
  const p = (async () => {
    const fetched = await jar.fetchState(m);
    if (m.gen !== gen || m.status !== Status.Ghost) return; // invalidated meanwhile, or already installed
    if (__testing.markLoadedBeforeInstall) {
      // The seed-003 bug, on purpose: Loaded before the state is there.
      m.status = Status.Loaded;
      await new Promise((resolve) => setTimeout(resolve, 0)); // setstate "releasing the GIL"

    }
    install(m, fetched);
  })();
  m.loading = p;
  const clear = (): void => { if (m.loading === p) m.loading = undefined; };
  p.then(clear, clear);
  return p;
}

/** Fields first, then the status: one synchronous block, nothing observable in between. */
function install(m: Meta, s: FetchedState): void {
  const t = m.target;
  for (const k of Object.keys(s.fields)) t[k] = s.fields[k];
  m.raw = s.raw;
  m.modRev = s.modRev;
  m.refs = s.refs;
  m.status = Status.Loaded;
  m.lastTx = -1;
  m.jar!.accessed(m);
  if (s.mustSave) markChanged(m);
}

/** Back to a ghost: fields dropped, generation bumped. Only Loaded objects (never Changed). */
export function ghostify(m: Meta): void {
  m.gen++;
  m.loading = undefined;
  if (m.status !== Status.Loaded) return;
  for (const k of Object.keys(m.target)) delete m.target[k];
  m.status = Status.Ghost;
  m.raw = undefined;
  m.refs = [];
}

/** Own enumerable fields: the state that is stored. */
export function fieldsOf(m: Meta): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(m.target)) out[k] = m.target[k];
  return out;
}

/** Object identity of an object's oid (undefined until first saved). */
export function oidOf(obj: Persistent): string | undefined {
  return obj[META].oid;
}

export function isGhost(obj: Persistent): boolean {
  return obj[META].status === Status.Ghost;
}

/** A ghost whose object is not stored yet (the root of an empty database) becomes an empty, loaded object. */
export function installNew(m: Meta): void {
  m.gen++;
  m.loading = undefined;
  m.raw = undefined;
  m.modRev = 0;
  m.refs = [];
  m.status = Status.Loaded;
}
