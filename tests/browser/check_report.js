// check_report.js: open a report's index.html and one feature page in headless
// Chromium and check what a person would use (run by tests/unit/test_report_html.c).
//
//   node tests/browser/check_report.js CHROMIUM REPORT_DIR SAE_PAGE N_FEATURES
//        WINDOWS_PER_FEATURE SHOT_DIR
//
// Prints "ok - name" / "not ok - name: why" lines and one "timing {...}" line
// (load times, page size), and exits 1 when a check failed. The fixture's
// feature index 1 has the explanation '<b>bold</b> & <script>alert(1)</script>'
// and every feature's first explain window holds the token "<script>".
'use strict';
const fs = require('fs');
const path = require('path');
const { Browser } = require('./cdp');

const [chromium, reportDir, saePage, nFeatures, perFeature, shotDir] = process.argv.slice(2);
const EXPLANATION = '<b>bold</b> & <script>alert(1)</script>';
let failed = 0;
function check(name, cond, why) {
  if (cond) console.log('ok - ' + name);
  else { failed++; console.log('not ok - ' + name + ': ' + (why || '')); }
}

async function sortedCheck(b, key) {
  // Click the header twice: first order, then the reverse; missing values last.
  const orders = [];
  for (let k = 0; k < 2; k++) {
    orders.push(await b.eval(`(() => {
      document.querySelector('th button[data-key="${key}"]').click();
      return Array.from(document.querySelectorAll('#features tbody tr.feature'))
        .map(r => parseFloat(r.getAttribute('data-${key}')));
    })()`));
  }
  const ok = orders.map(vals => {
    // NaN (a missing value) arrives as null through returnByValue
    const v = vals.filter(x => x !== null && !Number.isNaN(x));
    const tail = vals.slice(v.length);
    return { asc: v.every((x, i) => i === 0 || v[i - 1] <= x), desc: v.every((x, i) => i === 0 || v[i - 1] >= x),
             missingLast: tail.every(x => x === null || Number.isNaN(x)), n: vals.length };
  });
  const first = key === 'id' ? 'asc' : 'desc', second = key === 'id' ? 'desc' : 'asc';
  check(`sort by ${key}`, ok[0][first] && ok[1][second] && ok[0].missingLast && ok[1].missingLast &&
        ok[0].n === +nFeatures, JSON.stringify(ok));
}

