// bedside main-thread UI glue: DOM <-> engine worker <-> viewer.
// Thin on purpose: all parsing, inference and mask building happen in the wasm inside
// www/worker.js. Image bytes go to the worker only (postMessage with transfer) and to the
// in-page viewer; never into a network request.

import { FRONTEND_VERSION, el, state } from './ui/state.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress, onProgress } from './ui/progress.js';
import { updateControls } from './ui/controls.js';
import { fmt } from './ui/format.js';
import { readPickedFile } from './ui/files.js';
import { engine } from './ui/engine.js';
import * as viewers from './ui/viewers.js';
import { loadModels, onImported, onImportError, onBackend, wireModel } from './ui/model.js';
import { onResult, onRunError, clearResults, wireRun } from './ui/run.js';
import { onCompareResult, onAgreement, wireCompare } from './ui/compare.js';
import { onCompressed, onCompressError, wireCompress } from './ui/compress.js';
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
wireCompare();
wireCompress(); // before wirePareto: both react to the margin, the verdict first
wirePareto();
wireDevice();
setStatus('Starting…');
engine.start();
updateControls();
await Promise.all([loadModels(), viewers.initViewer()]);
updateControls();
document.documentElement.dataset.appReady = 'true';
