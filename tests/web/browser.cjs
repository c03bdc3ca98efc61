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
//                     "start" (the start form) or "regression" (a
//                     regression job's page and compare view)
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
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const errors = [];
    page.on('pageerror', e => errors.push(String(e)));
    if (STEP === 'live') await live(page, out);
    else if (STEP === 'refused') await refused(page, out);
    else if (STEP === 'compare') await compare(page, out);
    else if (STEP === 'start') await start(page, out);
    else if (STEP === 'regression') await regression(page, out);
    out.page_errors = errors;
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
