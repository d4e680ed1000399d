/**
 * What a XenStore connection needs from the channel under it: bytes in,
 * bytes out with back-pressure, pause/resume, and an end. The connection
 * code (connection.ts) knows nothing else, so the dom0 Unix socket, the
 * per-domain sockets of --xenstore-domain-dir, and a shared-ring transport
 * (docs/xenstore.md, "A ring transport") all sit behind the same code.
 */
import type { Socket } from 'node:net';

export interface TransportEvents {
  data(chunk: Uint8Array): void;
  /** The peer has taken queued output: writing may continue. */
  drain(): void;
  /** The channel is gone (either side); called once. */
  close(): void;
}

export interface XsTransport {
  /** Starts delivering events. */
  start(events: TransportEvents): void;
  /** Queues bytes; false when the peer is not keeping up (wait for `drain`). */
  write(bytes: Uint8Array): boolean;
  /** Bytes written and not yet taken by the peer. */
  readonly pendingBytes: number;
  readonly needsDrain: boolean;
  /** Stops / restarts delivering `data` (flow control). */
  pause(): void;
  resume(): void;
  /** Ends the channel at once. */
  destroy(): void;
}

/** A stream socket (Unix socket) as a XenStore transport. */
export function socketTransport(socket: Socket): XsTransport {
  return {
    start(ev: TransportEvents): void {
      socket.on('data', (chunk: Buffer) => ev.data(chunk));
      socket.on('error', () => { /* 'close' follows; a reset is not our error */ });
      socket.on('close', () => ev.close());
      socket.on('drain', () => ev.drain());
    },
    write: (b) => socket.write(b),
    get pendingBytes() { return socket.writableLength; },
    get needsDrain() { return socket.writableNeedDrain; },
    pause: () => { socket.pause(); },
    resume: () => { socket.resume(); },
    destroy: () => { socket.destroy(); },
  };
}
