// "Recover by distillation" in the Compress panel: the compressed model trains further in the
// worker, with its original as the teacher, on the loaded volume (web::recover over
// distill::recover: the trainer `bedside distill` runs, with start_from's semantics). Then both are
// run again, the Dice against the original before and after are shown, and the verdict is
// re-judged; the recovered package joins the model list and can be downloaded like the compressed one.

import { el, state } from './state.js';
import { engine } from './engine.js';
import { setStatus, showError, clearError, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import { modelMessage, packagedModel, renderModels } from './model.js';
import { drawCurves } from './teach_view.js';

const $ = (id) => document.getElementById(id);

/** The Dice of the last comparison with the original: the worst label's, as the verdict judged. */
const lastDice = () => state.compressed?.verdict?.worst_dice ?? null;

async function recover() {
  const c = state.compressed;
  if (!c || !state.volume || state.busy) return;
  const before = lastDice();
  if (before == null) return showError('Run the original and the compressed model first: recovery is judged against that Dice.');
  const steps = Math.max(1, Math.min(2000, Math.round(Number($('recover-steps').value) || 0)));
  clearError();
  state.busy = true;
  state.recovering = { before, from: c.model, history: [] };
  $('recover-dice-before').textContent = before.toFixed(4);
  $('recover-dice-after').textContent = '…';
  updateControls();
  try {
    setStatus(`Running the original (${c.source.name}) once on the volume…`);
    setProgress(null);
    const original = modelMessage(c.source);
    const compressed = modelMessage(c.model);
    const bytes = state.volume.bytes.slice(0);
    const transfer = [bytes, original.weights, compressed.weights].filter(Boolean);
    await engine.call('recover-open', { bytes, original, compressed, steps, backend: el.backend.value, cachedChoice: null }, transfer);
    for (let done = 0; done < steps; done++) {
      const points = await engine.call('recover-step', { n: 1 });
      for (const p of points) state.recovering.history.push({ ...p, scratch: {} });
      drawCurves($('recover-curve'), state.recovering.history, []);
      setStatus(`Recovering ${c.model.name}: step ${done + 1} of ${steps}…`);
      setProgress((done + 1) / steps);
    }
    const out = await engine.call('recover-package');
    const model = packagedModel(`${out.card.id}-${state.nextId++}`, out.card.name, out, { teacher: c.source.id, compressedFrom: c.source.id });
    state.models.push(model);
    state.compressed = { ...c, model, lastPerLabel: null, verdict: null };
    renderModels(c.source.id);
    state.busy = false;
    updateControls();
    // The comparison again, with the recovered model: its Dice and the verdict follow.
    el.compressRun.click();
  } catch (e) {
    state.busy = false;
    state.recovering = null;
    $('recover-dice-after').textContent = '–';
    showError(`Recovery stopped: ${e.message}. The compressed model is unchanged.`);
    setStatus('Recovery stopped.');
    setProgress(0);
    updateControls();
  }
}

/** Called by the verdict: after a recovery, the new Dice against the original. */
export function onVerdict() {
  if (!state.recovering || state.recovering.history.length === 0) return;
  const after = lastDice();
  if (after == null) return;
  $('recover-dice-after').textContent = after.toFixed(4);
  $('recover-summary').textContent = `Recovered in ${state.recovering.history.length} steps: Dice against the original ${state.recovering.before.toFixed(4)} → ${after.toFixed(4)}. "Download the package" saves the recovered model.`;
  state.recovering = null;
}

export function updateRecoverControls(idle) {
  $('recover-button').disabled = !(idle && state.engineReady && state.volume && state.compressed && lastDice() != null);
  $('recover-steps').disabled = state.busy;
}

export function wireRecover() {
  $('recover-button').addEventListener('click', recover);
}
