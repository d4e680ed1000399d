/**
 * `latchkey lock PATH -- CMD…`: flock(1) on a latchkey lock.
 *
 * The lock belongs to this process's connection (its session). So:
 * - CMD exits → we release and exit with its status;
 * - latchkey dies, even by SIGKILL → the kernel closes the socket, the server
 *   ends the session and grants the lock to the next waiter with ownerDied.
 *   CMD is not killed then (Node has no parent-death signal); it keeps running
 *   without the lock, which is what LATCHKEY_FENCE is for: writes fenced with
 *   it fail once another holder has the lock;
 * - the lock is lost while CMD runs (connection loss: reconnection is off, so
 *   the session cannot come back) → say so and terminate CMD (SIGTERM, then
 *   SIGKILL after a grace period), exit 1.
 * Signals sent to latchkey are passed on to CMD, and latchkey keeps holding the
 * lock until CMD has actually exited.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Lock } from '../../api.js';
import { LatchkeyError } from '../../core/errors.js';
import { CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, parse, parseDuration } from '../command.js';

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'];
const KILL_GRACE_MS = 5000;

function signalExit(sig: NodeJS.Signals): number {
  return 128 + (osConstants.signals[sig] ?? 0);
}

export const lockCmd: Command = {
  help: `usage: latchkey lock PATH [--shared] [--timeout DURATION] [--no-wait] -- CMD [ARGS...]

Takes the lock on PATH (its whole subtree; exclusive unless --shared), runs
CMD, and releases the lock when CMD exits. Exits with CMD's status (128+N if
it died of signal N). The lock also goes if latchkey itself dies (even
SIGKILL): the connection closes, the server ends the session, and the next
holder is told the owner died.

CMD's environment gets:
  LATCHKEY_FENCE=TOKEN    the lock's fencing token
  LATCHKEY_OWNER_DIED=1   only when the previous holder died holding the lock
  LATCHKEY_LOCK_PATH      PATH

  --shared             a shared lock (other shared holders may run alongside)
  --timeout DURATION   give up waiting after 500ms / 5s / 2m (exit 75)
  --no-wait            exit 75 at once if the lock is held
Signals sent to latchkey (INT, TERM, HUP, QUIT, USR1, USR2, WINCH) are
passed on to CMD. If the lock is lost while CMD runs (the connection to the
server broke) latchkey says so on stderr, terminates CMD and exits 1.

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
    });
    if (positionals.length === 0) throw new UsageError('missing PATH');
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
    const store = await connectFrom(values);
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
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: 'inherit', env });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    for (const s of FORWARDED) process.on(s, forward);
    let lost = false;
    let killTimer: NodeJS.Timeout | undefined;
    const onLost = (): void => {
      lost = true;
      const why = lock.signal.reason instanceof LatchkeyError ? `${lock.signal.reason.code}: ${lock.signal.reason.message}` : 'LOCK_LOST';
      process.stderr.write(`latchkey lock: the lock on ${p} was lost (${why}); terminating ${cmd[0]}\n`);
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS);
    };
    lock.signal.addEventListener('abort', onLost, { once: true });

    const status = await new Promise<number>((resolve) => {
      child.once('error', (e) => {
        process.stderr.write(`latchkey lock: cannot run ${cmd[0]}: ${e.message}\n`);
        // 127 / 126: what a shell answers for a command not found / not executable.
        resolve((e as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126);
      });
      child.once('exit', (code, sig) => resolve(code ?? (sig === null ? EXIT.ERROR : signalExit(sig))));
    });
    clearTimeout(killTimer);
    lock.signal.removeEventListener('abort', onLost);
    for (const s of FORWARDED) process.off(s, forward);
    await lock.release().catch(() => {});
    await store.close();
    return lost ? EXIT.ERROR : status;
  },
};
