// The teach room's exports: files the user downloads; nothing else leaves memory. A student as a
// bedside package (judged by the main page's pipeline against its teacher on export), the curves
// as CSV, the setup as a recipe that `bedside distill` accepts.

import { $, state, call, setStatus, showError, clearError, updateControls, lastStep } from './teach_room.js';
import { saveBlob } from './files.js';

const download = (name, data, type) => saveBlob(name, new Blob([data], { type }));

export async function exportStudent(scratch) {
  clearError();
  state.busy = true;
  updateControls();
  const who = scratch ? 'twin' : 'KD student';
  try {
    setStatus(`Exporting the ${who}: running it and the teacher through the main page's pipeline…`, null);
    const out = await call('teach-export', { scratch, name: state.volume.name });
    download('model.json', out.model_json, 'application/json');
    download('weights.safetensors', out.weights, 'application/octet-stream');
    const step = lastStep();
    $('teach-export-dice').dataset.dice = String(out.dice);
    $('teach-export-dice').textContent = `Exported the ${who} at step ${step}: Dice ${out.dice.toFixed(4)} against the teacher on the whole volume, ` +
      'as the main page will show when it compares the package with its teacher.';
    setStatus('Exported.', 0);
  } catch (e) {
    showError(e.message);
  }
  state.busy = false;
  updateControls();
}

export async function exportText(kind) {
  if (kind === 'csv') download('teach-curves.csv', await call('teach-csv'), 'text/csv');
  else download('teach-recipe.json', await call('teach-recipe', { path: state.volume.name === 'ch2.nii.gz' ? '${BEDSIDE_DATA}/colin27/ch2.nii.gz' : state.volume.name }), 'application/json');
}
