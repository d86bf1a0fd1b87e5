// Opening a bedside package in the page (issue 4, item 4: "any package the user uploads"): the
// two files of a shipped student are picked, checked in the worker, listed and run on the sample.
// A lone model.json, weights that do not fit the network and NaN weights get clear messages and
// leave the model list as it was; no request leaves the origin.
//   node --test --test-concurrency=1 tests/e2e/packages.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RUN_TIMEOUT_MS, tid, openApp, loadSample, runAndWait, errorText, readLabelVolumes, networkProblems } from './lib.mjs';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const pkg = (id, file) => path.join(REPO, 'models', id, file);

async function pick(page, files) {
  await page.evaluate(() => {
    document.querySelector('[data-testid="error"]').hidden = true;
    document.querySelector('[data-testid="status"]').textContent = '';
  });
  await page.setInputFiles(tid('package-input'), files);
  await page.waitForFunction(
    () => !document.querySelector('[data-testid="error"]').hidden || /^Imported/.test(document.querySelector('[data-testid="status"]').textContent),
    null,
    { timeout: 120_000 },
  );
}

const options = (page) => page.$$eval(`${tid('model-select')} option`, (o) => o.map((x) => x.textContent));

/** student-s's weights with one value made NaN (safetensors: 8-byte header length, header, data). */
function nanWeights() {
  const bytes = fs.readFileSync(pkg('student-s', 'weights.safetensors'));
  const headerLength = Number(bytes.readBigUInt64LE(0));
  bytes.writeFloatLE(NaN, 8 + headerLength + 4 * 10);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-nan-'));
  const file = path.join(dir, 'weights.safetensors');
  fs.writeFileSync(file, bytes);
  return file;
}

describe('bedside packages opened in the page', { timeout: 2 * RUN_TIMEOUT_MS }, () => {
  let app;
  before(async () => {
    app = await openApp({ webgpu: false });
    await loadSample(app.page);
  });
  after(async () => {
    if (app) await app.close();
  });

  test('bad packages are refused with a reason and change nothing', async () => {
    const page = app.page;
    const before = await options(page);
    await pick(page, [pkg('student-s', 'model.json')]);
    assert.match(await errorText(page), /A bedside package is two files: choose its model\.json and its weights\.safetensors together/);
    await pick(page, [pkg('student-s', 'model.json'), pkg('student-m', 'weights.safetensors')]);
    assert.match(await errorText(page), /^Could not import model\.json: the weights do not fit the network/);
    await pick(page, [pkg('student-s', 'model.json'), nanWeights()]);
    assert.match(await errorText(page), /NaN or infinite/);
    assert.deepEqual(await options(page), before);
  });

  test('a shipped student picked as its two files is listed and segments the sample', async () => {
    const page = app.page;
    await pick(page, [pkg('student-s', 'model.json'), pkg('student-s', 'weights.safetensors')]);
    assert.equal(await errorText(page), '');
    assert.match(await page.textContent(tid('model-info')), /^Imported model\.json: Student S .*37,862 parameters/);
    const selected = await page.$eval(tid('model-select'), (s) => s.options[s.selectedIndex].textContent);
    assert.match(selected, /from model\.json$/);
    await runAndWait(page, 'cpu');
    const brain = (await readLabelVolumes(page)).find((l) => l.value === 1);
    const mm3 = Number(brain.mm3);
    // A human brain's volume (HD-BET's mask of Colin27: 1.93 L).
    assert.ok(mm3 > 1.2e6 && mm3 < 2.4e6, `${mm3} mm³`);
  });

  test('no request left the origin or carried the package', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
