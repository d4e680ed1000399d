// latchkey web console: framework-free, served by the server itself (no CDN).
// Every stored key or value is put on the page as a text node (h() below):
// nothing read from the store is ever parsed as HTML.

const $ = (id) => document.getElementById(id);

/** Makes an element; string and number children become text nodes, never markup. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const state = {
  locksAfter: undefined,
  locksNext: undefined,
  lockPages: [],
  token: sessionStorage.getItem('latchkey-token') ?? '',
  me: undefined,
  path: '/',
  selected: undefined,
  after: undefined,
  valueMode: 'text',
  tick: undefined,
  samples: [],
  watchPath: '',
  recent: [],
};

function headers(extra = {}) {
  return state.token ? { ...extra, Authorization: `Bearer ${state.token}` } : extra;
}

async function api(name, params = {}, body) {
  const q = new URLSearchParams(params).toString();
  const r = await fetch(`/api/${name}${q ? `?${q}` : ''}`, body === undefined ? { headers: headers() } : { method: 'POST', headers: headers({ 'Content-Type': 'application/json' }), body: JSON.stringify(body) });
  const j = await r.json().catch(() => ({ error: { code: 'INTERNAL', message: `HTTP ${r.status}` } }));
  if (r.status === 401) showLogin(j.error?.message);
  if (!r.ok) throw Object.assign(new Error(j.error?.message ?? `HTTP ${r.status}`), { code: j.error?.code });
  return j;
}

function showLogin(msg) {
  $('login').hidden = false;
  $('login-error').textContent = msg ?? '';
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  state.token = $('token').value.trim();
  sessionStorage.setItem('latchkey-token', state.token);
  $('login').hidden = true;
  start();
});

// ------------------------------------------------------------------ tabs
for (const b of document.querySelectorAll('#tabs button')) {
  b.addEventListener('click', () => {
    for (const x of document.querySelectorAll('#tabs button')) x.classList.toggle('on', x === b);
    for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== `view-${b.dataset.view}`;
    if (b.dataset.view === 'charts') drawCharts();
  });
}

// ------------------------------------------------------------------ helpers
function age(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${Math.floor(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function bytesOf(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function render(bytes, mode) {
  if (mode === 'hex') {
    const lines = [];
    for (let i = 0; i < bytes.length; i += 16) {
      const row = [...bytes.subarray(i, i + 16)];
      lines.push(`${i.toString(16).padStart(8, '0')}  ${row.map((x) => x.toString(16).padStart(2, '0')).join(' ').padEnd(48)}  ${row.map((x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : '.')).join('')}`);
    }
    return lines.join('\n');
  }
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (mode === 'json') {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return `(not JSON: ${e.message})\n${text}`; }
  }
  return text;
}

function join(parent, name) {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

function confirmAction(text) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.showModal();
  });
}

// ------------------------------------------------------------------ tree
async function openDir(path) {
  state.path = path;
  state.after = undefined;
  $('children').replaceChildren();
  const segs = path === '/' ? [] : path.slice(1).split('/');
  const crumbs = [h('a', { onclick: () => openDir('/') }, '/')];
  segs.forEach((s, i) => {
    const p = `/${segs.slice(0, i + 1).join('/')}`;
    crumbs.push(h('a', { onclick: () => openDir(p) }, s), i < segs.length - 1 ? '/' : '');
  });
  $('crumbs').replaceChildren(...crumbs);
  await loadMore();
  await showNode(path);
}

async function loadMore() {
  const params = { path: state.path, limit: '200' };
  if (state.after !== undefined) params.after = state.after;
  let r;
  try {
    r = await api('list', params);
  } catch (e) {
    $('list-count').textContent = `${e.code ?? ''} ${e.message}`;
    return;
  }
  for (const name of r.names) {
    const p = join(state.path, name);
    const li = h('li', { 'data-path': p, title: p, onclick: () => select(p, li) }, name);
    li.addEventListener('dblclick', () => openDir(p));
    $('children').append(li);
  }
  state.after = r.names.at(-1) ?? state.after;
  const shown = $('children').children.length;
  $('list-count').textContent = `${shown} of ${r.total} children${r.more ? ' (double-click a name to open it)' : ''}`;
  $('more').hidden = !r.more;
}
$('more').addEventListener('click', () => loadMore());

async function select(path, li) {
  for (const x of $('children').querySelectorAll('li.sel')) x.classList.remove('sel');
  li?.classList.add('sel');
  await showNode(path);
}

async function showNode(path) {
  state.selected = path;
  const box = $('node');
  let e;
  try {
    e = await api('get', { path });
  } catch (err) {
    box.replaceChildren(h('p', { class: 'error' }, `${path}: ${err.message}`));
    return;
  }
  const bytes = bytesOf(e.value);
  const pre = h('pre', { class: 'value', 'data-testid': 'value' }, render(bytes, state.valueMode));
  const modes = h('span', { class: 'modes' }, ...['text', 'json', 'hex'].map((m) => h('button', {
    class: m === state.valueMode ? 'on' : '', 'data-mode': m,
    onclick: () => { state.valueMode = m; pre.textContent = render(bytes, m); for (const b of modes.children) b.classList.toggle('on', b.dataset.mode === m); },
  }, m)));
  const st = e.stat;
  const stat = h('dl', { class: 'stat' },
    ...[['revision created', st.createRev], ['revision modified', st.modRev], ['version', st.version], ['children', st.numChildren], ['children changed at', st.childrenRev], ['size', `${e.size} bytes`], ['ephemeral owner', st.ephemeralOwner ?? '—'], ['read at revision', e.revision]]
      .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  const hist = h('ul', { class: 'log', 'data-testid': 'history' });
  const histBtn = h('button', { onclick: async () => {
    hist.replaceChildren();
    try {
      const r = await api('history', { path });
      if (r.events.length === 0) hist.append(h('li', { class: 'muted' }, `no change since revision ${r.from} (the watch window)`));
      for (const ev of r.events) hist.append(h('li', {}, `r${ev.revision} ${ev.type}${ev.value !== undefined ? ` ${render(bytesOf(ev.value), 'text').slice(0, 120)}` : ''}`));
    } catch (err) { hist.append(h('li', { class: 'error' }, err.message)); }
  } }, 'history');
  const kids = st.numChildren > 0 && path !== state.path ? h('button', { onclick: () => openDir(path) }, `open (${st.numChildren} children)`) : '';
  const ro = !state.me?.write;
  const text = h('textarea', { 'data-testid': 'edit-value' }, render(bytes, 'text'));
  const save = h('button', { 'data-testid': 'action-set', disabled: ro, title: ro ? 'this token does not grant writes' : '', onclick: async () => {
    if (!(await confirmAction(`Set ${path}?`))) return;
    try { await api('set', {}, { path, value: text.value }); await showNode(path); } catch (err) { alert(err.message); }
  } }, 'set value');
  const del = h('button', { 'data-testid': 'action-delete', disabled: ro, title: ro ? 'this token does not grant writes' : '', onclick: async () => {
    if (!(await confirmAction(`Delete ${path} and everything below it?`))) return;
    try { await api('delete', {}, { path, recursive: true }); await openDir(path === '/' ? '/' : path.slice(0, path.lastIndexOf('/')) || '/'); } catch (err) { alert(err.message); }
  } }, 'delete');
  box.replaceChildren(
    h('h3', { class: 'mono', 'data-testid': 'node-path' }, path), kids, modes, pre, stat, histBtn, hist,
    h('div', { class: 'actions' }, ro ? h('span', { class: 'badge ro', 'data-testid': 'read-only' }, 'read-only token') : '', text, h('div', {}, save, ' ', del)),
  );
}

// ------------------------------------------------------------------ live views
function renderLocks(t) {
  const v = t.locks;
  const from = state.lockPages.length * LOCK_PAGE;
  $('lock-summary').textContent = `${v.held} held, ${v.waiting} waiting${v.held > v.locks.length ? ` (locks ${v.locks.length ? from + 1 : 0}–${from + v.locks.length} in path order shown)` : ''}`;
  state.locksNext = v.next;
  $('locks-next').hidden = !v.next;
  $('locks-prev').hidden = state.lockPages.length === 0;
  const ro = !state.me?.write;
  const rows = v.locks.map((l) => {
    const q = h('div', { class: 'queue', 'data-testid': 'queue' }, h('span', { class: 'qnode holder', title: 'holder' }, l.session));
    for (const w of l.queue) q.append(h('span', { class: 'qarrow' }, '→'), h('span', { class: 'qnode', title: `${w.mode} on ${w.path}, waiting ${age(t.at - w.since)}`, 'data-session': w.session }, w.session));
    if (l.queued > l.queue.length) q.append(h('span', { class: 'muted' }, ` +${l.queued - l.queue.length}`));
    const reset = l.ownerDied ? h('button', { disabled: ro, 'data-testid': 'action-reset', onclick: async () => {
      if (!(await confirmAction(`Reset owner-died taints at and below ${l.path}?`))) return;
      try { await api('reset-lock', {}, { path: l.path }); } catch (err) { alert(err.message); }
    } }, 'reset taint') : '';
    const force = h('button', { disabled: ro, 'data-testid': 'action-force-release', title: ro ? 'this token does not grant writes' : 'take the lock from its holder (the next waiter gets it owner-died)', onclick: async () => {
      if (!(await confirmAction(`Force-release ${l.path} from session ${l.session}? The holder loses it; the next waiter gets it marked owner-died.`))) return;
      try { await api('force-release', {}, { path: l.path }); } catch (err) { alert(err.message); }
    } }, 'force release');
    return h('tr', { 'data-path': l.path, 'data-session': l.session },
      h('td', { class: 'mono' }, l.path, l.ownerDied ? h('span', { class: 'badge died', 'data-testid': 'owner-died' }, ' owner died') : ''),
      h('td', {}, l.mode), h('td', { class: 'mono' }, l.session), h('td', { class: 'mono' }, l.token), h('td', {}, age(t.at - l.since)), h('td', {}, q), h('td', {}, force, ' ', reset));
  });
  $('lock-rows').replaceChildren(...rows);
  $('taints').replaceChildren(...v.taints.slice().reverse().map((n) => h('li', {}, `${new Date(n.at).toLocaleTimeString()} ${n.kind} ${n.fields.path}${n.fields.session ? ` → ${n.fields.session}` : ''}`)));
  $('deadlocks').replaceChildren(...v.deadlocks.slice().reverse().map((n) => h('li', {}, `${new Date(n.at).toLocaleTimeString()} ${n.fields.session} on ${n.fields.path}: ${n.fields.reason}`)));
}

function renderSessions(t) {
  const s = t.sessions;
  $('session-summary').textContent = `${s.total} open sessions${s.total > s.sessions.length ? ` (${s.sessions.length} shown)` : ''}`;
  $('session-rows').replaceChildren(...s.sessions.map((x) => h('tr', { 'data-session': x.id },
    h('td', { class: 'mono' }, x.id), h('td', {}, x.name === x.id ? '' : x.name), h('td', {}, x.transport), h('td', { class: 'mono' }, x.address ?? ''),
    h('td', {}, age(t.at - x.since)), h('td', {}, x.leaseMs ? age(x.leaseMs) : ''), h('td', {}, x.locksHeld), h('td', {}, x.locksWaiting), h('td', {}, x.ephemerals))));
}

function renderEvents(t) {
  for (const n of t.recent) state.recent.push(n);
  if (state.recent.length > 500) state.recent.splice(0, state.recent.length - 500);
  $('events').replaceChildren(...state.recent.slice().reverse().map((n) => h('li', { 'data-kind': n.kind }, `${new Date(n.at).toLocaleTimeString()} ${n.kind} ${JSON.stringify(n.fields)}`)));
}

// ------------------------------------------------------------------ charts
const CHARTS = [
  { title: 'commits / s', series: [['commits', 'rate']] },
  { title: 'conflicts and replays / s', series: [['conflicts', 'rate'], ['replays', 'rate']] },
  { title: 'lock handoffs / s', series: [['lockWakeups', 'rate']] },
  { title: 'lock wait (ms, mean)', series: [['lockWait', 'latency']] },
  { title: 'commit latency (ms, mean)', series: [['commit', 'latency']] },
  { title: 'fsync (ms, mean)', series: [['fsync', 'latency']] },
];
const COLORS = ['#2457c5', '#c5452a', '#1e7b46'];

function sampleOf(t) {
  const s = { at: t.at, stats: t.stats, latency: JSON.parse(JSON.stringify(t.latency)) };
  state.samples.push(s);
  if (state.samples.length > 121) state.samples.shift();
}

function seriesValues(key, kind) {
  const out = [];
  for (let i = 1; i < state.samples.length; i++) {
    const a = state.samples[i - 1];
    const b = state.samples[i];
    const dt = (b.at - a.at) / 1000;
    if (kind === 'rate') out.push(dt > 0 ? ((b.stats[key] ?? 0) - (a.stats[key] ?? 0)) / dt : 0);
    else {
      const n = b.latency[key].count - a.latency[key].count;
      out.push(n > 0 ? (b.latency[key].sum - a.latency[key].sum) / n : 0);
    }
  }
  return out;
}

function drawCharts() {
  const box = $('charts');
  if (box.children.length === 0) {
    for (const c of CHARTS) box.append(h('div', { class: 'chart' }, h('h4', {}, c.title, h('span', { class: 'muted' }, '')), h('canvas', { width: 400, height: 120 })));
  }
  if ($('view-charts').hidden) return;
  CHARTS.forEach((c, i) => {
    const el = box.children[i];
    const canvas = el.querySelector('canvas');
    const g = canvas.getContext('2d');
    const all = c.series.map(([k, kind]) => seriesValues(k, kind));
    const max = Math.max(1e-9, ...all.flat());
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = '#e3e6eb';
    g.beginPath(); g.moveTo(0, canvas.height - 0.5); g.lineTo(canvas.width, canvas.height - 0.5); g.stroke();
    all.forEach((vals, j) => {
      g.strokeStyle = COLORS[j];
      g.lineWidth = 1.5;
      g.beginPath();
      vals.forEach((v, x) => {
        const px = (x / 119) * canvas.width;
        const py = canvas.height - 4 - (v / max) * (canvas.height - 12);
        if (x === 0) g.moveTo(px, py); else g.lineTo(px, py);
      });
      g.stroke();
    });
    const last = all.map((v) => (v.length ? v[v.length - 1].toFixed(2) : '–'));
    el.querySelector('h4 span').textContent = `  now ${last.join(' / ')}  max ${max.toFixed(2)}`;
  });
}

// The lock view pages through the table in path order (the server sends one page a tick).
const LOCK_PAGE = 300;
function lockPageTo(after, pages) {
  state.locksAfter = after;
  state.lockPages = pages;
  connectStream();
}
$('locks-next').addEventListener('click', () => { if (state.locksNext) lockPageTo(state.locksNext, [...state.lockPages, state.locksAfter]); });
$('locks-prev').addEventListener('click', () => { const p = state.lockPages.slice(0, -1); lockPageTo(state.lockPages[state.lockPages.length - 1], p); });

// ------------------------------------------------------------------ the stream
let streamAbort;

async function connectStream() {
  streamAbort?.abort();
  const ctl = new AbortController();
  streamAbort = ctl;
  const qs = new URLSearchParams();
  if (state.watchPath) qs.set('watch', state.watchPath);
  if (state.locksAfter) qs.set('locksAfter', state.locksAfter);
  const q = qs.size ? `?${qs}` : '';
  const status = $('status');
  try {
    const r = await fetch(`/api/events${q}`, { headers: headers(), signal: ctl.signal });
    if (r.status === 401) { showLogin('token needed'); return; }
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      $('watch-state').textContent = j.error?.message ?? `HTTP ${r.status}`;
      status.textContent = 'error'; status.className = 'down';
      return;
    }
    status.textContent = 'live'; status.className = 'live';
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        onEvent(event, data ? JSON.parse(data) : null);
      }
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
  }
  if (streamAbort !== ctl) return;
  status.textContent = 'reconnecting…'; status.className = 'down';
  setTimeout(() => { if (streamAbort === ctl) connectStream(); }, 2000);
}

function onEvent(event, data) {
  if (event === 'tick') {
    state.tick = data;
    sampleOf(data);
    renderLocks(data);
    renderSessions(data);
    renderEvents(data);
    drawCharts();
  } else if (event === 'watch') {
    const ul = $('watch-tail');
    for (const e of data.events) {
      const v = e.value === undefined ? '' : ` ${render(bytesOf(e.value), 'text').slice(0, 200)}${e.size > 256 ? '…' : ''}`;
      ul.prepend(h('li', {}, `r${e.revision} ${e.type} ${e.path}${v}`));
    }
    if (data.skipped > 0) ul.prepend(h('li', { class: 'muted' }, `(${data.skipped} events skipped)`));
    while (ul.children.length > 500) ul.lastChild.remove();
  } else if (event === 'watch-error') {
    $('watch-state').textContent = `watch ended: ${data.message}`;
  } else if (event === 'hello') {
    $('watch-state').textContent = data.watch ? `tailing ${data.watch} from revision ${data.revision}` : '';
  }
}

$('watch-form').addEventListener('submit', (e) => {
  e.preventDefault();
  state.watchPath = $('watch-path').value.trim();
  $('watch-tail').replaceChildren();
  connectStream();
});
$('watch-stop').addEventListener('click', () => {
  state.watchPath = '';
  connectStream();
});

// ------------------------------------------------------------------ start
async function start() {
  try {
    state.me = await api('me');
  } catch (e) {
    if (e.code !== 'AUTH') $('status').textContent = e.message;
    return;
  }
  $('who').textContent = `${state.me.name}${state.me.write ? '' : ' (read-only)'}`;
  const hash = decodeURIComponent(location.hash.slice(1));
  await openDir(hash.startsWith('/') ? hash : '/');
  connectStream();
}

start();
