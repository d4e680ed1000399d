/**
 * The console's data: JSON reads, three writes, and one event stream.
 *
 * Reads check the principal's grants exactly as the protocol's ops do
 * (list/get/history need read on the path; the lock table, sessions and
 * recent events show only readable paths). Writes need write on the path,
 * are confirmed in the page, and are logged with the principal's name.
 *
 * The stream (`GET /api/events`, server-sent events) is the only live
 * channel: one `tick` a second with the figures, one page of the lock
 * table (MAX_LOCKS held locks in path order, from `?locksAfter=PATH`, with
 * their FIFO waiter queues, and totals),
 * the sessions and the notable events since the last tick; and, with
 * `?watch=PATH`, `watch` batches of a recursive watch on PATH (the watch
 * tail). Nothing is polled per widget. The lock page is drawn from the
 * lock trie (engine/locks.ts page()) without building the whole table; the
 * sessions view counts each session's locks from its request lists.
 */
import type http from 'node:http';
import type { SessionInfo } from '../api.js';
import { LatchkeyError, invalidArgument } from '../core/errors.js';
import { parsePath } from '../core/path.js';
import type { EmbeddedStore } from '../engine/store.js';
import type { Watch } from '../engine/watch.js';
import { type Principal, authorize, authorizeRecursiveWatch, canRead, sessionsVisibleTo } from '../server/auth.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** Held locks sent per tick (oldest first); the page says how many more there are. */
export const MAX_LOCKS = 300;
/** Waiters drawn per lock. */
const MAX_QUEUE = 20;
const MAX_SESSIONS = 500;
const MAX_LIST = 1000;
const RECENT = 200;
/** Watch tail: events sent per batch at most (the rest is counted as skipped). */
const WATCH_BATCH = 200;
const TICK_MS = 1000;

export interface ApiOptions {
  readonly store: EmbeddedStore;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly serverStats?: () => Record<string, unknown>;
}

/** A notable event, as the page lists it. */
interface Notable {
  readonly seq: number;
  readonly at: number;
  readonly kind: 'session-died' | 'session-closed' | 'taint' | 'untaint' | 'deadlock' | 'owner-died-grant' | 'snapshot' | 'lock-reset' | 'read-only' | 'console-write';
  /** The paths it concerns (filtered per principal). */
  readonly paths: readonly string[];
  readonly fields: Record<string, unknown>;
}

const b64 = (v: Uint8Array): string => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');

function str(params: URLSearchParams | Record<string, unknown>, k: string, dflt?: string): string {
  const v = params instanceof URLSearchParams ? params.get(k) ?? undefined : params[k];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'string') throw invalidArgument(`${k} must be a string`);
  return v;
}

export function mayWrite(p: Principal): boolean {
  return p.grants === undefined || p.grants.some((g) => g.access !== 'read');
}

export class ConsoleApi {
  private readonly recent: Notable[] = [];
  private seq = 0;
  private readonly detach: () => void;
  private readonly streams = new Set<() => void>();

  constructor(private readonly o: ApiOptions) {
    const note = (kind: Notable['kind'], paths: readonly string[], fields: Record<string, unknown>): void => {
      this.recent.push({ seq: ++this.seq, at: Date.now(), kind, paths, fields });
      if (this.recent.length > RECENT) this.recent.splice(0, this.recent.length - RECENT);
    };
    this.noteWrite = (op, path, principal) => note('console-write', [path], { op, path, principal });
    this.detach = o.store.observe({
      sessionEnded(e) {
        if (!e.died && e.locks.length === 0) return;
        note(e.died ? 'session-died' : 'session-closed', e.locks.map((l) => l.path), { session: e.session, name: e.name, locks: e.locks.map((l) => ({ path: l.path, mode: l.mode, token: l.token })), ephemerals: e.ephemerals });
      },
      taint(e) { note(e.on ? 'taint' : 'untaint', [e.path], { path: e.path }); },
      deadlock(e) { note('deadlock', [e.path], { path: e.path, session: e.session, reason: e.message }); },
      lockGranted(e) { if (e.ownerDied) note('owner-died-grant', [e.path], { path: e.path, session: e.session, waitMs: Math.round(e.waitMs) }); },
      snapshot(e) { note('snapshot', [], { revision: e.revision, ms: Math.round(e.ms), ...(e.error === undefined ? {} : { error: e.error }) }); },
      lockReset(e) { note('lock-reset', [e.path], { path: e.path }); },
      readOnly(e) { note('read-only', [], { reason: e.reason }); },
    });
  }

  private readonly noteWrite: (op: string, path: string, principal: string) => void;

