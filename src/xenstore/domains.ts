/**
 * The domains a XenStore server talks to, and what each may still use.
 *
 * Domain 0 always exists: every connection on the main Unix socket belongs
 * to it (as oxenstored treats socket connections). Other domains exist from
 * INTRODUCE to RELEASE; their connections come through a per-domain
 * transport (domain-dir.ts here; a shared ring under a hypervisor). A
 * domain's quotas (open transactions, watches) are counted over all of its
 * connections, as a ring is one connection per domain; the entry quota is
 * counted by node owner in entries.ts.
 *
 * The table itself is a cache of a `DomainRegistry` (below): this process's
 * memory for the embedded store, the cluster for the etcd backend, so that
 * several front-ends of one store agree on which guests exist.
 *
 * SET_TARGET makes a domain act for another (a device model for its guest):
 * every connection of the domain then has its target's access too, and a
 * domain targeting dom0 is privileged.
 */
import type { Requester } from './perms.js';

/** What a domain's connections must do when the domain is released. */
export interface DomainMember {
  /** Closes the connection (the domain was released). */
  destroy(): void;
}

export class XsDomain implements Requester {
  target: number | undefined = undefined;
  /** Open transactions and watches over all the domain's connections. */
  transactions = 0;
  watches = 0;
  readonly members = new Set<DomainMember>();
  /** RELEASE began (its record says so): no new connections. */
  releasing = false;
  /** @introduceDomain was fired for it (its transport opened): its removal fires @releaseDomain. */
  announced = false;
  constructor(readonly domid: number, public mfn: string, public port: number) {}
}

export class DomainTable {
  private readonly byId = new Map<number, XsDomain>();
  readonly dom0 = new XsDomain(0, '0', 0);

  constructor() {
    this.byId.set(0, this.dom0);
  }

  get(domid: number): XsDomain | undefined {
    return this.byId.get(domid);
  }

  /** Guests currently introduced, in domid order. */
  guests(): XsDomain[] {
    return [...this.byId.values()].filter((d) => d.domid !== 0).sort((a, b) => a.domid - b.domid);
  }

  add(d: XsDomain): void {
    this.byId.set(d.domid, d);
  }

  delete(domid: number): XsDomain | undefined {
    const d = this.byId.get(domid);
    if (d !== undefined && domid !== 0) this.byId.delete(domid);
    return d;
  }
}

/** A domain as the registry keeps it (shared by every front-end of a store when the store is shared). */
export interface DomainRecord {
  readonly domid: number;
  readonly mfn: string;
  readonly port: number;
  /** SET_TARGET's domain, if any. */
  readonly target?: number;
  /** RELEASE began: its connections are closed, its nodes being removed; the record goes next. */
  readonly releasing?: boolean;
}

/**
 * Where the domain table lives: this process's memory (`LocalDomains`, the
 * embedded store), or the cluster (the etcd backend's, src/etcd/xenstore.ts),
 * so that every front-end of one store knows the same guests. The server
 * (server.ts) keeps a `DomainTable` of live `XsDomain`s in step with it
 * through `onChange`, called once per applied change, in order, before the
 * call that made it resolves.
 */
export interface DomainRegistry {
  records(): Iterable<DomainRecord>;
  /** Creates the record, or updates the port of one with the same mfn; 'mfn': introduced with another mfn; 'busy': being released. */
  introduce(domid: number, mfn: string, port: number): Promise<'created' | 'updated' | 'mfn' | 'busy'>;
  /** false: not introduced. */
  setTarget(domid: number, target: number): Promise<boolean>;
  /** Marks the record releasing; false: not introduced. */
  beginRelease(domid: number): Promise<boolean>;
  /** Deletes the record (the end of RELEASE, or an INTRODUCE undone). */
  remove(domid: number): Promise<void>;
  onChange(fn: (domid: number, rec: DomainRecord | undefined) => void): () => void;
}

/**
 * A wait for every write acknowledged before a request arrived: what a store
 * whose head moves by a watch (etcd) gives XenStore reads. `ticket()` is
 * taken when a request arrives; `wait(ticket)` is undefined when a barrier
 * begun after that already completed, else a promise of one.
 */
export interface ReadBarrier {
  ticket(): number;
  wait(ticket: number): Promise<void> | undefined;
}

/** The domain table in this process's memory (the embedded store: one process serves its guests). */
export class LocalDomains implements DomainRegistry {
  private readonly byId = new Map<number, DomainRecord>();
  private readonly listeners = new Set<(domid: number, rec: DomainRecord | undefined) => void>();

  records(): Iterable<DomainRecord> {
    return this.byId.values();
  }

  private set(domid: number, rec: DomainRecord | undefined): void {
    if (rec === undefined) this.byId.delete(domid);
    else this.byId.set(domid, rec);
    for (const l of this.listeners) l(domid, rec);
  }

  introduce(domid: number, mfn: string, port: number): Promise<'created' | 'updated' | 'mfn' | 'busy'> {
    const r = this.byId.get(domid);
    if (r === undefined) {
      this.set(domid, { domid, mfn, port });
      return Promise.resolve('created');
    }
    if (r.releasing === true) return Promise.resolve('busy');
    if (r.mfn !== mfn) return Promise.resolve('mfn');
    this.set(domid, { ...r, port });
    return Promise.resolve('updated');
  }

  setTarget(domid: number, target: number): Promise<boolean> {
    const r = this.byId.get(domid);
    if (r === undefined) return Promise.resolve(false);
    this.set(domid, { ...r, target });
    return Promise.resolve(true);
  }

  beginRelease(domid: number): Promise<boolean> {
    const r = this.byId.get(domid);
    if (r === undefined) return Promise.resolve(false);
    this.set(domid, { ...r, releasing: true });
    return Promise.resolve(true);
  }

  remove(domid: number): Promise<void> {
    if (this.byId.has(domid)) this.set(domid, undefined);
    return Promise.resolve();
  }

  onChange(fn: (domid: number, rec: DomainRecord | undefined) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
