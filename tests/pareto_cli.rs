//! `bedside pareto` as a user runs it: a shipped student and its Tucker-2 at
//! two factors on Colin27, timed and compared with the original and with the
//! independent mask; the fastest model within the margin is named; bad
//! requests are refused with a reason.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use common::*;
use serde_json::Value;

fn colin27_with_mask() -> String {
    format!("{}:{}", data("colin27/ch2.nii.gz").display(), data("colin27/ch2bet.nii.gz").display())
}

#[test]
fn student_m_sweep_measures_every_factor_and_names_the_fastest_passing() {
    let (ok, stdout, stderr) = run(&["pareto", "models/student-m", &colin27_with_mask(), "--factors", "0.6,0.9", "--margin", "0.01", "--json"]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["backend"], "cpu");
    let sweep = &out["sweep"];
    let points = sweep["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "the original, then one point per factor");
    let f = |p: &Value, k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k} in {p}"));
    let brain = |p: &Value, k: &str| p[k][0]["dice"].as_f64().unwrap();

    // The original: itself exactly, and the Dice against ch2bet that bedside evaluate recorded in model.json.
    let original = &points[0];
    assert!(original["factor"].is_null());
    assert_eq!(brain(original, "dice_vs_original"), 1.0);
    let recorded = recorded_colin27_dice(&shipped_manifest("student-m"));
    assert!((brain(original, "dice_vs_reference") - recorded).abs() < 2e-3, "{original} vs recorded {recorded}");
    assert_eq!(original["params"].as_u64(), Some(515_118));

    // Measured here: factor 0.6 keeps 221,896 parameters and Dice 0.865 against
    // the original (a FAIL at 0.01); 0.9 keeps 471,248 and Dice 0.999 (a PASS).
    let (sixty, most) = (&points[1], &points[2]);
    assert_eq!(sixty["factor"].as_f64(), Some(0.6));
    assert!(f(sixty, "params") < 0.45 * f(original, "params"), "{sixty}");
    assert!(f(sixty, "flops") < f(most, "flops") && f(most, "flops") < f(original, "flops"));
    assert!((0.80..0.99).contains(&brain(sixty, "dice_vs_original")), "{sixty}");
    assert_eq!(sixty["verdict"]["passes"], false);
    assert_eq!(sixty["verdict"]["worst_label"], "brain");
    assert!(brain(most, "dice_vs_original") > 0.99, "{most}");
    assert_eq!(most["verdict"]["passes"], true);
    for p in points {
        assert!(f(p, "ms") > 0.0 && f(p, "inference_ms") > 0.0 && f(p, "inference_ms") <= f(p, "ms"), "{p}");
        let drop = 1.0 - brain(p, "dice_vs_original");
        assert!((f(&p["verdict"], "worst_drop") - drop).abs() < 1e-12, "{p}");
        assert_eq!(f(p, "worst_reference_dice"), brain(p, "dice_vs_reference"), "one label: its Dice is the lowest");
    }
    assert!(f(sixty, "compress_ms") > 0.0 && f(original, "compress_ms") == 0.0);

    // The named model is the fastest of those that pass.
    let passing: Vec<usize> = (0..3).filter(|&i| points[i]["verdict"]["passes"] == true).collect();
    let fastest = passing.iter().copied().min_by(|&a, &b| f(&points[a], "ms").total_cmp(&f(&points[b], "ms"))).unwrap();
    assert_eq!(sweep["fastest_passing"].as_u64(), Some(fastest as u64));
    assert_eq!(sweep["margin"].as_f64(), Some(0.01));

    // A margin nothing compressed meets leaves the original as the answer.
    let (ok, stdout, stderr) = run(&["pareto", "models/student-m", data("colin27/ch2.nii.gz").to_str().unwrap(), "--factors", "0.5", "--margin", "0", "--json"]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["sweep"]["fastest_passing"].as_u64(), Some(0));
    assert!(out["sweep"]["points"][0]["dice_vs_reference"].is_null());
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let image = data("colin27/ch2.nii.gz").display().to_string();
    let message = run_fails(&["pareto", "models/student-m", &image, "--factors", "0.5,1.5"], None);
    assert!(message.contains("1.5: factors lie in (0, 1]"), "{message}");
    let message = run_fails(&["pareto", "models/student-m", &image, "--factors", "half"], None);
    assert!(message.contains("--factors half"), "{message}");
    let message = run_fails(&["pareto", "models/student-m", &image, "--margin=-1", "--factors", "0.5"], None);
    assert!(message.contains("margin -1"), "{message}");
    // A reference on another grid (ROBEX's mask under Colin27's image).
    let wrong = format!("{image}:{}", data("robex/atlas_mask.nii.gz").display());
    let message = run_fails(&["pareto", "models/student-m", &wrong, "--factors", "0.5"], None);
    assert!(message.contains("reference grid"), "{message}");
    let message = run_fails(&["pareto", "no-such-model", &image], None);
    assert!(message.contains("no model package"), "{message}");
}
