// browser.cjs - the dashboard in a real headless Chromium, for test_web.py.
//
// Drives /usr/bin/chromium through playwright-core (web/node_modules, pinned
// in web/package-lock.json). Reads its task from the environment:
//   TRAIND_WEB_URL    http://127.0.0.1:PORT
//   TRAIND_WEB_TOKEN  the token
//   TRAIND_WEB_JOB    a job that is training
//   TRAIND_WEB_SHOTS  where the screenshots go
//   PLAYWRIGHT_CORE   the playwright-core package directory
//   TRAIND_WEB_STEP   what to do: "live" (table, job page, curve growth,
//                     pause) or "refused" (a page whose cookie is gone
//                     presses resume) or "compare" (the compare view) or
//                     "start" (the start form), "regression" (a
//                     regression job's page and compare view), "lm" (a
//                     language model's page: perplexity, a sample of its
//                     text), or with TRAIND_WEB_JOBS
//                     (JSON: {"long", "other", "paused", "running"} ids):
//                     "layout" (the table at 1280x800: no horizontal
//                     scroll with a long spec, cut with the whole on hover,
//                     the buttons of each state), "confirm" (kill asks
//                     first: dismissed, nothing happens; accepted, killed),
//                     "done" (a finished job's page after a reload: the
//                     step curve from traind, whole epoch ticks, distinct
//                     labels on the lr axis, the chart as wide as its box
//                     and again after the window shrinks), "compare2" (the
//                     settings table with differences marked, train and
//                     val curves, smoothing, log scale, CSV and PNG
//                     downloads), "delete" (a done job's page: delete
//                     asks, then the job is gone)
// Prints one JSON object with what it saw on its last line (also on an
// error, with "error" set, and exits non-zero).
'use strict';
const path = require('path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const URL = process.env.TRAIND_WEB_URL;
const TOKEN = process.env.TRAIND_WEB_TOKEN;
const JOB = process.env.TRAIND_WEB_JOB;
const SHOTS = process.env.TRAIND_WEB_SHOTS;
const STEP = process.env.TRAIND_WEB_STEP || 'live';
const JOBS = JSON.parse(process.env.TRAIND_WEB_JOBS || '{}');

function shot(page, name) {
  return page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
}

async function live(page, out) {
  // The URL with the token sets the cookie and redirects to the plain page.
  const resp = await page.goto(URL + '/?token=' + TOKEN);
  out.index_status = resp.status();
  out.index_url = page.url();
  await page.waitForSelector('#jobs tr[data-job="' + JOB + '"]', { timeout: 30000 });
  out.table_state = await page.textContent('#jobs tr[data-job="' + JOB + '"] td.state');
  out.table_rows = await page.locator('#jobs tbody tr').count();
  await shot(page, 'index');

  await page.goto(URL + '/jobs/' + JOB);
  const points = () => page.evaluate(() => {
    const c = window.traindCharts.loss;
    return c ? c.data[0].length : 0;
  });
  await page.waitForFunction(() => window.traindCharts.loss && window.traindCharts.loss.data[0].length >= 1,
    null, { timeout: 60000 });
  out.points_first = await points();
  await page.waitForFunction(n => window.traindCharts.loss.data[0].length > n, out.points_first,
    { timeout: 120000 });
  out.points_later = await points();
  out.val_loss_series = await page.evaluate(() => window.traindCharts.loss.data[2]);
  await page.waitForFunction(() => window.traindCharts.steps && window.traindCharts.steps.data[0].length >= 2,
    null, { timeout: 60000 });
  out.step_points = await page.evaluate(() => window.traindCharts.steps.data[0].length);
  await shot(page, 'job-training');

  await page.click('#pause');
  await page.waitForFunction(() => /is paused/.test(document.querySelector('#action').textContent),
    null, { timeout: 120000 });
  out.pause_message = await page.textContent('#action');
  await page.waitForSelector('#state:text("paused")', { timeout: 30000 });
  await shot(page, 'job-paused');
}

async function refused(page, out) {
  await page.goto(URL + '/jobs/' + JOB + '?token=' + TOKEN);
  await page.waitForSelector('#state', { timeout: 30000 });
  await page.context().clearCookies();
  await page.click('#resume');
  await page.waitForFunction(() => /^resume job \d+: /.test(document.querySelector('#action').textContent),
    null, { timeout: 30000 });
  out.refused_message = await page.textContent('#action');
  await shot(page, 'refused-button');
  const r = await page.goto(URL + '/jobs/' + JOB);
  out.page_without_token = r.status();
  await shot(page, 'refused-page');
}

async function compare(page, out) {
  await page.goto(URL + '/compare?token=' + TOKEN);
  await page.goto(URL + '/compare?jobs=' + JOB + '&metric=val_loss');
  await page.waitForFunction(() => window.traindCharts.compare, null, { timeout: 30000 });
  out.compare_points = await page.evaluate(() => window.traindCharts.compare.data[1].filter(v => v !== null).length);
  await shot(page, 'compare');
}

async function layout(page, out) {
  await page.goto(URL + '/?token=' + TOKEN);
  await page.waitForSelector('#jobs tr[data-job="' + JOBS.long + '"]', { timeout: 30000 });
  await page.waitForFunction(n => document.querySelectorAll('#jobs tbody tr').length >= n,
    Object.keys(JOBS).length, { timeout: 30000 });
  Object.assign(out, await page.evaluate(long => {
    const cell = document.querySelector('#jobs tr[data-job="' + long + '"] td.model');
    const wrap = document.querySelector('#jobs').parentElement;
    const rows = [...document.querySelectorAll('#jobs tbody tr')].map(tr => ({
      id: tr.dataset.job, state: tr.dataset.state,
      actions: [...tr.querySelectorAll('button[data-action]')].map(b => b.dataset.action),
    }));
    return {
      viewport: [window.innerWidth, window.innerHeight],
      page_scroll_width: document.documentElement.scrollWidth,
      page_client_width: document.documentElement.clientWidth,
      table_right: Math.ceil(document.querySelector('#jobs').getBoundingClientRect().right),
      wrap_scroll: [wrap.scrollWidth, wrap.clientWidth],
      model_title: cell.title, model_text: cell.textContent,
      model_cut: cell.scrollWidth > cell.clientWidth,
      rows,
    };
  }, JOBS.long));
  await shot(page, 'index-1280x800');
}

async function confirmKill(page, out) {
  await page.goto(URL + '/?token=' + TOKEN);
  const button = '#jobs tr[data-job="' + JOBS.running + '"] button[data-action="kill"]';
  await page.waitForSelector(button, { timeout: 30000 });
  out.dialogs = [];
  let answer = false;
  page.on('dialog', d => { out.dialogs.push(d.message()); return answer ? d.accept() : d.dismiss(); });
  await page.click(button);
  await page.waitForFunction(() => /not done/.test(document.querySelector('#action').textContent), null, { timeout: 30000 });
  out.after_dismiss = await page.textContent('#action');
  const r = await page.request.get(URL + '/api/jobs/' + JOBS.running);
  out.state_after_dismiss = (await r.json()).job.state;
  answer = true;
  await page.click(button);
  await page.waitForFunction(() => /is killed/.test(document.querySelector('#action').textContent), null, { timeout: 60000 });
  out.after_accept = await page.textContent('#action');
  await page.waitForSelector('#jobs tr[data-job="' + JOBS.running + '"][data-state="killed"]', { timeout: 30000 });
  out.actions_after = await page.evaluate(id => [...document.querySelectorAll('#jobs tr[data-job="' + id + '"] button[data-action]')]
    .map(b => b.dataset.action), JOBS.running);
}

async function done(page, out) {
  await page.goto(URL + '/jobs/' + JOBS.long + '?token=' + TOKEN);
  await page.waitForFunction(() => window.traindCharts.loss && window.traindCharts.lr, null, { timeout: 30000 });
  await page.reload();   // what a reload shows, with no live events (the job is done)
  await page.waitForFunction(() => window.traindCharts.loss && window.traindCharts.lr &&
    window.traindCharts.steps && window.traindCharts.steps.data[0].length > 0, null, { timeout: 30000 });
  await page.waitForTimeout(300);
  Object.assign(out, await page.evaluate(() => {
    const C = window.traindCharts;
    const box = document.querySelector('#chart-loss');
    return {
      step_points_after_reload: C.steps.data[0].length,
      step_x_max: Math.max(...C.steps.data[0]),
      loss_ticks: C.loss.axes[0]._splits, loss_tick_labels: C.loss.axes[0]._values,
      steps_ticks: C.steps.axes[0]._splits,
      lr_labels: C.lr.axes[1]._values, lr_splits: C.lr.axes[1]._splits,
      loss_y_labels: C.loss.axes[1]._values, loss_y_splits: C.loss.axes[1]._splits,
      chart_width: C.loss.width, box_width: Math.floor(box.clientWidth),
      buttons: ['pause', 'resume', 'kill', 'delete'].filter(b => !document.getElementById(b).hidden),
      times: document.querySelector('#times').textContent,
    };
  }));
  await shot(page, 'job-done-1280x800');
  await page.setViewportSize({ width: 900, height: 800 });
  await page.waitForFunction(w => Math.abs(window.traindCharts.loss.width - w) <= 1,
    await page.evaluate(() => Math.floor(document.querySelector('#chart-loss').clientWidth)), { timeout: 10000 });
  out.chart_width_narrow = await page.evaluate(() => [window.traindCharts.loss.width,
    Math.floor(document.querySelector('#chart-loss').clientWidth)]);
  await shot(page, 'job-done-900');
}

async function compare2(page, out) {
  await page.goto(URL + '/compare?token=' + TOKEN);
  await page.goto(URL + '/compare?jobs=' + JOBS.long + ',' + JOBS.other + '&metric=loss');
  await page.waitForFunction(() => window.traindCharts.compare && document.querySelector('#params tbody tr'), null, { timeout: 30000 });
  const table = () => page.evaluate(() => Object.fromEntries([...document.querySelectorAll('#params tbody tr[data-key]')]
    .map(tr => [tr.dataset.key, { diff: tr.classList.contains('diff'), cells: [...tr.querySelectorAll('td')].map(td => td.textContent),
      shown: tr.offsetParent !== null }])));
  out.table = await table();
  const C = () => page.evaluate(() => {
    const u = window.traindCharts.compare;
    return { n: u.series.length - 1, dashed: u.series.slice(1).map(s => !!(s.dash && s.dash.length)),
      labels: u.series.slice(1).map(s => s.label), y1: u.data[1], distr: u.scales.y.distr,
      ticks: u.axes[0]._splits, width: u.width };
  });
  out.chart = await C();
  await page.fill('#view input[name=smooth]', '0.6');
  await page.dispatchEvent('#view input[name=smooth]', 'input');
  out.smoothed = await C();
  await page.check('#view input[name=log]');
  out.logged = await C();
  await page.check('#only-diff');
  out.table_only_diff = await table();
  await shot(page, 'compare-1280x800');
  const [csv] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
  out.csv_name = csv.suggestedFilename();
  out.csv = require('fs').readFileSync(await csv.path(), 'utf8');
  const [png] = await Promise.all([page.waitForEvent('download'), page.click('#png')]);
  out.png_name = png.suggestedFilename();
  out.png_magic = [...require('fs').readFileSync(await png.path()).subarray(0, 8)];
}

async function deleteJob(page, out) {
  await page.goto(URL + '/jobs/' + JOBS.other + '?token=' + TOKEN);
  await page.waitForSelector('#delete:not([hidden])', { timeout: 30000 });
  out.dialogs = [];
  page.on('dialog', d => { out.dialogs.push(d.message()); return d.accept(); });
  await Promise.all([page.waitForURL(URL + '/', { timeout: 60000 }), page.click('#delete')]);
  out.landed = page.url();
  const r = await page.request.get(URL + '/api/jobs/' + JOBS.other);
  out.status_after = r.status();
}

const out = {};

// A regression job's page: the metric chart is the validation MAE and RMSE,
// the history table has the task's columns.
async function regression(page, out) {
  await page.goto(URL + '/jobs/' + JOB + '?token=' + TOKEN);
  await page.goto(URL + '/jobs/' + JOB);
  await page.waitForFunction(() => window.traindCharts.acc && window.traindCharts.acc.data[0].length >= 1,
    null, { timeout: 30000 });
  out.metric_title = await page.textContent('#metric-title');
  out.metric_series = await page.evaluate(() => window.traindCharts.acc.series.map(s => s.label));
  out.rmse_series = await page.evaluate(() => window.traindCharts.acc.data[2]);
  out.history_head = await page.textContent('#history thead');
  await page.goto(URL + '/compare?jobs=' + JOB + '&metric=val_rmse');
  await page.waitForFunction(() => window.traindCharts.compare, null, { timeout: 30000 });
  out.compare_rmse = await page.evaluate(() => window.traindCharts.compare.data[1]);
  await page.goto(URL + '/jobs/' + JOB);
  await page.waitForFunction(() => window.traindCharts.acc, null, { timeout: 30000 });
  await shot(page, 'regression');
}

// A language model's page (issue 24): the perplexity chart, the history's
// val ppl column, and a sample of its text, again with another prompt.
async function lm(page, out) {
  await page.goto(URL + '/jobs/' + JOB + '?token=' + TOKEN);
  await page.goto(URL + '/jobs/' + JOB);
  await page.waitForFunction(() => window.traindCharts.ppl && window.traindCharts.ppl.data[0].length >= 1,
    null, { timeout: 30000 });
  out.ppl_series = await page.evaluate(() => window.traindCharts.ppl.data[1]);
  out.metric_title = await page.textContent('#metric-title');
  out.history_head = await page.textContent('#history thead');
  await page.waitForFunction(() => !document.querySelector('#sample-box').hidden &&
    document.querySelector('#sample').textContent.length > 1 &&
    document.querySelector('#sample').textContent !== 'sampling…', null, { timeout: 60000 });
  out.sample = await page.textContent('#sample');
  await page.fill('#sample-prompt', 'the ');
  await page.fill('#sample-form input[name=seed]', '3');
  await page.click('#sample-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#sample').textContent.startsWith('the '),
    null, { timeout: 60000 });
  out.sample2 = await page.textContent('#sample');
  await page.fill('#sample-prompt', 'Zé');
  await page.click('#sample-form button[type=submit]');
  await page.waitForFunction(() => /vocabulary/.test(document.querySelector('#sample').textContent),
    null, { timeout: 60000 });
  out.sample_refused = await page.textContent('#sample');
  await shot(page, 'language-model');
}

