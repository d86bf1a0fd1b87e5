// Run panel: run the selected model on the loaded volume, Cancel, and the Results panel (timings,
// label volumes, Save mask, Save as DICOM SEG). runModel() is also how Compare and "Run original and compressed"
// run each of their two models.

import { el, state, selectedModel } from './state.js';
import { engine } from './engine.js';
import { backendName } from './format.js';
import { saveBlob } from './files.js';
import { setStatus, setIdleStatus, clearError, setProgress, showError } from './progress.js';
import { updateControls } from './controls.js';
import * as viewers from './viewers.js';
import { modelMessage, cachedAutoChoice } from './model.js';
import { onParetoCancelled } from './pareto.js';
import { renderWorkers } from './device.js';

const STAGES = ['read', 'preprocess', 'inference', 'postprocess', 'mirror_check', 'total'];

function run() {
  state.compare = null;
  runModel(selectedModel());
}

/** Run `model` on the loaded volume, with the backend and options the panel shows (or on
 * `backend`, when a lost GPU device sends the run to the CPU). */
export function runModel(model, backend = null) {
  if (!state.volume || !model || state.busy) return;
  clearError();
  state.runModel = model;
  state.busy = true;
  state.runId = state.nextId++;
  state.runStartedAt = performance.now();
  state.result = null;
  clearResults();
  viewers.removeMask();
  setStatus('Starting…');
  setProgress(null);
  updateControls();
  const preference = backend || el.backend.value;
  const cached = preference === 'auto' ? cachedAutoChoice() : null;
  const copy = state.volume.bytes.slice(0);
  const modelMsg = modelMessage(model);
  engine.post(
    {
      type: 'run',
      id: state.runId,
      bytes: copy,
      model: modelMsg,
      backend: preference,
      cachedChoice: cached ? cached.backend : null,
      tta: el.tta.checked,
      mirrorCheck: el.mirrorCheck.checked,
      ensemble: el.ensemble.checked,
      workers: state.workers,
    },
    modelMsg.weights ? [copy, modelMsg.weights] : [copy],
  );
}

/** Cancel: the only way to stop a running wasm call is to terminate its worker. */
function cancel() {
  if (!state.busy) return;
  state.busy = false;
  state.runId = null;
  state.compare = null;
  engine.restart(); // terminating the worker is the only way to stop a running wasm call
  onParetoCancelled();
  setProgress(0);
  setStatus('Cancelled');
  updateControls();
}

/** A single run's result (www/app.js routes Compare's runs to Compare instead). */
export async function onResult(result) {
  state.busy = false;
  state.runId = null;
  keepResult(result, selectedModel()?.id ?? null);
  state.lastWorkers = {
    workers: result.workers ?? 1,
    memory_mb: [result.wasm_memory_mb, ...(result.pool_memory_mb || [])].filter(Number.isFinite),
    memory_cap: result.workers_memory_cap ?? null,
  };
  renderWorkers();
  setProgress(1);
  const total = state.result.timings_ms.total;
  const work = result.windows ? `: ${result.windows} window${result.windows > 1 ? 's' : ''} of ${result.patch.join('×')}` : '';
  const nets = result.networks > 1 ? `, ensemble of ${result.networks} networks` : '';
  setStatus(`Done${Number.isFinite(total) ? ` in ${(total / 1000).toFixed(1)} s` : ''} on ${backendName(result.backend)}${work}${nets}.`);
  updateControls();
  if (state.volume) await viewers.showMask(result.mask, state.modelInfo?.labels);
}

/** Make a run's result the page's current one: Save mask saves it, the tables show it. */
export function keepResult(result, modelId) {
  state.result = {
    maskBytes: result.mask,
    timings_ms: result.timings_ms || {},
    label_volumes_mm3: result.label_volumes_mm3 || [],
    backend: result.backend,
    modelId,
  };
  renderTimings(state.result.timings_ms);
  renderLabelVolumes(state.result.label_volumes_mm3);
  renderQuality(result.quality, modelId);
}

/** The engine's quality signal for the mask: a line in Results, and a plain warning in the Run
 * panel when the mask should not be trusted, with HD-BET one click away (unless it made the mask). */
function renderQuality(q, modelId) {
  el.qualitySignal.textContent = q ? `Quality signal: ${q.summary}` : '';
  el.qualityWarning.hidden = !q || q.warnings.length === 0;
  el.qualityWarning.dataset.model = modelId ?? '';
  if (el.qualityWarning.hidden) return;
  el.qualityText.textContent = `${q.summary} A small student can give a wrong mask on a scan unlike its training heads; HD-BET is slower and holds there.`;
  el.qualityRunHdbet.hidden = modelId === 'hd-bet' || !state.models.some((m) => m.id === 'hd-bet');
}