  /** The notable events after `after` that `p` may see (paths it cannot read are dropped, an event with none left is hidden). */
  private recentFor(p: Principal, after: number): Notable[] {
    const out: Notable[] = [];
    for (const n of this.recent) {
      if (n.seq <= after) continue;
      if (p.grants === undefined) { out.push(n); continue; }
      const paths = n.paths.filter((x) => canRead(p, x));
      if (n.paths.length > 0 && paths.length === 0) continue;
      if (n.kind === 'session-died' || n.kind === 'session-closed') {
        const locks = (n.fields['locks'] as Array<{ path: string }>).filter((l) => canRead(p, l.path));
        out.push({ ...n, paths, fields: { ...n.fields, locks } });
      } else out.push({ ...n, paths });
    }
    return out;
  }

  /** One JSON call; undefined when there is no such route. */
  async call(p: Principal, method: string, name: string, q: URLSearchParams, body: unknown): Promise<unknown> {
    const store = this.o.store;
    if (method === 'GET') {
      switch (name) {
        case 'me': return { name: p.name, write: mayWrite(p), grants: p.grants ?? [{ prefix: '/', access: 'admin' }] };
        case 'list': {
          const path = str(q, 'path', '/');
          authorize(p, path, 'read');
          const limit = Math.min(MAX_LIST, Math.max(1, Number(q.get('limit') ?? 200) || 200));
          const after = q.get('after') ?? undefined;
          const l = await store.list(path, { limit, ...(after === undefined ? {} : { after }) });
          const parent = await store.get(path);
          return { path, names: [...l], more: l.more, revision: l.revision, total: parent?.stat.numChildren ?? l.length };
        }
        case 'get': {
          const path = str(q, 'path');
          authorize(p, path, 'read');
          const e = await store.get(path);
          if (e === undefined) throw new LatchkeyError('NOT_FOUND', `no node at ${path}`, { path });
          return { path, value: b64(e.value), size: e.value.length, stat: { ...e.stat }, revision: e.revision };
        }
        case 'history': return this.history(p, str(q, 'path'));
        case 'locks': return this.lockView(p, q.get('after') || undefined);
        case 'sessions': return this.sessions(p);
        case 'recent': return this.recentFor(p, Number(q.get('after') ?? 0) || 0);
        default: return undefined;
      }
    }
    if (method === 'POST') {
      const b = (body ?? {}) as Record<string, unknown>;
      if (typeof b !== 'object' || Array.isArray(b)) throw invalidArgument('the body must be a JSON object');
      const path = str(b, 'path');
      parsePath(path);
      authorize(p, path, 'write');
      switch (name) {
        case 'set': {
          const enc = str(b, 'encoding', 'utf8');
          if (enc !== 'utf8' && enc !== 'base64') throw invalidArgument('encoding is utf8 or base64');
          const value = Buffer.from(str(b, 'value'), enc);
          const rev = await store.set(path, value);
          this.logWrite(p, 'set', path, { bytes: value.length, revision: rev });
          return { revision: rev };
        }
        case 'delete': {
          const recursive = b['recursive'] === true;
          const deleted = await store.delete(path, { recursive });
          this.logWrite(p, 'delete', path, { recursive, deleted });
          return { deleted };
        }
        case 'force-release': {
          const released = await store.forceRelease(path);
          this.logWrite(p, 'force-release', path, { released });
          return { released };
        }
        case 'reset-lock': {
          await store.resetLock(path);
          this.logWrite(p, 'reset-lock', path, {});
          return {};
        }
        default: return undefined;
      }
    }
    return undefined;
  }

  private logWrite(p: Principal, op: string, path: string, fields: Record<string, unknown>): void {
    this.o.log.info({ event: 'console-write', op, path, principal: p.name, ...fields }, `console: ${p.name} ${op} ${path}`);
    this.noteWrite(op, path, p.name);
  }

  /** A node's recent changes, from the watch history window (oldest first, at most 50). */
  private async history(p: Principal, path: string): Promise<unknown> {
    authorize(p, path, 'read');
    const store = this.o.store;
    const from = store.oldestWatchRevision;
    const w = store.watchInternal(path, { fromRevision: from, maxQueue: 1_000_000 });
    try {
      const evs = w.queued > 0 ? await w.take() : [];
      return { path, from, events: evs.slice(-50).map((e) => ({ type: e.type, revision: e.revision, ...(e.value === undefined ? {} : { value: b64(e.value) }) })) };
    } finally {
      await w.return();
    }
  }

