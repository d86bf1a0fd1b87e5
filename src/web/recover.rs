//! "Recover by distillation" in the page's Compress panel: a thin layer over
//! `distill::recover`. The compressed package trains further in this worker,
//! with its original as the teacher on the loaded volume; nothing leaves
//! memory until the user downloads the result.

use std::cell::RefCell;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{current_device, package_to_js, to_js};
use crate::distill::lockstep::{prepare_volume, CurveTerms};
use crate::distill::recover::Recovery;
use crate::model::Model;
use crate::volume;

thread_local! {
    static RECOVERY: RefCell<Option<Recovery>> = const { RefCell::new(None) };
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Runs the original once on the volume (the teacher's outputs) and sets up
/// the compressed model to train from its own weights for `steps` steps.
#[wasm_bindgen]
pub async fn recover_open(volume: Vec<u8>, original_json: String, original_weights: Vec<u8>, compressed_json: String, compressed_weights: Vec<u8>, steps: usize) -> Result<JsValue, JsError> {
    RECOVERY.with(|r| r.borrow_mut().take());
    let opened = current_device()?;
    let vol = volume::read_nifti(&volume).map_err(err)?;
    drop(volume);
    let original = Model::from_package_bytes(&original_json, original_weights, &opened.device).map_err(err)?;
    let data = prepare_volume(&vol, &original, None, &opened.device).await.map_err(err)?;
    let teacher_ms = data.teacher_ms;
    // 1e-3 with cosine decay over the steps: a few dozen steps on one volume (the recipe and its
    // measured effect: distill::recover::recovery_recipe).
    let recovery = Recovery::new(&compressed_json, compressed_weights, data, steps.max(1), 1e-3, &opened.device).map_err(err)?;
    #[derive(Serialize)]
    struct Opened {
        teacher_ms: f64,
        steps: usize,
        patch: [usize; 3],
    }
    let out = to_js(&Opened { teacher_ms, steps: recovery.cfg.steps, patch: recovery.cfg.patch })?;
    RECOVERY.with(|r| *r.borrow_mut() = Some(recovery));
    Ok(out)
}

/// `n` more steps: `[{step, kd: {hard, kd, feature, total, learning_rate}}]`,
/// the terms as the teach room's curves plot them (the recovering model is
/// the KD student).
#[wasm_bindgen]
pub async fn recover_step(n: usize) -> Result<JsValue, JsError> {
    let mut recovery = RECOVERY.with(|r| r.borrow_mut().take()).ok_or_else(|| JsError::new("no recovery is running"))?;
    let result = recovery.steps(n.max(1)).await;
    RECOVERY.with(|r| *r.borrow_mut() = Some(recovery));
    #[derive(Serialize)]
    struct Point {
        step: usize,
        kd: CurveTerms,
    }
    let points: Vec<Point> = result.map_err(err)?.iter().map(|r| Point { step: r.step, kd: CurveTerms::of(r) }).collect();
    to_js(&points)
}

/// The recovered package: `{card, model_json, weights}`.
#[wasm_bindgen]
pub async fn recover_package() -> Result<JsValue, JsError> {
    let recovery = RECOVERY.with(|r| r.borrow_mut().take()).ok_or_else(|| JsError::new("no recovery is running"))?;
    let result = recovery.package().await;
    RECOVERY.with(|r| *r.borrow_mut() = Some(recovery));
    let (manifest, weights) = result.map_err(err)?;
    package_to_js(&manifest, &weights)
}
