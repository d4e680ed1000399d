/**
 * Lock handoff, measured the same way for every lock service (compare-locks,
 * etcd): C contenders loop acquire → release on one lock. "handoffs/s"
 * counts only grants to a *different* contender than the last holder, per
 * second of the run; handoff latency is from the holder's release call to
 * that grant (a re-grant to the releaser is not a handoff).
 */
import { percentile } from './util.js';

export interface Held {
  release(): Promise<void>;
}

export interface Contender {
  acquire(name: string): Promise<Held>;
  close(): Promise<void>;
}

export interface HandoffResult {
  perSec: number;
  p50: number;
  p99: number;
  handoffs: number;
  grants: number;
}

/** Runs `contenders` (made by `make`) on lock `name` for `ms` or `maxGrants` grants. */
export async function handoff(make: (i: number) => Promise<Contender>, contenders: number, ms: number, maxGrants: number, name = '/handoff'): Promise<HandoffResult> {
  const cs = await Promise.all(Array.from({ length: contenders }, (_, i) => make(i)));
  const lat: number[] = [];
  let lastHolder = -1;
  let releasedAt = 0;
  let grants = 0;
  let stop = false;
  const t0 = performance.now();
  await Promise.all(cs.map(async (c, me) => {
    while (!stop) {
      const held = await c.acquire(name);
      const t = performance.now();
      grants++;
      if (lastHolder !== -1 && lastHolder !== me) lat.push(t - releasedAt);
      lastHolder = me;
      if (t - t0 > ms || grants >= maxGrants) stop = true;
      releasedAt = performance.now();
      await held.release();
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  for (const c of cs) await c.close();
  lat.sort((a, b) => a - b);
  return { perSec: lat.length / secs, p50: percentile(lat, 50), p99: percentile(lat, 99), handoffs: lat.length, grants };
}
