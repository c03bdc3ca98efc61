// sweep-page.cjs - the sweep page (/sweeps/N) in a real headless Chromium,
// for test_web_sweeps.py. Environment: TRAIND_WEB_URL, TRAIND_WEB_TOKEN,
// TRAIND_WEB_SWEEP (the sweep), TRAIND_WEB_TRIALS (how many), TRAIND_WEB_PARAMS
// (its parameters, comma-separated), TRAIND_WEB_STEP ("running": the page
// of a running sweep, which must go live to done; "done": a finished one,
// sorted by the metric both ways), TRAIND_WEB_SHOTS, PLAYWRIGHT_CORE.
// Prints one JSON object with what it saw on its last line.
'use strict';
const path = require('path');
const { chromium } = require(process.env.PLAYWRIGHT_CORE);

const URL = process.env.TRAIND_WEB_URL;
const TOKEN = process.env.TRAIND_WEB_TOKEN;
const SWEEP = process.env.TRAIND_WEB_SWEEP;
const TRIALS = parseInt(process.env.TRAIND_WEB_TRIALS, 10);
const PARAMS = (process.env.TRAIND_WEB_PARAMS || '').split(',').filter(Boolean);
const STEP = process.env.TRAIND_WEB_STEP;
const out = { step: STEP };

async function seen(page) {
  return page.evaluate(() => Object.assign({}, window.traindSweep || {}, {
    rows: document.querySelectorAll('#trials tbody tr').length,
    lines: document.querySelectorAll('#parcoords polyline.trial-line').length,
    scatters: [...document.querySelectorAll('#scatters svg.scatter')].map(s => s.dataset.param),
    points: document.querySelectorAll('#scatters circle.point').length,
    series: window.traindCharts.sweep ? window.traindCharts.sweep.series.length - 1 : 0,
    heads: [...document.querySelectorAll('#trials thead th')].map(th => th.dataset.key),
    state: (document.querySelector('#sweep-state') || {}).textContent,
    lineage: [...document.querySelectorAll('#trials tbody td.lineage')].map(td => td.textContent),
    best: (document.querySelector('#best') || {}).textContent,
  }));
}

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    const errors = [], missing = [];
    page.on('pageerror', e => errors.push(String(e)));
    page.on('response', r => { if (r.status() === 404) missing.push(r.url()); });
    await page.goto(URL + '/?token=' + TOKEN);
    const resp = await page.goto(URL + '/sweeps/' + SWEEP);
    out.status = resp.status();
    await page.waitForFunction(n => window.traindSweep && window.traindSweep.trials === n, TRIALS, { timeout: 60000 });
    out.first = await seen(page);
    await page.screenshot({ path: path.join(process.env.TRAIND_WEB_SHOTS, 'sweep-' + STEP + '.png'), fullPage: true });
    // the test lets the sweep go on once it has read this line
    console.log(JSON.stringify({ phase: 'first', first: out.first }));
    if (STEP === 'running') {
      // live: it goes on to done without a reload, every trial drawn
      await page.waitForFunction(n => window.traindSweep && window.traindSweep.state === 'done' &&
        window.traindSweep.lines === n, TRIALS, { timeout: 300000 });
      out.last = await seen(page);
      await page.screenshot({ path: path.join(process.env.TRAIND_WEB_SHOTS, 'sweep-running-done.png'), fullPage: true });
    } else {
      const order = () => page.$$eval('#trials tbody tr', rs => rs.map(r => parseInt(r.dataset.trial, 10)));
      const metrics = () => page.$$eval('#trials tbody tr', rs => rs.map(r => {
        const cells = [...r.children];
        const i = [...document.querySelectorAll('#trials thead th')].findIndex(th => th.dataset.key === 'metric');
        return parseFloat(cells[i].textContent);
      }));
      out.by_trial = await order();
      await page.click('#trials thead th[data-key="metric"]');
      out.metric_asc = await metrics();
      await page.click('#trials thead th[data-key="metric"]');
      out.metric_desc = await metrics();
      if (PARAMS.length) {
        await page.click('#trials thead th[data-key="' + PARAMS[0] + '"]');
        out.param_order = await order();
      }
    }
    out.page_errors = errors;
    out.not_found = missing;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch(e => {
  console.error('sweep-page.cjs:', e && e.stack ? e.stack : e);
  out.error = String(e && e.message ? e.message : e).split('\n')[0];
  console.log(JSON.stringify(out));
  process.exit(1);
});
