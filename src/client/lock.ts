/** Locks held through a remote session; a lock lost on the server (or with the connection) aborts its signal. */
import type { Lock, LockMode } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import { type Args, fromWireError } from '../protocol/messages.js';
import type { ClientConnection, ResumableMember, ResumeItem } from './connection.js';
import type { Push } from './link.js';

/** The session a lock belongs to, as a lock sees it. */
export interface LockOwner {
  readonly id: string;
  /** The session's handle on its connection. */
  readonly handle: number;
  /** Its client may resume it on another server after a lost link (its locks and waits go with it). */
  readonly resumable: boolean;
}

/** A lock request in flight: what a resume needs to carry its wait over. */
export interface LockRequest {
  readonly wait?: boolean;
  readonly timeoutMs?: number;
  /** When it was sent (performance.now): the time left of timeoutMs is counted from here. */
  readonly sent: number;
}

/**
 * A lock handle's state from request to end, attached to the connection
 * under its handle: lockLost may arrive before the grant's reply.
 */
export class LockState implements ResumableMember {
  lock: RemoteLock | undefined;
  lostError: LatchkeyError | undefined;
  readonly since = Date.now();
  constructor(readonly handle: number, readonly owner: LockOwner, readonly path: string, readonly mode: LockMode) {}

  pushed(m: Push): void {
    if (m.t === 'lockLost') this.lost(fromWireError(m.e));
  }

  /** Set while the lock request waits for its answer (a wait a resume may carry over). */
  request: LockRequest | undefined;
  /** A carried wait's outcome, until its requester takes it (reattached): the new link's generation, or why not. */
  private carriedTo: number | LatchkeyError | undefined;
  private wake: (() => void) | undefined;

  /** What a resume carries over: the lock held (handle, token), or the wait (what it asked, the time it has left). */
  resumeClaim(): ResumeItem | undefined {
    if (!this.owner.resumable) return undefined;
    const l = this.lock;
    if (l !== undefined) return l.held ? { kind: 'held', s: this.owner.handle, l: this.handle, token: l.token } : undefined;
    const r = this.request;
    if (r === undefined || this.lostError !== undefined) return undefined;
    const left = r.timeoutMs === undefined ? undefined : Math.max(0, Math.floor(r.timeoutMs - (performance.now() - r.sent)));
    return { kind: 'wait', s: this.owner.handle, l: this.handle, path: this.path, mode: this.mode, ...(r.wait === undefined ? {} : { wait: r.wait }), ...(left === undefined ? {} : { timeoutMs: left }) };
  }

  resumed(generation: number): void {
    if (this.lock !== undefined) this.lock.rebind(generation);
    else this.carry(generation);
  }

  private carry(to: number | LatchkeyError): void {
    this.carriedTo = to;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /**
   * A wait whose link was lost: the generation of the link its session was
   * resumed on, or why it was not. While the link is down the request's own
   * end still counts: its `signal` aborting (ABORTED) or its timeout passing
   * (TIMEOUT, counted from its send) gives the wait up here, and no resume
   * claims it after that (the next server withdraws it).
   */
  reattached(signal?: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (this.wake === settle) this.wake = undefined;
      };
      const settle = (): void => {
        done();
        const c = this.carriedTo;
        this.carriedTo = undefined;
        if (typeof c === 'number') resolve(c);
        else reject(c);
      };
      const giveUp = (e: LatchkeyError): void => {
        done();
        this.request = undefined; // not claimed by the next resume: withdrawn there
        reject(e);
      };
      const onAbort = (): void => giveUp(new LatchkeyError('ABORTED', 'lock request aborted', { path: this.path, cause: signal?.reason }));
      if (this.carriedTo !== undefined) return settle();
      if (signal?.aborted) return onAbort();
      const r = this.request;
      if (r?.timeoutMs !== undefined) {
        const left = r.timeoutMs - (performance.now() - r.sent);
        if (left <= 0) return giveUp(this.timedOut(r.timeoutMs));
        timer = setTimeout(() => giveUp(this.timedOut(r.timeoutMs!)), left);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.wake = settle;
    });
  }

  private timedOut(ms: number): LatchkeyError {
    return new LatchkeyError('TIMEOUT', `lock on ${this.path}: not granted within ${ms} ms`, { path: this.path });
  }

  linkLost(e: LatchkeyError): void {
    if (this.lock === undefined && this.request !== undefined) this.carry(e);
    // A lease given up (SESSION_EXPIRED) says so: the server cannot have granted the lock to anyone yet.
    this.lost(e.code === 'SESSION_EXPIRED' ? e : new LatchkeyError('LOCK_LOST', `lock lost with the connection: ${e.message}`));
  }

  lost(e: LatchkeyError): void {
    if (this.lostError !== undefined) return;
    this.lostError = e;
    this.lock?.markLost(e);
  }
}

