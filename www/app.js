// bedside main-thread UI glue: DOM <-> engine worker <-> viewer.
// Thin on purpose: all parsing, inference and mask building happen in the wasm inside
// www/worker.js. Image bytes go to the worker only (postMessage with transfer) and to the
// in-page viewer; never into a network request.

import { FRONTEND_VERSION, el, state, selectedModel, teacherOf } from './ui/state.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress, onProgress } from './ui/progress.js';
import { updateControls } from './ui/controls.js';
import { fmt, backendName } from './ui/format.js';
import { worstDice, worstLabel, withinMargin } from './ui/dice.js';
import { readPickedFile, saveBlob } from './ui/files.js';
import { engine } from './ui/engine.js';
import * as viewers from './ui/viewers.js';
import { loadModels, renderModels, modelMessage, onImported, onImportError, onBackend, wireModel } from './ui/model.js';
import { runModel, onResult, keepResult, onRunError, clearResults, wireRun } from './ui/run.js';
import { clearPareto, onParetoPoint, onParetoDone, onParetoError, wirePareto } from './ui/pareto.js';
import { renderDevice, onDeviceError, wireDevice } from './ui/device.js';


// ---------------------------------------------------------------------------------------------
// The engine: lifecycle hooks and the reply handlers (the protocol is listed in www/worker.js)

/** A handler for replies to the request in flight (state.runId); replies to an older one are dropped. */
const current = (fn) => (msg) => {
  if (msg.id === state.runId) fn(msg);
};

engine.configure({
  onStarting() {
    // A new engine knows nothing yet: it must load the wasm again and pick its backend afresh.
    state.engineReady = false;
    state.selection = null;
    state.modelInfo = null;
    el.engineVersion.textContent = 'loading…';
  },
  onStarted() {
    engine.post({ type: 'init' });
    engine.post({ type: 'device' });
  },
  onStartFailed(e) {
    showError(`Could not start the engine worker: ${e.message || e}`);
  },
  onCrash: workerCrashed,
  handlers: {
    ready: onReady,
    device(msg) {
      state.device = msg.info;
      renderDevice();
    },
    inspected(msg) {
      if (msg.id === state.referenceInspectId) onReferenceInspected(msg.info);
      if (msg.id === state.inspectId) onInspected(msg.info);
    },
    progress: current(onProgress),
    backend: current((msg) => onBackend(msg.selection, msg.preference)),
    model: current((msg) => {
      state.modelInfo = msg.info;
    }),
    // Compare's runs come in pairs (and then their agreement); a single run ends here.
    result: current((msg) => (state.compare ? onCompareResult(msg.result) : onResult(msg.result))),
    imported: current(onImported),
    agreement: current(onAgreement),
    compressed: current(onCompressed),
    'pareto-point': current((msg) => onParetoPoint(msg.point)),
    pareto: current((msg) => onParetoDone(msg.sweep)),
    error: onWorkerError,
  },
});

function onReady(msg) {
  state.engineReady = true;
  state.engineVersion = msg.version;
  el.engineVersion.textContent = msg.version;
  if (!state.busy && !state.inspecting && /Starting|loading/i.test(el.status.textContent)) {
    setStatus(state.volume ? 'Ready.' : 'Ready. Load a volume or try the sample.');
  }
  updateControls();
}

function workerCrashed(message) {
  const wasBusy = state.busy || state.inspecting;
  state.busy = false;
  state.inspecting = false;
  state.runId = null;
  state.inspectId = null;
  setProgress(0);
  showError(`${message} The engine has been restarted${wasBusy ? '; please try again' : ''}.`);
  setStatus('Engine restarted after a crash.');
  engine.restart();
  updateControls();
}

function onInitError(msg) {
  showError(msg.message);
  setStatus('The engine could not start.');
  el.engineVersion.textContent = 'unavailable';
  updateControls();
}

