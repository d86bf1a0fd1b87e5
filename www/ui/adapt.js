// Adapt panel: the selected model learns a LoRA adapter from the user's labelled scans, in the
// worker (web::adapt over lora::train, the code `bedside lora train` runs). Images and masks are
// picked as one pile and paired by the engine; the held-out pair gives the validation Dice. Steps
// go one at a time, so Pause and Cancel act between steps. The adapted model joins the model list
// (merged: it computes what base + adapter computes); "Adapter on" selects it or its base, and
// "side by side" runs both through Compare. Downloads are blob: URLs; nothing is stored.

import { el, state, selectedModel } from './state.js';
import { engine } from './engine.js';
import { setStatus, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import { modelMessage, packagedModel, renderModels } from './model.js';
import { readPickedFile, saveBlob } from './files.js';
import { runModel } from './run.js';
import { chart, legend } from './teach_view.js';
import { fmt } from './format.js';

const $ = (id) => document.getElementById(id);
const MAX_FILE = 2 ** 30;

function showAdaptError(message) {
  $('adapt-error').textContent = message;
  $('adapt-error').hidden = !message;
}

/** The picked files as [{name, bytes}], or null after saying which could not be read. */
async function readAll(input) {
  const out = [];
  for (const file of input.files) {
    const bytes = await readPickedFile(file, 'read', MAX_FILE, 'more than 1 GiB is not a scan this page can hold.');
    if (!bytes) return null;
    out.push({ name: file.name, bytes });
  }
  return out;
}

function options() {
  const number = (id) => Number($(id).value);
  return {
    rank: Math.round(number('adapt-rank')),
    alpha: number('adapt-alpha'),
    targets: $('adapt-targets').value.trim(),
    trainables: $('adapt-trainables').value,
    steps: Math.max(1, Math.min(5000, Math.round(number('adapt-steps')) || 1)),
    learning_rate: number('adapt-lr'),
    kd: number('adapt-kd'),
  };
}

/** Loss terms per step and the held-out Dice at each validation. */
function drawAdaptCurves(a) {
  const loss = [
    ['total', 'total', '#1f6feb'],
    ['cross_entropy', 'cross-entropy', '#d1242f'],
    ['dice', 'Dice loss', '#8250df'],
    ...(a.kd ? [['kd', 'T²·KL to the teacher', '#57606a']] : []),
  ].map(([key, label, colour]) => ({ label, colour, points: a.history.map((p) => [p.step, p[key]]) }));
  const dice = [{ label: 'held-out Dice', colour: '#1a7f37', points: a.validations.map((v) => [v.step, v.dice]) }];
  // The Dice axis spans what was measured (a few hundredths), not 0–1, where a gain would be flat.
  const ys = a.validations.map((v) => v.dice).filter(Number.isFinite);
  const range = ys.length ? { yMin: Math.max(0, Math.min(...ys) - 0.01), yMax: Math.min(1, Math.max(...ys) + 0.01) } : {};
  $('adapt-curve').replaceChildren(chart('Loss (Dice + cross-entropy on your masks)', loss), legend(loss), chart('Held-out Dice', dice, range), legend(dice));
  $('adapt-curve').dataset.points = String(a.history.length);
}

function showValidation(a) {
  const known = a.validations.filter((v) => Number.isFinite(v.dice));
  if (known.length === 0) return;
  const [first, last] = [known[0], known[known.length - 1]];
  $('adapt-val-dice').textContent = known.length > 1 ? `${first.dice.toFixed(4)} → ${last.dice.toFixed(4)}` : first.dice.toFixed(4);
  $('adapt-val-dice').dataset.before = String(first.dice);
  $('adapt-val-dice').dataset.after = String(last.dice);
}

async function validate(a) {
  if (!a.hasValidation) return;
  const v = await engine.call('adapt-validate');
  a.validations.push(v);
  showValidation(a);
}

/** Resolves when the user resumes (or cancels) a paused adaptation. */
const resumed = (a) => new Promise((resolve) => (a.resume = resolve));

async function start() {
  const base = selectedModel();
  if (!base || state.busy || !state.engineReady) return;
  // What the last adaptation showed goes at once, before any await: the panel is this run's now.
  showAdaptError('');
  $('adapt-summary').textContent = '';
  $('adapt-val-dice').textContent = '–';
  $('adapt-curve').replaceChildren();
  $('adapt-curve').dataset.points = '0';
  const files = await readAll($('adapt-data-input'));
  const validation = await readAll($('adapt-val-input'));
  if (!files || !validation) return;
  if (files.length < 2) return showAdaptError('Pick at least one image and its mask (two files or more).');
  const opts = options();
  const teacherId = $('adapt-teacher').value;
  const teacher = teacherId ? state.models.find((m) => m.id === teacherId) : null;
  if (teacherId && !teacher) return showAdaptError(`The teacher ${teacherId} is not in the model list.`);
  if (teacher && teacher.id === base.id) return showAdaptError('A model cannot be its own teacher: pick another, or none.');
  const a = { base, steps: opts.steps, history: [], validations: [], paused: false, cancelled: false, hasValidation: validation.length > 0, model: null, adapter: null };
  state.adapt = a;
  state.busy = true;
  updateControls();
  try {
    setStatus(`Preparing the adaptation of ${base.name}…`);
    setProgress(null);
    const msg = modelMessage(base);
    const teacherMsg = teacher ? modelMessage(teacher) : null;
    const transfer = [...files, ...validation].map((f) => f.bytes).concat([msg.weights, teacherMsg?.weights].filter(Boolean));
    if (teacher) setStatus(`Running ${base.name} and the teacher ${teacher.name} once on each volume…`);
    const info = await engine.call('adapt-open', { base: msg, teacher: teacherMsg, files, validation, options: opts, backend: el.backend.value, cachedChoice: null }, transfer);
    a.kd = info.kd;
    $('adapt-trainable').textContent = String(info.trainable);
    const kd = info.kd ? `; KD from ${teacher.name} at weight ${info.kd}${info.unlabelled ? `, ${info.unlabelled} volume(s) on its labels` : ''}` : '';
    $('adapt-share').textContent = `of ${fmt(info.total)} (${(100 * info.share).toFixed(2)}%, ${info.trainables}${info.layers ? `, ${info.layers} layers` : ''}${kd})`;
    const memory = (mb) => `Gradients and Adam's moments: ${fmt(info.training_state_bytes / 1024)} KB, for the trainable parameters only (the frozen ones have none). The engine's memory: ${fmt(mb)} MB.`;
    $('adapt-memory').textContent = memory(info.memory_mb);
    if (info.validation_dice != null) a.validations.push({ step: 0, dice: info.validation_dice });
    showValidation(a);
    const every = Math.max(1, Math.round(a.steps / 5));
    for (let done = 0; done < a.steps; done++) {
      if (a.paused) {
        setStatus(`Adaptation paused at step ${done} of ${a.steps}.`);
        await resumed(a);
      }
      if (a.cancelled) break;
      const out = await engine.call('adapt-step', { n: 1 });
      a.history.push(...out.points);
      $('adapt-memory').textContent = memory(out.memory_mb);
      if ((done + 1) % every === 0 || done + 1 === a.steps) await validate(a);
      drawAdaptCurves(a);
      const ms = out.points.at(-1)?.ms;
      setStatus(`Adapting ${base.name}: step ${done + 1} of ${a.steps}${Number.isFinite(ms) ? ` (${fmt(ms)} ms)` : ''}…`);
      setProgress((done + 1) / a.steps);
    }
    if (a.cancelled) {
      await engine.call('adapt-close');
      throw new Error('cancelled; nothing was kept');
    }
    await finish(a);
  } catch (e) {
    state.adapt = null;
    showAdaptError(`Adaptation stopped: ${e.message || e}. The base model is unchanged.`);
    setStatus('Adaptation stopped.');
    setProgress(0);
  }
  state.busy = false;
  updateControls();
}

/** The adapted model (a merged package `out`) joins the model list, selected: the adapter is on. */
function addAdapted(a, out) {
  a.model = packagedModel(`${out.card.id}-${state.nextId++}`, out.card.name, out, { teacher: a.base.id, adaptedFrom: a.base.id });
  state.models.push(a.model);
  renderModels(a.model.id);
}

/** The merged package joins the model list; the adapter's files are kept for download. */
async function finish(a) {
  const out = await engine.call('adapt-package');
  if ($('adapt-trainables').value !== 'full') a.adapter = await engine.call('adapt-adapter');
  await engine.call('adapt-close');
  addAdapted(a, out);
  const size = a.adapter ? ` The adapter is ${fmt(a.adapter.bytes / 1024)} KB.` : ' A full fine-tuning has no adapter: download the package.';
  const steps = a.history.length;
  const ms = steps ? a.history.reduce((s, p) => s + p.ms, 0) / steps : NaN;
  $('adapt-summary').textContent =
    `Adapted ${a.base.name} in ${steps} steps (${fmt(ms)} ms per step).${size} "Adapter on" now selects the adapted model for runs.`;
  setStatus(`Adapted ${a.base.name}.`);
  setProgress(1);
}

/** An adapter someone shared: put on the selected model (refused on any other base), merged. */
async function loadAdapter() {
  const base = selectedModel();
  const input = $('adapt-load-input');
  if (!base || state.busy || input.files.length === 0) return;
  showAdaptError('');
  const files = await readAll(input);
  input.value = '';
  if (!files) return;
  const config = files.find((f) => f.name.endsWith('.json'));
  const weights = files.find((f) => f.name.endsWith('.safetensors'));
  if (files.length !== 2 || !config || !weights) return showAdaptError('Pick the adapter\'s two files: adapter_config.json and adapter_model.safetensors.');
  state.busy = true;
  updateControls();
  try {
    const msg = modelMessage(base);
    const configJson = new TextDecoder().decode(config.bytes);
    const copy = weights.bytes.slice(0); // the page keeps its own for "Download the adapter"
    const out = await engine.call('adapt-load', { base: msg, config_json: configJson, weights: copy }, [copy, msg.weights].filter(Boolean));
    const a = { base, history: [], validations: [], model: null, adapter: { config_json: configJson, weights: weights.bytes, bytes: weights.bytes.byteLength } };
    addAdapted(a, out);
    state.adapt = a;
    $('adapt-summary').textContent = `Loaded an adapter (r = ${out.r}, ${out.layers} layers, ${fmt(a.adapter.bytes / 1024)} KB) onto ${base.name}. "Adapter on" selects the adapted model for runs.`;
  } catch (e) {
    showAdaptError(`The adapter was not loaded: ${e.message || e}`);
  }
  state.busy = false;
  updateControls();
}

function togglePause() {
  const a = state.adapt;
  if (!a || a.model) return;
  a.paused = !a.paused;
  $('adapt-pause').textContent = a.paused ? 'Resume' : 'Pause';
  if (!a.paused && a.resume) a.resume();
}

function cancel() {
  const a = state.adapt;
  if (!a || a.model) return;
  a.cancelled = true;
  setStatus('Cancelling the adaptation after this step…');
  if (a.resume) a.resume();
}

/** Adapter on: the adapted model is the one runs use; off: its base. */
function toggle() {
  const a = state.adapt;
  if (!a?.model) return;
  renderModels($('adapt-toggle').checked ? a.model.id : a.base.id);
  updateControls();
}

function sideBySide() {
  const a = state.adapt;
  if (!a?.model || !state.volume || state.busy) return;
  state.compare = { teacher: a.base, student: a.model, step: 'teacher', results: {}, adapt: true };
  el.comparePanel.hidden = true;
  runModel(a.base);
  setStatus(`Running ${a.base.name} (adapter off), then the adapted model…`);
}

function download() {
  const ad = state.adapt?.adapter;
  if (!ad) return;
  saveBlob('adapter_config.json', new Blob([ad.config_json], { type: 'application/json' }));
  saveBlob('adapter_model.safetensors', new Blob([ad.weights], { type: 'application/octet-stream' }));
}

function downloadMerged() {
  const m = state.adapt?.model;
  if (!m) return;
  saveBlob(`${m.id}.model.json`, new Blob([m.uploaded.json], { type: 'application/json' }));
  saveBlob(`${m.id}.weights.safetensors`, new Blob([m.uploaded.weights], { type: 'application/octet-stream' }));
}

export function updateAdaptControls(idle) {
  const a = state.adapt;
  const training = Boolean(a && !a.model && state.busy);
  $('adapt-start').disabled = !(idle && state.engineReady && selectedModel());
  $('adapt-pause').disabled = !training;
  if (!training) $('adapt-pause').textContent = 'Pause';
  $('adapt-cancel').disabled = !training;
  for (const id of ['adapt-data-input', 'adapt-val-input', 'adapt-rank', 'adapt-alpha', 'adapt-targets', 'adapt-trainables', 'adapt-steps', 'adapt-lr', 'adapt-teacher', 'adapt-kd']) {
    $(id).disabled = state.busy;
  }
  const done = Boolean(a?.model);
  $('adapt-toggle').disabled = !(idle && done);
  $('adapt-toggle').checked = done && selectedModel()?.id === a.model.id;
  $('adapt-compare').disabled = !(idle && done && state.volume);
  $('adapt-download').disabled = !a?.adapter;
  $('adapt-merge-download').disabled = !done;
  $('adapt-load-input').disabled = !(idle && state.engineReady && selectedModel());
}

export function wireAdapt() {
  $('adapt-start').addEventListener('click', start);
  $('adapt-pause').addEventListener('click', togglePause);
  $('adapt-cancel').addEventListener('click', cancel);
  $('adapt-toggle').addEventListener('change', toggle);
  $('adapt-compare').addEventListener('click', sideBySide);
  $('adapt-download').addEventListener('click', download);
  $('adapt-merge-download').addEventListener('click', downloadMerged);
  $('adapt-load-input').addEventListener('change', loadAdapter);
}
