// private micro-benchmark (not a test): node build/test/xenstore/micro-xs.js SOCKET
import os from 'node:os';
import { XsClient } from './client.js';

const c = await XsClient.connect(process.argv[2]!);
const load0 = os.loadavg()[0]!;
const cpu0 = process.cpuUsage();
for (let r = 0; r < 3; r++) {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 1000) {
    await c.write(`/local/domain/1/k${n % 100}`, 'value');
    n++;
  }
  const t1 = performance.now();
  let m = 0;
  while (performance.now() - t1 < 1000) {
    const tx = await c.start();
    await c.write(`/local/domain/1/t${m % 100}`, 'v', tx);
    await c.end(tx, true);
    m++;
  }
  console.log(`write ${((t1 - t0) * 1000 / n).toFixed(1)} µs; tx(start,write,end) ${((performance.now() - t1) * 1000 / m).toFixed(1)} µs`);
}
const cu = process.cpuUsage(cpu0);
console.log(`client cpu ${((cu.user + cu.system) / 1e6).toFixed(2)} s; load ${load0.toFixed(2)} → ${os.loadavg()[0]!.toFixed(2)}`);
c.close();
