/**
 * A small XenStore client for tests and benchmarks: one Unix socket,
 * pipelined requests matched to replies by req_id, watch events queued.
 */
import net from 'node:net';
import { XsDecoder, type XsPacket, XsType, encodePacket, fromUtf8, nulTerminated, splitStrings, utf8 } from '../../src/xenstore/wire.js';

export class XsReplyError extends Error {
  constructor(readonly errno: string, readonly request: string) {
    super(`${request}: ${errno}`);
    this.name = 'XsReplyError';
  }
}

export interface XsEvent {
  path: string;
  token: string;
}

type Pending = { resolve: (p: XsPacket) => void; reject: (e: Error) => void };

export class XsClient {
  private readonly decoder = new XsDecoder();
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private readonly events: XsEvent[] = [];
  private eventWaiters: Array<(e: XsEvent) => void> = [];
  closed = false;
  private readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let ev = this.decoder.next(); ev !== undefined; ev = this.decoder.next()) {
        if (ev.kind !== 'packet') throw new Error('server sent an oversized packet');
        this.onPacket(ev.packet);
      }
    });
    this.closedPromise = new Promise((resolve) => socket.on('close', () => {
      this.closed = true;
      for (const p of this.pending.values()) p.reject(new Error('connection closed'));
      this.pending.clear();
      resolve();
    }));
    socket.on('error', () => {});
  }

  static connect(path: string): Promise<XsClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => resolve(new XsClient(s)));
      s.once('error', reject);
    });
  }

  private onPacket(p: XsPacket): void {
    if (p.type === XsType.WATCH_EVENT) {
      const [path, token] = splitStrings(p.payload);
      const ev = { path: path ?? '', token: token ?? '' };
      const w = this.eventWaiters.shift();
      if (w !== undefined) w(ev);
      else this.events.push(ev);
      return;
    }
    const pend = this.pending.get(p.reqId);
    if (pend === undefined) throw new Error(`reply to unknown request ${p.reqId}`);
    this.pending.delete(p.reqId);
    pend.resolve(p);
  }

  /** Sends one request; resolves with the raw reply packet (ERROR replies included). */
  raw(type: number, payload: Uint8Array, txId = 0): Promise<XsPacket> {
    const reqId = this.nextReq++;
    return new Promise((resolve, reject) => {
      this.pending.set(reqId, { resolve, reject });
      this.socket.write(encodePacket(type, reqId, txId, payload));
    });
  }

  /** Sends a request; resolves with the reply payload, rejects XsReplyError on ERROR. */
  async request(type: number, payload: Uint8Array, txId = 0): Promise<Uint8Array> {
    const r = await this.raw(type, payload, txId);
    if (r.type === XsType.ERROR) throw new XsReplyError(splitStrings(r.payload)[0] ?? '', `type ${type}`);
    if (r.type !== type) throw new Error(`reply type ${r.type} to request type ${type}`);
    return r.payload;
  }

  async read(path: string, tx = 0): Promise<string> {
    return fromUtf8(await this.request(XsType.READ, nulTerminated([path]), tx));
  }

  async write(path: string, value: string | Uint8Array, tx = 0): Promise<void> {
    const p = utf8(path);
    const v = typeof value === 'string' ? utf8(value) : value;
    const b = new Uint8Array(p.length + 1 + v.length);
    b.set(p);
    b.set(v, p.length + 1);
    await this.request(XsType.WRITE, b, tx);
  }

  async mkdir(path: string, tx = 0): Promise<void> {
    await this.request(XsType.MKDIR, nulTerminated([path]), tx);
  }

  async rm(path: string, tx = 0): Promise<void> {
    await this.request(XsType.RM, nulTerminated([path]), tx);
  }

  async directory(path: string, tx = 0): Promise<string[]> {
    return splitStrings(await this.request(XsType.DIRECTORY, nulTerminated([path]), tx));
  }

  async getPerms(path: string, tx = 0): Promise<string[]> {
    return splitStrings(await this.request(XsType.GET_PERMS, nulTerminated([path]), tx));
  }

  async setPerms(path: string, perms: readonly string[], tx = 0): Promise<void> {
    await this.request(XsType.SET_PERMS, nulTerminated([path, ...perms]), tx);
  }

  async watch(path: string, token: string): Promise<void> {
    await this.request(XsType.WATCH, nulTerminated([path, token]));
  }

  async unwatch(path: string, token: string): Promise<void> {
    await this.request(XsType.UNWATCH, nulTerminated([path, token]));
  }

  async start(): Promise<number> {
    const [id] = splitStrings(await this.request(XsType.TRANSACTION_START, nulTerminated([''])));
    return Number(id);
  }

  async end(tx: number, commit = true): Promise<void> {
    await this.request(XsType.TRANSACTION_END, nulTerminated([commit ? 'T' : 'F']), tx);
  }

  /** The next watch event (waits for one). */
  nextEvent(): Promise<XsEvent> {
    const e = this.events.shift();
    if (e !== undefined) return Promise.resolve(e);
    return new Promise((resolve) => this.eventWaiters.push(resolve));
  }

  /** Events received so far and not taken. */
  takeEvents(): XsEvent[] {
    return this.events.splice(0);
  }

  /** Resolves once every request sent so far is answered (a request round trip). */
  async sync(): Promise<void> {
    await this.raw(XsType.GET_DOMAIN_PATH, nulTerminated(['0']));
  }

  whenClosed(): Promise<void> {
    return this.closedPromise;
  }

  close(): Promise<void> {
    this.socket.end();
    return this.closedPromise;
  }
}
