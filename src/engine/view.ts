/**
 * Synchronous reads of an embedded store (`store.view()`): one snapshot of
 * the published head, read without a promise per call. The async Reader API
 * costs a promise and a microtask turn per read, which is most of an
 * embedded get (profiled: docs/benchmarks.md, "Where the time goes"); a view
 * answers from the same immutable tree at once.
 *
 * A view reads a node's entry through `readEntry` below (`entryOfNode`): a
 * value on disk and not cached is read there with a synchronous pread. The
 * server's synchronous get uses `getInMemory`, which never does I/O and
 * leaves such a read to the asynchronous path.
 */
import type { Entry, ListOptions, Listing, ReadView, Stat } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import { type Node, lookup } from '../core/tree.js';
import { listArgs } from '../edge/args.js';
import { entryOfNode, entryOfNodeInMemory, listNode, statOf } from '../edge/entry.js';

/** What a view needs of the engine. */
export interface ViewSource {
  readonly visibleRoot: Node;
  readonly visibleRev: number;
  checkOpen(): void;
  /** Keeps value files the tree of `rev` references from compaction until the returned function is called (Engine.pinSnapshot). */
  pinSnapshot?(rev: number): () => void;
}

/** Unpins the snapshot of a view dropped without close (a safety net: close is what lets compaction go on promptly). */
const dropped = new FinalizationRegistry<() => void>((unpin) => unpin());

/** The entry a reader sees for `node` at `path` in the tree of revision `rev`. */
export function readEntry(path: string, node: Node, rev: number): Entry {
  return entryOfNode(path, node, rev);
}

export class StoreView implements ReadView {
  readonly revision: number;
  private root: Node | undefined;
  private readonly unpin: (() => void) | undefined;

  /**
   * `pin` (the default): the view pins its snapshot (`Engine.pinSnapshot`),
   * so value compaction deletes no file the view may still read, until it
   * is closed (or collected). The server's per-request views, which never
   * read a value from disk (`getInMemory`, `exists`) and are dropped at
   * once, pass false.
   */
  constructor(private readonly source: ViewSource, pin = true) {
    source.checkOpen();
    this.root = source.visibleRoot;
    this.revision = source.visibleRev;
    if (pin && source.pinSnapshot !== undefined) {
      this.unpin = source.pinSnapshot(this.revision);
      dropped.register(this, this.unpin, this);
    }
  }

  get closed(): boolean {
    return this.root === undefined;
  }

  private node(path: string): Node | undefined {
    const segs = parsePath(path);
    if (this.root === undefined) throw new LatchkeyError('CLOSED', 'the view was closed');
    this.source.checkOpen();
    return lookup(this.root, segs);
  }

  get(path: string): Entry | undefined {
    const n = this.node(path);
    return n === undefined ? undefined : readEntry(path, n, this.revision);
  }

  /** @internal The entry when no I/O is needed to make it; `false` when its value is on disk and not cached. */
  getInMemory(path: string): Entry | undefined | false {
    const n = this.node(path);
    if (n === undefined) return undefined;
    return entryOfNodeInMemory(path, n, this.revision) ?? false;
  }

  exists(path: string): boolean {
    return this.node(path) !== undefined;
  }

  stat(path: string): Stat | undefined {
    const n = this.node(path);
    return n === undefined ? undefined : statOf(n);
  }

  list(path: string, options: ListOptions = {}): Listing {
    const o = listArgs(options);
    const n = this.node(path);
    if (n === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
    return listNode(n, this.revision, o);
  }

  /** Lets the snapshot go (its tree in memory, and its value files on disk); later reads fail CLOSED. */
  close(): void {
    this.root = undefined;
    if (this.unpin !== undefined) {
      dropped.unregister(this);
      this.unpin();
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
