// A 4D NIfTI series in the page (issue 20, NIfTI gaps): it is read, not refused. The page says
// how many volumes it holds and their time step, offers a picker, and works on the picked volume:
// its statistics, the viewer and the run. The mask of volume 2 of nibabel's example4d.nii.gz,
// segmented by student-s in wasm, is a 3D mask on the volume's grid that agrees with
// `bedside segment --volume 1` natively (Dice ≥ 0.999). A synthetic series whose volumes differ
// shows each volume's own range.
//   node --test --test-concurrency=1 tests/e2e/series.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { ARTIFACTS, REPO, tid, openApp, errorText, makeNifti, niftiHeader, maskForeground, maskDice, runAndWait, waitForVolume, EXAMPLE_4D } from './lib.mjs';

const BIN = process.env.BEDSIDE_BIN || path.join(os.homedir(), '.cache/bedside/target/release/bedside');

async function upload(page, name, bytes) {
  await page.setInputFiles(tid('volume-input'), { name, mimeType: 'application/octet-stream', buffer: Buffer.from(bytes) });
  await waitForVolume(page);
}

const info = (page) => page.$eval(tid('volume-info'), (e) => e.textContent);
const options = (page) => page.$$eval(`${tid('volume-pick')} option`, (os) => os.map((o) => [o.value, o.textContent]));

/** Pick volume `index` (from 0) and wait until the page describes it. */
async function pick(page, index, total) {
  await page.selectOption(tid('volume-pick'), String(index));
  await page.waitForFunction(
    (want) => document.querySelector('[data-testid="volume-info"]').textContent.includes(want),
    `volume ${index + 1} of ${total}`,
    { timeout: 60_000 },
  );
  await waitForVolume(page);
}

describe('a 4D series', { timeout: 15 * 60_000 }, () => {
  let app;
  before(async () => {
    app = await openApp({ webgpu: false });
  });
  after(async () => {
    if (app) await app.close();
  });

  test('a synthetic series: each picked volume shows its own range', async () => {
    const file = makeNifti([16, 16, 16, 3], 5);
    file.fill(9, 352 + 2 * 16 ** 3); // the third volume is brighter
    await upload(app.page, 'series.nii.gz', zlib.gzipSync(file));
    assert.equal(await errorText(app.page), '');
    assert.equal(await app.page.$eval('#volume-pick-row', (e) => e.hidden), false, 'no volume picker');
    assert.deepEqual(await options(app.page), [['0', '1 of 3'], ['1', '2 of 3'], ['2', '3 of 3']]);
    assert.match(await info(app.page), /16 × 16 × 16 voxels.*range 5…5.*volume 1 of 3/);
    await pick(app.page, 2, 3);
    assert.match(await info(app.page), /range 9…9.*volume 3 of 3/);
  });

  test('example4d.nii.gz: volume 2 is segmented, on its own grid, as the CLI segments it', { skip: !fs.existsSync(EXAMPLE_4D) && 'example4d.nii.gz not present' }, async () => {
    await upload(app.page, 'example4d.nii.gz', fs.readFileSync(EXAMPLE_4D));
    assert.match(await info(app.page), /128 × 96 × 24 voxels.*volume 1 of 2, 2[ ,]?000 sec apart/);
    await pick(app.page, 1, 2);
    await app.page.selectOption(tid('model-select'), 'student-s');
    await runAndWait(app.page, 'cpu');
    const [download] = await Promise.all([app.page.waitForEvent('download'), app.page.click(tid('save-mask'))]);
    const file = path.join(ARTIFACTS, 'e2e-series-volume2-mask.nii.gz');
    await download.saveAs(file);
    const mask = fs.readFileSync(file);
    const h = niftiHeader(mask);
    assert.deepEqual(h.dims.slice(0, 3), [128, 96, 24]);
    assert.equal(h.dim[0], 3, 'the mask of one volume is 3D');

    const native = path.join(ARTIFACTS, 'e2e-series-volume2-cli.nii.gz');
    execFileSync(BIN, ['segment', EXAMPLE_4D, '--volume', '1', '--model', 'student-s', '--out', native], { cwd: REPO });
    const [a, b] = [maskForeground(mask), maskForeground(fs.readFileSync(native))];
    assert.ok(a.some((v) => v), 'an empty mask proves nothing');
    const d = maskDice(a, b);
    console.log(`# example4d volume 2, student-s: Dice page vs CLI ${d.toFixed(6)}`);
    assert.ok(d >= 0.999, `the page's mask of volume 2 differs from the CLI's: Dice ${d}`);
  });
});
