/**
 * The request table: one handler per XenStore message type, checked
 * exhaustively by the compiler (`Record<XsTypeName, Handler>`). A handler
 * returns the reply payload (or a promise of it) or throws; the connection
 * turns a throw into an ERROR reply through `toErrno`. Handlers never touch
 * the socket.
 *
 * Reads outside a transaction read the published head. Writes outside a
 * transaction are one commit each through `Engine.write` (lock admission,
 * then a Workspace over the pending head). Inside a transaction everything
 * runs on its TxState; TRANSACTION_END commits it with the engine's precise
 * validation and replay, and only a replay whose responses differ becomes
 * EAGAIN.
 */
import { TxState } from '../core/transaction.js';
import type { WriteTarget } from '../core/lock-table.js';
import type { EngineAccess } from '../engine/access.js';
import { targetOf } from '../engine/engine.js';
import { lookup } from '../core/tree.js';
import { parsePath } from '../core/path.js';
import { xsError } from './errno.js';
import type { XenstoreLimits } from './limits.js';
import {
  type XsTarget, rootTarget, txTarget, workspaceTarget,
  xsDirectory, xsGetPerms, xsMkdir, xsRead, xsRm, xsSetPerms, xsWrite,
} from './ops.js';
import { homeOf, isSpecialPath, parseDomid, parsePerms, resolvePath } from './paths.js';
import type { WatchHub, XsWatch } from './watches.js';
import {
  PAYLOAD_MAX, type XsPacket, type XsTypeName, nulTerminated, splitFirst, splitStrings, utf8,
} from './wire.js';

/** What a handler may use of its connection. */
export interface XsConnectionContext {
  readonly engine: EngineAccess;
  readonly sessionId: string;
  readonly limits: XenstoreLimits;
  /** The connection's domain (0: socket clients are dom0, privileged). */
  readonly domid: number;
  readonly txs: Map<number, TxState>;
  readonly watches: Map<string, XsWatch>;
  readonly hub: WatchHub;
  newTxId(): number;
  /** Queues a WATCH_EVENT to go out after the reply being built. */
  afterReply(fn: () => void): void;
  watchEvent(path: string, token: string): void;
  log(message: string): void;
}

export type Reply = Uint8Array | Promise<Uint8Array>;
type Handler = (c: XsConnectionContext, p: XsPacket) => Reply;

const OK = nulTerminated(['OK']);

function home(c: XsConnectionContext): string {
  return homeOf(c.domid);
}

/** The one path argument of READ, MKDIR, RM, … resolved; EINVAL when missing. */
function pathArg(c: XsConnectionContext, p: XsPacket): string {
  const s = splitStrings(p.payload)[0];
  if (s === undefined) throw xsError('EINVAL', 'missing path');
  return resolvePath(s, home(c), c.limits).abs;
}

function txOf(c: XsConnectionContext, p: XsPacket): TxState | undefined {
  if (p.txId === 0) return undefined;
  const tx = c.txs.get(p.txId);
  if (tx === undefined) throw xsError('ENOENT', `no transaction ${p.txId}`);
  if (tx.opCount >= c.limits.maxTransactionOps) throw xsError('EQUOTA', 'too many operations in one transaction');
  return tx;
}

function readTarget(c: XsConnectionContext, p: XsPacket): XsTarget {
  const tx = txOf(c, p);
  return tx === undefined ? rootTarget(c.engine.visibleRoot) : txTarget(tx);
}

/** Runs a write: on the transaction when there is one, else as one commit. */
function runWrite(c: XsConnectionContext, p: XsPacket, target: WriteTarget, fn: (t: XsTarget) => void): Reply {
  const tx = txOf(c, p);
  if (tx !== undefined) {
    fn(txTarget(tx));
    return OK;
  }
  return c.engine.write(c.sessionId, [target], {}, (ws) => fn(workspaceTarget(ws))).then(() => OK);
}

