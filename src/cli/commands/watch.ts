/**
 * `latchkey watch PATH`: streams events until interrupted. Reconnection is on
 * here: the client resumes a watch from the revision after the last one it
 * delivered, so a server restart shows as a pause, not a gap.
 */
import {
  CLIENT_OPTIONS, CLIENT_OPTIONS_HELP, type Command, EXIT, connectFrom, json, jsonValue, onePositional, out, parse, parseCount, showValue,
} from '../command.js';

export const watchCmd: Command = {
  help: `usage: latchkey watch PATH [-r] [--from REV] [--json]

Prints one line per change of PATH (with -r: of any node under it), in
revision order, until interrupted (Ctrl-C, SIGTERM: exit 0):
  REVISION put PATH VALUE      (VALUE as text; quoted if it has spaces;
  REVISION delete PATH          base64:… when it is not text)
  -r, --recursive  the whole subtree
  --from REV       start at revision REV (inclusive) from the server's recent
                   history; fails clearly if REV has left the history window
  --json           one object a line: {"type","path","revision","value"|"base64"}

${CLIENT_OPTIONS_HELP}

examples:
  latchkey watch -r /jobs
  latchkey watch /config/flag --from 120 --json | jq -c .`,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      ...CLIENT_OPTIONS, json: { type: 'boolean' }, recursive: { type: 'boolean', short: 'r' }, from: { type: 'string' },
    });
    const p = onePositional(positionals, 'PATH');
    const from = parseCount(values.from, '--from');
    const stop = new AbortController();
    const onSignal = (): void => stop.abort();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const store = await connectFrom(values, true);
    try {
      for await (const ev of store.watch(p, {
        ...(values.recursive ? { recursive: true } : {}), ...(from === undefined ? {} : { fromRevision: from }), signal: stop.signal,
      })) {
        if (values.json) {
          json({ type: ev.type, path: ev.path, revision: ev.revision, ...(ev.value === undefined ? {} : jsonValue(ev.value)) });
        } else {
          out(`${ev.revision} ${ev.type} ${ev.path}${ev.value === undefined ? '' : ` ${showValue(ev.value)}`}\n`);
        }
      }
    } catch (e) {
      // Being interrupted is how a watch is meant to end, not an error.
      if (!stop.signal.aborted) throw e;
    } finally {
      await store.close();
    }
    return EXIT.OK;
  },
};
