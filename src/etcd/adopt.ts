/**
 * Resuming a session on another front-end (`serve --backend etcd`): the
 * session is an etcd lease, and a front-end can take over a live lease
 * that another granted, as long as the client proves it is the session's
 * (the secret whose digest is in the session record P/s/ID).
 *
 * 1. The record must exist (it is attached to the lease: gone once the
 *    lease expired or was revoked) and the secret match: else
 *    SESSION_EXPIRED, or AUTH for a wrong secret.
 * 2. etcd's remaining TTL, asked after noting the time, gives the moment
 *    until which the lease certainly lives; zero or less: SESSION_EXPIRED.
 *    Less than `minimumLeftMs` (two session margins): one keep-alive first,
 *    credited from its send time, and SESSION_EXPIRED if the lease still
 *    has too little (never a session that ends before the client knows).
 * 3. The record is rewritten with this front-end's tag, compared on its
 *    mod revision (of two front-ends resuming at once, one wins); the old
 *    front-end, if alive, sees the new tag and lets the session go without
 *    revoking the lease (EtcdSession.moved). Whatever it saw, it revokes the
 *    lease at the session's end only after deleting the record compared on
 *    its own tag (EtcdSession.stillOurs): never once the session moved.
 *    From here on a failure of the resume does not revoke the lease either:
 *    the session lets it go (EtcdSession.letGo) to expire at its TTL.
 * 4. The new front-end keeps the lease alive (AdoptedLease), and the
 *    session's locks are rebuilt from the queue, the truth: a held request
 *    (granted, with its held marker) whose token the client names becomes a
 *    Lock again; a request the client still waits for goes on waiting here
 *    (rebuildLocks); every other request of the session is withdrawn (a
 *    grant or a wait the client does not know of).
 *    Ephemeral nodes need nothing: they are attached to the lease.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import type { Lock, LockMode } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { WaitClaim } from '../edge/claims.js';
import { type EtcdBackend, etcdError } from './backend.js';
import { EtcdLock, type Locks, type QEntry, isGranted, queueOf } from './locks.js';
import type { AdoptedLease, EtcdSession, SessionLease } from './session.js';

/** A lock the resuming client holds: its handle on the client, and its token. */
export interface HeldClaim {
  readonly handle: number;
  readonly token: number;
}

/** Keeps a lease another client granted alive: keep-alives every TTL/3 on one stream, as etcd3's Lease does. */
class KeptLease extends EventEmitter implements SessionLease {
  private stream: { write(v: unknown): unknown; end(): unknown } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly client: Etcd3, private readonly id: string, private readonly ttl: number) {
    super();
    void this.start();
  }

  private async start(): Promise<void> {
    if (this.closed) return;
    try {
      const stream = await this.client.leaseClient.leaseKeepAlive();
      if (this.closed) {
        stream.end();
        return;
      }
      this.stream = stream;
      stream.on('data', (res: { TTL: string }) => {
        if (Number(res.TTL) <= 0) this.lose(new LatchkeyError('SESSION_EXPIRED', `lease ${this.id} has expired`));
        else this.emit('keepaliveSucceeded', res);
      });
      stream.on('error', () => this.restart());
      const fire = (): void => {
        this.emit('keepaliveFired');
        stream.write({ ID: this.id });
      };
      this.timer = setInterval(fire, (this.ttl * 1000) / 3);
      this.timer.unref();
      fire();
    } catch {
      this.restart();
    }
  }

  private restart(): void {
    clearInterval(this.timer);
    if (this.stream !== undefined) this.emit('keepaliveFailed');
    this.stream?.end();
    this.stream = undefined;
    if (!this.closed) setTimeout(() => void this.start(), 100).unref();
  }

  private lose(err: Error): void {
    this.release();
    this.emit('lost', err);
  }

  grant(): Promise<string> {
    return Promise.resolve(this.id);
  }

  async revoke(): Promise<unknown> {
    this.release();
    return this.client.leaseClient.leaseRevoke({ ID: this.id });
  }

  release(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      this.stream?.end();
    } catch {
      // already ended
    }
  }
}

const expired = (id: string, why: string): LatchkeyError => new LatchkeyError('SESSION_EXPIRED', `session ${id} cannot be resumed: ${why}`, { info: { session: id } });

