/**
 * The soak's bookkeeping and checks (test/fixtures/soak.ts runs the
 * processes). The ledger reads what each client process said it tried and
 * what was acknowledged (see soak-worker.ts for the lines), and checks the
 * store against it after every server restart and at the end.
 *
 * Journal and store. A client writes each line to its journal
 * (journal.ts) before it sends the operation the line announces, and the
 * harness can drain every journal synchronously (`drain`). So a check
 * drains *before* it reads the store for what must be there (every
 * acknowledgement read then is of a commit the read sees) and *after* it
 * reads the store for what may be there (every operation that reached the
 * store before the read has its line read by then): both bounds are exact,
 * no grace period needed.
 *
 * Two kinds of failure. A *violation* is the store breaking a promise. A
 * *harness error* is the journal contradicting itself (a sequence gap, an
 * acknowledgement of an operation never announced): no verdict about the
 * store can be drawn from it, and the run fails with its own exit code.
 */
import type { Store } from '../../src/api.js';
import type { RemoteStore } from '../../src/client/store.js';
import { LatchkeyError } from '../../src/core/errors.js';
import { COUNTERS, LIN_SLOT_NS, SHARED } from '../fixtures/soak-config.js';
import { Worker } from 'node:worker_threads';
import type { LinReply, LinRequest } from './lin-thread.js';
import type { HistoryOp, RegisterOp } from './linearizability.js';

interface Inc { k: number; v: number; state: 'try' | 'ack' | 'fail' }
interface LinOp { key: string; client: number; kind: RegisterOp['kind']; value: string; expect: number; invoke: number; ret?: number; ok?: boolean; rvalue?: string; rversion?: number }
interface Segment { from: number; events: Array<[number, string]> }
/** A counter lock granted (journal `lock-got`), and what its holder did under it. */
interface Grant {
  op: string; k: number; token: number; ownerDied: boolean; epoch: string;
  /** A write acknowledged under it (`inc-ack`). */
  acked: boolean;
  /** `lock-mc` / `lock-rel` journaled (so maybe sent). */
  mc: boolean; rel: boolean;
  /** When its release was journaled (process.hrtime, one clock for every process of the machine). */
  relAt: number;
  /** Its release was journaled when the harness drained the journals right after its server's kill. */
  relAtKill: boolean;
}

export interface Figures {
  serverKills: number;
  clientKills: number;
  checks: number;
  incrementsAcked: number;
  incrementsUnknown: number;
  transactionsAcked: number;
  transactionsChecked: number;
  ephemeralsCreated: number;
  watchEvents: number;
  watchSegmentsChecked: number;
  watchCompacted: number;
  harnessWatchEvents: number;
  harnessWatchCompacted: number;
  linOps: number;
  linHistories: number;
  linUnknownOutcome: number;
  linUndecided: number;
  /** The longest linearizability search, in ms (on its own thread). */
  linLongestMs: number;
  fuzzFrames: number;
  journalLines: number;
  /** Dead clients whose last journal line was torn by the kill (the one loss allowed). */
  journalTornTails: number;
  errorsByCode: Record<string, number>;
  /** Counter-lock grants journaled, and those whose fencing token was compared with every other server run's. */
  lockGrants: number;
  tokenChecks: number;
  /**
   * At server kills: counter locks whose last grant was still held (not released) with a write
   * acknowledged under it (the store promises the next holder ownerDied), and those without one (no promise).
   */
  ownerDiedObligations: number;
  heldAtKillNoWrite: number;
  /** ... of those without a promise, how many came back ownerDied anyway. */
  heldAtKillNoWriteOwnerDied: number;
  /** Grants after a restart checked for ownerDied (an obligation's grants up to the first markConsistent). */
  ownerDiedChecks: number;
  /** Obligations whose path nobody was granted before the next kill (nothing to check). */
  ownerDiedUnverified: number;
  /** Server kills that waited (up to 2 s) for a counter lock held with an acknowledged write. */
  targetedKills: number;
  /** ... of those, how many found one (the others gave up after 2 s). */
  targetedKillsFound: number;
  /** --backend etcd: etcd members SIGKILLed (and restarted), of them the leader; client sessions given up (the lease-safety rule). */
  memberKills: number;
  leaderKills: number;
  sessionsGivenUp: number;
}

