// Adapt a model to a site's scans in the page (issue 18): student-m learnt from T1 heads only. It
// learns a LoRA adapter (r 1 on its decoder, the default) from SPM's avg152 PD head and its brain
// mask, picked as one pile of files, and is validated on the avg152 T2 head (the held-out
// contrast; both are averages of about 150 subjects, smoother than single scans). Natively, the
// same 4 steps at 5e-3 (`bedside lora train … --steps 4 --lr 5e-3`) take the T2 Dice from 0.8911
// to 0.8955. Then: the adapter is switched off and on, base and adapted run side by side, the
// adapter and the merged package download, and the CLI finds the downloaded adapter on its base
// computing what the downloaded merged package computes. Pause holds, Cancel keeps nothing, a pile
// without a mask is refused by name, and no request leaves the origin.
//   node --test --test-concurrency=1 tests/e2e/adapt.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, RUN_TIMEOUT_MS, tid, openApp, waitForVolume, waitForStatus, networkProblems, screenshot } from './lib.mjs';

const DATA = process.env.BEDSIDE_DATA || path.join(os.homedir(), '.cache/bedside/data');
const BIN = process.env.BEDSIDE_BIN || path.join(os.homedir(), '.cache/bedside/target/release/bedside');
const PD = path.join(DATA, 'avg152/avg152PD.nii');
const T2 = path.join(DATA, 'avg152/avg152T2.nii');
const MASK = path.join(DATA, 'avg152/brainmask-0.5.nii.gz');
const BASE_T2_DICE = 0.8911; // `bedside evaluate --model student-m avg152T2.nii:brainmask-0.5.nii.gz`

const text = (page, id) => page.$eval(tid(id), (e) => e.textContent);
const adaptError = (page) => page.$eval(tid('adapt-error'), (e) => (e.hidden ? '' : e.textContent));

/** Waits until the adaptation ends: its summary, or its error. */
async function adaptationEnds(page) {
  await page.waitForFunction(
    () => /^Adapted/.test(document.querySelector('[data-testid="adapt-summary"]').textContent) || !document.querySelector('[data-testid="adapt-error"]').hidden,
    null,
    { timeout: RUN_TIMEOUT_MS, polling: 500 },
  );
}

/** The downloads one click gives, saved under `dir` by their suggested names. */
async function downloadsOf(page, button, count, dir) {
  const downloads = [];
  const listener = (d) => downloads.push(d);
  page.on('download', listener);
  await page.click(tid(button));
  for (let i = 0; i < 100 && downloads.length < count; i++) await new Promise((r) => setTimeout(r, 100));
  page.off('download', listener);
  assert.equal(downloads.length, count);
  const names = [];
  for (const d of downloads) {
    names.push(d.suggestedFilename());
    await d.saveAs(path.join(dir, d.suggestedFilename()));
  }
  return names.sort();
}

