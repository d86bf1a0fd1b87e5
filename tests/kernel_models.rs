//! Whole models through the direct convolution give the masks of Burn's own
//! conv3d: the sample (Colin27) segmented with `--cpu-conv burn` and with
//! `--cpu-conv portable` agrees at Dice ≥ 0.999, for the students and a
//! Tucker-2 factorised student (its 1×1×1 layers take the kernel too). The
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

fn agreement(model: &str) -> f64 {
    let dir = scratch_dir("kernel_models");
    let name = std::path::Path::new(model).file_name().unwrap().to_string_lossy().into_owned();
    let (burn, direct) = (dir.join(format!("{name}-burn.nii.gz")), dir.join(format!("{name}-portable.nii.gz")));
    segment(model, "burn", &burn);
    segment(model, "portable", &direct);
    let (ok, stdout, stderr) = run(&["--json", "dice", burn.to_str().unwrap(), direct.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("dice prints JSON");
    v["dice"].as_f64().expect("a Dice")
}

fn shipped(id: &str) -> String {
    format!("{}/models/{id}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_students_give_burns_masks() {
    for id in ["student-s", "student-m"] {
        let dice = agreement(&shipped(id));
        eprintln!("{id}: Dice {dice:.5} between Burn's conv3d and the direct kernel");
        assert!(dice >= MIN_DICE, "{id}: Dice {dice:.5} < {MIN_DICE}");
    }
}

#[test]
fn a_tucker2_student_gives_burns_masks() {
    let out = scratch_dir("kernel_models").join("student-m-tucker");
    let (ok, _, stderr) = run(&["compress", &shipped("student-m"), "--rank-factor", "0.5", "--out", out.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let dice = agreement(out.to_str().unwrap());
    eprintln!("student-m Tucker-2 at 0.5: Dice {dice:.5}");
    assert!(dice >= MIN_DICE, "Dice {dice:.5} < {MIN_DICE}");
}