/**
 * What the checks read the store through: a RemoteStore (a latchkey server),
 * or an etcd store (soak --backend etcd) with its lock table made async.
 */
export type SoakStore = Pick<Store, 'get' | 'exists' | 'list' | 'watch'> & Pick<RemoteStore, 'revision' | 'fetchLockTable'>;

/** Per client process. */
export class WorkerState {
  readonly sessions = new Set<string>();
  readonly segments: Segment[] = [];
  dead = false;
  constructor(readonly label: string, readonly index: number) {}
}

export class Ledger {
  readonly violations: string[] = [];
  readonly harnessErrors: string[] = [];
  readonly figures: Figures = {
    serverKills: 0, clientKills: 0, checks: 0, incrementsAcked: 0, incrementsUnknown: 0, transactionsAcked: 0, transactionsChecked: 0,
    ephemeralsCreated: 0, watchEvents: 0, watchSegmentsChecked: 0, watchCompacted: 0, harnessWatchEvents: 0, harnessWatchCompacted: 0,
    linOps: 0, linHistories: 0, linUnknownOutcome: 0, linUndecided: 0, linLongestMs: 0, fuzzFrames: 0, journalLines: 0, journalTornTails: 0, errorsByCode: {},
    lockGrants: 0, tokenChecks: 0, ownerDiedObligations: 0, heldAtKillNoWrite: 0, heldAtKillNoWriteOwnerDied: 0, ownerDiedChecks: 0, ownerDiedUnverified: 0, targetedKills: 0, targetedKillsFound: 0,
    memberKills: 0, leaderKills: 0, sessionsGivenUp: 0,
  };
  /**
   * `soak --pretend-no-owner-died` (the self-test of the owner-died check): the harness reads every
   * grant after a restart as if it had come without ownerDied; the run must end in violations.
   */
  pretendNoOwnerDied = false;
  /**
   * `soak --backend etcd`: there is one store for the whole run (no server process to restart, so no
   * server runs: session ids carry no epoch, and a session is dead only when its client process
   * was killed); revisions are etcd's, which lock queue entries and lease revocations also take, so
   * the harness's watch of / checks them increasing, not contiguous.
   */
  etcd = false;
  private readonly grants = new Map<string, Grant>();
  /** Server runs in the order they were started (a session id starts with its run's epoch), their grants, and token ranges. */
  private readonly epochs: Array<{ epoch: string; grants: Grant[]; min: number; max: number; killed: boolean }> = [];
  private readonly epochIndex = new Map<string, number>();
  /** Grants whose run the harness has not learnt yet (a client was quicker than the harness after a restart). */
  private readonly unplaced: Grant[] = [];
  private readonly incs = new Map<string, Inc>();
  /** Acknowledged increments' values per counter (each must be distinct: two equal ones are a lost update). */
  private readonly ackedValues: Array<Set<number>> = Array.from({ length: COUNTERS }, () => new Set());
  private readonly txs = new Map<string, { state: 'try' | 'ack' | 'fail'; rev?: number }>();
  /** Transactions verified present (complete, one revision); never to be lost afterwards. */
  private readonly verified = new Map<string, number>();
  private readonly lin = new Map<string, LinOp>();
  /** Operations checked with an unknown outcome whose return line may still come (a live client's slow reply). */
  private readonly linChecked = new Set<string>();
  private readonly deadSessions = new Set<string>();
  private readonly log: (s: string) => void;
  private readonly drain: () => void;
  private linThread: Worker | undefined;
  private readonly linPending = new Map<number, { key: string; ops: number }>();
  private linNext = 0;
  private linIdle: (() => void) | undefined;

  /** `drain` reads every client's journal up to now, synchronously. */
  constructor(log: (s: string) => void, drain: () => void = () => {}) {
    this.log = log;
    this.drain = drain;
  }

