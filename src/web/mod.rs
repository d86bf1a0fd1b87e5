//! The browser API: a thin wasm-bindgen layer over the library, called from
//! the Web Worker (`www/worker.js`). It keeps the chosen device and the loaded
//! model between calls; each call returns plain JS objects, and every failure
//! becomes a JS `Error` with a human message (never a panic).

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::inference::pipeline::{segment_bytes_with, SegmentOptions, Windowing};
use crate::inference::sliding_window::LocalRunner;
use crate::inference::backend::OpenedDevice;
use crate::inference::{backend, Backend};
use crate::model::Model;
use crate::volume;

mod adapt;
mod judge;
mod pool;
mod recover;
mod teach;

#[derive(Default)]
struct State {
    device: Option<OpenedDevice>,
    model: Option<Rc<Model>>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
    /// Test hook (`crash_next_progress`): the run's next progress report panics.
    static CRASH_NEXT_PROGRESS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Test hook for the page's crash path: the running segmentation's next
/// progress report panics, as a defect deep in the engine would. The wasm
/// traps mid-run with the engine's own stack under it, which is what the
/// page must survive (report it, restart the worker, run again).
#[wasm_bindgen]
pub fn crash_next_progress() {
    CRASH_NEXT_PROGRESS.with(|c| c.set(true));
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

pub(crate) fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// bedside's version, for diagnostics.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Header facts and intensity statistics of volume `index` (default 0) of
/// a NIfTI file's bytes. For a 4D series, `volumes` says how many it holds,
/// and `volume_nii` is the chosen volume as a 3D NIfTI file of its own
/// ([`volume::extract_volume`]): the page shows and segments that one.
#[wasm_bindgen]
pub fn inspect_volume(bytes: &[u8], index: Option<usize>) -> Result<JsValue, JsError> {
    let index = index.unwrap_or(0);
    let v = volume::read_nifti_volume(bytes, index).map_err(|e| JsError::new(&e.to_string()))?;
    let s = v.stats();
    #[derive(Serialize)]
    struct Info {
        dims: [usize; 3],
        shape: Vec<i64>,
        /// As a JS number (a header may claim more than 2^53).
        volumes: f64,
        volume: usize,
        time_step: Option<f64>,
        time_unit: &'static str,
        spacing: [f64; 3],
        orientation: String,
        datatype: &'static str,
        min: Option<f64>,
        max: Option<f64>,
        mean: Option<f64>,
        nan_voxels: usize,
    }
    let h = &v.header;
    let out = to_js(&Info {
        dims: v.dims,
        shape: h.shape(),
        volumes: h.volume_count() as f64,
        volume: index,
        time_step: h.time_step(),
        time_unit: h.time_unit(),
        spacing: v.spacing,
        orientation: v.orientation(),
        datatype: v.datatype_name(),
        min: s.min,
        max: s.max,
        mean: s.mean,
        nan_voxels: s.nan_voxels,
    })?;
    if h.volume_count() > 1 {
        let one = volume::extract_volume(bytes, index).map_err(|e| JsError::new(&e.to_string()))?;
        set_field(&out, "volume_nii", &js_sys::Uint8Array::from(one.as_slice()))?;
    }
    Ok(out)
}

/// The DICOM series among dropped files (each a DICOM file or a ZIP of
/// them), and series `series` (from 0) as a volume when it is given or is
/// the only one: its facts as [`inspect_volume`] gives them, and
/// `volume_nii`, the volume as a float32 NIfTI that the viewer and every
/// room take. `dicom_series` lists every series (description, modality,
/// slices, size: never a patient identifier); with several and none chosen
/// there is no volume yet, and the page asks which.
#[wasm_bindgen]
pub fn inspect_dicom(names: Vec<String>, files: js_sys::Array, series: Option<usize>) -> Result<JsValue, JsError> {
    use crate::volume::dicom;
    let err = |e: &dyn std::fmt::Display| JsError::new(&e.to_string());
    let all = dicom_files(names, files)?;
    let list = dicom::list_series(&all).map_err(|e| err(&e))?;
    /// A series as the page lists it: its summary and the line to show.
    #[derive(Serialize)]
    struct Listed<'a> {
        #[serde(flatten)]
        summary: &'a dicom::SeriesSummary,
        line: String,
    }
    let listed: Vec<Listed> = list.iter().map(|summary| Listed { summary, line: summary.line() }).collect();
    // With several series and none picked there is no volume yet: the list alone.
    if series.is_none() && list.len() > 1 {
        let out = js_sys::Object::new();
        set_field(&out, "dicom_series", &to_js(&listed)?)?;
        return Ok(out.into());
    }
    let index = series.unwrap_or(0);
    let chosen = dicom::choose(&list, Some(&(index + 1).to_string()), all.len()).map_err(|e| err(&e))?;
    let volume = dicom::read_series(&all, chosen).map_err(|e| err(&e))?;
    drop(all);
    let nii = volume::write_float32_nifti(&volume).map_err(|e| err(&e))?;
    let out = inspect_volume(&nii, None)?;
    set_field(&out, "dicom_series", &to_js(&listed)?)?;
    set_field(&out, "series_index", &JsValue::from_f64(index as f64))?;
    set_field(&out, "volume_nii", &js_sys::Uint8Array::from(nii.as_slice()))?;
    Ok(out)
}

/// The DICOM files the page was given (ZIPs opened), named.
fn dicom_files(names: Vec<String>, files: js_sys::Array) -> Result<Vec<(String, Vec<u8>)>, JsError> {
    let mut all = Vec::new();
    for (name, file) in names.into_iter().zip(files.iter()) {
        let bytes = js_sys::Uint8Array::new(&file).to_vec();
        if crate::volume::archive::is_zip(&bytes) {
            all.extend(crate::volume::archive::unzip(&bytes).map_err(|e| JsError::new(&format!("{name}: {e}")))?);
        } else {
            all.push((name, bytes));
        }
    }
    Ok(all)
}

/// "Save as DICOM SEG": the mask of the last run (gzip NIfTI bytes, on the
/// series' grid) as a DICOM Segmentation object referencing series `series`
/// (from 0) of the DICOM files, with the loaded model's labels and identity.
/// `model_id` is the model that made the mask: if another is loaded since,
/// the SEG would name the wrong algorithm, so it is refused.
#[wasm_bindgen]
pub fn dicom_seg(names: Vec<String>, files: js_sys::Array, series: usize, mask_nii_gz: Vec<u8>, model_id: String) -> Result<js_sys::Uint8Array, JsError> {
    use crate::volume::{dicom, dicom_seg};
    let err = |e: &dyn std::fmt::Display| JsError::new(&e.to_string());
    let model = STATE.with(|s| s.borrow().model.clone()).filter(|m| m.manifest.id == model_id).ok_or_else(|| {
        JsError::new(&format!("the model that made this mask ({model_id}) is no longer the loaded one: run it again to save its DICOM SEG"))
    })?;
    let all = dicom_files(names, files)?;
    let list = dicom::list_series(&all).map_err(|e| err(&e))?;
    let chosen = dicom::choose(&list, Some(&(series + 1).to_string()), all.len()).map_err(|e| err(&e))?;
    let reference = dicom::reference_series(&all, chosen).map_err(|e| err(&e))?;
    drop(all);
    let mask = volume::read_nifti(&mask_nii_gz).map_err(|e| err(&e))?;
    let labels: Vec<u8> = mask.data.iter().map(|&v| v as u8).collect();
    let algorithm = dicom_seg::Algorithm { name: model.manifest.id.clone(), version: model.weights_digest().map_err(|e| err(&e))? };
    // The browser's clock (chrono's own needs its wasm-bindgen feature).
    let now = chrono::DateTime::from_timestamp_millis(js_sys::Date::now() as i64).unwrap_or_default();
    let bytes = dicom_seg::write_seg(&reference, &labels, mask.dims, &mask.affine, &model.manifest.labels, &algorithm, now).map_err(|e| err(&e))?;
    Ok(js_sys::Uint8Array::from(bytes.as_slice()))
}

#[derive(Serialize)]
struct BackendChoice {
    backend: &'static str,
    reason: String,
    probe_ms: ProbeMs,
    webgpu_error: Option<String>,
}

#[derive(Serialize, Default)]
struct ProbeMs {
    webgpu: Option<f64>,
    cpu: Option<f64>,
}

/// Chooses the compute backend. `preference` is "webgpu", "cpu" or "auto";
/// with "auto" a remembered `cached_choice` is reused, else both are measured
/// on a small 3D convolution and the faster wins. WebGPU failing to start is
/// reported in `webgpu_error`; forcing it then is an error.
#[wasm_bindgen]
pub async fn select_backend(preference: String, cached_choice: Option<String>) -> Result<JsValue, JsError> {
    let mut probe_ms = ProbeMs::default();
    // With "cpu" WebGPU is not touched at all: opening it can take seconds, or hang in a bad driver.
    let gpu = match preference.as_str() {
        "cpu" => None,
        _ => Some(backend::open_device(Backend::Wgpu).await),
    };
    let webgpu_error = gpu.as_ref().and_then(|g| g.as_ref().err()).map(|e| e.to_string());

    let (opened, reason) = match (preference.as_str(), gpu) {
        ("cpu", _) => (OpenedDevice::cpu(), "chosen by the user".to_string()),
        ("webgpu" | "wgpu", Some(gpu)) => match gpu {
            Ok(d) => (d, "chosen by the user".to_string()),
            Err(e) => return Err(JsError::new(&e.to_string())),
        },
        ("auto", Some(gpu)) => match (gpu, cached_choice.as_deref()) {
            (Err(_), _) => (OpenedDevice::cpu(), "WebGPU is unavailable".to_string()),
            (Ok(d), Some("webgpu")) => (d, "remembered from this machine's probe".to_string()),
            (Ok(_), Some("cpu")) => (OpenedDevice::cpu(), "remembered from this machine's probe".to_string()),
            (Ok(d), _) => {
                let c_dev = OpenedDevice::cpu();
                let g = backend::probe(&d.device).await.map_err(|e| JsError::new(&e))?;
                let c = backend::probe(&c_dev.device).await.map_err(|e| JsError::new(&e))?;
                probe_ms = ProbeMs { webgpu: Some(g), cpu: Some(c) };
                if g < c {
                    (d, format!("probe: WebGPU {g:.0} ms vs CPU {c:.0} ms"))
                } else {
                    (c_dev, format!("probe: CPU {c:.0} ms vs WebGPU {g:.0} ms"))
                }
            }
        },
        (other, _) => return Err(JsError::new(&format!("unknown backend preference \"{other}\""))),
    };
    let chosen = opened.backend;
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.device = Some(opened);
        s.model = None; // a model lives on one device
    });
    to_js(&BackendChoice { backend: page_name(chosen), reason, probe_ms, webgpu_error })
}

