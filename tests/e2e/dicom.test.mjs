// DICOM series in the page (issue 20): the series' files, a folder or a ZIP of them, read in the
// tab and never sent anywhere. Series written by pydicom from Colin27 with its geometry
// (tests/reference/make_dicom_series.py, the same as tests/dicom_series.rs checks against dcm2niix).
// One series loads at once and segments as `bedside segment FOLDER` does natively; two series are
// listed (description, modality, slices, size) and nothing loads until one is picked; a ZIP loads
// as its folder; a series with a missing slice is refused with the reason. "Save as DICOM SEG"
// gives a Segmentation object that references the series and holds the page's mask.
//   node --test --test-concurrency=1 tests/e2e/dicom.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { ARTIFACTS, REPO, tid, openApp, errorText, maskForeground, maskDice, runAndWait, waitForVolume, networkProblems } from './lib.mjs';

const BIN = process.env.BEDSIDE_BIN || path.join(os.homedir(), '.cache/bedside/target/release/bedside');
const PYTHON = process.env.BEDSIDE_PYTHON || path.join(os.homedir(), '.cache/bedside/venv/bin/python');
const WORK = path.join(ARTIFACTS, 'e2e-dicom');

const filesOf = (name) => fs.readdirSync(path.join(WORK, name)).sort().map((f) => path.join(WORK, name, f));
const info = (page) => page.$eval(tid('volume-info'), (e) => e.textContent);
const seriesOptions = (page) => page.$$eval(`${tid('series-pick')} option`, (os) => os.map((o) => o.textContent));

/** Give the page these files and wait until it has answered: a new volume, a list to choose
 * from, or an error (not just "not checking": the previous volume's status would pass that). */
async function give(page, files) {
  const before = await info(page);
  await page.setInputFiles(tid('volume-input'), files);
  await page.waitForFunction(
    (previous) => {
      const err = document.querySelector('[data-testid="error"]');
      const status = document.querySelector('[data-testid="status"]').textContent;
      const changed = document.querySelector('[data-testid="volume-info"]').textContent !== previous;
      return (err && !err.hidden) || /choose one/.test(status) || (changed && !/Checking|Reading/.test(status));
    },
    before,
    { timeout: 120_000 },
  );
}

