/**
 * A TCP proxy on loopback that misbehaves on demand, each direction on its
 * own: pass, drop (bytes vanish; the stream is corrupt from then on), delay
 * (every chunk, and the close, arrive `ms` late) or cut (that direction's
 * receiver gets a FIN; nothing more goes that way). `heal()` destroys the
 * connections the fault touched and passes new ones through.
 */
import net from 'node:net';

export type Direction = 'c2s' | 's2c';
export type Fault = { kind: 'pass' } | { kind: 'drop' } | { kind: 'delay'; ms: number } | { kind: 'cut' };

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
}

export class FaultProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<Pair>();
  private readonly mode: Record<Direction, Fault> = { c2s: { kind: 'pass' }, s2c: { kind: 'pass' } };
  port = 0;

  constructor(private readonly upstreamPort: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.upstreamPort, '127.0.0.1');
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    const wire = (from: net.Socket, to: net.Socket, dir: Direction): void => {
      from.on('data', (chunk: Buffer) => {
        const f = this.mode[dir];
        if (f.kind === 'pass') to.write(chunk);
        else if (f.kind === 'delay') setTimeout(() => { if (!to.destroyed) to.write(chunk); }, f.ms);
      });
      from.on('end', () => {
        const f = this.mode[dir];
        if (f.kind === 'pass') to.end();
        else if (f.kind === 'delay') setTimeout(() => to.end(), f.ms);
      });
      from.on('error', () => {});
      from.on('close', () => {
        const f = this.mode[dir];
        if (f.kind === 'pass') to.end();
        else if (f.kind === 'delay') setTimeout(() => to.end(), f.ms);
        if (client.destroyed && upstream.destroyed) this.pairs.delete(pair);
      });
    };
    wire(client, upstream, 'c2s');
    wire(upstream, client, 's2c');
  }

  /** Applies a fault to one direction of every connection, now and new. */
  set(dir: Direction, f: Fault): void {
    this.mode[dir] = f;
    if (f.kind === 'cut') for (const p of this.pairs) (dir === 'c2s' ? p.upstream : p.client).end();
  }

  /** Back to passing; the connections that lived through the fault are destroyed. */
  heal(): void {
    this.mode.c2s = { kind: 'pass' };
    this.mode.s2c = { kind: 'pass' };
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
  }

  async close(): Promise<void> {
    this.heal();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