const nothing = (): void => {};
/** With the connection gone the server released the lock already. */
const releaseFailed = (e: unknown): void => {
  if (!LatchkeyError.is(e, 'CONNECTION_LOST')) throw e;
};

export class RemoteLock implements Lock {
  /** Made on first look at `signal`: an AbortController per grant was a measurable part of a lock round trip. */
  private ctl: AbortController | undefined;
  /** Why the lock was lost (what its signal aborts with). */
  private lostWith: LatchkeyError | undefined;
  private released = false;
  readonly since = Date.now();

  constructor(
    private readonly conn: ClientConnection,
    readonly owner: LockOwner,
    private readonly state: LockState,
    private generation: number,
    readonly path: string,
    public mode: LockMode,
    public token: number,
    readonly ownerDied: boolean,
  ) {
    state.lock = this;
    if (state.lostError !== undefined) this.markLost(state.lostError);
  }

  get signal(): AbortSignal {
    if (this.ctl === undefined) {
      this.ctl = new AbortController();
      if (this.lostWith !== undefined) this.ctl.abort(this.lostWith);
    }
    return this.ctl.signal;
  }

  get held(): boolean {
    return !this.released && this.lostWith === undefined;
  }

  /** Its session was resumed on a new link: requests about it go there. */
  rebind(generation: number): void {
    this.generation = generation;
  }

  markLost(e: LatchkeyError): void {
    this.conn.detach(this.state.handle, this.state);
    if (this.released || this.lostWith !== undefined) return;
    this.lostWith = e.code === 'LOCK_LOST' || e.code === 'SESSION_EXPIRED' ? e : new LatchkeyError('LOCK_LOST', e.message, { path: this.path, cause: e });
    this.ctl?.abort(this.lostWith);
  }

  private checkHeld(): void {
    if (this.released) throw new LatchkeyError('LOCK_LOST', `lock on ${this.path} was released`, { path: this.path });
    if (this.lostWith !== undefined) throw this.lostWith;
  }

  async upgrade(options: { wait?: boolean; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    this.checkHeld();
    const a: Args<'upgrade'> = { lock: this.state.handle };
    if (options.wait !== undefined) a.wait = options.wait;
    if (options.timeoutMs !== undefined) a.timeoutMs = options.timeoutMs;
    const r = await this.conn.requestOn(this.generation, 'upgrade', a, this.owner.handle, options.signal);
    this.mode = 'exclusive';
    this.token = r.token;
  }

  async markConsistent(): Promise<void> {
    this.checkHeld();
    await this.conn.requestOn(this.generation, 'markLock', { lock: this.state.handle, state: 'consistent' }, this.owner.handle);
  }

  async markUnrecoverable(): Promise<void> {
    this.checkHeld();
    await this.conn.requestOn(this.generation, 'markLock', { lock: this.state.handle, state: 'unrecoverable' }, this.owner.handle);
  }

  async downgrade(): Promise<void> {
    this.checkHeld();
    await this.conn.requestOn(this.generation, 'downgrade', { lock: this.state.handle }, this.owner.handle);
    this.mode = 'shared';
  }

  release(): Promise<void> {
    if (this.released) return Promise.resolve();
    this.released = true;
    this.conn.detach(this.state.handle, this.state);
    if (this.lostWith !== undefined) return Promise.resolve(); // lost already: nothing to give back
    return this.conn.requestOn(this.generation, 'release', { lock: this.state.handle }, this.owner.handle).then(nothing, releaseFailed);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
