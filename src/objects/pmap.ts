/**
 * PMap: a small persistent mapping whose entries are the object's own
 * fields, so `root.accounts ??= new PBTree()` reads and writes like a plain
 * object and assignment is tracked. The whole map is one stored object:
 * use PBTree for large or contended collections. Method names (`get`, `set`,
 * `has`, `delete`, `keys`, …) live on the prototype: an entry of the same name
 * shadows the method for property access only, and the methods never look at
 * the prototype.
 */
import { Persistent, isPersistent } from './persistent.js';
import { registerClass } from './registry.js';

export class PMap<V = unknown> extends Persistent {
  // Entries are fields of any type: `root.accounts ??= new PBTree<string, Account>()` types at the use site.
  [key: string]: any;

  /** The value (loaded, when it is a persistent object). */
  async get(key: string): Promise<V | undefined> {
    await this.load();
    if (!Object.prototype.hasOwnProperty.call(this, key)) return undefined;
    const v = Reflect.get(this, key) as V;
    if (isPersistent(v)) await v.load();
    return v;
  }

  async set(key: string, value: V): Promise<V> {
    await this.load();
    Reflect.set(this, key, value);
    return value;
  }

  async has(key: string): Promise<boolean> {
    await this.load();
    return Object.prototype.hasOwnProperty.call(this, key);
  }

  async delete(key: string): Promise<boolean> {
    await this.load();
    if (!Object.prototype.hasOwnProperty.call(this, key)) return false;
    return Reflect.deleteProperty(this, key);
  }

  async keys(): Promise<string[]> {
    await this.load();
    return Object.keys(this);
  }

  async size(): Promise<number> {
    return (await this.keys()).length;
  }
}
registerClass('latchkey.PMap', PMap as never);
