// The teach room's shared parts (teach.html): its one UI state object, the engine (the same worker
// and RPC as the main page, ui/rpc.js; the room's requests are calls answered by id), and the
// status, error and controls that every part of the room updates. Nothing derived from the scan is
// stored: the volume, the teacher's outputs and the students live in the worker.

import { Engine } from './rpc.js';

export const $ = (id) => document.getElementById(id);

export const state = {
  setup: null, // TeachSetup, as the engine checked it
  presets: [],
  teachers: [], // from models/index.json
  volume: null, // {name, bytes}
  reference: null, // ArrayBuffer of a reference mask, or null
  room: null, // what teach-open returned
  history: [], // [{step, kd:{…}, scratch:{…}}]
  evaluations: [],
  viewsStep: null, // the step the soft-target view and the masks show
  checkpoint: null, // {step, kd, scratch, record}: the last weights read back (memory only), for a resume on the CPU
  playing: false,
  busy: false,
  slice: 0,
};

export const engine = new Engine({
  url: './worker.js',
  name: 'bedside-engine',
  handlers: {
    progress: (msg) => setStatus(msg.stage, msg.fraction),
    ready: (msg) => engineReady?.(msg.version), // the init reply carries no id
    error: (msg) => showError(msg.message), // errors of requests that were not calls (init)
  },
  onCrash(message) {
    state.playing = false;
    state.busy = false;
    state.room = null;
    showError(`${message} The engine has been restarted; ` +
      (state.checkpoint ? `resume on the CPU from step ${state.checkpoint.step}, or start the room again.` : 'start the room again.'));
    $('teach-resume-cpu').hidden = !state.checkpoint;
    engine.restart();
    updateControls();
  },
});
let engineReady = null;

/** A request to the worker, answered by id: a promise of its result. */
export const call = (type, payload, transfer) => engine.call(type, payload, transfer);

/** Start the worker and wait for its wasm: the engine's version. */
export function startEngine() {
  return new Promise((resolve) => {
    engineReady = resolve;
    engine.start();
    engine.post({ type: 'init' });
  });
}

export function setStatus(text, fraction) {
  $('teach-status').textContent = text;
  const bar = $('teach-progress');
  if (fraction === null) bar.removeAttribute('value');
  else if (Number.isFinite(fraction)) bar.value = fraction;
}

export function showError(message) {
  $('teach-error').textContent = message;
  $('teach-error').hidden = false;
}

export function clearError() {
  $('teach-error').hidden = true;
  $('teach-error').textContent = '';
}

export function updateControls() {
  const open = Boolean(state.room);
  $('teach-start').disabled = state.busy || !state.volume;
  $('teach-resume-cpu').disabled = state.busy || !state.volume || !state.checkpoint;
  $('teach-backend').disabled = state.busy;
  $('teach-play').disabled = !open || (state.busy && !state.playing);
  $('teach-play').textContent = state.playing ? 'Pause' : 'Play';
  $('teach-step').disabled = !open || state.busy;
  $('teach-reset').disabled = !open || state.busy;
  for (const id of ['teach-export-kd', 'teach-export-scratch', 'teach-export-csv', 'teach-export-recipe']) {
    $(id).disabled = !open || state.busy || state.history.length === 0;
  }
  document.body.classList.toggle('classroom', Boolean(state.setup?.classroom));
  document.body.dataset.busy = String(state.busy); // for the e2e tests: the room is idle
}

/** The last step trained (0 before the first). */
export const lastStep = () => (state.history.length ? state.history[state.history.length - 1].step : 0);