async function start(page, out) {
  await page.goto(URL + '/?token=' + TOKEN);
  await page.fill('#start input[name=name]', 'from-form');
  await page.fill('#start input[name=epochs]', '1');
  await page.fill('#start input[name=train_size]', '500');
  await page.click('#start button[type=submit]');
  await page.waitForFunction(() => /^started job \d+/.test(document.querySelector('#action').textContent),
    null, { timeout: 30000 });
  out.started = parseInt((await page.textContent('#action')).match(/\d+/)[0], 10);
  await page.waitForSelector('#jobs tr[data-job="' + out.started + '"]', { timeout: 30000 });
  await shot(page, 'index-started');
}

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    const page = await context.newPage();
    const errors = [];
    const missing = [];
    page.on('pageerror', e => errors.push(String(e)));
    // nothing a page asks for is missing (the favicon included)
    page.on('response', r => { if (r.status() === 404) missing.push(r.url()); });
    if (STEP === 'live') await live(page, out);
    else if (STEP === 'refused') await refused(page, out);
    else if (STEP === 'compare') await compare(page, out);
    else if (STEP === 'start') await start(page, out);
    else if (STEP === 'regression') await regression(page, out);
    else if (STEP === 'lm') await lm(page, out);
    else if (STEP === 'layout') await layout(page, out);
    else if (STEP === 'confirm') await confirmKill(page, out);
    else if (STEP === 'done') await done(page, out);
    else if (STEP === 'compare2') await compare2(page, out);
    else if (STEP === 'delete') await deleteJob(page, out);
    out.page_errors = errors;
    out.not_found = missing;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch(e => {
  // what was seen up to the failure, so that the test names the check
  console.error('browser.cjs:', e && e.stack ? e.stack : e);
  out.error = String(e && e.message ? e.message : e).split('\n')[0];
  console.log(JSON.stringify(out));
  process.exit(1);
});
