/**
 * `latchkey top`: a live view of the server, redrawn every interval from
 * two admin requests (stats, lockTable). Rates are differences between two
 * samples divided by the time between them, measured here.
 *
 * Sessions: from `listSessions` (name, transport, address, age, lease,
 * locks held and awaited, ephemeral nodes), busiest first. A server too old
 * to know the request shows, per session, what the lock table says.
 *
 * The terminal: raw mode (for `q` without Enter) only when stdin is a TTY,
 * restored on every way out; when stdout is not a terminal each frame is
 * printed after the last, without screen control codes.
 */
import type { LockTableInfo, SessionInfo, StoreStats } from '../../api.js';
import {
  CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, age, connectFrom, parse, parseDuration, table,
} from '../command.js';

interface Sample {
  readonly at: number;
  readonly stats: StoreStats;
  readonly locks: LockTableInfo;
  /** listSessions; undefined when the server does not know it. */
  readonly sessions?: readonly SessionInfo[];
}

function mib(n: number): string {
  return (n / (1024 * 1024)).toFixed(1);
}

function num(s: StoreStats, k: string): number {
  const v = s[k];
  return typeof v === 'number' ? v : 0;
}

export function renderTop(cur: Sample, prev: Sample | undefined, url: string, maxRows: number): string {
  const s = cur.stats;
  const lines: string[] = [];
  lines.push(`latchkey top — ${url} — ${new Date(cur.at).toISOString().slice(11, 19)}`);
  lines.push(`revision ${s.revision}  nodes ${s.nodes}  sessions ${s.sessions}  open transactions ${s.openTransactions}  locks held ${cur.locks.held.length}  waiting ${cur.locks.waiting.length}`);
  const counters = ['commits', 'validations', 'replays', 'conflicts', 'lockWakeups', 'deadlocks'];
  if (prev !== undefined && cur.at > prev.at) {
    const dt = (cur.at - prev.at) / 1000;
    const rate = (k: string): string => ((num(s, k) - num(prev.stats, k)) / dt).toFixed(1);
    lines.push(`per second: ${counters.map((k) => `${k} ${rate(k)}`).join('  ')}`);
  } else {
    lines.push(`totals:     ${counters.map((k) => `${k} ${num(s, k)}`).join('  ')}`);
  }
  if (s.commitsPerSync !== undefined && s.groupSyncs !== undefined) lines.push(`group syncs ${s.groupSyncs}  commits/sync ${Number(s.commitsPerSync).toFixed(2)}${s.readOnly !== undefined ? `  READ-ONLY: ${s.readOnly}` : ''}`);
  if (s.cacheLimit !== undefined) {
    const hits = num(s, 'cacheHits');
    const misses = num(s, 'cacheMisses');
    const ratio = hits + misses === 0 ? '-' : `${((100 * hits) / (hits + misses)).toFixed(1)}%`;
    lines.push(`value cache ${mib(num(s, 'cacheBytes'))}/${mib(num(s, 'cacheLimit'))} MiB  hits ${hits}  misses ${misses}  hit ratio ${ratio}  evictions ${num(s, 'cacheEvictions')}`);
  }
  lines.push('');

  // What waits on each held path: a waiter on P counts for any lock on P, an ancestor or a descendant.
  const overlaps = (a: string, b: string): boolean => a === b || a === '/' || b === '/' || b.startsWith(`${a}/`) || a.startsWith(`${b}/`);
  const held = [...cur.locks.held].sort((a, b) => a.since - b.since);
  lines.push(`HELD LOCKS (${held.length})`);
  if (held.length > 0) {
    const rows = held.slice(0, maxRows).map((l) => {
      const ws = cur.locks.waiting.filter((w) => overlaps(w.path, l.path) && w.session !== l.session);
      const oldest = ws.reduce((m, w) => Math.min(m, w.since), Infinity);
      return [l.path, l.mode, l.session, String(l.token), age(cur.at - l.since), String(l.waiters ?? ws.length), ws.length === 0 ? '' : age(cur.at - oldest)];
    });
    lines.push(table(['PATH', 'MODE', 'SESSION', 'FENCE', 'HELD FOR', 'WAITERS', 'OLDEST WAIT'], rows).trimEnd());
    if (held.length > maxRows) lines.push(`… ${held.length - maxRows} more`);
  }
  lines.push('');
  const waiting = [...cur.locks.waiting].sort((a, b) => a.since - b.since);
  lines.push(`WAITING (${waiting.length})`);
  if (waiting.length > 0) {
    lines.push(table(['PATH', 'MODE', 'SESSION', 'WAITING FOR'], waiting.slice(0, maxRows).map((w) => [w.path, w.mode, w.session, age(cur.at - w.since)])).trimEnd());
    if (waiting.length > maxRows) lines.push(`… ${waiting.length - maxRows} more`);
  }
  lines.push('');
  if (cur.sessions !== undefined) {
    lines.push(`SESSIONS (${cur.sessions.length})`);
    const busy = [...cur.sessions].sort((a, b) => (b.locksHeld + b.locksWaiting) - (a.locksHeld + a.locksWaiting) || a.since - b.since);
    const rows = busy.slice(0, maxRows).map((x) => [x.id, x.name === x.id ? '' : x.name, x.transport, x.address ?? '', age(cur.at - x.since), x.leaseMs === undefined ? '' : age(x.leaseMs), String(x.locksHeld), String(x.locksWaiting), String(x.ephemerals)]);
    lines.push(table(['SESSION', 'NAME', 'VIA', 'ADDRESS', 'AGE', 'LEASE', 'HELD', 'WAITING', 'EPHEMERAL'], rows).trimEnd());
    if (busy.length > maxRows) lines.push(`… ${busy.length - maxRows} more`);
    return lines.join('\n') + '\n';
  }
  const per = new Map<string, { held: number; waiting: number }>();
  for (const l of cur.locks.held) { const e = per.get(l.session) ?? { held: 0, waiting: 0 }; e.held++; per.set(l.session, e); }
  for (const w of cur.locks.waiting) { const e = per.get(w.session) ?? { held: 0, waiting: 0 }; e.waiting++; per.set(w.session, e); }
  lines.push(`SESSIONS WITH LOCKS (${per.size} of ${s.sessions})`);
  if (per.size > 0) {
    const rows = [...per].sort((a, b) => b[1].held - a[1].held).slice(0, maxRows).map(([id, e]) => [id, String(e.held), String(e.waiting)]);
    lines.push(table(['SESSION', 'HELD', 'WAITING'], rows).trimEnd());
  }
  return lines.join('\n') + '\n';
}