  violation(s: string): void {
    if (this.violations.length < 200) this.violations.push(s);
    this.log(`VIOLATION ${s}`);
  }

  /**
   * Time slices: the checks' synchronous loops (over every transaction so
   * far: they grow with the run) give the event loop a turn every 20 ms, so
   * the harness keeps reading journals, its watch and its timers.
   */
  private sliceStart = performance.now();
  private sliceDue(): boolean {
    return performance.now() - this.sliceStart > 20;
  }
  private async yieldSlice(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    this.sliceStart = performance.now();
  }

  /** The harness itself failed (its journal is not what a client wrote): distinct from a violation. */
  harnessError(s: string): void {
    if (this.harnessErrors.length < 200) this.harnessErrors.push(s);
    this.log(`HARNESS ERROR ${s}`);
  }

  /** One line from client process `w`. */
  line(w: WorkerState, line: string): void {
    this.figures.journalLines++;
    const f = line.split(' ');
    switch (f[0]) {
      case 'sess':
        w.sessions.add(f[1]!);
        if (w.dead) this.deadSessions.add(f[1]!);
        break;
      case 'inc-try':
        this.incs.set(f[1]!, { k: Number(f[2]), v: Number(f[3]), state: 'try' });
        break;
      case 'lock-got': {
        const g: Grant = { op: f[1]!, k: Number(f[2]), token: Number(f[3]), ownerDied: f[4] === '1', epoch: this.etcd ? 'etcd' : f[5]!.split('.')[0]!, acked: false, mc: false, rel: false, relAt: Infinity, relAtKill: false };
        this.figures.lockGrants++;
        if (f[5] === '-' || !Number.isSafeInteger(g.token)) return this.harnessError(`${w.label}: grant without a session or token: ${line.slice(0, 200)}`);
        this.grants.set(g.op, g);
        this.place(g);
        break;
      }
      case 'lock-mc':
      case 'lock-rel': {
        const g = this.grants.get(f[1]!);
        if (g === undefined) return this.harnessError(`${w.label}: journal has ${f[0]} for ${f[1]}, never granted`);
        if (f[0] === 'lock-mc') g.mc = true;
        else {
          g.rel = true;
          g.relAt = Number(f[2]);
        }
        break;
      }
      case 'inc-ack': {
        const inc = this.incs.get(f[1]!);
        if (inc === undefined) return this.harnessError(`${w.label}: journal acknowledges increment ${f[1]}, never announced`);
        inc.state = 'ack';
        const g = this.grants.get(f[1]!);
        if (g !== undefined) g.acked = true;
        this.figures.incrementsAcked++;
        const vs = this.ackedValues[inc.k]!;
        if (vs.has(inc.v)) this.violation(`counter c${inc.k}: two acknowledged increments wrote ${inc.v} (a lost update: the lock or its fence failed)`);
        vs.add(inc.v);
        break;
      }
      case 'inc-fail': {
        const inc = this.incs.get(f[1]!);
        if (inc !== undefined) inc.state = 'fail';
        break;
      }
      case 'tx-try':
        this.txs.set(f[1]!, { state: 'try' });
        break;
      case 'tx-ack':
        this.txs.set(f[1]!, { state: 'ack', rev: Number(f[2]) });
        this.figures.transactionsAcked++;
        break;
      case 'eph':
        this.figures.ephemeralsCreated++;
        break;
      case 'wstart':
        w.segments.push({ from: Number(f[1]), events: [] });
        break;
      case 'wev':
        w.segments.at(-1)?.events.push([Number(f[1]), f[2]!]);
        this.figures.watchEvents++;
        break;
      case 'wend':
        if (f[2] === '1') this.figures.watchCompacted++;
        this.countError(f[1]!);
        break;
      case 'linv':
        this.lin.set(f[1]!, { key: f[2]!, client: w.index, kind: f[3] as RegisterOp['kind'], value: f[4]!, expect: Number(f[5]), invoke: Number(f[6]) });
        this.figures.linOps++;
        break;
      case 'lret': {
        const o = this.lin.get(f[1]!);
        if (o === undefined) {
          // Its history was checked already, this operation's outcome taken as unknown (a weaker claim): fine.
          if (this.linChecked.delete(f[1]!)) return;
          return this.harnessError(`${w.label}: journal returns operation ${f[1]}, never announced`);
        }
        o.ok = f[2] === '1';
        if (f[3] !== '-') o.rvalue = f[3]!;
        o.rversion = Number(f[4]);
        o.ret = Number(f[5]);
        break;
      }
      case 'err':
        this.countError(f[2]!);
        this.violation(`${w.label}: unexpected error in ${f[1]}: ${f.slice(2).join(' ')}`);
        break;
      case 'viol':
        this.violation(`${w.label}: ${f.slice(1).join(' ')}`);
        break;
      default:
        this.harnessError(`${w.label}: unparsable journal line: ${line.slice(0, 200)}`);
    }
  }

