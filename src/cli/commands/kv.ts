/**
 * The node commands: get, set, ls, rm, stat, mkdir. Each is one request (ls
 * -r one per directory) on a connection opened for it.
 */
import type { Entry, Stat } from '../../api.js';
import type { RemoteStore } from '../../client/store.js';
import { LatchkeyError } from '../../core/errors.js';
import { parseMeta } from '../../bigfile/meta.js';
import {
  CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, json, jsonValue,
  onePositional, out, parse, parseCount, readStdin, table,
} from '../command.js';

/** Runs `fn` on a fresh connection and closes it, whatever happens. */
async function withStore<T>(flags: { url?: string | undefined; token?: string | undefined }, fn: (s: RemoteStore) => Promise<T>): Promise<T> {
  const store = await connectFrom(flags);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function statJson(s: Stat): Record<string, unknown> {
  return { ...s };
}

export const getCmd: Command = {
  help: `usage: latchkey get PATH [--json]

Writes the value's bytes to stdout as they are (a newline is added only when
stdout is a terminal). Exit 3 when the node does not exist.
--json prints {"path","value"|"base64","stat","revision"} (base64 when the
value is not text).

${CLIENT_OPTIONS_HELP}

examples:
  latchkey get /config/db/url
  latchkey get /jobs/42 --json | jq .stat.version`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
    const p = onePositional(positionals, 'PATH');
    const e = await withStore(values, (s) => s.get(p));
    if (e === undefined) throw new LatchkeyError('NOT_FOUND', `${p} does not exist`, { path: p });
    if (values.json) {
      json({ path: e.path, ...jsonValue(e.value), stat: statJson(e.stat), revision: e.revision });
    } else {
      process.stdout.write(e.value);
      if (process.stdout.isTTY && e.value.length > 0 && e.value[e.value.length - 1] !== 0x0a) out('\n');
    }
    return EXIT.OK;
  },
};

export const setCmd: Command = {
  help: `usage: latchkey set PATH [VALUE] [--if-version N] [--if-absent] [--no-wait] [--json]

Sets PATH to VALUE, or to all of stdin when VALUE is left out (bytes kept as
they are, binary included). Missing parents are created. Prints nothing;
--json prints {"revision"}.
  --if-version N  only if the node is at version N (else exit 4, CONFLICT)
  --if-absent     only if the node does not exist (else exit 4)
  --no-wait       fail LOCKED (exit 75) instead of waiting when another
                  session's lock covers PATH

${CLIENT_OPTIONS_HELP}

examples:
  latchkey set /config/db/url postgres://db1/app
  date | latchkey set /jobs/42/started
  latchkey set /counter 8 --if-version 7 || echo "someone else moved it"`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      ...CLIENT_OPTIONS, json: { type: 'boolean' }, 'if-version': { type: 'string' },
      'if-absent': { type: 'boolean' }, 'no-wait': { type: 'boolean' },
    });
    if (positionals.length < 1 || positionals.length > 2) throw new UsageError(positionals.length === 0 ? 'missing PATH' : `unexpected argument ${positionals[2]}`);
    const p = positionals[0]!;
    const ifVersion = parseCount(values['if-version'], '--if-version');
    if (positionals[1] === undefined && process.stdin.isTTY) process.stderr.write('latchkey set: reading the value from the terminal; end it with Ctrl-D\n');
    const value = positionals[1] ?? await readStdin();
    const rev = await withStore(values, (s) => s.set(p, value, {
      ...(ifVersion === undefined ? {} : { ifVersion }),
      ...(values['if-absent'] ? { ifAbsent: true } : {}),
      ...(values['no-wait'] ? { wait: false } : {}),
    }));
    if (values.json) json({ revision: rev });
    return EXIT.OK;
  },
};

/** All children of `p`, paging so a huge directory is read in bounded replies. */
async function listAll(s: RemoteStore, p: string): Promise<string[]> {
  const names: string[] = [];
  for (;;) {
    const page = await s.list(p, { limit: 1000, ...(names.length > 0 ? { after: names.at(-1)! } : {}) });
    names.push(...page);
    if (!page.more) return names;
  }
}

function child(p: string, name: string): string {
  return p === '/' ? `/${name}` : `${p}/${name}`;
}

/** Depth-first, parents before children, children in listing order. Nodes deleted meanwhile are skipped. */
export async function* walk(s: RemoteStore, root: string): AsyncGenerator<{ path: string; depth: number; last: boolean[] }> {
  async function* go(p: string, depth: number, last: boolean[]): AsyncGenerator<{ path: string; depth: number; last: boolean[] }> {
    yield { path: p, depth, last };
    let names: string[];
    try {
      names = await listAll(s, p);
    } catch (e) {
      if (LatchkeyError.is(e, 'NOT_FOUND') && depth > 0) return;
      throw e;
    }
    for (let i = 0; i < names.length; i++) yield* go(child(p, names[i]!), depth + 1, [...last, i === names.length - 1]);
  }
  yield* go(root, 0, []);
}

