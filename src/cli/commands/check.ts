/**
 * `latchkey check DIR` and `latchkey repair DIR`: the data directory, offline.
 * They read files directly (storage's own reading code), no server involved.
 */
import { repair, verify } from '../../storage/index.js';
import { type Command, EXIT, json, onePositional, out, parse } from '../command.js';

export const checkCmd: Command = {
  help: `usage: latchkey check DIR [--json]

Verifies every snapshot and every log record in DIR (checksums, revision
order, that each commit applies), every value file's header and every value
the recovered tree references (read back and checked against its CRC32C),
and prints what it found. Changes nothing
and takes no lock: it may run beside a live server (then a record being
written may show as a torn tail, which is not damage).
Exit 0 when nothing is damaged; 1 with each problem's file, offset and
revision on stdout (and a summary on stderr). \`latchkey repair DIR\` fixes it.

examples:
  latchkey check ./latchkey-data
  latchkey check /var/lib/latchkey --json | jq .problems`,
  async run(argv) {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
    const dir = onePositional(positionals, 'DIR');
    const r = await verify(dir);
    if (values.json) {
      json(r);
    } else {
      out(`${r.dir}: ${r.snapshots.length} snapshot(s), ${r.segments.length} log segment(s)\n`);
      for (const s of r.snapshots) out(`  snapshot ${s.file}  revision ${s.revision}  ${s.ok ? `ok, ${s.nodes} nodes` : 'DAMAGED'}\n`);
      if (r.valueFiles.length > 0) {
        out(`  ${r.valueFiles.length} value file(s), ${r.valueFiles.reduce((n, v) => n + v.bytes, 0)} bytes; ${r.valuesChecked} value(s), ${r.valueBytesChecked} bytes read and checked\n`);
      }
      if (r.torn !== undefined) out(`  torn tail (not damage): ${r.torn.file} at offset ${r.torn.offset}, ${r.torn.bytes} bytes: ${r.torn.reason}\n`);
      for (const t of r.temps) out(`  leftover temp file (removed at next open): ${t}\n`);
      for (const p of r.problems) {
        out(`  DAMAGE ${p.file}${p.offset === undefined ? '' : ` at offset ${p.offset}`}${p.revision === undefined ? '' : ` (revision ${p.revision})`}: ${p.reason}\n`);
      }
      out(r.ok ? `ok: recovers to revision ${r.revision}\n` : r.revision === undefined ? 'damaged: does not recover as it is\n' : `damaged: recovers to revision ${r.revision} by falling back\n`);
    }
    if (!r.ok) {
      process.stderr.write(`latchkey check: CORRUPT: ${r.problems.length} problem(s) in ${r.dir}; \`latchkey repair ${dir}\` keeps the valid prefix\n`);
      return EXIT.ERROR;
    }
    return EXIT.OK;
  },
};

export const repairCmd: Command = {
  help: `usage: latchkey repair DIR [--json]

Makes DIR open again, keeping the longest valid prefix of its history. Nothing
is deleted: damaged files are renamed *.damaged, and a damaged segment's
valid prefix is written back under its name. Prints what it did and which
revisions were lost. Claims the directory as the server does, so it refuses
to run while a server has it open (stop it first).

examples:
  latchkey check ./latchkey-data || latchkey repair ./latchkey-data`,
  async run(argv) {
    const { values, positionals } = parse(argv, { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } });
    const dir = onePositional(positionals, 'DIR');
    const r = await repair(dir);
    if (values.json) {
      json(r);
      return EXIT.OK;
    }
    if (r.clean) {
      out(`${r.dir}: nothing to repair; recovers to revision ${r.revision}\n`);
      return EXIT.OK;
    }
    for (const m of r.movedAside) out(`moved aside ${m.file} → ${m.to}: ${m.reason}\n`);
    for (const t of r.truncated) out(`rewrote ${t.file} with its valid prefix (${t.keptBytes} bytes)\n`);
    if (r.lost !== undefined) out(`lost revisions ${r.lost.from}..${r.lost.to ?? '?'}\n`);
    out(`repaired: ${r.dir} recovers to revision ${r.revision}\n`);
    return EXIT.OK;
  },
};
