/**
 * What every `latchkey` subcommand shares: the Command shape the dispatcher
 * (main.ts) runs, argument parsing, the connection, exit codes and output.
 *
 * Exit codes (documented in `latchkey --help` and the README):
 *   0 ok · 1 error · 2 usage · 3 not found · 4 conflict (txn, --if-version)
 *   69 server unavailable (EX_UNAVAILABLE) · 75 locked / timed out (EX_TEMPFAIL)
 *   `lock -- CMD`: CMD's own status (128+N when CMD died of signal N).
 * Errors go to stderr as `latchkey CMD: CODE: message`, so scripts can grep
 * the code without parsing prose.
 */
import path from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type ErrorCode, LatchkeyError } from '../core/errors.js';
import { type RemoteStore, connect } from '../client/store.js';

export interface Command {
  /** Full help, with examples, for `latchkey NAME --help`. */
  readonly help: string;
  /**
   * Runs with the arguments after the command name. Resolves with the exit
   * code, or undefined when the command keeps the process alive on its own
   * (serve) and decides its exit later.
   */
  run(argv: string[]): Promise<number | undefined>;
}

export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  CONFLICT: 4,
  UNAVAILABLE: 69,
  TEMPFAIL: 75,
} as const;

export const EXIT_CODES_HELP = `exit codes:
  0   ok
  1   error (the message on stderr names its code, e.g. NOT_EMPTY)
  2   usage error
  3   not found
  4   conflict (txn could not commit, --if-version not met, check failed)
  69  the server is unavailable (nothing listens at the address)
  75  locked or timed out (lock --no-wait / --timeout, set --no-wait)
  lock -- CMD exits with CMD's status (128+N if CMD died of signal N)`;

/** A usage error: printed with the command's help hint, exit 2. */
export class UsageError extends Error {}

export function exitCodeOf(code: ErrorCode): number {
  switch (code) {
    case 'NOT_FOUND': return EXIT.NOT_FOUND;
    case 'CONFLICT': return EXIT.CONFLICT;
    case 'LOCKED':
    case 'TIMEOUT': return EXIT.TEMPFAIL;
    case 'CONNECTION_LOST':
    case 'CLOSED': return EXIT.UNAVAILABLE;
    case 'INVALID_PATH':
    case 'INVALID_ARGUMENT': return EXIT.USAGE;
    default: return EXIT.ERROR;
  }
}

/** Reports an error on stderr and returns the exit code for it. */
export function report(command: string, e: unknown): number {
  if (e instanceof UsageError) {
    process.stderr.write(`latchkey ${command}: ${e.message}\n(latchkey ${command} --help for usage)\n`);
    return EXIT.USAGE;
  }
  if (e instanceof LatchkeyError) {
    process.stderr.write(`latchkey ${command}: ${e.code}: ${e.message}\n`);
    return exitCodeOf(e.code);
  }
  process.stderr.write(`latchkey ${command}: ${e instanceof Error ? e.message : String(e)}\n`);
  return EXIT.ERROR;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The options every client command takes. */
export const CLIENT_OPTIONS = {
  url: { type: 'string' },
  token: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export const CLIENT_OPTIONS_HELP = `connection:
  --url URL     unix:///path/latchkey.sock, tcp://host:port or tls://host:port;
                several front-ends of one store: tcp://h1:p1,h2:p2 (the first that answers)
                (default: $LATCHKEY_URL, else the socket of ./latchkey-data)
  --token T     auth token (default: $LATCHKEY_TOKEN)`;

/** parseArgs, strict, with its complaints turned into usage errors. */
export function parse<O extends Options>(argv: string[], options: O): ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The default address: the socket `latchkey serve` makes in ./latchkey-data. */
export function defaultUrl(): string {
  return `unix://${path.resolve('latchkey-data', 'latchkey.sock')}`;
}

export interface ConnectFlags {
  url?: string | undefined;
  token?: string | undefined;
}

/**
 * Connects for one command. Reconnection is off unless asked for: a one-shot
 * command should fail rather than silently wait, and `lock` must learn at
 * once that its session (and so its lock) is gone.
 */
export async function connectFrom(flags: ConnectFlags, reconnect = false, leaseMarginMs?: number): Promise<RemoteStore> {
  const url = flags.url ?? process.env['LATCHKEY_URL'] ?? defaultUrl();
  const token = flags.token ?? process.env['LATCHKEY_TOKEN'];
  try {
    return await connect(url, {
      reconnect, ...(token === undefined ? {} : { token }), ...(leaseMarginMs === undefined ? {} : { leaseMarginMs }),
      name: `latchkey-cli-${process.pid}`,
    });
  } catch (e) {
    if (LatchkeyError.is(e, 'CONNECTION_LOST')) {
      throw new LatchkeyError('CONNECTION_LOST', `cannot connect to ${url} (is \`latchkey serve\` running? --url or LATCHKEY_URL picks another server)`, { cause: e });
    }
    throw e;
  }
}

/** Exactly one positional, or a usage error naming it. */
export function onePositional(positionals: string[], what: string): string {
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? `missing ${what}` : `unexpected argument ${positionals[1]}`);
  return positionals[0]!;
}

/** "5s", "250ms", "2m", "1.5" (seconds, as flock -w) → milliseconds. */
export function parseDuration(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(s);
  if (m === null) throw new UsageError(`${flag} expects a duration like 500ms, 5s, 2m; got ${s}`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
  return Math.round(ms);
}

export function parseCount(s: string | undefined, flag: string): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(n)) throw new UsageError(`${flag} expects a non-negative integer, got ${s}`);
  return n;
}

/** Reads all of stdin (values for `set`, scripts for `txn`, dumps for `import`). */
export async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The value as text when it is valid UTF-8 with no control bytes other than tab/newline, else undefined. */
export function asText(v: Uint8Array): string | undefined {
  let s: string;
  try {
    s = utf8.decode(v);
  } catch {
    return undefined;
  }
  return /[\x00-\x08\x0b-\x1f\x7f]/.test(s) ? undefined : s;
}

/** A value for a line of human output: text, JSON-quoted when it has spaces or newlines, or base64:… */
export function showValue(v: Uint8Array): string {
  const t = asText(v);
  if (t === undefined) return `base64:${Buffer.from(v).toString('base64')}`;
  return /[\s"]/.test(t) || t === '' ? JSON.stringify(t) : t;
}

/** A value in JSON output: `{value: text}` or `{base64: …}` so binary survives. */
export function jsonValue(v: Uint8Array): { value: string } | { base64: string } {
  const t = asText(v);
  return t === undefined ? { base64: Buffer.from(v).toString('base64') } : { value: t };
}

/** Left-aligned columns with a header, for people. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function out(s: string): void {
  process.stdout.write(s);
}

export function json(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + '\n');
}

/** "3.2s", "4m10s", "2h05m": ages for tables. */
export function age(ms: number): string {
  if (ms < 0) ms = 0;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}
