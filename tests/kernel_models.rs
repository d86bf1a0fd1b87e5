//! Whole models through the hand-written convolutions give the masks of
//! Burn's own conv3d: the sample (Colin27) segmented with `--cpu-conv burn`,
//! with `--cpu-conv portable` (Winograd where it pays, the direct kernel
//! elsewhere) and with `--cpu-conv portable-direct` agrees at Dice ≥ 0.999,
//! for the students and a Tucker-2 factorised student (its 1×1×1 layers take
//! the direct kernel too). The
//! portable lanes run the same tiles, in the same order, as the browser's
//! SIMD lanes, which `tests/kernels.rs` checks against them in Chromium.
//! HD-BET's mask (Dice 1.000000 natively, 225 s on one thread) is checked in
//! the browser, on the relaxed-SIMD kernel, by `tests/e2e/bench.test.mjs`.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use common::*;

const MIN_DICE: f64 = 0.999;

fn segment(model: &str, conv: &str, out: &std::path::Path) {
    let sample = format!("{}/www/sample/ch2.nii.gz", env!("CARGO_MANIFEST_DIR"));
    let (ok, _, stderr) = run(&["--cpu-conv", conv, "segment", &sample, "--model", model, "--out", out.to_str().unwrap()]);
    assert!(ok, "{model} with {conv}: {stderr}");
}

/// Dice against Burn's mask of the fast choice, then of the direct kernel alone.
fn agreement(model: &str) -> [f64; 2] {
    let dir = scratch_dir("kernel_models");
    let name = std::path::Path::new(model).file_name().unwrap().to_string_lossy().into_owned();
    let burn = dir.join(format!("{name}-burn.nii.gz"));
    segment(model, "burn", &burn);
    ["portable", "portable-direct"].map(|conv| {
        let mask = dir.join(format!("{name}-{conv}.nii.gz"));
        segment(model, conv, &mask);
        let (ok, stdout, stderr) = run(&["--json", "dice", burn.to_str().unwrap(), mask.to_str().unwrap()]);
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("dice prints JSON");
        v["dice"].as_f64().expect("a Dice")
    })
}

fn shipped(id: &str) -> String {
    format!("{}/models/{id}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_students_give_burns_masks() {
    for id in ["student-s", "student-m"] {
        let [fast, direct] = agreement(&shipped(id));
        eprintln!("{id}: Dice against Burn's conv3d {fast:.5} (Winograd where it pays), {direct:.5} (direct kernel)");
        assert!(fast >= MIN_DICE && direct >= MIN_DICE, "{id}: Dice {fast:.5}, {direct:.5} < {MIN_DICE}");
    }
}

#[test]
fn a_tucker2_student_gives_burns_masks() {
    let out = scratch_dir("kernel_models").join("student-m-tucker");
    let (ok, _, stderr) = run(&["compress", &shipped("student-m"), "--rank-factor", "0.5", "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let [fast, direct] = agreement(out.to_str().unwrap());
    eprintln!("student-m Tucker-2 at 0.5: Dice {fast:.5} (Winograd where it pays), {direct:.5} (direct kernel)");
    assert!(fast >= MIN_DICE && direct >= MIN_DICE, "Dice {fast:.5}, {direct:.5} < {MIN_DICE}");
}
