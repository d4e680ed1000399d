/**
 * `latchkey/objects`: persistent objects over any latchkey Store (embedded or
 * connect()ed) — ZODB's model, with seed 003's ghost race designed out.
 * See docs/objects.md.
 */
export { ObjectDB } from './db.js';
export type { ObjectDBOptions, ObjectDBStats, PackResult } from './db.js';
export { Connection } from './connection.js';
export type { ConnectionStats } from './connection.js';
export { Persistent, isGhost, oidOf } from './persistent.js';
export type { PersistentClass } from './persistent.js';
export { persistent, registerClass } from './registry.js';
export { PersistentRef } from './codec.js';
export { GhostError, NotSerializableError, UnknownClassError } from './errors.js';
export { PMap } from './pmap.js';
export { PList } from './plist.js';
export { PBTree, BTreeBucket, BTreeNode } from './pbtree.js';
export type { BTreeKey, RangeOptions } from './pbtree.js';
export { Counter } from './counter.js';
