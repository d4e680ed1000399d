/**
 * `latchkey lock PATH -- CMD…`: flock(1) on a latchkey lock, and
 * `latchkey lock --reset PATH`.
 *
 * The lock belongs to this process's connection (its session). CMD runs
 * under a guardian process (guardian.ts) that shares the connection. So:
 * - CMD exits → we release and exit with its status; if the grant said
 *   ownerDied, status 0 marks the lock consistent first (any other status
 *   leaves it owner-died, or with --unrecoverable-on-failure marks it
 *   unrecoverable);
 * - the lease is about to go (no answer from the server: the client gives
 *   its session up before the server can end it, see client/link.ts), with
 *   the kill grace taken out of it → CMD gets SIGTERM, SIGKILL after the
 *   grace, and is dead before the server can grant the lock to anyone else;
 * - latchkey dies, even by SIGKILL → the guardian sees its control pipe
 *   close and does the same (SIGTERM, SIGKILL after the grace), then exits,
 *   closing the connection: the server ends the session and the next holder
 *   is told ownerDied. The guardian's copy of the connection keeps the server
 *   from ending the session on latchkey's death alone.
 * Signals sent to latchkey are passed on to CMD, and latchkey keeps holding the
 * lock until CMD has actually exited.
 */
import { spawn } from 'node:child_process';
import type net from 'node:net';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Lock } from '../../api.js';
import { LatchkeyError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, parse, parseDuration } from '../command.js';

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];
const DEFAULT_KILL_GRACE_MS = 1000;
const GUARDIAN = fileURLToPath(new URL('../guardian.js', import.meta.url));

function signalExit(sig: NodeJS.Signals): number {
  return 128 + (osConstants.signals[sig] ?? 0);
}

/** CMD under its guardian: its exit as a status, and the two ways to stop it. */
interface Guarded {
  readonly status: Promise<number>;
  terminate(): void;
  forward(sig: NodeJS.Signals): void;
}

function fdOf(socket: net.Socket | undefined): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } } | undefined)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

function runGuarded(cmd: string[], env: NodeJS.ProcessEnv, graceMs: number, connection: net.Socket | undefined): Guarded {
  const g = spawn(process.execPath, [GUARDIAN, String(graceMs), ...cmd], {
    // The connection goes by its fd number: handing spawn the socket object would make it stop reading it here.
    stdio: ['inherit', 'inherit', 'inherit', 'pipe', fdOf(connection) ?? 'ignore'], env,
  });
  const control = g.stdio[3] as net.Socket;
  let pid: number | undefined;
  let reported: number | undefined;
  let buf = '';
  control.setEncoding('utf8');
  control.on('data', (chunk: string) => {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const [kind, a, ...rest] = buf.slice(0, i).split(' ');
      buf = buf.slice(i + 1);
      if (kind === 'pid') pid = Number(a);
      else if (kind === 'exit') reported = a !== '-' ? Number(a) : rest[0] !== '-' ? signalExit(rest[0] as NodeJS.Signals) : EXIT.ERROR;
      else if (kind === 'error') {
        process.stderr.write(`latchkey lock: cannot run ${cmd[0]}: ${rest.join(' ')}\n`);
        // 127 / 126: what a shell answers for a command not found / not executable.
        reported = a === 'ENOENT' ? 127 : 126;
      }
    }
  });
  control.on('error', () => {});
  const status = new Promise<number>((resolve) => {
    g.once('exit', () => {
      if (reported === undefined && pid !== undefined) {
        // The guardian died without reporting (killed on its own): CMD must not run on.
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
      resolve(reported ?? EXIT.ERROR);
    });
  });
  const send = (line: string): void => {
    if (!control.destroyed) control.write(line + '\n');
  };
  return { status, terminate: () => send('TERM'), forward: (sig) => send(`SIG ${sig}`) };
}

