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
 *
 * Every handler acts for the connection's domain (`c.domain`): permissions
 * and quotas are checked in ops.ts and here, privileged callers (dom0 and
 * domains targeting it) bypass both, as in oxenstored. Permission checks
 * made inside a transaction are checked again against the head at
 * TRANSACTION_END (EAGAIN when one no longer passes): the engine's replay
 * compares values, not permissions.
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
  type Need, type XsCaller, type XsTarget, allowed, rootTarget, txTarget, workspaceTarget,
  xsDirectory, xsGetPerms, xsMkdir, xsRead, xsRm, xsSetPerms, xsWrite,
} from './ops.js';
import { homeOf, isSpecialPath, parseDomid, parsePerms, resolvePath } from './paths.js';
import type { XsDomain } from './domains.js';
import { isPrivileged } from './perms.js';
import type { WatchEventSink, WatchHub, XsWatch } from './watches.js';
import {
  PAYLOAD_MAX, type XsPacket, type XsTypeName, firstString, nulTerminated, splitFirst, splitStrings, utf8,
} from './wire.js';

/** An open XenStore transaction: the engine's state plus what XenStore needs around it. */
export interface XsTx {
  readonly state: TxState;
  /** Permission checks that passed, re-checked against the head at TRANSACTION_END. */
  readonly checks: Array<[path: string, need: Need]>;
  /** Nodes this transaction creates for its domain (the entry quota counts them before commit). */
  created: number;
  /** Requests made in it (oxenstored's quota-maxrequests). */
  requests: number;
  /** Keeps the value files its snapshot references (value compaction waits for it). */
  readonly unpin: () => void;
}

/** Domain management, shared by all connections of a server (server.ts). */
export interface DomainControl {
  domain(domid: number): XsDomain | undefined;
  /** Entries (nodes) owned by `domid` at the head. */
  entries(domid: number): number;
  /** INTRODUCE: creates the domain and its transport; false if it existed (same mfn: the port is updated). */
  introduce(domid: number, mfn: string, port: number): Promise<boolean>;
  /** SET_TARGET: records that `domid` acts for `target` (ENOENT when it is not introduced). */
  setTarget(domid: number, target: number): Promise<void>;
  /** RELEASE: closes the domain's connections and transport, removes what it owned, fires @releaseDomain. */
  release(domid: number, sessionId: string): Promise<void>;
  /** CONTROL `watches`: one line per watch of every connection. */
  describeWatches(): string;
  /** CONTROL `check`: the consistency check; '' when consistent, else what differs. */
  check(): string;
}

/** What a handler may use of its connection (also the sink of its watches). */
export interface XsConnectionContext extends WatchEventSink {
  readonly engine: EngineAccess;
  readonly sessionId: string;
  readonly limits: XenstoreLimits;
  /** The connection's domain (dom0 for the Unix socket: privileged). */
  readonly domain: XsDomain;
  readonly domains: DomainControl;
  readonly txs: Map<number, XsTx>;
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
  return homeOf(c.domain.domid);
}

function privileged(c: XsConnectionContext): boolean {
  return isPrivileged(c.domain);
}

function requirePrivileged(c: XsConnectionContext): void {
  if (!privileged(c)) throw xsError('EACCES', 'only dom0 may do this');
}

/** The permission and quota hooks for one request (a class: one allocation per request, no closures). */
class Caller implements XsCaller {
  readonly who: XsDomain;
  constructor(private readonly c: XsConnectionContext, private readonly tx: XsTx | undefined) {
    this.who = c.domain;
  }

  reserveEntries(n: number): void {
    const c = this.c;
    if (privileged(c)) return;
    const have = c.domains.entries(c.domain.domid) + (this.tx?.created ?? 0);
    if (have + n > c.limits.maxEntries) throw xsError('EQUOTA', `domain ${c.domain.domid} would own more than ${c.limits.maxEntries} nodes`);
    if (this.tx !== undefined) this.tx.created += n;
  }

  checked(path: string, need: Need): void {
    if (this.tx !== undefined && !privileged(this.c)) this.tx.checks.push([path, need]);
  }
}

function caller(c: XsConnectionContext, tx: XsTx | undefined): XsCaller {
  return new Caller(c, tx);
}

/** The one path argument of READ, MKDIR, RM, … resolved; EINVAL when missing. */
function pathArg(c: XsConnectionContext, p: XsPacket): string {
  const s = firstString(p.payload);
  if (s === undefined) throw xsError('EINVAL', 'missing path');
  return resolvePath(s, home(c), c.limits).abs;
}

function txOf(c: XsConnectionContext, p: XsPacket): XsTx | undefined {
  if (p.txId === 0) return undefined;
  const tx = c.txs.get(p.txId);
  if (tx === undefined) throw xsError('ENOENT', `no transaction ${p.txId}`);
  if (!privileged(c) && tx.requests >= c.limits.maxTransactionOps) throw xsError('EQUOTA', 'too many requests in one transaction');
  tx.requests++;
  return tx;
}