/** A big file's or array's metadata, when the node is one (its value parses as such). */
function bigInfo(e: Entry): { kind: string; size: number; blockSize: number; dtype?: string; shape?: readonly number[] } | undefined {
  if (e.value.length === 0 || e.value[0] !== 0x7b) return undefined; // '{'
  try {
    const m = parseMeta(JSON.parse(new TextDecoder().decode(e.value)));
    return m === undefined ? undefined : { kind: m.kind, size: m.size, blockSize: m.blockSize, ...(m.dtype === undefined ? {} : { dtype: m.dtype, shape: m.shape }) };
  } catch {
    return undefined;
  }
}

function bigColumn(e: Entry): string {
  const b = bigInfo(e);
  if (b === undefined) return '';
  return b.kind === 'bigarray' ? `bigarray ${b.size} ${b.dtype} [${b.shape!.join(', ')}]` : `bigfile ${b.size}`;
}

function statRow(name: string, e: Entry): string[] {
  return [String(e.stat.version), String(e.stat.modRev), String(e.stat.numChildren), String(e.value.length), e.stat.ephemeralOwner === undefined ? '' : 'eph', bigColumn(e), name];
}

export const lsCmd: Command = {
  help: `usage: latchkey ls [PATH] [-r] [-l] [--json]

Lists the children of PATH (default /), one name a line, in sorted order.
  -r, --recursive  the whole subtree, drawn as a tree (--json: every path)
  -l, --long       a table: version, modRev, children, bytes, ephemeral, big file
                   or array (its size in bytes, dtype and shape), name
  --json           an array of names (with -r: of paths; with -l: objects)

${CLIENT_OPTIONS_HELP}

examples:
  latchkey ls /jobs
  latchkey ls -r /config
  latchkey ls -l /jobs --json | jq '.[] | select(.numChildren > 0)'`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      ...CLIENT_OPTIONS, json: { type: 'boolean' }, recursive: { type: 'boolean', short: 'r' }, long: { type: 'boolean', short: 'l' },
    });
    if (positionals.length > 1) throw new UsageError(`unexpected argument ${positionals[1]}`);
    const p = positionals[0] ?? '/';
    await withStore(values, async (s) => {
      if (!values.recursive) {
        const names = await listAll(s, p);
        if (!values.long) {
          if (values.json) json(names);
          else out(names.map((n) => `${n}\n`).join(''));
          return;
        }
        const entries: Array<[string, Entry]> = [];
        for (const n of names) {
          const e = await s.get(child(p, n));
          if (e !== undefined) entries.push([n, e]);
        }
        if (values.json) json(entries.map(([n, e]) => ({ name: n, size: e.value.length, ...statJson(e.stat), ...(bigInfo(e) === undefined ? {} : { big: bigInfo(e) }) })));
        else out(table(['VERSION', 'MODREV', 'CHILDREN', 'BYTES', 'EPH', 'BIG (kind, size, dtype, shape)', 'NAME'], entries.map(([n, e]) => statRow(n, e))));
        return;
      }
      if (!(await s.exists(p))) throw new LatchkeyError('NOT_FOUND', `${p} does not exist`, { path: p });
      const paths: string[] = [];
      const lines: string[] = [];
      for await (const n of walk(s, p)) {
        paths.push(n.path);
        if (values.json) continue;
        if (n.depth === 0) { lines.push(n.path); continue; }
        // tree(1) drawing: a bar for every ancestor that has later siblings.
        const indent = n.last.slice(0, -1).map((l) => (l ? '    ' : '│   ')).join('');
        const name = n.path.slice(n.path.lastIndexOf('/') + 1);
        lines.push(`${indent}${n.last.at(-1) ? '└── ' : '├── '}${name}`);
      }
      if (values.json) json(paths);
      else out(lines.map((l) => `${l}\n`).join(''));
    });
    return EXIT.OK;
  },
};

export const rmCmd: Command = {
  help: `usage: latchkey rm PATH [-r] [-f] [--if-version N]

Deletes PATH. A node with children needs -r (else exit 1, NOT_EMPTY).
Exit 3 when PATH does not exist, unless -f.
  -r, --recursive   delete the whole subtree, in one commit
  -f, --force       a missing node is not an error
  --if-version N    only if the node is at version N (else exit 4)

${CLIENT_OPTIONS_HELP}

examples:
  latchkey rm /jobs/42
  latchkey rm -r /tmp/build-17`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      ...CLIENT_OPTIONS, recursive: { type: 'boolean', short: 'r' }, force: { type: 'boolean', short: 'f' }, 'if-version': { type: 'string' },
    });
    const p = onePositional(positionals, 'PATH');
    const ifVersion = parseCount(values['if-version'], '--if-version');
    const deleted = await withStore(values, (s) => s.delete(p, {
      ...(values.recursive ? { recursive: true } : {}), ...(ifVersion === undefined ? {} : { ifVersion }),
    }));
    if (!deleted && !values.force) throw new LatchkeyError('NOT_FOUND', `${p} does not exist`, { path: p });
    return EXIT.OK;
  },
};

