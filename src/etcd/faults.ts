/**
 * Which etcd members a client sends calls to: the fault handling of one
 * Etcd3 client (its `faultHandling.host` policy), shared by its members.
 *
 * etcd3 asks a member's policy to run each call on that member; a policy
 * that refuses (BrokenCircuitError) makes it try the next member. The rules:
 *  - a refused or broken connection (etcd3's recoverable errors: the member
 *    is down or restarting) takes the member out at once;
 *  - a call that outlived its deadline counts against the member, and
 *    `deadlineMisses` of them in a row (no success between) take it out (the
 *    backend uses 1: a stopped member must cost one deadline; what keeps an
 *    overload from taking out every member is the rule below); the call fails with
 *    CallDeadlineError, which etcd3 neither resends nor answers by closing
 *    the member's channels (it does both for its own deadline error);
 *  - a member is out for `outMs`, then gets calls again (one success clears
 *    its record);
 *  - the last member is never taken out: when every other member is out,
 *    calls go to it whatever its record. A client whose every member is out
 *    would refuse every call for `outMs` even after the cluster recovered
 *    (seen under overload: all three members missed one deadline, and the
 *    client refused everything for 10 s, its session included).
 */
import { BrokenCircuitError, type IPolicy } from 'cockatiel';
import { type Etcd3, GRPCDeadlineExceededError, isRecoverableError } from 'etcd3';

/** A call that outlived its deadline, as etcd3 does not treat as recoverable (not resent, no reset). */
export class CallDeadlineError extends Error {
  constructor(readonly host: string, cause: Error) {
    super(`a call to etcd member ${host} outlived its deadline (outcome unknown): ${cause.message}`, { cause });
    this.name = 'CallDeadlineError';
  }
}

/** The signal handed to each call: etcd3 never aborts through it (one for all calls, not one per call). */
const NEVER = new AbortController().signal;

export interface MemberHealthOptions {
  /** How long a member is out after it is taken out. */
  outMs: number;
  /** Consecutive deadline misses that take a member out. */
  deadlineMisses: number;
}

interface MemberState {
  misses: number;
  outUntil: number;
}

export class MemberHealth {
  private readonly members = new Map<string, MemberState>();
  /** Members taken out, over the client's life (stats and tests). */
  tripped = 0;

  constructor(private readonly options: MemberHealthOptions) {}

  private out(m: MemberState, now: number): boolean {
    return m.outUntil > now;
  }

  /** The policy etcd3 runs each call to `host` through. */
  policy(host: string): IPolicy {
    const m: MemberState = { misses: 0, outUntil: 0 };
    this.members.set(host, m);
    const execute = async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => {
      const now = Date.now();
      if (this.out(m, now) && [...this.members.values()].some((o) => o !== m && !this.out(o, now))) {
        throw new BrokenCircuitError(`etcd member ${host} is out of rotation for ${Math.ceil((m.outUntil - now) / 1000)} s more`);
      }
      try {
        const r = await fn({ signal: NEVER });
        m.misses = 0;
        m.outUntil = 0;
        return r;
      } catch (e) {
        const err = e as Error;
        if (err instanceof GRPCDeadlineExceededError) {
          if (++m.misses >= this.options.deadlineMisses) this.takeOut(m);
          // etcd3 counts a deadline miss as recoverable: it would close every channel of this member's
          // services (the session's keep-alive stream among them) and send the call again, up to three
          // more times, each with a fresh deadline: under overload a 3 s call became 12 s of 4× the load.
          // A call whose deadline passed has an unknown outcome; the caller decides (backend.ts send()).
          throw new CallDeadlineError(host, err);
        }
        if (isRecoverableError(err)) this.takeOut(m);
        throw e;
      }
    };
    // etcd3 uses only execute(); the rest of IPolicy (events) is never read.
    return { execute } as unknown as IPolicy;
  }

  private takeOut(m: MemberState): void {
    m.misses = 0;
    m.outUntil = Date.now() + this.options.outMs;
    this.tripped++;
  }

  /** Members out of rotation now. */
  outNow(): number {
    const now = Date.now();
    return [...this.members.values()].filter((m) => this.out(m, now)).length;
  }
}

/**
 * The raft term this client last saw, and a way for a Txn to learn that the
 * leader changed while it waited for its answer.
 *
 * Why: a Txn sent to a follower is forwarded to the leader as a proposal; if
 * that leader dies first, the proposal is lost and etcd answers nothing
 * until its own request timeout (5 s + two election timeouts), so the call
 * runs to its deadline (3.3 s with a 10 s lease). Measured: with four
 * writers sending Txns back to back, a leader SIGKILL stopped every one of
 * them for 3.34 s (the deadline) in each of three kills, though a new
 * leader was serving after about 1 s. A call still unanswered after
 * `checkMs` has the term probed (one serializable range, answered by any
 * member at once; one probe at a time, shared by every waiting call); once
 * it is newer than when the call went out, the call's outcome is unknown
 * exactly as after a missed deadline, and the sender does what it does then
 * (backend.ts send(): a barrier, the commit id, the same Txn again).
 */
export class LeaderTerm {
  term = 0;
  private probing: Promise<void> | undefined;
  /** Probes sent (stats and tests). */
  probes = 0;

  constructor(private readonly probe: () => Promise<number>, private readonly checkMs: number) {}