/// The page calls wgpu by the browser API it runs on.
pub(crate) fn page_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Wgpu => "webgpu",
        Backend::Cpu => "cpu",
    }
}

pub(crate) fn current_device() -> Result<OpenedDevice, JsError> {
    STATE.with(|s| s.borrow().device.clone()).ok_or_else(|| JsError::new("no backend selected yet"))
}

/// What the page shows about a model.
#[derive(Serialize)]
pub(crate) struct Card<'a> {
    id: &'a str,
    name: &'a str,
    params: u64,
    flops: u64,
    labels: &'a [crate::model::Label],
    patch_size: [usize; 3],
    target_spacing: [f64; 3],
    licence: &'a str,
    source: &'a str,
    ensemble_members: usize,
}

pub(crate) fn card(m: &crate::model::Manifest) -> Card<'_> {
    Card {
        id: &m.id,
        name: &m.name,
        params: m.params,
        flops: m.flops_per_patch,
        labels: &m.labels,
        patch_size: m.preprocessing.patch_size,
        target_spacing: m.preprocessing.target_spacing,
        licence: &m.licence,
        source: &m.provenance.source,
        ensemble_members: m.ensemble.len(),
    }
}

/// Loads a model package (its `model.json` text and `weights.safetensors`
/// bytes) onto the selected device, and returns its card. `members` holds the
/// ensemble members' weights (Uint8Arrays) when the ensemble is wanted, else
/// is empty.
#[wasm_bindgen]
pub async fn load_model(model_json: String, weights: Vec<u8>, members: js_sys::Array) -> Result<JsValue, JsError> {
    let opened = current_device()?;
    let mut model = Model::from_package_bytes(&model_json, weights, &opened.device).map_err(|e| JsError::new(&e.to_string()))?;
    for (i, member) in members.iter().enumerate() {
        let bytes = js_sys::Uint8Array::new(&member).to_vec();
        model
            .add_member(bytes, &opened.device)
            .map_err(|e| JsError::new(&format!("ensemble member {}: {e}", i + 1)))?;
    }
    let out = to_js(&card(&model.manifest))?;
    STATE.with(|s| s.borrow_mut().model = Some(Rc::new(model)));
    Ok(out)
}