/**
 * The least lease time an adopted session may start with: twice the margin
 * the session ends itself by (EtcdSession: a quarter TTL, at least 500 ms),
 * so it neither ends at its first check nor leaves the client a resume
 * window (less than one margin) the lease does not cover.
 */
export function minimumLeftMs(ttlSeconds: number): number {
  return 2 * Math.max(500, (ttlSeconds * 1000) / 4);
}

/** One keep-alive of lease `id` on a stream of its own: until when the lease then lives (from the send time), 0 if expired. */
async function keepAliveOnce(client: Etcd3, id: string, timeoutMs: number): Promise<number> {
  const stream = await client.leaseClient.leaseKeepAlive();
  try {
    const sent = Date.now();
    const ttl = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('keep-alive not answered in time')), timeoutMs);
      stream.on('data', (res: { TTL: string }) => { clearTimeout(t); resolve(Number(res.TTL)); });
      stream.on('error', (e: Error) => { clearTimeout(t); reject(e); });
      stream.write({ ID: id });
    });
    return ttl > 0 ? sent + ttl * 1000 : 0;
  } finally {
    try { stream.end(); } catch { /* already ended */ }
  }
}

/** Steps 1-3: checks the claim and takes the lease over. */
export async function adoptLease(backend: EtcdBackend, id: string, secret: string): Promise<AdoptedLease & { name: string }> {
  if (!/^[0-9]{1,20}$/.test(id)) throw expired(id, 'not a session of this store');
  const key = Buffer.from(backend.keys.of('s', id));
  let kv: { value: Buffer; mod_revision: string } | undefined;
  try {
    kv = (await backend.client.kv.range({ key })).kvs[0];
  } catch (e) {
    throw etcdError(e);
  }
  if (kv === undefined) throw expired(id, 'its lease expired or was revoked');
  const rec = JSON.parse(kv.value.toString()) as { h: string; n: string; o: string };
  const want = Buffer.from(rec.h, 'hex');
  const got = createHash('sha256').update(secret).digest();
  if (want.length !== got.length || !timingSafeEqual(want, got)) throw new LatchkeyError('AUTH', `not the secret of session ${id}`);
  const asked = Date.now();
  let remaining: number;
  let granted: number;
  try {
    const t = await backend.client.leaseClient.leaseTimeToLive({ ID: id });
    remaining = Number(t.TTL);
    granted = Number(t.grantedTTL);
  } catch (e) {
    throw etcdError(e);
  }
  if (!(remaining > 0)) throw expired(id, 'its lease expired');
  let goodUntil = asked + remaining * 1000;
  // A lease about to expire is refreshed before it is adopted, or the resume refused: the session would
  // otherwise end itself (or etcd expire the lease) before the client knows it holds nothing.
  if (goodUntil - Date.now() < minimumLeftMs(granted)) {
    goodUntil = await keepAliveOnce(backend.leaseClient, id, backend.callTimeoutMs).catch(() => 0);
    if (goodUntil - Date.now() < minimumLeftMs(granted)) throw expired(id, 'its lease is about to expire and could not be renewed');
  }
  const tag = randomBytes(9).toString('base64');
  const record = Buffer.from(JSON.stringify({ h: rec.h, n: rec.n, o: tag }));
  let rev: number | undefined;
  try {
    rev = await backend.send({
      compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: Number(kv.mod_revision) }],
      success: [{ request_put: { key, value: record, lease: id } }],
      empty: false,
    });
  } catch (e) {
    const err = etcdError(e);
    if (/lease not found/i.test(err.message)) throw expired(id, 'its lease expired');
    throw err;
  }
  if (rev === undefined) throw expired(id, 'it was resumed or ended meanwhile');
  // Its lock requests get ids of a generation of their own (EtcdSession.nextId): none can repeat one the old front-end made.
  return { lease: new KeptLease(backend.leaseClient, id, granted), ttl: granted, goodUntil, tag, record, name: rec.n };
}

export type { WaitClaim } from '../edge/claims.js';

/** A wait carried over: it goes on here (its FIFO place kept), to the lock or its failure; `abort` withdraws it (ABORTED). */
export interface AdoptedWait {
  readonly result: Promise<Lock>;
  abort(reason?: unknown): void;
}

