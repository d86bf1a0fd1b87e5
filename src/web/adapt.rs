//! The page's Adapt panel: a thin layer over `lora::train::Adaptation`, the
//! code `bedside lora train` runs. The base model learns a LoRA adapter (or
//! the chosen trainables) from the user's labelled scans in this worker;
//! nothing leaves memory until the user downloads the adapter or the merged
//! package.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::{current_device, package_to_js, set_field, to_js, wasm_memory_mb};
use crate::lora::adapter::{merged_model, Adapter};
use crate::lora::pairs::pair_images_and_masks;
use crate::model::package::parse_manifest;
use crate::lora::train::{Adaptation, Teaching, TrainOptions};
use crate::model::Model;
use crate::lora::{LoraConfig, Trainables};
use crate::volume::{self, Volume};

/// An adaptation in progress and its held-out volume.
struct Open {
    run: Adaptation,
    validation: Option<(Volume, Vec<u8>)>,
}

thread_local! {
    static ADAPTATION: RefCell<Option<Open>> = const { RefCell::new(None) };
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// What the panel's fields give.
#[derive(Deserialize)]
struct Options {
    rank: usize,
    alpha: f32,
    targets: String,
    trainables: String,
    steps: usize,
    learning_rate: f64,
    #[serde(default = "default_seed")]
    seed: u64,
    /// The KD term's weight, with a teacher.
    #[serde(default = "default_kd")]
    kd: f64,
}

fn default_kd() -> f64 {
    1.0
}

fn default_seed() -> u64 {
    TrainOptions::default().seed
}

/// NIfTI files (`names[i]`, `files[i]`) read and paired, image with mask;
/// and the images without one when a teacher will label them.
fn labelled(names: Vec<String>, files: js_sys::Array, unlabelled_allowed: bool) -> Result<(Vec<(Volume, Vec<u8>)>, Vec<Volume>), JsError> {
    let mut read = Vec::with_capacity(names.len());
    for (name, bytes) in names.into_iter().zip(files.iter()) {
        let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
        let v = volume::read_nifti(&bytes).map_err(|e| JsError::new(&format!("{name}: {e}")))?;
        read.push((name, v));
    }
    pair_images_and_masks(read, unlabelled_allowed).map_err(err)
}

/// Sets up an adaptation of the base package: the labelled files (images
/// and masks in any order, paired by grid), an optional held-out pair, an
/// optional teacher package for the KD term (with it, images without a mask
/// train on its labels), and the panel's options. Returns the trainable parameter count and share,
/// the adapted layers, the training state's bytes, the memory in use, and
/// the held-out Dice before any step.
#[wasm_bindgen]
pub async fn adapt_open(
    base_json: String,
    base_weights: Vec<u8>,
    names: Vec<String>,
    files: js_sys::Array,
    validation_names: Vec<String>,
    validation_files: js_sys::Array,
    teacher_json: Option<String>,
    teacher_weights: Option<Vec<u8>>,
    options: JsValue,
) -> Result<JsValue, JsError> {
    ADAPTATION.with(|a| a.borrow_mut().take());
    let opened = current_device()?;
    let o: Options = serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("bad options: {e}")))?;
    let trainables = Trainables::parse(&o.trainables).map_err(err)?;
    let teacher = match (teacher_json, teacher_weights) {
        (Some(json), Some(weights)) => Some(Model::from_package_bytes(&json, weights, &opened.device).map_err(|e| JsError::new(&format!("the teacher: {e}")))?),
        _ => None,
    };
    let (data, unlabelled) = labelled(names, files, teacher.is_some())?;
    let validation = if validation_names.is_empty() {
        None
    } else {
        let (mut pairs, _) = labelled(validation_names, validation_files, false)?;
        if pairs.len() != 1 {
            return Err(JsError::new("give one held-out image with its mask for validation"));
        }
        pairs.pop()
    };
    let lora = LoraConfig { rank: o.rank, alpha: o.alpha, targets: o.targets };
    let options = TrainOptions { steps: o.steps.max(1), learning_rate: o.learning_rate, seed: o.seed, trainables, kd: o.kd };
    let teaching = teacher.as_ref().map(|teacher| Teaching { teacher, unlabelled: &unlabelled });
    let run = Adaptation::new(&base_json, base_weights, lora, &data, teaching, options, &opened.device).await.map_err(err)?;
    let unlabelled = unlabelled.len();
    drop(data);
    drop(teacher);
    let validation_dice = match &validation {
        Some((v, m)) => Some(run.validation_dice(v, m, &opened.device).await.map_err(err)?),
        None => None,
    };
    #[derive(Serialize)]
    struct Opened {
        trainable: usize,
        total: usize,
        share: f64,
        layers: usize,
        trainables: &'static str,
        training_state_bytes: usize,
        memory_mb: f64,
        patch: [usize; 3],
        steps: usize,
        unlabelled: usize,
        kd: f64,
        validation_dice: Option<f64>,
    }
    let out = to_js(&Opened {
        trainable: run.trainable,
        total: run.total,
        share: run.trainable as f64 / run.total as f64,
        layers: run.plan.len(),
        trainables: run.trainables.name(),
        training_state_bytes: run.training_state_bytes(),
        memory_mb: wasm_memory_mb(),
        patch: run.cfg.patch,
        steps: run.cfg.steps,
        unlabelled,
        kd: run.cfg.loss.kd,
        validation_dice,
    })?;
    ADAPTATION.with(|a| *a.borrow_mut() = Some(Open { run, validation }));
    Ok(out)
}

