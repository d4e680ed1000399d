/**
 * What the engine tells observers (metrics, logs, the web console) as it
 * happens. Observers are optional and few; the hot path pays one length
 * check when there are none, and nothing it does waits for them.
 *
 * An observer must not throw (a throw is caught and reported as a bug on a
 * later tick, the engine goes on) and must not call back into the engine
 * synchronously in a way that changes state.
 */
import { BugError } from '../core/errors.js';
import type { LockInfo } from '../api.js';

export interface SessionEndEvent {
  readonly session: string;
  readonly name: string;
  /** True: ended without a clean close (connection lost, lease lapsed). */
  readonly died: boolean;
  /** The locks it held when it ended (each goes to its next waiter, owner-died when `died`). */
  readonly locks: readonly LockInfo[];
  /** How many ephemeral nodes it owned (deleted now). */
  readonly ephemerals: number;
}

export interface EngineEvents {
  /** A group of commits became durable: `fsyncMs` the log sync, `commitMs` each commit's time from submit to publish. */
  synced?(fsyncMs: number, commitMs: readonly number[]): void;
  /**
   * A lock request (or a write admission) that waited was granted (`waited`);
   * or one granted at once carried ownerDied (`waited` false, `waitMs` 0).
   */
  lockGranted?(e: { path: string; session: string; waitMs: number; ownerDied: boolean; admission: boolean; waited: boolean }): void;
  /** A lock request was refused because waiting would close a cycle. */
  deadlock?(e: { path: string; session: string; message: string }): void;
  /** An owner-died taint was set (`on`) or cleared. */
  taint?(e: { path: string; on: boolean }): void;
  /** A transaction commit failed CONFLICT. */
  conflict?(e: { path: string | undefined; session: string }): void;
  sessionEnded?(e: SessionEndEvent): void;
  sessionOpened?(e: { session: string; name: string }): void;
  snapshot?(e: { revision: number; ms: number; error?: string }): void;
  /** An operator cleared taints and unrecoverable marks at and below `path`. */
  lockReset?(e: { path: string }): void;
  /** The store turned read-only (a failed log sync). */
  readOnly?(e: { reason: string }): void;
}

type Name = keyof EngineEvents;
type Arg<K extends Name> = Parameters<NonNullable<EngineEvents[K]>>;

/** The engine's observers. `emit` is cheap when there are none. */
export class Observers {
  private list: EngineEvents[] = [];

  get any(): boolean {
    return this.list.length > 0;
  }

  /** Adds an observer; the returned function removes it. */
  add(o: EngineEvents): () => void {
    this.list = [...this.list, o];
    return () => {
      this.list = this.list.filter((x) => x !== o);
    };
  }

  emit<K extends Name>(name: K, ...args: Arg<K>): void {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const f = list[i]![name] as ((...a: Arg<K>) => void) | undefined;
      if (f === undefined) continue;
      try {
        f.apply(list[i], args);
      } catch (e) {
        queueMicrotask(() => { throw new BugError(`engine observer ${name} threw: ${(e as Error).message}`); });
      }
    }
  }
}