/// Converts an HD-BET fold file as it ships (legacy PyTorch checkpoint bytes)
/// into a bedside package, checked by loading it into the network on the CPU.
/// Returns `{card, model_json, weights}`; the page keeps the package in memory
/// and loads it like a fetched one. Nothing is sent anywhere.
#[wasm_bindgen]
pub fn import_hdbet(bytes: Vec<u8>, file_name: String) -> Result<JsValue, JsError> {
    let device = OpenedDevice::cpu().device;
    let source = format!("uploaded file {file_name}");
    let model = crate::import::hdbet::import_hdbet_bytes(&bytes, &file_name, &source, &device)
        .map_err(|e| JsError::new(&e.to_string()))?;
    drop(bytes);
    let weights = model.network.to_safetensors().map_err(|e| JsError::new(&e.to_string()))?;
    package_to_js(&model.manifest, &weights)
}

/// A package for the page, `{card, model_json, weights}`: it keeps it in
/// memory and loads it like a fetched one.
pub(crate) fn package_to_js(manifest: &crate::model::Manifest, weights: &[u8]) -> Result<JsValue, JsError> {
    let model_json = serde_json::to_string_pretty(manifest).map_err(|e| JsError::new(&e.to_string()))?;
    let out: JsValue = js_sys::Object::new().into();
    set_field(&out, "card", &to_js(&card(manifest))?)?;
    set_field(&out, "model_json", &JsValue::from_str(&model_json))?;
    set_field(&out, "weights", &js_sys::Uint8Array::from(weights))?;
    Ok(out)
}

