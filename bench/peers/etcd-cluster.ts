/**
 * A three-member etcd cluster on free loopback ports in a temp dir, as
 * test/integration/lib/etcd-cluster.sh starts one, for the etcd benchmark
 * and the soak's etcd mode: members can be SIGKILLed (the leader, found by
 * asking each member's status) and restarted on their data directory and
 * ports. `stop()` kills every member it started and removes the directory.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBinary, freePort } from './server.js';

export interface MemberStatus {
  /** The member's own id and the leader it knows (hex strings, as etcd's JSON gateway gives them). */
  member: string;
  leader: string;
}

async function status(host: string): Promise<MemberStatus | undefined> {
  try {
    const r = await fetch(`http://${host}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(1000) });
    const j = (await r.json()) as { header?: { member_id?: string }; leader?: string };
    return j.header?.member_id === undefined || j.leader === undefined ? undefined : { member: j.header.member_id, leader: j.leader };
  } catch {
    return undefined;
  }
}

async function healthy(host: string): Promise<boolean> {
  try {
    const r = await fetch(`http://${host}/health`, { signal: AbortSignal.timeout(1000) });
    return ((await r.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class EtcdCluster {
  private readonly kids: Array<ChildProcess | undefined> = [];
  private readonly exits: Array<Promise<void>> = [];
  private stopped = false;

  private constructor(
    private readonly bin: string,
    readonly dir: string,
    /** host:port of each member's client URL, in member order. */
    readonly hosts: readonly string[],
    private readonly peerPorts: readonly number[],
    private readonly token: string,
  ) {}

  /** `etcd://` endpoints list (host:port,…). */
  get endpoints(): string {
    return this.hosts.join(',');
  }

  /** The pid of each member now running (undefined: killed and not restarted). */
  get pids(): Array<number | undefined> {
    return this.hosts.map((_, i) => (this.alive(i) ? this.kids[i]!.pid : undefined));
  }

  /**
   * Starts three members; a string says why there is no cluster ("not
   * available: …"): no etcd binary, or the members did not become healthy.
   */
  static async start(timeoutMs = 30_000): Promise<EtcdCluster | string> {
    const bin = findBinary('etcd');
    if (bin === undefined) return 'not available: no etcd binary (npm run bench:setup or test/integration/etcd.sh installs etcd-server)';
    const dir = mkdtempSync(path.join(os.tmpdir(), 'lk-etcd-cluster-'));
    const client: number[] = [];
    const peer: number[] = [];
    for (let i = 0; i < 3; i++) {
      client.push(await freePort());
      peer.push(await freePort());
    }
    const c = new EtcdCluster(bin, dir, client.map((p) => `127.0.0.1:${p}`), peer, `lk-${process.pid}-${Math.floor(Math.random() * 1e9)}`);
    for (let i = 0; i < 3; i++) c.launch(i);
    if (!(await c.waitHealthy(timeoutMs))) {
      await c.stop();
      return `not available: the three etcd members did not become healthy in ${timeoutMs / 1000} s`;
    }
    return c;
  }

  private launch(i: number): void {
    const host = this.hosts[i]!;
    const cluster = this.peerPorts.map((p, j) => `m${j}=http://127.0.0.1:${p}`).join(',');
    const kid = spawn(this.bin, [
      '--name', `m${i}`, '--data-dir', path.join(this.dir, `m${i}`),
      '--listen-client-urls', `http://${host}`, '--advertise-client-urls', `http://${host}`,
      '--listen-peer-urls', `http://127.0.0.1:${this.peerPorts[i]}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${this.peerPorts[i]}`,
      '--initial-cluster', cluster, '--initial-cluster-state', 'new', '--initial-cluster-token', this.token,
      '--heartbeat-interval', '100', '--election-timeout', '1000', '--log-level', 'error', '--logger', 'zap',
    ], { stdio: 'ignore' });
    this.kids[i] = kid;
    this.exits[i] = new Promise((r) => kid.once('exit', () => r()));
  }

  alive(i: number): boolean {
    const k = this.kids[i];
    return k !== undefined && k.exitCode === null && k.signalCode === null;
  }

  /** Every running member answers healthy (a leader is elected and it can commit). */
  async waitHealthy(timeoutMs = 30_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const up = this.hosts.filter((_, i) => this.alive(i));
      if (up.length > 0 && (await Promise.all(up.map(healthy))).every((h) => h)) return true;
      if (Date.now() > deadline) return false;
      await sleep(100);
    }
  }

  /** The index of the member that is leader now, as the members say (undefined: none agreed within `timeoutMs`). */
  async leader(timeoutMs = 10_000): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const st = await Promise.all(this.hosts.map((h, i) => (this.alive(i) ? status(h) : undefined)));
      const i = st.findIndex((s) => s !== undefined && s.member === s.leader);
      if (i >= 0) return i;
      if (Date.now() > deadline) return undefined;
      await sleep(100);
    }
  }

  /** SIGKILLs member `i` and waits for it to be gone. */
  async kill(i: number): Promise<void> {
    const k = this.kids[i];
    if (k === undefined || !this.alive(i)) return;
    k.kill('SIGKILL');
    await this.exits[i];
  }

  /** Starts member `i` again on its data directory and ports (it rejoins as itself). */
  restart(i: number): void {
    if (this.stopped || this.alive(i)) return;
    this.launch(i);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (let i = 0; i < this.kids.length; i++) await this.kill(i);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
