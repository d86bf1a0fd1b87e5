// The teach room (teach.html, issue 16): a link restores its setup; on the sample, with student-s
// as a small teacher (keeps CI fast), the KD student and its twin train in the worker: steps,
// play and pause, curves that grow, a loss that falls, a change of T that shows in the soft-target
// view and in the next steps' KD term, reset, a NaN that pauses the run with its message, and an
// exported student that opens in the main page and segments the sample. No request leaves the
// origin.
//   node --test --test-concurrency=1 tests/e2e/teach.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RUN_TIMEOUT_MS, tid, openApp, networkProblems, screenshot, loadSample, errorText } from './lib.mjs';

const LINK = 'teach.html#teacher=student-s&student=lecture&seed=7&T=4&alpha=0.7&lr=0.003&feature=0.2&steps=400';

const text = (page, id) => page.textContent(tid(id));
const stepCount = async (page) => Number(await text(page, 'teach-step-count'));
const points = async (page) => Number(await page.getAttribute(tid('teach-curves'), 'data-points'));

async function waitIdle(page, timeout = 10 * 60_000) {
  await page.waitForSelector('body[data-busy="false"]', { state: 'attached', timeout });
}

describe('teach room', { timeout: 3 * RUN_TIMEOUT_MS }, () => {
  test('a link restores the setup; classroom=1 hides the advanced controls', async () => {
    const app = await openApp({ webgpu: false, page: 'teach.html#teacher=hd-bet&student=student-s&seed=9&T=2.5&alpha=0.4&lr=0.0015&feature=0.05&steps=77&classroom=1' });
    try {
      const page = app.page;
      const values = {};
      for (const id of ['teach-teacher', 'teach-student', 'teach-seed', 'teach-T', 'teach-alpha', 'teach-lr', 'teach-feature', 'teach-steps']) {
        values[id] = await page.inputValue(tid(id));
      }
      assert.deepEqual(values, {
        'teach-teacher': 'hd-bet', 'teach-student': 'student-s', 'teach-seed': '9', 'teach-T': '2.5',
        'teach-alpha': '0.4', 'teach-lr': '0.0015', 'teach-feature': '0.05', 'teach-steps': '77',
      });
      assert.equal(await page.isVisible(tid('teach-lr')), false, 'classroom=1 hides the learning rate');
      assert.equal(await page.isVisible(tid('teach-T')), true);
      // A change is written back to the link.
      await page.fill(tid('teach-alpha'), '0.5');
      await page.dispatchEvent(tid('teach-alpha'), 'change');
      await page.waitForFunction(() => location.hash.includes('alpha=0.5'));
      assert.match(await page.evaluate(() => location.hash), /^#teacher=hd-bet&student=student-s&seed=9&T=2\.5&alpha=0\.5&lr=0\.0015&feature=0\.05&steps=77&classroom=1$/);
    } finally {
      await app.close();
    }
  });

  test('a bad link says what is wrong and shows the defaults', async () => {
    const app = await openApp({ webgpu: false, page: 'teach.html?backend=webgpu#T=abc' });
    try {
      assert.match(await text(app.page, 'teach-error'), /T=abc: a temperature expected/);
      assert.equal(await app.page.inputValue(tid('teach-T')), '4');
      assert.equal(await app.page.inputValue(tid('teach-backend')), 'webgpu', '?backend= presets the backend');
    } finally {
      await app.close();
    }
  });

  describe('training on the sample with student-s as teacher', () => {
    let app;
    before(async () => {
      app = await openApp({ webgpu: false, page: LINK });
      await app.page.click(tid('sample-button'));
      await app.page.waitForFunction(() => !document.querySelector('[data-testid="teach-start"]').disabled);
      await app.page.click(tid('teach-start'));
      await waitIdle(app.page);
      assert.equal(await app.page.isHidden(tid('teach-error')), true, await text(app.page, 'teach-error'));
    });
    after(async () => {
      if (app) await app.close();
    });

    test('the room says where the hard labels come from', async () => {
      assert.match(await text(app.page, 'teach-labels'), /Hard labels: the teacher's argmax \(no reference mask loaded\)/);
    });

    test('step, play and pause: the curves grow and the loss falls', async () => {
      const page = app.page;
      await page.click(tid('teach-step'));
      await waitIdle(page);
      assert.equal(await stepCount(page), 1);
      assert.equal(await points(page), 1);
      assert.match(await text(page, 'teach-dice-kd'), /^\d\.\d{4}$/);
      await page.click(tid('teach-play'));
      await page.waitForFunction(() => Number(document.querySelector('[data-testid="teach-step-count"]').textContent) >= 20, null, { timeout: 15 * 60_000 });
      await page.click(tid('teach-play')); // pause
      await waitIdle(page);
      const paused = await stepCount(page);
      await page.waitForTimeout(2000);
      assert.equal(await stepCount(page), paused, 'pause acts within one step');
      assert.equal(await points(page), paused);
      // The hard-label terms fall fastest (T²·KL against a sharp teacher moves more slowly).
      const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
      for (const who of ['kd', 'scratch']) {
        const hard = await page.evaluate((w) => window.bedsideTeachState().history.map((p) => p[w].hard), who);
        assert.ok(mean(hard.slice(-5)) < 0.9 * mean(hard.slice(0, 5)), `${who}: hard-label loss ${mean(hard.slice(0, 5))} → ${mean(hard.slice(-5))}`);
      }
      assert.match(await text(page, 'teach-ms-per-step'), /^\d+$/);
      await screenshot(page, 'teach-room.png');
    });

    test('a change of T shows in the soft-target view and in the next steps\' KD term', async () => {
      const page = app.page;
      const before = await page.evaluate(() => document.querySelector('[data-testid="teach-soft-view"]').dataset.meanKl);
      const kdBefore = await page.evaluate(() => window.bedsideTeachState().history.at(-1).kd.kd);
      await page.fill(tid('teach-T'), '1');
      await page.dispatchEvent(tid('teach-T'), 'change');
      await page.waitForFunction(() => document.querySelector('[data-testid="teach-soft-view"]').dataset.t === '1');
      const after = await page.evaluate(() => document.querySelector('[data-testid="teach-soft-view"]').dataset.meanKl);
      assert.notEqual(after, before, 'the T²·KL map is redrawn at the new T');
      await page.click(tid('teach-step'));
      await waitIdle(page);
      const kdAfter = await page.evaluate(() => window.bedsideTeachState().history.at(-1).kd.kd);
      assert.ok(Math.abs(kdAfter - kdBefore) > 0.2 * kdBefore, `T²·KL ${kdBefore} at T = 4 → ${kdAfter} at T = 1`);
      // A voxel's numbers.
      await page.click('#teach-soft-kl', { position: { x: 100, y: 100 } });
      await page.waitForFunction(() => /T²·KL = \d/.test(document.querySelector('[data-testid="teach-voxel"]').textContent));
    });

    test('a NaN loss pauses the run, names the term and keeps the weights', async () => {
      const page = app.page;
      const steps = await stepCount(page);
      await page.evaluate(() => window.bedsideTeachPoison());
      await page.click(tid('teach-step'));
      await waitIdle(page);
      assert.match(await text(page, 'teach-error'), /^step \d+: the KD student's .* loss is not finite\. The run is paused with the weights of step \d+/);
      assert.equal(await stepCount(page), steps);
      await page.click(tid('teach-step'));
      await waitIdle(page);
      assert.equal(await stepCount(page), steps + 1, 'the run goes on');
    });

    test('a lost device pauses the run; it resumes on the CPU from the last weights', async () => {
      const page = app.page;
      const steps = await stepCount(page);
      const kept = await page.evaluate(() => window.bedsideTeachState().checkpoint);
      assert.equal(kept, steps, 'a single step reads the weights back');
      await page.evaluate(() => window.bedsideTeachLoseDevice());
      await page.click(tid('teach-step'));
      await waitIdle(page);
      assert.match(await text(page, 'teach-error'), new RegExp(`device failed during a step \\(step ${steps + 1}: the GPU device was lost.*the weights of step ${steps} are kept: resume on the CPU`));
      assert.equal(await stepCount(page), steps);
      assert.equal(await page.isVisible(tid('teach-resume-cpu')), true);
      const pointsBefore = await points(page);
      await page.click(tid('teach-resume-cpu'));
      await waitIdle(page);
      assert.equal(await page.isHidden(tid('teach-error')), true, await text(page, 'teach-error'));
      assert.match(await text(page, 'teach-status'), new RegExp(`^Resumed on the CPU from step ${steps} `));
      assert.equal(await page.inputValue(tid('teach-backend')), 'cpu');
      assert.equal(await stepCount(page), steps);
      assert.equal(await points(page), pointsBefore, 'the curves are kept');
      await page.click(tid('teach-step'));
      await waitIdle(page);
      assert.equal(await stepCount(page), steps + 1, 'the run goes on from the kept weights');
    });

    test('the exported KD student opens in the main page and segments the sample with the Dice the room showed', async () => {
      const page = app.page;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-teach-'));
      const files = {};
      const downloads = [];
      page.on('download', (d) => downloads.push(d));
      await page.click(tid('teach-export-kd'));
      await page.waitForFunction(() => document.querySelector('[data-testid="teach-export-dice"]').dataset.dice, null, { timeout: RUN_TIMEOUT_MS });
      for (let i = 0; i < 100 && downloads.length < 2; i++) await page.waitForTimeout(100);
      const roomDice = Number(await page.getAttribute(tid('teach-export-dice'), 'data-dice'));
      for (const d of downloads) {
        files[d.suggestedFilename()] = path.join(dir, d.suggestedFilename());
        await d.saveAs(files[d.suggestedFilename()]);
      }
      const manifest = JSON.parse(fs.readFileSync(files['model.json'], 'utf8'));
      assert.equal(manifest.training.teacher, 'student-s');
      assert.equal(manifest.training.steps, await stepCount(page));
      assert.equal(manifest.training.alpha, 0.7);
      const main = await openApp({ webgpu: false });
      try {
        await loadSample(main.page);
        await main.page.setInputFiles(tid('package-input'), [files['model.json'], files['weights.safetensors']]);
        await main.page.waitForFunction(() => /^Imported/.test(document.querySelector('[data-testid="status"]').textContent), null, { timeout: 120_000 });
        // Compare with its teacher (student-s, named in the package's training record).
        await main.page.selectOption(tid('backend-select'), 'cpu');
        await main.page.click(tid('compare-button'));
        await main.page.waitForFunction(
          () => !document.querySelector('[data-testid="error"]').hidden || document.querySelector('[data-testid="compare-agreement"]').dataset.dice,
          null,
          { timeout: 2 * RUN_TIMEOUT_MS, polling: 1000 },
        );
        assert.equal(await errorText(main.page), '');
        const pageDice = Number(await main.page.getAttribute(tid('compare-agreement'), 'data-dice'));
        console.log(`[teach] exported KD student vs its teacher: room ${roomDice}, main page ${pageDice}`);
        assert.ok(roomDice > 0 && Math.abs(pageDice - roomDice) < 0.01, `Dice in the room ${roomDice}, in the main page ${pageDice}`);
      } finally {
        await main.close();
      }
    });

    test('reset starts again from the seed', async () => {
      const page = app.page;
      await page.click(tid('teach-reset'));
      await waitIdle(page);
      assert.equal(await stepCount(page), 0);
      assert.equal(await points(page), 0);
    });

    test('no request leaves the origin', () => {
      assert.deepEqual(networkProblems(app.log, app.server), []);
    });
  });
});
