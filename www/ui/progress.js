// The run panel's feedback: status line, error box and progress bar. Every panel reports through
// these, so there is one place that says what the page is doing.

import { el, state } from './state.js';

export function setStatus(text) {
  el.status.textContent = text;
}

/** The status line when nothing is running: what the user can do next. */
export function setIdleStatus() {
  setStatus(state.volume ? 'Ready.' : 'Load a volume or try the sample.');
}

export function showError(message) {
  el.error.textContent = message;
  el.error.hidden = false;
}

export function clearError() {
  el.error.textContent = '';
  el.error.hidden = true;
}

/** A fraction in [0, 1]; null, undefined or NaN make the bar indeterminate. */
export function setProgress(fraction) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) {
    el.progress.removeAttribute('value'); // indeterminate
  } else {
    el.progress.value = Math.max(0, Math.min(1, fraction));
  }
}

/** The engine's {type:'progress', stage, fraction} for the request in flight. */
export function onProgress(msg) {
  setStatus(msg.stage + (Number.isFinite(msg.fraction) && msg.fraction !== null ? ` ${Math.round(msg.fraction * 100)}%` : ''));
  setProgress(msg.fraction);
}
