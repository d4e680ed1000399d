/**
 * Records a history of get / set / compare-and-set on a few keys from one
 * client, for the linearizability checker. Values are unique per write
 * (client and sequence number) so a read names the write it saw.
 */
import type { Store } from '../../src/api.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { type HistoryOp, now } from './linearizability.js';

export interface Recorded extends HistoryOp {
  readonly key: string;
}

/** Errors that leave the outcome unknown: the request may or may not have run. */
export function outcomeUnknown(e: unknown): boolean {
  return LatchkeyError.is(e, 'CONNECTION_LOST') || LatchkeyError.is(e, 'CLOSED') || LatchkeyError.is(e, 'TIMEOUT');
}

export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

/**
 * One operation on `key`, recorded into `out`. Any error other than a
 * CONFLICT of a CAS or an unknown outcome is thrown: it is a failure of
 * the store, not a result.
 */
export async function recordOne(store: Store, client: number, key: string, seq: number, random: () => number, lastVersion: Map<string, number>, out: Recorded[]): Promise<void> {
  const r = random();
  const value = `${client}.${seq}`;
  const invoke = now();
  if (r < 0.4) {
    try {
      const e = await store.get(key);
      const version = e?.stat.version ?? 0;
      lastVersion.set(key, version);
      out.push({ key, client, op: { kind: 'read', value: e?.text(), version }, ok: true, invoke, ret: now() });
    } catch (e) {
      if (!outcomeUnknown(e)) throw e;
    }
  } else if (r < 0.7) {
    try {
      await store.set(key, value);
      out.push({ key, client, op: { kind: 'write', value }, ok: true, invoke, ret: now() });
    } catch (e) {
      if (!outcomeUnknown(e)) throw e;
      out.push({ key, client, op: { kind: 'write', value }, ok: undefined, invoke, ret: Infinity });
    }
  } else {
    // Expect the version this client last saw (often stale under contention: both outcomes occur).
    const expect = lastVersion.get(key) ?? 0;
    try {
      await store.set(key, value, { ifVersion: expect });
      out.push({ key, client, op: { kind: 'cas', value, expect }, ok: true, invoke, ret: now() });
    } catch (e) {
      if (LatchkeyError.is(e, 'CONFLICT')) out.push({ key, client, op: { kind: 'cas', value, expect }, ok: false, invoke, ret: now() });
      else if (outcomeUnknown(e)) out.push({ key, client, op: { kind: 'cas', value, expect }, ok: undefined, invoke, ret: Infinity });
      else throw e;
    }
  }
}

export function byKey(ops: readonly Recorded[]): Map<string, Recorded[]> {
  const m = new Map<string, Recorded[]>();
  for (const o of ops) {
    let l = m.get(o.key);
    if (l === undefined) m.set(o.key, l = []);
    l.push(o);
  }
  return m;
}
