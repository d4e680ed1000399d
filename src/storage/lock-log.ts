/**
 * Lock state in the write-ahead log: what must survive a server crash so the
 * next holder of a lock held at the crash is told `ownerDied`, a lock marked
 * unrecoverable stays so, and fencing tokens keep increasing.
 *
 * 1. Events, not decisions. The lock table logs the *effects* of its
 *    decisions: a hold begins (token, path) or ends (token), a taint is set or
 *    cleared at a path, a path is marked unrecoverable or reset, the token
 *    ceiling moves. Replaying them is a plain fold (`LockImage.apply`), with
 *    none of the table's rules repeated here.
 * 2. No fsync of their own. Events are buffered in the log and written as one
 *    record (type 2) in front of the next commit record, or by the next sync
 *    (the engine asks for one shortly after a lock-only burst). A write made
 *    under a lock is appended after the lock's grant, and the log only ever
 *    loses a suffix in a crash: a write that survived implies its grant did.
 * 3. Checkpoints. Every segment starts with a record (type 3) holding the
 *    whole image as of its start, so retiring old segments loses nothing and
 *    recovery folds the events of the segments it reads over the checkpoint
 *    of the first one.
 * 4. Recovery turns every hold that was never released into a taint: its
 *    owner died with the server (`LockImage.recovered`).
 * 5. Tokens. A grant may be revealed before its hold record is durable, so
 *    the largest logged token alone does not bound the tokens a crashed run
 *    handed out. A *ceiling* does: the log durably records a ceiling before
 *    any token above the previous one is granted (at open, one synced
 *    record: `TOKEN_BLOCK` above the recovered maximum), and moves it up by
 *    another block when half of it is used. After a restart, tokens start
 *    above the recovered ceiling. (The ceiling move rides the next sync; it
 *    is durable long before 2^19 more grants in practice; the lock service
 *    asserts nothing about it — see docs/architecture.md, "Fencing tokens".)
 */
import { Packr, Unpackr } from 'msgpackr';

/** Tokens reserved per durable ceiling record. */
export const TOKEN_BLOCK = 1 << 20;

export type LockEvent =
  | { readonly t: 'hold'; readonly token: number; readonly path: string }
  | { readonly t: 'unhold'; readonly token: number }
  | { readonly t: 'taint'; readonly path: string }
  | { readonly t: 'untaint'; readonly path: string }
  | { readonly t: 'broken'; readonly path: string }
  | { readonly t: 'reset'; readonly path: string }
  | { readonly t: 'ceiling'; readonly token: number };

/** The lock state the log carries: a fold of events. */
export class LockImage {
  lastToken = 0;
  ceiling = 0;
  readonly held = new Map<number, string>();
  readonly taints = new Set<string>();
  readonly broken = new Set<string>();
  /** False until a checkpoint or an event was seen (a log written before locks were logged). */
  seen = false;

  apply(e: LockEvent): void {
    this.seen = true;
    switch (e.t) {
      case 'hold':
        this.held.set(e.token, e.path);
        if (e.token > this.lastToken) this.lastToken = e.token;
        return;
      case 'unhold': this.held.delete(e.token); return;
      case 'taint': this.taints.add(e.path); return;
      case 'untaint': this.taints.delete(e.path); return;
      case 'broken': this.broken.add(e.path); return;
      case 'reset': {
        // A reset clears the path and everything below it (see LockService.resetLock).
        const under = (p: string): boolean => e.path === '/' || p === e.path || p.startsWith(e.path + '/');
        for (const p of [...this.taints]) if (under(p)) this.taints.delete(p);
        for (const p of [...this.broken]) if (under(p)) this.broken.delete(p);
        return;
      }
      case 'ceiling': if (e.token > this.ceiling) this.ceiling = e.token; return;
    }
  }

  /** Tokens of the next run start above this. */
  get tokenFloor(): number {
    return Math.max(this.lastToken, this.ceiling);
  }

  copy(): LockImage {
    const c = new LockImage();
    c.restore(this.encode(), true);
    return c;
  }