describe('adapt student-m to PD in the page, validated on T2', { timeout: 4 * RUN_TIMEOUT_MS }, () => {
  let app;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-adapt-'));
  before(async () => {
    app = await openApp({ webgpu: false });
  });
  after(async () => {
    if (app) await app.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('a pile without a mask is refused by name, and nothing starts', async () => {
    const page = app.page;
    await page.selectOption(tid('backend-select'), 'cpu');
    await page.selectOption(tid('model-select'), 'student-m');
    await page.setInputFiles(tid('adapt-data-input'), [PD, T2]);
    await page.click(tid('adapt-start'));
    await page.waitForFunction(() => !document.querySelector('[data-testid="adapt-error"]').hidden, null, { timeout: RUN_TIMEOUT_MS });
    assert.match(await adaptError(page), /no mask among the files/);
    assert.equal(await page.$eval(tid('adapt-toggle'), (e) => e.disabled), true);
  });

  test('4 steps on PD: trainable count, memory, curves and a held-out T2 Dice that rises', async () => {
    const page = app.page;
    await page.setInputFiles(tid('volume-input'), T2);
    await waitForVolume(page);
    await page.setInputFiles(tid('reference-input'), MASK);
    await page.setInputFiles(tid('adapt-data-input'), [MASK, PD]); // any order: the engine pairs them
    await page.setInputFiles(tid('adapt-val-input'), [T2, MASK]);
    // The defaults are the measured winner within the targets: r 1, α 2, the decoder.
    assert.equal(await page.inputValue(tid('adapt-rank')), '1');
    assert.equal(await page.inputValue(tid('adapt-targets')), 'decoder');
    await page.fill(tid('adapt-steps'), '4');
    await page.fill(tid('adapt-lr'), '0.005');
    await page.click(tid('adapt-start'));
    // Pause after the first step: no step runs while paused.
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="adapt-curve"]').dataset.points || 0) >= 1, null, { timeout: RUN_TIMEOUT_MS });
    await page.click(tid('adapt-pause'));
    await waitForStatus(page, /^Adaptation paused at step \d of 4/, RUN_TIMEOUT_MS);
    const held = await page.$eval(tid('adapt-curve'), (e) => e.dataset.points);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await page.$eval(tid('adapt-curve'), (e) => e.dataset.points), held);
    await page.click(tid('adapt-pause'));
    await adaptationEnds(page);
    assert.equal(await adaptError(page), '');
    // 6,606 adapter parameters (1.27% of student-m), as `bedside lora train` counts them.
    assert.equal(await text(page, 'adapt-trainable'), '6606');
    assert.match(await text(page, 'adapt-share'), /of 5\d\d,\d{3} \(1\.\d\d%, adapters, 9 layers\)/);
    assert.match(await text(page, 'adapt-memory'), /Gradients and Adam's moments: 77\.4 KB, for the trainable parameters only.*The engine's memory: [\d,.]+ MB/);
    assert.equal(await page.$eval(tid('adapt-curve'), (e) => e.dataset.points), '4');
    const dice = await page.$eval(tid('adapt-val-dice'), (e) => ({ before: Number(e.dataset.before), after: Number(e.dataset.after), text: e.textContent }));
    console.log(`[adapt] held-out T2 Dice ${dice.text}; ${await text(page, 'adapt-summary')}`);
    assert.ok(Math.abs(dice.before - BASE_T2_DICE) < 0.002, `the base's T2 Dice in the tab ${dice.before}, natively ${BASE_T2_DICE}`);
    assert.ok(dice.after > dice.before + 0.002, `4 steps lift the T2 Dice: ${dice.text} (natively 0.8911 -> 0.8955)`);
    assert.match(await text(page, 'adapt-summary'), /^Adapted Student M \(distilled from HD-BET\) in 4 steps \([\d,.]+ ms per step\)\. The adapter is 27\.\d KB\./);
    await screenshot(page, 'e2e-adapt.png');
  });

  test('the adapter switches off and on, and base and adapted run side by side', async () => {
    const page = app.page;
    const adapted = await page.inputValue(tid('model-select'));
    assert.match(adapted, /^student-m-lora-\d+$/);
    assert.equal(await page.isChecked(tid('adapt-toggle')), true);
    await page.uncheck(tid('adapt-toggle'));
    assert.equal(await page.inputValue(tid('model-select')), 'student-m');
    await page.check(tid('adapt-toggle'));
    assert.equal(await page.inputValue(tid('model-select')), adapted);
    await page.click(tid('adapt-compare'));
    await page.waitForFunction(() => !document.querySelector('[data-testid="compare-panel"]').hidden, null, { timeout: RUN_TIMEOUT_MS, polling: 1000 });
    const agreement = await text(page, 'compare-agreement');
    console.log(`[adapt] ${agreement}`);
    assert.match(agreement, /^Agreement of the adapted model with its base: Dice 0\.\d{4}/);
    assert.match(agreement, /Adapter on: [\d,]+ ms; adapter off: [\d,]+ ms\./);
    // Against the brain mask, per label: the base as validated before any step, the merged
    // adapted model as the unmerged one was validated after the last (merge = unmerged, 1e-4).
    const reference = JSON.parse(await page.$eval(tid('compare-agreement'), (e) => e.dataset.referenceDice));
    const dice = await page.$eval(tid('adapt-val-dice'), (e) => ({ before: Number(e.dataset.before), after: Number(e.dataset.after) }));
    const m = agreement.match(/the base \(adapter off\) brain (0\.\d+), the adapted model \(adapter on\) brain (0\.\d+)/);
    assert.ok(m, agreement);
    assert.ok(Math.abs(Number(m[1]) - dice.before) < 1e-3, `base ${m[1]} vs validated ${dice.before}`);
    assert.ok(Math.abs(Number(m[2]) - dice.after) < 1e-3, `adapted ${m[2]} vs validated ${dice.after}`);
    assert.ok(reference, 'the worst label against the reference is recorded');
  });

  test('the adapter and the merged package download, and the CLI agrees with both', async () => {
    const page = app.page;
    const names = await downloadsOf(page, 'adapt-download', 2, work);
    assert.deepEqual(names, ['adapter_config.json', 'adapter_model.safetensors']);
    const config = JSON.parse(fs.readFileSync(path.join(work, 'adapter_config.json'), 'utf8'));
    assert.equal(config.peft_type, 'LORA');
    assert.equal(config.r, 1);
    assert.equal(config.lora_alpha, 2);
    assert.equal(config.target_modules.length, 9);
    const sha = createHash('sha256').update(fs.readFileSync(path.join(REPO, 'models/student-m/weights.safetensors'))).digest('hex');
    assert.equal(config.base_model_sha256, sha);
    const adapterBytes = fs.statSync(path.join(work, 'adapter_model.safetensors')).size;
    assert.ok(adapterBytes < 2016.4 * 1024 / 20, `the adapter (${adapterBytes} B) is at most 1/20 of the base's weights`);
    const merged = path.join(work, 'merged');
    fs.mkdirSync(merged);
    const files = await downloadsOf(page, 'adapt-merge-download', 2, merged);
    assert.match(files[0], /^student-m-lora-\d+\.model\.json$/);
    fs.renameSync(path.join(merged, files[0]), path.join(merged, 'model.json'));
    fs.renameSync(path.join(merged, files[1]), path.join(merged, 'weights.safetensors'));
    // The downloaded adapter on its base and the downloaded merged package give the same mask.
    const run = (args, out) => execFileSync(BIN, ['segment', T2, '--out', out, ...args], { encoding: 'utf8', cwd: REPO });
    run(['--model', 'student-m', '--adapter', work], path.join(work, 'adapter.nii.gz'));
    run(['--model', merged], path.join(work, 'merged.nii.gz'));
    const agree = Number(execFileSync(BIN, ['dice', path.join(work, 'adapter.nii.gz'), path.join(work, 'merged.nii.gz')], { encoding: 'utf8' }));
    assert.ok(agree > 0.9999, `adapter vs merged package: Dice ${agree}`);
  });

  test('a downloaded adapter loads onto its base, and is refused on another', async () => {
    const page = app.page;
    const files = [path.join(work, 'adapter_config.json'), path.join(work, 'adapter_model.safetensors')];
    const models = await page.$$eval(`${tid('model-select')} option`, (o) => o.length);
    await page.selectOption(tid('model-select'), 'student-s');
    await page.setInputFiles(tid('adapt-load-input'), files);
    await page.waitForFunction(() => !document.querySelector('[data-testid="adapt-error"]').hidden, null, { timeout: RUN_TIMEOUT_MS });
    assert.match(await adaptError(page), /^The adapter was not loaded: .*trained on "student-m".*not on "student-s"/);
    assert.equal(await page.$$eval(`${tid('model-select')} option`, (o) => o.length), models);
    await page.selectOption(tid('model-select'), 'student-m');
    await page.setInputFiles(tid('adapt-load-input'), files);
    await page.waitForFunction(() => /^Loaded an adapter/.test(document.querySelector('[data-testid="adapt-summary"]').textContent), null, { timeout: RUN_TIMEOUT_MS });
    assert.match(await text(page, 'adapt-summary'), /^Loaded an adapter \(r = 1, 9 layers, 27\.\d KB\) onto Student M/);
    assert.equal(await page.$$eval(`${tid('model-select')} option`, (o) => o.length), models + 1);
    assert.match(await page.inputValue(tid('model-select')), /^student-m-lora-\d+$/);
    assert.equal(await page.isChecked(tid('adapt-toggle')), true);
    assert.equal(await page.$eval(tid('adapt-download'), (e) => e.disabled), false, 'a loaded adapter downloads again');
  });

  test('Cancel stops after the step in flight and keeps nothing', async () => {
    const page = app.page;
    const models = await page.$$eval(`${tid('model-select')} option`, (o) => o.length);
    await page.selectOption(tid('model-select'), 'student-m');
    await page.fill(tid('adapt-steps'), '50');
    await page.click(tid('adapt-start'));
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="adapt-curve"]').dataset.points || 0) >= 1, null, { timeout: RUN_TIMEOUT_MS });
    await page.click(tid('adapt-cancel'));
    await adaptationEnds(page);
    assert.match(await adaptError(page), /Adaptation stopped: cancelled; nothing was kept\. The base model is unchanged\./);
    assert.equal(await page.$$eval(`${tid('model-select')} option`, (o) => o.length), models);
    assert.equal(await page.$eval(tid('adapt-start'), (e) => e.disabled), false);
  });

  test('no request leaves the origin', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