(async () => {
  const b = await Browser.launch(chromium);
  try {
    const index = 'file://' + path.resolve(reportDir, 'index.html');
    const indexMs = await b.goto(index);
    const idx = await b.eval(`({
      title: document.title,
      sweepRows: document.querySelectorAll('#sweep-table tbody tr').length,
      scoreRows: document.querySelectorAll('#scores-table tbody tr').length,
      pairRows: document.querySelectorAll('#pairs-table tbody tr').length,
      svgs: document.querySelectorAll('figure svg').length,
      pareto: Array.from(document.querySelectorAll('figure svg title')).some(t => t.textContent.includes('L0 vs CE')),
      links: Array.from(document.querySelectorAll('#sweep-table a')).map(a => a.getAttribute('href')),
      scripts: document.scripts.length
    })`);
    check('index: title', idx.title.startsWith('Report: '), idx.title);
    check('index: sweep table', idx.sweepRows >= 1, JSON.stringify(idx));
    check('index: scores table', idx.scoreRows === idx.sweepRows, JSON.stringify(idx));
    check('index: pairs table', idx.pairRows >= 1, JSON.stringify(idx));
    check('index: plots inlined (Pareto, scores, distributions)', idx.pareto && idx.svgs >= 3, JSON.stringify(idx));
    check('index: links to every SAE page', idx.links.length === idx.sweepRows &&
          idx.links.every(h => fs.existsSync(path.resolve(reportDir, h))), JSON.stringify(idx.links));
    check('index: no scripts', idx.scripts === 0, String(idx.scripts));
    await b.screenshot(path.join(shotDir, 'report_index.png'));

    const page = 'file://' + path.resolve(reportDir, 'sae', saePage);
    const t0 = Date.now();
    const pageMs = await b.goto(page, 60000);
    const readyMs = await b.eval(`new Promise(res => { const t = performance.now();
      (function w() { if (document.body.getAttribute('data-ready') === '1') res(performance.now()); else setTimeout(w, 5); })(); })`);
    const sizeBytes = fs.statSync(path.resolve(reportDir, 'sae', saePage)).size;
    const pg = await b.eval(`({
      rows: document.querySelectorAll('#features tbody tr.feature').length,
      count: document.getElementById('count').textContent,
      scripts: document.scripts.length,
      bold: document.querySelectorAll('td.expl b, td.expl script').length,
      expl1: document.querySelector('tr.feature[data-i="1"] td.expl').textContent
    })`);
    check('page: one row per sampled feature', pg.rows === +nFeatures, JSON.stringify(pg));
    check('page: count shown', pg.count === `${nFeatures} of ${nFeatures} features`, pg.count);
    check('page: explanation with markup shows as text', pg.expl1 === EXPLANATION && pg.bold === 0, JSON.stringify(pg));
    check('page: only its own two scripts', pg.scripts === 2, String(pg.scripts));

    for (const key of ['score', 'density', 'max', 'id']) await sortedCheck(b, key);

    const flt = await b.eval(`(() => {
      const f = document.getElementById('filter');
      f.value = 'BOLD'; f.dispatchEvent(new Event('input'));
      const vis = Array.from(document.querySelectorAll('#features tbody tr.feature')).filter(r => !r.hidden);
      const r = { n: vis.length, ids: vis.map(r => r.getAttribute('data-i')), count: document.getElementById('count').textContent };
      f.value = 'cat'; f.dispatchEvent(new Event('input'));
      r.cat = Array.from(document.querySelectorAll('#features tbody tr.feature')).filter(r => !r.hidden).length;
      f.value = ''; f.dispatchEvent(new Event('input'));
      r.all = Array.from(document.querySelectorAll('#features tbody tr.feature')).filter(r => !r.hidden).length;
      return r; })()`);
    check('filter: case-insensitive match on explanation text', flt.n === 1 && flt.ids[0] === '1' &&
          flt.count === `1 of ${nFeatures} features`, JSON.stringify(flt));
    check('filter: other text, then cleared', flt.cat > 1 && flt.cat < +nFeatures && flt.all === +nFeatures, JSON.stringify(flt));

    const openStart = Date.now();
    const fv = await b.eval(`(() => {
      const row = document.querySelector('tr.feature[data-i="1"]');
      row.click();
      const d = row.nextElementSibling;
      const toks = Array.from(d.querySelectorAll('span.tok')).map(s => s.textContent);
      return {
        detail: d.classList.contains('detail'),
        quote: d.querySelector('blockquote.explanation').textContent,
        windows: d.querySelectorAll('.window').length,
        scriptTok: toks.includes('<script>'),
        scripts: document.scripts.length,
        tokens: toks.length,
        pred: d.querySelectorAll('.tokens.pred').length,
        truth: d.querySelectorAll('.tokens.act').length,
        exchange: Array.from(d.querySelectorAll('details.exchange pre')).map(p => p.textContent),
        status: d.querySelector('p.status').textContent,
        coloured: Array.from(d.querySelectorAll('span.tok')).filter(s => s.style.backgroundColor && !s.style.backgroundColor.endsWith(', 0)')).length
      }; })()`);
    const openMs = Date.now() - openStart;
    check('feature: detail opens under its row', fv.detail, JSON.stringify(fv).slice(0, 300));
    check('feature: explanation as text', fv.quote === EXPLANATION, fv.quote);
    check('feature: every window shown', fv.windows === +perFeature, `${fv.windows} windows`);
    check('feature: a "<script>" token shows as text, nothing injected', fv.scriptTok && fv.scripts === 2, JSON.stringify(fv).slice(0, 300));
    check('feature: simulation beside the truth', fv.pred > 0 && fv.truth === fv.windows + 0 && fv.pred === fv.truth - (fv.windows - fv.pred), JSON.stringify({ pred: fv.pred, truth: fv.truth }));
    check('feature: activations as colour', fv.coloured > 0, String(fv.coloured));
    check('feature: exact prompt and reply', fv.exchange.length >= 3 &&
          fv.exchange.some(t => t.includes('You explain what makes a neuron fire.')) &&
          fv.exchange[fv.exchange.length - 1] === EXPLANATION, JSON.stringify(fv.exchange).slice(0, 300));
    check('feature: score or reason shown', /score|no score|failed/.test(fv.status), fv.status);
    await b.eval(`document.querySelector('tr.feature[data-i="1"]').scrollIntoView(); document.querySelector('details.exchange').open = true;`);
    await b.screenshot(path.join(shotDir, 'report_feature.png'));

    const offsite = b.requests.filter(u => !u.startsWith('file://') && !u.startsWith('data:') && !u.startsWith('about:'));
    check('network: nothing fetched but the pages themselves', offsite.length === 0 &&
          b.requests.every(u => !u.startsWith('file://') || u.endsWith('.html')), JSON.stringify(b.requests));
    check('no script errors', b.exceptions.length === 0, b.exceptions.join('\n').slice(0, 500));
    console.log('timing ' + JSON.stringify({ index_load_ms: indexMs, page_load_ms: pageMs, page_ready_ms: Math.round(readyMs),
      page_total_ms: Date.now() - t0, open_feature_ms: openMs, page_bytes: sizeBytes, features: +nFeatures,
      windows_per_feature: +perFeature }));
  } catch (e) {
    failed++;
    console.log('not ok - driver: ' + e.message);
  } finally {
    await b.close();
  }
  process.exit(failed ? 1 : 0);
})();
