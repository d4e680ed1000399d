/**
 * `latchkey txn [FILE]`: a script of operations run as one transaction.
 *
 * The whole script is parsed before anything is sent, so a typo on line 9
 * never leaves half a transaction behind. Reads are printed only after the
 * commit: if it cannot commit they described a state that never was. One
 * attempt, no re-run: the server already replays the transaction on a moved
 * head and commits when every answer is the same; re-running a fixed script
 * would only drop the protection its reads and checks were there for.
 */
import { readFile } from 'node:fs/promises';
import type { Transaction } from '../../api.js';
import { LatchkeyError } from '../../core/errors.js';
import {
  CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, UsageError, connectFrom, json, jsonValue, out, parse, readStdin, showValue,
} from '../command.js';

export type ScriptOp =
  | { op: 'get' | 'exists' | 'ls'; path: string }
  | { op: 'set'; path: string; value: Uint8Array }
  | { op: 'create'; path: string; value: Uint8Array }
  | { op: 'rm'; path: string; recursive: boolean }
  | { op: 'check'; path: string; expect: { version?: number; modRev?: number; exists?: boolean } };

export const SCRIPT_FORMAT = `script format: one operation a line; blank lines and lines starting with # are
ignored; words are separated by spaces; a word in double quotes is a JSON
string ("two words\\n"); an unquoted value base64:… is decoded as binary.
  get PATH                      print the value (or "absent")
  exists PATH                   print whether it exists
  ls PATH                       print the children
  set PATH VALUE                write (missing parents are created)
  create PATH [VALUE]           create; fails EXISTS if present
  rm [-r] PATH                  delete (-r: with the subtree)
  check PATH version=N | modRev=N | exists | absent
                                the transaction commits only if this holds`;

/** Splits a line into words: spaces separate, "…" is a JSON string. */
function words(line: string, n: number): Array<{ text: string; quoted: boolean }> {
  const out: Array<{ text: string; quoted: boolean }> = [];
  let i = 0;
  while (i < line.length) {
    if (line[i] === ' ' || line[i] === '\t') { i++; continue; }
    if (line[i] === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (j >= line.length) throw new UsageError(`line ${n}: unterminated quoted string`);
      try {
        out.push({ text: JSON.parse(line.slice(i, j + 1)) as string, quoted: true });
      } catch {
        throw new UsageError(`line ${n}: bad quoted string ${line.slice(i, j + 1)}`);
      }
      i = j + 1;
      continue;
    }
    let j = i;
    while (j < line.length && line[j] !== ' ' && line[j] !== '\t') j++;
    out.push({ text: line.slice(i, j), quoted: false });
    i = j;
  }
  return out;
}

function valueOf(w: { text: string; quoted: boolean }): Uint8Array {
  if (!w.quoted && w.text.startsWith('base64:')) return Buffer.from(w.text.slice(7), 'base64');
  return Buffer.from(w.text, 'utf8');
}