/// Checks a bedside package the user picked (its `model.json` text and
/// weights bytes) by building it on the CPU, and returns its card. The page
/// keeps the package in memory, like a converted or compressed one.
#[wasm_bindgen]
pub fn check_package(model_json: String, weights: Vec<u8>) -> Result<JsValue, JsError> {
    let model = Model::from_package_bytes(&model_json, weights, &OpenedDevice::cpu().device).map_err(|e| JsError::new(&e.to_string()))?;
    to_js(&card(&model.manifest))
}

/// Tucker-2 compression of a package (its `model.json` text and weights
/// bytes) by a rank rule (`{"rule": "factor", "factor": 0.5, "min_rank": 1}`,
/// `{"rule": "energy", …}`, `{"rule": "evbmf"}`, `{"rule": "budget",
/// "fraction": 0.5, "measure": "flops"}`), here in the worker. Calls
/// `on_progress(layer, fraction)` before each layer. Returns `{card,
/// model_json, weights, report}`; the page keeps the package in memory.
#[wasm_bindgen]
pub fn compress_model(model_json: String, weights: Vec<u8>, rule: JsValue, on_progress: js_sys::Function) -> Result<JsValue, JsError> {
    let rule: crate::compress::RankRule =
        serde_wasm_bindgen::from_value(rule).map_err(|e| JsError::new(&format!("bad rank rule: {e}")))?;
    let performance = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("performance"))
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok());
    let now_ms = || performance.as_ref().map_or(0.0, |p| p.now());
    let mut progress = |done: usize, total: usize, layer: &str| {
        let fraction = if total == 0 { 1.0 } else { done as f64 / total as f64 };
        let _ = on_progress.call2(&JsValue::NULL, &JsValue::from_str(layer), &JsValue::from_f64(fraction));
        true
    };
    let options = crate::compress::CompressOptions::default();
    let compressed = crate::compress::compress_package(&model_json, &weights, &rule, &options, &now_ms, &mut progress)
        .map_err(|e| JsError::new(&e.to_string()))?;
    drop(weights);
    let out = package_to_js(&compressed.manifest, &compressed.weights)?;
    set_field(&out, "report", &to_js(&compressed.report)?)?;
    Ok(out)
}

