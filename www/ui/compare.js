// Compare panel: the teacher, then the student, on the loaded volume; then their agreement (Dice,
// HD95, per label, and each against the reference mask when there is one), both masks side by
// side. "Run original and compressed" (ui/compress.js) runs through here too, with
// state.compare.compress set: the same two runs, named original and compressed, plus the verdict.

import { el, state, selectedModel, teacherOf } from './state.js';
import { engine } from './engine.js';
import { fmt, backendName } from './format.js';
import { setStatus, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import * as viewers from './viewers.js';
import { runModel, keepResult } from './run.js';
import { renderVerdict } from './compress.js';

/** Compare with teacher: the teacher first, then the selected student. */
function compare() {
  const student = selectedModel();
  const teacher = teacherOf(student);
  if (!state.volume || !student || !teacher || state.busy) return;
  state.compare = { teacher, student, step: 'teacher', results: {} };
  el.comparePanel.hidden = true;
  runModel(teacher);
  setStatus(`Comparing: running the teacher (${teacher.name}) first…`);
}

/** One of Compare's two runs finished: run the other, or measure the agreement of both masks. */
export async function onCompareResult(result) {
  state.busy = false; // runModel() below starts the next run only when idle
  state.runId = null;
  const c = state.compare;
  c.results[c.step] = result;
  if (c.step === 'teacher') {
    c.step = 'student';
    runModel(c.student);
    setStatus(`Comparing: teacher done in ${(result.timings_ms.total / 1000).toFixed(1)} s; running ${c.student.name}…`);
    return;
  }
  // The student's result is also the page's current result (Save mask saves it).
  keepResult(result, c.student.id);
  c.step = 'agreement';
  state.busy = true;
  state.runId = state.nextId++;
  setStatus('Comparing: measuring the agreement of the two masks…');
  const a = c.results.teacher.mask.slice(0);
  const b = result.mask.slice(0);
  const reference = state.reference ? state.reference.bytes.slice(0) : null;
  const labels = state.modelInfo?.labels ?? null;
  // The engine judges the compressed model at the margin, and works out the speed-up.
  const options = { ms: [c.results.teacher.timings_ms.total, result.timings_ms.total], margin: c.compress ? Number(el.margin.value) : null };
  engine.post({ type: 'agreement', id: state.runId, a, b, reference, labels, options }, reference ? [a, b, reference] : [a, b]);
  updateControls();
}

/** The agreement of the two masks: the table, the sentence, the verdict (Compress) and the masks. */
export async function onAgreement(msg) {
  const c = state.compare;
  state.busy = false;
  state.runId = null;
  state.compare = null;
  const row = (model, r) => {
    const tr = document.createElement('tr');
    tr.dataset.model = model.id;
    const gflop = Number.isFinite(model.flops_per_patch) ? fmt(model.flops_per_patch / 1e9) : '–';
    for (const text of [model.name, Number.isFinite(model.params) ? fmt(model.params) : '–', gflop, fmt(r.timings_ms.total), fmt(r.foreground_mm3)]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  };
  el.compareTable.tBodies[0].replaceChildren(row(c.teacher, c.results.teacher), row(c.student, c.results.student));
  const speedup = msg.speedup ?? NaN;
  const hd = Number.isFinite(msg.hd95_mm) ? `, HD95 ${msg.hd95_mm.toFixed(1)} mm` : '';
  el.compareAgreement.dataset.dice = String(msg.dice);
  const names = c.compress ? ['the original', 'the compressed model'] : c.adapt ? ['the base (adapter off)', 'the adapted model (adapter on)'] : ['the teacher', 'the student'];
  const vsReference = referenceSentence(msg.reference, names);
  el.compareAgreement.dataset.referenceDice = msg.reference ? JSON.stringify(msg.reference.worst) : '';
  el.compareAgreement.textContent =
    `Agreement of the student with the teacher: Dice ${msg.dice.toFixed(4)}${hd}. ` +
    `The student took ${fmt(c.results.student.timings_ms.total)} ms, ${speedup.toFixed(1)}× faster than the teacher.${vsReference}`;
  const roles = c.compress ? ['Original', 'Compressed'] : c.adapt ? ['Adapter off', 'Adapter on'] : ['Teacher', 'Student'];
  el.compareLeftCaption.textContent = `${roles[0]}: ${c.teacher.name}`;
  el.compareRightCaption.textContent = `${roles[1]}: ${c.student.name}`;
  if (c.compress) {
    el.compareAgreement.textContent =
      `Agreement of the compressed model with the original: Dice ${msg.dice.toFixed(4)}${hd}. ` +
      `It took ${fmt(c.results.student.timings_ms.total)} ms against ${fmt(c.results.teacher.timings_ms.total)} ms ` +
      `(${speedup.toFixed(2)}× the speed) on ${backendName(c.results.student.backend)}.${vsReference}`;
    renderVerdict(msg.verdict, msg.per_label);
  }
  if (c.adapt) {
    el.compareAgreement.textContent =
      `Agreement of the adapted model with its base: Dice ${msg.dice.toFixed(4)}${hd}. ` +
      `Adapter on: ${fmt(c.results.student.timings_ms.total)} ms; adapter off: ${fmt(c.results.teacher.timings_ms.total)} ms.${vsReference}`;
  }
  el.comparePanel.hidden = false;
  setStatus(
    c.compress
      ? `Ran ${c.teacher.name} and its compressed version: Dice ${msg.dice.toFixed(3)}, ${speedup.toFixed(2)}× the speed.`
      : c.adapt
      ? `Ran ${c.teacher.name} with the adapter off and on: Dice ${msg.dice.toFixed(3)} between the two masks.`
      : `Compared ${c.student.name} with ${c.teacher.name}: Dice ${msg.dice.toFixed(3)}, ${speedup.toFixed(1)}× faster.`,
  );
  setProgress(1);
  updateControls();
  await viewers.showMask(c.results.student.mask, state.modelInfo?.labels, { clearInfo: false });
  try {
    await viewers.showComparePair(state.volume, [c.results.teacher.mask, c.results.student.mask], state.modelInfo?.labels);
  } catch (e) {
    el.compareAgreement.textContent += ` (The masks cannot be shown: ${e.message || e}.)`;
  }
}

/** " Against the reference (name): Dice a (first) and b (second)." or "" without a reference. */
function referenceSentence(reference, names) {
  if (!reference || !state.reference) return '';
  const text = (list) => list.map((l) => `${l.name} ${l.dice.toFixed(4)}`).join(', ');
  return ` Against the reference mask (${state.reference.name}): ${names[0]} ${text(reference.a)}, ${names[1]} ${text(reference.b)}.`;
}

export function wireCompare() {
  el.compare.addEventListener('click', compare);
}
