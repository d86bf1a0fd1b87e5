//! `bedside lora train|merge` and `--adapter` on `segment` and `evaluate`, as
//! a site would run them: student-s adapted on SPM's avg152 PD head (one
//! labelled volume, a population average: smoother than a single scan),
//! validated on the avg152 T2 head; the merged package gives the same mask;
//! wrong bases, ranks and grids are refused with a message.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI

mod common;

use common::*;
use serde_json::Value;

fn avg152(name: &str) -> String {
    data(&format!("avg152/{name}")).display().to_string()
}

#[test]
fn a_student_adapts_to_pd_merges_and_refuses_the_wrong_base() {
    let dir = scratch_dir("lora_cli");
    let adapter = dir.join("adapter");
    let _ = std::fs::remove_dir_all(&adapter);
    let (pd, t2, mask) = (avg152("avg152PD.nii"), avg152("avg152T2.nii"), avg152("brainmask-0.5.nii.gz"));
    let (ok, stdout, stderr) = run(&[
        "lora", "train", "--model", "student-s", "--data", &format!("{pd}:{mask}"), "--val", &format!("{t2}:{mask}"),
        "--rank", "4", "--alpha", "8", "--targets", "all", "--steps", "30", "--lr", "5e-3", "--out", adapter.to_str().unwrap(), "--json",
    ]);
    assert!(ok, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    eprintln!("{report}");
    let (before, after) = (report["val_dice_before"].as_f64().unwrap(), report["val_dice_after"].as_f64().unwrap());
    // The base is far off on T2 (0.8794 recorded); the adapter learnt on PD lifts it.
    assert!(after > before + 0.02, "validation Dice on T2: {before:.4} -> {after:.4}");
    assert!(report["trainable_params"].as_u64().unwrap() < report["total_params"].as_u64().unwrap());
    let config: Value = serde_json::from_str(&std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["base_model_name_or_path"], "student-s");
    let weights = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    assert_eq!(weights.len() as u64, report["adapter_bytes"].as_u64().unwrap());

    // The adapter on, and merged into a package: the same Dice on T2.
    let merged = dir.join("merged");
    let _ = std::fs::remove_dir_all(&merged);
    let (ok, _, stderr) = run(&["lora", "merge", "--model", "student-s", "--adapter", adapter.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let dice_of = |args: &[&str]| -> f64 {
        let (ok, stdout, stderr) = run(args);
        assert!(ok, "{stderr}");
        let v: Value = serde_json::from_str(&stdout).unwrap();
        v["volumes"][0]["reference"]["dice"].as_f64().unwrap_or_else(|| panic!("{v}"))
    };
    let volume = format!("{t2}:{mask}");
    let on = dice_of(&["evaluate", "--model", "student-s", "--adapter", adapter.to_str().unwrap(), &volume, "--json"]);
    let folded = dice_of(&["evaluate", "--model", merged.to_str().unwrap(), &volume, "--json"]);
    assert!((on - after).abs() < 1e-9 && (folded - on).abs() < 1e-4, "adapter on {on}, merged {folded}, trained {after}");
    let out = dir.join("mask.nii.gz");
    let _ = std::fs::remove_file(&out);
    let (ok, stdout, stderr) = run(&["segment", &t2, "--model", "student-s", "--adapter", adapter.to_str().unwrap(), "--out", out.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"lora_adapter\""), "{stdout}");

    // Refusals: another base, a rank that fits nothing, a mask on another grid, --record.
    let err = run_fails(&["evaluate", "--model", "student-m", "--adapter", adapter.to_str().unwrap(), &volume], None);
    assert!(err.contains("trained on \"student-s\"") && err.contains("not on \"student-m\""), "{err}");
    let elsewhere = dir.join("never");
    let err = run_fails(&["lora", "train", "--model", "student-s", "--data", &format!("{pd}:{mask}"), "--rank", "0", "--out", elsewhere.to_str().unwrap()], Some(&elsewhere));
    assert!(err.contains("rank must be at least 1"), "{err}");
    let err = run_fails(&["lora", "train", "--model", "student-s", "--data", &format!("{pd}:{mask}"), "--rank", "100000", "--out", elsewhere.to_str().unwrap()], Some(&elsewhere));
    assert!(err.contains("above the full rank"), "{err}");
    let other_grid = data("icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii").display().to_string();
    let err = run_fails(&["lora", "train", "--model", "student-s", "--data", &format!("{pd}:{other_grid}"), "--out", elsewhere.to_str().unwrap()], Some(&elsewhere));
    assert!(err.contains("differs from the image's"), "{err}");
    let err = run_fails(&["evaluate", "--model", "student-s", "--adapter", adapter.to_str().unwrap(), "--record", &volume], None);
    assert!(err.contains("--record"), "{err}");
    let err = run_fails(&["lora", "train", "--model", "student-s", "--data", &format!("{pd}:{mask}"), "--unlabelled", &t2, "--out", elsewhere.to_str().unwrap()], Some(&elsewhere));
    assert!(err.contains("give --teacher too"), "{err}");
    // The adapted model's quality signal drops the base's T1-only contrast bound: the adapter
    // learnt the site's contrast (here PD; the T2 scan is within what it holds on, 0.95 above).
    let (ok, stdout, stderr) = run(&["evaluate", "--model", "student-s", "--adapter", adapter.to_str().unwrap(), &volume, "--json"]);
    assert!(ok, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["model"], "student-s-lora");
    let warnings = v["volumes"][0]["quality"]["warnings"].to_string();
    assert!(!warnings.contains("skewness"), "{warnings}");
}
