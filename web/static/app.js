// app.js - traind-web's pages: the job table (/), a job (/jobs/N) and the
// compare view (/compare). Data from the JSON API (/api/...), live updates
// from the job's Server-Sent Events (/api/jobs/N/events), charts by uPlot.
// The token travels in the HttpOnly cookie set by /?token=...; control
// requests add the header X-Traind-Control: 1, which traind-web requires.
//
// What the pages promise (tests/web/browser.cjs checks them in Chromium at
// 1280x800): nothing wider than the window (a long model spec is cut, the
// whole of it on hover); charts as wide as their box, redrawn when the
// window changes; epoch axes with whole-number ticks and every axis with
// labels that differ from their neighbours; on each job only the buttons its
// state allows (ACTIONS), kill and delete asked for confirmation; the loss
// by step read back from traind (/api/jobs/N/steps), so it is there after a
// reload and for a finished job; compare: the jobs' settings and results
// side by side with the rows that differ marked, train and validation
// curves together, smoothing, a log scale, CSV and PNG downloads.
// window.traindCharts holds the uPlot instances (the tests read their data).
// The sweep page (/sweeps/N): its trials in a table sortable by any column,
// a parallel-coordinates chart and a scatter per parameter against the
// metric (SVG), every trial's validation loss overlaid (uPlot); polled
// while the sweep runs. window.traindSweep says what it drew.
'use strict';

const POLL_MS = 2000;
const COLORS = ['#1e88e5', '#e53935', '#43a047', '#8e24aa', '#fb8c00', '#00897b', '#6d4c41', '#3949ab'];
// Whole-number tick steps for epoch axes (uPlot picks the first that leaves room).
const EPOCH_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
// The buttons a job in each state gets: what traind accepts in that state.
const ACTIONS = {
  queued: ['pause', 'kill'], running: ['pause', 'kill'],
  paused: ['resume', 'delete'], killed: ['resume', 'delete'], failed: ['resume', 'delete'], done: ['delete'],
};
const CONFIRM = {
  kill: id => 'Kill job ' + id + ' now? It stops at once; what it has committed stays, and resume goes on from there.',
  delete: id => 'Delete job ' + id + ' with all its checkpoints and history? This cannot be undone.',
};
window.traindCharts = {};

function $(sel) { return document.querySelector(sel); }

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '' : String(c)));
  return e;
}

// #msg: what polling found wrong; #action: the outcome of the last button.
function say(text, ok, where) {
  const m = $(where || '#msg');
  if (!m) return;
  m.textContent = text || '';
  m.className = ok ? 'ok' : '';
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: 'same-origin' }, opts || {}));
  let body = null;
  const type = r.headers.get('Content-Type') || '';
  if (type.startsWith('application/json')) body = await r.json();
  if (!r.ok) {
    const msg = body && body.message ? body.message : r.status + ' ' + r.statusText;
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return body;
}

function control(path, body) {
  return api(path, {
    method: 'POST',
    headers: { 'X-Traind-Control': '1', 'Content-Type': 'application/json' },
    body: body === undefined ? '' : JSON.stringify(body),
  });
}

// A button's action on a job, after asking when it cannot be undone.
// Resolves to whether it was done.
async function act(id, what) {
  if (CONFIRM[what] && !window.confirm(CONFIRM[what](id))) {
    say(what + ' job ' + id + ': not done', true, '#action');
    return false;
  }
  say(what + ' job ' + id + '...', true, '#action');
  try {
    const r = await control('/api/jobs/' + id + '/' + what);
    say(what === 'delete' ? 'job ' + id + ' is deleted' : 'job ' + id + ' is ' + r.state, true, '#action');
    return true;
  } catch (e) {
    say(what + ' job ' + id + ': ' + e.message + (e.status ? ' (' + e.status + ')' : ''), false, '#action');
    return false;
  }
}

// Four significant digits, as people write a loss: 0.9812, 1.447, 0.0003.
function fmt(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return '';
  if (typeof x !== 'number') return String(x);
  return String(Number(x.toPrecision(digits || 4)));
}

function span(s) {
  if (s === null || s === undefined || !isFinite(s)) return '';
  if (s < 10) return fmt(s, 2) + 's';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + 'h' : '') + (h || m ? m + 'm' : '') + r + 's';
}

function when(t) {
  return t ? new Date(t * 1000).toLocaleString() : '';
}

// Tick labels that say their values: the fewest decimals that write every
// tick exactly (0.5, 1, 1.5; 0.0002, 0.0004), so neighbours always differ
// and none is rounded to another's label (no "0.002, 0.002, 0.001", no
// "2" for 1.5); tiny values in exponent form (1e-7).
function tickLabels(splits) {
  const vals = splits.filter(v => v !== null && v !== undefined);
  for (let d = 0; d <= 15; d++) {
    if (vals.every(v => Math.abs(Number(v.toFixed(d)) - v) <= Math.abs(v) * 1e-9)) {
      return splits.map(v => (v === null || v === undefined) ? '' :
        (d > 6 && v !== 0 ? String(Number(v.toPrecision(6))) : String(Number(v.toFixed(d)))));
    }
  }
  return splits.map(v => (v === null || v === undefined) ? '' : String(Number(v.toPrecision(6))));
}

