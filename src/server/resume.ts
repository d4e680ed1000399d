/**
 * The hello's sessions when the client asks to resume them (docs/protocol.md,
 * "Resuming a session"): a client whose link was lost names each session
 * it had on it (the connection's own, and those it opened with `session`),
 * with the secret it was given, the locks it holds and the lock requests it
 * still waits for. One path resumes each (resumeOne: ServedStore.resumeSession,
 * an etcd front-end adopting the session's live lease, src/etcd/adopt.ts)
 * or says why not. The connection's own session, when not resumed, is
 * replaced by a fresh one as for any hello, the welcome carrying the typed
 * reason (`resumeError`: SESSION_EXPIRED, or AUTH for a wrong secret); an
 * extra session not resumed is only reported (its client ends it). Any
 * other failure of any of its sessions (the store unreachable) fails the
 * hello, so the client keeps its claim and tries the next front-end.
 */
import type { Lock } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Limits } from '../protocol/limits.js';
import { type HelloBody, PROTOCOL_VERSION, type WelcomeBody, toWireError } from '../protocol/messages.js';
import type { Resumed, ResumeClaim, ServedSession, ServedStore, ServedWait, SessionOrigin } from './served.js';

/** One session of the hello: resumed (`resumed`), or the reason it was not. */
export interface SessionOutcome {
  readonly session: ServedSession;
  /** The claimed locks still held, by the client's handle. */
  readonly locks: ReadonlyMap<number, Lock>;
  /** The claimed waits carried over, by the client's handle. */
  readonly waits: ReadonlyMap<number, ServedWait>;
  readonly resumed?: boolean;
  readonly resumeError?: LatchkeyError;
}

export interface HelloSession extends SessionOutcome {
  /** The extra sessions the resume named, by their handle: resumed (`session` set) or why not. */
  readonly extra: ReadonlyArray<{ readonly s: number; readonly resumed?: Resumed; readonly error?: LatchkeyError }>;
}

type WireClaim = Omit<NonNullable<HelloBody['resume']>, 'sessions'>;

const claimOf = (c: WireClaim): ResumeClaim => ({
  session: c.session, secret: c.secret,
  locks: c.locks.map((l) => ({ handle: l.l, token: l.token })),
  waits: (c.waits ?? []).map((w) => ({ handle: w.l, path: w.path, mode: w.mode, ...(w.wait === undefined ? {} : { wait: w.wait }), ...(w.timeoutMs === undefined ? {} : { timeoutMs: w.timeoutMs }) })),
});

/** Resumes one session of the claim: the same for the connection's own and an extra one. SESSION_EXPIRED or AUTH when it cannot be. */
export function resumeOne(store: ServedStore, claim: WireClaim, origin: SessionOrigin): Promise<Resumed> {
  if (store.resumeSession === undefined) {
    return Promise.reject(new LatchkeyError('SESSION_EXPIRED', 'this server does not resume sessions', { info: { session: claim.session } }));
  }
  return store.resumeSession(claimOf(claim), origin);
}

const typed = (e: unknown): e is LatchkeyError => LatchkeyError.is(e, 'SESSION_EXPIRED') || LatchkeyError.is(e, 'AUTH');

/**
 * Resumes the claimed sessions, or makes a fresh one for the connection
 * (`fresh`) and says why its resume failed. Only SESSION_EXPIRED and AUTH
 * are a session's outcome; any other failure of any of them (the store
 * unreachable) fails the hello, so the client keeps its whole claim for the
 * next front-end: the sessions resumed here meanwhile are handed to
 * `abandon` (they linger as after a cut, for that front-end to take over).
 */
export async function resumeOrOpen(store: ServedStore, claim: NonNullable<HelloBody['resume']>, origin: SessionOrigin, fresh: () => ServedSession, abandon: (s: ServedSession) => void): Promise<HelloSession> {
  let own: SessionOutcome;
  try {
    const r = await resumeOne(store, claim, origin);
    own = { ...r, resumed: true };
  } catch (e) {
    if (!typed(e)) throw e;
    const session = fresh();
    try {
      await session.ready?.();
    } catch (err) {
      void session.end(true).catch(() => {});
      throw err;
    }
    own = { session, locks: new Map(), waits: new Map(), resumeError: e };
  }
  // The extra sessions after the connection's own: SESSION_EXPIRED or AUTH is that session's (the hello goes on).
  const settled = await Promise.all((claim.sessions ?? []).map(async (c) => {
    try {
      return { s: c.s, resumed: await resumeOne(store, c, origin) };
    } catch (e) {
      return typed(e) ? { s: c.s, error: e } : { s: c.s, failed: e };
    }
  }));
  const failed = settled.find((x) => 'failed' in x);
  if (failed !== undefined && 'failed' in failed) {
    if (own.resumed === true) abandon(own.session);
    else void own.session.end(true).catch(() => {});
    for (const x of settled) if ('resumed' in x && x.resumed !== undefined) abandon(x.resumed.session);
    throw failed.failed;
  }
  const extra = settled.flatMap((x) => ('failed' in x ? [] : [x]));
  return { ...own, extra };
}

/** What the welcome says of one session's resume. */
function outcome(resumed: boolean, locks: ReadonlyMap<number, Lock>, waits: ReadonlyMap<number, ServedWait>, error: LatchkeyError | undefined): Partial<Pick<WelcomeBody, 'resumed' | 'locks' | 'waits' | 'resumeError'>> {
  return {
    ...(resumed ? { resumed: true, locks: [...locks.keys()], ...(waits.size === 0 ? {} : { waits: [...waits.keys()] }) } : {}),
    ...(error === undefined ? {} : { resumeError: toWireError(error) }),
  };
}

/** The welcome: the session, the server's terms, and about resuming: the session's credential and the outcome of each resume asked for. */
export function welcomeOf(h: SessionOutcome & { extra?: HelloSession['extra'] }, ttlMs: number, revision: number, limits: Limits): WelcomeBody {
  const s = h.session;
  const extra = h.extra ?? [];
  return {
    t: 'welcome', version: PROTOCOL_VERSION, session: s.id, name: s.name, ttlMs, revision, limits: { ...limits },
    ...(s.secret === undefined ? {} : { secret: s.secret, resumeMs: s.resumeMs ?? 0 }),
    ...outcome(h.resumed === true, h.locks, h.waits, h.resumeError),
    ...(extra.length === 0 ? {} : {
      sessions: extra.map((x) => ({ s: x.s, ...(x.resumed === undefined ? outcome(false, new Map(), new Map(), x.error) : outcome(true, x.resumed.locks, x.resumed.waits, undefined)) })),
    }),
  };
}