/** "Run HD-BET on this volume": select it and run, as the user would. */
function runHdbet() {
  if (state.busy) return;
  el.model.value = 'hd-bet';
  el.model.dispatchEvent(new Event('change'));
  el.qualityWarning.hidden = true;
  run();
}

/** The GPU device was lost mid-run (the worker has been restarted): the same run again on the
 * CPU, with the reason left on screen so the user knows why this one ran there. */
export function retryOnCpu(msg) {
  state.busy = false;
  state.runId = null;
  runModel(state.runModel, 'cpu');
  showError(`${msg.message} The run was stopped and is running again on the CPU.`);
  setStatus('Running again on the CPU after the GPU device was lost…');
}

/** A run failed, or the agreement of Compare's two masks. */
export function onRunError(msg) {
  state.busy = false;
  state.runId = null;
  const during = state.compare ? ` (while comparing: ${state.compare.step})` : '';
  state.compare = null;
  showError(msg.message + during);
  setStatus(msg.phase === 'run' ? 'Segmentation failed.' : 'Comparison failed.');
  setProgress(0);
}

export function clearResults() {
  for (const stage of STAGES) {
    const cell = el.timings.querySelector(`tr[data-stage="${stage}"] td`);
    if (cell) cell.textContent = '–';
  }
  el.labelVolumes.tBodies[0].replaceChildren();
  el.qualitySignal.textContent = '';
  el.qualityWarning.hidden = true;
  updateControls();
}

function renderTimings(t) {
  for (const stage of STAGES) {
    const cell = el.timings.querySelector(`tr[data-stage="${stage}"] td`);
    const v = Number(t[stage]);
    cell.textContent = Number.isFinite(v) ? v.toFixed(v < 100 ? 1 : 0) : '–';
  }
}

function renderLabelVolumes(list) {
  const colors = new Map((state.modelInfo?.labels || []).map((l) => [l.value, l.color]));
  const rows = list.map((l) => {
    const tr = document.createElement('tr');
    tr.dataset.value = String(l.value);
    const v = document.createElement('td');
    v.textContent = String(l.value);
    const n = document.createElement('td');
    n.className = 'text';
    const c = colors.get(l.value);
    if (Array.isArray(c)) {
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.backgroundColor = `rgb(${c[0]}, ${c[1]}, ${c[2]})`; // CSSOM, allowed by style-src 'self'
      n.append(sw);
    }
    n.append(String(l.name ?? ''));
    const mm3 = document.createElement('td');
    mm3.dataset.mm3 = String(l.mm3);
    mm3.textContent = Math.round(Number(l.mm3)).toLocaleString('en-US');
    const ml = document.createElement('td');
    ml.textContent = (Number(l.mm3) / 1000).toFixed(1);
    tr.append(v, n, mm3, ml);
    return tr;
  });
  el.labelVolumes.tBodies[0].replaceChildren(...rows);
}

function saveMask() {
  if (!state.result || !state.result.maskBytes) return;
  const base = (state.volume?.name || 'volume').replace(/\.nii(\.gz)?$/i, '');
  const blob = new Blob([state.result.maskBytes], { type: 'application/gzip' });
  saveBlob(`${base}_mask.nii.gz`, blob);
}

/** "Save as DICOM SEG": the engine writes the mask as a Segmentation object that references the
 * DICOM series it was made on (Rust `dicom_seg`); the files go to the worker again, nowhere else. */
async function saveSeg() {
  if (!state.result?.maskBytes || state.dicom?.index == null) return;
  const { names, buffers, index, name, list } = state.dicom;
  const files = buffers.map((b) => b.slice(0));
  const mask = state.result.maskBytes.slice(0);
  clearError();
  setStatus('Writing the DICOM SEG…');
  try {
    const seg = await engine.call('dicom-seg', { names, files, series: index, mask, model: state.result.modelId }, [...files, mask]);
    // Named after the folder or ZIP given; loose files after their series' number.
    const base = /^\d+ DICOM files$/.test(name) ? `series_${list[index]?.number ?? index + 1}` : name.replace(/\.(zip|dcm)$/i, '');
    saveBlob(`${base}_seg.dcm`, new Blob([seg], { type: 'application/dicom' }));
    setStatus('Saved the DICOM SEG.');
  } catch (e) {
    showError(`Could not write the DICOM SEG: ${e.message || e}`);
    setIdleStatus();
  }
}

export function wireRun() {
  el.run.addEventListener('click', run);
  el.cancel.addEventListener('click', cancel);
  el.save.addEventListener('click', saveMask);
  el.saveSeg.addEventListener('click', saveSeg);
  el.qualityRunHdbet.addEventListener('click', runHdbet);
}