  /** A server run started (its epoch: the prefix of its session ids); call in start order. */
  serverStarted(epoch: string): void {
    if (this.epochIndex.has(epoch)) return;
    this.epochIndex.set(epoch, this.epochs.length);
    this.epochs.push({ epoch, grants: [], min: Infinity, max: -Infinity, killed: false });
    for (const g of this.unplaced.splice(0)) this.place(g);
  }

  /**
   * Files a grant under its server run and checks its fencing token: larger than every token of an
   * earlier run, smaller than every token of a later one (its line may come late).
   */
  private place(g: Grant): void {
    const i = this.epochIndex.get(g.epoch);
    if (i === undefined) {
      this.unplaced.push(g);
      return;
    }
    const run = this.epochs[i]!;
    if (run.killed) g.relAtKill = false; // its release, if any, is journaled after the kill: it never reached that server
    run.grants.push(g);
    for (let j = 0; j < this.epochs.length; j++) {
      const o = this.epochs[j]!;
      if (j < i && o.max >= g.token) this.violation(`fencing token ${g.token} (${g.op} on /counters/c${g.k}, server run ${i + 1}) is not above token ${o.max} of the earlier run ${j + 1}`);
      if (j > i && o.min <= g.token) this.violation(`fencing token ${g.token} (${g.op} on /counters/c${g.k}, server run ${i + 1}) is not below token ${o.min} of the later run ${j + 1}`);
    }
    run.min = Math.min(run.min, g.token);
    run.max = Math.max(run.max, g.token);
    this.figures.tokenChecks++;
  }

  /**
   * Whether the journals read so far show, in the running server, a counter lock whose last grant
   * has a write acknowledged under it and no release: a kill now makes an owner-died obligation.
   */
  heldWithAckedWrite(): boolean {
    const run = this.epochs.at(-1);
    if (run === undefined) return false;
    const last: Array<Grant | undefined> = [];
    for (const g of run.grants) if (last[g.k] === undefined || g.token > last[g.k]!.token) last[g.k] = g;
    return last.some((g) => g !== undefined && g.acked && !g.rel);
  }

  /**
   * The server just died (SIGKILL, exit awaited). Call after draining every journal, with the time
   * `kill()` returned (same clock as the journals' times): a release journaled before then may have
   * reached it, one journaled later cannot have (the harness may read it late, under load, so the
   * time and not the moment of reading decides). Then checks the owner-died
   * obligations of the previous kill against the run that just died (every grant it made whose line
   * can still come has been journaled: its holder journals a grant before it sends anything under it).
   */
  serverKilled(killedAt: number): void {
    const i = this.epochs.length - 1;
    const run = this.epochs[i];
    if (run === undefined) return;
    run.killed = true;
    for (const g of run.grants) g.relAtKill = g.rel && g.relAt <= killedAt;
    if (i >= 1) this.checkOwnerDied(this.epochs[i - 1]!, run);
  }

