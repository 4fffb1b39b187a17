// Front-end benchmark of awsjobs-lab, run by benchmarks/frontend/driver.py (not by hand).
//
// Input: the BENCH_CONFIG environment variable (JSON): { base, token, chromium, updates,
// followSeconds, bigScript, quickScript }. Output: one JSON line on stdout, prefixed "RESULT ".
//
// 1. The Jobs panel with 1,000 stored jobs: for each update a new job is POSTed, then the
//    panel's poll refresh (`awsjobs:refresh`, the poll's own code path) runs until the new job's
//    row is painted; main-thread time is the difference of CDP Performance.getMetrics
//    TaskDuration around it. A baseline window without a refresh is measured the same way.
// 2. The log view following a job whose log grows to 200 MB (5 MB a second): DOM nodes and JS heap
//    (Performance.getMetrics Nodes, JSHeapUsedSize) sampled every second while it follows.
import { chromium } from 'playwright-core';

const config = JSON.parse(process.env.BENCH_CONFIG);
const headers = { Authorization: `token ${config.token}` };

async function api(method, path, body) {
  const resp = await fetch(`${config.base}/awsjobs/api/${path}`, {
    method,
    headers: { ...headers, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined
  });
  if (!resp.ok) {
    throw new Error(`${method} ${path}: ${resp.status} ${await resp.text()}`);
  }
  return resp.status === 204 ? null : resp.json();
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function metrics(cdp) {
  const { metrics: list } = await cdp.send('Performance.getMetrics');
  return Object.fromEntries(list.map(m => [m.name, m.value]));
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-gpu'
  ]
});
const result = {};
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const loadStart = Date.now();
  await page.goto(`${config.base}/lab?token=${config.token}`, {
    waitUntil: 'domcontentloaded',
    timeout: 120000
  });
  await page.waitForFunction(() => window.jupyterapp !== undefined, null, {
    timeout: 120000
  });
  await page.evaluate(() => window.jupyterapp.restored);
  result.labLoadSeconds = (Date.now() - loadStart) / 1000;
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');

  // -- 1. panel update ---------------------------------------------------------------------
  await page.evaluate(() => window.jupyterapp.commands.execute('awsjobs:open-panel'));
  await page.waitForSelector('.jp-AWSJobs-job[data-job-id]', { timeout: 60000 });
  result.rowsShown = await page.evaluate(
    () => document.querySelectorAll('.jp-AWSJobs-job[data-job-id]').length
  );
  const updates = [];
  const baselines = [];
  const WARM_UP = 2; // first renders (code paths compiled, styles computed) are not counted
  for (let i = 0; i < config.updates + WARM_UP; i++) {
    const job = await api('POST', 'jobs', { path: config.quickScript });
    await sleep(1500); // the job ends; the panel's own poll has had its turn
    let before = await metrics(cdp);
    await page.evaluate(async id => {
      await window.jupyterapp.commands.execute('awsjobs:refresh');
      while (!document.querySelector(`[data-job-id="${id}"]`)) {
        await new Promise(resolve => requestAnimationFrame(resolve));
      }
      // Two frames: the update is laid out and painted.
      await new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)));
    }, job.id);
    let after = await metrics(cdp);
    if (i >= WARM_UP) {
      updates.push((after.TaskDuration - before.TaskDuration) * 1000);
    }
    // Baseline: the same two frames, no refresh.
    await sleep(300);
    before = await metrics(cdp);
    await page.evaluate(
      () =>
        new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(resolve)))
    );
    after = await metrics(cdp);
    if (i >= WARM_UP) {
      baselines.push((after.TaskDuration - before.TaskDuration) * 1000);
    }
  }
  result.rowsAfter = await page.evaluate(
    () => document.querySelectorAll('.jp-AWSJobs-job[data-job-id]').length
  );
  result.updateMs = updates;
  result.updateMedianMs = median(updates);
  result.baselineMedianMs = median(baselines);

  // -- 2. log view following a log that grows to 200 MB -----------------------------------
  const big = await api('POST', 'jobs', { path: config.bigScript });
  await page.evaluate(
    id => window.jupyterapp.commands.execute('awsjobs:open-panel', { id }),
    big.id
  );
  await page.waitForSelector('.jp-AWSJobs-log', { timeout: 60000 });
  const samples = [];
  const followStart = Date.now();
  let complete = false;
  while (Date.now() - followStart < config.followSeconds * 1000) {
    await sleep(1000);
    const m = await metrics(cdp);
    const dom = await page.evaluate(() => {
      const count = root => {
        if (!root) {
          return 0;
        }
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_ALL);
        let n = 1;
        while (walker.nextNode()) {
          n++;
        }
        return n;
      };
      const log = document.querySelector('.jp-AWSJobs-logView');
      const pre = document.querySelector('.jp-AWSJobs-log');
      const text = pre ? pre.textContent || '' : '';
      const lines = text.trimEnd().split('\n');
      return {
        logViewNodes: count(log),
        panelNodes: count(document.getElementById('awsjobs-panel')),
        documentNodes: count(document.documentElement),
        textChars: text.length,
        lastLine: lines[lines.length - 1] || ''
      };
    });
    samples.push({
      t: (Date.now() - followStart) / 1000,
      nodes: m.Nodes,
      heapMB: m.JSHeapUsedSize / 1048576,
      ...dom
    });
    const job = await api('GET', `jobs/${big.id}`);
    if (job.state !== 'running' && dom.lastLine.includes('END-OF-BENCH-LOG')) {
      complete = true;
      break;
    }
  }
  await cdp.send('HeapProfiler.enable');
  await cdp.send('HeapProfiler.collectGarbage');
  const afterGc = await metrics(cdp);
  result.logSamples = samples;
  result.logComplete = complete;
  result.logMaxLogViewNodes = Math.max(...samples.map(s => s.logViewNodes));
  result.logMaxPanelNodes = Math.max(...samples.map(s => s.panelNodes));
  result.logMaxDocumentNodes = Math.max(...samples.map(s => s.documentNodes));
  result.logMaxCdpNodes = Math.max(...samples.map(s => s.nodes));
  result.logMaxHeapMB = Math.max(...samples.map(s => s.heapMB));
  result.logHeapAfterGcMB = afterGc.JSHeapUsedSize / 1048576;
  result.logLastLine = samples.length ? samples[samples.length - 1].lastLine : '';
  result.logSizeBytes = (await api('GET', `jobs/${big.id}/log?offset=0&limit=1`)).size;
} finally {
  await browser.close();
}
console.log('RESULT ' + JSON.stringify(result));