export function parseScript(text: string): ScriptOp[] {
  const ops: ScriptOp[] = [];
  text.split('\n').forEach((raw, idx) => {
    const n = idx + 1;
    const line = raw.replace(/\r$/, '');
    if (/^\s*(#|$)/.test(line)) return;
    const [verb, ...args] = words(line, n);
    const need = (min: number, max: number): void => {
      if (args.length < min || args.length > max) throw new UsageError(`line ${n}: ${verb!.text} takes ${min === max ? min : `${min} to ${max}`} argument(s), got ${args.length}`);
    };
    switch (verb!.text) {
      case 'get': case 'exists': case 'ls':
        need(1, 1);
        ops.push({ op: verb!.text, path: args[0]!.text });
        return;
      case 'set':
        need(2, 2);
        ops.push({ op: 'set', path: args[0]!.text, value: valueOf(args[1]!) });
        return;
      case 'create':
        need(1, 2);
        ops.push({ op: 'create', path: args[0]!.text, value: args[1] === undefined ? new Uint8Array() : valueOf(args[1]) });
        return;
      case 'rm': {
        const recursive = args[0]?.text === '-r' && !args[0].quoted;
        if (recursive) args.shift();
        need(1, 1);
        ops.push({ op: 'rm', path: args[0]!.text, recursive });
        return;
      }
      case 'check': {
        need(2, 2);
        const c = args[1]!.text;
        const m = /^(version|modRev)=(\d+)$/.exec(c);
        const expect = m !== null ? { [m[1]!]: Number(m[2]) } : c === 'exists' ? { exists: true } : c === 'absent' ? { exists: false } : undefined;
        if (expect === undefined) throw new UsageError(`line ${n}: check expects version=N, modRev=N, exists or absent; got ${c}`);
        ops.push({ op: 'check', path: args[0]!.text, expect });
        return;
      }
      default:
        throw new UsageError(`line ${n}: unknown operation ${verb!.text} (get, exists, ls, set, create, rm, check)`);
    }
  });
  return ops;
}

type Printed = { human: string; json: Record<string, unknown> };

async function runOp(tx: Transaction, o: ScriptOp): Promise<Printed | undefined> {
  switch (o.op) {
    case 'get': {
      const e = await tx.get(o.path);
      return e === undefined
        ? { human: `${o.path} absent`, json: { op: 'get', path: o.path, exists: false } }
        : { human: `${o.path} = ${showValue(e.value)}`, json: { op: 'get', path: o.path, exists: true, ...jsonValue(e.value), version: e.stat.version } };
    }
    case 'exists': {
      const x = await tx.exists(o.path);
      return { human: `${o.path} ${x ? 'exists' : 'absent'}`, json: { op: 'exists', path: o.path, exists: x } };
    }
    case 'ls': {
      const names = await tx.list(o.path);
      return { human: `${o.path}: ${names.map((x) => (/[\s"]/.test(x) ? JSON.stringify(x) : x)).join(' ')}`, json: { op: 'ls', path: o.path, children: [...names] } };
    }
    case 'set': await tx.set(o.path, o.value); return undefined;
    case 'create': await tx.create(o.path, o.value); return undefined;
    case 'rm': await tx.delete(o.path, { recursive: o.recursive }); return undefined;
    case 'check': await tx.check(o.path, o.expect); return undefined;
  }
}

export const txnCmd: Command = {
  help: `usage: latchkey txn [FILE] [--json]

Runs the operations in FILE (or stdin, or FILE "-") as one transaction and
prints what the reads returned, then "OK revision N" (", replayed" when the
server had to replay it against newer data). If it cannot commit, prints
CONFLICT and exits 4; nothing of it is written.
--json prints one object per read, then {"committed":true,"revision","replayed"}.

${SCRIPT_FORMAT}

${CLIENT_OPTIONS_HELP}

examples:
  printf 'check /cfg/v version=3\\nset /cfg/v "new value"\\n' | latchkey txn
  latchkey txn move-job.txt
    # move-job.txt:
    #   get /queue/17
    #   check /running/17 absent
    #   rm /queue/17
    #   create /running/17 worker-a`,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...CLIENT_OPTIONS, json: { type: 'boolean' } });
    if (positionals.length > 1) throw new UsageError(`unexpected argument ${positionals[1]}`);
    const file = positionals[0];
    const text = file === undefined || file === '-' ? (await readStdin()).toString('utf8') : await readFile(file, 'utf8');
    const ops = parseScript(text);
    const store = await connectFrom(values);
    try {
      const tx = store.begin();
      const printed: Printed[] = [];
      let result;
      try {
        for (const o of ops) {
          const p = await runOp(tx, o);
          if (p !== undefined) printed.push(p);
        }
        result = await tx.commit();
      } catch (e) {
        if (tx.state === 'open') await tx.abort().catch(() => {});
        if (!LatchkeyError.is(e, 'CONFLICT')) throw e;
        if (values.json) json({ committed: false, code: 'CONFLICT', message: e.message });
        else out('CONFLICT\n');
        process.stderr.write(`latchkey txn: CONFLICT: ${e.message}\n`);
        return EXIT.CONFLICT;
      }
      for (const p of printed) {
        if (values.json) json(p.json);
        else out(`${p.human}\n`);
      }
      if (values.json) json({ committed: true, revision: result.revision, replayed: result.replayed });
      else out(`OK revision ${result.revision}${result.replayed ? ', replayed' : ''}\n`);
      return EXIT.OK;
    } finally {
      await store.close();
    }
  },
};
