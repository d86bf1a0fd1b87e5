//! The teach room's calls (`teach.html`, through the worker): a thin layer
//! over `distill::lockstep`, which holds the run. The volume, the teacher's
//! outputs and the students stay in this wasm instance's memory; nothing is
//! stored anywhere.

use std::cell::RefCell;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{current_device, page_name, set_field, to_js};
use crate::distill::dataset::crop;
use crate::distill::lockstep::{label_source, prepare_volume, Checkpoint, CurvePoint, Room};
use crate::distill::teach_setup::{TeachSetup, PRESETS};
use crate::inference::pipeline::{segment, SegmentOptions};
use crate::inference::preprocess::labels_to_native;
use crate::model::Model;
use crate::volume::{self, Volume};

/// The room, the volume it was opened on (for masks on its own grid), and
/// the teacher (its mask through the inference pipeline, made at the first
/// export, is what an exported student is judged against).
struct Open {
    room: Room,
    volume: Volume,
    teacher: Model,
    teacher_mask: Option<Vec<u8>>,
}

thread_local! {
    static ROOM: RefCell<Option<Open>> = const { RefCell::new(None) };
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Takes the room out for an async call (the worker queues calls, so none
/// finds it missing while another awaits), and puts it back.
fn take() -> Result<Open, JsError> {
    ROOM.with(|r| r.borrow_mut().take()).ok_or_else(|| JsError::new("no teach room is open: choose a volume and a teacher, then Start"))
}

fn put(open: Open) {
    ROOM.with(|r| *r.borrow_mut() = Some(open));
}

fn with_room<T>(f: impl FnOnce(&mut Open) -> Result<T, JsError>) -> Result<T, JsError> {
    ROOM.with(|r| match r.borrow_mut().as_mut() {
        Some(open) => f(open),
        None => Err(JsError::new("no teach room is open")),
    })
}

/// The student presets, for the setup's selector.
#[wasm_bindgen]
pub fn teach_presets() -> Result<JsValue, JsError> {
    to_js(&PRESETS)
}

/// The setup a URL hash describes (defaults for missing keys), checked.
#[wasm_bindgen]
pub fn teach_setup_from_hash(hash: String) -> Result<JsValue, JsError> {
    to_js(&TeachSetup::from_hash(&hash).map_err(err)?)
}

/// The URL hash of a setup (checked).
#[wasm_bindgen]
pub fn teach_setup_to_hash(setup: JsValue) -> Result<String, JsError> {
    let s: TeachSetup = serde_wasm_bindgen::from_value(setup).map_err(err)?;
    s.check().map_err(err)?;
    Ok(s.to_hash())
}

/// Opens the room: reads the volume, runs the teacher (the package's
/// `model.json` and weights) once on the selected backend, and makes the two
/// students. `reference`: an independent mask's NIfTI bytes, or empty.
#[wasm_bindgen]
pub async fn teach_open(volume: Vec<u8>, teacher_json: String, teacher_weights: Vec<u8>, reference: Vec<u8>, setup: JsValue) -> Result<JsValue, JsError> {
    ROOM.with(|r| r.borrow_mut().take());
    let setup: TeachSetup = serde_wasm_bindgen::from_value(setup).map_err(err)?;
    setup.check().map_err(err)?;
    let opened = current_device()?;
    let vol = volume::read_nifti(&volume).map_err(err)?;
    drop(volume);
    let teacher = Model::from_package_bytes(&teacher_json, teacher_weights, &opened.device).map_err(err)?;
    let reference = if reference.is_empty() {
        None
    } else {
        let r = volume::read_nifti(&reference).map_err(|e| JsError::new(&format!("the reference mask: {e}")))?;
        if r.dims != vol.dims {
            return Err(JsError::new(&format!("the reference mask is on another grid ({:?}) than the volume ({:?})", r.dims, vol.dims)));
        }
        Some(crate::metrics::reference_labels(&r.data, &teacher.manifest.labels))
    };
    let data = prepare_volume(&vol, &teacher, reference.as_deref(), &opened.device).await.map_err(err)?;
    let room = Room::new(setup, data, &opened.device).map_err(err)?;
    // Refused before the first step allocates: WebGPU fails a buffer over its limit.
    if let Some(max) = opened.max_buffer_bytes {
        let need = room.step_buffer_bytes();
        if need > max {
            return Err(JsError::new(&format!(
                "Out of memory on WebGPU: a training step of the {} preset needs a {} MB buffer, and this GPU allows {} MB. Choose a smaller student preset (smaller patches), or train on the CPU.",
                room.setup.student,
                need >> 20,
                max >> 20
            )));
        }
    }
    #[derive(Serialize)]
    struct Opened<'a> {
        grid: [usize; 3],
        held_out_from: usize,
        teacher: &'a str,
        teacher_ms: f64,
        labels: &'a str,
        backend: &'static str,
        setup: &'a TeachSetup,
    }
    let out = to_js(&Opened {
        grid: room.data.full.dims,
        held_out_from: room.data.split,
        teacher: &room.data.teacher.name,
        teacher_ms: room.data.teacher_ms,
        labels: label_source(room.data.reference.is_some()),
        backend: page_name(opened.backend),
        setup: &room.setup,
    })?;
    put(Open { room, volume: vol, teacher, teacher_mask: None });
    Ok(out)
}

/// `n` lock-step steps. Returns `{records: [[kd, twin], …]}`, or `{fault}`
/// when a loss was not finite (the weights from before these steps are kept).
#[wasm_bindgen]
pub async fn teach_step(n: usize) -> Result<JsValue, JsError> {
    let mut open = take()?;
    let result = open.room.steps(n.max(1)).await;
    put(open);
    #[derive(Serialize)]
    struct Out {
        points: Vec<CurvePoint>,
        fault: Option<String>,
    }
    match result.map_err(err)? {
        Ok(records) => to_js(&Out { points: records.iter().map(CurvePoint::of).collect(), fault: None }),
        Err(fault) => to_js(&Out { points: Vec::new(), fault: Some(fault.to_string()) }),
    }
}

/// Both students' Dice on the held-out part (against the teacher, and the
/// reference mask when one is loaded), and ms per step.
#[wasm_bindgen]
pub async fn teach_evaluate() -> Result<JsValue, JsError> {
    let mut open = take()?;
    let result = open.room.evaluate().await;
    put(open);
    to_js(&result.map_err(err)?)
}

/// Both students over the whole volume, for the soft-target view and their
/// masks: `{teacher_mask, kd_mask, scratch_mask}`, gzip NIfTI on the volume's
/// own grid.
#[wasm_bindgen]
pub async fn teach_views() -> Result<JsValue, JsError> {
    let mut open = take()?;
    let result = open.room.refresh_views().await;
    let masks = result.as_ref().ok().map(|_| {
        [0, 1, 2].map(|which| {
            let labels = open.room.labels(which).unwrap_or_default();
            let p = &open.room.data.prepared;
            let cropped = crop(&labels, p.padded_dims, 1, [0; 3], p.resampled_dims);
            volume::write_label_nifti_gz(&open.volume, &labels_to_native(&cropped, p, &open.volume))
        })
    });
    put(open);
    result.map_err(err)?;
    let out: JsValue = js_sys::Object::new().into();
    if let Some(masks) = masks {
        for (key, mask) in ["teacher_mask", "kd_mask", "scratch_mask"].iter().zip(masks) {
            set_field(&out, key, &js_sys::Uint8Array::from(mask.map_err(err)?.as_slice()))?;
        }
    }
    Ok(out)
}

/// T, α, learning rate and feature weight, mid-run.
#[wasm_bindgen]
pub fn teach_set_params(temperature: f64, alpha: f64, lr: f64, feature: f64) -> Result<(), JsError> {
    with_room(|o| o.room.set_params(temperature, alpha, lr, feature).map_err(err))
}

/// New students from `seed` (the teacher's outputs are kept).
#[wasm_bindgen]
pub fn teach_reset(seed: u64) -> Result<(), JsError> {
    with_room(|o| {
        o.room.reset(seed);
        Ok(())
    })
}

/// The soft-target view of storage slice `z` at temperature `t`:
/// `{width, height, z, max_kl, mean_kl, teacher, student, kl}` (RGBA bytes).
#[wasm_bindgen]
pub fn teach_soft_view(z: usize, t: f64) -> Result<JsValue, JsError> {
    with_room(|o| {
        let v = o.room.soft_view(z, t).map_err(err)?;
        let out = to_js(&v)?;
        for (key, px) in [("teacher", &v.teacher), ("student", &v.student), ("kl", &v.kl)] {
            set_field(&out, key, &js_sys::Uint8ClampedArray::from(px.as_slice()))?;
        }
        Ok(out)
    })
}

/// One voxel's logits, softmaxes at T = 1 and at `t`, and T²·KL.
#[wasm_bindgen]
pub fn teach_voxel(x: usize, y: usize, z: usize, t: f64) -> Result<JsValue, JsError> {
    with_room(|o| to_js(&o.room.voxel([x, y, z], t).map_err(err)?))
}

/// A student as a bedside package: `{model_json, weights, dice}`. `dice`:
/// the package's Dice against the teacher on the whole volume, both run
/// through the inference pipeline exactly as the main page runs them (sliding
/// window, postprocessing, the volume's own grid), so that opening the file
/// there and comparing it with its teacher shows the same number.
#[wasm_bindgen]
pub async fn teach_export(scratch: bool, volume_name: String) -> Result<JsValue, JsError> {
    let mut open = take()?;
    let result = export(&mut open, scratch, &volume_name).await;
    put(open);
    result
}

async fn export(open: &mut Open, scratch: bool, volume_name: &str) -> Result<JsValue, JsError> {
    let (manifest, weights) = open.room.export(scratch, volume_name, None).await.map_err(err)?;
    let opened = current_device()?;
    let options = SegmentOptions { max_buffer_bytes: opened.max_buffer_bytes, ..SegmentOptions::default() };
    let teacher_mask = match open.teacher_mask.take() {
        Some(m) => m,
        None => pipeline_mask(&open.volume, &open.teacher, &opened.device, options).await?,
    };
    let student = Model::from_manifest(manifest.clone(), weights.clone(), &opened.device).map_err(err)?;
    let dice = crate::metrics::dice(&pipeline_mask(&open.volume, &student, &opened.device, options).await?, &teacher_mask);
    open.teacher_mask = Some(teacher_mask);
    let out: JsValue = js_sys::Object::new().into();
    set_field(&out, "model_json", &JsValue::from_str(&serde_json::to_string_pretty(&manifest).map_err(err)?))?;
    set_field(&out, "weights", &js_sys::Uint8Array::from(weights.as_slice()))?;
    set_field(&out, "dice", &JsValue::from_f64(dice))?;
    Ok(out)
}

/// A model's mask of the volume, as the main page's Run makes it.
async fn pipeline_mask(volume: &Volume, model: &Model, device: &burn::tensor::Device, options: SegmentOptions) -> Result<Vec<u8>, JsError> {
    Ok(segment(volume, model, device, options, &mut |_, _| true).await.map_err(err)?.labels)
}

/// The curves as CSV.
#[wasm_bindgen]
pub fn teach_csv() -> Result<String, JsError> {
    with_room(|o| Ok(o.room.csv()))
}

/// The recipe `bedside distill` accepts, naming the volume as `volume_path`.
#[wasm_bindgen]
pub fn teach_recipe(volume_path: String) -> Result<String, JsError> {
    with_room(|o| serde_json::to_string_pretty(&o.room.recipe(&volume_path, None)).map_err(err))
}

/// Both students and the run's record, read back to this thread's memory
/// as bytes: `{step, kd, scratch, record}`. The page keeps the latest (in
/// memory only) so that a run whose GPU is lost resumes on the CPU.
#[wasm_bindgen]
pub async fn teach_checkpoint() -> Result<JsValue, JsError> {
    let open = take()?;
    let result = open.room.checkpoint().await;
    put(open);
    let c = result.map_err(err)?;
    let out: JsValue = js_sys::Object::new().into();
    set_field(&out, "step", &JsValue::from_f64(c.step as f64))?;
    set_field(&out, "kd", &js_sys::Uint8Array::from(c.kd.as_slice()))?;
    set_field(&out, "scratch", &js_sys::Uint8Array::from(c.scratch.as_slice()))?;
    set_field(&out, "record", &JsValue::from_str(&c.record))?;
    Ok(out)
}

/// Goes on from a checkpoint in the room just opened (on another backend).
#[wasm_bindgen]
pub fn teach_restore(step: usize, kd: Vec<u8>, scratch: Vec<u8>, record: String) -> Result<(), JsError> {
    with_room(|o| o.room.restore(Checkpoint { step, kd, scratch, record }).map_err(err))
}

/// Test hook: the next step fails as a lost GPU device does.
#[wasm_bindgen]
pub fn teach_lose_device_next_step() -> Result<(), JsError> {
    with_room(|o| {
        o.room.lose_device_next_step();
        Ok(())
    })
}

/// Test hook: the next step's patches are NaN (the room must pause on it).
#[wasm_bindgen]
pub fn teach_poison_next_step() -> Result<(), JsError> {
    with_room(|o| {
        o.room.poison_next_step();
        Ok(())
    })
}