function checkReplySize(b: Uint8Array): Uint8Array {
  if (b.length > PAYLOAD_MAX) throw xsError('E2BIG', 'reply would exceed the payload limit');
  return b;
}

const enosys: Handler = () => { throw xsError('ENOSYS'); };

const CONTROL_COMMANDS = ['check', 'help', 'print'];

export const handlers: Record<XsTypeName, Handler> = {
  READ: (c, p) => {
    const path = pathArg(c, p);
    return checkReplySize(xsRead(readTarget(c, p), path));
  },

  DIRECTORY: (c, p) => {
    const path = pathArg(c, p);
    return checkReplySize(nulTerminated(xsDirectory(readTarget(c, p), path)));
  },

  DIRECTORY_PART: (c, p) => {
    // <path>|<offset>| → <gencnt>|<names from byte offset>…, with an extra NUL once the list is complete.
    const [s, off] = splitStrings(p.payload);
    if (s === undefined || off === undefined || !/^[0-9]{1,10}$/.test(off)) throw xsError('EINVAL', 'DIRECTORY_PART needs a path and an offset');
    const path = resolvePath(s, home(c), c.limits).abs;
    const t = readTarget(c, p);
    const names = xsDirectory(t, path);
    // The generation: the directory's childrenRev moves whenever its list of children changes.
    const node = lookup(t.root(), parsePath(path));
    const gen = utf8(String(node?.childrenRev ?? 0));
    const all = nulTerminated(names);
    const start = Number(off);
    if (start > all.length) throw xsError('EINVAL', 'offset beyond the end of the list');
    const room = PAYLOAD_MAX - gen.length - 1;
    let end = all.length;
    let complete = true;
    if (end - start + 1 > room) {
      // Cut after the last whole name that fits.
      complete = false;
      end = start;
      for (let i = start; i < all.length && i - start + 1 <= room; i++) if (all[i] === 0) end = i + 1;
    }
    const out = new Uint8Array(gen.length + 1 + (end - start) + (complete ? 1 : 0));
    out.set(gen, 0);
    out.set(all.subarray(start, end), gen.length + 1);
    return out;
  },

  GET_PERMS: (c, p) => {
    const path = pathArg(c, p);
    return checkReplySize(nulTerminated(xsGetPerms(readTarget(c, p), path)));
  },

  WRITE: (c, p) => {
    const parts = splitFirst(p.payload);
    if (parts === undefined) throw xsError('EINVAL', 'WRITE needs a path and a value');
    const path = resolvePath(parts.first, home(c), c.limits).abs;
    if (parts.rest.length > c.limits.maxValueBytes) throw xsError('E2BIG', `value larger than ${c.limits.maxValueBytes} bytes`);
    const value = parts.rest.slice(); // the tree keeps it: never alias the socket's chunk
    return runWrite(c, p, targetOf('set', path), (t) => xsWrite(t, path, value));
  },

  MKDIR: (c, p) => {
    const path = pathArg(c, p);
    return runWrite(c, p, targetOf('set', path), (t) => xsMkdir(t, path));
  },

  RM: (c, p) => {
    const path = pathArg(c, p);
    return runWrite(c, p, targetOf('delete', path), (t) => xsRm(t, path));
  },

  SET_PERMS: (c, p) => {
    const [s, ...rest] = splitStrings(p.payload);
    if (s === undefined) throw xsError('EINVAL', 'missing path');
    const path = resolvePath(s, home(c), c.limits).abs;
    const perms = parsePerms(rest);
    return runWrite(c, p, { path, subtree: false }, (t) => xsSetPerms(t, path, perms));
  },

  WATCH: (c, p) => {
    const [s, token] = splitStrings(p.payload);
    if (s === undefined || token === undefined) throw xsError('EINVAL', 'WATCH needs a path and a token');
    const key = s + '\0' + token;
    if (c.watches.has(key)) throw xsError('EEXIST', 'watch already set');
    if (c.watches.size >= c.limits.maxWatches) throw xsError('EQUOTA', `more than ${c.limits.maxWatches} watches`);
    // An event carries a path of up to absPathMax bytes and the token: both must fit in one payload.
    if (utf8(token).length + c.limits.absPathMax + 2 > PAYLOAD_MAX) throw xsError('E2BIG', 'watch token too long');
    let w: XsWatch;
    if (isSpecialPath(s)) {
      w = { abs: undefined, spelled: s, relative: false, home: home(c), token, sink: c };
    } else {
      const r = resolvePath(s, home(c), c.limits);
      w = { abs: r.abs, spelled: s, relative: r.relative, home: home(c), token, sink: c };
    }
    c.watches.set(key, w);
    c.hub.add(w);
    // A watch fires once as soon as it is set, with the path as given.
    c.afterReply(() => c.watchEvent(s, token));
    return OK;
  },

  UNWATCH: (c, p) => {
    const [s, token] = splitStrings(p.payload);
    if (s === undefined || token === undefined) throw xsError('EINVAL', 'UNWATCH needs a path and a token');
    const key = s + '\0' + token;
    const w = c.watches.get(key);
    if (w === undefined) throw xsError('ENOENT', 'no such watch');
    c.watches.delete(key);
    c.hub.remove(w);
    return OK;
  },

  RESET_WATCHES: (c) => {
    for (const w of c.watches.values()) c.hub.remove(w);
    c.watches.clear();
    for (const id of [...c.txs.keys()]) endTx(c, id);
    return OK;
  },

  TRANSACTION_START: (c, p) => {
    if (p.txId !== 0) throw xsError('EINVAL', 'TRANSACTION_START inside a transaction');
    if (c.txs.size >= c.limits.maxTransactions) throw xsError('EQUOTA', `more than ${c.limits.maxTransactions} open transactions`);
    const id = c.newTxId();
    c.txs.set(id, new TxState(c.engine.visibleRoot, c.engine.visibleRev));
    c.engine.openTransactions++;
    return nulTerminated([String(id)]);
  },

  TRANSACTION_END: (c, p) => {
    const [flag] = splitStrings(p.payload);
    if (flag !== 'T' && flag !== 'F') throw xsError('EINVAL', 'TRANSACTION_END takes T or F');
    const tx = c.txs.get(p.txId);
    if (tx === undefined) throw xsError('ENOENT', `no transaction ${p.txId}`);
    endTx(c, p.txId);
    if (flag === 'F') return OK;
    return c.engine.commitTx(c.sessionId, tx, {}).then(() => OK);
  },

  GET_DOMAIN_PATH: (_c, p) => {
    const domid = parseDomid(splitStrings(p.payload)[0]);
    return nulTerminated([homeOf(domid)]);
  },

  IS_DOMAIN_INTRODUCED: (c, p) => {
    // No hypervisor: the only domain there is, is the one the clients run in.
    const domid = parseDomid(splitStrings(p.payload)[0]);
    return nulTerminated([domid === c.domid ? 'T' : 'F']);
  },

  CONTROL: (c, p) => {
    const [cmd, ...args] = splitStrings(p.payload);
    switch (cmd) {
      case 'check': return OK;
      case 'help': return nulTerminated([CONTROL_COMMANDS.join('\n') + '\n']);
      case 'print': c.log(`xenstore client: ${args.join(' ')}`); return OK;
      default: throw xsError('EINVAL', `unknown CONTROL command ${JSON.stringify(cmd ?? '')}`);
    }
  },

  // Domain management needs a hypervisor; features and quotas are not offered.
  INTRODUCE: enosys,
  RELEASE: enosys,
  RESUME: enosys,
  SET_TARGET: enosys,
  RESTRICT: enosys,
  GET_FEATURE: enosys,
  SET_FEATURE: enosys,
  GET_QUOTA: enosys,
  SET_QUOTA: enosys,
  // Only the server sends these.
  WATCH_EVENT: enosys,
  ERROR: enosys,
};

function endTx(c: XsConnectionContext, id: number): void {
  if (c.txs.delete(id)) c.engine.openTransactions--;
}
