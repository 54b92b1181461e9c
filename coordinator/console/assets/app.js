// The Tessera operator console: one ES module, no build step. It talks to
// this coordinator only: /console/api/* (the map and the samples, over one
// SSE stream) and /v1/* (the playground), with the API key as a bearer
// token when the coordinator has one.

const $ = (sel, el = document) => el.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k != null) e.append(k.nodeType ? k : String(k));
  return e;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- API key

const KEY = 'tessera.console.key';
let apiKey = sessionStorage.getItem(KEY) || '';
let keyPrompt = null;

function headers(extra = {}) {
  const h = { ...extra };
  if (apiKey) h.Authorization = 'Bearer ' + apiKey;
  return h;
}

// askKey shows the key dialog once, however many requests were refused.
function askKey(message) {
  if (keyPrompt) return keyPrompt;
  const dlg = $('#key-dialog'), input = $('#key-input'), err = $('#key-error');
  err.hidden = !message;
  err.textContent = message || '';
  dlg.hidden = false;
  input.value = '';
  input.focus();
  keyPrompt = new Promise((resolve) => {
    $('#key-form').onsubmit = async (ev) => {
      ev.preventDefault();
      const candidate = input.value.trim();
      if (!candidate) return;
      const r = await fetch('api/state', { headers: { Authorization: 'Bearer ' + candidate } });
      if (r.status === 401) {
        err.hidden = false;
        err.textContent = 'The coordinator refused this key.';
        input.select();
        return;
      }
      apiKey = candidate;
      sessionStorage.setItem(KEY, apiKey);
      dlg.hidden = true;
      $('#h-key').hidden = false;
      keyPrompt = null;
      resolve();
    };
  });
  return keyPrompt;
}

// call fetches with the key, asking for it on 401 and trying again.
async function call(path, opts = {}) {
  for (;;) {
    const r = await fetch(path, { ...opts, headers: headers(opts.headers) });
    if (r.status !== 401) return r;
    await askKey(apiKey ? 'The key was refused; enter it again.' : '');
  }
}

// readSSE calls on(event, data) for each Server-Sent Event in body.
async function readSSE(body, on) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) on(event, data.join('\n'));
    }
  }
}

// ---------------------------------------------------------------- formats