  note(term: string | number | undefined): void {
    const t = Number(term);
    if (t > this.term) this.term = t;
  }

  /** Learns the term (one probe; a failure leaves it as it was): the backend does it once at start. */
  learn(): Promise<void> {
    return this.probeOnce();
  }

  /**
   * The call's answer, or 'moved' when a term newer than `since` shows up
   * first. `since` 0 is a term not known yet: the first probe's answer is
   * then the call's term, not a move (else a slow first Txn would count as
   * moved and be sent again, spending an attempt).
   */
  async race<T>(call: Promise<T>, since: number): Promise<{ value: T } | 'moved'> {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const settled = call.then((value) => ({ value }));
    const watch = async (): Promise<'moved'> => {
      for (;;) {
        await new Promise<void>((r) => {
          timer = setTimeout(r, this.checkMs);
        });
        if (done) break;
        await this.probeOnce();
        if (since === 0) since = this.term; // unknown until now (0 again if the probe failed)
        else if (this.term > since) return 'moved';
      }
      return new Promise<'moved'>(() => {}); // the call answered: never
    };
    try {
      return await Promise.race([settled, watch()]);
    } finally {
      done = true;
      clearTimeout(timer);
    }
  }

  private probeOnce(): Promise<void> {
    this.probing ??= this.probe().then((t) => this.note(t), () => {}).finally(() => {
      this.probing = undefined;
    });
    this.probes++;
    return this.probing;
  }
}

/**
 * One keep-alive of lease `id` on a stream of its own (a member etcd3's pool
 * picks, maybe another than the lease's own stream's): etcd's TTL for it,
 * seconds (0: the lease is gone). Rejects on an error or after `timeoutMs`.
 */
export async function keepAliveOnce(client: Etcd3, id: string, timeoutMs: number): Promise<number> {
  const stream = await client.leaseClient.leaseKeepAlive();
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no keep-alive answer in ${timeoutMs} ms`)), timeoutMs);
      stream.on('data', (res: { TTL: string }) => {
        clearTimeout(timer);
        resolve(Number(res.TTL));
      });
      stream.on('error', (e: Error) => {
        clearTimeout(timer);
        reject(e);
      });
      stream.write({ ID: id });
    });
  } finally {
    try {
      stream.end();
    } catch {
      // already ended
    }
  }
}

/**
 * A second keep-alive when the lease's own stream sits on one unanswered.
 *
 * Why: etcd answers a stream's keep-alives one after another, each through
 * its member (a follower forwards it to the leader and waits; around a
 * leader change, or on a busy member, that took seconds). Measured at load
 * 17-18 with three leader kills and a 300-VM workload beside: one keep-alive
 * answered 4.0 s after it was sent, without any kill in that moment; the
 * previous answer dated the lease to expire for the session 180 ms after that
 * answer came (the session gives up a quarter TTL before etcd could expire
 * it). A session that gives up loses its ephemerals and locks and fails its
 * writes SESSION_EXPIRED, as the bench's failover row saw once at load ~34.
 * When the stream's oldest unanswered keep-alive is `afterMs` old, one
 * keep-alive goes on a fresh stream (keepAliveOnce; at most one at a time);
 * its answer is credited from its own send time, as any answer is.
 */
export class KeepAliveHedge {
  private readonly unanswered: number[] = [];
  private inFlight = false;
  /** Set by `alone()`: every keep-alive is one of these, on its own stream, one every aloneEveryMs. */
  private only = false;
  private lastSent = 0;
  /** Hedges sent (stats and tests). */
  sent = 0;

  constructor(private readonly options: {
    afterMs: number;
    /** Alone, one keep-alive every this many ms (default afterMs). */
    aloneEveryMs?: number;
    send: (timeoutMs: number) => Promise<number>;
    credit: (sentAt: number, ttlSeconds: number) => void;
    gone: () => void;
  }) {}

  /** The lease's stream sent a keep-alive. */
  fired(now: number): void {
    if (this.unanswered.length < 64) this.unanswered.push(now);
  }

  /** The lease's stream answered its oldest keep-alive. */
  answered(): void {
    this.unanswered.shift();
  }

  /** The lease's stream failed: its unanswered keep-alives will never be answered. */
  failed(): void {
    this.unanswered.length = 0;
  }

  /**
   * The lease's own stream can no longer be credited (its answers cannot be
   * told from a replaced stream's, see session.ts): from now on the lease
   * is kept alive by these keep-alives alone, one every aloneEveryMs, each on a
   * stream of its own and credited from its own send time.
   */
  alone(): void {
    this.only = true;
  }

  /** Called on a timer: sends a hedge when the oldest unanswered keep-alive is too old (or, alone, every afterMs). */
  tick(now: number): void {
    if (this.inFlight) return;
    if (this.only) {
      if (now - this.lastSent < (this.options.aloneEveryMs ?? this.options.afterMs)) return;
    } else {
      const oldest = this.unanswered[0];
      if (oldest === undefined || now - oldest < this.options.afterMs) return;
    }
    this.inFlight = true;
    this.sent++;
    const sentAt = Date.now();
    this.lastSent = now;
    this.options.send(this.options.afterMs * 2).then((ttl) => {
      if (ttl > 0) this.options.credit(sentAt, ttl);
      else this.options.gone();
    }, () => {}).finally(() => {
      this.inFlight = false;
    });
  }
}