/** Runs a read on the transaction when there is one, else on the published head. */
function runRead<T>(c: XsConnectionContext, p: XsPacket, fn: (t: XsTarget, who: XsCaller) => T): T {
  const tx = txOf(c, p);
  return fn(tx === undefined ? rootTarget(c.engine.visibleRoot) : txTarget(tx.state), caller(c, tx));
}

/** Runs a write: on the transaction when there is one, else as one commit. */
function runWrite(c: XsConnectionContext, p: XsPacket, target: WriteTarget, fn: (t: XsTarget, who: XsCaller) => void): Reply {
  const tx = txOf(c, p);
  if (tx !== undefined) {
    fn(txTarget(tx.state), caller(c, tx));
    return OK;
  }
  // In memory the commit is published at once: the reply is ready in this same call (no promise to wait for).
  const r = c.engine.writeNow(c.sessionId, [target], NO_OPTIONS, (ws) => fn(workspaceTarget(ws), caller(c, undefined)));
  return r instanceof Promise ? r.then(replyOK) : OK;
}

const NO_OPTIONS = Object.freeze({});
const replyOK = (): Uint8Array => OK;

function checkReplySize(b: Uint8Array): Uint8Array {
  if (b.length > PAYLOAD_MAX) throw xsError('E2BIG', 'reply would exceed the payload limit');
  return b;
}

const enosys: Handler = () => { throw xsError('ENOSYS'); };

const CONTROL_COMMANDS = ['check', 'help', 'print', 'quota <domid>', 'watches'];

/** DOMID_SELF: IS_DOMAIN_INTRODUCED answers T for it, as oxenstored. */
const DOMID_SELF = 0x7ff0;

/** A guest's domid: 1 up to the first reserved id (DOMID_FIRST_RESERVED, 0x7ff0); EINVAL otherwise. */
function guestDomid(s: string | undefined): number {
  const d = parseDomid(s);
  if (d === 0 || d >= DOMID_SELF) throw xsError('EINVAL', `${d} is not a guest domain id`);
  return d;
}

