// The page's UI state and its DOM lookup table, shared by every panel module.
//
// All of the page's state lives in the one object `state`, so it can be inspected (and, later,
// saved or replayed) in one piece. It holds data only: plain objects, strings, numbers and
// ArrayBuffers (structured-clone serialisable). The live handles that cannot be serialised are
// owned by the modules that manage them: the Web Worker by ui/engine.js (ui/rpc.js), the NiiVue
// viewers by ui/viewers.js.

export const FRONTEND_VERSION = '0.1.0';

const $ = (id) => document.getElementById(id);

// Every element a panel reads or writes, looked up once (module scripts run after the document
// is parsed, so all of them exist).
export const el = {
  input: $('volume-input'),
  dropzone: $('dropzone'),
  sample: $('sample-button'),
  volumeInfo: $('volume-info'),
  volumePick: $('volume-pick'),
  folderInput: $('folder-input'),
  seriesPick: $('series-pick'),
  seriesPickRow: $('series-pick-row'),
  volumePickRow: $('volume-pick-row'),
  model: $('model-select'),
  weightsInput: $('weights-input'),
  packageInput: $('package-input'),
  modelInfo: $('model-info'),
  backend: $('backend-select'),
  tta: $('tta-check'),
  mirrorCheck: $('mirror-check'),
  ensemble: $('ensemble-check'),
  backendInfo: $('backend-info'),
  run: $('run-button'),
  compare: $('compare-button'),
  cancel: $('cancel-button'),
  modelCard: $('model-card'),
  comparePanel: $('compare-panel'),
  compareTable: $('compare-table'),
  compareAgreement: $('compare-agreement'),
  compareLeft: $('compare-left'),
  compareRight: $('compare-right'),
  compareRightCaption: $('compare-right-caption'),
  compareLeftCaption: $('compare-left-caption'),
  progress: $('progress'),
  status: $('status'),
  error: $('error'),
  canvas: $('viewer-canvas'),
  opacity: $('opacity'),
  opacityValue: $('opacity-value'),
  viewerInfo: $('viewer-info'),
  save: $('save-mask'),
  saveSeg: $('save-seg'),
  copyDiag: $('copy-diagnostics'),
  diagDetails: $('diagnostics-details'),
  diagOutput: $('diagnostics-output'),
  timings: $('timings'),
  labelVolumes: $('label-volumes'),
  device: $('device'),
  workers: $('workers-input'),
  workersNote: $('workers-note'),
  rankRule: $('rank-rule'),
  rankParam: $('rank-param'),
  rankParamLabel: $('rank-param-label'),
  rankParamValue: $('rank-param-value'),
  margin: $('margin'),
  compressButton: $('compress-button'),
  compressRun: $('compress-run-button'),
  compressDownload: $('compress-download'),
  compressSummary: $('compress-summary'),
  compressVerdict: $('compress-verdict'),
  qualityWarning: $('quality-warning'),
  qualityText: $('quality-text'),
  qualityRunHdbet: $('quality-run-hdbet'),
  qualitySignal: $('quality-signal'),
  compressLayers: $('compress-layers'),
  compressLayersDetails: $('compress-layers-details'),
  referenceInput: $('reference-input'),
  referenceClear: $('reference-clear'),
  referenceInfo: $('reference-info'),
  paretoFactors: $('pareto-factors'),
  paretoButton: $('pareto-button'),
  paretoSummary: $('pareto-summary'),
  paretoPlot: $('pareto-plot'),
  paretoTable: $('pareto-table'),
  appVersion: $('app-version'),
  engineVersion: $('engine-version'),
};

export const state = {
  engineVersion: null,
  // The engine build the worker loaded: 'relaxed-simd', or 'simd128' where the browser has no
  // relaxed SIMD (www/worker.js).
  cpuLanes: null,
  engineReady: false,
  models: [], // {id, name, path} from models/index.json, or {id, name, uploaded: {json, weights}}
  // { name, bytes: ArrayBuffer, info, series }: bytes is one 3D volume; series, for a 4D file,
  // { bytes: the whole file, volumes, index } (index: the volume picked, from 0).
  volume: null,
  busy: false, // a run is in flight
  inspecting: false,
  nextId: 1,
  runId: null,
  runModel: null, // the model of the current run (a lost GPU device runs it again on the CPU)
  inspectId: null,
  // What a request in flight is about, for its reply or its error message.
  pendingName: null, // the file or model being read, imported or compressed
  pendingBytes: null, // the volume being inspected
  // DICOM files given for the volume: { name, names, buffers, list, index } (list: the series the
  // engine found; index: the one loaded, from 0, or null while the user has not picked one).
  dicom: null,
  selection: null, // last select_backend result
  selectionPreference: null,
  modelInfo: null,
  result: null, // { maskBytes: ArrayBuffer, timings_ms, label_volumes_mm3, backend, modelId }
  device: null,
  // Workers that run a CPU segmentation's passes: the machine's cores unless the user says otherwise.
  workers: navigator.hardwareConcurrency || 1,
  lastWorkers: null, // {workers, memory_mb: [engine, ...helpers]} of the last run
  runStartedAt: 0,
  // A Compare in flight: { teacher, student, step: 'teacher' | 'student' | 'agreement', results }.
  compare: null,
  compressSource: null, // the model a compression in flight started from
  compressStartedAt: 0,
  compressed: null, // { model, source, report, lastPerLabel, verdict }: the last compression in this tab
  reference: null, // { name, bytes }: an independent mask of the loaded volume
  referenceInspectId: null,
  pendingReference: null,
  pareto: null, // { source, factors, sweep, done, startedAt }: the Pareto view (sweep: as the engine judged it)
  // The Adapt panel's run: { base, steps, history, validations, paused, cancelled, model, adapter }.
  adapt: null,
};

/** The model chosen in the model selector, or null. */
export function selectedModel() {
  return state.models.find((m) => m.id === el.model.value) || null;
}

/** The model a student was distilled from, when it is in the list. */
export function teacherOf(model) {
  if (!model || !model.teacher) return null;
  return state.models.find((m) => m.id === model.teacher) || null;
}