function progressBar(job) {
  const done = job.committed_epoch + (job.state === 'running' && job.steps_per_epoch ?
    job.step / job.steps_per_epoch : 0);
  const pct = job.epochs ? Math.min(100, 100 * done / job.epochs) : 0;
  const bar = el('div', { class: 'progress', title: pct.toFixed(1) + '%' }, el('div'));
  bar.firstChild.style.width = pct + '%';
  return bar;
}

function best(rows, key, lower) {
  let b = null;
  for (const r of rows) {
    const v = r[key];
    if (typeof v === 'number' && (b === null || (lower ? v < b : v > b))) b = v;
  }
  return b;
}

// What the table shows of a model: the spec as given (or the MLP of hidden).
function modelName(job) {
  return job.config.model || ('mlp ' + (job.config.hidden || []).join(','));
}

// ---- charts ----

const chartBoxes = new Map();   // target element -> chart name
const resizer = typeof ResizeObserver === 'function' ? new ResizeObserver(entries => {
  for (const e of entries) {
    const u = window.traindCharts[chartBoxes.get(e.target)];
    const w = Math.floor(e.contentRect.width);
    if (u && w > 0 && Math.abs(u.width - w) > 1) u.setSize({ width: w, height: u.height });
  }
}) : null;

// A uPlot chart `name` in `target`, as wide as the target. series: uPlot
// series options (label, stroke, dash...); x: whole epochs when epochAxis.
function chart(name, target, title, xLabel, series, data, opts) {
  opts = opts || {};
  const width = Math.max(280, Math.floor(target.clientWidth) || 560);
  const xAxis = { label: xLabel, values: (u, splits) => tickLabels(splits) };
  if (opts.epochAxis) xAxis.incrs = EPOCH_INCRS;
  const yScale = opts.log ? { distr: 3 } : {};
  const u = new uPlot({
    title, width, height: opts.height || 240,
    scales: { x: { time: false }, y: yScale },
    axes: [xAxis, { values: (u, splits) => tickLabels(splits), size: 64 }],
    series: [{ label: xLabel, value: (u, v) => fmt(v) }].concat(series.map((s, i) => Object.assign({
      stroke: COLORS[i % COLORS.length], width: 2, points: { show: true, size: 5 }, spanGaps: true,
      value: (u, v) => fmt(v),
    }, s))),
  }, data, (() => {
    if (window.traindCharts[name]) window.traindCharts[name].destroy();
    target.replaceChildren();
    return target;
  })());
  window.traindCharts[name] = u;
  chartBoxes.set(target, name);
  if (resizer) resizer.observe(target);
  return u;
}

// ---- the job table ----

const bestCache = {};   // id -> {epoch, acc, loss}: history read again only when an epoch commits

async function bestOf(job) {
  const c = bestCache[job.id];
  if (c && c.epoch === job.committed_epoch) return c;
  const h = await api('/api/jobs/' + job.id + '/history');
  const v = { epoch: job.committed_epoch, acc: best(h.rows, 'val_acc', false), loss: best(h.rows, 'val_loss', true) };
  bestCache[job.id] = v;
  return v;
}

function actionButtons(job, after) {
  return (ACTIONS[job.state] || []).map(what => el('button', {
    type: 'button', class: what === 'kill' || what === 'delete' ? 'danger' : '', 'data-action': what,
    onclick: () => act(job.id, what).then(after),
  }, what));
}

async function refreshTable() {
  let list;
  try {
    list = await api('/api/jobs');
  } catch (e) {
    say('cannot list the jobs: ' + e.message);
    return;
  }
  say('', true);
  const tbody = $('#jobs tbody');
  const chosen = new Set([...document.querySelectorAll('#jobs input:checked')].map(i => i.value));
  const rows = [];
  for (const j of list.jobs) {
    let b = { acc: null, loss: null };
    try { b = await bestOf(j); } catch (e) { /* shown as empty */ }
    const box = el('input', { type: 'checkbox', value: String(j.id), 'aria-label': 'choose job ' + j.id });
    box.checked = chosen.has(String(j.id));
    const model = modelName(j);
    const tr = el('tr', { 'data-job': String(j.id), 'data-state': j.state },
      el('td', {}, box),
      el('td', {}, el('a', { href: '/jobs/' + j.id }, j.id)),
      el('td', { class: 'name', title: j.name }, j.name),
      el('td', { class: 'state state-' + j.state }, j.state),
      el('td', { class: 'cut model', title: j.model || model }, model),
      el('td', { class: 'cut' }, j.config.dataset),
      el('td', {}, progressBar(j), ' ' + j.committed_epoch + '/' + j.epochs),
      el('td', { class: 'num' }, j.state === 'running' ? fmt(j.samples_per_second, 3) : ''),
      el('td', { class: 'num' }, j.state === 'running' ? span(j.eta_seconds) : ''),
      el('td', { class: 'num' }, fmt(b.acc)),
      el('td', { class: 'num' }, fmt(b.loss)),
      el('td', { class: 'actions' }, ...actionButtons(j, refreshTable)));
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
}

function startForm() {
  $('#start').addEventListener('submit', async ev => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const config = {};
    for (const k of ['dataset', 'model', 'optimizer']) if (f.get(k)) config[k] = f.get(k);
    for (const k of ['epochs', 'batch_size', 'train_size', 'seed']) if (f.get(k)) config[k] = parseInt(f.get(k), 10);
    if (f.get('lr')) config.lr = parseFloat(f.get('lr'));
    if (f.get('hidden')) config.hidden = f.get('hidden').split(',').map(s => parseInt(s, 10));
    const body = { config };
    if (f.get('name')) body.name = f.get('name');
    try {
      const r = await control('/api/jobs', body);
      say('started job ' + r.id, true, '#action');
      refreshTable();
    } catch (e) {
      say('start: ' + e.message, false, '#action');
    }
  });
  $('#compare-chosen').addEventListener('click', () => {
    const ids = [...document.querySelectorAll('#jobs input:checked')].map(i => i.value);
    location.href = '/compare' + (ids.length ? '?jobs=' + ids.join(',') : '');
  });
}

