/**
 * The echo floor: a raw Node echo server (net.createServer, every chunk
 * written straight back, no framing, no parsing) in a process of its own,
 * on a Unix socket and on loopback TCP, like `latchkey serve`. A sequential
 * round trip to it is the least any Node server can answer in over that
 * socket kind on this machine; latchkey's sequential remote get is measured
 * against it in the same run (compare-remote).
 *
 *   node echo.js SOCKET_PATH    prints "tcp PORT" then "ready"
 */
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { HOST, startServer, tempDir } from './server.js';

export interface EchoPeer {
  readonly socketPath: string;
  readonly port: number;
  /** One connection; `roundTrip()` sends `bytes` and resolves when they all came back. */
  connect(transport: 'unix' | 'tcp', bytes: number): Promise<{ roundTrip(): Promise<void>; close(): void }>;
  stop(): Promise<void>;
}

const here = fileURLToPath(import.meta.url);

export async function startEcho(): Promise<EchoPeer> {
  const dir = tempDir('echo');
  const socketPath = path.join(dir, 'echo.sock');
  const server = await startServer('echo', process.execPath, [here, socketPath], async (out) => /^ready$/m.test(out), dir);
  const port = Number(/^tcp (\d+)$/m.exec(server.output())![1]);
  const sockets: net.Socket[] = [];
  server.onStop(() => {
    for (const s of sockets) s.destroy();
  });
  return {
    socketPath,
    port,
    async connect(transport, bytes) {
      const sock = transport === 'unix' ? net.connect(socketPath) : net.connect({ host: HOST, port, noDelay: true });
      sockets.push(sock);
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      });
      const msg = Buffer.alloc(bytes, 0x61);
      let want = 0;
      let done: (() => void) | undefined;
      sock.on('data', (d: Buffer) => {
        want -= d.length;
        if (want <= 0 && done) {
          const f = done;
          done = undefined;
          f();
        }
      });
      return {
        roundTrip: () => new Promise<void>((resolve) => {
          want = bytes;
          done = resolve;
          sock.write(msg);
        }),
        close: () => sock.destroy(),
      };
    },
    stop: () => server.stop(),
  };
}

// Run as a child: echo on the Unix socket given and on a free loopback port.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === here) {
  const sockPath = process.argv[2];
  if (sockPath === undefined) {
    console.error('usage: echo.js SOCKET_PATH');
    process.exit(2);
  }
  const echo = (s: net.Socket): void => {
    s.on('data', (d) => s.write(d));
    s.on('error', () => s.destroy());
  };
  const unix = net.createServer(echo);
  const tcp = net.createServer({ noDelay: true }, echo);
  await new Promise<void>((r) => unix.listen(sockPath, r));
  await new Promise<void>((r) => tcp.listen(0, HOST, r));
  process.stdout.write(`tcp ${(tcp.address() as net.AddressInfo).port}\nready\n`);
}
