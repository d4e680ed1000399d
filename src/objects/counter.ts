/**
 * Counter: a number that many transactions can add to at once. Two
 * concurrent `add`s change the same object, which conflicts; resolveConflict
 * (ZODB's BTrees.Length does the same) merges them as old + Δcommitted + Δmine,
 * so neither transaction re-runs.
 */
import { Persistent } from './persistent.js';
import { registerClass } from './registry.js';

export class Counter extends Persistent {
  value = 0;

  add(delta: number): number {
    this.value += delta;
    return this.value;
  }

  static resolveConflict(oldState: Record<string, unknown>, committedState: Record<string, unknown>, myState: Record<string, unknown>): Record<string, unknown> {
    const n = (s: Record<string, unknown>): number => (typeof s.value === 'number' ? s.value : 0);
    return { ...myState, value: n(committedState) + n(myState) - n(oldState) };
  }
}
registerClass('latchkey.Counter', Counter as never);