  /** What a restart starts from: holds left at the crash become taints. */
  recovered(): { tokenFloor: number; taints: string[]; broken: string[]; seen: boolean } {
    const taints = new Set(this.taints);
    for (const p of this.held.values()) taints.add(p);
    return { tokenFloor: this.tokenFloor, taints: [...taints].sort(), broken: [...this.broken].sort(), seen: this.seen };
  }

  encode(): unknown[] {
    return [this.lastToken, this.ceiling, [...this.held].flat(), [...this.taints], [...this.broken]];
  }

  /** Replaces the state with a checkpoint's; false when its shape is wrong. */
  restore(raw: unknown, trusted = false): boolean {
    if (!trusted && !isImage(raw)) return false;
    const [lastToken, ceiling, held, taints, broken] = raw as [number, number, (number | string)[], string[], string[]];
    this.lastToken = lastToken;
    this.ceiling = ceiling;
    this.held.clear();
    for (let i = 0; i < held.length; i += 2) this.held.set(held[i] as number, held[i + 1] as string);
    this.taints.clear();
    for (const p of taints) this.taints.add(p);
    this.broken.clear();
    for (const p of broken) this.broken.add(p);
    this.seen = true;
    return true;
  }
}

function isImage(raw: unknown): boolean {
  if (!Array.isArray(raw) || raw.length !== 5) return false;
  const [a, b, held, taints, broken] = raw as unknown[];
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) return false;
  if (!Array.isArray(held) || held.length % 2 !== 0) return false;
  for (let i = 0; i < held.length; i += 2) if (!Number.isSafeInteger(held[i]) || typeof held[i + 1] !== 'string') return false;
  return Array.isArray(taints) && taints.every((p) => typeof p === 'string') && Array.isArray(broken) && broken.every((p) => typeof p === 'string');
}

const HOLD = 1;
const UNHOLD = 2;
const TAINT = 3;
const UNTAINT = 4;
const BROKEN = 5;
const RESET = 6;
const CEILING = 7;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false });

export function eventTuple(e: LockEvent): unknown[] {
  switch (e.t) {
    case 'hold': return [HOLD, e.token, e.path];
    case 'unhold': return [UNHOLD, e.token];
    case 'taint': return [TAINT, e.path];
    case 'untaint': return [UNTAINT, e.path];
    case 'broken': return [BROKEN, e.path];
    case 'reset': return [RESET, e.path];
    case 'ceiling': return [CEILING, e.token];
  }
}

export function packEvents(tuples: readonly unknown[]): Uint8Array {
  return packr.pack(tuples);
}

export function packImage(img: LockImage): Uint8Array {
  return packr.pack(img.encode());
}

/** Decodes an events payload; undefined when it is not one (the caller reports CORRUPT). */
export function unpackEvents(payload: Uint8Array): LockEvent[] | undefined {
  let raw: unknown;
  try {
    raw = unpackr.unpack(payload);
  } catch {
    return undefined;
  }
  if (!Array.isArray(raw)) return undefined;
  const out: LockEvent[] = [];
  for (const t of raw as unknown[]) {
    if (!Array.isArray(t)) return undefined;
    const [k, v, p] = t as unknown[];
    const tok = Number.isSafeInteger(v) ? (v as number) : undefined;
    const str = typeof v === 'string' ? v : undefined;
    if (k === HOLD && tok !== undefined && typeof p === 'string') out.push({ t: 'hold', token: tok, path: p });
    else if (k === UNHOLD && tok !== undefined) out.push({ t: 'unhold', token: tok });
    else if (k === CEILING && tok !== undefined) out.push({ t: 'ceiling', token: tok });
    else if (str === undefined) return undefined;
    else if (k === TAINT) out.push({ t: 'taint', path: str });
    else if (k === UNTAINT) out.push({ t: 'untaint', path: str });
    else if (k === BROKEN) out.push({ t: 'broken', path: str });
    else if (k === RESET) out.push({ t: 'reset', path: str });
    else return undefined;
  }
  return out;
}

export function unpackImage(payload: Uint8Array): LockImage | undefined {
  let raw: unknown;
  try {
    raw = unpackr.unpack(payload);
  } catch {
    return undefined;
  }
  const img = new LockImage();
  return img.restore(raw) ? img : undefined;
}
