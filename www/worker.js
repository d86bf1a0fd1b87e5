// bedside engine worker (module Web Worker). Loads the wasm (./bedside.js + ./bedside_bg.wasm,
// written by Trunk with fixed names) and does all heavy work off the main thread.
//
// Protocol (main -> worker):            (worker -> main)
//   {type:'init'}                        {type:'ready', version, cpuLanes} | {type:'error', phase:'init', ...}
//   {type:'device'}                      {type:'device', info}
//   {type:'inspect', id, bytes, volume?} {type:'inspected', id, info} | {type:'error', id, ...}
//   {type:'inspect_dicom', id, names, files, series?}  the same replies (info.dicom_series: the list)
//   {type:'import', id, bytes, name}      {type:'imported', id, card, model_json, weights} (transferred)
//   {type:'run', id, bytes, model:{id,name,path} | {id,name,json,weights}, backend, cachedChoice, tta, mirrorCheck, ensemble, cpuConv?, gpuConv?, windows?}
//                                        {type:'progress', id, stage, fraction|null}
//                                        {type:'backend', id, selection, preference}
//                                        {type:'model', id, info}
//                                        {type:'result', id, result}  (mask buffer transferred)
//                                        {type:'error', id, message, fatal}
//   {type:'dicom-seg', id, names, files, series, mask, model}
//                                        {type:'reply', id, result: the DICOM SEG file's bytes}
//   {type:'agreement', id, a, b, reference?, labels, options?: {margin?, ms?: [a_ms, b_ms]}}
//                                        {type:'agreement', id, dice, hd95_mm, per_label, reference, verdict, speedup}
//                                        (gzip NIfTI masks; reference: each mask's Dice per label against it,
//                                        and the lowest; verdict: b judged against a at the margin)
//   {type:'package', id, json, weights, name}   {type:'imported', id, card, model_json, weights} (a bedside package, checked)
//   {type:'compress', id, model, rule}   {type:'progress', …}, then
//                                        {type:'compressed', id, card, model_json, weights, report} (transferred)
//   {type:'pareto', id, model, bytes, reference?, options, backend, cachedChoice}
//                                        {type:'backend', …}, {type:'progress', …},
//                                        {type:'pareto-point', id, sweep} (so far) per model, then {type:'pareto', id, sweep}
//   {type:'judge-margin', id, dice, margin}  {type:'reply', id, result: verdict}   (the Compress verdict again)
//   {type:'pareto-judge', id, sweep, margin} {type:'reply', id, result: sweep}     (the Pareto view again)
//   {type:'pareto-factors', id, text}     {type:'reply', id, result: [factor, …]}  (or an error naming the bad ones)
//   {type:'teach-…' | 'recover-…', id, …}  {type:'reply', id, result}: training (worker_train.js)
//   {type:'pool-load' | 'pool-pass', …}  a pool helper's work (www/pool.js): 'run' with workers > 1
//                                        on the CPU starts that many helpers, each this same script.
//   Faults (answered at once, even mid-run; test hooks for e2e's faults test):
//   {type:'lose-device'}                 destroys every GPUDevice this worker made (GPUDevice.destroy())
//   {type:'crash', how:'mid-run'|'uncaught'}  the running segmentation panics at its next progress
//                                        report | an error is thrown outside any request
//   A GPUDevice lost during a request ends it at once: {type:'error', id, phase, message, fatal:true,
//   deviceLost:true}; the page restarts the worker and runs again on the CPU.
// Image bytes arrive here by transfer and are never sent anywhere else. The only network requests
// made here are same-origin GETs of the wasm and the model package.

import { handleTraining } from './worker_train.js';
import { Pool } from './pool.js';
import { gpuInfo, deviceLost, whenDeviceLost, onDeviceLost, destroyDevices, lostMessage } from './worker_gpu.js';

let bedside = null;
let initPromise = null;
let lastPanic = null;

// Selected backend and loaded model in this wasm instance.
const engine = { preference: null, cachedChoice: undefined, selection: null, modelKey: null, modelInfo: null };

