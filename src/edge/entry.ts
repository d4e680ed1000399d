/**
 * What reads give back, one shape for every backend: an `Entry` (bytes,
 * stat, revision, `text()`, `json()`) and a `Listing` (sorted names with
 * their revision and whether a limit cut them short).
 */
import type { Entry, Listing, ListOptions, Stat } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Node } from '../core/tree.js';
import { bytesOf, readValue } from '../core/value.js';

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

/**
 * An entry over a tree node: its stat is made on first use. A value held in
 * the tree is copied on each `value` (stored bytes are shared by every
 * snapshot). A value on disk was read before the entry was made
 * (`entryOfNodeAsync`) into bytes of its own (`owned`: the value store
 * hands out copies, storage/values.ts note 4): `value` gives those, the same
 * array each time, as an entry decoded from the wire does.
 */
class NodeEntry extends BaseEntry {
  private statCache: Stat | undefined;
  constructor(path: string, private readonly node: Node, revision: number, private readonly stored: Uint8Array, private readonly owned: boolean) {
    super(path, revision);
  }

  protected get bytes(): Uint8Array {
    return this.stored;
  }

  get value(): Uint8Array {
    if (this.owned) return this.stored;
    // Uint8Array's slice copies; a Buffer's (values set from strings are Buffers) would share the stored bytes.
    return copyBytes(this.stored);
  }

  /** The stored bytes themselves, not a copy (the server only encodes them). Never to be modified. */
  get sharedValue(): Uint8Array {
    return this.stored;
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

/** An entry over a node whose value is in memory, or read synchronously (a synchronous view). */
export function entryOfNode(path: string, node: Node, revision: number): Entry {
  return new NodeEntry(path, node, revision, bytesOf(node.value), !(node.value instanceof Uint8Array));
}

/** An entry over a node whose value is in memory or cached; undefined when reading it would need I/O. */
export function entryOfNodeInMemory(path: string, node: Node, revision: number): Entry | undefined {
  const v = node.value;
  const bytes = v instanceof Uint8Array ? v : v.reader.peek(v);
  return bytes === undefined ? undefined : new NodeEntry(path, node, revision, bytes, !(v instanceof Uint8Array));
}

/** An entry over a node; a value on disk and not cached is read asynchronously first (never blocks the event loop). */
export function entryOfNodeAsync(path: string, node: Node, revision: number): Entry | Promise<Entry> {
  const v = readValue(node.value);
  const owned = !(node.value instanceof Uint8Array);
  if (v instanceof Uint8Array) return new NodeEntry(path, node, revision, v, owned);
  return v.then((bytes) => new NodeEntry(path, node, revision, bytes, true));
}

export function entryOf(e: { path: string; value: Uint8Array; stat: Stat; revision: number }): Entry {
  return new DataEntry(e.path, e.value, e.stat, e.revision);
}

export function makeListing(names: string[], revision: number, more: boolean): Listing {
  return Object.assign(names, { revision, more });
}

/** The names under `node` (after `after`, at most `limit`), as a Listing of revision `rev`. */
export function listNode(node: Node, rev: number, { after, limit }: ListOptions): Listing {
  if (limit === undefined) return makeListing(node.children.keys(after || undefined), rev, false);
  const names = node.children.keys(after || undefined, limit + 1);
  const more = names.length > limit;
  if (more) names.pop();
  return makeListing(names, rev, more);
}
