/** Conversions at the API edge: values in, Entries and Listings out. */
import type { Entry, Listing, Stat, Value } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Node } from '../core/tree.js';

const decoder = new TextDecoder('utf-8', { fatal: false });

/**
 * Copies the caller's bytes (the tree is immutable: a caller mutating its
 * array afterwards must not change the store) and enforces the size limit.
 */
export function toBytes(v: Value | undefined, maxBytes: number, path: string): Uint8Array {
  let b: Uint8Array;
  if (v === undefined) b = new Uint8Array(0);
  else if (typeof v === 'string') b = Buffer.from(v, 'utf8');
  else if (v instanceof Uint8Array) b = Uint8Array.prototype.slice.call(v);
  else throw new LatchkeyError('INVALID_ARGUMENT', `value for ${path} must be a string or Uint8Array, not ${typeof v}`, { path });
  if (b.length > maxBytes) throw new LatchkeyError('TOO_LARGE', `value for ${path} is ${b.length} bytes; the limit is ${maxBytes}`, { path, info: { size: b.length, limit: maxBytes } });
  return b;
}

export function statOf(n: Node): Stat {
  const s: { -readonly [K in keyof Stat]: Stat[K] } = {
    createRev: n.createRev, modRev: n.modRev, version: n.version, childrenRev: n.childrenRev, numChildren: n.children.size,
  };
  if (n.ephemeralOwner !== undefined) s.ephemeralOwner = n.ephemeralOwner;
  if (n.perms !== undefined) s.perms = n.perms;
  return s;
}

class EntryImpl implements Entry {
  private statCache: Stat | undefined;
  constructor(readonly path: string, private readonly node: Node, readonly revision: number) {}

  /** A copy: the stored bytes are shared by every snapshot and never change. */
  get value(): Uint8Array {
    return this.node.value.slice();
  }

  /** The stored bytes themselves, not a copy (the server only encodes them). Never to be modified. */
  get sharedValue(): Uint8Array {
    return this.node.value;
  }

  get stat(): Stat {
    return (this.statCache ??= statOf(this.node));
  }

  text(): string {
    return decoder.decode(this.node.value);
  }

  json<T = unknown>(): T {
    const s = this.text();
    try {
      return JSON.parse(s) as T;
    } catch (e) {
      throw new LatchkeyError('INVALID_ARGUMENT', `value at ${this.path} is not JSON`, { path: this.path, cause: e });
    }
  }

  toJSON(): unknown {
    return { path: this.path, value: this.text(), stat: this.stat, revision: this.revision };
  }
}

export function makeEntry(path: string, node: Node, revision: number): Entry {
  return new EntryImpl(path, node, revision);
}

export function makeListing(names: string[], revision: number, more: boolean): Listing {
  return Object.assign(names, { revision, more });
}