fn take() -> Result<Open, JsError> {
    ADAPTATION.with(|a| a.borrow_mut().take()).ok_or_else(|| JsError::new("no adaptation is open"))
}

fn put(open: Open) {
    ADAPTATION.with(|a| *a.borrow_mut() = Some(open));
}

/// `n` more steps: `{points: [{step, total, cross_entropy, dice, kd, ms}], memory_mb}`.
/// A loss that is not finite stops with the adapter from before it kept.
#[wasm_bindgen]
pub async fn adapt_step(n: usize) -> Result<JsValue, JsError> {
    let mut open = take()?;
    let result = open.run.steps(n.max(1)).await;
    put(open);
    #[derive(Serialize)]
    struct Point {
        step: usize,
        total: f64,
        cross_entropy: f64,
        dice: f64,
        kd: f64,
        /// Cutting the batch, forward, backward and the optimiser step.
        ms: f64,
    }
    #[derive(Serialize)]
    struct Steps {
        points: Vec<Point>,
        memory_mb: f64,
    }
    let points = result
        .map_err(err)?
        .iter()
        .map(|r| Point { step: r.step, total: r.total, cross_entropy: r.cross_entropy, dice: r.dice, kd: r.kd, ms: r.data_ms + r.compute_ms })
        .collect();
    to_js(&Steps { points, memory_mb: wasm_memory_mb() })
}

/// The held-out volume's Dice with the model as it stands (through the
/// inference pipeline, as a run gives it); null without a held-out volume.
#[wasm_bindgen]
pub async fn adapt_validate() -> Result<JsValue, JsError> {
    let open = take()?;
    let device = current_device()?.device;
    let result = match &open.validation {
        Some((v, m)) => open.run.validation_dice(v, m, &device).await.map(Some),
        None => Ok(None),
    };
    let step = open.run.steps_done();
    put(open);
    #[derive(Serialize)]
    struct Validation {
        step: usize,
        dice: Option<f64>,
    }
    to_js(&Validation { step, dice: result.map_err(err)? })
}

/// The adapter's files: `{config_json, weights, bytes}` (PEFT's
/// `adapter_config.json` and `adapter_model.safetensors`). A full
/// fine-tuning has no adapter: its result is the package.
#[wasm_bindgen]
pub async fn adapt_adapter() -> Result<JsValue, JsError> {
    let open = take()?;
    let result = open.run.adapter().await;
    put(open);
    let adapter = result.map_err(err)?;
    let out: JsValue = js_sys::Object::new().into();
    set_field(&out, "config_json", &JsValue::from_str(&adapter.config_json()))?;
    set_field(&out, "bytes", &JsValue::from_f64(adapter.weights.len() as f64))?;
    set_field(&out, "weights", &js_sys::Uint8Array::from(adapter.weights.as_slice()))?;
    Ok(out)
}

/// The adapted model merged into a plain package: `{card, model_json, weights}`.
#[wasm_bindgen]
pub async fn adapt_package() -> Result<JsValue, JsError> {
    let open = take()?;
    let result = open.run.package().await;
    put(open);
    let (manifest, weights) = result.map_err(err)?;
    package_to_js(&manifest, &weights)
}

/// An adapter's files (`adapter_config.json`, `adapter_model.safetensors`)
/// put on the base package, as `bedside segment --adapter` does: refused
/// unless the base is the one it was trained on (by id and weights' sha256).
/// Returns the merged package, `{card, model_json, weights, r, layers}`.
#[wasm_bindgen]
pub fn adapt_load(base_json: String, base_weights: Vec<u8>, config_json: String, adapter_weights: Vec<u8>) -> Result<JsValue, JsError> {
    let base = parse_manifest(&base_json).map_err(err)?;
    let adapter = Adapter::from_files(&config_json, adapter_weights).map_err(err)?;
    // Merged on the CPU: reading the weights back synchronously is what a
    // package needs, and WebGPU in a tab cannot.
    let model = merged_model(&base, &base_weights, &adapter, &burn::tensor::Device::flex()).map_err(err)?;
    let weights = model.network.to_safetensors().map_err(err)?;
    let out = package_to_js(&model.manifest, &weights)?;
    set_field(&out, "r", &JsValue::from_f64(adapter.config.r as f64))?;
    set_field(&out, "layers", &JsValue::from_f64(adapter.config.target_modules.len() as f64))?;
    Ok(out)
}

/// Drops the adaptation (Cancel): its volumes and state leave memory.
#[wasm_bindgen]
pub fn adapt_close() {
    ADAPTATION.with(|a| a.borrow_mut().take());
}
