//! The page's Adapt panel: a thin layer over `lora::train::Adaptation`, the
//! code `bedside lora train` runs. The base model learns a LoRA adapter (or
//! the chosen trainables) from the user's labelled scans in this worker;
//! nothing leaves memory until the user downloads the adapter or the merged
//! package.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::{card, current_device, set_field, to_js};
use crate::lora::pairs::pair_images_and_masks;
use crate::lora::train::{Adaptation, TrainOptions};
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
}

fn default_seed() -> u64 {
    TrainOptions::default().seed
}

/// NIfTI files (`names[i]`, `files[i]`) read and paired, image with mask.
fn labelled(names: Vec<String>, files: js_sys::Array) -> Result<Vec<(Volume, Vec<u8>)>, JsError> {
    let mut read = Vec::with_capacity(names.len());
    for (name, bytes) in names.into_iter().zip(files.iter()) {
        let bytes = js_sys::Uint8Array::new(&bytes).to_vec();
        let v = volume::read_nifti(&bytes).map_err(|e| JsError::new(&format!("{name}: {e}")))?;
        read.push((name, v));
    }
    pair_images_and_masks(read).map_err(err)
}

/// Wasm linear memory in MB: everything the engine holds in this worker
/// (the browser's own buffers for WebGPU are not in it).
fn wasm_memory_mb() -> f64 {
    core::arch::wasm32::memory_size(0) as f64 * 65536.0 / 1e6
}

/// Sets up an adaptation of the base package: the labelled files (images
/// and masks in any order, paired by grid), an optional held-out pair, and
/// the panel's options. Returns the trainable parameter count and share,
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
    options: JsValue,
) -> Result<JsValue, JsError> {
    ADAPTATION.with(|a| a.borrow_mut().take());
    let opened = current_device()?;
    let o: Options = serde_wasm_bindgen::from_value(options).map_err(|e| JsError::new(&format!("bad options: {e}")))?;
    let trainables = Trainables::parse(&o.trainables).map_err(err)?;
    let data = labelled(names, files)?;
    let validation = if validation_names.is_empty() {
        None
    } else {
        let mut pairs = labelled(validation_names, validation_files)?;
        if pairs.len() != 1 {
            return Err(JsError::new("give one held-out image with its mask for validation"));
        }
        pairs.pop()
    };
    let lora = LoraConfig { rank: o.rank, alpha: o.alpha, targets: o.targets };
    let options = TrainOptions { steps: o.steps.max(1), learning_rate: o.learning_rate, seed: o.seed, trainables };
    let run = Adaptation::new(&base_json, base_weights, lora, &data, options, &opened.device).await.map_err(err)?;
    drop(data);
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

/// `n` more steps: `{points: [{step, total, cross_entropy, dice, ms}], memory_mb}`.
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
        .map(|r| Point { step: r.step, total: r.total, cross_entropy: r.cross_entropy, dice: r.dice, ms: r.data_ms + r.compute_ms })
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
    let out: JsValue = js_sys::Object::new().into();
    set_field(&out, "card", &to_js(&card(&manifest))?)?;
    set_field(&out, "model_json", &JsValue::from_str(&serde_json::to_string_pretty(&manifest).map_err(err)?))?;
    set_field(&out, "weights", &js_sys::Uint8Array::from(weights.as_slice()))?;
    Ok(out)
}

/// Drops the adaptation (Cancel): its volumes and state leave memory.
#[wasm_bindgen]
pub fn adapt_close() {
    ADAPTATION.with(|a| a.borrow_mut().take());
}
