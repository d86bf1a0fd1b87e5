// Pareto view: the selected model and its Tucker-2 at several factors, each run on the loaded
// volume on the chosen backend; time against Dice with the original, the fastest passing marked.
// The worker compresses, times and judges every version (one 'pareto' request, compress::pareto);
// this module shows the sweep as it grows. A new safety margin afterwards is judged by the engine
// again ('pareto-judge'), without measuring again.

import { el, state, selectedModel } from './state.js';
import { engine } from './engine.js';
import { fmt } from './format.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import { modelMessage, cachedAutoChoice } from './model.js';

export function clearPareto() {
  state.pareto = null;
  el.paretoSummary.textContent = '';
  el.paretoPlot.replaceChildren();
  el.paretoTable.hidden = true;
  el.paretoTable.tBodies[0].replaceChildren();
}

/** Sweep the factors: the engine reads them (sorted, bad ones named), then one request; the
 * worker answers with the sweep so far after each model, then with the whole sweep. */
async function paretoSweep() {
  const source = selectedModel();
  if (!source || !state.volume || state.busy || source.compressedFrom) return;
  clearError();
  let factors;
  try {
    factors = await engine.call('pareto-factors', { text: el.paretoFactors.value });
  } catch (e) {
    showError(`Pareto view: ${e.message}`);
    return;
  }
  if (state.busy) return; // something started while the factors were read
  clearPareto();
  const preference = el.backend.value;
  const cached = preference === 'auto' ? cachedAutoChoice() : null;
  state.pareto = { source, factors, sweep: null, done: false, startedAt: performance.now() };
  state.busy = true;
  state.runId = state.nextId++;
  setStatus(`Pareto view: ${source.name} and ${factors.length} compressed versions…`);
  setProgress(0);
  updateControls();
  const copy = state.volume.bytes.slice(0);
  const reference = state.reference ? state.reference.bytes.slice(0) : null;
  const modelMsg = modelMessage(source);
  // WebGPU compiles each model's kernels on its first run: time the second (the CPU needs no warm-up).
  const warmup = preference === 'webgpu' || (preference === 'auto' && cached?.backend === 'webgpu');
  const transfer = [copy, ...(reference ? [reference] : []), ...(modelMsg.weights ? [modelMsg.weights] : [])];
  engine.post(
    {
      type: 'pareto',
      id: state.runId,
      model: modelMsg,
      bytes: copy,
      reference,
      options: { factors, min_rank: 1, margin: Number(el.margin.value) || 0, warmup },
      backend: preference,
      cachedChoice: cached ? cached.backend : null,
    },
    transfer,
  );
}

/** The sweep so far: every model measured yet, judged, the fastest passing named. */
export function onParetoPoint(sweep) {
  state.pareto.sweep = sweep;
  renderPareto();
}

export function onParetoDone(sweep) {
  state.busy = false;
  state.runId = null;
  state.pareto.sweep = sweep;
  state.pareto.done = true;
  renderPareto();
  const wall = (performance.now() - state.pareto.startedAt) / 1000;
  setStatus(`Pareto view done: ${sweep.points.length} models in ${wall.toFixed(0)} s.`);
  setProgress(1);
  updateControls();
}

/** The sweep stopped in the worker: the points measured so far stay on the plot. */
export function onParetoError(msg) {
  state.busy = false;
  state.runId = null;
  showError(`The Pareto sweep stopped: ${msg.message} The points measured so far are kept.`);
  setIdleStatus();
  setProgress(0);
  if (msg.fatal) engine.restart();
  updateControls();
}

/** Cancel stopped the sweep: the points measured so far stay on the plot. */
export function onParetoCancelled() {
  if (state.pareto && !state.pareto.done) {
    state.pareto.cancelled = true;
    renderPareto();
  }
}

/** The table, the plot and the summary, as the engine judged them (at sweep.margin). */
function renderPareto() {
  const p = state.pareto;
  if (!p || !p.sweep) return;
  const { margin } = p.sweep;
  const points = p.sweep.points.map((pt, i) => ({ ...pt, i, ok: pt.verdict.passes }));
  const fastest = p.sweep.fastest_passing == null ? null : points[p.sweep.fastest_passing];
  const name = (pt) => (pt.factor === null || pt.factor === undefined ? 'original' : `factor ${pt.factor.toFixed(2)}`);
  const cell = (text) => {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  };
  el.paretoTable.tBodies[0].replaceChildren(
    ...points.map((pt) => {
      const tr = document.createElement('tr');
      tr.dataset.factor = pt.factor === null || pt.factor === undefined ? 'original' : String(pt.factor);
      tr.dataset.ms = String(pt.ms);
      tr.dataset.dice = String(pt.verdict.worst_dice);
      tr.dataset.referenceDice = pt.worst_reference_dice == null ? '' : String(pt.worst_reference_dice);
      tr.dataset.verdict = pt.ok ? 'PASS' : 'FAIL';
      if (fastest && pt.i === fastest.i) tr.className = 'fastest';
      tr.append(
        cell(name(pt)),
        cell(fmt(pt.params)),
        cell(fmt(pt.flops / 1e9)),
        cell(fmt(pt.ms)),
        cell(fmt(pt.inference_ms)),
        cell(`${pt.verdict.worst_dice.toFixed(4)} (${pt.verdict.worst_label || '–'})`),
        cell(pt.dice_vs_reference ? pt.dice_vs_reference.map((l) => `${l.name} ${l.dice.toFixed(4)}`).join(', ') : '–'),
        cell(pt.ok ? 'PASS' : 'FAIL'),
      );
      return tr;
    }),
  );
  el.paretoTable.hidden = points.length === 0;
  drawParetoPlot(points, fastest, margin, name);
  const progress = p.done ? '' : ` (${p.cancelled ? 'cancelled after ' : ''}${points.length} of ${p.factors.length + 1} measured)`;
  el.paretoSummary.dataset.fastest = fastest ? (fastest.factor ?? 'original').toString() : '';
  el.paretoSummary.dataset.margin = String(margin);
  el.paretoSummary.textContent = fastest
    ? `Fastest within the margin of ${margin}: ${name(fastest)}, ${fmt(fastest.ms)} ms, Dice with the original ${fastest.verdict.worst_dice.toFixed(4)}${progress}.`
    : `No model stays within the margin of ${margin}${progress}.`;
}

