/**
 * What reads give back, one shape for every backend: an `Entry` (bytes,
 * stat, revision, `text()`, `json()`) and a `Listing` (sorted names with
 * their revision and whether a limit cut them short).
 */
import type { Entry, Listing, Stat } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Node } from '../core/tree.js';

const decoder = new TextDecoder('utf-8', { fatal: false });

abstract class BaseEntry implements Entry {
  constructor(readonly path: string, readonly revision: number) {}
  abstract readonly value: Uint8Array;
  abstract readonly stat: Stat;
  /** The bytes without a copy, for decoding. */
  protected abstract readonly bytes: Uint8Array;

  text(): string {
    return decoder.decode(this.bytes);
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

/** A copy of `b`, of its class (Buffer.prototype.slice returns a view, not a copy). */
export function copyBytes(b: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(b);
}

export function statOf(n: Node): Stat {
  const s: { -readonly [K in keyof Stat]: Stat[K] } = {
    createRev: n.createRev, modRev: n.modRev, version: n.version, childrenRev: n.childrenRev, numChildren: n.children.size,
  };
  if (n.ephemeralOwner !== undefined) s.ephemeralOwner = n.ephemeralOwner;
  if (n.perms !== undefined) s.perms = n.perms;
  return s;
}

/** An entry over a tree node: its stat is made on first use, its value copied on each (stored bytes are shared by every snapshot). */
class NodeEntry extends BaseEntry {
  private statCache: Stat | undefined;
  constructor(path: string, private readonly node: Node, revision: number) {
    super(path, revision);
  }

  protected get bytes(): Uint8Array {
    return this.node.value;
  }

  get value(): Uint8Array {
    // Uint8Array's slice copies; a Buffer's (values set from strings are Buffers) would share the stored bytes.
    return copyBytes(this.node.value);
  }

  /** The stored bytes themselves, not a copy (the server only encodes them). Never to be modified. */
  get sharedValue(): Uint8Array {
    return this.node.value;
  }

  get stat(): Stat {
    return (this.statCache ??= statOf(this.node));
  }
}

/** An entry over bytes and a stat of its own (decoded from the wire). */
class DataEntry extends BaseEntry {
  constructor(path: string, readonly value: Uint8Array, readonly stat: Stat, revision: number) {
    super(path, revision);
  }

  protected get bytes(): Uint8Array {
    return this.value;
  }
}

export function entryOfNode(path: string, node: Node, revision: number): Entry {
  return new NodeEntry(path, node, revision);
}

export function entryOf(e: { path: string; value: Uint8Array; stat: Stat; revision: number }): Entry {
  return new DataEntry(e.path, e.value, e.stat, e.revision);
}

export function makeListing(names: string[], revision: number, more: boolean): Listing {
  return Object.assign(names, { revision, more });
}
