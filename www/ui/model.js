// Model panel: the model list (models/index.json), the selected model's card, importing weights
// (HD-BET's PyTorch fold files, converted in the worker) and bedside packages (checked in the
// worker), and the backend choice (Auto measures; its choice is cached per browser and adapter).
// Imported models are kept in this tab's memory, never uploaded anywhere.

import { el, state, selectedModel, teacherOf } from './state.js';
import { engine } from './engine.js';
import { fmt, backendName, unprefixed } from './format.js';
import { readPickedFile } from './files.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import { renderDevice } from './device.js';

const AUTO_CACHE_KEY = 'bedside.autoBackend.v1';

/** The shipped models, from models/index.json (`bedside catalog` writes it). */
export async function loadModels() {
  try {
    const res = await fetch('models/index.json', { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const list = await res.json();
    if (!Array.isArray(list) || list.length === 0) throw new Error('the list is empty');
    state.models = list.filter((m) => m && typeof m.id === 'string' && typeof m.path === 'string');
    renderModels();
  } catch (e) {
    state.models = [];
    showError(`Could not load the model list (models/index.json): ${e.message || e}. Run the setup script to install the models.`);
  }
  updateControls();
}

/** The model selector's options; `selectId` is selected when given, else the selection is kept. */
export function renderModels(selectId) {
  const previous = selectId ?? el.model.value;
  el.model.replaceChildren(
    ...state.models.map((m) => {
      const o = document.createElement('option');
      o.value = m.id;
      o.textContent = m.name || m.id;
      return o;
    }),
  );
  if (state.models.some((m) => m.id === previous)) el.model.value = previous;
  renderModelCard();
}

/** The card facts of the selected model: size, cost, measured Dice. */
function renderModelCard() {
  const m = selectedModel();
  if (!m || m.uploaded || !Number.isFinite(m.params)) {
    el.modelCard.textContent = '';
    return;
  }
  const parts = [`${fmt(m.params)} parameters`, `${fmt(m.flops_per_patch / 1e9)} GFLOP per ${m.patch.join('×')} window`];
  const teacher = teacherOf(m)?.name ?? m.teacher;
  if (m.teacher) parts.push(m.distilled ? `distilled from ${teacher}` : `trained on independent masks only, without ${teacher} (for comparison)`);
  const dice = (m.evaluation || []).map((e) => `${e.volume} ${Number(e.dice).toFixed(3)} (vs ${e.reference})`);
  el.modelCard.textContent = parts.join(', ') + '.' + (dice.length ? ` Dice: ${dice.join('; ')}.` : '');
}

/** How the worker finds the model: a same-origin package path, or the converted bytes themselves. */
export function modelMessage(model) {
  if (!model.uploaded) return { id: model.id, name: model.name, path: model.path };
  return { id: model.id, name: model.name, json: model.uploaded.json, weights: model.uploaded.weights.slice(0) };
}

// ---------------------------------------------------------------------------------------------
// Importing weights as they ship (HD-BET's PyTorch fold files) and bedside packages

async function importWeights(file) {
  if (!file || state.busy || state.inspecting) return;
  clearError();
  setStatus(`Reading ${file.name}…`);
  const bytes = await readPickedFile(file, 'import', 2 ** 30, 'more than 1 GiB is not a model this page can hold.');
  if (!bytes) return;
  engine.ensureStarted();
  state.busy = true;
  state.runId = state.nextId++;
  state.pendingName = file.name;
  setStatus(`Converting ${file.name} (PyTorch checkpoint → bedside package)…`);
  setProgress(null);
  updateControls();
  engine.post({ type: 'import', id: state.runId, bytes, name: file.name }, [bytes]);
}

/**
 * A bedside package the user picked as two files: its `model.json` (a downloaded compressed model
 * is saved as `ID.model.json`) and its weights (`ID.weights.safetensors`). The worker builds it to
 * check it; it then joins the model list, kept in this tab.
 */
async function importPackage(files) {
  if (!files.length || state.busy || state.inspecting) return;
  clearError();
  const json = files.filter((f) => /\.json$/i.test(f.name));
  const weights = files.filter((f) => /\.safetensors$/i.test(f.name));
  if (json.length !== 1 || weights.length !== 1 || files.length !== 2) {
    showError(`A bedside package is two files: choose its model.json and its weights.safetensors together (got ${files.map((f) => f.name).join(', ')}).`);
    return;
  }
  setStatus(`Reading ${json[0].name} and ${weights[0].name}…`);
  const jsonBytes = await readPickedFile(json[0], 'open', 2 ** 20, 'a model.json over 1 MiB is not one bedside wrote.');
  const weightBytes = jsonBytes && (await readPickedFile(weights[0], 'open', 2 ** 30, 'more than 1 GiB is not a model this page can hold.'));
  if (!weightBytes) return;
  // The engine checks model.json (bedside's one parser for it, as the CLI's): not this page.
  const text = new TextDecoder().decode(jsonBytes);
  engine.ensureStarted();
  state.busy = true;
  state.runId = state.nextId++;
  state.pendingName = json[0].name;
  setStatus(`Checking the package ${json[0].name}…`);
  setProgress(null);
  updateControls();
  engine.post({ type: 'package', id: state.runId, json: text, weights: weightBytes, name: json[0].name }, [weightBytes]);
}

/**
 * A model-list entry for a package the engine made or checked ({card, model_json, weights}),
 * kept in this tab only; `extra` adds what it was made from (teacher, compressedFrom, …).
 */
export function packagedModel(id, name, out, extra = {}) {
  const card = out.card;
  return {
    id,
    name,
    uploaded: { json: out.model_json, weights: out.weights },
    params: card.params,
    flops_per_patch: card.flops,
    patch: card.patch_size,
    ...extra,
  };
}

/** A converted or checked model joins the list, selected, kept in this tab only. */
export function onImported(msg) {
  state.busy = false;
  state.runId = null;
  const card = msg.card;
  const id = `uploaded-${state.nextId++}`;
  // A package knows its source (compressed) or teacher (distilled): Compare and Compress use them.
  // Its model.json is the one the engine has just accepted.
  const manifest = JSON.parse(msg.model_json);
  const compressedFrom = manifest?.compression?.source_id;
  const teacher = compressedFrom ?? manifest?.training?.teacher;
  state.models.push(packagedModel(id, `${card.name}, from ${state.pendingName}`, msg, {
    ...(teacher ? { teacher } : {}),
    ...(compressedFrom ? { compressedFrom } : {}),
  }));
  renderModels(id);
  el.modelInfo.textContent =
    `Imported ${state.pendingName}: ${card.name}, ${fmt(card.params)} parameters, ` +
    `${fmt(card.flops / 1e9)} GFLOP per ${card.patch_size.join('×')} patch. Kept in this tab only.`;
  setStatus(`Imported ${state.pendingName}. Selected it as the model.`);
  setProgress(1);
  updateControls();
}

/** Importing a PyTorch file or checking a package failed. */
export function onImportError(msg) {
  state.busy = false;
  state.runId = null;
  const name = state.pendingName || 'the weights';
  showError(`Could not import ${name}: ${unprefixed(msg.message, name)} The model list is unchanged.`);
  setIdleStatus();
  setProgress(0);
}

// ---------------------------------------------------------------------------------------------
// Backend choice

/** Auto's last measured choice, if it was made in this browser on this adapter. */
export function cachedAutoChoice() {
  try {
    const c = JSON.parse(localStorage.getItem(AUTO_CACHE_KEY) || 'null');
    if (!c || (c.backend !== 'webgpu' && c.backend !== 'cpu')) return null;
    if (c.userAgent !== navigator.userAgent) return null;
    const adapter = state.device && state.device.available ? state.device.description || state.device.vendor || 'gpu' : null;
    if (c.adapter !== adapter) return null;
    if (c.backend === 'webgpu' && !(state.device && state.device.available)) return null;
    return c;
  } catch {
    return null;
  }
}

function storeAutoChoice(selection) {
  try {
    const adapter = state.device && state.device.available ? state.device.description || state.device.vendor || 'gpu' : null;
    localStorage.setItem(
      AUTO_CACHE_KEY,
      JSON.stringify({
        backend: selection.backend,
        probe_ms: selection.probe_ms,
        reason: selection.reason,
        userAgent: navigator.userAgent,
        adapter,
        at: new Date().toISOString(),
      }),
    );
  } catch {
    /* storage may be disabled; then Auto measures again next time */
  }
}

/** The backend the engine chose (or was told to use) for the request in flight. */
export function onBackend(selection, preference) {
  state.selection = selection;
  state.selectionPreference = preference;
  if (preference === 'auto' && selection.probe_ms && (selection.probe_ms.webgpu != null || selection.probe_ms.cpu != null)) {
    storeAutoChoice(selection);
  }
  renderBackend();
  renderDevice();
}

function renderBackend() {
  const s = state.selection;
  if (!s) {
    el.backendInfo.textContent = 'Backend not chosen yet.';
    return;
  }
  const pref = state.selectionPreference;
  const why = pref === 'auto' ? `Auto: ${s.reason}` : `Your choice (${backendName(pref)})${s.reason ? `: ${s.reason}` : ''}`;
  const probe = [];
  if (s.probe_ms) {
    if (s.probe_ms.webgpu != null) probe.push(`WebGPU ${fmt(s.probe_ms.webgpu)} ms`);
    if (s.probe_ms.cpu != null) probe.push(`CPU ${fmt(s.probe_ms.cpu)} ms`);
  }
  let text = `Using ${backendName(s.backend)}. ${why}`;
  if (probe.length) text += ` Probe: ${probe.join(', ')}.`;
  if (s.webgpu_error) text += ` WebGPU unavailable: ${s.webgpu_error}`;
  el.backendInfo.textContent = text;
}

export function wireModel() {
  el.model.addEventListener('change', () => {
    renderModelCard();
    updateControls();
  });
  el.packageInput.addEventListener('change', () => {
    importPackage([...(el.packageInput.files || [])]);
    el.packageInput.value = '';
  });
  el.weightsInput.addEventListener('change', () => {
    importWeights(el.weightsInput.files && el.weightsInput.files[0]);
    el.weightsInput.value = '';
  });
}