/** Time (x) against the worst label's Dice with the original (y), drawn as SVG elements (no
 * plotting library: a scatter of at most a dozen points, and no script may come from elsewhere). */
function drawParetoPlot(points, fastest, margin, name) {
  const NS = 'http://www.w3.org/2000/svg';
  const W = 520, H = 280, L = 56, R = 16, T = 14, B = 40;
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Time against Dice with the original, per compression factor');
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  if (points.length === 0) {
    el.paretoPlot.replaceChildren();
    return;
  }
  const xs = points.map((pt) => pt.ms / 1000);
  const ys = points.map((pt) => pt.verdict.worst_dice);
  const xMax = Math.max(...xs) * 1.08 || 1;
  const yMin = Math.max(0, Math.min(...ys, 1 - margin) - 0.02);
  const X = (v) => L + ((W - L - R) * v) / xMax;
  const Y = (v) => T + ((H - T - B) * (1 - v)) / (1 - yMin || 1);
  add('line', { x1: L, y1: H - B, x2: W - R, y2: H - B, class: 'axis' });
  add('line', { x1: L, y1: T, x2: L, y2: H - B, class: 'axis' });
  for (let k = 0; k <= 4; k++) {
    const xv = (xMax * k) / 4;
    add('text', { x: X(xv), y: H - B + 16, 'text-anchor': 'middle', class: 'tick' }, xv.toFixed(xMax < 10 ? 1 : 0));
    const yv = yMin + ((1 - yMin) * k) / 4;
    add('text', { x: L - 6, y: Y(yv) + 4, 'text-anchor': 'end', class: 'tick' }, yv.toFixed(3));
  }
  add('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', class: 'label' }, 'seconds on this PC');
  add('text', { x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', class: 'label', transform: `rotate(-90 14 ${(T + H - B) / 2})` }, 'Dice with the original');
  if (Number.isFinite(margin) && 1 - margin >= yMin) {
    add('line', { x1: L, y1: Y(1 - margin), x2: W - R, y2: Y(1 - margin), class: 'margin-line' });
    add('text', { x: W - R, y: Y(1 - margin) - 4, 'text-anchor': 'end', class: 'tick' }, `margin ${margin}`);
  }
  points.forEach((pt, k) => {
    const cx = X(xs[k]), cy = Y(ys[k]);
    const c = add('circle', { cx, cy, r: 5, class: pt.ok ? 'point pass' : 'point fail', 'data-factor': pt.factor ?? 'original' });
    const t = document.createElementNS(NS, 'title');
    t.textContent = `${name(pt)}: ${fmt(pt.ms)} ms, Dice ${ys[k].toFixed(4)}`;
    c.append(t);
    add('text', { x: cx + 7, y: cy - 7, class: 'tick' }, pt.factor === null || pt.factor === undefined ? 'original' : pt.factor.toFixed(2));
    if (fastest && pt.i === fastest.i) add('circle', { cx, cy, r: 10, class: 'fastest-ring', 'data-testid': 'pareto-fastest' });
  });
  el.paretoPlot.replaceChildren(svg);
}

/** The margin only changes the verdicts, not the measurements: the engine judges the same sweep
 * again (an older answer arriving late is dropped). The margin cannot change during a sweep: it
 * is one of its inputs. */
async function judgeAgain() {
  const p = state.pareto;
  if (!p || !p.sweep || state.busy) return;
  try {
    const sweep = await engine.latest('pareto-judge', { sweep: p.sweep, margin: Number(el.margin.value) });
    if (sweep && state.pareto === p) {
      p.sweep = sweep;
      renderPareto();
    }
  } catch (e) {
    showError(`Could not judge the Pareto view again: ${e.message}`);
  }
}

export function wirePareto() {
  el.paretoButton.addEventListener('click', paretoSweep);
  el.margin.addEventListener('input', judgeAgain);
}
