// Pareto view: the selected model and its Tucker-2 at several factors, each run on the loaded
// volume on the chosen backend; time against Dice with the original, the fastest passing marked.
// The worker compresses and times every version (one 'pareto' request); this module shows the
// points as they arrive and judges them against the safety margin, which the user may change
// afterwards without measuring again.

import { el, state, selectedModel } from './state.js';
import { engine } from './engine.js';
import { fmt } from './format.js';
import { worstDice, worstLabel, withinMargin } from './dice.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import { modelMessage, cachedAutoChoice } from './model.js';

/** The factors typed by the user, sorted, without repeats; throws with the reason if one is bad. */
function parseFactors(text) {
  const parts = text.split(/[\s,;]+/).filter(Boolean);
  const factors = parts.map(Number);
  const bad = parts.filter((p, i) => !(factors[i] > 0 && factors[i] <= 1));
  if (parts.length === 0) throw new Error('give at least one factor, e.g. 0.25, 0.5, 0.75');
  if (bad.length) throw new Error(`${bad.join(', ')}: factors lie in (0, 1]`);
  return [...new Set(factors)].sort((a, b) => a - b);
}

export function clearPareto() {
  state.pareto = null;
  el.paretoSummary.textContent = '';
  el.paretoPlot.replaceChildren();
  el.paretoTable.hidden = true;
  el.paretoTable.tBodies[0].replaceChildren();
}

/** Sweep the factors: one request; the worker answers point by point, then with the sweep. */
function paretoSweep() {
  const source = selectedModel();
  if (!source || !state.volume || state.busy || source.compressedFrom) return;
  clearError();
  let factors;
  try {
    factors = parseFactors(el.paretoFactors.value);
  } catch (e) {
    showError(`Pareto view: ${e.message}`);
    return;
  }
  clearPareto();
  const preference = el.backend.value;
  const cached = preference === 'auto' ? cachedAutoChoice() : null;
  state.pareto = { source, factors, points: [], fastest: null, done: false, startedAt: performance.now() };
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

export function onParetoPoint(point) {
  state.pareto.points.push(point);
  renderPareto();
}

export function onParetoDone(sweep) {
  state.busy = false;
  state.runId = null;
  state.pareto.points = sweep.points;
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

/** The table, the plot and the summary, judged against the current margin. */
function renderPareto() {
  const p = state.pareto;
  if (!p) return;
  const margin = Number(el.margin.value);
  const points = p.points.map((pt, i) => ({ ...pt, i, ok: withinMargin(pt.dice_vs_original, margin) }));
  const fastest = points.filter((pt) => pt.ok).reduce((best, pt) => (!best || pt.ms < best.ms ? pt : best), null);
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
      tr.dataset.dice = String(worstDice(pt.dice_vs_original));
      tr.dataset.referenceDice = pt.dice_vs_reference ? String(worstDice(pt.dice_vs_reference)) : '';
      tr.dataset.verdict = pt.ok ? 'PASS' : 'FAIL';
      if (fastest && pt.i === fastest.i) tr.className = 'fastest';
      const worst = worstLabel(pt.dice_vs_original) || { name: '–', dice: 1 };
      tr.append(
        cell(name(pt)),
        cell(fmt(pt.params)),
        cell(fmt(pt.flops / 1e9)),
        cell(fmt(pt.ms)),
        cell(fmt(pt.inference_ms)),
        cell(`${worst.dice.toFixed(4)} (${worst.name})`),
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
  el.paretoSummary.textContent = fastest
    ? `Fastest within the margin of ${margin}: ${name(fastest)}, ${fmt(fastest.ms)} ms, Dice with the original ${worstDice(fastest.dice_vs_original).toFixed(4)}${progress}.`
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
  const ys = points.map((pt) => worstDice(pt.dice_vs_original));
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

export function wirePareto() {
  el.paretoButton.addEventListener('click', paretoSweep);
  // The margin only changes the verdicts, not the measurements: judge the same points again.
  el.margin.addEventListener('input', () => {
    if (state.pareto && state.pareto.points.length) renderPareto();
  });
}
