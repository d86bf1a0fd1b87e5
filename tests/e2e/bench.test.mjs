// The benchmark page (bench.html) and every core: a ?model=… query runs one configuration and
// exposes its result as JSON in [data-testid=bench-result]. These tests assert what the figures
// mean, never how fast they are (speed is a benchmark, README Speed):
// - the student on 2 workers with the relaxed-SIMD direct convolution gives the mask of Burn's
//   own convolution on 1 worker (Dice >= 0.999), and each worker reports its memory;
// - HD-BET, the model the target is about, the same on the sample;
// - the fallback engine for browsers without relaxed SIMD (forced with ?engine=simd128) gives the
//   same mask, and fetches only its own module; it refuses the relaxed-SIMD kernel with a message;
// - the form runs a matrix and fills the table; a model that does not exist is a clear error;
// - the main page's Device panel shows the worker count (the cores by default) and takes another;
// - no request carries a body, nothing leaves the origin.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { tid, openApp, loadSample, runAndWait, networkProblems, REPO, TEST_TIMEOUT_MS, RUN_TIMEOUT_MS } from './lib.mjs';

const catalog = JSON.parse(fs.readFileSync(path.join(REPO, 'models/index.json'), 'utf8'));

async function benchResult(query) {
  const app = await openApp({ page: `bench.html?${query}` });
  opened.push(app);
  await app.page.waitForFunction(
    () => document.querySelector('[data-testid="bench-result"]').textContent || !document.querySelector('[data-testid="bench-error"]').hidden,
    null,
    { timeout: RUN_TIMEOUT_MS },
  );
  const error = await app.page.$eval(tid('bench-error'), (e) => (e.hidden ? '' : e.textContent));
  return { app, error, result: error ? null : JSON.parse(await app.page.textContent(tid('bench-result'))) };
}

const opened = [];
after(async () => {
  for (const app of opened) await app.close();
});

/** What every CPU result must hold, whatever the model. */
function assertCpuResult(r, { model, conv, workers }) {
  assert.equal(r.model, model);
  assert.equal(r.backend, 'cpu');
  assert.equal(r.cpu_conv, conv);
  assert.equal(r.workers, workers);
  assert.equal(r.memory_mb.workers.length, workers > 1 ? workers : 0, 'one memory figure per helper');
  for (const mb of [r.memory_mb.engine, ...r.memory_mb.workers]) assert.ok(mb > 1, `memory ${mb} MB`);
  for (const s of ['read', 'preprocess', 'inference', 'postprocess', 'total']) assert.ok(r.stages_ms[s] >= 0, s);
  assert.ok(r.stages_ms.total >= r.stages_ms.inference);
  // The FLOPs are the package's per-patch figure times the windows (the sample fits its patches).
  const entry = catalog.find((m) => m.id === model);
  const perPatch = entry.flops_per_patch * (r.patch.reduce((a, b) => a * b, 1) / entry.patch.reduce((a, b) => a * b, 1));
  assert.ok(Math.abs(r.conv_gflop * 1e9 - perPatch * r.windows) / (perPatch * r.windows) < 0.02, `conv GFLOP ${r.conv_gflop}`);
  assert.ok(Math.abs(r.gflops - r.conv_gflop / (r.stages_ms.inference / 1000)) < 1e-6 * r.gflops + 1e-9);
  assert.ok(r.machine.cores >= 1);
}

