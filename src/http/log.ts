/**
 * Structured logs (pino): JSON lines on stderr by default, pino-pretty when
 * stderr is a terminal (or `pretty: true`). `latchkey serve --log-level`
 * sets the level.
 *
 * `logEngineEvents` logs what an operator must be able to find afterwards,
 * each with its fields (docs/observability.md lists them): every session
 * death, owner-died taint, refused deadlock, snapshot, read-only turn, lock
 * reset; `logRecovery` the steps of the last recovery. Per-request events
 * are not logged (they are metrics).
 */
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';
import type { EmbeddedStore } from '../engine/store.js';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level?: LogLevel;
  /** Pretty lines instead of JSON (default: when the destination is a terminal). */
  pretty?: boolean;
  /** Where to write (default: stderr, synchronously, so a crash loses no line). */
  destination?: NodeJS.WritableStream | number;
}

export function createLogger(o: LoggerOptions = {}): Logger {
  const level = o.level ?? 'info';
  const dest = o.destination ?? 2;
  const tty = dest === 2 ? process.stderr.isTTY === true : false;
  if (o.pretty ?? tty) {
    // Loaded only for pretty output (a terminal): a server logging JSON lines does not pay for it.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
    const stream = pretty({ colorize: tty, destination: dest as number, sync: true, translateTime: 'SYS:HH:MM:ss.l' });
    return pino({ level, base: { pid: process.pid } }, stream);
  }
  const stream = typeof dest === 'number' ? pino.destination({ dest, sync: true }) : dest;
  return pino({ level, base: { pid: process.pid } }, stream);
}

/** Logs the engine's notable events; returns the detach function. */
export function logEngineEvents(store: EmbeddedStore, log: Logger): () => void {
  return store.observe({
    sessionEnded(e) {
      const fields = { event: 'session-ended', session: e.session, name: e.name, died: e.died, locks: e.locks.map((l) => ({ path: l.path, mode: l.mode, token: l.token })), ephemerals: e.ephemerals };
      // A client's connection closing ends its sessions as deaths too: warn only when a death left locks behind.
      if (e.died) log[e.locks.length > 0 ? 'warn' : 'info'](fields, `session ${e.name} died holding ${e.locks.length} lock(s) and ${e.ephemerals} ephemeral node(s)`);
      else log.debug(fields, `session ${e.name} closed`);
    },
    taint(e) {
      if (e.on) log.warn({ event: 'taint', path: e.path }, `lock ${e.path} is owner-died: its holder's session ended while holding it`);
      else log.info({ event: 'untaint', path: e.path }, `owner-died taint on ${e.path} cleared`);
    },
    deadlock(e) {
      log.warn({ event: 'deadlock-refused', path: e.path, session: e.session, reason: e.message }, `lock on ${e.path} refused: ${e.message}`);
    },
    lockGranted(e) {
      if (e.ownerDied) log.info({ event: 'owner-died-grant', path: e.path, session: e.session, waitMs: Math.round(e.waitMs) }, `lock ${e.path} granted to session ${e.session} with ownerDied`);
    },
    snapshot(e) {
      if (e.error === undefined) log.info({ event: 'snapshot', revision: e.revision, ms: Math.round(e.ms) }, `snapshot at revision ${e.revision}`);
      else log.error({ event: 'snapshot-failed', revision: e.revision, ms: Math.round(e.ms), err: e.error }, `snapshot at revision ${e.revision} failed: ${e.error}`);
    },
    lockReset(e) {
      log.warn({ event: 'lock-reset', path: e.path }, `taints and unrecoverable marks at and below ${e.path} reset`);
    },
    readOnly(e) {
      log.fatal({ event: 'read-only', reason: e.reason }, `the store turned read-only: ${e.reason}`);
    },
  });
}

/**
 * Logs the steps of the recovery that opened `store` (from what storage
 * reports once it is open): the snapshot loaded, log records replayed, a
 * torn tail cut, damaged snapshots set aside, lock taints brought back.
 */
export function logRecovery(store: EmbeddedStore, log: Logger): void {
  const s = store.stats() as unknown as Record<string, unknown>;
  const st = s['storage'] as Record<string, unknown> | undefined;
  if (st === undefined) {
    log.info({ event: 'recovery', step: 'none', durable: false }, 'in-memory store: nothing to recover');
    return;
  }
  const dir = st['dir'];
  log.info({ event: 'recovery', step: 'snapshot', dir, snapshotRevision: st['snapshotRevision'] }, st['snapshotRevision'] === 0 ? 'recovery: no snapshot, replaying the log from the start' : `recovery: loaded the snapshot at revision ${String(st['snapshotRevision'])}`);
  for (const d of (st['damagedSnapshots'] as Array<Record<string, unknown>> | undefined) ?? []) {
    log.error({ event: 'recovery', step: 'damaged-snapshot', ...d }, `recovery: damaged snapshot ${String(d['file'])} moved to ${String(d['movedTo'])}`);
  }
  log.info({ event: 'recovery', step: 'replay', replayedRecords: st['replayedRecords'], revision: s['revision'] }, `recovery: replayed ${String(st['replayedRecords'])} log record(s) up to revision ${String(s['revision'])}`);
  if (num(st['tornTails']) > 0) {
    log.warn({ event: 'recovery', step: 'torn-tail', at: st['tornAt'], bytes: st['tornBytes'] }, `recovery: cut a torn log tail at ${String(st['tornAt'])} (${String(st['tornBytes'])} bytes never acknowledged)`);
  }
  const taints = num(s['ownerDiedTaints']);
  if (taints > 0) log.warn({ event: 'recovery', step: 'lock-taints', taints }, `recovery: ${taints} lock path(s) owner-died (held when the previous run ended, or tainted then)`);
  const broken = num(s['unrecoverableLocks']);
  if (broken > 0) log.warn({ event: 'recovery', step: 'unrecoverable-locks', unrecoverable: broken }, `recovery: ${broken} lock path(s) marked unrecoverable`);
  log.info({ event: 'recovery', step: 'done', ms: Math.round(num(st['recoveryMs'])), revision: s['revision'], nodes: s['nodes'] }, `recovery done in ${Math.round(num(st['recoveryMs']))} ms: revision ${String(s['revision'])}, ${String(s['nodes'])} nodes`);
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}