export const lockCmd: Command = {
  help: `usage: latchkey lock PATH [--shared] [--timeout DURATION] [--no-wait]
                    [--kill-grace DURATION] [--unrecoverable-on-failure] -- CMD [ARGS...]
       latchkey lock --reset PATH

Takes the lock on PATH (its whole subtree; exclusive unless --shared), runs
CMD, and releases the lock when CMD exits. Exits with CMD's status (128+N if
it died of signal N).

CMD's environment gets:
  LATCHKEY_FENCE=TOKEN    the lock's fencing token
  LATCHKEY_OWNER_DIED=1   only when a previous holder died holding the lock
                          (also across a server crash) and nobody repaired it
  LATCHKEY_LOCK_PATH      PATH

Owner died: CMD is the repair. If it exits 0, latchkey marks the lock
consistent (the next holder is not told); any other status leaves it marked
owner-died for the next holder, or, with --unrecoverable-on-failure, marks it
unrecoverable: every later lock on PATH (or above or below it) then fails
NOT_RECOVERABLE (exit 1) until \`latchkey lock --reset PATH\`.

  --shared                     a shared lock (other shared holders may run alongside)
  --timeout DURATION           give up waiting after 500ms / 5s / 2m (exit 75)
  --no-wait                    exit 75 at once if the lock is held
  --kill-grace DURATION        SIGTERM to SIGKILL when the lock must go (default 1s)
  --unrecoverable-on-failure   a failing CMD marks the lock unrecoverable
                               (whether or not it was told the owner died)
  --reset                      clear the unrecoverable and owner-died marks at
                               and below PATH; runs no command

What is guaranteed. The lock is a lease: when the server stops answering,
latchkey gives the session up early enough that CMD gets SIGTERM, then
SIGKILL after the kill grace, and is dead before the server can grant the
lock to anyone else (the grace is taken out of the lease, so it must be
well under the server's --ttl). If latchkey itself dies, even by SIGKILL,
a guardian process does the same and only then lets the connection close.
Signals sent to latchkey (INT, TERM, HUP, QUIT, USR1, USR2, WINCH) are
passed on to CMD; if the lock is lost while CMD runs, latchkey says so on
stderr and exits 1. CMD runs in its own process group (so what it starts is
stopped with it) unless stdin is a terminal.
What is not: a process paused longer than the lease (SIGSTOP, a frozen VM)
wakes up without the lock, as does a CMD the guardian could not kill (it
ignores SIGKILL in uninterruptible sleep, or escaped its process group), and
the guardian itself killed with SIGKILL. Writes to latchkey made with
LATCHKEY_FENCE fail once the lock is gone; CMD's side effects elsewhere are
safe only if that system checks the fencing token too.

${CLIENT_OPTIONS_HELP}

examples:
  latchkey lock /locks/backup -- pg_dump -f backup.sql app
  latchkey lock /locks/deploy --no-wait -- ./deploy.sh || echo "a deploy is running"
  latchkey lock /locks/cron --timeout 30s -- sh -c 'echo "fence $LATCHKEY_FENCE"; ./job'`,
  async run(argv) {
    const sep = argv.indexOf('--');
    const own = sep < 0 ? argv : argv.slice(0, sep);
    const { values, positionals } = parse(own, {
      ...CLIENT_OPTIONS, shared: { type: 'boolean' }, timeout: { type: 'string' }, 'no-wait': { type: 'boolean' },
      'kill-grace': { type: 'string' }, 'unrecoverable-on-failure': { type: 'boolean' }, reset: { type: 'boolean' },
    });
    if (positionals.length === 0) throw new UsageError('missing PATH');
    if (values.reset) {
      if (positionals.length > 1 || sep >= 0) throw new UsageError('--reset takes PATH and no command');
      const store = await connectFrom(values);
      try {
        await store.resetLock(positionals[0]!);
      } finally {
        await store.close();
      }
      return EXIT.OK;
    }
    const graceMs = values['kill-grace'] === undefined ? DEFAULT_KILL_GRACE_MS : parseDuration(values['kill-grace'], '--kill-grace');
    // `lock PATH CMD ARGS` without `--` works as in flock(1), as long as ARGS has no options of ours.
    const cmd = sep < 0 ? positionals.slice(1) : [...positionals.slice(1), ...argv.slice(sep + 1)];
    if (cmd.length === 0) throw new UsageError('missing the command to run (latchkey lock PATH -- CMD ARGS...)');
    const p = positionals[0]!;
    const timeoutMs = values.timeout === undefined ? undefined : parseDuration(values.timeout, '--timeout');
    if (values['no-wait'] && timeoutMs !== undefined) throw new UsageError('--no-wait and --timeout exclude each other');

    // A signal while we still wait for the lock ends the wait and latchkey (nothing to forward to yet).
    const waitAbort = new AbortController();
    let interrupted: NodeJS.Signals | undefined;
    const onWaitSignal = (sig: NodeJS.Signals): void => {
      interrupted = sig;
      waitAbort.abort(new LatchkeyError('ABORTED', `interrupted by ${sig}`));
    };
    for (const s of FORWARDED) if (s !== 'SIGWINCH') process.on(s, onWaitSignal);
    // The kill grace comes out of the client's lease (see the help, and client/link.ts).
    let store;
    try {
      store = await connectFrom(values, false, graceMs);
    } catch (e) {
      if (LatchkeyError.is(e, 'INVALID_ARGUMENT')) throw new UsageError(`--kill-grace ${values['kill-grace'] ?? '1s'}: ${e.message}`);
      throw e;
    }
    const lease = store.lease;
    let lock: Lock;
    try {
      lock = await store.lock(p, {
        mode: values.shared ? 'shared' : 'exclusive',
        ...(values['no-wait'] ? { wait: false } : {}),
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        signal: waitAbort.signal,
      });
    } catch (e) {
      await store.close();
      if (interrupted !== undefined) return signalExit(interrupted);
      if (LatchkeyError.is(e, 'LOCKED')) {
        process.stderr.write(`latchkey lock: LOCKED: ${p} is locked by another session\n`);
        return EXIT.TEMPFAIL;
      }
      if (LatchkeyError.is(e, 'NOT_RECOVERABLE')) {
        process.stderr.write(`latchkey lock: NOT_RECOVERABLE: ${e.message}\n`);
        return EXIT.ERROR;
      }
      if (LatchkeyError.is(e, 'TIMEOUT')) {
        process.stderr.write(`latchkey lock: TIMEOUT: ${p} still locked after ${values.timeout}\n`);
        return EXIT.TEMPFAIL;
      }
      throw e;
    } finally {
      for (const s of FORWARDED) if (s !== 'SIGWINCH') process.off(s, onWaitSignal);
    }

    const env: NodeJS.ProcessEnv = { ...process.env, LATCHKEY_FENCE: String(lock.token), LATCHKEY_LOCK_PATH: p };
    if (lock.ownerDied) env['LATCHKEY_OWNER_DIED'] = '1';
    else delete env['LATCHKEY_OWNER_DIED'];
    // A TLS connection is not shared with the guardian (its state lives in this process): the guarantee
    // on latchkey's SIGKILL then holds only as long as the server takes to notice the close.
    const shared = lease !== undefined && (lease.socket as { encrypted?: boolean }).encrypted !== true ? lease.socket : undefined;
    const child = runGuarded(cmd, env, graceMs, shared);
    const forward = (sig: NodeJS.Signals): void => child.forward(sig);
    for (const s of FORWARDED) process.on(s, forward);
    let lost = false;
    const onLost = (): void => {
      lost = true;
      const why = lock.signal.reason instanceof LatchkeyError ? `${lock.signal.reason.code}: ${lock.signal.reason.message}` : 'LOCK_LOST';
      process.stderr.write(`latchkey lock: the lock on ${p} was lost (${why}); terminating ${cmd[0]}\n`);
      child.terminate();
    };
    lock.signal.addEventListener('abort', onLost, { once: true });
    // Held until the guardian reports CMD gone: a lease lost meanwhile only hurries it.
    const status = await child.status;
    lock.signal.removeEventListener('abort', onLost);
    for (const s of FORWARDED) process.off(s, forward);
    if (!lost && lock.held) {
      try {
        if (status === 0 && lock.ownerDied) await lock.markConsistent();
        else if (status !== 0 && values['unrecoverable-on-failure']) await lock.markUnrecoverable();
      } catch (e) {
        process.stderr.write(`latchkey lock: could not mark ${p} ${status === 0 ? 'consistent' : 'unrecoverable'}: ${(e as Error).message}\n`);
      }
    }
    await lock.release().catch(() => {});
    await store.close();
    return lost ? EXIT.ERROR : status;
  },
};
