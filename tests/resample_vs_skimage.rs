//! HD-BET's resampling, reproduced: our preprocessing (cubic B-spline resize
//! to 1.5 mm, then z-score) and our way back to the native grid (nearest
//! resize, then a centred pad-or-crop) against HD-BET's own Python functions
//! (`preprocess_image_numpy`, `resize_image(order=0)` + `padorcut`, which call
//! skimage), run on real volumes.
#![cfg(not(target_arch = "wasm32"))] // runs Python

mod common;

use std::path::Path;

use bedside::inference::preprocess::{labels_to_native, prepare};
use bedside::model::Manifest;
use bedside::volume::{nearest, pad_or_crop, read_nifti_file};
use common::*;

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("reference output");
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn hdbet_preprocessing() -> bedside::model::manifest::Preprocessing {
    let json = std::fs::read_to_string(format!("{}/models/hd-bet/model.json", env!("CARGO_MANIFEST_DIR")))
        .expect("models/hd-bet/model.json");
    let manifest: Manifest = serde_json::from_str(&json).expect("manifest");
    assert_eq!(manifest.preprocessing.interpolation, "cubic", "HD-BET resamples with skimage order 3");
    manifest.preprocessing
}

/// Compares one volume (with a label map `mask` > 0 on the same grid).
fn check(volume: &str, mask: &str) {
    let (volume_path, mask_path) = (data(volume), data(mask));
    let out = scratch_dir(&format!("hdbet_resample/{}", volume.replace('/', "_")));
    run_python(&[
        reference_script("hdbet_resample.py"),
        hdbet_dir().display().to_string(),
        volume_path.display().to_string(),
        mask_path.display().to_string(),
        out.display().to_string(),
    ]);
    let shapes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("shapes.json")).unwrap()).unwrap();
    let model_dims: [usize; 3] = serde_json::from_value(shapes["model"].clone()).unwrap();

    // Forward: cubic resize + z-score, on the model grid before padding.
    let vol = read_nifti_file(&volume_path).expect("volume reads");
    let prepared = prepare(&vol, &hdbet_preprocessing()).expect("prepare");
    assert_eq!(prepared.resampled_dims, model_dims, "{volume}: model grid");
    let ours = pad_or_crop(&prepared.data, prepared.padded_dims, prepared.resampled_dims, 0.0);
    let theirs = read_f32(&out.join("pre.f32"));
    assert_eq!(ours.len(), theirs.len());
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    // z-scored values (|v| up to ~5); f32 storage between axes costs ~1e-6.
    assert!(worst < 1e-4, "{volume}: preprocessed image differs from HD-BET's by {worst}");

    // Labels: order-0 resize to the model grid, then back to the native grid.
    let native_mask: Vec<u8> =
        read_nifti_file(&mask_path).expect("mask reads").data.iter().map(|&v| (v > 0.0) as u8).collect();
    let model_labels = nearest(&native_mask, vol.dims, model_dims);
    let reference_model = std::fs::read(out.join("model.u8")).unwrap();
    assert!(model_labels == reference_model, "{volume}: order-0 resize to the model grid differs");
    let back = labels_to_native(&model_labels, &prepared, &vol);
    let reference_native = std::fs::read(out.join("native.u8")).unwrap();
    let differing = back.iter().zip(&reference_native).filter(|(a, b)| a != b).count();
    assert_eq!(back.len(), reference_native.len(), "{volume}: native grid size");
    assert_eq!(differing, 0, "{volume}: {differing} voxels differ from HD-BET's padorcut(resize(order=0))");
}

#[test]
fn colin27_downsampled_to_1_5_mm_like_hdbet() {
    // 1 mm → 1.5 mm; on the way back 121 · 1.5 rounds to 182, so padorcut crops.
    check("colin27/ch2.nii.gz", "colin27/ch2bet.nii.gz");
}

#[test]
fn upsampled_and_anisotropic_volumes_like_hdbet() {
    // 2 mm → 1.5 mm (upsampling), and (1, 3, 2) mm voxels.
    check("nibabel/anatomical.nii", "nibabel/anatomical.nii");
    check("nibabel/standard.nii.gz", "nibabel/standard.nii.gz");
}