  /**
   * Owner-died across a crash, as the store promises it (docs/architecture.md, "Across a crash";
   * src/storage/lock-log.ts): grant records are logged without an fsync of their own, ordered before
   * any write made under them. So for each counter, take the last grant of the killed run (the
   * largest token: an earlier one was released, or its session died, before it); if it was not
   * released at the kill and a write under it was acknowledged (fsynced, so its grant record is on
   * disk), recovery must turn it into a taint: every grant of the path in the next run, in token
   * order, must say ownerDied up to and including the first whose holder called markConsistent().
   * A grant the journals never show either was followed by nothing its holder did (it journals the
   * grant first), or died with its holder: a taint again. A held lock with no acknowledged write
   * may lose its unsynced grant record in the crash: counted, not checked.
   */
  private checkOwnerDied(killed: { grants: Grant[] }, next: { grants: Grant[] }): void {
    for (let k = 0; k < COUNTERS; k++) {
      let last: Grant | undefined;
      for (const g of killed.grants) if (g.k === k && (last === undefined || g.token > last.token)) last = g;
      if (last === undefined || last.relAtKill) continue;
      const after = next.grants.filter((g) => g.k === k).sort((a, b) => a.token - b.token);
      if (!last.acked) {
        this.figures.heldAtKillNoWrite++;
        if (after[0]?.ownerDied === true) this.figures.heldAtKillNoWriteOwnerDied++;
        continue;
      }
      this.figures.ownerDiedObligations++;
      if (after.length === 0) this.figures.ownerDiedUnverified++;
      for (const g of after) {
        this.figures.ownerDiedChecks++;
        if (!g.ownerDied || this.pretendNoOwnerDied) {
          this.violation(`owner-died lost in a crash: /counters/c${k} was held at the server kill (${last.op}, token ${last.token}, a write acknowledged under it, not released), and ${g.op} was granted it after the restart (token ${g.token}) without ownerDied`);
          break;
        }
        if (g.mc) break;
      }
    }
  }

  countError(code: string): void {
    this.figures.errorsByCode[code] = (this.figures.errorsByCode[code] ?? 0) + 1;
  }

  /** Watch segments of dead client processes, checked once the store has been read past their last event. */
  private readonly pendingSegments: Array<{ w: WorkerState; seg: Segment }> = [];

  /** A client process was killed: its sessions are dead, its watch streams complete. */
  workerDied(w: WorkerState): void {
    w.dead = true;
    for (const s of w.sessions) this.deadSessions.add(s);
    for (const seg of w.segments) this.pendingSegments.push({ w, seg });
    w.segments.length = 0;
  }

  /**
   * Everything checkable about the store as it is now. `epoch` is the
   * running server's session-id prefix: sessions of other epochs died with
   * earlier server processes. Bounded in time: the "eventually" checks
   * (dead sessions' locks and ephemeral nodes: the server notices a death)
   * retry for up to `graceMs`.
   */
  async check(store: SoakStore, epoch: string, graceMs = 5_000): Promise<void> {
    this.figures.checks++;
    const head = await this.checkTransactions(store);
    // Watch streams whose events all lie at or below the head just verified: every transaction they
    // could have missed is known now.
    const later: Array<{ w: WorkerState; seg: Segment }> = [];
    for (const p of this.pendingSegments.splice(0)) {
      if (this.sliceDue()) await this.yieldSlice();
      if ((p.seg.events.at(-1)?.[0] ?? 0) <= head) this.checkSegment(p.w, p.seg);
      else later.push(p);
    }
    this.pendingSegments.push(...later);
    await this.checkCounters(store);
    await this.eventually(graceMs, () => this.deadHolders(store, epoch));
  }