// ---- one job ----

function jobId() {
  const m = location.pathname.match(/^\/jobs\/(\d+)$/);
  return m ? parseInt(m[1], 10) : null;
}

const jobPage = {
  id: null, epoch: -1, steps: [[], []], events: null, state: null,
};

// The job's task, from its loss (config key "loss") and its rows: its
// metrics follow it. A language model's rows have val_ppl (per-token).
function taskOf(job, rows) {
  const loss = job.config.loss || 'cross_entropy';
  if (loss === 'cross_entropy') {
    if ((rows || []).some(r => typeof r.val_ppl === 'number') || job.config.context > 0) return 'per-token';
    return 'classification';
  }
  return loss === 'bce_with_logits' ? 'multi-label' : 'regression';
}

// The history table's columns for a task: [heading, key, digits].
function historyColumns(task) {
  const metrics = task === 'regression'
    ? [['val MAE', 'val_mae', 4], ['val RMSE', 'val_rmse', 4]]
    : task === 'per-token'
      ? [['train acc', 'train_acc', 4], ['val acc', 'val_acc', 4], ['val ppl', 'val_ppl', 4]]
      : [['train acc', 'train_acc', 4], ['val acc', 'val_acc', 4]];
  return [['train loss', 'train_loss', 4], ['val loss', 'val_loss', 4]].concat(metrics);
}

// A language model's text, from the form's prompt (a new line by default).
async function sampleText() {
  const f = $('#sample-form'), out = $('#sample');
  const q = new URLSearchParams({ prompt: f.prompt.value || '\n', tokens: f.tokens.value || '200',
    temperature: f.temperature.value || '0.8', seed: f.seed.value || '1' });
  out.textContent = 'sampling…';
  try {
    const r = await api('/api/jobs/' + jobPage.id + '/sample?' + q.toString());
    out.textContent = r.text;
    out.dataset.epoch = r.epoch;
  } catch (e) {
    out.textContent = e.message;
  }
}

function drawEpochCharts(rows, task) {
  const x = rows.map(r => r.epoch);
  chart('loss', $('#chart-loss'), 'loss', 'epoch', [{ label: 'train loss' }, { label: 'val loss', dash: [6, 4] }],
    [x, rows.map(r => r.train_loss), rows.map(r => r.val_loss)], { epochAxis: true });
  if (task === 'regression') {
    $('#metric-title').textContent = 'Validation error by epoch';
    chart('acc', $('#chart-acc'), 'error', 'epoch', [{ label: 'val MAE' }, { label: 'val RMSE', dash: [6, 4] }],
      [x, rows.map(r => r.val_mae), rows.map(r => r.val_rmse)], { epochAxis: true });
  } else {
    $('#metric-title').textContent = task === 'multi-label' ? 'Per-label accuracy by epoch'
      : task === 'per-token' ? 'Per-token accuracy by epoch' : 'Accuracy by epoch';
    chart('acc', $('#chart-acc'), 'accuracy', 'epoch', [{ label: 'train acc' }, { label: 'val acc', dash: [6, 4] }],
      [x, rows.map(r => r.train_acc), rows.map(r => r.val_acc)], { epochAxis: true });
  }
  if (task === 'per-token') {
    $('#ppl-box').hidden = false;
    chart('ppl', $('#chart-ppl'), 'perplexity', 'epoch', [{ label: 'val perplexity' }],
      [x, rows.map(r => r.val_ppl)], { epochAxis: true });
  }
  if (rows.some(r => typeof r.lr === 'number')) {
    $('#lr-box').hidden = false;
    chart('lr', $('#chart-lr'), 'learning rate', 'epoch', [{ label: 'lr' }], [x, rows.map(r => r.lr)],
      { epochAxis: true });
  }
}

function drawSteps() {
  const u = window.traindCharts.steps;
  if (u) u.setData(jobPage.steps);
  else chart('steps', $('#chart-steps'), 'running loss', 'epoch',
    [{ label: 'loss', points: { show: false } }], jobPage.steps, { epochAxis: true });
}