export const handlers: Record<XsTypeName, Handler> = {
  READ: (c, p) => {
    const path = pathArg(c, p);
    return checkReplySize(runRead(c, p, (t, who) => xsRead(t, who, path)));
  },

  DIRECTORY: (c, p) => {
    const path = pathArg(c, p);
    return checkReplySize(nulTerminated(runRead(c, p, (t, who) => xsDirectory(t, who, path))));
  },

  DIRECTORY_PART: (c, p) => {
    // <path>|<offset>| → <gencnt>|<names from byte offset>…, with an extra NUL once the list is complete.
    const [s, off] = splitStrings(p.payload);
    if (s === undefined || off === undefined || !/^[0-9]{1,10}$/.test(off)) throw xsError('EINVAL', 'DIRECTORY_PART needs a path and an offset');
    const path = resolvePath(s, home(c), c.limits).abs;
    const { names, node } = runRead(c, p, (t, who) => ({ names: xsDirectory(t, who, path), node: lookup(t.root(), parsePath(path)) }));
    // The generation: the directory's childrenRev moves whenever its list of children changes.
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
    return checkReplySize(nulTerminated(runRead(c, p, (t, who) => xsGetPerms(t, who, path))));
  },

  WRITE: (c, p) => {
    const parts = splitFirst(p.payload);
    if (parts === undefined) throw xsError('EINVAL', 'WRITE needs a path and a value');
    const path = resolvePath(parts.first, home(c), c.limits).abs;
    if (parts.rest.length > c.limits.maxValueBytes) throw xsError('E2BIG', `value larger than ${c.limits.maxValueBytes} bytes`);
    // The tree keeps it: a copy, never a view of the socket's chunk (Uint8Array#slice copies; a Buffer's would not).
    const value = Uint8Array.prototype.slice.call(parts.rest);
    return runWrite(c, p, targetOf('set', path), (t, who) => xsWrite(t, who, path, value));
  },

  MKDIR: (c, p) => {
    const path = pathArg(c, p);
    return runWrite(c, p, targetOf('set', path), (t, who) => xsMkdir(t, who, path));
  },

  RM: (c, p) => {
    const path = pathArg(c, p);
    return runWrite(c, p, targetOf('delete', path), (t, who) => xsRm(t, who, path));
  },

  SET_PERMS: (c, p) => {
    const [s, ...rest] = splitStrings(p.payload);
    if (s === undefined) throw xsError('EINVAL', 'missing path');
    const path = resolvePath(s, home(c), c.limits).abs;
    const perms = parsePerms(rest);
    return runWrite(c, p, { path, subtree: false }, (t, who) => xsSetPerms(t, who, path, perms));
  },

  WATCH: (c, p) => {
    const [s, token] = splitStrings(p.payload);
    if (s === undefined || token === undefined) throw xsError('EINVAL', 'WATCH needs a path and a token');
    const key = s + '\0' + token;
    if (c.watches.has(key)) throw xsError('EEXIST', 'watch already set');
    if (!privileged(c) && c.domain.watches >= c.limits.maxWatches) throw xsError('EQUOTA', `more than ${c.limits.maxWatches} watches`);
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
    c.domain.watches++;
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
    c.domain.watches--;
    c.hub.remove(w);
    return OK;
  },

  RESET_WATCHES: (c) => {
    dropAll(c);
    return OK;
  },

  TRANSACTION_START: (c, p) => {
    if (p.txId !== 0) throw xsError('EINVAL', 'TRANSACTION_START inside a transaction');
    if (!privileged(c) && c.domain.transactions >= c.limits.maxTransactions) throw xsError('EQUOTA', `more than ${c.limits.maxTransactions} open transactions`);
    const id = c.newTxId();
    c.txs.set(id, { state: new TxState(c.engine.visibleRoot, c.engine.visibleRev), checks: [], created: 0, requests: 0, unpin: c.engine.pinSnapshot(c.engine.visibleRev) });
    c.domain.transactions++;
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
    // Permissions are not part of the engine's validation: what was allowed must still be.
    const head = c.engine.visibleRoot;
    for (const [path, need] of tx.checks) {
      const n = lookup(head, parsePath(path));
      if (n !== undefined && !allowed(c.domain, n.perms, need)) throw xsError('EAGAIN', `${need} access to ${path} was revoked`);
    }
    const r = c.engine.commitTxNow(c.sessionId, tx.state, NO_OPTIONS);
    return r instanceof Promise ? r.then(replyOK) : OK;
  },

  GET_DOMAIN_PATH: (_c, p) => {
    const domid = parseDomid(splitStrings(p.payload)[0]);
    return nulTerminated([homeOf(domid)]);
  },

  IS_DOMAIN_INTRODUCED: (c, p) => {
    requirePrivileged(c);
    const domid = parseDomid(splitStrings(p.payload)[0]);
    return nulTerminated([domid === 0 || domid === DOMID_SELF || c.domains.domain(domid) !== undefined ? 'T' : 'F']);
  },

  INTRODUCE: (c, p) => {
    requirePrivileged(c);
    const [d, mfn, port] = splitStrings(p.payload);
    const domid = guestDomid(d);
    if (mfn === undefined || !/^-?[0-9]{1,20}$/.test(mfn)) throw xsError('EINVAL', 'INTRODUCE needs an mfn');
    if (port === undefined || !/^[0-9]{1,10}$/.test(port)) throw xsError('EINVAL', 'INTRODUCE needs an event channel');
    return c.domains.introduce(domid, mfn, Number(port)).then(() => OK);
  },

  RELEASE: (c, p) => {
    requirePrivileged(c);
    const domid = guestDomid(splitStrings(p.payload)[0]);
    if (c.domains.domain(domid) === undefined) throw xsError('EINVAL', `domain ${domid} is not introduced`);
    return c.domains.release(domid, c.sessionId).then(() => OK);
  },

  RESUME: (c, p) => {
    // Re-arms @releaseDomain on shutdown; with no hypervisor reporting shutdowns there is nothing to re-arm.
    requirePrivileged(c);
    const domid = guestDomid(splitStrings(p.payload)[0]);
    if (c.domains.domain(domid) === undefined) throw xsError('EINVAL', `domain ${domid} is not introduced`);
    return OK;
  },

  SET_TARGET: (c, p) => {
    requirePrivileged(c);
    const [d, t] = splitStrings(p.payload);
    const dom = c.domains.domain(guestDomid(d));
    const target = parseDomid(t);
    if (dom === undefined) throw xsError('ENOENT', 'domain not introduced');
    return c.domains.setTarget(dom.domid, target).then(replyOK);
  },

  CONTROL: (c, p) => {
    requirePrivileged(c);
    const [cmd, ...args] = splitStrings(p.payload);
    switch (cmd) {
      case 'check': {
        const diff = c.domains.check();
        return nulTerminated([diff === '' ? 'OK' : diff]);
      }
      case 'help': return nulTerminated([CONTROL_COMMANDS.join('\n') + '\n']);
      case 'print': c.log(`xenstore client: ${args.join(' ')}`); return OK;
      case 'quota': {
        const domid = parseDomid(args[0]);
        const n = c.domains.entries(domid);
        const known = domid === 0 || c.domains.domain(domid) !== undefined || n > 0;
        return nulTerminated([known ? `dom${domid} quota: ${n}/${c.limits.maxEntries}` : `dom${domid} quota: not set`]);
      }
      case 'watches': return checkReplySize(nulTerminated([c.domains.describeWatches()]));
      default: throw xsError('EINVAL', `unknown CONTROL command ${JSON.stringify(cmd ?? '')}`);
    }
  },

  // Not offered by oxenstored either (GET/SET_FEATURE and GET/SET_QUOTA are newer C xenstored messages; XS_RESTRICT was removed).
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
  const tx = c.txs.get(id);
  if (tx === undefined || !c.txs.delete(id)) return;
  tx.unpin();
  c.engine.openTransactions--;
  c.domain.transactions--;
}

/** Drops every watch and transaction of a connection (RESET_WATCHES, and the connection's end). */
export function dropAll(c: XsConnectionContext): void {
  for (const w of c.watches.values()) c.hub.remove(w);
  c.domain.watches -= c.watches.size;
  c.watches.clear();
  for (const id of [...c.txs.keys()]) endTx(c, id);
}
