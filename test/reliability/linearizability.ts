/**
 * A linearizability checker for one register with versions (get / set /
 * compare-and-set by version), in the style of Wing & Gong as refined by
 * Lowe and used by Knossos: depth-first search over the orders in which the
 * operations could have taken effect, respecting real time (an operation
 * that returned before another was invoked takes effect first), with a
 * memo of (set of linearized operations, model state) already explored so
 * the search is exponential only in how many operations overlap, not in the
 * history's length.
 *
 * Operations whose outcome is unknown (the connection died before the
 * reply: `ok: undefined`, `ret: Infinity`) may take effect at any point
 * after their invocation, or never; a read with an unknown outcome says
 * nothing and is dropped.
 *
 * Linearizability is local (Herlihy & Wing): a history over several keys is
 * linearizable iff each key's sub-history is, so callers check key by key.
 *
 * Written for this project (no library: the JavaScript ones found are
 * unmaintained or model only plain registers without versions).
 */

export type RegisterOp =
  | { kind: 'read'; value: string | undefined; version: number }
  | { kind: 'write'; value: string }
  /** Compare-and-set on the version (`ifVersion`; 0 = absent): `ok` false is a CONFLICT. */
  | { kind: 'cas'; value: string; expect: number };

export interface HistoryOp {
  readonly client: number;
  readonly op: RegisterOp;
  /** True / false: the reply said so (for cas: applied or CONFLICT). undefined: unknown (connection lost). */
  readonly ok: boolean | undefined;
  /** Invocation and return times on one clock (process.hrtime, which is system-wide on Linux); ret Infinity when unknown. */
  readonly invoke: number;
  readonly ret: number;
}

interface State {
  readonly value: string | undefined;
  readonly version: number;
}

export type CheckResult =
  | { readonly result: 'linearizable'; readonly explored: number }
  | { readonly result: 'violation'; readonly explored: number; readonly longest: number; readonly stuckAt: readonly HistoryOp[] }
  | { readonly result: 'unknown'; readonly explored: number };

/** The register's next state after `h`, or undefined when `h`'s recorded result is impossible in `s`. */
function step(s: State, h: HistoryOp): State | undefined {
  const o = h.op;
  switch (o.kind) {
    case 'read':
      return s.value === o.value && s.version === o.version ? s : undefined;
    case 'write':
      return { value: o.value, version: s.version + 1 };
    case 'cas':
      if (h.ok === true) return s.version === o.expect ? { value: o.value, version: s.version + 1 } : undefined;
      if (h.ok === false) return s.version !== o.expect ? s : undefined;
      // Unknown outcome, taking effect now: it applies exactly when the version matches.
      return s.version === o.expect ? { value: o.value, version: s.version + 1 } : s;
  }
}

/**
 * Checks one key's history, starting from an absent key (version 0) unless
 * `initial` says otherwise. `budget` bounds the states explored; past it the
 * answer is 'unknown' (counted by callers, never taken as a pass).
 */
export function checkRegister(history: readonly HistoryOp[], options: { initial?: State; budget?: number } = {}): CheckResult {
  // Unknown reads constrain nothing.
  const ops = history.filter((h) => !(h.op.kind === 'read' && h.ok === undefined)).slice().sort((a, b) => a.invoke - b.invoke);
  const n = ops.length;
  const required = ops.filter((h) => h.ok !== undefined).length;
  const budget = options.budget ?? 2_000_000;
  const done = new Uint8Array(n);
  const seen = new Set<string>();
  let explored = 0;
  let longest = 0;
  let stuckAt: HistoryOp[] = [];
  let doneRequired = 0;
  let doneCount = 0;

  const key = (s: State): string => {
    // The set of linearized operations as a bitmap, plus the state.
    let bits = '';
    for (let i = 0; i < n; i += 16) {
      let w = 0;
      for (let j = i; j < Math.min(n, i + 16); j++) if (done[j]) w |= 1 << (j - i);
      bits += String.fromCharCode(w + 32);
    }
    return `${bits}|${s.version}|${s.value ?? '\u0000'}`;
  };

  // Recursion depth is at most the history's length (callers keep histories to thousands of operations).
  const dfs = (s: State): 'yes' | 'no' | 'budget' => {
    if (doneRequired === required) return 'yes';
    if (++explored > budget) return 'budget';
    const k = key(s);
    if (seen.has(k)) return 'no';
    seen.add(k);
    // An operation can go next only if no pending one returned before it was invoked.
    let minRet = Infinity;
    for (let i = 0; i < n; i++) if (!done[i] && ops[i]!.ret < minRet) minRet = ops[i]!.ret;
    for (let i = 0; i < n; i++) {
      if (done[i]) continue;
      const h = ops[i]!;
      if (h.invoke > minRet) break; // sorted by invocation: no later one can go either
      const next = step(s, h);
      if (next === undefined) continue;
      done[i] = 1;
      doneCount++;
      if (h.ok !== undefined) doneRequired++;
      if (doneCount > longest) longest = doneCount;
      const r = dfs(next);
      done[i] = 0;
      doneCount--;
      if (h.ok !== undefined) doneRequired--;
      if (r !== 'no') return r;
    }
    // Remember where the deepest attempt got stuck, for the report.
    if (doneCount === longest) stuckAt = ops.filter((h, i) => !done[i] && h.invoke <= minRet);
    return 'no';
  };

  const r = dfs(options.initial ?? { value: undefined, version: 0 });
  if (r === 'yes') return { result: 'linearizable', explored };
  if (r === 'budget') return { result: 'unknown', explored };
  return { result: 'violation', explored, longest, stuckAt };
}

/** Groups a multi-key history by key and checks each. */
export function checkHistory(byKey: ReadonlyMap<string, readonly HistoryOp[]>, budget?: number): Map<string, CheckResult> {
  const out = new Map<string, CheckResult>();
  for (const [k, h] of byKey) out.set(k, checkRegister(h, budget === undefined ? {} : { budget }));
  return out;
}

/** Now, in nanoseconds as a float, on the clock every process of this machine shares. */
export function now(): number {
  return Number(process.hrtime.bigint());
}