#[derive(serde::Deserialize, Default)]
struct JsOptions {
    #[serde(default)]
    tta: bool,
    /// Also segment the left-right mirror (the quality signal's mirror Dice).
    #[serde(default)]
    mirror_check: bool,
    /// Pool workers that run the passes (`run_passes`); 0 or 1: this worker.
    #[serde(default)]
    workers: usize,
    /// Memory the pool's helpers may hold together, in MB (the page passes
    /// half of `navigator.deviceMemory`); none: no cap.
    #[serde(default)]
    memory_budget_mb: Option<f64>,
    /// Windows even where the package asks for one pass (bench.html's
    /// `?windows=1`: how the windows' agreement is measured).
    #[serde(default)]
    windows: bool,
}

/// Wasm linear memory in MB: everything the engine holds in this worker
/// (the browser's own buffers for WebGPU are not in it).
pub(crate) fn wasm_memory_mb() -> f64 {
    core::arch::wasm32::memory_size(0) as f64 * 65536.0 / 1e6
}

/// Segments a NIfTI file's bytes with the loaded model. Calls
/// `on_progress(stage, fraction)` as it goes. Returns the mask as gzip NIfTI
/// bytes in the input's own grid, the timings and the label volumes.
/// With `options.workers` > 1 on the CPU, `run_passes` (the page's worker
/// pool, see `pool::PoolRunner`) runs the network passes, that many at once.
#[wasm_bindgen]
pub async fn segment(
    volume: Vec<u8>,
    options: JsValue,
    on_progress: js_sys::Function,
    run_passes: Option<js_sys::Function>,
) -> Result<JsValue, JsError> {
    let opened = current_device()?;
    let backend = opened.backend;
    let model = STATE
        .with(|s| s.borrow().model.clone())
        .ok_or_else(|| JsError::new("no model loaded yet"))?;
    let opts: JsOptions = if options.is_undefined() || options.is_null() {
        JsOptions::default()
    } else {
        serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("bad options: {e}")))?
    };
    let mut progress = |stage: &str, fraction: f64| {
        if CRASH_NEXT_PROGRESS.with(|c| c.replace(false)) {
            panic!("the engine crashed at \"{stage}\" on purpose (test hook crash_next_progress)");
        }
        let _ = on_progress.call2(&JsValue::NULL, &JsValue::from_str(stage), &JsValue::from_f64(fraction));
        true
    };
    let windowing = if opts.windows { Windowing::Windows } else { Windowing::Auto };
    let options = SegmentOptions { mirror: opts.tta, mirror_check: opts.mirror_check, max_buffer_bytes: opened.max_buffer_bytes, windowing, ..SegmentOptions::default() };
    let conv_start = crate::kernels::conv_ms();
    let memory_cap = pool::workers_within(&model, opts.memory_budget_mb);
    let width = opts.workers.min(memory_cap.unwrap_or(usize::MAX));
    let pool = run_passes.filter(|_| width > 1 && backend == Backend::Cpu);
    let pooled = pool.is_some();
    let segmented = match pool {
        Some(run) => segment_bytes_with(&volume, &model, &mut pool::PoolRunner { run, width }, options, &mut progress).await,
        None => segment_bytes_with(&volume, &model, &mut LocalRunner::new(&model, &opened.device), options, &mut progress).await,
    };
    let (vol, seg) = segmented.map_err(|e| JsError::new(&e.to_string()))?;
    drop(volume);
    let mask = volume::write_label_nifti_gz(&vol, &seg.labels).map_err(|e| JsError::new(&e.to_string()))?;

    #[derive(Serialize)]
    struct Result<'a> {
        timings_ms: &'a crate::inference::Timings,
        label_volumes_mm3: &'a [crate::inference::LabelVolume],
        foreground_mm3: f64,
        quality: &'a crate::inference::quality::Quality,
        backend: &'static str,
        windows: usize,
        networks: usize,
        patch: [usize; 3],
        dims: [usize; 3],
        /// The convolutions' FLOPs, for GFLOP/s.
        conv_flops: u64,
        /// Which CPU convolution ran (on wgpu: none).
        cpu_conv: Option<&'static str>,
        /// Which WebGPU convolution ran (on the CPU: none).
        gpu_conv: Option<&'static str>,
        /// The engine build: "relaxed-simd", or "simd128" for the fallback
        /// engine of browsers without relaxed SIMD.
        cpu_lanes: &'static str,
        /// This worker's wasm memory: it only grows, so it is the peak.
        wasm_memory_mb: f64,
        /// The workers that ran the passes (1: this one).
        workers: usize,
        /// Milliseconds this worker spent in CPU convolutions during the run
        /// (the pool's helpers report theirs apart).
        conv_ms: f64,
        /// The most helpers that fit in the memory budget (none: no budget).
        workers_memory_cap: Option<usize>,
        /// NaN or infinite input voxels, segmented as background and labelled 0.
        non_finite_voxels: usize,
    }
    let out = to_js(&Result {
        timings_ms: &seg.timings_ms,
        label_volumes_mm3: &seg.label_volumes,
        foreground_mm3: crate::inference::pipeline::foreground_mm3(&seg.label_volumes),
        quality: &seg.quality,
        backend: page_name(backend),
        windows: seg.windows,
        networks: model.networks().count(),
        patch: seg.patch,
        dims: vol.dims,
        conv_flops: seg.conv_flops,
        cpu_conv: (backend == Backend::Cpu).then(|| crate::kernels::cpu_conv().name()),
        gpu_conv: (backend == Backend::Wgpu).then(|| crate::kernels::gpu_conv().name()),
        cpu_lanes: crate::kernels::Lanes::available()[0].name(),
        wasm_memory_mb: wasm_memory_mb(),
        // The pool starts no more helpers than a run has passes (www/pool.js).
        workers: if pooled { width.min(seg.windows * model.networks().count()) } else { 1 },
        conv_ms: crate::kernels::conv_ms() - conv_start,
        workers_memory_cap: memory_cap,
        non_finite_voxels: seg.non_finite_voxels,
    })?;
    set_field(&out, "mask_nii_gz", &js_sys::Uint8Array::from(mask.as_slice()))?;
    Ok(out)
}

