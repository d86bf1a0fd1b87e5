// End-to-end: the Colin27 sample through the whole app, on CPU and on WebGPU.
// Also records every network request during the run (test 2 of the plan).
//   node --test --test-concurrency=1 tests/e2e/
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  ARTIFACTS, TEST_TIMEOUT_MS, CSP, tid, openApp, loadSample, runAndWait, readTimings,
  readLabelVolumes, screenshot, niftiHeader, networkProblems,
} from './lib.mjs';

const CH2_DIMS = [181, 217, 181];
// The full run is on the CPU backend by default: on a machine without a GPU, Chromium's WebGPU is
// SwiftShader, a CPU emulation about 6x slower than wasm flex (STACK.md), which would put HD-BET's
// ~2 TFLOP beyond any CI budget. WebGPU in the browser is covered by the wasm-bindgen test
// (same output as the CPU, tests/backend_agreement.rs) and by webgpu_unavailable.test.mjs.
// BEDSIDE_E2E_BACKENDS=cpu,webgpu adds the full WebGPU run (use it on a machine with a GPU).
const BACKENDS = (process.env.BEDSIDE_E2E_BACKENDS || 'cpu').split(',').map((s) => s.trim()).filter(Boolean);

for (const backend of BACKENDS) {
  describe(`sample (Colin27 T1) on ${backend}`, { timeout: TEST_TIMEOUT_MS }, () => {
    let app;
    let status;

    before(async () => {
      app = await openApp({ webgpu: true });
      await loadSample(app.page);
      status = await runAndWait(app.page, backend);
      await screenshot(app.page, backend === 'cpu' ? 'e2e-sample.png' : `e2e-sample-${backend}.png`);
    }, { timeout: TEST_TIMEOUT_MS });

    after(async () => {
      if (app) await app.close();
    });

    test('the page is served with the strict CSP and runs no inline script', async () => {
      assert.equal(app.response.headers()['content-security-policy'], CSP);
      const meta = await app.page.$eval('meta[http-equiv="Content-Security-Policy"]', (m) => m.content);
      assert.equal(meta, CSP);
      const inline = await app.page.$$eval('script:not([src])', (s) => s.length);
      assert.equal(inline, 0, 'inline <script> elements in the page');
    });

    test('runs on the requested backend', async () => {
      assert.match(status, backend === 'cpu' ? /on CPU/ : /on WebGPU/);
      const info = await app.page.textContent(tid('backend-info'));
      assert.match(info, backend === 'cpu' ? /Using CPU/ : /Using WebGPU/);
    });

    test('the brain mask has a human brain volume', async () => {
      const volumes = await readLabelVolumes(app.page);
      assert.ok(volumes.length >= 1, 'no label volumes');
      const brain = volumes.find((v) => /brain/i.test(v.name)) ?? volumes.find((v) => v.value === 1);
      assert.ok(brain, `no brain label in ${JSON.stringify(volumes)}`);
      assert.ok(brain.mm3 > 1_000_000 && brain.mm3 < 2_500_000, `brain volume ${brain.mm3} mm³ is not a human brain`);
    });

    test('the timings table has numbers for every stage', async (t0) => {
      const t = await readTimings(app.page);
      t0.diagnostic(`timings on ${backend} (ms): ${JSON.stringify(t)}`);
      for (const stage of ['read', 'preprocess', 'inference', 'postprocess', 'total']) {
        const v = Number(t[stage]);
        assert.ok(Number.isFinite(v) && v >= 0, `timing ${stage} = ${JSON.stringify(t[stage])}`);
      }
      assert.ok(Number(t.total) > 0);
    });

    test('Save mask downloads a gzip NIfTI on the input grid', async () => {
      const [download] = await Promise.all([app.page.waitForEvent('download'), app.page.click(tid('save-mask'))]);
      assert.match(download.suggestedFilename(), /\.nii\.gz$/);
      assert.match(download.url(), /^blob:/);
      const file = path.join(ARTIFACTS, `e2e-mask-${backend}.nii.gz`);
      await download.saveAs(file);
      const bytes = fs.readFileSync(file);
      assert.equal(bytes[0], 0x1f);
      assert.equal(bytes[1], 0x8b);
      const h = niftiHeader(bytes);
      assert.deepEqual(h.dims.slice(0, 3), CH2_DIMS);
      assert.ok(h.dim[0] === 3 || (h.dim[0] >= 4 && h.dims.slice(3).every((d) => d === 1)), `mask is not 3D: ${h.dim}`);
      assert.ok(h.magic === 'n+1' || h.magic === 'ni1', `magic ${h.magic}`);
      const n = CH2_DIMS[0] * CH2_DIMS[1] * CH2_DIMS[2];
      assert.ok(h.raw.length >= h.voxOffset + (n * h.bitpix) / 8, 'mask data is truncated');
      // Non-empty: at least one labelled voxel (uint8 masks are the norm; check bytes generically).
      const data = h.raw.subarray(h.voxOffset);
      assert.ok(data.some((b) => b !== 0), 'mask is all zeros');
    });

    test('Copy diagnostics gives JSON without image data', async () => {
      await app.page.click(tid('copy-diagnostics'));
      const text = await app.page.textContent(tid('diagnostics-output'));
      const d = JSON.parse(text);
      for (const k of ['app_version', 'user_agent', 'backend', 'webgpu', 'probe_ms', 'timings_ms', 'model']) assert.ok(k in d, `diagnostics lack ${k}`);
      assert.equal(d.backend.in_use, backend);
      // Kept as an artifact: the adapter and stage timings of this run, for the README's table.
      fs.writeFileSync(path.join(ARTIFACTS, `e2e-diagnostics-${backend}.json`), text);
      assert.ok(text.length < 20_000, 'diagnostics are suspiciously large');
      assert.doesNotMatch(text, /ch2|mask_nii|"mm3"/, 'diagnostics mention the file or results');
    });

    test('network: only same-origin GETs without a body (page and worker)', async () => {
      const problems = networkProblems(app.log, app.server);
      assert.deepEqual(problems, []);
      const urls = app.log.requests.map((r) => r.url);
      // The worker's own fetches are in the log too, so the check above covered them.
      assert.ok(urls.some((u) => u.endsWith('/bedside.js')), 'worker request for bedside.js not recorded');
      assert.ok(urls.some((u) => u.endsWith('/weights.safetensors')), 'worker request for the weights not recorded');
      assert.ok(urls.some((u) => u.endsWith('/vendor/niivue/index.js')), 'NiiVue not loaded from our origin');
      assert.ok(app.server.requests.length > 0);
    });
  });
}
