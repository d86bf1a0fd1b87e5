// bedside benchmark page (bench.html): each model on each backend, CPU convolution and worker
// count, segmenting the bundled sample through the same engine worker and 'run' message as the
// main page. A ?model=…&backend=…&conv=…&workers=…&runs=… query runs that one configuration and
// writes its result as JSON into [data-testid=bench-result] (tests and README figures read it);
// without one, the form runs the chosen matrix. Each configuration gets a fresh engine, so its
// memory figures are its own.

import { Engine } from './ui/rpc.js';

const $ = (id) => document.getElementById(id);
const CORES = navigator.hardwareConcurrency || 1;
const STAGES = ['read', 'preprocess', 'inference', 'postprocess', 'total'];

// The page's whole state, serialisable: what is asked for, and what has been measured.
const state = { configs: [], results: [], running: false, catalog: [] };

let pending = null; // {id, resolve, reject} of the run in flight
let sampleBytes = null;
const engine = new Engine({
  name: 'bedside-bench',
  handlers: {
    result: (m) => m.id === pending?.id && pending.resolve(m.result),
    agreement: (m) => m.id === pending?.id && pending.resolve(m),
    error: (m) => (m.id === pending?.id || m.id == null) && pending?.reject(new Error(m.message)),
    backend: (m) => m.id === pending?.id && (pending.selection = m.selection),
    progress: (m) => m.id === pending?.id && ($('bench-status').textContent = `${pending.label}: ${m.stage}`),
  },
  onCrash: (why) => pending?.reject(new Error(why)),
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

/** One run of the sample: resolves to the engine's result (timings, FLOPs, memory). */
function runOnce(config, label) {
  const id = `bench-${Math.random().toString(36).slice(2)}`;
  const model = state.catalog.find((m) => m.id === config.model);
  if (!model) return Promise.reject(new Error(`no model "${config.model}" in models/index.json`));
  const bytes = sampleBytes.slice(0);
  const call = { id, label, selection: null };
  return new Promise((resolve, reject) => {
    Object.assign(call, { resolve, reject });
    pending = call;
    engine.post(
      { type: 'run', id, bytes, model: { id: model.id, name: model.name, path: model.path }, backend: config.backend, cachedChoice: null, workers: config.workers, cpuConv: config.backend === 'cpu' ? config.conv : null, gpuConv: config.backend === 'webgpu' ? config.gpuConv : null, windows: Boolean(config.windows) },
      [bytes],
    );
  }).then((result) => ({ ...result, selection: call.selection }));
}

/** The WebGPU adapter, as the browser describes it (vendor, architecture, fallback or not). */
function adapterInfo() {
  return new Promise((resolve) => {
    engine.configure({ handlers: { device: (m) => resolve(m.info) } });
    engine.post({ type: 'device' });
  });
}

/** How far two masks agree (the engine's mask_agreement, as the page's Compare uses it). */
function agreement(a, b) {
  const id = `bench-${Math.random().toString(36).slice(2)}`;
  return new Promise((resolve, reject) => {
    pending = { id, resolve, reject, label: 'checking the mask' };
    engine.post({ type: 'agreement', id, a, b, labels: null }, [a, b]);
  });
}

/** A configuration measured `runs` times on a fresh engine: the figures of the median run. With
 * `check`, the mask is also compared with the one Burn's own convolution gives on one worker. */
async function measure(config) {
  engine.restart();
  const label = `${config.model} on ${config.backend}${config.backend === 'cpu' ? ` (${config.conv ?? 'default'}, ${config.workers} workers)` : ''}`;
  const adapter = config.backend === 'webgpu' ? await adapterInfo() : null;
  const runs = [];
  for (let r = 0; r < config.runs; r++) runs.push(await runOnce(config, `${label}, run ${r + 1} of ${config.runs}`));
  const last = runs[runs.length - 1];
  const stagesMs = Object.fromEntries(STAGES.map((s) => [s, median(runs.map((x) => x.timings_ms[s]))]));
  let check = null;
  if (config.check) {
    const reference = await runOnce({ ...config, conv: 'burn', workers: 1 }, `${config.model}: the reference run (Burn's convolution, 1 worker)`);
    const a = await agreement(reference.mask, last.mask);
    check = { against: { cpu_conv: 'burn', workers: 1 }, dice: a.dice, reference_inference_ms: reference.timings_ms.inference };
  }
  const gflop = last.conv_flops / 1e9;
  const gflops = gflop / (stagesMs.inference / 1000);
  return {
    machine: { user_agent: navigator.userAgent, cores: CORES },
    model: config.model,
    backend: last.backend,
    adapter,
    cpu_conv: last.cpu_conv ?? null,
    gpu_conv: last.gpu_conv ?? null,
    engine: last.cpu_lanes,
    workers: last.workers,
    workers_asked: config.workers,
    workers_memory_cap: last.workers_memory_cap ?? null,
    runs: runs.length,
    stages_ms: stagesMs,
    runs_ms: runs.map((x) => x.timings_ms),
    conv_gflop: gflop,
    gflops,
    gflops_per_worker: gflops / last.workers,
    // Time in the convolutions, summed over the workers, and the rest of the inference stage.
    conv_ms: last.conv_ms + last.pool_conv_ms,
    windows: last.windows,
    patch: last.patch,
    memory_mb: { engine: last.wasm_memory_mb, workers: last.pool_memory_mb },
    foreground_ml: last.foreground_mm3 / 1000,
    check,
  };
}

function showRow(r) {
  const tr = document.createElement('tr');
  const memory = [r.memory_mb.engine, ...r.memory_mb.workers].map((m) => m.toFixed(0)).join(' / ');
  const dice = r.check ? r.check.dice.toFixed(5) : '–';
  const conv = r.backend === 'cpu' ? r.conv_ms.toFixed(0) : '–';
  const cells = [r.model, r.backend, r.cpu_conv ?? r.gpu_conv ?? '–', r.workers, ...STAGES.map((s) => r.stages_ms[s].toFixed(0)), conv, r.gflops.toFixed(1), r.gflops_per_worker.toFixed(1), memory, dice];
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = String(c);
    tr.append(td);
  }
  $('bench-rows').append(tr);
}

async function runAll(configs) {
  state.configs = configs;
  state.results = [];
  state.running = true;
  $('bench-error').hidden = true;
  $('bench-run').disabled = true;
  $('bench-cancel').disabled = false;
  $('bench-result').textContent = '';
  try {
    sampleBytes ??= await (await fetch('sample/ch2.nii.gz')).arrayBuffer();
    for (const [i, c] of configs.entries()) {
      $('bench-progress').value = i / configs.length;
      const r = await measure(c);
      state.results.push(r);
      showRow(r);
    }
    $('bench-progress').value = 1;
    $('bench-status').textContent = `Done: ${configs.length} configuration${configs.length === 1 ? '' : 's'}.`;
    $('bench-result').textContent = JSON.stringify(state.results.length === 1 ? state.results[0] : state.results, null, 2);
  } catch (e) {
    $('bench-error').textContent = e.message;
    $('bench-error').hidden = false;
    $('bench-status').textContent = 'Stopped.';
  } finally {
    state.running = false;
    pending = null;
    $('bench-run').disabled = false;
    $('bench-cancel').disabled = true;
  }
}

function checked(name) {
  return [...document.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
}

/** The matrix the form asks for (the CPU convolution only varies on the CPU). */
function formConfigs() {
  const workers = $('bench-workers').value.split(',').map((w) => parseInt(w, 10)).filter((w) => w >= 1);
  const runs = Math.max(1, parseInt($('bench-runs').value, 10) || 1);
  const check = $('bench-check').checked;
  const configs = [];
  for (const model of checked('model')) {
    for (const backend of checked('backend')) {
      if (backend === 'webgpu') configs.push({ model, backend, conv: null, workers: 1, runs, check: false });
      else for (const conv of checked('conv')) for (const w of workers) configs.push({ model, backend, conv, workers: w, runs, check });
    }
  }
  return configs;
}

/** The one configuration of a ?model=… query, or null. */
function queryConfig() {
  const q = new URLSearchParams(location.search);
  if (!q.has('model')) return null;
  const backend = q.get('backend') || 'cpu';
  return {
    model: q.get('model'),
    backend,
    // No conv: the engine's own default (relaxed SIMD, or SIMD128 in the fallback engine).
    conv: backend === 'cpu' ? q.get('conv') || null : null,
    workers: Math.max(1, parseInt(q.get('workers') || String(CORES), 10) || 1),
    runs: Math.max(1, parseInt(q.get('runs') || '1', 10) || 1),
    check: q.get('check') === '1',
    // The WebGPU convolution: none for the default (Burn's direct kernel), or tiled (bedside's).
    gpuConv: backend === 'webgpu' ? q.get('gpuconv') || null : null,
    // Windows even for a package that asks for one pass (HD-BET): their agreement with it.
    windows: q.get('windows') === '1',
  };
}

async function main() {
  $('bench-cores').textContent = String(CORES);
  $('bench-workers').value = [...new Set([1, CORES])].join(',');
  state.catalog = await (await fetch('models/index.json')).json();
  for (const m of state.catalog) {
    const label = document.createElement('label');
    const box = Object.assign(document.createElement('input'), { type: 'checkbox', name: 'model', value: m.id, checked: m.id === 'student-s' });
    label.append(box, ` ${m.id}`);
    $('bench-models').append(label);
  }
  $('bench-run').addEventListener('click', () => runAll(formConfigs()));
  $('bench-cancel').addEventListener('click', () => {
    engine.restart();
    pending?.reject(new Error('Cancelled.'));
  });
  document.documentElement.dataset.appReady = 'true';
  const one = queryConfig();
  if (one) await runAll([one]);
}

main().catch((e) => {
  $('bench-error').textContent = `The benchmark page could not start: ${e.message}`;
  $('bench-error').hidden = false;
});
