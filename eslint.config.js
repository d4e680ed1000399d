// Lint rules that keep the layers one-way (see docs/architecture.md, "Layers").
// The rules are the point of this file: a layer importing upward fails `npm test`.
import tseslint from 'typescript-eslint';

const xenstoreUpward = ['../server/*', '../client/*', '../cli/*', '../protocol/*', '../storage/*'];
const nodeIo = ['node:*', 'fs', 'fs/*', 'net', 'tls', 'http', 'https', 'child_process', 'os', 'path', 'dgram', 'worker_threads', 'cluster'];

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    rules: {
      'no-debugger': 'error',
      'no-duplicate-imports': 'error',
    },
  },
  {
    // core is pure: no I/O, no timers from node:, nothing outside core.
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'src/core is pure: no node: I/O modules.' },
          { group: ['../*', '!../core/*'], message: 'src/core imports only from src/core.' },
        ],
      }],
    },
  },
  {
    // storage knows nothing of the network or of the engine above it.
    files: ['src/storage/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:net', 'node:tls', 'node:http', 'node:https', 'node:dgram'], message: 'storage knows nothing of the network.' },
          { group: ['../engine/*', '../server/*', '../client/*', '../protocol/*', '../cli/*'], message: 'storage depends only on core.' },
        ],
      }],
    },
  },
  {
    // Data-directory ownership runs flock(1) (node:child_process) and, like
    // every storage file, uses no network module.
    files: ['src/storage/ownership.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:tls', 'node:http', 'node:https', 'node:dgram'], message: 'storage knows nothing of the network.' },
          { group: ['../engine/*', '../server/*', '../client/*', '../protocol/*', '../cli/*'], message: 'storage depends only on core.' },
        ],
      }],
    },
  },
  {
    // util: small helpers with timers (no I/O) shared by engine and client; only core and api below it.
    files: ['src/util/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'src/util does no I/O.' },
          { group: ['../engine/*', '../storage/*', '../server/*', '../client/*', '../protocol/*', '../cli/*', '../xenstore/*'], message: 'src/util depends only on core and api.' },
        ],
      }],
    },
  },
  {
    // edge: the API edge every backend sits behind (argument checks, entry shapes); only core, api and util below it.
    files: ['src/edge/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'src/edge does no I/O.' },
          { group: ['../engine/*', '../storage/*', '../server/*', '../client/*', '../protocol/*', '../cli/*', '../xenstore/*'], message: 'src/edge depends only on core, util and api.' },
        ],
      }],
    },
  },
  {
    // bigfile: big files and arrays over the public Store API only (api.ts, core/errors, core/path, util); no engine internals, no I/O.
    files: ['src/bigfile/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'src/bigfile does no I/O of its own: it reaches storage through the Store API.' },
          { group: ['../engine/*', '../storage/*', '../server/*', '../client/*', '../protocol/*', '../cli/*', '../xenstore/*', '../edge/*', '../shared.js', '../index.js'], message: 'src/bigfile builds on api.ts, core/errors, core/path and util only.' },
          { group: ['../core/*', '!../core/errors.js', '!../core/path.js'], message: 'src/bigfile uses only core/errors and core/path from core.' },
        ],
      }],
    },
  },
  {
    // objects: persistent objects built on the public Store API only, so they work embedded and over connect() alike.
    files: ['src/objects/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'src/objects does no I/O of its own: everything goes through the Store API.' },
          { group: ['../engine/*', '../storage/*', '../server/*', '../client/*', '../protocol/*', '../cli/*', '../xenstore/*', '../edge/*', '../shared.js', '../index.js'], message: 'src/objects builds on api.ts, core/errors and util only.' },
          { group: ['../core/*', '!../core/errors.js'], message: 'src/objects uses core/errors only (the engine internals are not its business).' },
        ],
      }],
    },
  },
  {
    files: ['src/engine/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['../server/*', '../client/*', '../protocol/*', '../cli/*'], message: 'engine sits below server, client, protocol and cli.' }],
      }],
    },
  },
  {
    // etcd: a backend beside the engine (the API edge over an etcd cluster); it shares core, edge, util and api, nothing above or beside it.
    files: ['src/etcd/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['../engine/*', '../storage/*', '../server/*', '../client/*', '../protocol/*', '../cli/*', '../xenstore/*'], message: 'src/etcd builds on core, edge, util and api only.' }],
      }],
    },
  },
  {
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'protocol is pure: bytes in, typed messages out.' },
          { group: ['../server/*', '../client/*', '../engine/*', '../storage/*', '../cli/*'], message: 'protocol depends only on core and api.' },
        ],
      }],
    },
  },
  {
    // The XenStore adapter sits at the server's level: it uses core, engine and api, never the other adapters.
    files: ['src/xenstore/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: xenstoreUpward, message: 'src/xenstore builds on core, engine and api only.' }],
      }],
    },
  },
  {
    // Its codec and request semantics are pure (tested byte by byte, no socket).
    files: ['src/xenstore/wire.ts', 'src/xenstore/paths.ts', 'src/xenstore/errno.ts', 'src/xenstore/ops.ts', 'src/xenstore/limits.ts', 'src/xenstore/perms.ts', 'src/xenstore/domains.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: nodeIo, message: 'the XenStore codec and semantics are pure: no node: I/O modules.' },
          { group: xenstoreUpward, message: 'src/xenstore builds on core, engine and api only.' },
          { group: ['../engine/*'], message: 'the pure XenStore files depend only on core.' },
        ],
      }],
    },
  },
  {
    files: ['src/client/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../server/*', '../engine/*', '../storage/*'], message: 'client meets the server only through protocol.' },
          { group: ['../cli/*'], message: 'the command line sits above the client (src/shared.ts wires the server process in).' },
        ],
      }],
    },
  },
  {
    // http: metrics, health and the web console, beside the server (same auth); never the client, the CLI or the other adapters.
    files: ['src/http/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{ group: ['../client/*', '../cli/*', '../xenstore/*', '../protocol/*', '../storage/*'], message: 'src/http builds on core, engine and server/auth only.' }],
      }],
    },
  },
  {
    files: ['src/server/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['../client/*'], message: 'server meets the client only through protocol.' },
          { group: ['../http/*'], message: 'the HTTP console sits beside the server: the server does not import it.' },
        ],
      }],
    },
  },
);