// The stored step series, with the live points of this page after it.
async function loadSteps() {
  let s;
  try { s = await api('/api/jobs/' + jobPage.id + '/steps'); } catch (e) { return; }
  const spe = s.steps_per_epoch || 1;
  const stored = s.points.map(p => [p.epoch + p.step / spe, p.loss]);
  const last = stored.length ? stored[stored.length - 1][0] : -1;
  const live = jobPage.steps[0].map((x, i) => [x, jobPage.steps[1][i]]).filter(p => p[0] > last);
  const all = stored.concat(live);
  jobPage.steps = [all.map(p => p[0]), all.map(p => p[1])];
  drawSteps();
}

function showButtons(state) {
  const allowed = ACTIONS[state] || [];
  for (const what of ['pause', 'resume', 'kill', 'delete']) $('#' + what).hidden = !allowed.includes(what);
}

async function refreshJob() {
  const id = jobPage.id;
  let job;
  try {
    job = (await api('/api/jobs/' + id)).job;
  } catch (e) {
    say('job ' + id + ': ' + e.message);
    if (e.status === 404) showButtons(null);
    return;
  }
  say('', true);
  jobPage.state = job.state;
  showButtons(job.state);
  document.title = 'traind: job ' + id + ' ' + job.name;
  $('#title').textContent = 'Job ' + id + ': ' + job.name;
  $('#summary').replaceChildren(el('span', { class: 'state state-' + job.state, id: 'state' }, job.state),
    ' · epoch ' + job.committed_epoch + '/' + job.epochs + ' · ', el('span', { class: 'spec', title: job.model || '' },
      modelName(job)), ' on ' + job.config.dataset + (job.error ? ' · ' + job.error : ''));
  const end = job.finished || (job.state === 'paused' ? job.updated : Date.now() / 1000);
  $('#times').textContent = job.started ? 'started ' + when(job.started) +
    (job.finished ? ' · finished ' + when(job.finished) : '') + ' · ' + span(end - job.started) +
    (job.finished ? '' : ' so far') : 'not started yet';
  const pct = job.epochs ? 100 * job.committed_epoch / job.epochs : 0;
  $('#bar').style.width = pct + '%';
  $('#config').textContent = JSON.stringify(job.config, null, 2) + '\nmodel: ' + job.model;
  if (job.committed_epoch !== jobPage.epoch) {
    jobPage.epoch = job.committed_epoch;
    const [h, c] = await Promise.all([api('/api/jobs/' + id + '/history'), api('/api/jobs/' + id + '/checkpoints')]);
    const task = taskOf(job, h.rows), cols = historyColumns(task);
    drawEpochCharts(h.rows, task);
    // a language model with a committed epoch: a sample of its text
    if (task === 'per-token' && job.committed_epoch > 0) {
      const first = $('#sample-box').hidden;
      $('#sample-box').hidden = false;
      if (first || $('#sample').dataset.epoch !== String(job.committed_epoch)) sampleText();
    }
    loadSteps();
    $('#history thead').replaceChildren(el('tr', {}, el('th', {}, 'epoch'),
      ...cols.map(c => el('th', { class: 'num' }, c[0])),
      el('th', { class: 'num' }, 'lr'), el('th', { class: 'num' }, 'seconds'), el('th', {}, 'note')));
    $('#history tbody').replaceChildren(...h.rows.map(r => el('tr', {},
      el('td', {}, r.epoch), ...cols.map(c => el('td', { class: 'num' }, fmt(r[c[1]], c[2]))),
      el('td', { class: 'num' }, fmt(r.lr)), el('td', { class: 'num' }, span(r.seconds)), el('td', {}, r.note))));
    $('#checkpoints tbody').replaceChildren(...c.checkpoints.map(k => el('tr', {},
      el('td', {}, k.epoch), el('td', {}, k.step), el('td', {}, k.kind), el('td', { class: 'num' }, k.size),
      el('td', { class: 'num' }, fmt(k.val_loss)), el('td', {}, new Date(k.created * 1000).toLocaleString()),
      el('td', { title: k.checksum }, k.checksum.slice(0, 19) + '…'),
      el('td', {}, k.kind === 'epoch' ? el('a', { href: '/api/jobs/' + id + '/export?epoch=' + k.epoch,
        download: 'job-' + id + '-epoch-' + k.epoch + '.safetensors' }, 'download') : ''))));
  }
  if ((job.state === 'running' || job.state === 'queued') && !jobPage.events) openEvents();
}