  private async eventually(graceMs: number, probe: () => Promise<string[]>): Promise<void> {
    const deadline = Date.now() + graceMs;
    let problems: string[] = [];
    for (let i = 0; i < 1000; i++) {
      problems = await probe();
      if (problems.length === 0 || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const p of problems.slice(0, 10)) this.violation(p);
  }

  private isDead(session: string | undefined, epoch: string): boolean {
    if (this.etcd) return session !== undefined && this.deadSessions.has(session);
    return session !== undefined && (!session.startsWith(`${epoch}.`) || this.deadSessions.has(session));
  }

  /** Locks held or awaited, and ephemeral nodes owned, by sessions that are dead. */
  private async deadHolders(store: SoakStore, epoch: string): Promise<string[]> {
    const problems: string[] = [];
    const table = await store.fetchLockTable();
    for (const l of table.held) if (this.isDead(l.session, epoch)) problems.push(`lock ${l.path} held by dead session ${l.session}`);
    for (const l of table.waiting) if (this.isDead(l.session, epoch)) problems.push(`a dead session ${l.session} still waits for ${l.path}`);
    const names = await listAll(store, '/eph');
    for (const n of names) {
      const e = await store.get(`/eph/${n}`);
      if (e !== undefined && this.isDead(e.stat.ephemeralOwner, epoch)) problems.push(`ephemeral /eph/${n} outlives its session ${e.stat.ephemeralOwner}`);
    }
    return problems;
  }

  /**
   * Acknowledged transactions are present with their revision; every
   * transaction present is complete (both keys, one revision, its id);
   * no two share a revision; each shared key names the transaction that
   * wrote it last, at that transaction's revision.
   */
  private async checkTransactions(store: SoakStore): Promise<number> {
    this.drain();
    const acked = [...this.txs].filter(([, t]) => t.state === 'ack');
    await store.get('/');
    const head = store.revision;
    const names = new Set(await listAll(store, '/tx'));
    // Known ones never disappear (cheap: a name lookup); new ones are checked in full, once.
    const byRev = new Map<number, string>();
    for (const [id, rev] of this.verified) {
      if (this.sliceDue()) await this.yieldSlice();
      if (!names.has(id)) this.violation(`transaction ${id}, seen complete before, is gone`);
      byRev.set(rev, id);
    }
    for (const id of names) {
      if (this.sliceDue()) await this.yieldSlice();
      if (this.verified.has(id)) continue;
      const keys = await store.list(`/tx/${id}`);
      const a = await store.get(`/tx/${id}/a`);
      const b = await store.get(`/tx/${id}/b`);
      if (keys.length !== 2 || a === undefined || b === undefined) {
        this.violation(`transaction ${id} partially applied: keys [${keys.join(',')}]`);
        continue;
      }
      if (a.text() !== id || b.text() !== id || a.stat.modRev !== b.stat.modRev) {
        this.violation(`transaction ${id}: a=${a.text()}@${a.stat.modRev} b=${b.text()}@${b.stat.modRev}`);
        continue;
      }
      const other = byRev.get(a.stat.modRev);
      if (other !== undefined) this.violation(`transactions ${other} and ${id} share revision ${a.stat.modRev}`);
      byRev.set(a.stat.modRev, id);
      this.verified.set(id, a.stat.modRev);
      this.figures.transactionsChecked++;
    }
    for (const [id, t] of acked) {
      const rev = this.verified.get(id);
      if (rev === undefined) this.violation(`acknowledged transaction ${id} (revision ${t.rev}) is lost`);
      else if (rev !== t.rev) this.violation(`acknowledged transaction ${id} was committed at ${t.rev}, is at ${rev}`);
      if (t.rev! > head) this.violation(`acknowledged transaction ${id} at revision ${t.rev} is past the head ${head}`);
    }
    for (let s = 0; s < SHARED; s++) {
      const e = await store.get(`/shared/s${s}`);
      if (e === undefined) continue;
      const writer = byRev.get(e.stat.modRev) ?? (this.verified.has(e.text()) ? undefined : await this.verifyOne(store, e.text(), byRev));
      if (writer !== e.text()) this.violation(`/shared/s${s} = ${e.text()} at revision ${e.stat.modRev}, which is ${writer ?? 'no transaction'}'s`);
    }
    return head;
  }

  /** A transaction committed after the listing (the shared key's writer): checks it now. */
  private async verifyOne(store: SoakStore, id: string, byRev: Map<number, string>): Promise<string | undefined> {
    const a = await store.get(`/tx/${id}/a`);
    const b = await store.get(`/tx/${id}/b`);
    if (a === undefined || b === undefined || a.stat.modRev !== b.stat.modRev) return undefined;
    byRev.set(a.stat.modRev, id);
    return id;
  }

  /**
   * Counters: acknowledged increments ≤ value ≤ increments that may have happened; no value acknowledged twice.
   * The lower bound uses the journals drained before the read, the upper bound those drained after it.
   */
  private async checkCounters(store: SoakStore): Promise<void> {
    for (let k = 0; k < COUNTERS; k++) {
      this.drain();
      const ackedBefore = [...this.ackedValues[k]!];
      const e = await store.get(`/counters/c${k}`);
      const v = e === undefined ? 0 : Number(e.text());
      const max = ackedBefore.reduce((m, x) => Math.max(m, x), 0);
      if (v < max) this.violation(`counter c${k} is ${v}, but an increment to ${max} was acknowledged (lost)`);
      if (v < ackedBefore.length) this.violation(`counter c${k} is ${v} after ${ackedBefore.length} acknowledged increments`);
      // Upper bound: increments whose commit may have happened (tried, and not failed before the read).
      // Every one that reached the store before the read announced itself before it was sent.
      this.drain();
      let possible = 0;
      for (const inc of this.incs.values()) if (inc.k === k && inc.state !== 'fail') possible++;
      if (v > possible) this.violation(`counter c${k} is ${v}, more than the ${possible} increments that could have committed`);
    }
  }

  get pendingWatchStreams(): number {
    return this.pendingSegments.length;
  }

  /**
   * Checks a dead client process's watch stream (one segment: from its
   * start to its end, across every reconnection the client resumed) against
   * the transactions verified present: within [from, last event), every
   * transaction's two puts were delivered, none twice, in revision order.
   */
  private checkSegment(w: WorkerState, seg: Segment): void {
    if (seg.events.length === 0) return;
    const last = seg.events.at(-1)![0];
    const seen = new Map<string, number>();
    let prev = 0;
    for (const [rev, p] of seg.events) {
      if (rev < prev) this.violation(`${w.label}: watch went back from ${prev} to ${rev}`);
      prev = rev;
      if (seen.has(p)) this.violation(`${w.label}: watch delivered ${p} twice (revisions ${seen.get(p)}, ${rev})`);
      seen.set(p, rev);
    }
    for (const [id, rev] of this.verified) {
      if (rev < seg.from || rev >= last) continue;
      for (const k of ['a', 'b']) {
        const got = seen.get(`/tx/${id}/${k}`);
        if (got === undefined) this.violation(`${w.label}: watch from ${seg.from} to ${last} missed /tx/${id}/${k} at revision ${rev}`);
        else if (got !== rev) this.violation(`${w.label}: watch delivered /tx/${id}/${k} at ${got}, committed at ${rev}`);
      }
    }
    for (const [p, rev] of seen) {
      const id = p.split('/')[2]!;
      const v = this.verified.get(id);
      if (v !== undefined && v !== rev) this.violation(`${w.label}: watch event ${p}@${rev} but the transaction is at ${v}`);
      if (v === undefined && rev < last) this.violation(`${w.label}: watch delivered ${p}@${rev}, a transaction not in the store`);
    }
    this.figures.watchSegmentsChecked++;
  }

  /**
   * Sends the linearizability history of every key whose slot ended before
   * `nowNs` - margin to the checking thread (lin-thread.ts), then forgets
   * them here; `linSettled` waits for the verdicts.
   */
  checkLinearizability(nowNs: number, all = false): void {
    this.drain();
    const byKey = new Map<string, Array<[string, LinOp]>>();
    for (const [id, o] of this.lin) {
      const slot = Number(o.key.split('/')[2]);
      if (!all && (slot + 1) * LIN_SLOT_NS + 10e9 > nowNs) continue;
      let l = byKey.get(o.key);
      if (l === undefined) byKey.set(o.key, l = []);
      l.push([id, o]);
      this.lin.delete(id);
    }
    for (const [key, ops] of byKey) {
      const history: HistoryOp[] = ops.map(([id, o]) => {
        const op: RegisterOp = o.kind === 'read' ? { kind: 'read', value: o.rvalue, version: o.rversion ?? 0 }
          : o.kind === 'write' ? { kind: 'write', value: o.value } : { kind: 'cas', value: o.value, expect: o.expect };
        if (o.ret === undefined) {
          this.figures.linUnknownOutcome++;
          this.linChecked.add(id);
        }
        return { client: o.client, op, ok: o.ret === undefined ? undefined : o.ok, invoke: o.invoke, ret: o.ret ?? Infinity };
      });
      this.linThread ??= this.startLinThread();
      const id = ++this.linNext;
      this.linPending.set(id, { key, ops: history.length });
      const request: LinRequest = { id, history, budget: 5_000_000 };
      this.linThread.postMessage(request);
    }
  }

  private startLinThread(): Worker {
    const t = new Worker(new URL('./lin-thread.js', import.meta.url));
    t.on('message', (m: LinReply) => {
      const p = this.linPending.get(m.id)!;
      this.linPending.delete(m.id);
      const r = m.result;
      this.figures.linHistories++;
      this.figures.linLongestMs = Math.max(this.figures.linLongestMs, Math.round(m.ms));
      if (r.result === 'unknown') this.figures.linUndecided++;
      if (r.result === 'violation') {
        this.violation(`${p.key}: history of ${p.ops} operations is not linearizable (longest prefix ${r.longest}); stuck at ${JSON.stringify(r.stuckAt.slice(0, 5))}`);
      }
      if (this.linPending.size === 0) this.linIdle?.();
    });
    t.on('error', (e) => {
      this.harnessError(`linearizability thread: ${String(e)}`);
      this.linPending.clear();
      this.linIdle?.();
    });
    return t;
  }

  /** Every history sent has its verdict. */
  async linSettled(): Promise<void> {
    while (this.linPending.size > 0) await new Promise<void>((r) => { this.linIdle = r; });
    this.linIdle = undefined;
  }

  /** Stops the checking thread (after `linSettled`, or to give up). */
  async close(): Promise<void> {
    await this.linThread?.terminate();
    this.linThread = undefined;
  }

  /** The harness's own watch of the whole store: revisions contiguous, each (revision, path) once. */
  harnessWatch(store: SoakStore, signal: AbortSignal): Promise<void> {
    return (async () => {
      for (let round = 0; !signal.aborted && round < 1_000_000; round++) {
        let last = 0;
        const paths = new Set<string>();
        try {
          await store.get('/');
          const from = store.revision + 1;
          last = from - 1;
          for await (const ev of store.watch('/', { recursive: true, fromRevision: from, signal })) {
            this.figures.harnessWatchEvents++;
            if (ev.revision === last) {
              const k = `${ev.type} ${ev.path}`;
              if (paths.has(k)) this.violation(`watch of /: ${k} twice at revision ${ev.revision}`);
              paths.add(k);
            } else if (ev.revision === last + 1 || (this.etcd && ev.revision > last)) {
              last = ev.revision;
              paths.clear();
              paths.add(`${ev.type} ${ev.path}`);
            } else {
              this.violation(`watch of /: revision ${ev.revision} after ${last} (revisions not contiguous, or a gap in the stream)`);
              last = ev.revision;
            }
          }
        } catch (e) {
          if (signal.aborted) return;
          if (LatchkeyError.is(e) && e.info?.['compacted'] === true) this.figures.harnessWatchCompacted++;
          else if (!LatchkeyError.is(e, 'CONNECTION_LOST') && !LatchkeyError.is(e, 'CLOSED') && !LatchkeyError.is(e, 'QUOTA')) {
            this.violation(`watch of /: ${String(e)}`);
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    })();
  }
}

/** Every child name of `p`, paged. */
export async function listAll(store: SoakStore, p: string): Promise<string[]> {
  const out: string[] = [];
  if (!(await store.exists(p))) return out;
  let after: string | undefined;
  for (let i = 0; i < 100_000; i++) {
    const page = await store.list(p, after === undefined ? { limit: 5000 } : { after, limit: 5000 });
    out.push(...page);
    if (!page.more || page.length === 0) break;
    after = page.at(-1);
  }
  return out;
}