/** {type:'error', phase, id, message, fatal}: routed to the panel whose request failed. */
function onWorkerError(msg) {
  // These settle the controls themselves; an init or reference failure never restarts the engine.
  if (msg.phase === 'init') return onInitError(msg);
  if (msg.phase === 'inspect' && msg.id === state.referenceInspectId) return onReferenceError(msg);
  if (msg.phase === 'pareto') return onParetoError(msg);
  switch (msg.phase) {
    case 'inspect':
      if (msg.id !== state.inspectId) return;
      onInspectError(msg);
      break;
    case 'run':
    case 'agreement':
      if (msg.id !== state.runId) return;
      onRunError(msg);
      break;
    case 'compress':
      if (msg.id !== state.runId) return;
      onCompressError(msg);
      break;
    case 'import':
    case 'package':
      if (msg.id !== state.runId) return;
      onImportError(msg);
      break;
    case 'device':
      onDeviceError(msg);
      break;
    default:
      showError(msg.message);
  }
  if (msg.fatal) engine.restart();
  updateControls();
}

function onReferenceError(msg) {
  state.referenceInspectId = null;
  state.pendingReference = null;
  showError(`Could not read the reference mask: ${msg.message}${state.reference ? ` Still used: ${state.reference.name}.` : ''}`);
  setIdleStatus();
  updateControls();
}

function onInspectError(msg) {
  state.inspecting = false;
  state.inspectId = null;
  const pending = state.pendingName || 'the file';
  const keep = state.volume ? ` Still loaded: ${state.volume.name}.` : '';
  showError(`Could not read ${pending}: ${msg.message}${keep}`);
  setIdleStatus();
  setProgress(0);
}

function onCompressError(msg) {
  state.busy = false;
  state.runId = null;
  showError(`Could not compress ${state.pendingName || 'the model'}: ${msg.message} Nothing was changed.`);
  setIdleStatus();
  setProgress(0);
}

// ---------------------------------------------------------------------------------------------
// Volume input

async function loadFile(file) {
  if (!file) return;
  clearError();
  // Say so at once: reading a large file takes a moment, and until then the page must not look
  // idle with the previous status (the e2e tests, like a user, wait for "Checking" to end).
  setStatus(`Checking ${file.name}…`);
  const tooLarge = `${(file.size / 2 ** 30).toFixed(1)} GiB is too large for this tab.`;
  const bytes = await readPickedFile(file, 'read', 2 ** 31, tooLarge);
  if (bytes) inspect(file.name, bytes);
}