  /**
   * The lock view: one page of MAX_LOCKS held locks in path order after
   * `after` (a cursor from the previous page's `next`), each with its FIFO
   * queue, and the totals; built from the lock trie without the whole table.
   */
  private lockView(p: Principal, after?: string): unknown {
    if (after !== undefined) parsePath(after);
    const pg = this.o.store.lockPage({ limit: MAX_LOCKS, maxQueue: MAX_QUEUE, ...(after === undefined ? {} : { after }), ...(p.grants === undefined ? {} : { prefixes: p.grants.map((g) => g.prefix) }) });
    const recent = this.recentFor(p, 0);
    const taints = recent.filter((n) => n.kind === 'taint' || n.kind === 'untaint' || n.kind === 'owner-died-grant').slice(-50);
    const deadlocks = recent.filter((n) => n.kind === 'deadlock').slice(-50);
    return { held: pg.held, waiting: pg.waiting, after: after ?? null, next: pg.next ?? null, locks: pg.locks, taints, deadlocks };
  }

  private sessions(p: Principal): { total: number; sessions: SessionInfo[] } {
    const all = sessionsVisibleTo(p, this.o.store.sessionList(p.grants === undefined ? undefined : (path) => canRead(p, path)));
    all.sort((a, b) => (b.locksHeld + b.locksWaiting) - (a.locksHeld + a.locksWaiting) || a.since - b.since);
    return { total: all.length, sessions: all.slice(0, MAX_SESSIONS) };
  }

  private tick(p: Principal, lastSeq: number, locksAfter?: string): Record<string, unknown> {
    const s = this.o.store.stats() as unknown as Record<string, unknown>;
    const { storage, ...store } = s;
    return {
      at: Date.now(),
      stats: store,
      storage: storage ?? null,
      server: this.o.serverStats?.() ?? null,
      latency: this.o.metrics.latency,
      locks: this.lockView(p, locksAfter),
      sessions: this.sessions(p),
      recent: this.recentFor(p, lastSeq),
    };
  }

  /** The event stream: `tick` every second, `watch` batches with ?watch=PATH. */
  stream(p: Principal, url: URL, req: http.IncomingMessage, res: http.ServerResponse, headers: Record<string, string>): void {
    const watchPath = url.searchParams.get('watch') ?? undefined;
    let w: Watch | undefined;
    if (watchPath !== undefined && watchPath !== '') {
      parsePath(watchPath);
      authorizeRecursiveWatch(p, watchPath);
      w = this.o.store.watchInternal(watchPath, { recursive: true, maxQueue: 50_000, ...(p.grants === undefined ? {} : { filter: (x: string) => canRead(p, x) }) });
    }
    res.writeHead(200, { ...headers, 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
    let closed = false;
    let lastSeq = Number(url.searchParams.get('after') ?? 0) || 0;
    const locksAfter = url.searchParams.get('locksAfter') || undefined;
    if (locksAfter !== undefined) parsePath(locksAfter);
    const send = (event: string, data: unknown): void => {
      if (!closed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    let timer: NodeJS.Timeout | undefined;
    // A tick a second; when one costs more than a fifth of that (a huge lock table on a busy machine), the next waits five times its cost.
    const tick = (): void => {
      timer = undefined;
      if (closed) return;
      const t0 = performance.now();
      if (res.writableLength <= 4 * 1024 * 1024) { // a page that does not read: skip ticks rather than queue them
        const t = this.tick(p, lastSeq, locksAfter);
        const rec = t['recent'] as Notable[];
        if (rec.length > 0) lastSeq = rec[rec.length - 1]!.seq;
        send('tick', t);
      }
      timer = setTimeout(tick, Math.max(TICK_MS, 5 * (performance.now() - t0)));
    };
    const end = (): void => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      void w?.return();
      this.streams.delete(end);
      res.end();
    };
    this.streams.add(end);
    req.on('close', end);
    res.on('error', end);
    send('hello', { principal: p.name, write: mayWrite(p), watch: watchPath ?? null, revision: this.o.store.revision });
    tick();
    if (w !== undefined) void this.pumpWatch(w, send, () => closed);
  }

  private async pumpWatch(w: Watch, send: (event: string, data: unknown) => void, closed: () => boolean): Promise<void> {
    try {
      for (;;) {
        const evs = await w.take();
        if (evs.length === 0 || closed()) return;
        const shown = evs.slice(-WATCH_BATCH);
        send('watch', {
          skipped: evs.length - shown.length,
          events: shown.map((e) => ({ type: e.type, path: e.path, revision: e.revision, ...(e.value === undefined ? {} : { value: b64(e.value.subarray(0, 256)), size: e.value.length }) })),
        });
        // At most about five batches a second: a burst waits here and arrives as one batch.
        await new Promise((r) => setTimeout(r, 200));
      }
    } catch (e) {
      send('watch-error', { code: (e as LatchkeyError).code ?? 'INTERNAL', message: (e as Error).message });
    }
  }

  close(): void {
    this.detach();
    for (const end of [...this.streams]) end();
  }
}
