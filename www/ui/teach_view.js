// Drawing for the teach room: the live curves (SVG), the soft-target maps (RGBA bytes the engine
// made, put on canvases) and a voxel's numbers as text. No numbers are computed here beyond
// placing points on a chart.

const SVG = 'http://www.w3.org/2000/svg';
const TERMS = [
  ['total', 'total', '#1f6feb'],
  ['hard', 'hard labels (CE + Dice)', '#d1242f'],
  ['kd', 'T²·KL', '#8250df'],
  ['feature', 'features (InfoNCE)', '#1a7f37'],
];

/** An axis label: whole numbers from 100 up (ms per step), three digits below. */
const tick = (v) => (Math.abs(v) >= 100 ? String(Math.round(v)) : v.toPrecision(3));

function node(name, attrs, text) {
  const n = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

/** One chart: series [{label, colour, dashed, points: [[x, y], …]}] on shared axes. */
export function chart(title, series, { width = 460, height = 220, yMin = null, yMax = null } = {}) {
  const pad = { l: 48, r: 8, t: 20, b: 28 };
  const svg = node('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img', 'aria-label': title });
  const all = series.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  svg.append(node('text', { x: pad.l, y: 14, class: 'chart-title' }, title));
  if (all.length === 0) return svg;
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs, x0 + 1);
  const y0 = yMin ?? Math.min(0, ...ys);
  const y1 = yMax ?? Math.max(...ys, y0 + 1e-6);
  const px = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const py = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  svg.append(node('line', { x1: pad.l, y1: height - pad.b, x2: width - pad.r, y2: height - pad.b, stroke: 'currentColor' }));
  svg.append(node('line', { x1: pad.l, y1: pad.t, x2: pad.l, y2: height - pad.b, stroke: 'currentColor' }));
  svg.append(node('text', { x: pad.l - 4, y: py(y1) + 4, 'text-anchor': 'end', class: 'tick' }, tick(y1)));
  svg.append(node('text', { x: pad.l - 4, y: py(y0), 'text-anchor': 'end', class: 'tick' }, tick(y0)));
  svg.append(node('text', { x: width - pad.r, y: height - 8, 'text-anchor': 'end', class: 'tick' }, `step ${x1}`));
  for (const s of series) {
    const pts = s.points.filter(([, y]) => Number.isFinite(y));
    if (pts.length === 0) continue;
    const attrs = { points: pts.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' '), fill: 'none', stroke: s.colour, 'stroke-width': 1.5 };
    if (s.dashed) attrs['stroke-dasharray'] = '4 3';
    const line = node('polyline', attrs);
    line.append(node('title', {}, s.label));
    svg.append(line);
  }
  return svg;
}

export function legend(series) {
  const ul = document.createElement('ul');
  ul.className = 'legend';
  for (const s of series) {
    const li = document.createElement('li');
    li.textContent = `${s.dashed ? '- -' : '——'} ${s.label}`;
    li.dataset.colour = s.colour;
    ul.append(li);
  }
  return ul;
}

/** The loss terms of both students, and Dice and ms per step at each evaluation. */
export function drawCurves(container, points, evaluations) {
  const losses = [];
  for (const [key, label, colour] of TERMS) {
    losses.push({ label: `KD: ${label}`, colour, dashed: false, points: points.map((p) => [p.step, p.kd[key]]) });
    if (key !== 'kd' && key !== 'feature') {
      losses.push({ label: `twin: ${label}`, colour, dashed: true, points: points.map((p) => [p.step, p.scratch[key]]) });
    }
  }
  const dice = [
    { label: 'KD vs teacher (held out)', colour: '#1f6feb', points: evaluations.map((e) => [e.step, e.dice_kd]) },
    { label: 'twin vs teacher (held out)', colour: '#1f6feb', dashed: true, points: evaluations.map((e) => [e.step, e.dice_scratch]) },
  ];
  if (evaluations.some((e) => e.reference_kd != null)) {
    dice.push({ label: 'KD vs reference', colour: '#d1242f', points: evaluations.map((e) => [e.step, e.reference_kd]) });
    dice.push({ label: 'twin vs reference', colour: '#d1242f', dashed: true, points: evaluations.map((e) => [e.step, e.reference_scratch]) });
  }
  const ms = [{ label: 'ms per step (both students)', colour: '#57606a', points: evaluations.map((e) => [e.step, e.ms_per_step]) }];
  container.replaceChildren(
    chart('Loss terms (solid: KD student, dashed: twin)', losses),
    legend(losses),
    chart('Dice', dice, { yMin: 0, yMax: 1 }),
    legend(dice),
    chart('ms per step', ms),
  );
  container.dataset.points = String(points.length);
}

function paint(canvas, width, height, rgba) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
}

/** The engine's soft-target maps of one slice at temperature T. */
export function drawSoftView(v, T) {
  paint(document.getElementById('teach-soft-teacher'), v.width, v.height, v.teacher);
  paint(document.getElementById('teach-soft-student'), v.width, v.height, v.student);
  paint(document.getElementById('teach-soft-kl'), v.width, v.height, v.kl);
  document.getElementById('teach-soft-max').textContent = `max ${v.max_kl.toPrecision(3)}, mean ${v.mean_kl.toPrecision(3)}`;
  const view = document.getElementById('teach-soft-view');
  view.dataset.t = String(T);
  view.dataset.meanKl = String(v.mean_kl);
}

const fmt = (xs) => (xs ? `[${xs.map((x) => x.toFixed(4)).join(', ')}]` : '–');

/** One voxel's logits and softmaxes, as the engine gave them. */
export function voxelText(v) {
  return [
    `voxel (${v.voxel.join(', ')}), T = ${v.temperature}`,
    `teacher logits  ${fmt(v.teacher)}   softmax T=1 ${fmt(v.teacher_t1)}   at T ${fmt(v.teacher_t)}`,
    `student logits  ${fmt(v.student)}   softmax T=1 ${fmt(v.student_t1)}   at T ${fmt(v.student_t)}`,
    `T²·KL = ${v.kl_t2 == null ? '–' : v.kl_t2.toFixed(5)}`,
  ].join('\n');
}