describe('DICOM series in the page', { timeout: 15 * 60_000 }, () => {
  let app;
  before(async () => {
    fs.rmSync(WORK, { recursive: true, force: true });
    execFileSync(PYTHON, ['tests/reference/make_dicom_series.py', 'www/sample/ch2.nii.gz', WORK], { cwd: REPO });
    const zip = ['import sys, os, zipfile', 'with zipfile.ZipFile(sys.argv[2], "w", zipfile.ZIP_DEFLATED) as z:', '    for n in sorted(os.listdir(sys.argv[1])): z.write(os.path.join(sys.argv[1], n), n)'];
    execFileSync(PYTHON, ['-c', zip.join('\n'), path.join(WORK, 'oblique'), path.join(WORK, 'oblique.zip')]);
    app = await openApp({ webgpu: false });
  });
  after(async () => {
    if (app) await app.close();
  });

  test('one series loads, and segments as the CLI segments its folder', async () => {
    await give(app.page, filesOf('shuffled'));
    await waitForVolume(app.page);
    assert.match(await info(app.page), /91 × 109 × 40 voxels/);
    assert.deepEqual(await seriesOptions(app.page), ['series 2, "bedside test shuffled", MR, 40 slices of 91×109']);
    await app.page.selectOption(tid('model-select'), 'student-s');
    await runAndWait(app.page, 'cpu');
    const [download] = await Promise.all([app.page.waitForEvent('download'), app.page.click(tid('save-mask'))]);
    const mask = path.join(WORK, 'page-mask.nii.gz');
    await download.saveAs(mask);
    const native = path.join(WORK, 'cli-mask.nii.gz');
    execFileSync(BIN, ['segment', path.join(WORK, 'shuffled'), '--model', 'student-s', '--out', native], { cwd: REPO });
    const [a, b] = [maskForeground(fs.readFileSync(mask)), maskForeground(fs.readFileSync(native))];
    assert.ok(a.some((v) => v), 'an empty mask proves nothing');
    const d = maskDice(a, b);
    console.log(`# DICOM series, student-s: Dice page vs CLI ${d.toFixed(6)}`);
    assert.ok(d >= 0.999, `the page's mask differs from the CLI's: Dice ${d}`);

    // "Save as DICOM SEG": the same mask as a Segmentation object referencing the series, as
    // highdicom reads it (pixel for pixel through world coordinates) and dciodvfy passes it.
    const [segDownload] = await Promise.all([app.page.waitForEvent('download'), app.page.click(tid('save-seg'))]);
    assert.equal(segDownload.suggestedFilename(), 'series_2_seg.dcm', 'loose files: named after their series number');
    const seg = path.join(WORK, 'page-seg.dcm');
    await segDownload.saveAs(seg);
    const checked = JSON.parse(execFileSync(PYTHON, ['tests/reference/check_seg.py', seg, path.join(WORK, 'shuffled'), mask], { cwd: REPO, encoding: 'utf8' }));
    assert.equal(checked.series_ok, true, JSON.stringify(checked));
    assert.equal(checked.mismatched, 0, JSON.stringify(checked));
    assert.ok(checked.foreground > 10_000, JSON.stringify(checked));
    assert.equal(checked.segments[0].algorithm_name, 'student-s');
    // The same weights give the same algorithm version in the page and the CLI.
    const cliSeg = path.join(WORK, 'cli-seg.dcm');
    execFileSync(BIN, ['segment', path.join(WORK, 'shuffled'), '--model', 'student-s', '--out-seg', cliSeg], { cwd: REPO });
    const cli = JSON.parse(execFileSync(PYTHON, ['tests/reference/check_seg.py', cliSeg, path.join(WORK, 'shuffled'), native], { cwd: REPO, encoding: 'utf8' }));
    assert.equal(checked.segments[0].algorithm_version, cli.segments[0].algorithm_version);
    const verify = spawnSync('dciodvfy', [seg], { encoding: 'utf8' });
    const errors = (verify.stderr + verify.stdout).split('\n').filter((l) => l.startsWith('Error'));
    assert.deepEqual(errors, [], 'dciodvfy errors on the page\'s SEG');
  });

  test('two series: listed, nothing loaded until one is picked', async () => {
    await give(app.page, filesOf('two_series'));
    assert.equal(await errorText(app.page), '');
    assert.match(await app.page.$eval(tid('status'), (e) => e.textContent), /2 DICOM series: choose one/);
    assert.deepEqual(await seriesOptions(app.page), [
      'Choose a series…',
      'series 8, "bedside test two_series_a", MR, 40 slices of 91×109',
      'series 9, "bedside test two_series_b", MR, 12 slices of 91×109',
    ]);
    const text = await app.page.$eval('#input-panel', (e) => e.textContent);
    assert.doesNotMatch(text, /Phantom|BEDSIDE-TEST/, 'a patient identifier is shown');
    await app.page.selectOption(tid('series-pick'), '1');
    await waitForVolume(app.page);
    assert.match(await info(app.page), /91 × 109 × 12 voxels/);
  });

  test('a ZIP of a series loads as its folder', async () => {
    await give(app.page, [path.join(WORK, 'oblique.zip')]);
    await waitForVolume(app.page);
    assert.match(await info(app.page), /oblique\.zip: 91 × 109 × 40 voxels, 2\.00 × 2\.00 × 1\.00 mm/);
  });

  test('a series with a missing slice is refused with the reason', async () => {
    await give(app.page, filesOf('missing_slice'));
    assert.match(await errorText(app.page), /slices are missing: a gap of 2\.000 mm/);
    assert.match(await info(app.page), /oblique\.zip/, 'the volume loaded before stays');
  });

  test('no request carried the DICOM files anywhere', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