describe('bench.html', { timeout: 3 * TEST_TIMEOUT_MS }, () => {
  test('student-s on 2 workers with the relaxed-SIMD kernel gives the mask of Burn on 1', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { app, error, result: r } = await benchResult('model=student-s&backend=cpu&conv=relaxed-simd&workers=2&runs=1&check=1');
    assert.equal(error, '');
    assertCpuResult(r, { model: 'student-s', conv: 'relaxed-simd', workers: 2 });
    t.diagnostic(`student-s: ${r.stages_ms.inference.toFixed(0)} ms inference on 2 workers, Burn on 1: ${r.check.reference_inference_ms.toFixed(0)} ms; Dice ${r.check.dice}`);
    assert.ok(r.check.dice >= 0.999, `Dice ${r.check.dice}`);
    assert.ok(r.windows >= 2, 'the sample needs several windows, which the workers share');
    assert.deepEqual(networkProblems(app.log, app.server), []);
    // Helper workers loaded the weights themselves, from this origin.
    assert.ok(app.log.workers.filter((u) => u.endsWith('/worker.js')).length >= 3, `workers: ${app.log.workers.join(', ')}`);
  });

  // One worker: a single pass has nothing for a second one (student-s above covers the pool).
  test('HD-BET in one pass, as its own code runs, with the relaxed-SIMD kernels gives the mask of Burn', { timeout: 2 * TEST_TIMEOUT_MS }, async (t) => {
    const { app, error, result: r } = await benchResult('model=hd-bet&backend=cpu&conv=relaxed-simd&workers=1&runs=1&check=1');
    assert.equal(error, '');
    assertCpuResult(r, { model: 'hd-bet', conv: 'relaxed-simd', workers: 1 });
    // The whole padded volume in one window: the package asks for one pass and it fits.
    assert.equal(r.windows, 1);
    assert.deepEqual(r.patch, [128, 160, 128]);
    t.diagnostic(`hd-bet: ${r.stages_ms.inference.toFixed(0)} ms inference on 1 worker, Burn's kernels: ${r.check.reference_inference_ms.toFixed(0)} ms; Dice ${r.check.dice}`);
    assert.ok(r.check.dice >= 0.999, `Dice ${r.check.dice}`);
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });

  test('the fallback engine without relaxed SIMD (?engine=simd128) gives the mask of Burn on 1 worker', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { app, error, result: r } = await benchResult('model=student-s&backend=cpu&workers=2&runs=1&check=1&engine=simd128');
    assert.equal(error, '');
    assert.equal(r.engine, 'simd128');
    // Its default convolution is the direct kernel on SIMD128 lanes: it has no relaxed SIMD.
    assertCpuResult(r, { model: 'student-s', conv: 'simd128', workers: 2 });
    t.diagnostic(`student-s, fallback engine: ${r.stages_ms.inference.toFixed(0)} ms inference on 2 workers; Dice ${r.check.dice}`);
    assert.ok(r.check.dice >= 0.999, `Dice ${r.check.dice}`);
    // The engine and both helpers fetched the fallback module, never the relaxed-SIMD one.
    const wasm = app.log.requests.map((q) => new URL(q.url).pathname).filter((p) => p.endsWith('.wasm'));
    assert.ok(wasm.filter((p) => p.endsWith('/bedside_simd128_bg.wasm')).length >= 3, `wasm fetched: ${wasm.join(', ')}`);
    assert.ok(!wasm.some((p) => p.endsWith('/bedside_bg.wasm')), `wasm fetched: ${wasm.join(', ')}`);
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });

  test('the fallback engine refuses the relaxed-SIMD kernel with a clear message', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { error } = await benchResult('model=student-s&backend=cpu&workers=1&conv=relaxed-simd&engine=simd128');
    assert.match(error, /this engine cannot run the relaxed-simd convolution; it has burn, simd128, portable/);
  });

  test('the form runs its matrix into the table; an unknown model is a clear error', { timeout: TEST_TIMEOUT_MS }, async () => {
    const { app, error } = await benchResult('model=no-such-model&backend=cpu&workers=1');
    assert.match(error, /no model "no-such-model"/);
    const page = app.page;
    await page.fill(tid('bench-workers'), '1');
    await page.uncheck('input[name="conv"][value="relaxed-simd"]');
    await page.check('input[name="conv"][value="simd128"]');
    await page.click(tid('bench-run'));
    await page.waitForFunction(() => /Done: 1 configuration/.test(document.querySelector('[data-testid="bench-status"]').textContent), null, { timeout: RUN_TIMEOUT_MS });
    const cells = await page.$$eval(`${tid('bench-table')} tbody tr td`, (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(cells.slice(0, 4), ['student-s', 'cpu', 'simd128', '1']);
    const r = JSON.parse(await page.textContent(tid('bench-result')));
    assertCpuResult(r, { model: 'student-s', conv: 'simd128', workers: 1 });
  });

  test('the Device panel shows the CPU workers, the cores by default, and a run uses the count asked for', { timeout: TEST_TIMEOUT_MS }, async () => {
    const app = await openApp();
    opened.push(app);
    const { page } = app;
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert.equal(await page.inputValue(tid('workers-input')), String(cores));
    assert.match(await page.textContent(tid('workers-note')), new RegExp(`reports ${cores} cores?; CPU runs use ${cores}\\.`));
    // Chromium has relaxed SIMD: the engine with fused multiply-add loaded.
    await page.waitForFunction(() => /CPU engine: relaxed SIMD \(fused multiply-add\)\./.test(document.querySelector('[data-testid="workers-note"]').textContent), null, { timeout: 60_000 });
    await loadSample(page);
    await page.selectOption(tid('model-select'), 'student-s');
    await page.fill(tid('workers-input'), '1');
    await page.dispatchEvent(tid('workers-input'), 'change');
    await runAndWait(page, 'cpu');
    assert.match(await page.textContent(tid('workers-note')), /CPU runs use 1\. Last run: 1 worker, peak wasm memory \d+ MB \(engine\)\./);
    await page.fill(tid('workers-input'), '2');
    await page.dispatchEvent(tid('workers-input'), 'change');
    await runAndWait(page, 'cpu');
    assert.match(await page.textContent(tid('workers-note')), /Last run: 2 workers, peak wasm memory \d+ \/ \d+ \/ \d+ MB \(engine \/ each helper\)\./);
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