export const topCmd: Command = {
  help: `usage: latchkey top [--interval DURATION] [--once]

Redraws every interval (default 1s) with: revision, nodes, sessions, open
transactions; commits, validations, replays, conflicts, lock wake-ups and
deadlocks per second; held locks (mode, session, fencing token, age, how many
requests wait on them and for how long); waiting requests; the sessions that
hold or wait for locks. q (or Ctrl-C) quits.
  --interval D   refresh period: 500ms, 2s, …
  --once         print one frame (totals instead of rates) and exit

${CLIENT_OPTIONS_HELP}

examples:
  latchkey top
  latchkey top --once --url tcp://10.0.0.5:7700 --token "$TOKEN"`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, interval: { type: 'string' }, once: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`);
    const interval = values.interval === undefined ? 1000 : parseDuration(values.interval, '--interval');
    if (interval < 100) throw new UsageError('--interval must be at least 100ms');
    const url = values.url ?? process.env['LATCHKEY_URL'] ?? '(default socket)';
    const store = await connectFrom(values, !values.once);
    const sample = async (): Promise<Sample> => {
      const [stats, locks, sessions] = await Promise.all([store.fetchStats(), store.fetchLockTable(), store.fetchSessions().catch(() => undefined)]);
      return sessions === undefined ? { at: Date.now(), stats, locks } : { at: Date.now(), stats, locks, sessions };
    };
    if (values.once) {
      try {
        process.stdout.write(renderTop(await sample(), undefined, url, 50));
      } finally {
        await store.close();
      }
      return EXIT.OK;
    }

    const tty = process.stdout.isTTY === true;
    const raw = process.stdin.isTTY === true;
    let quit: () => void = () => {};
    const done = new Promise<void>((resolve) => { quit = resolve; });
    const onKey = (d: Buffer): void => {
      // q, Q, Ctrl-C, Ctrl-D: in raw mode Ctrl-C is a byte, not a signal.
      if (d.includes(0x71) || d.includes(0x51) || d.includes(0x03) || d.includes(0x04)) quit();
    };
    const restore = (): void => {
      if (raw) {
        process.stdin.setRawMode(false);
        process.stdin.off('data', onKey);
        process.stdin.pause();
      }
      if (tty) process.stdout.write('\x1b[?25h');
    };
    if (raw) {
      process.stdin.setRawMode(true);
      process.stdin.on('data', onKey);
      process.stdin.resume();
    }
    process.on('SIGINT', quit);
    process.on('SIGTERM', quit);
    if (tty) process.stdout.write('\x1b[?25l');
    let prev: Sample | undefined;
    let timer: NodeJS.Timeout | undefined;
    try {
      const frame = async (): Promise<void> => {
        let text: string;
        try {
          const cur = await sample();
          const rows = tty ? Math.max(3, Math.floor(((process.stdout.rows ?? 40) - 16) / 3)) : 50;
          text = renderTop(cur, prev, url, rows);
          prev = cur;
        } catch (e) {
          // The server went away: keep trying (the client reconnects); say so in place of the frame.
          text = `latchkey top — ${url}\n\nno answer from the server: ${(e as Error).message}\n`;
          prev = undefined;
        }
        process.stdout.write(tty ? `\x1b[H\x1b[2J${text}${raw ? '\n(q to quit)' : ''}` : `${text}\n`);
      };
      const loop = (): void => {
        timer = setTimeout(() => void frame().then(loop), interval);
      };
      await frame();
      loop();
      await done;
    } finally {
      clearTimeout(timer);
      restore();
      if (tty) process.stdout.write('\n');
      await store.close();
    }
    return EXIT.OK;
  },
};
