/** Conversions at the client's API edge: values out to the wire, entries and listings back. */
import type { Entry, Listing, Stat, Value } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { WireEntry } from '../protocol/messages.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

/** A value as bytes, refused locally (TOO_LARGE) when the server would refuse it. */
export function toBytes(v: Value | undefined, maxBytes: number, path: string): Uint8Array {
  let b: Uint8Array;
  if (v === undefined) b = new Uint8Array(0);
  else if (typeof v === 'string') b = encoder.encode(v);
  else if (v instanceof Uint8Array) b = v;
  else throw new LatchkeyError('INVALID_ARGUMENT', `value for ${path} must be a string or Uint8Array, not ${typeof v}`, { path });
  if (b.length > maxBytes) throw new LatchkeyError('TOO_LARGE', `value for ${path} is ${b.length} bytes; the limit is ${maxBytes}`, { path, info: { size: b.length, limit: maxBytes } });
  return b;
}

class RemoteEntry implements Entry {
  readonly path: string;
  readonly value: Uint8Array;
  readonly stat: Stat;
  readonly revision: number;

  constructor(w: WireEntry) {
    this.path = w.path;
    this.value = w.value;
    this.stat = w.stat;
    this.revision = w.revision;
  }

  text(): string {
    return decoder.decode(this.value);
  }

  json<T = unknown>(): T {
    try {
      return JSON.parse(this.text()) as T;
    } catch (e) {
      throw new LatchkeyError('INVALID_ARGUMENT', `value at ${this.path} is not JSON`, { path: this.path, cause: e });
    }
  }

  toJSON(): unknown {
    return { path: this.path, value: this.text(), stat: this.stat, revision: this.revision };
  }
}

export function makeEntry(w: WireEntry | null): Entry | undefined {
  return w === null ? undefined : new RemoteEntry(w);
}

export function makeListing(names: string[], revision: number, more: boolean): Listing {
  return Object.assign(names, { revision, more });
}