/**
 * Step 4: the session's held locks the client claims, by handle (by token),
 * and its waits (by path and mode, in queue order: the client's handles
 * follow its requests' order, and so does the queue). A claimed wait whose
 * request is in the queue goes on here: granted meanwhile (its held marker
 * written by the old front-end), it comes back as that grant, token and
 * ownerDied (the marker's `d`); still waiting, it is rewritten in place
 * (same key, so the same create revision: its place in the queue) so that
 * the old front-end's compared grant or withdrawal of it fails, and waited
 * for here. Every other request of the session is withdrawn (a wait or a
 * grant the client does not know of).
 */
export async function rebuildLocks(backend: EtcdBackend, locks: Locks, session: EtcdSession, claims: readonly HeldClaim[], waits: readonly WaitClaim[] = []): Promise<{ locks: Map<number, Lock>; waits: Map<number, AdoptedWait> }> {
  const k = backend.keys;
  for (let attempt = 0; ; attempt++) {
    await backend.barrier();
    const q = queueOf(backend);
    const byToken = new Map(claims.map((c) => [c.token, c.handle]));
    const open = [...waits];
    const held: Array<{ handle: number; e: QEntry; token: number; ownerDied: boolean; wait: boolean }> = [];
    const carried: Array<{ claim: WaitClaim; e: QEntry }> = [];
    const withdraw: string[] = [];
    for (const e of q) {
      if (e.session !== session.id) continue;
      const h = backend.mirror.flat.h.get(e.id);
      const handle = h === undefined ? undefined : byToken.get(h.createRev);
      if (h !== undefined && handle !== undefined && isGranted(q, e)) {
        held.push({ handle, e, token: h.createRev, ownerDied: false, wait: false });
        byToken.delete(h.createRev);
        continue;
      }
      const w = open.findIndex((c) => c.path === e.path && c.mode === e.mode);
      if (w < 0) {
        withdraw.push(e.id);
        continue;
      }
      const claim = open.splice(w, 1)[0]!;
      if (h !== undefined && isGranted(q, e)) {
        const d = (JSON.parse(h.value.toString()) as { d?: number }).d === 1;
        held.push({ handle: claim.handle, e, token: h.createRev, ownerDied: d, wait: true });
      } else carried.push({ claim, e });
    }
    if (withdraw.length > 0 || carried.length > 0) {
      const rev = await locks.sendUntilThrough({
        compare: carried.map(({ e }) => ({ key: Buffer.from(k.of('q', e.id)), target: 'Mod' as const, result: 'Equal' as const, mod_revision: e.modRev })),
        empty: false,
        success: [
          ...withdraw.flatMap((id) => [{ request_delete_range: { key: Buffer.from(k.of('q', id)) } }, { request_delete_range: { key: Buffer.from(k.of('h', id)) } }]),
          ...carried.map(({ e }) => ({ request_put: { key: Buffer.from(k.of('q', e.id)), value: backend.mirror.flat.q.get(e.id)!.value, lease: session.id } })),
          { request_put: { key: Buffer.from(backend.mirror.revKey), value: Buffer.from('') } },
        ],
      }, session);
      if (rev === undefined) {
        // A carried request changed under us (the old front-end withdrew or granted it): decide again.
        if (attempt >= 20) throw new LatchkeyError('CONFLICT', `session ${session.id}: its lock requests kept changing while it was resumed`);
        continue;
      }
      await backend.barrier();
    }
    const kept = new Map<number, Lock>();
    const adopted = new Map<number, AdoptedWait>();
    for (const x of held) {
      const lock = new EtcdLock(locks, session, x.e, x.token, x.ownerDied);
      locks.mine.set(x.e.id, lock);
      if (x.wait) adopted.set(x.handle, { result: Promise.resolve(lock), abort: () => {} });
      else kept.set(x.handle, lock);
    }
    for (const { claim, e } of carried) {
      const ctl = new AbortController();
      const result = locks.waitFor(session, e.id, e.path, claim.wait !== false, { signal: ctl.signal, ...(claim.timeoutMs === undefined ? {} : { timeoutMs: claim.timeoutMs }) }, false);
      result.catch(() => {});
      adopted.set(claim.handle, { result, abort: (reason) => ctl.abort(reason) });
    }
    return { locks: kept, waits: adopted };
  }
}