/// How far two masks of the same volume agree (the page's Compare): Dice and
/// the 95th-percentile surface distance of the foregrounds, Dice per label
/// (`labels`: the model card's; without them, the foreground as one label),
/// and, when a reference mask is given, each
/// mask's Dice per label against it (and the lowest). All three are gzip
/// NIfTI bytes. `options` (optional): `{margin}` judges `b` against `a` as
/// the Compress verdict does; `{ms: [a_ms, b_ms]}`, the two runs' times,
/// gives how many times faster `b` ran.
#[wasm_bindgen]
pub fn mask_agreement(a: &[u8], b: &[u8], reference: Option<Vec<u8>>, labels: JsValue, options: JsValue) -> Result<JsValue, JsError> {
    let labels: Vec<crate::model::Label> = if labels.is_undefined() || labels.is_null() {
        Vec::new()
    } else {
        serde_wasm_bindgen::from_value(labels).map_err(|e| JsError::new(&format!("bad labels: {e}")))?
    };
    #[derive(serde::Deserialize, Default)]
    struct Options {
        margin: Option<f64>,
        ms: Option<[f64; 2]>,
    }
    let options: Options = if options.is_undefined() || options.is_null() {
        Options::default()
    } else {
        serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("bad agreement options: {e}")))?
    };
    let read = |bytes: &[u8]| volume::read_nifti(bytes).map_err(|e| JsError::new(&e.to_string()));
    let (va, vb) = (read(a)?, read(b)?);
    if va.dims != vb.dims {
        return Err(JsError::new(&format!("the masks are on different grids: {:?} vs {:?}", va.dims, vb.dims)));
    }
    let as_labels = |v: &volume::Volume| v.data.iter().map(|&x| x.round().clamp(0.0, 255.0) as u8).collect::<Vec<u8>>();
    let (la, lb) = (as_labels(&va), as_labels(&vb));
    let worst = |d: &[crate::metrics::LabelDice]| crate::metrics::worst_label(d).map(|l| l.dice);
    let reference = match reference {
        Some(bytes) => {
            let lr = reference_on_grid(&bytes, va.dims, &labels)?;
            let (a, b) = (crate::metrics::dice_per_label(&la, &lr, &labels), crate::metrics::dice_per_label(&lb, &lr, &labels));
            Some(ReferenceDice { worst: [worst(&a), worst(&b)], a, b })
        }
        None => None,
    };
    let binary = |l: &[u8]| l.iter().map(|&x| (x > 0) as u8).collect::<Vec<u8>>();
    let (ma, mb) = (binary(&la), binary(&lb));
    let dice = crate::metrics::dice(&ma, &mb);
    // Without a label list, the foreground is the one label (and the one judged).
    let per_label = match crate::metrics::dice_per_label(&la, &lb, &labels) {
        none if none.is_empty() => vec![crate::metrics::LabelDice { value: 1, name: "foreground".into(), dice }],
        some => some,
    };
    #[derive(Serialize)]
    struct ReferenceDice {
        a: Vec<crate::metrics::LabelDice>,
        b: Vec<crate::metrics::LabelDice>,
        /// The lowest label Dice of each.
        worst: [Option<f64>; 2],
    }
    #[derive(Serialize)]
    struct Agreement {
        dice: f64,
        hd95_mm: Option<f64>,
        per_label: Vec<crate::metrics::LabelDice>,
        reference: Option<ReferenceDice>,
        verdict: Option<crate::compress::verdict::Verdict>,
        speedup: Option<f64>,
    }
    to_js(&Agreement {
        dice,
        hd95_mm: crate::metrics::hd95(&ma, &mb, va.dims, va.spacing),
        verdict: options.margin.map(|m| crate::compress::verdict::judge(&per_label, m)),
        per_label,
        reference,
        speedup: options.ms.filter(|[a, b]| *a > 0.0 && *b > 0.0).map(|[a, b]| a / b),
    })
}

