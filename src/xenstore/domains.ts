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
