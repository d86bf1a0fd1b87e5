//! Every core in the browser: a wasm instance has one thread, so the engine
//! worker hands network passes (one window of one ensemble member) to a pool
//! of helper workers (`www/pool.js`), each with its own instance and its own
//! copy of the model. The sliding window, the blending and everything
//! around them stay in the engine worker, on the one pipeline the CLI runs:
//! only [`PassRunner`] differs.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{current_device, STATE};
use crate::inference::sliding_window::{LocalRunner, PassInput, PassRunner, WindowError};
use crate::kernels::{set_cpu_conv as set_choice, CpuConv};
use crate::model::Model;

/// Passes sent to the page's pool: `run(passes)` gets an array of
/// `{member, shape, patch: Float32Array, mirror}` and resolves to the
/// probabilities of each, in order (Float32Arrays).
pub(super) struct PoolRunner {
    pub run: js_sys::Function,
    pub width: usize,
}

impl PassRunner for PoolRunner {
    fn width(&self) -> usize {
        self.width
    }

    async fn run(&mut self, passes: Vec<PassInput>) -> Result<Vec<Vec<f32>>, WindowError> {
        let fail = |what: &str, e: JsValue| WindowError::Worker(format!("{what}: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))));
        let list = js_sys::Array::new();
        for p in passes {
            let item = js_sys::Object::new();
            let shape: js_sys::Array = p.shape.iter().map(|&s| JsValue::from_f64(s as f64)).collect();
            let fields: [(&str, JsValue); 4] = [
                ("member", JsValue::from_f64(p.member as f64)),
                ("shape", shape.into()),
                ("patch", js_sys::Float32Array::from(p.patch.as_slice()).into()),
                ("mirror", JsValue::from_bool(p.mirror)),
            ];
            for (k, v) in fields {
                js_sys::Reflect::set(&item, &JsValue::from_str(k), &v).map_err(|e| fail("building a pass", e))?;
            }
            list.push(&item);
        }
        let promise = self.run.call1(&JsValue::NULL, &list).map_err(|e| fail("the worker pool", e))?;
        let results = JsFuture::from(js_sys::Promise::from(promise)).await.map_err(|e| fail("a pool worker", e))?;
        let results = js_sys::Array::from(&results);
        if results.length() != list.length() {
            return Err(WindowError::Worker(format!("the pool returned {} results for {} passes", results.length(), list.length())));
        }
        Ok(results.iter().map(|r| js_sys::Float32Array::new(&r).to_vec()).collect())
    }
}

/// How many helpers fit in `budget_mb` (at least one; none without a
/// budget): each holds the model's
/// weights (every ensemble member) and one pass's activations
/// (`Network::pass_peak_bytes`).
pub(super) fn workers_within(model: &Model, budget_mb: Option<f64>) -> Option<usize> {
    let budget = budget_mb.filter(|b| b.is_finite() && *b > 0.0)?;
    let p = model.manifest.preprocessing.patch_size;
    let activations = model.network.pass_peak_bytes(p);
    let weights = 4 * model.manifest.params * model.networks().count() as u64;
    let per_helper_mb = (activations + weights) as f64 / 1e6;
    Some(((budget / per_helper_mb).floor() as usize).max(1))
}

/// One pass for a pool worker, on its own loaded model: the softmax
/// probabilities `[classes, d, h, w]` of `patch` (x fastest) through ensemble
/// member `member` (0: the model itself).
#[wasm_bindgen]
pub async fn run_pass(member: usize, shape: Vec<usize>, patch: Vec<f32>, mirror: bool) -> Result<js_sys::Float32Array, JsError> {
    let opened = current_device()?;
    let model = STATE.with(|s| s.borrow().model.clone()).ok_or_else(|| JsError::new("no model loaded yet"))?;
    if member >= model.networks().count() {
        return Err(JsError::new(&format!("no ensemble member {member}")));
    }
    let [d, h, w] = <[usize; 3]>::try_from(shape).map_err(|s| JsError::new(&format!("a pass needs three dimensions, not {s:?}")))?;
    if patch.len() != d * h * w {
        return Err(JsError::new(&format!("a {d}×{h}×{w} pass needs {} voxels, not {}", d * h * w, patch.len())));
    }
    // The engine worker's own runner, so a helper's pass is the pass it would run.
    let pass = PassInput { member, shape: [d, h, w], patch, mirror };
    let mut probs = LocalRunner::new(&model, &opened.device).run(vec![pass]).await.map_err(|e| JsError::new(&e.to_string()))?;
    Ok(js_sys::Float32Array::from(probs.remove(0).as_slice()))
}

/// Chooses this worker's CPU convolution: "relaxed-simd" (not in the
/// fallback engine), "simd128" or "burn" (see `kernels`).
#[wasm_bindgen]
pub fn set_cpu_conv(name: &str) -> Result<(), JsError> {
    set_choice(CpuConv::parse(name).map_err(|e| JsError::new(&e))?);
    Ok(())
}

/// Chooses this worker's WebGPU convolution: "burn" (the default) or
/// "tiled" (see `kernels::GpuConv`).
#[wasm_bindgen]
pub fn set_gpu_conv(name: &str) -> Result<(), JsError> {
    crate::kernels::set_gpu_conv(crate::kernels::GpuConv::parse(name).map_err(|e| JsError::new(&e))?);
    Ok(())
}

/// The fastest convolution lanes this engine build has: "relaxed-simd" in
/// the engine for browsers that validate relaxed SIMD, "simd128" in the
/// fallback engine (www/worker.js loads one or the other).
#[wasm_bindgen]
pub fn cpu_lanes() -> String {
    crate::kernels::Lanes::available()[0].name().to_string()
}

/// This worker's wasm memory in MB (it only grows: its peak).
#[wasm_bindgen]
pub fn memory_mb() -> f64 {
    super::wasm_memory_mb()
}

/// Milliseconds this worker has spent in CPU convolutions (see
/// `kernels::conv_ms`).
#[wasm_bindgen]
pub fn conv_ms() -> f64 {
    crate::kernels::conv_ms()
}
