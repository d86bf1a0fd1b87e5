// Models in the page beyond the default: importing HD-BET's weights as they ship (a legacy PyTorch
// .model file), converted in the worker, listed, usable for a run, never uploaded, with clear
// messages for bad files; and HD-BET's optional 5-fold ensemble.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tid, openApp, errorText, loadSample, networkProblems, HDBET_FOLD0 } from './lib.mjs';

async function importFile(page, file) {
  await page.setInputFiles(tid('weights-input'), file);
  await page.waitForFunction(
    () => {
      const err = document.querySelector('[data-testid="error"]');
      return (err && !err.hidden) || /^Imported/.test(document.querySelector('[data-testid="status"]').textContent);
    },
    null,
    { timeout: 5 * 60_000 },
  );
  return errorText(page);
}

const modelOptions = (page) => page.$$eval(`${tid('model-select')} option`, (os) => os.map((o) => o.textContent));

describe('models: imported weights and the ensemble', { timeout: 15 * 60_000 }, () => {
  let app;
  let fold0;
  before(async () => {
    assert.ok(fs.existsSync(HDBET_FOLD0), `missing ${HDBET_FOLD0} (run ./scripts/fetch-data)`);
    fold0 = fs.readFileSync(HDBET_FOLD0);
    app = await openApp({ webgpu: false });
  });
  after(async () => {
    if (app) await app.close();
  });

  test('a truncated fold file is refused and the model list is unchanged', async () => {
    const before = await modelOptions(app.page);
    const err = await importFile(app.page, { name: '0.model', mimeType: 'application/octet-stream', buffer: fold0.subarray(0, fold0.length >> 1) });
    assert.match(err, /Could not import 0\.model: .*truncated/i);
    assert.deepEqual(await modelOptions(app.page), before);
  });

  test('a NIfTI file offered as weights is named as not a checkpoint', async () => {
    const err = await importFile(app.page, { name: 'ch2.model', mimeType: 'application/octet-stream', buffer: Buffer.from('\x1f\x8b\x08\x00 not a pickle') });
    assert.match(err, /not a PyTorch checkpoint/i);
  });

  test('a fold with a NaN weight is refused', async () => {
    const poisoned = Buffer.from(fold0);
    poisoned.writeFloatLE(NaN, poisoned.length - 4);
    // (Playwright passes buffers over 50 MB only as files.)
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-e2e-')), 'nan.model');
    fs.writeFileSync(file, poisoned);
    const err = await importFile(app.page, file);
    assert.match(err, /NaN/);
  });

  test('the real fold 0 imports: listed, selected, described', async () => {
    const err = await importFile(app.page, HDBET_FOLD0);
    assert.equal(err, '');
    const selected = await app.page.$eval(tid('model-select'), (s) => s.options[s.selectedIndex].textContent);
    assert.match(selected, /HD-BET \(fold 0\), from 0\.model/);
    const info = await app.page.textContent(tid('model-info'));
    assert.match(info, /16,349,655 parameters/);
  });

  test('a run with the imported model loads it from memory and starts segmenting (then Cancel)', async () => {
    await loadSample(app.page);
    const served = app.server.requests.length;
    await app.page.selectOption(tid('backend-select'), 'cpu');
    await app.page.click(tid('run-button'));
    // "Segmenting" comes after the package was loaded onto the device: the converted weights work.
    await app.page.waitForFunction(() => /Segmenting|Preprocess|Inference|window/i.test(document.querySelector('[data-testid="status"]').textContent) || !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 5 * 60_000 });
    assert.equal(await errorText(app.page), '');
    const fetched = app.server.requests.slice(served).map((r) => r.url);
    assert.ok(!fetched.some((u) => /weights\.safetensors/.test(u)), `the served weights were fetched: ${fetched}`);
    await app.page.click(tid('cancel-button'));
    assert.equal(await app.page.textContent(tid('status')), 'Cancelled');
  });

  test('the ensemble option is off for an imported single fold', async () => {
    assert.equal(await app.page.$eval(tid('ensemble'), (c) => c.disabled), true);
  });

  test('HD-BET offers its 5-fold ensemble: a run fetches the 4 member files and starts segmenting (then Cancel)', async () => {
    await app.page.selectOption(tid('model-select'), 'hd-bet');
    assert.equal(await app.page.$eval(tid('ensemble'), (c) => c.disabled), false);
    await app.page.check(tid('ensemble'));
    const served = app.server.requests.length;
    await app.page.click(tid('run-button'));
    await app.page.waitForFunction(() => /Segmenting|inference/i.test(document.querySelector('[data-testid="status"]').textContent) || !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 5 * 60_000 });
    assert.equal(await errorText(app.page), '');
    const fetched = app.server.requests.slice(served).map((r) => r.url);
    for (const f of ['weights.safetensors', 'fold1.safetensors', 'fold2.safetensors', 'fold3.safetensors', 'fold4.safetensors']) {
      assert.ok(fetched.some((u) => u.endsWith(`/models/hd-bet/${f}`)), `${f} not fetched: ${fetched}`);
    }
    await app.page.click(tid('cancel-button'));
    assert.equal(await app.page.textContent(tid('status')), 'Cancelled');
  });

  test('no request carried the weights or the image anywhere', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
