// A student never fails silently (issue 17): after each run the page shows the engine's quality
// signal with the mask. On the sample it has no warning. On a probe scan that holds only the lower
// half of ROBEX's brain (made by tests/reference/head_variants.py), the page says plainly not to
// trust the mask and offers HD-BET, which it then runs; HD-BET's mask of half a brain is flagged
// too, since the signal judges the mask, whoever made it. (The retrained students no longer fail
// on the field-of-view probes that used to show this warning: README, "Heads they have not seen".)
// On a T2-weighted head (the ICBM 2009c T2 template, which the setup fetches), the students learnt
// from T1 only: the page names the contrast as the reason not to trust the mask.
//   node --test --test-concurrency=1 tests/e2e/quality.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, RUN_TIMEOUT_MS, tid, openApp, loadSample, waitForVolume, runAndWait, networkProblems, screenshot } from './lib.mjs';

const DATA = process.env.BEDSIDE_DATA || path.join(os.homedir(), '.cache/bedside/data');
const PYTHON = process.env.BEDSIDE_PYTHON || path.join(os.homedir(), '.cache/bedside/venv/bin/python');
const ICBM_T2 = path.join(DATA, 'icbm2009c/mni_icbm152_t2_tal_nlin_sym_09c.nii');
const ROBEX = `${path.join(DATA, 'robex/atlas.nii.gz')}:${path.join(DATA, 'robex/atlas_mask.nii.gz')}`;

const quality = (page) =>
  page.evaluate(() => ({
    warning: !document.querySelector('[data-testid="quality-warning"]').hidden,
    text: document.querySelector('[data-testid="quality-text"]').textContent,
    signal: document.querySelector('[data-testid="quality-signal"]').textContent,
    hdbet: !document.querySelector('[data-testid="quality-run-hdbet"]').hidden,
  }));

describe('the quality signal in the page', { timeout: 5 * RUN_TIMEOUT_MS }, () => {
  let app;
  let probe;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-quality-'));
  before(async () => {
    const rows = execFileSync(PYTHON, [path.join(REPO, 'tests/reference/head_variants.py'), 'probe', work, 'partial', ROBEX], { encoding: 'utf8' });
    probe = rows.split('\n').map((l) => l.split('\t')).find((r) => r[1] === 'partial-lower-half')[3].split(':')[0];
    app = await openApp({ webgpu: false });
  });
  after(async () => {
    if (app) await app.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('a student on the sample: the signal shows, with no warning', async () => {
    const page = app.page;
    await loadSample(page);
    await page.selectOption(tid('model-select'), 'student-s');
    await runAndWait(page, 'cpu');
    const q = await quality(page);
    assert.equal(q.warning, false, q.text);
    assert.match(q.signal, /^Quality signal: No warning \(brain 1\d{3} ml, /);
  });

  test('the mirror check, asked for: the left-right mirror runs too, and its Dice joins the signal', async () => {
    const page = app.page;
    await page.check(tid('mirror-check'));
    await runAndWait(page, 'cpu');
    await page.uncheck(tid('mirror-check'));
    const q = await quality(page);
    // Natively (`bedside segment --mirror-check`): 0.984 for student-s on Colin27, above its bound.
    assert.equal(q.warning, false, q.text);
    assert.match(q.signal, /, mirror Dice 0\.98\d\)\.$/);
    const ms = await page.$eval('[data-testid="timings"] tr[data-stage="mirror_check"] td', (td) => Number(td.textContent));
    assert.ok(ms > 0, `the mirror run's time is shown: ${ms}`);
  });

  test('a student on half a head: a plain warning, and HD-BET one click away', async () => {
    const page = app.page;
    await page.setInputFiles(tid('volume-input'), probe);
    await waitForVolume(page);
    await page.selectOption(tid('model-select'), 'student-s');
    await runAndWait(page, 'cpu');
    const q = await quality(page);
    console.log(`[quality] ${q.text}`);
    assert.equal(q.warning, true, q.signal);
    assert.match(q.text, /^Do not trust this mask without a look: /);
    assert.equal(q.hdbet, true);
    await screenshot(page, 'e2e-quality-warning.png');
    assert.match(q.text, /the brain measures \d+ ml, outside the plausible 1000–2200 ml/);
    // HD-BET on the same volume: its half brain is flagged as well, by the generic bounds.
    await page.click(tid('quality-run-hdbet'));
    await page.waitForFunction(() => document.querySelector('[data-testid="model-select"]').value === 'hd-bet');
    await page.waitForFunction(
      () => /^Done/.test(document.querySelector('[data-testid="status"]').textContent) || !document.querySelector('[data-testid="error"]').hidden,
      null,
      { timeout: RUN_TIMEOUT_MS, polling: 1000 },
    );
    const h = await quality(page);
    console.log(`[quality] HD-BET: ${h.text}`);
    assert.equal(h.warning, true, h.signal);
    assert.match(h.text, /outside the plausible 900–2200 ml/);
    assert.equal(h.hdbet, false, 'no HD-BET button under HD-BET\'s own mask');
  });

  test('a student on a T2-weighted head: the warning names the contrast', async () => {
    const page = app.page;
    await page.setInputFiles(tid('volume-input'), ICBM_T2);
    await waitForVolume(page);
    await page.selectOption(tid('model-select'), 'student-s');
    await runAndWait(page, 'cpu');
    const q = await quality(page);
    console.log(`[quality] T2: ${q.text}`);
    assert.equal(q.warning, true, q.signal);
    assert.match(q.text, /^Do not trust this mask without a look: /);
    // Measured natively: skewness 1.22 for student-s's mask of this head (bound 0.50).
    assert.match(q.text, /the brain's intensities lean bright \(skewness 1\.\d\d, at most 0\.50 [^)]*\): this looks like a T2-weighted scan/);
    assert.doesNotMatch(q.text, /outside the plausible/, 'the brain volume is plausible here: only the contrast gives it away');
    assert.equal(q.hdbet, true);
    await screenshot(page, 'e2e-quality-t2.png');
  });

  test('no request leaves the origin', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
