/**
 * PList: a persistent list, stored as one object (its items inline; items
 * that are persistent objects are references). Every method loads the list
 * first, so it works on a ghost; mutations mark it changed.
 */
import { invalidArgument } from '../core/errors.js';
import { Persistent, isPersistent } from './persistent.js';
import { registerClass } from './registry.js';

export class PList<T = unknown> extends Persistent {
  items: T[] = [];

  async length(): Promise<number> {
    await this.load();
    return this.items.length;
  }

  /** The item at `i` (negative counts from the end), loaded when persistent. */
  async get(i: number): Promise<T | undefined> {
    await this.load();
    const v = this.items.at(i);
    if (isPersistent(v)) await v.load();
    return v;
  }

  async set(i: number, value: T): Promise<void> {
    await this.load();
    if (!Number.isInteger(i) || i < 0 || i >= this.items.length) throw invalidArgument(`PList.set: index ${i} out of range`);
    this.items[i] = value;
    this.changed();
  }

  async append(...values: T[]): Promise<number> {
    await this.load();
    this.items.push(...values);
    this.changed();
    return this.items.length;
  }

  async splice(start: number, deleteCount: number, ...values: T[]): Promise<T[]> {
    await this.load();
    const out = this.items.splice(start, deleteCount, ...values);
    this.changed();
    return out;
  }

  async toArray(): Promise<T[]> {
    await this.load();
    return [...this.items];
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    await this.load();
    for (const v of [...this.items]) {
      if (isPersistent(v)) await v.load();
      yield v;
    }
  }
}
registerClass('latchkey.PList', PList as never);
