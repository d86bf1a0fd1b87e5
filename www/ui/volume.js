// Volume panel: the volume (file picker, drop anywhere on the page, the sample), checked by the
// worker before it becomes the loaded volume; and the optional reference mask, an independent mask
// of that volume (e.g. a manual segmentation): Compare, "Run original and compressed" and the
// Pareto view then also report each model's Dice against it.

import { el, state } from './state.js';
import { engine } from './engine.js';
import { fmt, unprefixed } from './format.js';
import { readPickedFile } from './files.js';
import { setStatus, setIdleStatus, showError, clearError, setProgress } from './progress.js';
import { updateControls } from './controls.js';
import * as viewers from './viewers.js';
import { clearResults } from './run.js';
import { clearPareto } from './pareto.js';
import { isDicomOrZip, loadDicom, showSeries, forgetDicom, droppedFiles, wireDicom } from './dicom.js';

/** Files picked or dropped: a DICOM series (several files, a DICOM file or a ZIP), or a NIfTI
 * file. `name` names a folder the files came from. */
async function loadFiles(files, name = null) {
  if (!files.length) return;
  clearError();
  // Said at once, before the first await: until the files are told apart the page must not look
  // idle with the previous status (a user, like the e2e tests, waits for "Checking" to end).
  setStatus(`Checking ${name || files[0].name}…`);
  if (files.length > 1 || (await isDicomOrZip(files[0]))) {
    const folder = name || (files[0].webkitRelativePath || '').split('/')[0];
    return loadDicom(files, folder || (files.length === 1 ? files[0].name : `${files.length} DICOM files`));
  }
  return loadFile(files[0]);
}

async function loadFile(file) {
  if (!file) return;
  clearError();
  // Say so at once: reading a large file takes a moment, and until then the page must not look
  // idle with the previous status (the e2e tests, like a user, wait for "Checking" to end).
  setStatus(`Checking ${file.name}…`);
  const tooLarge = `${(file.size / 2 ** 30).toFixed(1)} GiB is too large for this tab.`;
  const bytes = await readPickedFile(file, 'read', 2 ** 31, tooLarge);
  if (bytes) inspect(file.name, bytes);
}

async function loadSample() {
  clearError();
  setStatus('Loading the sample volume…');
  setProgress(null);
  el.sample.disabled = true;
  try {
    const res = await fetch('sample/ch2.nii.gz', { credentials: 'same-origin' });
    if (!res.ok) throw new Error(`HTTP ${res.status} for sample/ch2.nii.gz (run the setup script to fetch it)`);
    inspect('ch2.nii.gz', await res.arrayBuffer());
  } catch (e) {
    showError(`Could not load the sample: ${e.message || e}`);
    setIdleStatus();
    setProgress(0);
    updateControls();
  }
}

/** Ask the worker to read a volume (volume `index` of a 4D file); it becomes the loaded volume
 * only if it can. */
function inspect(name, bytes, index = 0) {
  const copy = bytes.slice(0);
  request(name, bytes, { type: 'inspect', bytes: copy, volume: index }, [copy]);
}

/** Send the worker `message` (an inspection; `transfer`: its buffers) about `name`, whose answer
 * becomes the loaded volume (onInspected) or an error that keeps the one before. `bytes`: the
 * file the answer belongs to (a 4D file's, for its volume picker), or null. */
function request(name, bytes, message, transfer) {
  engine.ensureStarted();
  state.inspecting = true;
  state.inspectId = state.nextId++;
  state.pendingName = name;
  state.pendingBytes = bytes;
  setStatus(`Checking ${name}…`);
  setProgress(null);
  updateControls();
  engine.post({ ...message, id: state.inspectId }, transfer);
}

/** The new volume is loaded; what belonged to the previous one (results, reference, Compare,
 * Pareto) goes. Of a 4D file, the page keeps the whole file and works on the picked volume, which
 * the engine handed back as a 3D file of its own (`volume_nii`). */
export async function onInspected(info) {
  state.inspecting = false;
  state.inspectId = null;
  const name = state.pendingName;
  const file = state.pendingBytes;
  const { volume_nii: one, dicom_series: dicomList, series_index: seriesIndex, ...facts } = info;
  state.pendingName = null;
  state.pendingBytes = null;
  if (!dicomList) forgetDicom(); // a NIfTI file replaced the DICOM files
  if (dicomList) {
    showSeries(dicomList, seriesIndex ?? null);
    if (seriesIndex == null) {
      // Several series and none picked yet: nothing is loaded until the user says which.
      setProgress(0);
      updateControls();
      return;
    }
  }
  const series = !dicomList && facts.volumes > 1 ? { bytes: file, volumes: facts.volumes, index: facts.volume } : null;
  const bytes = one ? one.buffer.slice(one.byteOffset, one.byteOffset + one.byteLength) : file;
  state.volume = { name, bytes, info: facts, series };
  state.result = null;
  if (state.reference) {
    state.reference = null;
    el.referenceInfo.textContent = 'The reference mask was removed: it belonged to the previous volume.';
  }
  clearPareto();
  clearResults();
  el.comparePanel.hidden = true; // a comparison belongs to the volume it was made on
  el.volumeInfo.textContent = describeVolume(name, facts);
  showVolumePicker(series);
  setStatus('Ready. Choose a model and backend, then Run.');
  setProgress(0);
  updateControls();
  await viewers.showVolume(bytes, name);
}

/** The picker of a 4D file's volumes, numbered from 1 as a reader counts them. */
function showVolumePicker(series) {
  el.volumePickRow.hidden = !series;
  if (!series) return;
  el.volumePick.replaceChildren(
    ...Array.from({ length: series.volumes }, (_, i) => new Option(`${i + 1} of ${series.volumes}`, String(i))),
  );
  el.volumePick.value = String(series.index);
}

