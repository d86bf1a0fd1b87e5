// Bad input shows a clear message in [data-testid=error] and the page stays usable.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { tid, openApp, errorText, loadSample, makeNifti, networkProblems } from './lib.mjs';

async function upload(page, name, bytes) {
  await page.setInputFiles(tid('volume-input'), { name, mimeType: 'application/octet-stream', buffer: Buffer.from(bytes) });
  await page.waitForFunction(
    () => {
      const err = document.querySelector('[data-testid="error"]');
      return (err && !err.hidden) || !/Checking/.test(document.querySelector('[data-testid="status"]').textContent);
    },
    null,
    { timeout: 60_000 },
  );
  return errorText(page);
}

describe('bad input', { timeout: 10 * 60_000 }, () => {
  let app;
  before(async () => {
    app = await openApp({ webgpu: false });
  });
  after(async () => {
    if (app) await app.close();
  });

  test('a garbage file', async () => {
    const garbage = Buffer.from('this is not a brain scan, just some text that goes on and on '.repeat(20));
    const err = await upload(app.page, 'garbage.nii', garbage);
    assert.ok(err.length > 0, 'no error shown');
    assert.match(err, /NIfTI|header|magic|sizeof|too (short|small)|invalid/i);
  });

  test('a truncated .nii.gz', async () => {
    const full = zlib.gzipSync(makeNifti([64, 64, 64], 7));
    const err = await upload(app.page, 'truncated.nii.gz', full.subarray(0, Math.floor(full.length / 3)));
    assert.ok(err.length > 0, 'no error shown');
    assert.match(err, /truncat|unexpected end|incomplete|corrupt|gzip|eof/i);
  });

  test('the page stays usable: the sample loads and Run re-enables', async () => {
    await loadSample(app.page);
    assert.equal(await errorText(app.page), '');
    assert.equal(await app.page.$eval(tid('run-button'), (b) => b.disabled), false);
    assert.equal(await app.page.$eval(tid('sample-button'), (b) => b.disabled), false);
    assert.match(await app.page.textContent(tid('volume-info')), /181 × 217 × 181/);
  });

  test('no request carried the bad files anywhere', () => {
    assert.deepEqual(networkProblems(app.log, app.server), []);
  });
});
