//! DICOM SEG out (issue 20): `bedside segment DIR --out-seg FILE` writes a
//! binary Segmentation object that highdicom reads, that dciodvfy
//! (dicom3tools) passes without an error, that references the source series
//! and its instances, carries the model's label, codes, colour and
//! algorithm, and whose frames hold the NIfTI mask written by the same run,
//! checked pixel by pixel through world coordinates
//! (`tests/reference/check_seg.py`).
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI, Python and dciodvfy

mod common;

use std::path::Path;
use std::process::Command;

use common::dicom_series::named;
use common::*;
use serde_json::Value;

/// Segments `series` with student-s into a SEG and a NIfTI mask, and checks
/// the SEG with highdicom against both.
fn segment_and_check(series: &str) -> (Value, std::path::PathBuf) {
    let s = named(series);
    let work = scratch_dir(&format!("dicom_seg_{series}"));
    let (seg, mask) = (work.join("seg.dcm"), work.join("mask.nii.gz"));
    let (ok, stdout, stderr) = run(&[
        "segment",
        "--json",
        "--model",
        "models/student-s",
        "--out",
        mask.to_str().unwrap(),
        "--out-seg",
        seg.to_str().unwrap(),
        s.folder.to_str().unwrap(),
    ]);
    assert!(ok, "segment {series}: {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("segment JSON");
    assert_eq!(report["out_seg"], seg.display().to_string());
    let checked: Value = serde_json::from_str(&run_python(&[
        reference_script("check_seg.py"),
        seg.display().to_string(),
        s.folder.display().to_string(),
        mask.display().to_string(),
    ]))
    .expect("check_seg.py JSON");
    (checked, seg)
}

/// dciodvfy's errors on `file` (its warnings are printed, not held against it).
fn dciodvfy_errors(file: &Path) -> Vec<String> {
    let out = Command::new("dciodvfy").arg(file).output().expect("dciodvfy runs (apt package dicom3tools, installed by scripts/setup)");
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    eprintln!("# dciodvfy {}:\n{text}", file.display());
    text.lines().filter(|l| l.starts_with("Error")).map(str::to_string).collect()
}

#[test]
fn a_seg_of_an_oblique_series_holds_the_mask_and_passes_highdicom_and_dciodvfy() {
    let (checked, seg) = segment_and_check("oblique");
    assert_eq!(checked["series_ok"], true, "the SEG must reference the source series and exactly its instances: {checked}");
    assert_eq!(checked["study_ok"], true, "{checked}");
    assert_eq!(checked["patient_ok"], true, "{checked}");
    let segments = checked["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1, "student-s has one label besides the background: {checked}");
    let brain = &segments[0];
    assert_eq!(brain["label"], "brain");
    assert_eq!(brain["type"]["value"], "12738006", "SNOMED CT Brain, from model.json");
    assert_eq!(brain["category"]["meaning"], "Anatomical Structure");
    assert_eq!(brain["algorithm_type"], "AUTOMATIC");
    assert_eq!(brain["algorithm_name"], "student-s");
    let version = brain["algorithm_version"].as_str().unwrap();
    assert!(version.len() == 16 && version.chars().all(|c| c.is_ascii_hexdigit()), "version {version}");
    // model.json's colour [255, 80, 60] as CIELab.
    let lab = brain["cielab"].as_array().unwrap();
    assert!(lab[0].as_u64().unwrap() > 30000 && lab[1].as_u64().unwrap() > 45000, "{lab:?}");
    assert_eq!(checked["frames"], 40, "one frame per source slice");
    assert!(checked["foreground"].as_u64().unwrap() > 10_000, "an empty mask proves nothing: {checked}");
    assert_eq!(checked["mismatched"], 0, "the SEG's frames must hold the NIfTI mask, pixel for pixel: {checked}");
    assert_eq!(dciodvfy_errors(&seg), Vec::<String>::new());
}

#[test]
fn a_seg_of_a_series_numbered_downwards_keeps_each_frame_on_its_slice() {
    // The files' order is the reverse of the volume's: each frame must still
    // name the slice it was made from.
    let (checked, _) = segment_and_check("descending");
    assert_eq!(checked["series_ok"], true, "{checked}");
    assert!(checked["foreground"].as_u64().unwrap() > 10_000, "{checked}");
    assert_eq!(checked["mismatched"], 0, "{checked}");
}

#[test]
fn a_seg_needs_a_dicom_series() {
    let out = scratch_dir("dicom_seg_nifti").join("seg.dcm");
    let stderr = run_fails(
        &["segment", "--model", "models/student-s", "--out-seg", out.to_str().unwrap(), "www/sample/ch2.nii.gz"],
        Some(&out),
    );
    assert!(stderr.contains("a dicom seg points back to the dicom series it was made from; this is a nifti file"), "{stderr}");
}