async function loadSample() {
  clearError();
  setStatus('Loading the sample volume…');
  setProgress(null);
  el.sample.disabled = true;
  try {
    const res = await fetch('sample/ch2.nii.gz', { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status} for sample/ch2.nii.gz (run the setup script to fetch it)`);
    inspect('ch2.nii.gz', await res.arrayBuffer());
  } catch (e) {
    showError(`Could not load the sample: ${e.message || e}`);
    setIdleStatus();
    setProgress(0);
    updateControls();
  }
}

function inspect(name, bytes) {
  engine.ensureStarted();
  state.inspecting = true;
  state.inspectId = state.nextId++;
  state.pendingName = name;
  state.pendingBytes = bytes;
  setStatus(`Checking ${name}…`);
  setProgress(null);
  updateControls();
  const copy = bytes.slice(0);
  engine.post({ type: 'inspect', id: state.inspectId, bytes: copy }, [copy]);
}

async function onInspected(info) {
  state.inspecting = false;
  state.inspectId = null;
  const name = state.pendingName;
  const bytes = state.pendingBytes;
  state.pendingName = null;
  state.pendingBytes = null;
  state.volume = { name, bytes, info };
  state.result = null;
  if (state.reference) {
    state.reference = null;
    el.referenceInfo.textContent = 'The reference mask was removed: it belonged to the previous volume.';
  }
  clearPareto();
  clearResults();
  el.comparePanel.hidden = true; // a comparison belongs to the volume it was made on
  el.volumeInfo.textContent = describeVolume(name, info);
  setStatus('Ready. Choose a model and backend, then Run.');
  setProgress(0);
  updateControls();
  await viewers.showVolume(bytes, name);
}

function describeVolume(name, info) {
  const dims = (info.dims || []).join(' × ');
  const sp = (info.spacing || []).map((v) => Number(v).toFixed(2)).join(' × ');
  const parts = [`${name}: ${dims} voxels`];
  if (sp) parts.push(`${sp} mm`);
  if (info.datatype) parts.push(info.datatype);
  if (info.orientation) parts.push(info.orientation);
  if (Number.isFinite(info.min) && Number.isFinite(info.max)) parts.push(`range ${fmt(info.min)}…${fmt(info.max)}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Compare: the teacher, then the student, on the loaded volume; then their agreement.

function compare() {
  const student = selectedModel();
  const teacher = teacherOf(student);
  if (!state.volume || !student || !teacher || state.busy) return;
  state.compare = { teacher, student, step: 'teacher', results: {} };
  el.comparePanel.hidden = true;
  runModel(teacher);
  setStatus(`Comparing: running the teacher (${teacher.name}) first…`);
}

async function onCompareResult(result) {
  state.busy = false; // runModel() below starts the next run only when idle
  state.runId = null;
  const c = state.compare;
  c.results[c.step] = result;
  if (c.step === 'teacher') {
    c.step = 'student';
    runModel(c.student);
    setStatus(`Comparing: teacher done in ${(result.timings_ms.total / 1000).toFixed(1)} s; running ${c.student.name}…`);
    return;
  }
  // The student's result is also the page's current result (Save mask saves it).
  keepResult(result, c.student.id);
  c.step = 'agreement';
  state.busy = true;
  state.runId = state.nextId++;
  setStatus('Comparing: measuring the agreement of the two masks…');
  const a = c.results.teacher.mask.slice(0);
  const b = result.mask.slice(0);
  const reference = state.reference ? state.reference.bytes.slice(0) : null;
  const labels = state.modelInfo?.labels ?? null;
  engine.post({ type: 'agreement', id: state.runId, a, b, reference, labels }, reference ? [a, b, reference] : [a, b]);
  updateControls();
}

async function onAgreement(msg) {
  const c = state.compare;
  state.busy = false;
  state.runId = null;
  state.compare = null;
  const row = (model, r) => {
    const tr = document.createElement('tr');
    tr.dataset.model = model.id;
    const brain = (r.label_volumes_mm3 || []).filter((l) => l.value > 0).reduce((s, l) => s + Number(l.mm3), 0);
    const gflop = Number.isFinite(model.flops_per_patch) ? fmt(model.flops_per_patch / 1e9) : '–';
    for (const text of [model.name, Number.isFinite(model.params) ? fmt(model.params) : '–', gflop, fmt(r.timings_ms.total), fmt(brain)]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  };
  el.compareTable.tBodies[0].replaceChildren(row(c.teacher, c.results.teacher), row(c.student, c.results.student));
  const speedup = c.results.teacher.timings_ms.total / c.results.student.timings_ms.total;
  const hd = Number.isFinite(msg.hd95_mm) ? `, HD95 ${msg.hd95_mm.toFixed(1)} mm` : '';
  el.compareAgreement.dataset.dice = String(msg.dice);
  const vsReference = referenceSentence(msg.reference, c.compress ? ['the original', 'the compressed model'] : ['the teacher', 'the student']);
  el.compareAgreement.dataset.referenceDice = msg.reference ? JSON.stringify([worstDice(msg.reference.a), worstDice(msg.reference.b)]) : '';
  el.compareAgreement.textContent =
    `Agreement of the student with the teacher: Dice ${msg.dice.toFixed(4)}${hd}. ` +
    `The student took ${fmt(c.results.student.timings_ms.total)} ms, ${speedup.toFixed(1)}× faster than the teacher.${vsReference}`;
  const roles = c.compress ? ['Original', 'Compressed'] : ['Teacher', 'Student'];
  el.compareLeftCaption.textContent = `${roles[0]}: ${c.teacher.name}`;
  el.compareRightCaption.textContent = `${roles[1]}: ${c.student.name}`;
  if (c.compress) {
    el.compareAgreement.textContent =
      `Agreement of the compressed model with the original: Dice ${msg.dice.toFixed(4)}${hd}. ` +
      `It took ${fmt(c.results.student.timings_ms.total)} ms against ${fmt(c.results.teacher.timings_ms.total)} ms ` +
      `(${speedup.toFixed(2)}× the speed) on ${backendName(c.results.student.backend)}.${vsReference}`;
    renderVerdict(msg.per_label && msg.per_label.length ? msg.per_label : [{ name: 'foreground', dice: msg.dice }]);
  }
  el.comparePanel.hidden = false;
  setStatus(
    c.compress
      ? `Ran ${c.teacher.name} and its compressed version: Dice ${msg.dice.toFixed(3)}, ${speedup.toFixed(2)}× the speed.`
      : `Compared ${c.student.name} with ${c.teacher.name}: Dice ${msg.dice.toFixed(3)}, ${speedup.toFixed(1)}× faster.`,
  );
  setProgress(1);
  updateControls();
  await viewers.showMask(c.results.student.mask, state.modelInfo?.labels, { clearInfo: false });
  try {
    await viewers.showComparePair(state.volume, [c.results.teacher.mask, c.results.student.mask], state.modelInfo?.labels);
  } catch (e) {
    el.compareAgreement.textContent += ` (The masks cannot be shown: ${e.message || e}.)`;
  }
}

// ---------------------------------------------------------------------------------------------
// Compress: Tucker-2 of the selected model in the worker; the package is kept in this tab, run
// side by side with its source, judged against the safety margin, and can be downloaded.

const RANK_PARAMS = {
  factor: { label: 'Factor f', min: 0.05, max: 1, step: 0.05, value: 0.5 },
  energy: { label: 'Energy kept', min: 0.5, max: 1, step: 0.005, value: 0.95 },
  evbmf: { label: '(none)', min: 0, max: 1, step: 1, value: 0 },
  budget: { label: 'Fraction of FLOPs', min: 0.05, max: 1, step: 0.05, value: 0.5 },
};

function renderRankParam(reset) {
  const p = RANK_PARAMS[el.rankRule.value];
  el.rankParamLabel.textContent = p.label;
  if (reset) {
    Object.assign(el.rankParam, { min: p.min, max: p.max, step: p.step });
    el.rankParam.value = p.value;
  }
  el.rankParamValue.textContent = el.rankRule.value === 'evbmf' ? '–' : Number(el.rankParam.value).toFixed(p.step < 0.01 ? 3 : 2);
}

function rankRule() {
  const v = Number(el.rankParam.value);
  switch (el.rankRule.value) {
    case 'energy':
      return { rule: 'energy', energy: v };
    case 'evbmf':
      return { rule: 'evbmf' };
    case 'budget':
      return { rule: 'budget', fraction: v, measure: 'flops' };
    default:
      return { rule: 'factor', factor: v, min_rank: 1 };
  }
}

function compressSelected() {
  const source = selectedModel();
  if (!source || state.busy || source.compressedFrom) return;
  clearError();
  engine.ensureStarted();
  state.busy = true;
  state.runId = state.nextId++;
  state.pendingName = source.name;
  state.compressSource = source;
  state.compressStartedAt = performance.now();
  setStatus(`Compressing ${source.name}…`);
  setProgress(0);
  updateControls();
  const modelMsg = modelMessage(source);
  engine.post({ type: 'compress', id: state.runId, model: modelMsg, rule: rankRule() }, modelMsg.weights ? [modelMsg.weights] : []);
}

function onCompressed(msg) {
  state.busy = false;
  state.runId = null;
  const source = state.compressSource;
  const r = msg.report;
  const id = `${msg.card.id}-${state.nextId++}`;
  const model = {
    id,
    name: msg.card.name,
    uploaded: { json: msg.model_json, weights: msg.weights },
    teacher: source.id,
    compressedFrom: source.id,
    params: r.params_after,
    flops_per_patch: r.flops_after,
    patch: msg.card.patch_size,
  };
  state.models.push(model);
  state.compressed = { model, source, report: r };
  renderModels(source.id);
  const pct = (a, b) => `${(100 * (1 - a / b)).toFixed(1)}% fewer`;
  const factorised = r.layers.filter((l) => l.ranks).length;
  const wall = (performance.now() - state.compressStartedAt) / 1000;
  el.compressSummary.dataset.paramsBefore = String(r.params_before);
  el.compressSummary.dataset.paramsAfter = String(r.params_after);
  el.compressSummary.textContent =
    `${msg.card.name}: ${factorised} of ${r.layers.length} convolutions factorised. ` +
    `Parameters ${fmt(r.params_before)} → ${fmt(r.params_after)} (${pct(r.params_after, r.params_before)}); ` +
    `GFLOP per window ${fmt(r.flops_before / 1e9)} → ${fmt(r.flops_after / 1e9)} (${pct(r.flops_after, r.flops_before)}). ` +
    `Decomposed in ${(r.ms / 1000).toFixed(1)} s in this tab (${wall.toFixed(1)} s with loading). Added to the model list; kept in this tab only.`;
  const cell = (text) => {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  };
  el.compressLayers.tBodies[0].replaceChildren(
    ...r.layers.map((l) => {
      const tr = document.createElement('tr');
      tr.dataset.layer = l.name;
      tr.append(
        cell(l.name),
        cell(l.shape.join('×')),
        cell(l.ranks ? l.ranks.join(', ') : `whole (${l.whole_because})`),
        cell(fmt(l.params_before)),
        cell(fmt(l.params_after)),
        cell(fmt(l.flops_before / 1e6)),
        cell(fmt(l.flops_after / 1e6)),
        cell(l.ranks ? Number(l.rel_error).toFixed(4) : '–'),
        cell(fmt(l.ms)),
      );
      return tr;
    }),
  );
  el.compressLayersDetails.hidden = false;
  el.compressVerdict.hidden = true;
  setStatus(`Compressed ${source.name}. ${state.volume ? 'Run both to judge it on this volume.' : 'Load a volume to judge it.'}`);
  setProgress(1);
  updateControls();
}

function runCompressed() {
  const c = state.compressed;
  if (!c || !state.volume || state.busy) return;
  state.compare = { teacher: c.source, student: c.model, step: 'teacher', results: {}, compress: true };
  el.comparePanel.hidden = true;
  el.compressVerdict.hidden = true;
  runModel(c.source);
  setStatus(`Running the original (${c.source.name}) first…`);
}

/** PASS when every label's Dice drop (1 − Dice against the original) is within the margin; the
 * message names the label that dropped most. `perLabel`: [{name, dice}]. */
function renderVerdict(perLabel) {
  if (state.compressed) state.compressed.lastPerLabel = perLabel;
  const margin = Number(el.margin.value);
  const worst = worstLabel(perLabel);
  const label = worst.name;
  const drop = 1 - worst.dice;
  const pass = withinMargin(perLabel, margin);
  el.compressVerdict.dataset.verdict = pass ? 'PASS' : 'FAIL';
  el.compressVerdict.className = `verdict ${pass ? 'pass' : 'fail'}`;
  el.compressVerdict.textContent = pass
    ? `PASS: the largest Dice drop (${label}: ${drop.toFixed(4)}) is within the margin of ${margin}.`
    : `FAIL: ${label} drops by ${drop.toFixed(4)} in Dice against the original, more than the margin of ${margin}.`;
  el.compressVerdict.hidden = false;
}

function downloadCompressed() {
  const c = state.compressed;
  if (!c) return;
  // A package is a folder of two files; the browser saves them side by side, named after the model.
  const files = [
    [`${c.model.id}.model.json`, new Blob([c.model.uploaded.json], { type: 'application/json' })],
    [`${c.model.id}.weights.safetensors`, new Blob([c.model.uploaded.weights], { type: 'application/octet-stream' })],
  ];
  for (const [name, blob] of files) saveBlob(name, blob);
  setStatus(`Saved ${c.model.id}.model.json and ${c.model.id}.weights.safetensors: put them in one folder as model.json and weights.safetensors to load them with bedside.`);
}

// ---------------------------------------------------------------------------------------------
// Reference mask: an independent mask of the loaded volume (e.g. a manual segmentation). Compare,
// "Run original and compressed" and the Pareto view then report each model's Dice against it.

async function loadReference(file) {
  if (!file || !state.volume) return;
  clearError();
  const bytes = await readPickedFile(file, 'read', 2 ** 31, `${(file.size / 2 ** 30).toFixed(1)} GiB is too large for a mask.`);
  if (!bytes) return;
  state.referenceInspectId = state.nextId++;
  state.pendingReference = { name: file.name, bytes };
  setStatus(`Checking ${file.name}…`);
  const copy = bytes.slice(0);
  engine.post({ type: 'inspect', id: state.referenceInspectId, bytes: copy }, [copy]);
}

function onReferenceInspected(info) {
  const pending = state.pendingReference;
  state.referenceInspectId = null;
  state.pendingReference = null;
  if (!pending || !state.volume) return;
  const want = state.volume.info.dims || [];
  const got = info.dims || [];
  if (want.join('×') !== got.join('×')) {
    showError(
      `${pending.name} is not a mask of ${state.volume.name}: its grid is ${got.join(' × ')}, the volume's ${want.join(' × ')}.` +
        (state.reference ? ` Still used: ${state.reference.name}.` : ''),
    );
  } else {
    state.reference = pending;
    el.referenceInfo.textContent = `Reference mask: ${pending.name} (${got.join(' × ')} voxels). Models are also compared with it.`;
  }
  setIdleStatus();
  updateControls();
}

/** " Against the reference (name): Dice a (first) and b (second)." or "" without a reference. */
function referenceSentence(reference, names) {
  if (!reference || !state.reference) return '';
  const text = (list) => list.map((l) => `${l.name} ${l.dice.toFixed(4)}`).join(', ');
  return ` Against the reference mask (${state.reference.name}): ${names[0]} ${text(reference.a)}, ${names[1]} ${text(reference.b)}.`;
}

// ---------------------------------------------------------------------------------------------
// Wiring

function wire() {
  el.appVersion.textContent = FRONTEND_VERSION;
  el.input.addEventListener('change', () => {
    const file = el.input.files && el.input.files[0];
    loadFile(file);
    el.input.value = ''; // picking the same file again fires change again
  });
  el.sample.addEventListener('click', loadSample);
  el.compare.addEventListener('click', compare);
  el.rankRule.addEventListener('change', () => {
    renderRankParam(true);
    updateControls();
  });
  el.rankParam.addEventListener('input', () => renderRankParam(false));
  el.compressButton.addEventListener('click', compressSelected);
  el.compressRun.addEventListener('click', runCompressed);
  el.compressDownload.addEventListener('click', downloadCompressed);
  el.margin.addEventListener('input', () => {
    const c = state.compressed;
    if (c && c.lastPerLabel) renderVerdict(c.lastPerLabel);
  });
  el.referenceInput.addEventListener('change', () => {
    loadReference(el.referenceInput.files && el.referenceInput.files[0]);
    el.referenceInput.value = '';
  });
  el.referenceClear.addEventListener('click', () => {
    state.reference = null;
    el.referenceInfo.textContent = 'No reference mask: models are compared with each other only.';
    updateControls();
  });
  viewers.wireViewers();

  // Drag and drop: anywhere on the page, highlighted on the drop zone. Never let the browser
  // navigate to a dropped file.
  const hasFiles = (ev) => ev.dataTransfer && [...(ev.dataTransfer.types || [])].includes('Files');
  window.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = state.busy || state.inspecting ? 'none' : 'copy';
    el.dropzone.classList.add('dragover');
  });
  window.addEventListener('dragleave', (ev) => {
    if (ev.target === document.documentElement || ev.clientX <= 0 || ev.clientY <= 0) el.dropzone.classList.remove('dragover');
  });
  window.addEventListener('drop', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    el.dropzone.classList.remove('dragover');
    if (state.busy || state.inspecting) return;
    loadFile(ev.dataTransfer.files[0]);
  });
  el.dropzone.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      el.input.click();
    }
  });
}

wire();
wireRun();
wireModel();
wirePareto();
wireDevice();
setStatus('Starting…');
engine.start();
updateControls();
await Promise.all([loadModels(), viewers.initViewer()]);
updateControls();
document.documentElement.dataset.appReady = 'true';
