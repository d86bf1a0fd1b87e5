//! `bedside info` agrees with nibabel (the reference NIfTI reader) on real
//! files and on fixtures covering the format's corners: shape, affine to 1e-4,
//! orientation codes, datatype, and intensity statistics.
//!
//! nibabel runs from the venv the test setup makes (`BEDSIDE_PYTHON`).
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI and Python

mod common;


use common::*;
use serde_json::Value;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn info_matches_nibabel() {
    // Real volumes: Colin27 (a real subject) and nibabel's own test images,
    // its 4D series among them ("#N": the volume whose statistics are compared).
    let mut files: Vec<String> = [
        "colin27/ch2.nii.gz",
        "colin27/ch2bet.nii.gz",
        "colin27/ch2better.nii.gz",
        "nibabel/anatomical.nii",
        "nibabel/reoriented_anat_moved.nii",
        "nibabel/standard.nii.gz",
        "nibabel/example4d.nii.gz",
        "nibabel/example4d.nii.gz#1",
        "nibabel/functional.nii#19",
        "nibabel/example_nifti2.nii.gz#1",
    ]
    .iter()
    .map(|f| {
        let (file, index) = f.split_once('#').map_or((*f, None), |(file, i)| (file, Some(i)));
        let path = data(file).display().to_string();
        index.map_or(path.clone(), |i| format!("{path}#{i}"))
    })
    .collect();
    // Fixtures: NIfTI-2, scaling, qform with qfac -1, oblique sform, LPS,
    // big-endian, no transform, 4D with one volume and with three, NaN voxels.
    let fixtures = scratch_dir("nibabel_fixtures");
    let listed = run_python(&[reference_script("make_fixtures.py"), fixtures.display().to_string()]);
    let mut series = None;
    for line in listed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("three_volumes") {
            series = Some(line.to_string());
            files.extend((0..3).map(|i| format!("{line}#{i}")));
        } else {
            files.push(line.to_string());
        }
    }
    assert!(files.len() >= 25, "expected the fixtures too, got {files:?}");

    let mut args = vec![reference_script("nibabel_info.py")];
    args.extend(files.iter().cloned());
    let reference: Vec<Value> = serde_json::from_str(&run_python(&args)).expect("nibabel JSON");

    for (file, want) in files.iter().zip(&reference) {
        let (path, index) = file.split_once('#').unwrap_or((file, "0"));
        let (ok, stdout, stderr) = run(&["info", "--json", "--volume", index, path]);
        assert!(ok, "info failed on {file}: {stderr}");
        let got: Value = serde_json::from_str(&stdout).expect("info JSON");
        for key in ["shape", "volume_shape", "volumes", "volume", "time_step", "time_unit", "orientation", "datatype", "nan_voxels"] {
            assert_eq!(got[key], want[key], "{file}: {key}");
        }
        for r in 0..4 {
            for c in 0..4 {
                let (g, w) = (got["affine"][r][c].as_f64().unwrap(), want["affine"][r][c].as_f64().unwrap());
                assert!((g - w).abs() < 1e-4, "{file}: affine[{r}][{c}] {g} vs {w}");
            }
        }
        for stat in ["min", "max", "mean"] {
            match (got[stat].as_f64(), want[stat].as_f64()) {
                (Some(g), Some(w)) => assert!(close(g, w, 1e-5), "{file}: {stat} {g} vs {w}"),
                (None, None) => {} // not a finite number: both report null
                (g, w) => panic!("{file}: {stat} {g:?} vs {w:?}"),
            }
        }
    }
    // The NaN fixture has a statistic to compare, not nulls.
    let nan = reference.iter().find(|r| r["path"].as_str().is_some_and(|p| p.contains("nan_voxels"))).expect("the NaN fixture");
    assert!(nan["mean"].as_f64().is_some() && nan["nan_voxels"].as_u64() > Some(0), "{nan}");
    // A volume the series does not hold is refused, by number.
    let series = series.expect("the three-volume fixture");
    let (ok, _, stderr) = run(&["info", "--volume", "3", &series]);
    assert!(!ok && stderr.contains("there is no volume 3 in this file: it holds 3"), "{stderr}");
}
