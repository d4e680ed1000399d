/** What every peer adapter returns: a running peer, or the reason it cannot run (reported, never dropped). */
export interface Missing {
  readonly missing: string;
}

export function isMissing<T extends object>(p: T | Missing): p is Missing {
  return 'missing' in p;
}

export const NOT_INSTALLED = 'not installed';

/** A cell for a peer that did not run: "not installed", "skipped (--quick)", or the error. */
export function missingCell(p: Missing): string {
  return p.missing;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
