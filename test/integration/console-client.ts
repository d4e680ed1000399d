/**
 * A latchkey client process for the console's browser tests (console.sh):
 *
 *   node console-client.js hold URL TOKEN PATH   takes the lock, prints `held SESSION TOKEN`, then waits to be killed
 *   node console-client.js wait URL TOKEN PATH   prints `waiting SESSION`, takes the lock (waiting), prints
 *                                                `granted SESSION ownerDied=BOOL`, then waits to be killed
 */
import { connect } from '../../src/client/store.js';

const [mode, url, token, path] = process.argv.slice(2);
if ((mode !== 'hold' && mode !== 'wait') || url === undefined || token === undefined || path === undefined) {
  process.stderr.write('usage: console-client.js hold|wait URL TOKEN PATH\n');
  process.exit(2);
}
const store = await connect(url, { token, name: `console-test-${mode}`, reconnect: false });
if (mode === 'wait') process.stdout.write(`waiting ${store.id}\n`);
const lock = await store.lock(path);
process.stdout.write(mode === 'hold' ? `held ${store.id} ${lock.token}\n` : `granted ${store.id} ownerDied=${lock.ownerDied}\n`);
// Stay alive (holding) until killed.
setInterval(() => {}, 1 << 30);