function fmtBytes(n) {
  if (n == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + ' ' + u[i];
}
function fmtNum(v, digits = 3) {
  if (v == null || !isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
  return Number(v.toPrecision(digits)).toString();
}
function ago(ms) {
  let s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + 's ago';
  const m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m}m ${s}s ago`;
  return `${Math.floor(m / 60)}h ${m % 60}m ago`;
}
const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
const rng = (r) => `[${r[0]}, ${r[1]})`;

// ---------------------------------------------------------------- views

const views = ['cluster', 'metrics', 'playground'];
function route() {
  const v = views.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'cluster';
  for (const name of views) $('#view-' + name).hidden = name !== v;
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('on', a.dataset.view === v);
  if (v === 'metrics') charts.resize();
  $('#tip').hidden = true;
}
window.addEventListener('hashchange', route);

// ---------------------------------------------------------------- cluster map

let state = null;
let skew = 0; // coordinator clock minus ours

function renderHeader(s) {
  $('#h-cluster').textContent = s.cluster;
  $('#h-model').textContent = s.model;
  const role = $('#h-role');
  role.textContent = s.role;
  role.className = 'pill ' + (s.role === 'leader' ? 'ok' : 'warn');
  const ready = $('#h-ready');
  ready.textContent = s.ready ? `serving v${s.plan_version}` : 'not serving';
  ready.className = 'pill ' + (s.ready ? 'ok' : 'bad');
  const banner = $('#standby');
  banner.hidden = s.role === 'leader';
  banner.textContent = s.role === 'leader' ? '' :
    `This coordinator (${s.self}) is a standby` + (s.leader ? `; ${s.leader} leads the cluster.` : '; no coordinator leads right now.') +
    ' The map is read from etcd; the plots show this process, which serves no requests until it leads.';
}

function renderTiles(s, p) {
  const up = s.workers.filter((w) => w.state === 'up');
  const lost = s.workers.length - up.length;
  const idle = up.filter((w) => w.stage < 0).length;
  $('#t-workers').textContent = `${up.length} up`;
  $('#t-workers-sub').textContent = `${lost} lost · ${idle} not in the plan`;
  if (p) {
    const pp = p.stages.length, tp = Math.max(...p.stages.map((st) => st.ranks.length));
    $('#t-plan').textContent = `v${p.version}`;
    $('#t-plan-sub').textContent = `pp=${pp} tp=${tp} · ${pp * tp} ranks`;
    $('#t-model').textContent = `${s.model}`;
    const d = p.dims;
    $('#t-model-sub').textContent = `${p.model} · ${d.layers} layers · ${d.heads} heads (${d.kv_heads} kv) · vocab ${d.vocab}`;
    const total = p.stages.reduce((a, st) => a + st.ranks.reduce((b, r) => b + r.weight_bytes, 0), 0);
    $('#t-weights').textContent = fmtBytes(total);
    $('#t-weights-sub').textContent = `${p.dtype_bytes}-byte weights, all ranks`;
  }
  $('#t-leader').textContent = s.leader || 'none';
  $('#t-leader-sub').textContent = `this coordinator: ${s.self}`;
}

function slopesText(sl) {
  const f = (x) => Number(x.toPrecision(3)).toString();
  if (sl.length <= 4) return sl.map(f).join(' ');
  return `${f(sl[0])} ${f(sl[1])} … ${f(sl[sl.length - 1])} (${sl.length})`;
}

function renderPlan(s, p) {
  const grid = $('#plan-grid');
  grid.replaceChildren();
  if (!p) {
    grid.append(el('p', { class: 'empty', text: 'No plan published yet: waiting for workers.' }));
    $('#plan-title').textContent = 'Plan';
    return;
  }
  grid.dataset.version = p.version;
  $('#plan-title').textContent = `Plan v${p.version}`;
  const tp = Math.max(...p.stages.map((st) => st.ranks.length));
  // The pipeline runs left to right: stages are columns, ranks rows.
  grid.style.gridTemplateColumns = `64px repeat(${p.stages.length}, minmax(0, 1fr))`;
  grid.append(el('div'));
  for (const st of p.stages) {
    grid.append(el('div', { class: 'colh' }, el('b', { text: `stage ${st.index}` }),
      el('span', { text: ` layers ${rng(st.layers)} · ${st.layers[1] - st.layers[0]} of ${p.dims.layers}` })));
  }
  const byId = Object.fromEntries(s.workers.map((w) => [w.id, w]));
  // The ALiBi bars share one log scale across the plan.
  const all = p.stages.flatMap((st) => st.ranks.flatMap((r) => r.alibi_slopes || []));
  const lo = Math.log(Math.min(...all)), hi = Math.log(Math.max(...all));
  for (let i = 0; i < tp; i++) {
    grid.append(el('div', { class: 'rowh' }, el('b', { text: `rank ${i}` })));
    for (const st of p.stages) {
      const r = st.ranks[i];
      if (!r) { grid.append(el('div')); continue; }
      const w = byId[r.worker];
      const lost = !w || w.state === 'lost';
      const sick = w && !lost && !w.health_ok;
      const dl = el('dl', { class: 'kv' },
        el('dt', { text: 'heads' }), el('dd', { text: `${rng(r.heads)} · ${r.heads[1] - r.heads[0]}` }),
        el('dt', { text: 'kv heads' }), el('dd', { text: `${rng(r.kv_heads)} · ${r.kv_heads[1] - r.kv_heads[0]}` }),
        el('dt', { text: 'mlp' }), el('dd', { text: rng(r.mlp) }),
        el('dt', { text: 'vocab' }), el('dd', { text: rng(r.vocab) }),
        el('dt', { text: 'weights' }), el('dd', { text: fmtBytes(r.weight_bytes) }));
      let alibi = null;
      if (r.alibi_slopes && r.alibi_slopes.length) {
        dl.append(el('dt', { text: 'ALiBi' }), el('dd', { class: 'alibi', title: r.alibi_slopes.join(', '), text: slopesText(r.alibi_slopes) }));
        alibi = el('div', { class: 'slopes', title: 'ALiBi slopes of this rank\'s heads (log scale): ' + r.alibi_slopes.join(', ') },
          r.alibi_slopes.map((x) => el('i', { style: `height:${hi > lo ? 15 + 85 * (Math.log(x) - lo) / (hi - lo) : 100}%` })));
      }
      const status = lost ? 'lost' : w.health;
      const dev = w ? `${w.device} · ${fmtBytes(w.memory_bytes)}` + (lost ? '' : ` · busy ${(w.busy * 100).toFixed(0)}%`) : '';
      grid.append(el('div', { class: 'cell' + (lost ? ' lost' : sick ? ' warn' : ''), 'data-worker': r.worker, 'data-stage': st.index, 'data-rank': r.index },
        el('div', { class: 'who' }, el('span', { class: 'dot', style: `color:var(--${lost ? 'bad' : sick ? 'warn' : 'ok'})` }),
          el('b', { text: r.worker }), el('span', { class: 'h', text: status })),
        el('div', { class: 'dev', text: dev }), dl, alibi));
    }
  }
}

function leaseCell(w, now) {
  if (w.state !== 'up' || !w.lease_ttl_s) return el('span', { class: 'hint', text: '–' });
  const frac = Math.max(0, Math.min(1, w.lease_left_s / w.lease_ttl_s));
  return el('span', { title: `${w.lease_left_s}s of ${w.lease_ttl_s}s left (etcd counts whole seconds)` },
    el('span', { class: 'lease' }, el('i', { style: `width:${frac * 100}%` })),
    `renewed ${Math.max(0, w.lease_ttl_s - w.lease_left_s)}s ago · ttl ${w.lease_ttl_s}s`);
}

function renderWorkers(s, now) {
  const body = $('#workers tbody');
  body.replaceChildren(...s.workers.map((w) => {
    const up = w.state === 'up';
    const place = w.stage >= 0 ? `stage ${w.stage} · rank ${w.rank}` : up ? 'standby' : '–';
    return el('tr', { 'data-worker': w.id, 'data-state': w.state },
      el('td', { class: 'mono' }, el('b', { text: w.id })),
      el('td', { class: 'mono', text: w.address }),
      el('td', { text: w.backend === w.device ? w.device : `${w.backend} · ${w.device}` }),
      el('td', { class: 'num', text: fmtBytes(w.memory_bytes) }),
      el('td', {}, el('span', { class: 'badge ' + (up ? 'ok' : 'bad'), text: w.state })),
      el('td', {}, el('span', { class: 'badge ' + (!up ? 'bad' : w.health_ok ? 'ok' : 'warn'), text: up ? w.health : 'gone from etcd' })),
      el('td', {}, leaseCell(w, now)),
      el('td', { text: place }),
      el('td', { class: 'num', text: up ? fmtNum(w.steps_per_s) : '–' }),
      el('td', { class: 'num', text: up ? (w.busy * 100).toFixed(0) + '%' : '–' }),
      el('td', { class: 'num', text: w.weight_bytes ? fmtBytes(w.weight_bytes) : '–' }),
      el('td', { title: new Date(w.since).toLocaleString(), text: (up ? 'up ' : 'lost ') + ago(now - w.since) }));
  }));
}

function renderHistory(s) {
  $('#plans tbody').replaceChildren(...s.plans.slice().reverse().map((c) => el('tr', { 'data-version': c.version },
    el('td', { class: 'mono' }, el('b', { text: `v${c.version}` })), el('td', { class: 'mono', text: clock(c.t) }),
    el('td', { class: 'mono', text: c.shape }), el('td', { class: 'mono', text: c.workers.join(', ') }), el('td', { text: c.cause }))));
  $('#events').replaceChildren(...s.events.slice().reverse().map((e) => el('li', { 'data-kind': e.kind },
    el('time', { text: clock(e.t) }), el('span', { class: 'k ' + e.kind, text: e.kind }), el('span', { text: e.text }))));
}

function renderCluster() {
  const s = state;
  if (!s) return;
  const now = Date.now() + skew;
  const p = s.plan;
  renderHeader(s);
  renderTiles(s, p);
  renderPlan(s, p);
  renderWorkers(s, now);
  renderHistory(s);
}

// ---------------------------------------------------------------- plots

const C = { blue: '#2f6fed', red: '#d64545', violet: '#7c3aed', green: '#1f9d55', amber: '#d97706', grey: '#98a2b3', teal: '#0e9384' };
const STAGE_COLORS = [C.teal, C.violet, C.amber, C.green, C.red, '#db2777', '#4f46e5', '#65a30d'];
const CHARTS = [
  { id: 'tokens', title: 'Output tokens/s', unit: 'tok/s', series: [{ label: 'tokens/s', key: 'tokens_per_s', color: C.blue, fill: true }] },
  { id: 'requests', title: 'Requests/s', unit: 'req/s', note: 'API requests completed', series: [{ label: 'requests/s', key: 'requests_per_s', color: C.violet, fill: true }] },
  { id: 'ttft', title: 'Time to first token', unit: 'ms', series: [{ label: 'p50', key: 'ttft_p50', k: 1000, color: C.blue }, { label: 'p99', key: 'ttft_p99', k: 1000, color: C.red }] },
  { id: 'itl', title: 'Inter-token latency', unit: 'ms', series: [{ label: 'p50', key: 'itl_p50', k: 1000, color: C.blue }, { label: 'p99', key: 'itl_p99', k: 1000, color: C.red }] },
  { id: 'queue', title: 'Sequences', unit: '', note: 'waiting in the queue and running in the batch', series: [{ label: 'waiting', key: 'queue', color: C.amber, fill: true }, { label: 'running', key: 'running', color: C.blue }] },
  { id: 'kv', title: 'KV-cache blocks', unit: 'blocks', series: [{ label: 'used', key: 'kv_used', color: C.blue, fill: true }, { label: 'free', key: 'kv_free', color: C.grey }] },
  { id: 'prefix', title: 'Prefix-cache hit rate', unit: '%', pct: true, note: 'prompt tokens served from the cache, 10 s window', series: [{ label: 'hit rate', key: 'prefix_hit', k: 100, color: C.green, fill: true }] },
  { id: 'step', title: 'Step time', unit: 'ms', note: 'one step through every stage, as the coordinator waits for it', series: [{ label: 'p50', key: 'step_p50', k: 1000, color: C.blue }, { label: 'p99', key: 'step_p99', k: 1000, color: C.red }] },
  { id: 'busy', title: 'Busy time', unit: '%', pct: true, note: 'pipeline: a step in flight · stage n: its busiest rank computing (workers\' Stats)', stages: true,
    series: [{ label: 'pipeline', key: 'step_busy', k: 100, color: C.blue }] },
];

const charts = {
  samples: [],
  windowMs: 15 * 60 * 1000,
  plots: {},
  init() {
    const box = $('#charts');
    for (const c of CHARTS) {
      const node = el('div', { class: 'chart', id: 'chart-' + c.id, 'data-points': 0 },
        el('div', { class: 'ch' }, el('h3', { text: c.title }), el('span', { class: 'now', text: '–' }), el('span', { class: 'unit', text: c.unit })),
        el('div', { class: 'note', text: c.note || '' }), el('div', { class: 'keys' }), el('div', { class: 'plot' }));
      box.append(node);
      this.plots[c.id] = { def: c, node, u: null, nseries: 0 };
    }
  },
  seriesOf(c) {
    if (!c.stages) return c.series;
    const n = Math.max(0, ...this.samples.map((s) => (s.stage_busy || []).length));
    return c.series.concat(Array.from({ length: n }, (_, i) => ({ label: `stage ${i}`, stage: i, k: 100, color: STAGE_COLORS[i % STAGE_COLORS.length] })));
  },
  data(series) {
    const xs = this.samples.map((s) => s.t / 1000);
    const cols = series.map((d) => this.samples.map((s) => {
      const v = d.stage != null ? (s.stage_busy || [])[d.stage] : s[d.key];
      return v == null ? null : v * (d.k || 1);
    }));
    return [xs, ...cols];
  },
  make(p, series, data) {
    const plot = $('.plot', p.node);
    const width = plot.clientWidth || 400;
    const axis = { stroke: '#667085', grid: { stroke: '#eef1f5', width: 1 }, ticks: { stroke: '#e3e7ee', width: 1 }, font: '11px system-ui' };
    const opts = {
      width, height: 170,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: { x: { time: true }, y: { range: (u, lo, hi) => p.def.pct ? [0, 100] : [0, hi > 0 ? hi * 1.15 : 1] } },
      axes: [{ ...axis, space: 60 }, { ...axis, size: 46, values: (u, vals) => vals.map((v) => fmtNum(v)) }],
      series: [{ value: (u, v) => v == null ? '–' : clock(v * 1000) }, ...series.map((d) => ({
        label: d.label, stroke: d.color, width: 1.5, fill: d.fill ? d.color + '1f' : undefined,
        points: { show: false }, value: (u, v) => v == null ? '–' : fmtNum(v),
      }))],
    };
    p.u?.destroy();
    p.u = new uPlot(opts, data, plot);
    p.nseries = series.length;
    $('.keys', p.node).replaceChildren(...(series.length > 1 ? series : []).map((d) => el('span', {}, el('i', { style: `background:${d.color}` }), d.label)));
  },
  update() {
    for (const p of Object.values(this.plots)) {
      const series = this.seriesOf(p.def);
      const data = this.data(series);
      const first = data[1] || [];
      p.node.dataset.points = first.filter((v) => v != null && v > 0).length;
      let last = null;
      for (let i = first.length - 1; i >= 0; i--) if (first[i] != null) { last = first[i]; break; }
      $('.now', p.node).textContent = fmtNum(last);
      if (!p.u || p.nseries !== series.length) this.make(p, series, data);
      else p.u.setData(data);
    }
  },
  add(list) {
    this.samples.push(...list);
    const cut = (this.samples.at(-1)?.t || 0) - this.windowMs;
    while (this.samples.length && this.samples[0].t < cut) this.samples.shift();
    this.update();
  },
  resize() {
    for (const p of Object.values(this.plots)) {
      const w = $('.plot', p.node).clientWidth;
      if (p.u && w > 0) p.u.setSize({ width: w, height: 170 });
    }
  },
};

// ---------------------------------------------------------------- live stream

function setLive(on, text) {
  const pill = $('#h-live');
  pill.className = 'pill ' + (on ? 'ok' : 'dim');
  $('span', pill).textContent = text;
}

async function follow() {
  let backoff = 500;
  for (;;) {
    try {
      const r = await call('api/events');
      if (!r.ok) throw new Error('events: ' + r.status);
      setLive(true, 'live');
      backoff = 500;
      await readSSE(r.body, (event, data) => {
        const v = JSON.parse(data);
        if (event === 'state' && v) {
          state = v;
          skew = v.now - Date.now();
          if (v.window_ms) charts.windowMs = v.window_ms;
          renderCluster();
        } else if (event === 'history') {
          charts.samples = [];
          charts.add(v || []);
        } else if (event === 'sample') {
          charts.add([v]);
        }
      });
    } catch (e) {
      console.warn('console stream:', e);
    }
    setLive(false, 'reconnecting');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 5000);
  }
}

// ---------------------------------------------------------------- playground

const pg = {
  ctl: null,
  chat: [], // the conversation so far
  mode() { return $('#pg-form').elements.mode.value; },
  num(id) { const v = $(id).value.trim(); return v === '' ? null : Number(v); },
  params() {
    const p = { max_tokens: this.num('#pg-max'), temperature: this.num('#pg-temp'), top_p: this.num('#pg-topp') };
    const k = this.num('#pg-topk'); if (k > 0) p.top_k = k;
    const seed = this.num('#pg-seed'); if (seed != null) p.seed = seed;
    const stop = $('#pg-stop').value;
    if (stop) p.stop = stop.split(',').map((s) => s.replace(/\\n/g, '\n').replace(/\\t/g, '\t')).filter(Boolean);
    return p;
  },
  alts() { return Math.max(0, Math.min(5, this.num('#pg-alts') ?? 0)); },
  onMode() {
    const m = this.mode();
    for (const e of document.querySelectorAll('.mode-chat')) e.hidden = m !== 'chat';
    for (const e of document.querySelectorAll('.mode-consistency')) e.hidden = m !== 'consistency';
    $('#pg-prompt-label').textContent = m === 'chat' ? 'Message' : 'Prompt';
    $('#pg-run').textContent = m === 'chat' ? 'Send' : m === 'consistency' ? 'Run chains' : 'Generate';
    this.clear();
  },
  clear() {
    this.chat = [];
    $('#pg-output').replaceChildren();
    $('#pg-vote').hidden = true;
    $('#pg-error').hidden = true;
    $('#pg-stats').textContent = '';
  },
  fail(msg) {
    const e = $('#pg-error');
    e.textContent = msg;
    e.hidden = false;
  },
  busy(on) {
    $('#pg-run').disabled = on;
    $('#pg-stop-btn').disabled = !on;
  },
  async post(path, body) {
    this.ctl = new AbortController();
    const r = await call(path, { method: 'POST', signal: this.ctl.signal, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (!r.ok) {
      let msg = `${r.status} ${r.statusText}`;
      try { msg = (await r.json()).error.message || msg; } catch { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  },
  // stream reads an OpenAI SSE response, calling each(chunk) per chunk.
  async stream(r, each) {
    const out = $('#pg-output');
    out.dataset.chunks = 0;
    await readSSE(r.body, (_, data) => {
      if (data === '[DONE]') return;
      out.dataset.chunks++;
      const c = JSON.parse(data);
      if (c.error) throw new Error(c.error.message);
      each(c);
    });
  },
  async run() {
    $('#pg-error').hidden = true;
    this.busy(true);
    const t0 = performance.now();
    const stats = { n: 0, first: null, finish: '' };
    const tick = () => {
      const el = (performance.now() - t0) / 1000;
      const rate = stats.first != null && el > stats.first ? (stats.n - 1) / (el - stats.first) : null;
      $('#pg-stats').textContent = `${stats.n} tokens` + (stats.first != null ? ` · first token ${(stats.first * 1000).toFixed(0)} ms` : '') +
        (rate ? ` · ${rate.toFixed(1)} tok/s` : '') + (stats.finish ? ` · finish: ${stats.finish}` : '');
    };
    const got = (n) => { if (stats.first == null && n) stats.first = (performance.now() - t0) / 1000; stats.n += n; tick(); };
    try {
      const m = this.mode();
      if (m === 'completion') await this.completion(got, stats);
      else if (m === 'chat') await this.chatTurn(got, stats);
      else await this.consistency(stats);
    } catch (e) {
      if (e.name !== 'AbortError') this.fail(e.message);
    } finally {
      tick();
      this.busy(false);
    }
  },
  async completion(got, stats) {
    const prompt = $('#pg-prompt').value;
    const out = $('#pg-output');
    out.replaceChildren(el('span', { class: 'prompt', text: prompt }));
    $('#pg-title').textContent = 'Output';
    const r = await this.post('/v1/completions', { prompt, stream: true, logprobs: this.alts(), ...this.params() });
    await this.stream(r, (c) => {
      const ch = c.choices?.[0];
      if (!ch) return;
      const lp = ch.logprobs;
      if (lp) {
        lp.tokens.forEach((t, i) => out.append(tokSpan(t, lp.token_logprobs[i], lp.top_logprobs[i])));
        got(lp.tokens.length);
      } else if (ch.text) out.append(ch.text);
      if (ch.finish_reason) stats.finish = ch.finish_reason;
    });
  },
  async chatTurn(got, stats) {
    const text = $('#pg-prompt').value.trim();
    if (!text) return;
    this.chat.push({ role: 'user', content: text });
    $('#pg-prompt').value = '';
    $('#pg-title').textContent = 'Conversation';
    const out = $('#pg-output');
    out.append(el('div', { class: 'msg user' }, el('div', { class: 'role', text: 'user' }), el('div', { class: 'body', text: text })));
    const body = el('div', { class: 'body' });
    out.append(el('div', { class: 'msg assistant' }, el('div', { class: 'role', text: 'assistant' }), body));
    const sys = $('#pg-system').value.trim();
    const messages = (sys ? [{ role: 'system', content: sys }] : []).concat(this.chat);
    const alts = this.alts();
    const req = { messages, stream: true, logprobs: true, ...this.params() };
    if (alts) req.top_logprobs = alts;
    const r = await this.post('/v1/chat/completions', req);
    let reply = '';
    await this.stream(r, (c) => {
      const ch = c.choices?.[0];
      if (!ch) return;
      reply += ch.delta?.content || '';
      const lp = ch.logprobs?.content;
      if (lp) {
        for (const t of lp) body.append(tokSpan(t.token, t.logprob, Object.fromEntries((t.top_logprobs || []).map((a) => [a.token, a.logprob]))));
        got(lp.length);
      } else if (ch.delta?.content) body.append(ch.delta.content);
      if (ch.finish_reason) stats.finish = ch.finish_reason;
    });
    this.chat.push({ role: 'assistant', content: reply });
  },
  async consistency(stats) {
    const prompt = $('#pg-prompt').value;
    const k = this.num('#pg-k') || 5;
    $('#pg-title').textContent = `${k} chains`;
    const out = $('#pg-output');
    out.replaceChildren(el('span', { class: 'hint', text: `Running ${k} chains…` }));
    const r = await this.post('/v1/completions', { prompt, logprobs: this.alts(), ...this.params(),
      self_consistency: { samples: k, answer_pattern: $('#pg-pattern').value } });
    const res = await r.json();
    const sc = res.self_consistency;
    stats.n = res.usage?.completion_tokens || 0;
    stats.finish = 'vote';
    const vote = $('#pg-vote');
    const counts = Object.entries(sc.votes).sort((a, b) => b[1] - a[1]);
    const voted = counts.reduce((a, [, n]) => a + n, 0);
    vote.replaceChildren(el('div', { class: 'answer' }, 'Majority answer: ', el('b', { class: 'mono', text: sc.answer ?? 'none' }),
      el('span', { class: 'hint', text: ` · ${sc.answer != null ? sc.votes[sc.answer] : 0} of ${sc.samples} chains (${sc.samples - voted} without an answer)` })),
    ...counts.map(([a, n]) => el('div', { class: 'bar' + (a === sc.answer ? ' win' : '') }, el('b', { text: a }),
      el('div', { class: 'track' }, el('div', { class: 'fill', style: `width:${100 * n / sc.samples}%` })), el('span', { text: `${n}` }))));
    vote.hidden = false;
    out.replaceChildren(el('div', { class: 'chains' }, sc.chains.map((c, i) => {
      const box = el('div', { class: 'output' });
      const lp = res.choices[i]?.logprobs;
      if (lp) lp.tokens.forEach((t, j) => box.append(tokSpan(t, lp.token_logprobs[j], lp.top_logprobs[j])));
      else box.append(c.text);
      return el('div', { class: 'chain' + (c.answer != null && c.answer === sc.answer ? ' win' : ''), 'data-answer': c.answer ?? '' },
        el('div', { class: 'ch' }, el('b', { text: `chain ${i}` }), el('span', { class: 'badge ' + (c.answer != null ? 'ok' : ''), text: c.answer != null ? `answer: ${c.answer}` : 'no answer' }),
          el('span', { text: c.finish_reason })), box);
    })));
  },
};

// shade maps a probability to a hue from red (unlikely) to green (sure).
function shade(p) {
  return `hsla(${Math.round(120 * p)}, 80%, 48%, ${(0.14 + 0.34 * (1 - p)).toFixed(2)})`;
}

function tokSpan(text, logprob, top) {
  const s = el('span', { class: 'tok', text });
  if (logprob != null) {
    s.style.background = shade(Math.exp(logprob));
    s.dataset.p = Math.exp(logprob).toFixed(4);
  }
  s._tok = { text, logprob, top: top || {} };
  return s;
}

const visible = (t) => t.replace(/ /g, '␣').replace(/\n/g, '⏎').replace(/\t/g, '⇥') || '∅';

function showTip(ev) {
  const t = ev.target.closest?.('.tok')?._tok;
  const tip = $('#tip');
  if (!t) { tip.hidden = true; return; }
  const alts = Object.entries(t.top).sort((a, b) => b[1] - a[1]);
  const top = alts.length ? Math.exp(alts[0][1]) : 1;
  const p = t.logprob != null ? Math.exp(t.logprob) : null;
  tip.replaceChildren(el('div', { class: 't', text: visible(t.text) }),
    el('div', { class: 'p', text: p != null ? `p = ${(100 * p).toFixed(1)}% · logprob ${t.logprob.toFixed(3)}` : 'no logprob' }),
    alts.length ? el('table', {}, alts.map(([a, lp]) => el('tr', { class: a === t.text ? 'chosen' : '' },
      el('td', { text: visible(a) }), el('td', { class: 'pct', text: (100 * Math.exp(lp)).toFixed(1) + '%' }),
      el('td', { class: 'b' }, el('i', { style: `width:${100 * Math.exp(lp) / top}%` }))))) : null);
  tip.hidden = false;
  const x = Math.min(ev.clientX + 14, innerWidth - tip.offsetWidth - 8);
  const y = ev.clientY + 18 + tip.offsetHeight > innerHeight ? ev.clientY - tip.offsetHeight - 10 : ev.clientY + 18;
  tip.style.left = x + 'px';
  tip.style.top = y + 'px';
}

// ---------------------------------------------------------------- start

function start() {
  charts.init();
  route();
  $('#h-key').hidden = !apiKey;
  $('#h-key').onclick = () => { sessionStorage.removeItem(KEY); location.reload(); };
  $('#pg-form').onsubmit = (ev) => { ev.preventDefault(); pg.run(); };
  $('#pg-stop-btn').onclick = () => pg.ctl?.abort();
  $('#pg-clear').onclick = () => pg.clear();
  for (const r of document.querySelectorAll('#pg-mode input')) r.onchange = () => pg.onMode();
  document.addEventListener('mousemove', showTip);
  new ResizeObserver(() => charts.resize()).observe($('#charts'));
  setInterval(() => state && renderWorkers(state, Date.now() + skew), 1000); // ages between updates
  follow();
}
start();
