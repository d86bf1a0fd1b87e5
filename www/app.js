// bedside main-thread entry point: DOM <-> engine worker <-> viewer.
// Thin on purpose: all parsing, inference and mask building happen in the wasm inside
// www/worker.js. Image bytes go to the worker only (postMessage with transfer) and to the
// in-page viewer; never into a network request.
//
// This file only wires the modules in ui/: it routes the engine's replies to the panel that made
// the request, lets each panel wire its own controls, and starts the engine and the viewer.
// ui/state.js holds the page's one state object; ui/rpc.js the worker's lifecycle.
// Dependencies point one way: app.js -> panels -> shared modules (state, progress, controls,
// format, dice, files, engine/rpc, viewers); panels may use panels listed after them here.

import { FRONTEND_VERSION, el, state } from './ui/state.js';
import { setStatus, showError, setProgress, onProgress } from './ui/progress.js';
import { updateControls } from './ui/controls.js';
import { engine } from './ui/engine.js';
import * as viewers from './ui/viewers.js';
import { onInspected, onInspectError, onReferenceInspected, onReferenceError, wireVolume } from './ui/volume.js';
import { onCompareResult, onAgreement, wireCompare } from './ui/compare.js';
import { onCompressed, onCompressError, wireCompress } from './ui/compress.js';
import { wireRecover } from './ui/recover.js';
import { wireAdapt } from './ui/adapt.js';
import { onResult, onRunError, retryOnCpu, wireRun } from './ui/run.js';
import { onParetoPoint, onParetoDone, onParetoError, wirePareto } from './ui/pareto.js';
import { loadModels, onImported, onImportError, onBackend, wireModel } from './ui/model.js';
import { onDevice, onDeviceError, renderWorkers, wireDevice } from './ui/device.js';

// ---------------------------------------------------------------------------------------------
// The engine: lifecycle hooks and the reply handlers (the protocol is listed in www/worker.js)

/** A handler for replies to the request in flight (state.runId); older requests' are dropped. */
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
    device: onDevice,
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
    'pareto-point': current((msg) => onParetoPoint(msg.sweep)),
    pareto: current((msg) => onParetoDone(msg.sweep)),
    error: onWorkerError,
  },
});

function onReady(msg) {
  state.engineReady = true;
  state.engineVersion = msg.version;
  state.cpuLanes = msg.cpuLanes;
  el.engineVersion.textContent = msg.version;
  renderWorkers();
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
    case 'inspect_dicom':
      if (msg.id !== state.inspectId) return;
      onInspectError(msg);
      break;
    case 'run':
    case 'agreement':
      if (msg.id !== state.runId) return;
      if (msg.deviceLost) {
        engine.restart(); // this worker's WebGPU is gone (and a wgpu call may never return)
        retryOnCpu(msg);
        updateControls();
        return;
      }
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

// ---------------------------------------------------------------------------------------------
// Start: every panel wires its own controls, then the engine and the viewer start.

el.appVersion.textContent = FRONTEND_VERSION;
wireVolume();
viewers.wireViewers();
wireRun();
wireModel();
wireCompare();
wireCompress(); // before wirePareto: both react to the margin, the verdict first
wireRecover();
wireAdapt();
wirePareto();
wireDevice();
setStatus('Starting…');
engine.start();
// Fault hooks for tests/e2e/faults.test.mjs (a page's own tab only: nothing here reaches a server).
// Lose the engine's GPU device (GPUDevice.destroy()), or crash the engine: 'mid-run' panics the
// running segmentation, 'uncaught' throws in the worker outside any request.
window.bedsideLoseDevice = () => engine.post({ type: 'lose-device' });
window.bedsideCrashEngine = (how) => engine.post({ type: 'crash', how });
updateControls();
await Promise.all([loadModels(), viewers.initViewer()]);
updateControls();
document.documentElement.dataset.appReady = 'true';