function openEvents() {
  const es = new EventSource('/api/jobs/' + jobPage.id + '/events');
  jobPage.events = es;
  es.addEventListener('progress', ev => {
    const p = JSON.parse(ev.data);
    $('#live').textContent = p.state + ': epoch ' + (p.state === 'running' ? p.epoch + 1 : p.epoch) + ' step ' + p.step + '/' + p.steps_per_epoch +
      (typeof p.loss === 'number' ? ' · loss ' + fmt(p.loss) : '') +
      ' · ' + Math.round(p.samples_per_second) + ' samples/s' + (p.eta_seconds != null ? ' · ETA ' + span(p.eta_seconds) : '');
    if (typeof p.loss === 'number' && p.steps_per_epoch && p.step > 0) {
      const x = p.epoch + p.step / p.steps_per_epoch;
      const xs = jobPage.steps[0];
      if (!xs.length || x > xs[xs.length - 1]) {
        xs.push(x);
        jobPage.steps[1].push(p.loss);
        drawSteps();
      }
    }
  });
  es.addEventListener('end', () => {
    // Watch ended: the job stopped training. Polling notices a resume.
    es.close();
    jobPage.events = null;
    refreshJob();
  });
  es.addEventListener('error', ev => {
    if (ev.data) {   // traind's error event (no such job...)
      try { say(JSON.parse(ev.data).message); } catch (e) { /* not ours */ }
      es.close();
      jobPage.events = null;
    } else if (es.readyState === EventSource.CLOSED) {
      jobPage.events = null;   // refused outright; polling opens it again
    }
    // otherwise the browser reconnects by itself (retry: 3000)
  });
}

function initJob() {
  jobPage.id = jobId();
  for (const what of ['pause', 'resume', 'kill', 'delete']) {
    $('#' + what).addEventListener('click', async () => {
      const done = await act(jobPage.id, what);
      if (done && what === 'delete') {
        location.href = '/';
        return;
      }
      refreshJob();
    });
  }
  $('#sample-form').addEventListener('submit', ev => { ev.preventDefault(); sampleText(); });
  drawSteps();
  loadSteps();
  refreshJob();
  setInterval(refreshJob, POLL_MS);
}

// ---- compare ----

const compare = { jobs: [], hist: [] };

// Exponential moving average as TensorBoard's smoothing, debiased; null stays null.
function smooth(ys, w) {
  if (!w) return ys;
  let acc = 0, n = 0;
  return ys.map(y => {
    if (typeof y !== 'number') return null;
    acc = w * acc + (1 - w) * y;
    n++;
    return acc / (1 - Math.pow(w, n));
  });
}

const METRIC_KEYS = {
  loss: ['train_loss', 'val_loss'], acc: ['train_acc', 'val_acc'], macro_acc: ['train_macro_acc', 'val_macro_acc'],
  lr: ['lr'], val_mae: ['val_mae'], val_rmse: ['val_rmse'], val_ppl: ['val_ppl'],
};

// [x, then a series per job and key] of metric m, raw.
function compareData(m) {
  const keys = METRIC_KEYS[m] || METRIC_KEYS.loss;
  const maxEpoch = Math.max(0, ...compare.hist.map(h => h.length ? h[h.length - 1].epoch : 0));
  const x = Array.from({ length: maxEpoch }, (_, i) => i + 1);
  const cols = [], series = [];
  compare.jobs.forEach((j, i) => {
    const by = new Map(compare.hist[i].map(r => [r.epoch, r]));
    for (const k of keys) {
      cols.push(x.map(e => (by.get(e) && typeof by.get(e)[k] === 'number') ? by.get(e)[k] : null));
      series.push({ job: j, key: k, color: COLORS[i % COLORS.length], dash: k.startsWith('val_') });
    }
  });
  return { x, cols, series };
}

function drawCompare() {
  const f = $('#view');
  const m = f.metric.value, w = parseFloat(f.smooth.value) || 0, log = f.log.checked;
  f.smooth_out.value = w;
  const d = compareData(m);
  const params = new URLSearchParams(location.search);
  params.set('metric', m);
  params.set('smooth', w);
  if (log) params.set('log', '1'); else params.delete('log');
  history.replaceState(null, '', '?' + params.toString());
  if (!compare.jobs.length) return;
  // a log scale shows only positive values
  const cols = d.cols.map(c => smooth(c, w).map(v => (log && !(v > 0)) ? null : v));
  chart('compare', $('#chart-compare'), f.metric.selectedOptions[0].textContent, 'epoch',
    d.series.map(s => ({ label: s.job.id + ' ' + s.job.name + ' ' + s.key.split('_')[0], stroke: s.color,
      dash: s.dash ? [6, 4] : undefined })), [d.x].concat(cols), { epochAxis: true, log, height: 360 });
}

