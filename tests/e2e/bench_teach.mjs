// Benchmark (not a test): the teach room in headless Chromium, ms per lock-step step for each
// student preset on each backend, with student-s (or BEDSIDE_TEACH_TEACHER) as the teacher on
// the sample. Prints one line per run; the teacher's pass is timed apart.
//   node tests/e2e/bench_teach.mjs [presets=lecture,student-s] [backends=cpu,webgpu] [steps=10]
import { openApp, tid } from './lib.mjs';

const [presets = 'lecture,student-s', backends = 'cpu,webgpu', stepsArg = '10'] = process.argv.slice(2);
const steps = Number(stepsArg);
const teacher = process.env.BEDSIDE_TEACH_TEACHER || 'student-s';

for (const backend of backends.split(',')) {
  for (const preset of presets.split(',')) {
    const app = await openApp({ webgpu: backend === 'webgpu', page: `teach.html?backend=${backend}#teacher=${teacher}&student=${preset}&steps=1000` });
    try {
      const page = app.page;
      await page.click(tid('sample-button'));
      await page.waitForFunction(() => !document.querySelector('[data-testid="teach-start"]').disabled);
      const t0 = Date.now();
      await page.click(tid('teach-start'));
      await page.waitForSelector('body[data-busy="false"]', { state: 'attached', timeout: 30 * 60_000 });
      const error = await page.evaluate(() => (document.querySelector('[data-testid="teach-error"]').hidden ? '' : document.querySelector('[data-testid="teach-error"]').textContent));
      if (error) {
        console.log(`${backend} ${preset}: ${error}`);
        continue;
      }
      const labels = await page.textContent(tid('teach-labels'));
      const openMs = Date.now() - t0;
      await page.click(tid('teach-step')); // the first step compiles and warms up; not counted
      await page.waitForSelector('body[data-busy="false"]', { state: 'attached', timeout: 30 * 60_000 });
      const times = await page.evaluate(async (n) => {
        const out = [];
        for (let i = 0; i < n; i++) {
          const t = performance.now();
          document.querySelector('[data-testid="teach-step"]').click();
          await new Promise((resolve) => {
            const poll = () => (document.body.dataset.busy === 'false' ? resolve() : setTimeout(poll, 5));
            setTimeout(poll, 5);
          });
          out.push(performance.now() - t);
        }
        return out;
      }, steps);
      const engineMs = await page.evaluate(() => window.bedsideTeachState().evaluations.at(-1)?.ms_per_step);
      const median = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)];
      console.log(`${backend} ${preset}: ${steps} steps, median ${median.toFixed(0)} ms per step with the page's refreshes ` +
        `(engine's own: ${Number(engineMs).toFixed(0)} ms per lock-step step); open ${openMs} ms; ${labels}`);
    } finally {
      await app.close();
    }
  }
}
