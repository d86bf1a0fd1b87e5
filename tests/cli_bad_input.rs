//! Every malformed input ends in a clear message and a non-zero exit, never a
//! panic: garbage, a non-NIfTI, a truncated file, a volume a 4D file lacks, absurd sizes
//! (refused before allocating), weights with wrong shapes and NaN weights.

#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use std::io::Write;

use common::*;

fn write(name: &str, bytes: &[u8]) -> String {
    let p = scratch_dir("bad_input").join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A minimal little-endian NIfTI-1 header (348 bytes + 4 extension bytes).
fn nifti1_header(dims: &[i16], datatype: i16, bitpix: i16) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    h[40..42].copy_from_slice(&(dims.len() as i16).to_le_bytes());
    for (i, d) in dims.iter().enumerate() {
        h[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for i in 0..4 {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&1.0f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352.0f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

/// Runs `bedside info` on the file and returns stderr, asserting a clean failure.
fn info_fails(path: &str) -> String {
    let stderr = run_fails(&["info", path], None);
    assert!(stderr.starts_with("bedside: "), "no clear message: {stderr}");
    stderr
}

#[test]
fn garbage_is_not_nifti() {
    let msg = info_fails(&write("garbage.nii", &[0x5a; 4000]));
    assert!(msg.contains("nifti"), "{msg}");
}

#[test]
fn a_png_is_not_nifti() {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(vec![0u8; 600]);
    let msg = info_fails(&write("image.nii", &png));
    assert!(msg.contains("nifti"), "{msg}");
}

#[test]
fn empty_file_is_refused() {
    let msg = info_fails(&write("empty.nii", &[]));
    assert!(msg.contains("nifti") || msg.contains("short") || msg.contains("truncated"), "{msg}");
}

#[test]
fn truncated_gzip_is_refused() {
    let real = std::fs::read(data("colin27/ch2.nii.gz")).unwrap();
    let msg = info_fails(&write("truncated.nii.gz", &real[..real.len() / 3]));
    assert!(msg.contains("truncated") || msg.contains("gzip") || msg.contains("corrupt"), "{msg}");
}

#[test]
fn truncated_voxel_data_is_refused() {
    let mut bytes = nifti1_header(&[10, 10, 10], 2, 8);
    bytes.extend(vec![1u8; 500]); // 1000 voxels declared
    let msg = info_fails(&write("short.nii", &bytes));
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn a_volume_the_series_does_not_hold_is_refused() {
    let series = data("nibabel/example4d.nii.gz");
    let stderr = run_fails(&["info", "--volume", "2", series.to_str().unwrap()], None);
    assert!(stderr.starts_with("bedside: "), "no clear message: {stderr}");
    assert!(stderr.contains("there is no volume 2 in this file: it holds 2 (numbered from 0)"), "{stderr}");
}

#[test]
fn absurd_dimensions_are_refused_before_allocating() {
    // 30000³ uint8 = 27 TB: allocating it would abort the process.
    let mut bytes = nifti1_header(&[30000, 30000, 30000], 2, 8);
    bytes.extend(vec![0u8; 64]);
    let msg = info_fails(&write("huge.nii.gz", &gzip(&bytes)));
    assert!(msg.contains("more than the"), "{msg}");
}

#[test]
fn negative_dimensions_are_refused() {
    let bytes = nifti1_header(&[10, -5, 10], 2, 8);
    let msg = info_fails(&write("negative.nii", &bytes));
    assert!(msg.contains("invalid image dimensions") && msg.contains("-5"), "{msg}");
}

/// A copy of the HD-BET package with `init_conv.weight` replaced by
/// (`shape`, `values`); every other tensor is the real one.
fn package_with_init_conv(name: &str, shape: Vec<usize>, values: Vec<f32>) -> String {
    let dir = scratch_dir(name);
    let src = hdbet_package();
    std::fs::copy(src.join("model.json"), dir.join("model.json")).unwrap();
    let real = std::fs::read(src.join("weights.safetensors")).unwrap();
    let real = safetensors::SafeTensors::deserialize(&real).unwrap();
    let replaced: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut views = Vec::new();
    for (n, view) in real.tensors() {
        let view = if n == "init_conv.weight" {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), &replaced).unwrap()
        } else {
            view
        };
        views.push((n, view));
    }
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("weights.safetensors"), bytes).unwrap();
    dir.to_str().unwrap().to_string()
}

fn segment_fails(model: &str) -> String {
    let input = data("colin27/ch2.nii.gz");
    let out = scratch_dir("bad_input").join("never.nii.gz");
    run_fails(&["segment", input.to_str().unwrap(), "--model", model, "--out", out.to_str().unwrap()], Some(&out))
}

#[test]
fn weights_with_wrong_shapes_are_refused() {
    let dir = package_with_init_conv("wrong_shapes", vec![21, 1, 5, 5, 5], vec![0.1; 21 * 125]);
    let msg = segment_fails(&dir);
    assert!(msg.contains("weights") && (msg.contains("shape") || msg.contains("init_conv")), "{msg}");
}

#[test]
fn nan_weights_are_refused() {
    let mut w = vec![0.1f32; 21 * 27];
    w[5] = f32::NAN;
    let dir = package_with_init_conv("nan_weights", vec![21, 1, 3, 3, 3], w);
    let msg = segment_fails(&dir);
    assert!(msg.contains("nan"), "{msg}");
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let msg = segment_fails("no-such-model");
    assert!(msg.contains("no model package"), "{msg}");
}

#[test]
fn bench_with_no_usable_backend_fails() {
    let input = data("colin27/ch2.nii.gz");
    let (ok, _, stderr) = run(&["bench", input.to_str().unwrap(), "--model", "no-such-model", "--backends", "tpu"]);
    assert!(!ok, "bench should fail when no backend can run");
    assert!(stderr.contains("unknown backend \"tpu\"") && stderr.contains("no backend could run"), "{stderr}");
}
