// bedside teach room (teach.html): wires the controls to the engine worker, which holds the run
// (web::teach over distill::lockstep). The UI state is one serialisable object; its setup part is
// the URL hash (parsed and written by the engine, so a link restores the room). Nothing derived
// from the scan is stored: the volume, the teacher's outputs and the students live in the worker.

import { Viewer } from './viewer.js';
import { Engine } from './ui/rpc.js';
import { saveBlob } from './ui/files.js';
import { drawCurves, drawSoftView, voxelText } from './ui/teach_view.js';

const $ = (id) => document.getElementById(id);
const state = {
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

// ---------------------------------------------------------------------------------------------
// The engine: the same worker and RPC as the main page (ui/rpc.js); the room's requests are calls
// answered by id.

const engine = new Engine({
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
const call = (type, payload, transfer) => engine.call(type, payload, transfer);

// ---------------------------------------------------------------------------------------------
// Status, errors

function setStatus(text, fraction) {
  $('teach-status').textContent = text;
  const bar = $('teach-progress');
  if (fraction === null) bar.removeAttribute('value');
  else if (Number.isFinite(fraction)) bar.value = fraction;
}

function showError(message) {
  $('teach-error').textContent = message;
  $('teach-error').hidden = false;
}

function clearError() {
  $('teach-error').hidden = true;
  $('teach-error').textContent = '';
}

function updateControls() {
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

// ---------------------------------------------------------------------------------------------
// Setup <-> controls <-> URL hash

function showSetup(s) {
  $('teach-teacher').value = s.teacher;
  $('teach-student').value = s.student;
  $('teach-seed').value = s.seed;
  $('teach-steps').value = s.steps;
  $('teach-T').value = s.T;
  $('teach-alpha').value = s.alpha;
  $('teach-lr').value = s.lr;
  $('teach-feature').value = s.feature;
  $('teach-T-value').textContent = String(s.T);
  $('teach-alpha-value').textContent = String(s.alpha);
  const preset = state.presets.find((p) => p.id === s.student);
  $('teach-student-note').textContent = preset ? preset.note : '';
}

function setupFromControls() {
  return {
    ...state.setup,
    teacher: $('teach-teacher').value,
    student: $('teach-student').value,
    seed: Number($('teach-seed').value),
    steps: Number($('teach-steps').value),
    T: Number($('teach-T').value),
    alpha: Number($('teach-alpha').value),
    lr: Number($('teach-lr').value),
    feature: Number($('teach-feature').value),
  };
}

async function onSetupChanged() {
  const next = setupFromControls();
  try {
    const hash = await call('teach-setup-to-hash', { setup: next });
    state.setup = next;
    history.replaceState(null, '', `#${hash}`);
    clearError();
  } catch (e) {
    showError(e.message);
  }
  showSetup(state.setup);
  if (state.room) {
    await call('teach-params', { T: state.setup.T, alpha: state.setup.alpha, lr: state.setup.lr, feature: state.setup.feature });
    await refreshSoftView();
  }
}

// ---------------------------------------------------------------------------------------------
// Volume, teacher, start

async function loadVolume(name, bytes) {
  state.volume = { name, bytes };
  $('teach-volume').textContent = `${name} (${(bytes.byteLength / 2 ** 20).toFixed(1)} MiB), in this tab only.`;
  updateControls();
}

async function start(resume = null) {
  clearError();
  $('teach-resume-cpu').hidden = true;
  state.playing = false;
  state.busy = true;
  state.room = null;
  updateControls();
  const teacher = state.teachers.find((t) => t.id === state.setup.teacher);
  if (!teacher) {
    state.busy = false;
    showError(`Unknown teacher ${state.setup.teacher}.`);
    return updateControls();
  }
  try {
    setStatus(`Running the teacher ${teacher.name} once on the volume…`, null);
    const bytes = state.volume.bytes.slice(0);
    const t0 = performance.now();
    state.room = await call('teach-open', {
      bytes,
      model: { id: teacher.id, name: teacher.name, path: teacher.path },
      reference: state.reference ? state.reference.slice(0) : null,
      setup: state.setup,
      backend: $('teach-backend').value,
    }, [bytes]);
    if (resume) {
      const c = resume;
      await call('teach-restore', { step: c.step, kd: c.kd.slice(0), scratch: c.scratch.slice(0), record: c.record });
      state.history = state.history.filter((p) => p.step <= c.step);
      state.evaluations = state.evaluations.filter((e) => e.step <= c.step);
      $('teach-step-count').textContent = String(c.step);
    } else {
      state.history = [];
      state.evaluations = [];
      state.checkpoint = null;
    }
    state.viewsStep = null;
    const [, , nz] = state.room.grid;
    $('teach-slice').max = String(nz - 1);
    $('teach-slice').value = String(Math.floor(nz / 2));
    $('teach-labels').textContent = `Hard labels: ${state.room.labels}. Teacher pass: ${(state.room.teacher_ms / 1000).toFixed(1)} s on ${state.room.backend}` +
      ` (${((performance.now() - t0) / 1000).toFixed(1)} s with loading). Held out for Dice: columns ${state.room.held_out_from}–${state.room.grid[0] - 1}.`;
    await showVolumeInViewers();
    if (resume) await refreshViews();
    setStatus(resume ? `Resumed on ${state.room.backend === 'webgpu' ? 'WebGPU' : 'the CPU'} from step ${resume.step} (Adam's running averages start again): press Play or Step.` : 'Ready: press Play or Step.', 0);
  } catch (e) {
    showError(e.message);
    setStatus('Not started.', 0);
  }
  state.busy = false;
  renderAll();
}

// ---------------------------------------------------------------------------------------------
// Training

// Dice on the held-out part every 10 steps; the whole-volume views (soft targets, masks) cost a
// full forward pass of both students, so every 50 steps, and whenever the run stops.
const EVAL_EVERY = 10;
const VIEWS_EVERY = 50;

async function stepOnce(n) {
  let out;
  try {
    out = await call('teach-step', { n });
  } catch (e) {
    return onStepFailure(e);
  }
  if (out.fault) {
    state.playing = false;
    showError(out.fault);
    setStatus('Paused: a loss was not finite.', 0);
    return false;
  }
  state.history.push(...out.points);
  const step = state.history.length ? state.history[state.history.length - 1].step : 0;
  $('teach-step-count').textContent = String(step);
  if (step % EVAL_EVERY === 0 || step === 1 || !state.playing) await evaluate();
  if (step % VIEWS_EVERY === 0 || step === 1) await refreshViews();
  drawCurves($('teach-curves'), state.history, state.evaluations);
  return step < state.setup.steps;
}

/** A step that failed on the device (a lost GPU, or one out of memory): the run pauses; the
 * weights of the last checkpoint (every evaluation) can go on training on the CPU. */
function onStepFailure(e) {
  state.playing = false;
  const at = state.checkpoint ? `the weights of step ${state.checkpoint.step} are kept` : 'no weights were kept yet';
  const oom = /out of memory|outofmemory|allocat/i.test(e.message);
  showError(oom
    ? `Out of memory on the GPU (${e.message}). The run is paused and ${at}: resume on the CPU, or choose a smaller student preset (smaller patches).`
    : `The device failed during a step (${e.message}). The run is paused and ${at}: resume on the CPU.`);
  $('teach-resume-cpu').hidden = !state.checkpoint;
  setStatus('Paused: the device failed.', 0);
  return false;
}

/** The latest weights, read back into this page's memory (never stored anywhere). */
async function checkpoint() {
  state.checkpoint = await call('teach-checkpoint');
}

async function evaluate() {
  await checkpoint();
  const e = await call('teach-evaluate');
  state.evaluations.push(e);
  $('teach-dice-kd').textContent = e.dice_kd.toFixed(4);
  $('teach-dice-scratch').textContent = e.dice_scratch.toFixed(4);
  if (Number.isFinite(e.ms_per_step)) $('teach-ms-per-step').textContent = e.ms_per_step.toFixed(0);
}

async function refreshViews() {
  setStatus('Drawing both students over the whole volume…', null);
  const masks = await call('teach-views');
  state.viewsStep = state.history.length ? state.history[state.history.length - 1].step : 0;
  await refreshSoftView();
  await showMasks(masks);
}

async function play() {
  if (state.playing) {
    state.playing = false; // the loop ends after the step in flight
    return updateControls();
  }
  clearError();
  state.playing = true;
  state.busy = true;
  updateControls();
  setStatus('Training…', null);
  try {
    while (state.playing && (await stepOnce(1)));
    if (state.history.length && state.viewsStep !== state.history[state.history.length - 1].step) await refreshViews();
    if (state.playing) setStatus(`Done: ${state.setup.steps} steps.`, 1);
    else if ($('teach-error').hidden) setStatus('Paused.', 0);
  } catch (e) {
    showError(e.message);
  }
  state.playing = false;
  state.busy = false;
  updateControls();
}

async function singleStep() {
  clearError();
  state.busy = true;
  updateControls();
  try {
    await stepOnce(1);
    await refreshViews();
    setStatus('Paused.', 0);
  } catch (e) {
    showError(e.message);
  }
  state.busy = false;
  updateControls();
}

async function reset() {
  clearError();
  state.busy = true;
  updateControls();
  await call('teach-reset', { seed: state.setup.seed });
  state.checkpoint = null;
  $('teach-resume-cpu').hidden = true;
  state.history = [];
  state.evaluations = [];
  state.viewsStep = null;
  $('teach-step-count').textContent = '0';
  for (const id of ['teach-dice-kd', 'teach-dice-scratch', 'teach-ms-per-step']) $(id).textContent = '–';
  state.busy = false;
  renderAll();
  setStatus('Reset: new students from the seed.', 0);
}

// ---------------------------------------------------------------------------------------------
// Views

async function refreshSoftView() {
  if (!state.room || state.viewsStep == null) return;
  const v = await call('teach-soft', { z: Number($('teach-slice').value), T: state.setup.T });
  drawSoftView(v, state.setup.T);
}

async function onSoftClick(ev) {
  const canvas = ev.currentTarget;
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) / rect.width) * canvas.width);
  const y = Math.floor(((ev.clientY - rect.top) / rect.height) * canvas.height);
  try {
    const v = await call('teach-voxel', { x, y, z: Number($('teach-slice').value), T: state.setup.T });
    $('teach-voxel').textContent = voxelText(v);
  } catch (e) {
    showError(e.message);
  }
}

const viewers = {};

async function showVolumeInViewers() {
  for (const key of ['teacher', 'kd', 'scratch']) {
    if (!viewers[key]) {
      viewers[key] = new Viewer($(`teach-mask-${key}`));
      try {
        await viewers[key].init();
        viewers[key].nv.setSliceType(viewers[key].nv.sliceTypeAxial);
      } catch {
        viewers[key] = null; // no WebGL2: the masks are not drawn, the rest works
        continue;
      }
    }
    await viewers[key].showVolume(state.volume.bytes.slice(0), state.volume.name);
  }
}

async function showMasks(e) {
  const labels = [{ value: 0, name: 'background', color: [0, 0, 0] }, { value: 1, name: 'brain', color: [255, 80, 60] }];
  for (const key of ['teacher', 'kd', 'scratch']) {
    if (viewers[key]) await viewers[key].showMask(e[`${key}_mask`], labels);
  }
}

function renderAll() {
  drawCurves($('teach-curves'), state.history, state.evaluations);
  updateControls();
}

// ---------------------------------------------------------------------------------------------
// Export: files the user downloads; nothing else leaves memory.

const download = (name, data, type) => saveBlob(name, new Blob([data], { type }));

async function exportStudent(scratch) {
  clearError();
  state.busy = true;
  updateControls();
  const who = scratch ? 'twin' : 'KD student';
  try {
    setStatus(`Exporting the ${who}: running it and the teacher through the main page's pipeline…`, null);
    const out = await call('teach-export', { scratch, name: state.volume.name });
    download('model.json', out.model_json, 'application/json');
    download('weights.safetensors', out.weights, 'application/octet-stream');
    const step = state.history.length ? state.history[state.history.length - 1].step : 0;
    $('teach-export-dice').dataset.dice = String(out.dice);
    $('teach-export-dice').textContent = `Exported the ${who} at step ${step}: Dice ${out.dice.toFixed(4)} against the teacher on the whole volume, ` +
      'as the main page will show when it compares the package with its teacher.';
    setStatus('Exported.', 0);
  } catch (e) {
    showError(e.message);
  }
  state.busy = false;
  updateControls();
}

async function exportText(kind) {
  if (kind === 'csv') download('teach-curves.csv', await call('teach-csv'), 'text/csv');
  else download('teach-recipe.json', await call('teach-recipe', { path: state.volume.name === 'ch2.nii.gz' ? '${BEDSIDE_DATA}/colin27/ch2.nii.gz' : state.volume.name }), 'application/json');
}

// ---------------------------------------------------------------------------------------------
// Wiring

async function init() {
  const version = await new Promise((resolve) => {
    engineReady = resolve;
    engine.start();
    engine.post({ type: 'init' });
  });
  state.presets = await call('teach-presets');
  const res = await fetch('models/index.json', { credentials: 'same-origin' });
  state.teachers = await res.json();
  for (const t of state.teachers) $('teach-teacher').append(new Option(t.name, t.id));
  for (const p of state.presets) $('teach-student').append(new Option(p.name, p.id));
  try {
    state.setup = await call('teach-setup-from-hash', { hash: location.hash });
  } catch (e) {
    showError(`This link's setup is not valid (${e.message}); the defaults are shown.`);
    state.setup = await call('teach-setup-from-hash', { hash: '' });
  }
  showSetup(state.setup);
  // The backend is this machine's choice, not part of the shared link (?backend= presets it).
  if (new URLSearchParams(location.search).get('backend') === 'webgpu') $('teach-backend').value = 'webgpu';
  for (const id of ['teach-teacher', 'teach-student', 'teach-seed', 'teach-steps', 'teach-T', 'teach-alpha', 'teach-lr', 'teach-feature']) {
    $(id).addEventListener('change', onSetupChanged);
  }
  $('teach-T').addEventListener('input', () => ($('teach-T-value').textContent = $('teach-T').value));
  $('teach-alpha').addEventListener('input', () => ($('teach-alpha-value').textContent = $('teach-alpha').value));
  $('sample-button').addEventListener('click', async () => {
    const r = await fetch('sample/ch2.nii.gz', { credentials: 'same-origin' });
    if (!r.ok) return showError(`Could not load the sample: HTTP ${r.status}`);
    await loadVolume('ch2.nii.gz', await r.arrayBuffer());
  });
  $('volume-input').addEventListener('change', async (ev) => {
    const f = ev.target.files[0];
    if (f) await loadVolume(f.name, await f.arrayBuffer());
  });
  $('teach-reference').addEventListener('change', async (ev) => {
    const f = ev.target.files[0];
    state.reference = f ? await f.arrayBuffer() : null;
  });
  $('teach-start').addEventListener('click', () => start());
  $('teach-resume-cpu').addEventListener('click', () => {
    $('teach-backend').value = 'cpu';
    start(state.checkpoint);
  });
  $('teach-play').addEventListener('click', play);
  $('teach-step').addEventListener('click', singleStep);
  $('teach-reset').addEventListener('click', reset);
  $('teach-slice').addEventListener('change', refreshSoftView);
  for (const id of ['teach-soft-teacher', 'teach-soft-student', 'teach-soft-kl']) $(id).addEventListener('click', onSoftClick);
  $('teach-export-kd').addEventListener('click', () => exportStudent(false));
  $('teach-export-scratch').addEventListener('click', () => exportStudent(true));
  $('teach-export-csv').addEventListener('click', () => exportText('csv'));
  $('teach-export-recipe').addEventListener('click', () => exportText('recipe'));
  // Test hook (the e2e tests): make the next step's loss NaN.
  window.bedsideTeachPoison = () => call('teach-poison');
  // Test hook: the next step fails as a lost GPU device does.
  window.bedsideTeachLoseDevice = () => call('teach-lose-device');
  window.bedsideTeachState = () => ({ history: state.history, evaluations: state.evaluations, setup: state.setup, checkpoint: state.checkpoint?.step ?? null });
  setStatus(`Engine ${version} ready: choose a volume and a teacher, then start.`, 0);
  updateControls();
  document.documentElement.dataset.appReady = 'true';
}

init().catch((e) => showError(`The teach room could not start: ${e.message || e}`));