/** The worker could not read the volume: the one loaded before (if any) stays. */
export function onInspectError(msg) {
  state.inspecting = false;
  state.inspectId = null;
  const pending = state.pendingName || 'the file';
  const keep = state.volume ? ` Still loaded: ${state.volume.name}.` : '';
  if (state.volume?.series) el.volumePick.value = String(state.volume.series.index);
  // DICOM files that gave no series at all are dropped; a failed pick keeps the list.
  if (state.dicom && !state.dicom.list) forgetDicom();
  else if (state.dicom) el.seriesPick.value = state.dicom.index == null ? '' : String(state.dicom.index);
  showError(`Could not read ${pending}: ${unprefixed(msg.message, pending)}${keep}`);
  setIdleStatus();
  setProgress(0);
}

function describeVolume(name, info) {
  const dims = (info.dims || []).join(' × ');
  const sp = (info.spacing || []).map((v) => Number(v).toFixed(2)).join(' × ');
  const parts = [`${name}: ${dims} voxels`];
  if (sp) parts.push(`${sp} mm`);
  if (info.datatype) parts.push(info.datatype);
  if (info.orientation) parts.push(info.orientation);
  if (Number.isFinite(info.min) && Number.isFinite(info.max)) parts.push(`range ${fmt(info.min)}…${fmt(info.max)}`);
  if (info.volumes > 1) {
    const unit = info.time_unit === 'unknown' ? '' : ` ${info.time_unit}`;
    const step = Number.isFinite(info.time_step) ? `, ${fmt(info.time_step)}${unit} apart` : '';
    parts.push(`volume ${info.volume + 1} of ${info.volumes}${step}`);
  }
  if (info.nan_voxels > 0) parts.push(`${info.nan_voxels} NaN voxels (segmented as background, labelled 0)`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------------------------
// Reference mask

/** A reference mask: checked by the worker, then accepted only on the volume's grid. */
async function loadReference(file) {
  if (!file || !state.volume) return;
  clearError();
  const bytes = await readPickedFile(file, 'read', 2 ** 31, `${(file.size / 2 ** 30).toFixed(1)} GiB is too large for a mask.`);
  if (!bytes) return;
  state.referenceInspectId = state.nextId++;
  state.pendingReference = { name: file.name, bytes };
  setStatus(`Checking ${file.name}…`);
  const copy = bytes.slice(0);
  engine.post({ type: 'inspect', id: state.referenceInspectId, bytes: copy }, [copy]);
}

export function onReferenceInspected(info) {
  const pending = state.pendingReference;
  state.referenceInspectId = null;
  state.pendingReference = null;
  if (!pending || !state.volume) return;
  const want = state.volume.info.dims || [];
  const got = info.dims || [];
  if (want.join('×') !== got.join('×')) {
    showError(
      `${pending.name} is not a mask of ${state.volume.name}: its grid is ${got.join(' × ')}, the volume's ${want.join(' × ')}.` +
        (state.reference ? ` Still used: ${state.reference.name}.` : ''),
    );
  } else {
    state.reference = pending;
    el.referenceInfo.textContent = `Reference mask: ${pending.name} (${got.join(' × ')} voxels). Models are also compared with it.`;
  }
  setIdleStatus();
  updateControls();
}

/** The worker could not read the reference mask: the one used before (if any) stays. */
export function onReferenceError(msg) {
  state.referenceInspectId = null;
  state.pendingReference = null;
  showError(`Could not read the reference mask: ${msg.message}${state.reference ? ` Still used: ${state.reference.name}.` : ''}`);
  setIdleStatus();
  updateControls();
}

export function wireVolume() {
  el.input.addEventListener('change', () => {
    loadFiles([...(el.input.files || [])]);
    el.input.value = ''; // picking the same file again fires change again
  });
  el.folderInput.addEventListener('change', () => {
    loadFiles([...(el.folderInput.files || [])]);
    el.folderInput.value = '';
  });
  wireDicom(request);
  el.sample.addEventListener('click', loadSample);
  el.volumePick.addEventListener('change', () => {
    const v = state.volume;
    if (!v || !v.series || state.busy || state.inspecting) return;
    clearError();
    inspect(v.name, v.series.bytes, Number(el.volumePick.value));
  });
  el.referenceInput.addEventListener('change', () => {
    loadReference(el.referenceInput.files && el.referenceInput.files[0]);
    el.referenceInput.value = '';
  });
  el.referenceClear.addEventListener('click', () => {
    state.reference = null;
    el.referenceInfo.textContent = 'No reference mask: models are compared with each other only.';
    updateControls();
  });

  // Drag and drop: anywhere on the page, highlighted on the drop zone. Never let the browser
  // navigate to a dropped file.
  const hasFiles = (ev) => ev.dataTransfer && [...(ev.dataTransfer.types || [])].includes('Files');
  window.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = state.busy || state.inspecting ? 'none' : 'copy';
    el.dropzone.classList.add('dragover');
  });
  window.addEventListener('dragleave', (ev) => {
    if (ev.target === document.documentElement || ev.clientX <= 0 || ev.clientY <= 0) el.dropzone.classList.remove('dragover');
  });
  window.addEventListener('drop', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    el.dropzone.classList.remove('dragover');
    if (state.busy || state.inspecting) return;
    droppedFiles(ev.dataTransfer).then(({ files, name }) => loadFiles(files, name));
  });
  el.dropzone.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      el.input.click();
    }
  });
}
