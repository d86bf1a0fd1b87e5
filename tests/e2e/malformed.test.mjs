// The malformed-file corpus (issue 20) in the page: every file of tests/malformed/corpus.json is
// given to the page the way a user would give it (a volume to the volume input, an HD-BET fold to
// the weights input, a package's model.json and weights.safetensors to the package input), and the
// page shows exactly the corpus's message after the file's name, keeps the volume loaded before,
// never freezes, and sends nothing anywhere. The CLI's side is tests/malformed_corpus.rs.
//   node --test tests/e2e/malformed.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO, tid, openApp, errorText, loadSample, waitForVolume, networkProblems } from './lib.mjs';

const DIR = path.join(REPO, 'tests/malformed');
const corpus = JSON.parse(fs.readFileSync(path.join(DIR, 'corpus.json'), 'utf8')).files;

/** Give `files` to input `input` and wait for the page's error (every file here must get one). */
async function refused(page, input, files) {
  await page.evaluate(() => {
    document.querySelector('[data-testid="error"]').hidden = true;
  });
  await page.setInputFiles(tid(input), files);
  await page.waitForFunction(() => !document.querySelector('[data-testid="error"]').hidden, null, { timeout: 120_000 });
  return errorText(page);
}

describe('the malformed-file corpus in the page', { timeout: 20 * 60_000 }, () => {
  let app;
  before(async () => {
    app = await openApp({ webgpu: false });
    await loadSample(app.page);
  });
  after(async () => {
    if (app) await app.close();
  });

  test('every file is refused with its message, and the sample stays loaded', async () => {
    let checked = 0;
    for (const entry of corpus.filter((e) => !e.accepted)) {
      const where = path.join(DIR, entry.file);
      let shown;
      let expected;
      if (entry.kind === 'volume') {
        shown = await refused(app.page, 'volume-input', [where]);
        expected = `Could not read ${entry.file}: ${entry.message} Still loaded: ch2.nii.gz.`;
      } else if (entry.kind === 'checkpoint') {
        shown = await refused(app.page, 'weights-input', [where]);
        expected = `Could not import ${entry.file}: ${entry.message} The model list is unchanged.`;
      } else {
        shown = await refused(app.page, 'package-input', [path.join(where, 'model.json'), path.join(where, 'weights.safetensors')]);
        expected = `Could not import model.json: ${entry.message} The model list is unchanged.`;
      }
      assert.equal(shown, expected, entry.file);
      checked += 1;
    }
    assert.ok(checked >= 30, `only ${checked} files`);
    assert.match(await app.page.textContent(tid('volume-info')), /^ch2\.nii\.gz: 181 × 217 × 181/);
    assert.equal(await app.page.$eval(tid('run-button'), (b) => b.disabled), false, 'the page is still usable');
    console.log(`# malformed corpus in the page: ${checked} files, each refused with its message`);
  });

  test('a negative voxel size is read as nibabel reads it', async () => {
    for (const entry of corpus.filter((e) => e.accepted)) {
      await app.page.setInputFiles(tid('volume-input'), [path.join(DIR, entry.file)]);
      await waitForVolume(app.page);
      assert.equal(await errorText(app.page), '', entry.file);
      const sizes = entry.accepted.spacing.map((v) => v.toFixed(2)).join(' × ');
      const info = await app.page.textContent(tid('volume-info'));
      assert.ok(info.startsWith(`${entry.file}: `) && info.includes(`, ${sizes} mm`), info);
    }
  });

  test('no request carried a file anywhere', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
