//! `bedside distill` end to end, as CI's smoke run (real training is not in
//! CI): HD-BET teaches a tiny student for a few steps on a small real volume
//! (nibabel's `anatomical.nii`), the teacher's outputs are cached, and the
//! result is a model package that `bedside segment` runs. Bad configs fail
//! with a message.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use common::*;

fn config(dir: &std::path::Path, steps: usize, patch: usize) -> std::path::PathBuf {
    let cfg = serde_json::json!({
        "id": "student-smoke", "name": "smoke test student",
        "teacher": hdbet_package(),
        "student": {"base_filters": 2, "depth": 2},
        "volumes": [{"image": data("nibabel/anatomical.nii")}],
        "patch": [patch, patch, patch], "batch": 1, "steps": steps, "checkpoint_every": 2,
        "loss": {"samples": 32}
    });
    let path = dir.join(format!("smoke-{steps}-{patch}.json"));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

#[test]
fn distill_trains_caches_the_teacher_and_writes_a_runnable_package() {
    let dir = scratch_dir("distill_smoke");
    let out = dir.join("student");
    let cache = dir.join("cache");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&cache);
    let cfg = config(&dir, 4, 32);
    let args = |extra: &[&str]| {
        let mut a = vec!["distill", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()];
        a.extend(["--cache", cache.to_str().unwrap(), "--json"]);
        a.extend(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run_args = |a: Vec<String>| run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, stdout, stderr) = run_args(args(&[]));
    assert!(ok, "distill failed: {stderr}");
    assert!(stderr.contains("teacher ran"), "the teacher ran once: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["steps"], 4);
    assert!(report["last_loss"].as_f64().unwrap().is_finite());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(manifest["family"], "unet3d");
    assert_eq!(manifest["training"]["teacher"], "hd-bet");
    assert_eq!(manifest["training"]["config"]["steps"], 4);
    assert_eq!(manifest["preprocessing"]["patch_size"], serde_json::json!([32, 32, 32]));
    let csv = std::fs::read_to_string(out.join("losses.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 steps");

    // Second run: the teacher comes from the cache; --resume after the last step trains nothing more.
    let (ok, _, stderr) = run_args(args(&["--resume"]));
    assert!(ok, "resume failed: {stderr}");
    assert!(stderr.contains("from cache"), "{stderr}");

    // The package segments like any other, on the input's grid.
    let mask = dir.join("mask.nii.gz");
    let input = data("nibabel/anatomical.nii");
    let (ok, _, stderr) = run(&["segment", input.to_str().unwrap(), "--model", out.to_str().unwrap(), "--out", mask.to_str().unwrap()]);
    assert!(ok, "segment with the student failed: {stderr}");
    let (m, v) = (bedside::volume::read_nifti_file(&mask).unwrap(), bedside::volume::read_nifti_file(&input).unwrap());
    assert_eq!(m.dims, v.dims);
}

#[test]
fn bad_distill_configs_fail_with_a_message() {
    let dir = scratch_dir("distill_bad");
    let out = dir.join("never");
    let bad_patch = config(&dir, 2, 40);
    let e = run_fails(&["distill", "--config", bad_patch.to_str().unwrap(), "--out", out.to_str().unwrap()], Some(&out));
    assert!(e.contains("multiple of 16"), "{e}");
    let missing = dir.join("nope.json");
    let e = run_fails(&["distill", "--config", missing.to_str().unwrap(), "--out", out.to_str().unwrap()], Some(&out));
    assert!(e.contains("nope.json"), "{e}");
    let typo = dir.join("typo.json");
    std::fs::write(&typo, r#"{"id":"x","name":"x","teacher":"t","student":{"base_filter":2},"volumes":[{"image":"a"}],"steps":1}"#).unwrap();
    let e = run_fails(&["distill", "--config", typo.to_str().unwrap(), "--out", out.to_str().unwrap()], Some(&out));
    assert!(e.contains("base_filter"), "{e}");
}
