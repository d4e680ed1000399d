/**
 * `npm run bench [-- WORKLOAD…] [--quick]`: runs named workloads (files in
 * bench/workloads/), each printing its own tables. With no names, runs all.
 */
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { machine } from './util.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const available = readdirSync(path.join(here, 'workloads')).filter((f) => f.endsWith('.js')).map((f) => f.slice(0, -3)).sort();

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const names = argv.filter((a) => !a.startsWith('--'));
const unknown = names.filter((n) => !available.includes(n));
if (unknown.length > 0) {
  console.error(`unknown workload(s): ${unknown.join(', ')}; available: ${available.join(', ')}`);
  process.exit(2);
}
console.log(`latchkey bench ${quick ? '(quick) ' : ''}on ${JSON.stringify(machine())}`);
for (const name of names.length > 0 ? names : available) {
  const mod = (await import(`./workloads/${name}.js`)) as { default: (o: { quick: boolean; args: readonly string[] }) => Promise<void> };
  await mod.default({ quick, args: argv });
}