/// The Pareto view: segments `volume` (NIfTI bytes) with the package and with
/// its Tucker-2 at each factor of `options` (`{factors, min_rank, margin,
/// warmup}`), on the selected backend. `reference` is an optional mask on
/// the volume's grid. Calls `on_point(sweep)` with the sweep so far as each
/// model is measured and `on_progress(what, fraction)` as work advances.
/// Returns the sweep.
#[wasm_bindgen]
pub async fn pareto_sweep(
    model_json: String,
    weights: Vec<u8>,
    volume: Vec<u8>,
    reference: Option<Vec<u8>>,
    options: JsValue,
    on_point: js_sys::Function,
    on_progress: js_sys::Function,
) -> Result<JsValue, JsError> {
    let opened = current_device()?;
    let options: crate::compress::pareto::SweepOptions =
        serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("bad sweep options: {e}")))?;
    let vol = volume::read_nifti(&volume).map_err(|e| JsError::new(&e.to_string()))?;
    drop(volume);
    let source = crate::model::package::parse_manifest(&model_json).map_err(|e| JsError::new(&e.to_string()))?;
    let reference = reference.map(|bytes| reference_on_grid(&bytes, vol.dims, &source.labels)).transpose()?;
    let mut point = |so_far: &crate::compress::pareto::ParetoSweep| {
        if let Ok(v) = to_js(so_far) {
            let _ = on_point.call1(&JsValue::NULL, &v);
        }
        true
    };
    let mut progress = |what: &str, fraction: f64| {
        let _ = on_progress.call2(&JsValue::NULL, &JsValue::from_str(what), &JsValue::from_f64(fraction));
        true
    };
    let sweep = crate::compress::pareto::sweep(&model_json, &weights, &vol, reference.as_deref(), &options, &opened, &mut point, &mut progress)
        .await
        .map_err(|e| JsError::new(&e.to_string()))?;
    to_js(&sweep)
}

/// A reference mask's gzip NIfTI bytes as labels of a model with `labels`
/// (see `metrics::reference_labels`), refused unless it lies on `dims`.
fn reference_on_grid(bytes: &[u8], dims: [usize; 3], labels: &[crate::model::Label]) -> Result<Vec<u8>, JsError> {
    let r = volume::read_nifti(bytes).map_err(|e| JsError::new(&format!("the reference mask: {e}")))?;
    if r.dims != dims {
        return Err(JsError::new(&format!("the reference mask is on another grid ({:?}) than the volume ({dims:?})", r.dims)));
    }
    Ok(crate::metrics::reference_labels(&r.data, labels))
}

/// Sets `object[key] = value`. Byte arrays go this way rather than through
/// serde, which would turn them into arrays of numbers.
pub(crate) fn set_field(object: &JsValue, key: &str, value: &JsValue) -> Result<(), JsError> {
    js_sys::Reflect::set(object, &JsValue::from_str(key), value)
        .map(|_| ())
        .map_err(|_| JsError::new("cannot build the result"))
}
