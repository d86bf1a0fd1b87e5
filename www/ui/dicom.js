// Volume panel, DICOM: a series given as files, a folder or a ZIP. The files are read here and
// handed to the engine, which groups them into series (worker message 'inspect_dicom', Rust
// `inspect_dicom`). With several series the user picks one from their list (description,
// modality, slices and size; never a patient identifier) before anything loads; the engine then
// hands the series back as a volume, which loads as a NIfTI does (volume.js).

import { el, state } from './state.js';
import { setStatus, setIdleStatus, showError, setProgress } from './progress.js';

/** All the files of one series are read into the tab at once: past this, say so instead. */
const MAX_TOTAL_BYTES = 2 ** 31;

/** Whether a picked file is DICOM (the "DICM" magic after the preamble) or a ZIP. */
export async function isDicomOrZip(file) {
  const head = new Uint8Array(await file.slice(0, 132).arrayBuffer());
  const zip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 3 && head[3] === 4;
  const dicm = head.length === 132 && String.fromCharCode(...head.subarray(128, 132)) === 'DICM';
  return zip || dicm;
}

/** Read `files` (File objects) and ask the engine which series they hold. */
export async function loadDicom(files, name) {
  const total = files.reduce((sum, f) => sum + f.size, 0);
  if (total > MAX_TOTAL_BYTES) {
    showError(`Could not read ${name}: ${(total / 2 ** 30).toFixed(1)} GiB is too large for this tab.`);
    setIdleStatus();
    return;
  }
  setStatus(`Reading ${files.length} file${files.length === 1 ? '' : 's'}…`);
  setProgress(null);
  try {
    const buffers = await Promise.all(files.map((f) => f.arrayBuffer()));
    state.dicom = { name, names: files.map((f) => f.webkitRelativePath || f.name), buffers, list: null, index: null };
  } catch (e) {
    showError(`Could not read ${name}: ${e.message || e}`);
    setIdleStatus();
    return;
  }
  ask(null);
}

/** Ask the engine for series `index` (from 0), or, with null, for the list (and the volume when
 * there is only one series), through volume.js's request (set by wireDicom). */
function ask(index) {
  const copies = state.dicom.buffers.map((b) => b.slice(0));
  request(state.dicom.name, null, { type: 'inspect_dicom', names: state.dicom.names, files: copies, series: index }, copies);
}

/** The engine's list of series: shown as a picker, the chosen one selected. */
export function showSeries(list, index) {
  state.dicom.list = list;
  state.dicom.index = index;
  el.seriesPickRow.hidden = false;
  const none = new Option('Choose a series…', '');
  none.disabled = true;
  el.seriesPick.replaceChildren(...(index == null ? [none] : []), ...list.map((s, i) => new Option(s.line, String(i))));
  el.seriesPick.value = index == null ? '' : String(index);
  if (index == null) setStatus(`${list.length} DICOM series: choose one.`);
}

/** A NIfTI file replaced the DICOM files: their picker goes. */
export function forgetDicom() {
  state.dicom = null;
  el.seriesPickRow.hidden = true;
}

/** The files of a drop: every file of the folders dropped too (the browser's entry API). */
export async function droppedFiles(dataTransfer) {
  const entries = [...(dataTransfer.items || [])].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  if (!entries.some((e) => e.isDirectory)) return { files: [...dataTransfer.files], name: null };
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
      return;
    }
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const e of batch) await walk(e);
    }
  };
  for (const e of entries) await walk(e);
  return { files, name: entries.length === 1 ? entries[0].name : null };
}

/** volume.js's way of asking the worker to inspect something (see wireDicom). */
let request = null;

export function wireDicom(inspectRequest) {
  request = inspectRequest;
  el.seriesPick.addEventListener('change', () => {
    if (!state.dicom || state.busy || state.inspecting || el.seriesPick.value === '') return;
    ask(Number(el.seriesPick.value));
  });
}
