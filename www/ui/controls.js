// Which controls are usable, derived from the state alone. Every panel calls updateControls()
// after it changes the state, so the buttons never disagree with what is in flight.

import { el, state, selectedModel, teacherOf } from './state.js';
import { updateRecoverControls } from './recover.js';
import { updateAdaptControls } from './adapt.js';

export function updateControls() {
  const idle = !state.busy && !state.inspecting;
  el.run.disabled = !(idle && state.engineReady && state.volume && selectedModel());
  el.compare.disabled = !(idle && state.engineReady && state.volume && teacherOf(selectedModel()));
  el.cancel.disabled = !state.busy;
  el.sample.disabled = !idle;
  el.input.disabled = !idle;
  el.volumePick.disabled = !idle;
  el.folderInput.disabled = !idle;
  el.seriesPick.disabled = !idle;
  el.model.disabled = state.busy || state.models.length === 0;
  el.weightsInput.disabled = !idle;
  el.packageInput.disabled = !idle;
  el.backend.disabled = state.busy;
  el.tta.disabled = state.busy;
  el.mirrorCheck.disabled = state.busy;
  const members = selectedModel()?.ensemble ?? 0;
  el.ensemble.disabled = state.busy || !(members > 0);
  if (!(members > 0)) el.ensemble.checked = false;
  el.save.disabled = !(state.result && state.result.maskBytes);
  // A SEG points back to the series the mask was made on: DICOM input only.
  el.saveSeg.disabled = !(idle && state.result && state.result.maskBytes && state.dicom && state.dicom.index != null);
  el.compressButton.disabled = !(idle && state.engineReady && selectedModel() && !selectedModel().compressedFrom);
  el.compressRun.disabled = !(idle && state.engineReady && state.volume && state.compressed);
  el.compressDownload.disabled = !state.compressed;
  el.paretoButton.disabled = !(idle && state.engineReady && state.volume && selectedModel() && !selectedModel().compressedFrom);
  el.paretoFactors.disabled = state.busy;
  // The margin is an input of a running sweep or comparison; it re-judges once they are done.
  el.margin.disabled = state.busy;
  el.referenceInput.disabled = !(idle && state.volume);
  el.referenceClear.hidden = !state.reference;
  el.referenceClear.disabled = state.busy;
  el.rankRule.disabled = state.busy;
  el.rankParam.disabled = state.busy || el.rankRule.value === 'evbmf';
  updateRecoverControls(idle);
  updateAdaptControls(idle);
}
