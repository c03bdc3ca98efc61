// app.js - traind-web's pages: the job table (/), a job (/jobs/N) and the
// compare view (/compare). Data from the JSON API (/api/...), live updates
// from the job's Server-Sent Events (/api/jobs/N/events), charts by uPlot.
// The token travels in the HttpOnly cookie set by /?token=...; control
// requests add the header X-Traind-Control: 1, which traind-web requires.
// window.traindCharts holds the uPlot instances (the tests read their data).
'use strict';

const POLL_MS = 2000;
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

async function act(id, what) {
  say(what + ' job ' + id + '...', true, '#action');
  try {
    const r = await control('/api/jobs/' + id + '/' + what);
    say('job ' + id + ' is ' + r.state, true, '#action');
  } catch (e) {
    say(what + ' job ' + id + ': ' + e.message + (e.status ? ' (' + e.status + ')' : ''), false, '#action');
  }
}

function fmt(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return '';
  return typeof x === 'number' ? x.toFixed(digits === undefined ? 4 : digits) : String(x);
}

function eta(s) {
  if (s === null || s === undefined) return '';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? h + 'h' : '') + (h || m ? m + 'm' : '') + r + 's';
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

async function refreshTable() {
  let list;
  try {
    list = await api('/api/jobs');
  } catch (e) {
    say('cannot list the jobs: ' + e.message);
    return;
  }
  const tbody = $('#jobs tbody');
  const chosen = new Set([...document.querySelectorAll('#jobs input:checked')].map(i => i.value));
  const rows = [];
  for (const j of list.jobs) {
    let b = { acc: null, loss: null };
    try { b = await bestOf(j); } catch (e) { /* shown as empty */ }
    const box = el('input', { type: 'checkbox', value: String(j.id), 'aria-label': 'choose job ' + j.id });
    box.checked = chosen.has(String(j.id));
    const buttons = el('td', {},
      el('button', { type: 'button', onclick: () => act(j.id, 'pause') }, 'pause'),
      el('button', { type: 'button', onclick: () => act(j.id, 'resume') }, 'resume'),
      el('button', { type: 'button', onclick: () => act(j.id, 'kill') }, 'kill'));
    const tr = el('tr', { 'data-job': String(j.id), 'data-state': j.state },
      el('td', {}, box),
      el('td', {}, el('a', { href: '/jobs/' + j.id }, j.id)),
      el('td', {}, j.name),
      el('td', { class: 'state state-' + j.state }, j.state),
      el('td', { title: j.model }, j.config.model || 'mlp'),
      el('td', {}, j.config.dataset),
      el('td', {}, progressBar(j), ' ' + j.committed_epoch + '/' + j.epochs),
      el('td', { class: 'num' }, j.state === 'running' ? fmt(j.samples_per_second, 0) : ''),
      el('td', { class: 'num' }, j.state === 'running' ? eta(j.eta_seconds) : ''),
      el('td', { class: 'num' }, fmt(b.acc)),
      el('td', { class: 'num' }, fmt(b.loss)),
      buttons);
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

// ---- charts ----

function chart(name, target, title, series, data) {
  const width = Math.max(400, Math.min(target.clientWidth || 560, 900));
  const opts = {
    title, width, height: 240,
    scales: { x: { time: false } },
    axes: [{ label: series[0] }, {}],
    series: [{ label: series[0] }].concat(series.slice(1).map((s, i) => ({
      label: s, stroke: ['#1e88e5', '#e53935', '#43a047', '#8e24aa', '#fb8c00', '#00897b'][i % 6],
      width: 2, points: { show: true, size: 5 }, spanGaps: true,
    }))),
  };
  if (window.traindCharts[name]) window.traindCharts[name].destroy();
  target.replaceChildren();
  const u = new uPlot(opts, data, target);
  window.traindCharts[name] = u;
  return u;
}

// ---- one job ----

function jobId() {
  const m = location.pathname.match(/^\/jobs\/(\d+)$/);
  return m ? parseInt(m[1], 10) : null;
}

const jobPage = {
  id: null, epoch: -1, steps: [[], []], events: null, state: null, lastLoss: null,
};

// The job's task, from its loss (config key "loss"): its metrics follow it.
function taskOf(job) {
  const loss = job.config.loss || 'cross_entropy';
  if (loss === 'cross_entropy') return 'classification';
  return loss === 'bce_with_logits' ? 'multi-label' : 'regression';
}

// The history table's columns for a task: [heading, key, digits].
function historyColumns(task) {
  const metrics = task === 'regression'
    ? [['val MAE', 'val_mae', 4], ['val RMSE', 'val_rmse', 4]]
    : [['train acc', 'train_acc', 4], ['val acc', 'val_acc', 4]];
  return [['train loss', 'train_loss', 4], ['val loss', 'val_loss', 4]].concat(metrics);
}

function drawEpochCharts(rows, task) {
  const x = rows.map(r => r.epoch);
  chart('loss', $('#chart-loss'), 'loss', ['epoch', 'train loss', 'val loss'],
    [x, rows.map(r => r.train_loss), rows.map(r => r.val_loss)]);
  if (task === 'regression') {
    $('#metric-title').textContent = 'Validation error by epoch';
    chart('acc', $('#chart-acc'), 'error', ['epoch', 'val MAE', 'val RMSE'],
      [x, rows.map(r => r.val_mae), rows.map(r => r.val_rmse)]);
  } else {
    $('#metric-title').textContent = task === 'multi-label' ? 'Per-label accuracy by epoch' : 'Accuracy by epoch';
    chart('acc', $('#chart-acc'), 'accuracy', ['epoch', 'train acc', 'val acc'],
      [x, rows.map(r => r.train_acc), rows.map(r => r.val_acc)]);
  }
  if (rows.some(r => typeof r.lr === 'number')) {
    $('#lr-box').hidden = false;
    chart('lr', $('#chart-lr'), 'learning rate', ['epoch', 'lr'], [x, rows.map(r => r.lr)]);
  }
}

function drawSteps() {
  const u = window.traindCharts.steps;
  if (u) u.setData(jobPage.steps);
  else chart('steps', $('#chart-steps'), 'running loss', ['epoch', 'loss'], jobPage.steps);
}

async function refreshJob() {
  const id = jobPage.id;
  let job;
  try {
    job = (await api('/api/jobs/' + id)).job;
  } catch (e) {
    say('job ' + id + ': ' + e.message);
    return;
  }
  jobPage.state = job.state;
  document.title = 'traind: job ' + id + ' ' + job.name;
  $('#title').textContent = 'Job ' + id + ': ' + job.name;
  $('#summary').replaceChildren(el('span', { class: 'state state-' + job.state, id: 'state' }, job.state),
    ' · epoch ' + job.committed_epoch + '/' + job.epochs + ' · ' + (job.config.model || 'mlp') + ' on ' +
    job.config.dataset + (job.error ? ' · ' + job.error : ''));
  const pct = job.epochs ? 100 * job.committed_epoch / job.epochs : 0;
  $('#bar').style.width = pct + '%';
  $('#config').textContent = JSON.stringify(job.config, null, 2) + '\nmodel: ' + job.model;
  if (job.committed_epoch !== jobPage.epoch) {
    jobPage.epoch = job.committed_epoch;
    const [h, c] = await Promise.all([api('/api/jobs/' + id + '/history'), api('/api/jobs/' + id + '/checkpoints')]);
    const task = taskOf(job), cols = historyColumns(task);
    drawEpochCharts(h.rows, task);
    $('#history thead').replaceChildren(el('tr', {}, el('th', {}, 'epoch'), ...cols.map(c => el('th', {}, c[0])),
      el('th', {}, 'lr'), el('th', {}, 'seconds'), el('th', {}, 'note')));
    $('#history tbody').replaceChildren(...h.rows.map(r => el('tr', {},
      el('td', {}, r.epoch), ...cols.map(c => el('td', { class: 'num' }, fmt(r[c[1]], c[2]))),
      el('td', { class: 'num' }, fmt(r.lr, 6)), el('td', { class: 'num' }, fmt(r.seconds, 1)), el('td', {}, r.note))));
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
      (typeof p.loss === 'number' ? ' · loss ' + p.loss.toFixed(4) : '') +
      ' · ' + Math.round(p.samples_per_second) + ' samples/s' + (p.eta_seconds != null ? ' · ETA ' + eta(p.eta_seconds) : '');
    if (typeof p.loss === 'number' && p.steps_per_epoch) {
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
  for (const what of ['pause', 'resume', 'kill'])
    $('#' + what).addEventListener('click', () => act(jobPage.id, what).then(refreshJob));
  drawSteps();
  refreshJob();
  setInterval(refreshJob, POLL_MS);
}

// ---- compare ----

async function initCompare() {
  const params = new URLSearchParams(location.search);
  const chosen = new Set((params.get('jobs') || '').split(',').filter(Boolean));
  const metric = params.get('metric') || 'val_loss';
  $('#choose').metric.value = metric;
  let list;
  try { list = await api('/api/jobs'); } catch (e) { say(e.message); return; }
  $('#choices').replaceChildren(...list.jobs.map(j => {
    const box = el('input', { type: 'checkbox', name: 'job', value: String(j.id) });
    box.checked = chosen.has(String(j.id));
    return el('label', {}, box, ' ' + j.id + ' ' + j.name);
  }));
  $('#choose').addEventListener('submit', ev => {
    ev.preventDefault();
    const ids = [...document.querySelectorAll('#choices input:checked')].map(i => i.value);
    location.search = '?jobs=' + ids.join(',') + '&metric=' + ev.target.metric.value;
  });
  const jobs = list.jobs.filter(j => chosen.has(String(j.id)));
  if (!jobs.length) return;
  const hist = await Promise.all(jobs.map(j => api('/api/jobs/' + j.id + '/history')));
  const maxEpoch = Math.max(0, ...hist.map(h => h.rows.length ? h.rows[h.rows.length - 1].epoch : 0));
  const x = Array.from({ length: maxEpoch }, (_, i) => i + 1);
  const data = [x].concat(hist.map(h => {
    const by = new Map(h.rows.map(r => [r.epoch, r[metric]]));
    return x.map(e => (typeof by.get(e) === 'number' ? by.get(e) : null));
  }));
  chart('compare', $('#chart-compare'), metric.replace('_', ' '), ['epoch'].concat(jobs.map(j => j.id + ' ' + j.name)), data);
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
  }
});
