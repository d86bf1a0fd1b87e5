//! `bedside compress` on the real HD-BET weights, as a user runs it: the
//! per-layer report, a package that loads and segments Colin27 close to the
//! original, a budget that is met, and clear refusals.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use common::*;
use serde_json::Value;

fn hdbet() -> String {
    hdbet_package().display().to_string()
}

#[test]
fn hdbet_at_half_rank_reports_every_layer_and_keeps_its_mask() {
    let dir = scratch_dir("compress_hdbet_f050");
    let out = dir.join("package");
    let report_path = dir.join("report.json");
    let (ok, stdout, stderr) = run(&[
        "compress", &hdbet(), "--rank-factor", "0.5", "--out", out.to_str().unwrap(), "--report", report_path.to_str().unwrap(), "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let from_file: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    assert_eq!(report, from_file);
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30, "HD-BET has 30 convolutions");
    for l in layers {
        for key in ["name", "shape", "ranks", "rel_error", "params_before", "params_after", "flops_before", "flops_after"] {
            assert!(l.get(key).is_some(), "{key} missing in {l}");
        }
        if let Some(r) = l["ranks"].as_array() {
            // ceil(channels / 2)
            let shape: Vec<u64> = l["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            assert_eq!(r[0].as_u64().unwrap(), shape[0].div_ceil(2), "{l}");
            assert_eq!(r[1].as_u64().unwrap(), shape[1].div_ceil(2), "{l}");
            let e = l["rel_error"].as_f64().unwrap();
            assert!((0.0..1.0).contains(&e), "{l}");
        } else {
            assert!(l["whole_because"].as_str().unwrap().contains("FLOPs"), "{l}");
        }
    }
    let (before, after) = (report["params_before"].as_f64().unwrap(), report["params_after"].as_f64().unwrap());
    assert!(after < 0.35 * before, "{after} of {before} parameters");
    assert!(report["flops_after"].as_f64().unwrap() < 0.35 * report["flops_before"].as_f64().unwrap());

    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(manifest["compression"]["source_id"], "hd-bet");
    assert_eq!(manifest["compression"]["layers"]["context5.conv1"], serde_json::json!([168, 168]));
    assert_eq!(manifest["params"].as_f64().unwrap(), after);

    // It segments Colin27 almost as the original does (measured: Dice 0.958
    // against HD-BET's mask, 0.909 against ch2bet; the original has 0.942).
    let volume = format!("{}:{}", data("colin27/ch2.nii.gz").display(), data("colin27/ch2bet.nii.gz").display());
    let (ok, stdout, stderr) = run(&["evaluate", "--model", out.to_str().unwrap(), &volume, "--against", &hdbet(), "--json"]);
    assert!(ok, "{stderr}");
    let row = &serde_json::from_str::<Value>(&stdout).unwrap()["volumes"][0];
    let (against, reference) = (row["against"]["dice"].as_f64().unwrap(), row["reference"]["dice"].as_f64().unwrap());
    eprintln!("HD-BET at factor 0.5 on Colin27: Dice {against:.4} vs the original, {reference:.4} vs ch2bet");
    assert!(against > 0.94, "Dice against the original {against}");
    assert!(reference > 0.88, "Dice against ch2bet {reference}");
}

#[test]
fn a_flops_budget_is_met() {
    let out = scratch_dir("compress_hdbet_budget").join("package");
    let (ok, stdout, stderr) = run(&["compress", &hdbet(), "--budget-flops", "0.3", "--out", out.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let (before, after) = (report["flops_before"].as_f64().unwrap(), report["flops_after"].as_f64().unwrap());
    assert!(after <= 0.3 * before, "{after} of {before} FLOPs");
    assert!(out.join("weights.safetensors").is_file());
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let dir = scratch_dir("compress_refusals");
    let out = dir.join("never");
    let o = out.to_str().unwrap();
    let student = format!("{}/models/student-s", env!("CARGO_MANIFEST_DIR"));
    assert!(run_fails(&["compress", &student, "--out", o], Some(&out)).contains("choose a rank rule"));
    assert!(run_fails(&["compress", &student, "--evbmf", "--energy", "0.9", "--out", o], Some(&out)).contains("one rank rule"));
    assert!(run_fails(&["compress", &student, "--rank-factor", "0", "--out", o], Some(&out)).contains("(0, 1]"));
    assert!(run_fails(&["compress", &student, "--budget-flops", "0.00001", "--out", o], Some(&out)).contains("cannot be met"));
    assert!(run_fails(&["compress", "no-such-model", "--evbmf", "--out", o], Some(&out)).contains("no model package"));
    // A compressed package is not compressed again.
    let first = dir.join("first");
    assert!(run(&["compress", &student, "--rank-factor", "0.5", "--out", first.to_str().unwrap()]).0);
    assert!(run_fails(&["compress", first.to_str().unwrap(), "--evbmf", "--out", o], Some(&out)).contains("already compressed"));
    // tucker: ranks and kernels.
    let weights = format!("{student}/weights.safetensors");
    assert!(run_fails(&["tucker", &format!("{weights}:head.weight"), "--ranks", "9,1"], None).contains("between 1 and the channels"));
    assert!(run_fails(&["tucker", &format!("{weights}:nope"), "--ranks", "1,1"], None).contains("no tensor"));
    assert!(run_fails(&["tucker", &weights, "--ranks", "1"], None).contains("r_out,r_in"));
}