export const statCmd: Command = {
  help: `usage: latchkey stat PATH [--json]

Prints the node's metadata: createRev, modRev, version, childrenRev,
children, bytes, ephemeral owner, and the revision the read reflects.
Exit 3 when PATH does not exist.

${CLIENT_OPTIONS_HELP}

examples:
  latchkey stat /jobs/42
  latchkey stat /jobs/42 --json | jq .version`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
    const p = onePositional(positionals, 'PATH');
    const e = await withStore(values, (s) => s.get(p));
    if (e === undefined) throw new LatchkeyError('NOT_FOUND', `${p} does not exist`, { path: p });
    if (values.json) {
      json({ path: e.path, ...statJson(e.stat), size: e.value.length, revision: e.revision });
      return EXIT.OK;
    }
    const rows: Array<[string, string]> = [
      ['path', e.path], ['createRev', String(e.stat.createRev)], ['modRev', String(e.stat.modRev)],
      ['version', String(e.stat.version)], ['childrenRev', String(e.stat.childrenRev)],
      ['children', String(e.stat.numChildren)], ['bytes', String(e.value.length)],
    ];
    if (e.stat.ephemeralOwner !== undefined) rows.push(['ephemeralOwner', e.stat.ephemeralOwner]);
    if (e.stat.perms !== undefined) rows.push(['perms', e.stat.perms.join(' ')]);
    rows.push(['revision', String(e.revision)]);
    const w = Math.max(...rows.map((r) => r[0].length));
    out(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}\n`).join(''));
    return EXIT.OK;
  },
};

export const mkdirCmd: Command = {
  help: `usage: latchkey mkdir PATH [-p]

Creates PATH with an empty value. Without -p, the parent must exist (else
exit 3) and PATH must not (else exit 1, EXISTS). With -p, missing parents are
created and an existing PATH is fine (its value is left alone).

${CLIENT_OPTIONS_HELP}

examples:
  latchkey mkdir /jobs
  latchkey mkdir -p /config/app/features`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, parents: { type: 'boolean', short: 'p' } });
    const p = onePositional(positionals, 'PATH');
    await withStore(values, async (s) => {
      if (!values.parents) {
        // create makes missing parents; mkdir without -p must not (as mkdir(1)).
        const parent = p.slice(0, p.lastIndexOf('/')) || '/';
        if (p !== '/' && !(await s.exists(parent))) throw new LatchkeyError('NOT_FOUND', `${parent} does not exist (mkdir -p creates it)`, { path: parent });
        await s.create(p, '');
        return;
      }
      try {
        // set creates missing parents; ifAbsent keeps an existing value.
        await s.set(p, '', { ifAbsent: true });
      } catch (e) {
        if (!LatchkeyError.is(e, 'CONFLICT')) throw e;
      }
    });
    return EXIT.OK;
  },
};

export const addCmd: Command = {
  help: `usage: latchkey add PATH DELTA [--no-wait] [--json]

Adds DELTA (an integer, may be negative) to the decimal integer at PATH, in
one atomic step on the server that never conflicts, and prints the new
value. A missing node is created at 0 (its parents too); an empty value
counts as 0. A value that is not a decimal integer fails INVALID_ARGUMENT
(exit 2) and is left as it is. --json prints {"path","value"}.
  --no-wait  fail LOCKED (exit 75) instead of waiting when another
             session's lock covers PATH

${CLIENT_OPTIONS_HELP}

examples:
  latchkey add /stats/requests 1
  latchkey add /quota/alice -5`,
  async run(argv) {
    // A negative DELTA looks like an option to the parser: take it out first.
    const negative = argv.filter((a) => /^-[0-9]+$/.test(a));
    const { values, positionals } = parse(argv.filter((a) => !negative.includes(a)), { ...CLIENT_OPTIONS, json: { type: 'boolean' }, 'no-wait': { type: 'boolean' } });
    const args = [...positionals, ...negative];
    if (args.length !== 2) throw new UsageError(args.length < 2 ? `missing ${args.length === 0 ? 'PATH' : 'DELTA'}` : `unexpected argument ${args[2]}`);
    const [p, d] = args as [string, string];
    const delta = Number(d);
    if (!/^[+-]?[0-9]+$/.test(d) || !Number.isSafeInteger(delta)) throw new UsageError(`DELTA must be an integer, got ${d}`);
    const value = await withStore(values, (s) => s.add(p, delta, values['no-wait'] ? { wait: false } : {}));
    if (values.json) json({ path: p, value });
    else out(`${value}\n`);
    return EXIT.OK;
  },
};
