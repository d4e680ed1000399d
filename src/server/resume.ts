/**
 * The hello's session when the client asks to resume one (docs/protocol.md,
 * "Resuming a session"): a client whose link was lost names its session,
 * the secret the welcome gave it and the locks it holds; the store resumes
 * the session (ServedStore.resumeSession: an etcd front-end adopts the
 * session's live lease, src/etcd/adopt.ts) or says why not, and then the
 * connection gets a fresh session as for any hello, the welcome carrying
 * the typed reason (`resumeError`: SESSION_EXPIRED, or AUTH for a wrong
 * secret). Any other failure (the store unreachable) fails the hello, so the
 * client keeps its claim and tries the next front-end.
 */
import type { Lock } from '../api.js';
import { LatchkeyError } from '../core/errors.js';
import type { Limits } from '../protocol/limits.js';
import { type HelloBody, PROTOCOL_VERSION, type WelcomeBody, toWireError } from '../protocol/messages.js';
import type { ServedSession, ServedStore, SessionOrigin } from './served.js';

export interface HelloSession {
  readonly session: ServedSession;
  /** The claimed locks still held, by the client's handle. */
  readonly locks: ReadonlyMap<number, Lock>;
  readonly resumed?: boolean;
  readonly resumeError?: LatchkeyError;
}

type Claim = NonNullable<HelloBody['resume']>;

/** Resumes the claimed session, or makes a fresh one (`fresh`) and says why the resume failed. */
export async function resumeOrOpen(store: ServedStore, claim: Claim, origin: SessionOrigin, fresh: () => ServedSession): Promise<HelloSession> {
  let resumeError: LatchkeyError;
  if (store.resumeSession === undefined) {
    resumeError = new LatchkeyError('SESSION_EXPIRED', 'this server does not resume sessions', { info: { session: claim.session } });
  } else {
    try {
      const r = await store.resumeSession({ session: claim.session, secret: claim.secret, locks: claim.locks.map((l) => ({ handle: l.l, token: l.token })) }, origin);
      return { session: r.session, locks: r.locks, resumed: true };
    } catch (e) {
      if (!LatchkeyError.is(e, 'SESSION_EXPIRED') && !LatchkeyError.is(e, 'AUTH')) throw e;
      resumeError = e;
    }
  }
  const session = fresh();
  try {
    await session.ready?.();
  } catch (e) {
    void session.end(true).catch(() => {});
    throw e;
  }
  return { session, locks: new Map(), resumeError };
}

/** The welcome: the session, the server's terms, and about resuming: the session's credential and the outcome of a resume asked for. */
export function welcomeOf(h: HelloSession, ttlMs: number, revision: number, limits: Limits): WelcomeBody {
  const s = h.session;
  return {
    t: 'welcome', version: PROTOCOL_VERSION, session: s.id, name: s.name, ttlMs, revision, limits: { ...limits },
    ...(s.secret === undefined ? {} : { secret: s.secret, resumeMs: s.resumeMs ?? 0 }),
    ...(h.resumed === true ? { resumed: true, locks: [...h.locks.keys()] } : {}),
    ...(h.resumeError === undefined ? {} : { resumeError: toWireError(h.resumeError) }),
  };
}
