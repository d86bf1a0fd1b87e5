// bedside teach room (teach.html): its entry point. The setup and its URL hash (parsed and written
// by the engine, so a link restores the room), the volume, starting (or resuming) a room, and the
// wiring of every control. The shared state and engine: ui/teach_room.js; the run: ui/teach_train.js;
// the exports: ui/teach_export.js.

import { $, state, call, startEngine, setStatus, showError, clearError, updateControls } from './ui/teach_room.js';
import { play, singleStep, reset, refreshSoftView, refreshViews, onSoftClick, showVolumeInViewers, renderAll } from './ui/teach_train.js';
import { exportStudent, exportText } from './ui/teach_export.js';

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
// Wiring

async function init() {
  const version = await startEngine();
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
