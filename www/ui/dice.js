// Reading the engine's per-label Dice lists ([{name, dice}]): the worst label and the safety-margin
// test. Used by Compare, the Compress verdict and the Pareto view, so all three judge alike.
// (Domain logic that belongs in the engine: see the report that came with this split.)

/** The smallest Dice over the labels of a per-label list. */
export function worstDice(perLabel) {
  return perLabel.reduce((w, l) => Math.min(w, l.dice), 1);
}

/** The entry of a per-label list with the smallest Dice (the first on ties). */
export function worstLabel(perLabel) {
  return perLabel.reduce((w, l) => (l.dice < w.dice ? l : w), perLabel[0]);
}

/** True when every label's Dice drop (1 − Dice against the original) is within the margin. */
export function withinMargin(perLabel, margin) {
  return Number.isFinite(margin) && perLabel.every((l) => 1 - l.dice <= margin);
}