// console_error_panic_hook prints the Rust panic message with console.error before the wasm traps
// with an opaque "unreachable"; keep it so the page can show a human message.
const consoleError = console.error.bind(console);
console.error = (...args) => {
  const text = args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ');
  if (/panicked at/.test(text)) lastPanic = text;
  consoleError(...args);
};

/** The request being handled (the worker takes one at a time), and whether it has been answered. */
let current = null;

/** Requests of the main page that a lost device ends (the teach room keeps its own path: it
 * resumes on the CPU from weights this worker holds, src/web/teach.rs). */
const ENDED_BY_LOSS = new Set(['run', 'pareto']);

function onWebGpu(request) {
  return request && ENDED_BY_LOSS.has(request.type) && engine.selection?.backend === 'webgpu';
}

/** Answers the request being handled with an error, once: the lost device's message when `lost`
 * (the page then restarts this worker and runs again on the CPU), else `error`'s. */
function answerError(error, lost = false) {
  if (!current || current.answered) return;
  current.answered = true;
  post({
    type: 'error',
    id: current.id,
    phase: current.type,
    message: lost ? lostMessage() : errorMessage(error),
    fatal: lost || isFatal(error),
    deviceLost: lost,
  });
}

/** A device lost during a WebGPU run ends that run now. */
onDeviceLost(() => {
  if (onWebGpu(current)) answerError(null, true);
});

class UserError extends Error {}

function post(msg, transfer) {
  self.postMessage(msg, transfer || []);
}

function errorMessage(e) {
  if (e instanceof WebAssembly.RuntimeError || (e && e.name === 'RuntimeError')) {
    // The panic's message, without the JS stack console_error_panic_hook appends.
    const detail = lastPanic ? lastPanic.split(/\n\s*Stack:/)[0].replace(/\s+/g, ' ').trim().slice(0, 600) : e.message;
    return `The engine crashed (${detail}). It has been restarted; you can try again.`;
  }
  if (e && typeof e.message === 'string' && e.message) return e.message;
  if (typeof e === 'string' && e) return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

function isFatal(e) {
  return e instanceof WebAssembly.RuntimeError || (e && e.name === 'RuntimeError');
}

/** Convert serde-wasm-bindgen output (may contain Maps) into plain JSON-like objects. */
function plain(x) {
  if (x instanceof Map) {
    const o = {};
    for (const [k, v] of x) o[k] = plain(v);
    return o;
  }
  if (Array.isArray(x)) return x.map(plain);
  if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) return x;
  if (x && typeof x === 'object') {
    const o = {};
    for (const k of Object.keys(x)) o[k] = plain(x[k]);
    return o;
  }
  return x;
}

/** An ArrayBuffer holding exactly `u8`'s bytes, to transfer (no copy when it already is one). */
function ownBuffer(u8) {
  const whole = u8.byteOffset === 0 && u8.byteLength === u8.buffer.byteLength && u8.buffer instanceof ArrayBuffer;
  return whole ? u8.buffer : u8.slice().buffer;
}

function toU8(x) {
  if (x instanceof Uint8Array) return x;
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (Array.isArray(x)) return Uint8Array.from(x);
  throw new Error('engine returned no mask bytes');
}

// A 35-byte wasm module whose one function is f32x4.relaxed_madd: it validates only where the
// engine has relaxed SIMD. A module with a single relaxed-SIMD instruction does not compile
// elsewhere, so there the worker loads the fallback engine, built without it
// (www/build/simd128-engine.mjs).
const RELAXED_SIMD_PROBE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x06, 0x01, 0x60, 0x01, 0x7b, 0x01, 0x7b, // type: (v128) -> v128
  0x03, 0x02, 0x01, 0x00, // one function of that type
  0x0a, 0x0d, 0x01, 0x0b, 0x00, // code: one body, no locals
  0x20, 0x00, 0x20, 0x00, 0x20, 0x00, 0xfd, 0x85, 0x02, 0x0b, // local.get 0 ×3, f32x4.relaxed_madd, end
]);