function csvField(v) {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function download(name, blob) {
  const a = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

function compareCSV() {
  const m = $('#view').metric.value;
  const d = compareData(m);
  const head = ['epoch'].concat(d.series.map(s => 'job ' + s.job.id + ' ' + s.key));
  const lines = [head.map(csvField).join(',')];
  d.x.forEach((e, i) => lines.push([e].concat(d.cols.map(c => c[i])).map(csvField).join(',')));
  return lines.join('\n') + '\n';
}

// The settings and results of the chosen jobs, a column each; the rows
// whose values differ are marked (and the others can be hidden).
function paramsTable() {
  const jobs = compare.jobs, hist = compare.hist;
  const results = [
    ['epochs', (j, h) => j.committed_epoch + '/' + j.epochs],
    ['state', j => j.state],
    ['final train loss', (j, h) => h.length ? fmt(h[h.length - 1].train_loss) : ''],
    ['final val loss', (j, h) => h.length ? fmt(h[h.length - 1].val_loss) : ''],
    ['final train acc', (j, h) => h.length ? fmt(h[h.length - 1].train_acc) : ''],
    ['final val acc', (j, h) => h.length ? fmt(h[h.length - 1].val_acc) : ''],
    ['best val loss', (j, h) => { const b = best(h, 'val_loss', true); return b === null ? '' : fmt(b) + ' (epoch ' + h.find(r => r.val_loss === b).epoch + ')'; }],
    ['best val acc', (j, h) => fmt(best(h, 'val_acc', false))],
    ['training time', (j, h) => span(h.reduce((a, r) => a + (r.seconds || 0), 0))],
    ['parameters', j => j.params || ''],
  ];
  const keys = [];
  for (const j of jobs) for (const k of Object.keys(j.config)) if (!keys.includes(k)) keys.push(k);
  const settings = [['model (layers)', j => j.model || '']].concat(keys.map(k => [k, j => {
    const v = j.config[k];
    return Array.isArray(v) ? v.join(',') : (typeof v === 'number' ? String(v) : (v === undefined ? '' : String(v)));
  }]));
  $('#params thead').replaceChildren(el('tr', {}, el('th', {}, ''), ...jobs.map((j, i) =>
    el('th', { title: j.name, style: 'border-top: 3px solid ' + COLORS[i % COLORS.length] }, j.id + ' ' + j.name))));
  const rows = [];
  for (const [title, list] of [['results', results], ['settings', settings]]) {
    rows.push(el('tr', { class: 'section' }, el('th', { colspan: String(jobs.length + 1) }, title)));
    for (const [name, fn] of list) {
      const vals = jobs.map((j, i) => String(fn(j, hist[i])));
      const differ = new Set(vals).size > 1;
      rows.push(el('tr', { class: differ ? 'diff' : 'same', 'data-key': name },
        el('th', {}, name), ...vals.map(v => el('td', { title: v }, v))));
    }
  }
  $('#params tbody').replaceChildren(...rows);
}

async function initCompare() {
  const params = new URLSearchParams(location.search);
  const chosen = new Set((params.get('jobs') || '').split(',').filter(Boolean));
  const f = $('#view');
  if (params.get('metric') && METRIC_KEYS[params.get('metric')]) f.metric.value = params.get('metric');
  if (params.get('smooth')) f.smooth.value = params.get('smooth');
  f.log.checked = params.get('log') === '1';
  let list;
  try { list = await api('/api/jobs'); } catch (e) { say(e.message); return; }
  $('#choices').replaceChildren(...list.jobs.map(j => {
    const box = el('input', { type: 'checkbox', name: 'job', value: String(j.id) });
    box.checked = chosen.has(String(j.id));
    return el('label', { title: j.model || '' }, box, ' ' + j.id + ' ' + j.name);
  }));
  $('#choose').addEventListener('submit', ev => {
    ev.preventDefault();
    const ids = [...document.querySelectorAll('#choices input:checked')].map(i => i.value);
    const p = new URLSearchParams(location.search);
    p.set('jobs', ids.join(','));
    location.search = '?' + p.toString();
  });
  f.addEventListener('input', drawCompare);
  f.addEventListener('change', drawCompare);
  $('#only-diff').addEventListener('change', ev => $('#params').classList.toggle('only-diff', ev.target.checked));
  $('#csv').addEventListener('click', () => download('traind-compare.csv', new Blob([compareCSV()], { type: 'text/csv' })));
  $('#png').addEventListener('click', () => {
    const u = window.traindCharts.compare;
    if (u) u.ctx.canvas.toBlob(b => download('traind-compare.png', b), 'image/png');
  });
  compare.jobs = list.jobs.filter(j => chosen.has(String(j.id)));
  compare.hist = (await Promise.all(compare.jobs.map(j => api('/api/jobs/' + j.id + '/history')))).map(h => h.rows);
  if (!compare.jobs.length) {
    say('choose jobs above to compare them', true);
    return;
  }
  paramsTable();
  drawCompare();
}


// ---- a sweep ----

const sweepView = { sweep: null, sortKey: 'trial', sortDir: 1, hist: {}, timer: null };

function sweepId() {
  const m = location.pathname.match(/^\/sweeps\/(\d+)$/);
  return m ? parseInt(m[1], 10) : null;
}

// The parameters' names, in the order of the sweep's spec.
function sweepParams(s) {
  return s.params.map(p => p.slice(0, p.indexOf('=')));
}

// A value on a numeric axis: numbers as they are, anything else by its
// place among the values the column has.
function axisOf(values) {
  const numeric = values.every(v => typeof v === 'number');
  const cats = numeric ? [] : [...new Set(values.map(String))].sort();
  const pos = v => numeric ? v : cats.indexOf(String(v));
  const nums = values.map(pos);
  let lo = Math.min(...nums), hi = Math.max(...nums);
  const positive = numeric && lo > 0;
  const log = positive && hi / lo > 50;
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  const f = v => {
    const x = pos(v);
    return log ? (Math.log(x) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (x - lo) / (hi - lo);
  };
  return { f, lo, hi, cats, log, label: v => numeric ? fmt(v, 3) : String(v) };
}

function svgEl(tag, attrs, ...children) {
  const n = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
  for (const c of children) n.append(c);
  return n;
}

// Blue for the best metric, red for the worst.
function metricColour(t) {
  return 'hsl(' + Math.round(220 * (1 - t)) + ', 70%, 45%)';
}

function metricLower(s) {
  return s.metric !== 'val_acc' && s.metric !== 'val_macro_acc';
}

function drawParcoords(s, trials) {
  const names = sweepParams(s).concat([s.metric]);
  const box = $('#parcoords');
  const W = Math.max(400, box.clientWidth || 800), H = 320, m = 40;
  const svg = svgEl('svg', { width: W, height: H, 'data-lines': String(trials.length) });
  const value = (t, k) => k === s.metric ? t.metric : t.params[k];
  const axes = names.map(k => axisOf(trials.map(t => value(t, k))));
  const x = i => m + i * (W - 2 * m) / Math.max(1, names.length - 1);
  const y = v => H - m - v * (H - 2 * m);
  const mAxis = axes[axes.length - 1];
  names.forEach((k, i) => {
    svg.append(svgEl('line', { x1: x(i), x2: x(i), y1: m, y2: H - m, stroke: '#999' }));
    svg.append(svgEl('text', { x: x(i), y: m - 12, 'text-anchor': 'middle' }, k));
    svg.append(svgEl('text', { x: x(i), y: H - m + 14, 'text-anchor': 'middle' },
      axes[i].cats.length ? axes[i].cats[0] : fmt(axes[i].lo, 3)));
    svg.append(svgEl('text', { x: x(i), y: m - 1, 'text-anchor': 'middle' },
      axes[i].cats.length ? axes[i].cats[axes[i].cats.length - 1] : fmt(axes[i].hi, 3)));
  });
  for (const t of trials) {
    const c = mAxis.f(t.metric);
    const pts = names.map((k, i) => x(i).toFixed(1) + ',' + y(axes[i].f(value(t, k))).toFixed(1));
    svg.append(svgEl('polyline', { points: pts.join(' '), fill: 'none', 'stroke-width': 2,
      stroke: metricColour(metricLower(s) ? c : 1 - c), class: 'trial-line', 'data-trial': String(t.trial) },
    svgEl('title', {}, 'trial ' + t.trial + ': ' + s.metric + ' ' + fmt(t.metric))));
  }
  box.replaceChildren(svg);
  return trials.length;
}

function drawScatters(s, trials) {
  const box = $('#scatters');
  const charts = [];
  for (const k of sweepParams(s)) {
    const W = 320, H = 220, m = 36;
    const ax = axisOf(trials.map(t => t.params[k])), ay = axisOf(trials.map(t => t.metric));
    const svg = svgEl('svg', { width: W, height: H, class: 'scatter', 'data-param': k });
    svg.append(svgEl('rect', { x: m, y: 8, width: W - m - 8, height: H - m - 8, fill: 'none', stroke: '#999' }));
    svg.append(svgEl('text', { x: (W + m) / 2, y: H - 6, 'text-anchor': 'middle' }, k + (ax.log ? ' (log)' : '')));
    svg.append(svgEl('text', { x: 4, y: 14 }, s.metric));
    svg.append(svgEl('text', { x: m, y: H - m + 14 }, ax.cats.length ? ax.cats[0] : fmt(ax.lo, 3)));
    svg.append(svgEl('text', { x: W - 8, y: H - m + 14, 'text-anchor': 'end' },
      ax.cats.length ? ax.cats[ax.cats.length - 1] : fmt(ax.hi, 3)));
    for (const t of trials) {
      const c = ay.f(t.metric);
      svg.append(svgEl('circle', {
        cx: (m + ax.f(t.params[k]) * (W - m - 16) + 4).toFixed(1),
        cy: (H - m - ay.f(t.metric) * (H - m - 20) - 4).toFixed(1), r: 5,
        fill: metricColour(metricLower(s) ? c : 1 - c), class: 'point',
      }, svgEl('title', {}, 'trial ' + t.trial + ': ' + k + ' ' + ax.label(t.params[k]) + ', ' + s.metric + ' ' +
        fmt(t.metric))));
    }
    charts.push(svg);
  }
  box.replaceChildren(...charts);
  return charts.length;
}

// pbt: a member's exploits, "t2@1" (trial 2's checkpoint at epoch 1), or '-'.
function lineageText(t) {
  const ex = (t.lineage || []).filter(r => r.action === 'exploit');
  return ex.length ? ex.map(r => 't' + r.from_trial + '@' + r.epoch).join(', ') : '-';
}

function sweepCell(t, key) {
  if (key === 'job') return t.job;
  if (key === 'lineage') return lineageText(t);
  if (key in t.params) return t.params[key];
  return t[key];
}

function drawTrials(s) {
  const keys = ['trial', 'job', 'state'].concat(sweepParams(s), ['epochs', 'metric', 'decision', 'reason']);
  if (s.rungs || s.brackets) keys.splice(3, 0, 'rung');
  if (s.searcher === 'pbt') keys.splice(keys.length - 1, 0, 'lineage');
  const head = el('tr', {}, ...keys.map(k => {
    const th = el('th', { 'data-key': k }, k === 'metric' ? s.metric : k);
    if (k === sweepView.sortKey) th.classList.add(sweepView.sortDir > 0 ? 'sorted-asc' : 'sorted-desc');
    th.addEventListener('click', () => {
      sweepView.sortDir = sweepView.sortKey === k ? -sweepView.sortDir : 1;
      sweepView.sortKey = k;
      drawTrials(sweepView.sweep);
    });
    return th;
  }));
  const rows = s.trials.slice().sort((a, b) => {
    const x = sweepCell(a, sweepView.sortKey), y = sweepCell(b, sweepView.sortKey);
    if (x === y) return a.trial - b.trial;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return sweepView.sortDir * c || a.trial - b.trial;
  });
  $('#trials thead').replaceChildren(head);
  $('#trials tbody').replaceChildren(...rows.map(t => el('tr', { 'data-trial': String(t.trial) },
    ...keys.map(k => {
      const v = sweepCell(t, k);
      if (k === 'job') return el('td', { class: 'num' }, el('a', { href: '/jobs/' + t.job }, String(t.job)));
      if (k === 'state') return el('td', { class: 'state state-' + t.state }, t.state);
      if (k === 'epochs') return el('td', { class: 'num' }, t.epochs + '/' + t.planned_epochs);
      if (k === 'lineage') return el('td', { class: 'lineage', title: (t.jobs || []).map(j => 'job ' + j).join(' → ') }, v);
      return el('td', { class: typeof v === 'number' ? 'num' : '' }, typeof v === 'number' ? fmt(v) : String(v ?? ''));
    }))));
}

async function drawSweepCurves(s) {
  // the histories of trials whose committed epochs changed since the last look
  await Promise.all(s.trials.map(async t => {
    const h = sweepView.hist[t.job];
    if (h && h.epochs === t.epochs) return;
    const r = await api('/api/jobs/' + t.job + '/history');
    sweepView.hist[t.job] = { epochs: t.epochs, rows: r.rows };
  }));
  const maxEpoch = Math.max(1, ...s.trials.map(t => t.epochs));
  const xs = Array.from({ length: maxEpoch }, (_, i) => i + 1);
  const data = [xs].concat(s.trials.map(t => {
    const by = new Map(sweepView.hist[t.job].rows.map(r => [r.epoch, r.val_loss]));
    return xs.map(e => by.has(e) ? by.get(e) : null);
  }));
  chart('sweep', $('#chart-sweep'), 'validation loss of every trial', 'epoch',
    s.trials.map(t => ({ label: 'trial ' + t.trial + ' (job ' + t.job + ')' })), data, { epochAxis: true });
  return s.trials.length;
}

async function refreshSweep() {
  const id = sweepId();
  let s;
  try { s = (await api('/api/sweeps/' + id)).sweep; } catch (e) { say(e.message); return; }
  sweepView.sweep = s;
  $('#title').textContent = 'Sweep ' + s.id + ' (' + s.name + ')';
  $('#summary').replaceChildren(el('span', { id: 'sweep-state', class: 'state-' + s.state }, s.state),
    ', ' + s.searcher + ' searcher, metric ' + s.metric + ', ' + s.trials_done + ' of ' + s.trials_total +
    ' trials done, max_parallel ' + s.max_parallel + ', seed ' + s.seed);
  $('#best').textContent = s.best ? 'best: trial ' + s.best.trial + ' (job ' + s.best.job + ') ' + s.metric + ' ' +
    fmt(s.best.metric) + ' ' + JSON.stringify(s.best.params) +
    (s.best.lineage ? '; lineage: ' + s.best.lineage.map(g => 'trial ' + g.trial + ' job ' + g.job + ' (epochs ' +
      g.from_epoch + '–' + g.to_epoch + ')').join(' → ') : '') : 'best: none yet';
  drawTrials(s);
  const withMetric = s.trials.filter(t => typeof t.metric === 'number');
  const lines = drawParcoords(s, withMetric);
  const scatters = drawScatters(s, withMetric);
  const curves = await drawSweepCurves(s);
  const exploits = s.trials.reduce((n, t) => n + (t.lineage || []).filter(r => r.action === 'exploit').length, 0);
  window.traindSweep = { state: s.state, trials: s.trials.length, lines, scatters, curves, exploits };
  if (s.state !== 'running' && sweepView.timer) {
    clearInterval(sweepView.timer);
    sweepView.timer = null;
  }
}

function initSweep() {
  refreshSweep().then(() => {
    if (sweepView.sweep && sweepView.sweep.state === 'running')
      sweepView.timer = setInterval(refreshSweep, POLL_MS);
  });
}

document.addEventListener('DOMContentLoaded', () => {
  const page = document.body.dataset.page;
  if (page === 'index') {
    startForm();
    refreshTable();
    setInterval(refreshTable, POLL_MS);
  } else if (page === 'job') {
    initJob();
  } else if (page === 'compare') {
    initCompare();
  } else if (page === 'sweep') {
    initSweep();
  }
});
