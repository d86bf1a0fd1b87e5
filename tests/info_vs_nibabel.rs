//! `bedside info` agrees with nibabel (the reference NIfTI reader) on real
//! files and on fixtures covering the format's corners: shape, affine to 1e-4,
//! orientation codes, datatype, and intensity statistics.
//!
//! nibabel runs from the venv the test setup makes (`BEDSIDE_PYTHON`).
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI and Python

mod common;

use std::path::PathBuf;

use common::*;
use serde_json::Value;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn info_matches_nibabel() {
    // Real volumes: Colin27 (a real subject) and nibabel's own test images.
    let mut files: Vec<PathBuf> = [
        "colin27/ch2.nii.gz",
        "colin27/ch2bet.nii.gz",
        "colin27/ch2better.nii.gz",
        "nibabel/anatomical.nii",
        "nibabel/reoriented_anat_moved.nii",
        "nibabel/standard.nii.gz",
    ]
    .iter()
    .map(|f| data(f))
    .collect();
    // Fixtures: NIfTI-2, scaling, qform with qfac -1, oblique sform, LPS,
    // big-endian, no transform, 4D with one volume.
    let fixtures = scratch_dir("nibabel_fixtures");
    let listed = run_python(&[reference_script("make_fixtures.py"), fixtures.display().to_string()]);
    let mut refused = Vec::new();
    for line in listed.lines().filter(|l| !l.trim().is_empty()) {
        let p = PathBuf::from(line.trim());
        if p.to_string_lossy().contains("three_volumes") {
            refused.push(p);
        } else {
            files.push(p);
        }
    }
    assert!(files.len() >= 15, "expected the fixtures too, got {files:?}");

    let mut args = vec![reference_script("nibabel_info.py")];
    args.extend(files.iter().map(|p| p.display().to_string()));
    let reference: Vec<Value> = serde_json::from_str(&run_python(&args)).expect("nibabel JSON");

    for (file, want) in files.iter().zip(&reference) {
        let (ok, stdout, stderr) = run(&["info", "--json", file.to_str().unwrap()]);
        assert!(ok, "info failed on {}: {stderr}", file.display());
        let got: Value = serde_json::from_str(&stdout).expect("info JSON");
        let name = file.display();
        assert_eq!(got["shape"], want["shape"], "{name}: shape");
        assert_eq!(got["orientation"], want["orientation"], "{name}: orientation");
        assert_eq!(got["datatype"], want["datatype"], "{name}: datatype");
        for r in 0..4 {
            for c in 0..4 {
                let (g, w) = (got["affine"][r][c].as_f64().unwrap(), want["affine"][r][c].as_f64().unwrap());
                assert!((g - w).abs() < 1e-4, "{name}: affine[{r}][{c}] {g} vs {w}");
            }
        }
        for stat in ["min", "max", "mean"] {
            match (got[stat].as_f64(), want[stat].as_f64()) {
                (Some(g), Some(w)) => assert!(close(g, w, 1e-5), "{name}: {stat} {g} vs {w}"),
                (None, None) => {} // NaN voxels: both report null
                (g, w) => panic!("{name}: {stat} {g:?} vs {w:?}"),
            }
        }
    }
    for file in refused {
        let (ok, _, stderr) = run(&["info", file.to_str().unwrap()]);
        assert!(!ok && stderr.to_lowercase().contains("4d"), "{} must be refused: {stderr}", file.display());
    }
}
