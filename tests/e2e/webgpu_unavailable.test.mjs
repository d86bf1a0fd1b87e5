// Chromium WITHOUT --enable-unsafe-webgpu (no adapter on this machine): forcing WebGPU must say
// "WebGPU unavailable" promptly; Auto must fall back to CPU. Also exercises Cancel.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tid, openApp, errorText, loadSample, networkProblems } from './lib.mjs';

describe('no WebGPU adapter', { timeout: 15 * 60_000 }, () => {
  let app;
  before(async () => {
    app = await openApp({ webgpu: false });
    await loadSample(app.page);
  });
  after(async () => {
    if (app) await app.close();
  });

  test('the device panel says WebGPU is unavailable, with a reason', async () => {
    await app.page.waitForFunction(() => /WebGPU unavailable/.test(document.querySelector('[data-testid="device"]').textContent), null, { timeout: 30_000 });
    const text = await app.page.textContent(tid('device'));
    assert.match(text, /WebGPU unavailable: \S+/);
  });

  test('forcing WebGPU shows a clear error instead of hanging', async () => {
    await app.page.selectOption(tid('backend-select'), 'webgpu');
    const t0 = Date.now();
    await app.page.click(tid('run-button'));
    await app.page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 120_000 });
    const err = await errorText(app.page);
    assert.match(err, /WebGPU unavailable/);
    assert.ok(Date.now() - t0 < 120_000);
    // Usable again.
    await app.page.waitForFunction(() => !document.querySelector('[data-testid="run-button"]').disabled, null, { timeout: 10_000 });
  });

  test('Auto falls back to CPU (then Cancel leaves the page usable)', async () => {
    await app.page.selectOption(tid('backend-select'), 'auto');
    await app.page.click(tid('run-button'));
    // The backend is reported before the model loads and inference starts.
    await app.page.waitForFunction(
      () => /Using CPU/.test(document.querySelector('[data-testid="backend-info"]').textContent) || !document.querySelector('[data-testid="error"]').hidden,
      null,
      { timeout: 5 * 60_000 },
    );
    assert.equal(await errorText(app.page), '');
    assert.match(await app.page.textContent(tid('backend-info')), /Using CPU/);
    assert.match(await app.page.textContent(tid('device')), /Backend in use: CPU/);
    const cancelDisabled = await app.page.$eval(tid('cancel-button'), (b) => b.disabled);
    if (!cancelDisabled) {
      await app.page.click(tid('cancel-button'));
      await app.page.waitForFunction(() => /Cancelled/.test(document.querySelector('[data-testid="status"]').textContent), null, { timeout: 10_000 });
    }
    await app.page.waitForFunction(() => !document.querySelector('[data-testid="run-button"]').disabled, null, { timeout: 60_000 });
    assert.equal(await app.page.$eval(tid('cancel-button'), (b) => b.disabled), true);
  });

  test('the engine restarts after Cancel (version shown again)', async () => {
    await app.page.waitForFunction(() => !/loading/.test(document.getElementById('engine-version').textContent), null, { timeout: 60_000 });
    assert.doesNotMatch(await app.page.textContent('#engine-version'), /unavailable/);
  });

  test('network: same origin only', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