/** Which engine build to load: the page's `?engine=simd128` (carried in this worker's URL) forces
 * the fallback, so tests can compare the two in one browser. */
function engineBuild() {
  if (new URLSearchParams(self.location.search).get('engine') === 'simd128') return 'simd128';
  return WebAssembly.validate(RELAXED_SIMD_PROBE) ? 'relaxed-simd' : 'simd128';
}

async function ensureEngine() {
  if (!initPromise) {
    initPromise = (async () => {
      const script = engineBuild() === 'relaxed-simd' ? './bedside.js' : './bedside_simd128.js';
      try {
        bedside = await import(script);
      } catch (e) {
        throw new UserError(`Could not load the engine script ${script}: ${errorMessage(e)}`);
      }
      try {
        await bedside.default(); // fetches the _bg.wasm next to the script
      } catch (e) {
        throw new UserError(`Could not start the engine (${script.replace('.js', '_bg.wasm')}): ${errorMessage(e)}`);
      }
      return { version: bedside.version(), cpuLanes: bedside.cpu_lanes() };
    })();
    initPromise.catch(() => {
      initPromise = null;
    });
  }
  return initPromise;
}

async function fetchBytes(url, id, stage) {
  const res = await fetch(url, { credentials: 'same-origin', cache: 'no-cache' });
  if (!res.ok) throw new UserError(`Could not load ${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || 0;
  if (!res.body || !total) return new Uint8Array(await res.arrayBuffer());
  const out = new Uint8Array(total);
  const reader = res.body.getReader();
  let got = 0;
  let lastPost = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (got + value.length > total) throw new UserError(`Could not load ${url}: more bytes than announced`);
    out.set(value, got);
    got += value.length;
    const now = performance.now();
    if (now - lastPost > 100) {
      lastPost = now;
      post({ type: 'progress', id, stage, fraction: got / total });
    }
  }
  if (got !== total) throw new UserError(`Could not load ${url}: truncated download (${got} of ${total} bytes)`);
  return out;
}

function modelUrl(path, file) {
  const base = new URL(path, self.location.href);
  if (base.origin !== self.location.origin) throw new UserError(`Model path ${path} is not on this origin; refusing to load it`);
  return new URL(file, base).href;
}

async function selectBackend(id, preference, cachedChoice) {
  // Reuse the selection made in this wasm instance unless the user changed the preference.
  if (
    engine.selection &&
    engine.preference === preference &&
    (cachedChoice == null || cachedChoice === engine.cachedChoice || cachedChoice === engine.selection.backend)
  ) {
    return engine.selection;
  }
  if (preference === 'webgpu') {
    const g = await gpuInfo();
    if (!g.available) throw new UserError(`WebGPU unavailable: ${g.reason}. Choose Auto or CPU.`);
  }
  post({ type: 'progress', id, stage: preference === 'auto' && !cachedChoice ? 'Measuring backends (WebGPU vs CPU)…' : 'Selecting backend…', fraction: null });
  const selection = plain(await bedside.select_backend(preference, cachedChoice ?? null));
  if (preference === 'webgpu' && selection.backend !== 'webgpu') {
    throw new UserError(`WebGPU unavailable: ${selection.webgpu_error || selection.reason || 'the engine could not start WebGPU'}. Choose Auto or CPU.`);
  }
  engine.preference = preference;
  engine.cachedChoice = cachedChoice;
  engine.selection = selection;
  engine.modelKey = null; // a model lives on one backend; reload after switching
  engine.modelInfo = null;
  return selection;
}

/** A model package's `model.json` text and weights bytes: from the message when it was converted
 * or compressed in this tab, else fetched from its same-origin folder. */
async function readPackage(id, model) {
  if (model.json) return { json: model.json, weights: new Uint8Array(model.weights) };
  const json = new TextDecoder().decode(await fetchBytes(modelUrl(model.path, 'model.json'), id, 'Loading model description…'));
  const weights = await fetchBytes(modelUrl(model.path, 'weights.safetensors'), id, 'Loading model weights…');
  return { json, weights };
}

/** An engine progress callback that posts at most every 50 ms (and always the end). */
function throttledProgress(id, stageOf) {
  let lastPost = 0;
  return (what, fraction) => {
    const now = performance.now();
    if (now - lastPost < 50 && fraction !== 1) return;
    lastPost = now;
    post({ type: 'progress', id, stage: stageOf(what), fraction: Number.isFinite(fraction) ? fraction : null });
  };
}

async function loadModel(id, model, backend, ensemble) {
  const key = `${model.id}|${model.path ?? 'uploaded'}|${backend}|${ensemble ? 'ensemble' : 'single'}`;
  if (engine.modelKey === key && engine.modelInfo) return engine.modelInfo;
  post({ type: 'progress', id, stage: `Loading model ${model.name || model.id}…`, fraction: null });
  const { json, weights } = await readPackage(id, model);
  const members = [];
  if (ensemble) {
    const listed = JSON.parse(json).ensemble || [];
    if (!model.path || listed.length === 0) throw new UserError(`${model.name || model.id} has no ensemble members; untick "Ensemble".`);
    for (const [i, m] of listed.entries()) {
      const stage = `Loading ensemble member ${i + 1} of ${listed.length} (${m.weights})…`;
      members.push(await fetchBytes(modelUrl(model.path, m.weights), id, stage));
    }
  }
  post({ type: 'progress', id, stage: `Preparing model on ${backend === 'webgpu' ? 'WebGPU' : 'CPU'}…`, fraction: null });
  const info = plain(await bedside.load_model(json, weights, members));
  engine.modelKey = key;
  engine.modelInfo = info;
  return info;
}

// The helpers of the last multi-worker run, kept while the model, the convolution and the count stay.
let currentPool = null;

function poolFor(workers, msg) {
  const key = `${engine.modelKey}|${msg.cpuConv || 'default'}|${workers}`;
  if (currentPool && currentPool.key === key && !currentPool.failure) return currentPool;
  currentPool?.terminate();
  currentPool = null;
  // Helpers start with the run's first passes (no more than it has), see Pool.grow.
  currentPool = new Pool(workers, key, { model: msg.model, ensemble: Boolean(msg.ensemble), cpuConv: msg.cpuConv || null });
  return currentPool;
}

async function handle(msg) {
  switch (msg.type) {
    case 'init': {
      const { version, cpuLanes } = await ensureEngine();
      post({ type: 'ready', version, cpuLanes });
      return;
    }
    case 'device': {
      post({ type: 'device', info: await gpuInfo() });
      return;
    }
    case 'inspect': {
      await ensureEngine();
      const info = plain(await bedside.inspect_volume(new Uint8Array(msg.bytes), msg.volume ?? undefined));
      post({ type: 'inspected', id: msg.id, info });
      return;
    }
    case 'inspect_dicom': {
      await ensureEngine();
      const files = msg.files.map((b) => new Uint8Array(b));
      const info = plain(bedside.inspect_dicom(msg.names, files, msg.series ?? undefined));
      post({ type: 'inspected', id: msg.id, info });
      return;
    }
    case 'dicom-seg': {
      // "Save as DICOM SEG": the last mask as a Segmentation object referencing the series.
      await ensureEngine();
      const files = msg.files.map((b) => new Uint8Array(b));
      const seg = ownBuffer(bedside.dicom_seg(msg.names, files, msg.series, new Uint8Array(msg.mask), msg.model));
      post({ type: 'reply', id: msg.id, result: seg }, [seg]);
      return;
    }
    case 'agreement': {
      await ensureEngine();
      const reference = msg.reference ? new Uint8Array(msg.reference) : undefined;
      const r = plain(bedside.mask_agreement(new Uint8Array(msg.a), new Uint8Array(msg.b), reference, msg.labels ?? null, msg.options ?? null));
      post({ type: 'agreement', id: msg.id, ...r });
      return;
    }
    // Judging again what was measured, at a margin the user edits (compress::verdict, compress::pareto).
    case 'judge-margin':
      await ensureEngine();
      return post({ type: 'reply', id: msg.id, result: plain(bedside.judge_margin(msg.dice, msg.margin)) });
    case 'pareto-judge':
      await ensureEngine();
      return post({ type: 'reply', id: msg.id, result: plain(bedside.pareto_judge(msg.sweep, msg.margin)) });
    case 'pareto-factors':
      await ensureEngine();
      return post({ type: 'reply', id: msg.id, result: Array.from(bedside.pareto_factors(String(msg.text ?? ''))) });
    case 'import': {
      await ensureEngine();
      const out = bedside.import_hdbet(new Uint8Array(msg.bytes), String(msg.name));
      const buffer = ownBuffer(toU8(out.weights));
      post({ type: 'imported', id: msg.id, card: plain(out.card), model_json: out.model_json, weights: buffer }, [buffer]);
      return;
    }
    case 'package': {
      await ensureEngine();
      const card = plain(bedside.check_package(msg.json, new Uint8Array(msg.weights)));
      post({ type: 'imported', id: msg.id, card, model_json: msg.json, weights: msg.weights }, [msg.weights]);
      return;
    }
    case 'compress': {
      // Tucker-2 of the model's convolutions, here in the worker; the package stays in this tab.
      const { id, model } = msg;
      await ensureEngine();
      const { json, weights } = await readPackage(id, model);
      const onProgress = throttledProgress(id, (layer) => (layer ? `Decomposing ${layer}…` : 'Writing the package…'));
      const out = bedside.compress_model(json, weights, msg.rule, onProgress);
      const buffer = ownBuffer(toU8(out.weights));
      post(
        { type: 'compressed', id, card: plain(out.card), model_json: out.model_json, weights: buffer, report: plain(out.report) },
        [buffer],
      );
      return;
    }
    case 'pareto': {
      // The model and its Tucker-2 at each factor, run on the loaded volume on the chosen backend.
      const { id } = msg;
      await ensureEngine();
      const selection = await selectBackend(id, msg.backend, msg.cachedChoice);
      post({ type: 'backend', id, selection, preference: msg.backend });
      const { json, weights } = await readPackage(id, msg.model);
      const reference = msg.reference ? new Uint8Array(msg.reference) : undefined;
      const onPoint = (soFar) => post({ type: 'pareto-point', id, sweep: plain(soFar) });
      const onProgress = throttledProgress(id, String);
      const sweep = await bedside.pareto_sweep(json, weights, new Uint8Array(msg.bytes), reference, msg.options, onPoint, onProgress);
      post({ type: 'pareto', id, sweep: plain(sweep) });
      return;
    }
    case 'run': {
      const { id } = msg;
      post({ type: 'progress', id, stage: 'Starting engine…', fraction: null });
      await ensureEngine();
      const selection = await selectBackend(id, msg.backend, msg.cachedChoice);
      post({ type: 'backend', id, selection, preference: msg.backend });
      const info = await loadModel(id, msg.model, selection.backend, Boolean(msg.ensemble));
      post({ type: 'model', id, info });
      if (msg.cpuConv) bedside.set_cpu_conv(msg.cpuConv);
      if (msg.gpuConv) bedside.set_gpu_conv(msg.gpuConv);
      // The pool works on the CPU only: WebGPU has one queue, which more workers would share.
      const workers = selection.backend === 'cpu' ? Math.max(1, Math.floor(Number(msg.workers) || 1)) : 1;
      const pool = workers > 1 ? poolFor(workers, msg) : null;
      const poolConvBefore = pool ? pool.convMs : 0;
      post({ type: 'progress', id, stage: 'Segmenting…', fraction: 0 });
      const onProgress = throttledProgress(id, String);
      // Helpers may hold half of the memory the browser reports (Chromium reports at most 8 GB).
      const memoryBudgetMb = navigator.deviceMemory ? (navigator.deviceMemory * 1024) / 2 : undefined;
      const options = { tta: Boolean(msg.tta), mirror_check: Boolean(msg.mirrorCheck), workers, memory_budget_mb: memoryBudgetMb, windows: Boolean(msg.windows) };
      const raw = await bedside.segment(new Uint8Array(msg.bytes), options, onProgress, pool ? (passes) => pool.run(passes) : undefined);
      const mask = toU8(raw.mask_nii_gz ?? (raw instanceof Map ? raw.get('mask_nii_gz') : undefined));
      const rest = plain(raw instanceof Map ? Object.fromEntries(raw) : raw);
      delete rest.mask_nii_gz;
      rest.pool_memory_mb = pool ? [...pool.memoryMb] : [];
      rest.pool_conv_ms = pool ? pool.convMs - poolConvBefore : 0;
      const maskBuffer = ownBuffer(mask);
      post({ type: 'result', id, result: { ...rest, mask: maskBuffer } }, [maskBuffer]);
      return;
    }
    case 'pool-load': {
      await ensureEngine();
      await selectBackend(msg.id, 'cpu', null);
      await loadModel(msg.id, msg.model, 'cpu', Boolean(msg.ensemble));
      if (msg.cpuConv) bedside.set_cpu_conv(msg.cpuConv);
      post({ type: 'reply', id: msg.id, result: { memory_mb: bedside.memory_mb() } });
      return;
    }
    case 'pool-pass': {
      const convBefore = bedside.conv_ms();
      const probs = await bedside.run_pass(msg.member, Uint32Array.from(msg.shape), msg.patch, Boolean(msg.mirror));
      const result = { probs, memory_mb: bedside.memory_mb(), conv_ms: bedside.conv_ms() - convBefore };
      post({ type: 'reply', id: msg.id, result }, [probs.buffer]);
      return;
    }
    default:
      if (/^(teach|recover|adapt)-/.test(String(msg.type))) {
        await ensureEngine();
        return handleTraining(msg, { bedside, post, plain, toU8, ownBuffer, selectBackend, readPackage });
      }
      throw new Error(`unknown message type ${msg.type}`);
  }
}

// A panic inside a future the engine polls later (an async export's next step, run from a
// microtask) traps outside any call this worker awaits: the request would never settle. Answer it
// with the panic's own message instead; the page restarts the worker as for any crash. An error
// outside any request still reaches the page's Worker.onerror (www/ui/rpc.js).
function answerCrash(event, error) {
  if (!isFatal(error) || !current || current.answered) return;
  event.preventDefault();
  answerError(error);
}
self.addEventListener('error', (event) => answerCrash(event, event.error));
self.addEventListener('unhandledrejection', (event) => answerCrash(event, event.reason));

/** The fault hooks: answered at once, not queued behind the request they interrupt. */
function fault(msg) {
  if (msg.type === 'lose-device') {
    destroyDevices();
  } else if (msg.how === 'mid-run') {
    bedside?.crash_next_progress();
  } else {
    setTimeout(() => {
      throw new Error('the engine worker failed outside any request (test hook)');
    });
  }
}

// Handle one message at a time: the wasm engine is not re-entrant.
let queue = Promise.resolve();
self.onmessage = (event) => {
  const msg = event.data || {};
  if (msg.type === 'lose-device' || msg.type === 'crash') return fault(msg);
  queue = queue.then(async () => {
    lastPanic = null;
    current = { id: msg.id ?? null, type: msg.type, answered: false };
    try {
      // A device lost while idle: this instance's WebGPU is gone, so the run ends before it starts.
      if (deviceLost() && onWebGpu(current)) throw new Error('device lost');
      await handle(msg);
    } catch (e) {
      // A lost device may surface first as the engine's own error (or a panic): wait for the loss
      // itself a moment, so that the page hears "device lost" and retries on the CPU.
      if (onWebGpu(current) && !deviceLost()) {
        await Promise.race([whenDeviceLost(), new Promise((r) => setTimeout(r, 250))]);
      }
      answerError(e, Boolean(deviceLost()) && onWebGpu(current));
    } finally {
      current.answered = true;
    }
  });
};
