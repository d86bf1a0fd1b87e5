// Compress panel: Tucker-2 of the selected model in the worker; the package is kept in this tab,
// run side by side with its source (through Compare's machinery: state.compare with
// compress: true), judged against the safety margin (the verdict), and can be downloaded.

import { el, state, selectedModel } from './state.js';
import { engine } from './engine.js';
import { fmt } from './format.js';
import { saveBlob } from './files.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import { modelMessage, packagedModel, renderModels } from './model.js';
import { runModel } from './run.js';
import { onVerdict } from './recover.js';

// The rank rule's parameter slider, per rule: its label, range and default.
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

/** The `rule` of a compress request, from the rank-rule controls. */
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

/** The compressed package joins the model list (kept in this tab); summary and per-layer table. */
export function onCompressed(msg) {
  state.busy = false;
  state.runId = null;
  const source = state.compressSource;
  const r = msg.report;
  const id = `${msg.card.id}-${state.nextId++}`;
  const model = packagedModel(id, msg.card.name, msg, { teacher: source.id, compressedFrom: source.id, params: r.params_after, flops_per_patch: r.flops_after });
  state.models.push(model);
  state.compressed = { model, source, report: r };
  renderModels(source.id);
  const pct = (saved) => `${(100 * saved).toFixed(1)}% fewer`;
  const factorised = r.layers.filter((l) => l.ranks).length;
  const wall = (performance.now() - state.compressStartedAt) / 1000;
  el.compressSummary.dataset.paramsBefore = String(r.params_before);
  el.compressSummary.dataset.paramsAfter = String(r.params_after);
  el.compressSummary.textContent =
    `${msg.card.name}: ${factorised} of ${r.layers.length} convolutions factorised. ` +
    `Parameters ${fmt(r.params_before)} → ${fmt(r.params_after)} (${pct(r.params_saved)}); ` +
    `GFLOP per window ${fmt(r.flops_before / 1e9)} → ${fmt(r.flops_after / 1e9)} (${pct(r.flops_saved)}). ` +
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

/** Compression failed: nothing was added to the model list. */
export function onCompressError(msg) {
  state.busy = false;
  state.runId = null;
  showError(`Could not compress ${state.pendingName || 'the model'}: ${msg.message} Nothing was changed.`);
  setIdleStatus();
  setProgress(0);
}

/** Run original and compressed: Compare's two runs with the original as the teacher. */
function runCompressed() {
  const c = state.compressed;
  if (!c || !state.volume || state.busy) return;
  state.compare = { teacher: c.source, student: c.model, step: 'teacher', results: {}, compress: true };
  el.comparePanel.hidden = true;
  el.compressVerdict.hidden = true;
  runModel(c.source);
  setStatus(`Running the original (${c.source.name}) first…`);
}

/** The verdict the engine gave (compress::verdict: PASS when every label's Dice drop against the
 * original is within the margin), naming the label that dropped most. `perLabel` ([{name, dice}])
 * is what it judged, kept to judge again when the margin changes. */
export function renderVerdict(verdict, perLabel) {
  if (state.compressed) Object.assign(state.compressed, { lastPerLabel: perLabel, verdict });
  const { passes, worst_label: label, worst_drop: drop, margin } = verdict;
  el.compressVerdict.dataset.verdict = passes ? 'PASS' : 'FAIL';
  el.compressVerdict.dataset.margin = String(margin);
  el.compressVerdict.className = `verdict ${passes ? 'pass' : 'fail'}`;
  el.compressVerdict.textContent = passes
    ? `PASS: the largest Dice drop (${label}: ${drop.toFixed(4)}) is within the margin of ${margin}.`
    : `FAIL: ${label} drops by ${drop.toFixed(4)} in Dice against the original, more than the margin of ${margin}.`;
  el.compressVerdict.hidden = false;
  onVerdict();
}

/** A new margin: the engine judges the last comparison again, without running anything (an older
 * answer arriving late is dropped). */
async function judgeAgain() {
  const c = state.compressed;
  if (!c || !c.lastPerLabel || state.busy) return;
  try {
    const verdict = await engine.latest('judge-margin', { dice: c.lastPerLabel, margin: Number(el.margin.value) });
    if (verdict && state.compressed === c) renderVerdict(verdict, c.lastPerLabel);
  } catch (e) {
    showError(`Could not judge the comparison again: ${e.message}`);
  }
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

export function wireCompress() {
  el.rankRule.addEventListener('change', () => {
    renderRankParam(true);
    updateControls();
  });
  el.rankParam.addEventListener('input', () => renderRankParam(false));
  el.compressButton.addEventListener('click', compressSelected);
  el.compressRun.addEventListener('click', runCompressed);
  el.compressDownload.addEventListener('click', downloadCompressed);
  el.margin.addEventListener('input', judgeAgain);
}
