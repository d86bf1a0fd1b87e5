// The teach room's run: training steps (play, single step, reset), the evaluations and checkpoints
// they trigger, the faults that pause them, and the views that follow them (soft-target maps, the
// three masks). Every number shown comes from the engine (web::teach over distill::lockstep).

import { Viewer } from '../viewer.js';
import { $, state, call, setStatus, showError, clearError, updateControls, lastStep } from './teach_room.js';
import { drawCurves, drawSoftView, voxelText } from './teach_view.js';

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
  const step = lastStep();
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

export async function refreshViews() {
  setStatus('Drawing both students over the whole volume…', null);
  const masks = await call('teach-views');
  state.viewsStep = lastStep();
  await refreshSoftView();
  await showMasks(masks);
}

export async function play() {
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
    if (state.history.length && state.viewsStep !== lastStep()) await refreshViews();
    if (state.playing) setStatus(`Done: ${state.setup.steps} steps.`, 1);
    else if ($('teach-error').hidden) setStatus('Paused.', 0);
  } catch (e) {
    showError(e.message);
  }
  state.playing = false;
  state.busy = false;
  updateControls();
}

export async function singleStep() {
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

export async function reset() {
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

export async function refreshSoftView() {
  if (!state.room || state.viewsStep == null) return;
  const v = await call('teach-soft', { z: Number($('teach-slice').value), T: state.setup.T });
  drawSoftView(v, state.setup.T);
}

export async function onSoftClick(ev) {
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

export async function showVolumeInViewers() {
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

export function renderAll() {
  drawCurves($('teach-curves'), state.history, state.evaluations);
  updateControls();
}
