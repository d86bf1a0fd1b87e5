//! DICOM series in (issue 20): `bedside info` on a folder of DICOM slices
//! agrees with dcm2niix + nibabel, and bedside's volume is dcm2niix's voxel
//! for voxel, on series written by pydicom from Colin27 with its geometry
//! (`tests/reference/make_dicom_series.py`: axial, oblique, slices numbered
//! downwards, shuffled file names, rescaled, implicit VR, big endian,
//! deflated, two series in one folder). The broken series are refused with
//! the reason, and a series segments as dcm2niix's NIfTI of it does.
//!
//! dcm2niix (Debian) and pydicom (the test venv) come from `scripts/setup`.
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI, Python and dcm2niix

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use bedside::volume::{dicom, read_nifti};
use common::*;
use serde_json::Value;

struct Series {
    name: String,
    folder: PathBuf,
    expect: String,
}

/// The series, written once per test process.
fn series() -> &'static [Series] {
    static SERIES: OnceLock<Vec<Series>> = OnceLock::new();
    SERIES.get_or_init(|| {
        let out = scratch_dir("dicom_series");
        let listed = run_python(&[reference_script("make_dicom_series.py"), "www/sample/ch2.nii.gz".into(), out.display().to_string()]);
        listed
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.trim().split('\t');
                let mut next = || parts.next().expect("name, folder, expectation").to_string();
                Series { name: next(), folder: PathBuf::from(next()), expect: next() }
            })
            .collect()
    })
}

fn named(name: &str) -> &'static Series {
    series().iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no series {name}"))
}

/// dcm2niix's NIfTI files of `folder` (one per series, named by series number).
fn dcm2niix(folder: &Path, out: &Path) -> Vec<PathBuf> {
    // dcm2niix renames rather than overwrites (1a.nii): start from an empty folder.
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("dcm2niix output folder");
    let status = Command::new("dcm2niix")
        .args(["-z", "n", "-b", "n", "-f", "%s", "-o"])
        .arg(out)
        .arg(folder)
        .output()
        .expect("dcm2niix runs (apt package dcm2niix, installed by scripts/setup)");
    assert!(status.status.success(), "dcm2niix failed on {}: {}", folder.display(), String::from_utf8_lossy(&status.stdout));
    let mut files: Vec<PathBuf> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "nii")).collect();
    files.sort();
    files
}

fn files_of(folder: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

fn info(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = run(args);
    assert!(ok, "info {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).expect("info JSON")
}

/// bedside's volume of `series` (`choice`) against dcm2niix's NIfTI `expected`:
/// the same grid and voxels, the affine within 1e-3; and `bedside info` on the
/// folder against nibabel on dcm2niix's file.
fn agrees(series: &Series, choice: Option<&str>, expected: &Path) {
    let name = &series.name;
    let (ours, _) = dicom::read_chosen(&files_of(&series.folder), choice).unwrap_or_else(|e| panic!("{name}: {e}"));
    let theirs = read_nifti(&std::fs::read(expected).unwrap()).expect("dcm2niix's NIfTI");
    assert_eq!(ours.dims, theirs.dims, "{name}: grid");
    assert!(ours.data == theirs.data, "{name}: the voxels differ from dcm2niix's");
    let reference: Vec<Value> = serde_json::from_str(&run_python(&[reference_script("nibabel_info.py"), expected.display().to_string()])).unwrap();
    let want = &reference[0];
    let folder = series.folder.display().to_string();
    let mut args = vec!["info", "--json", folder.as_str()];
    if let Some(c) = choice {
        args.extend(["--series", c]);
    }
    let got = info(&args);
    for key in ["shape", "orientation", "datatype"] {
        assert_eq!(got[key], want[key], "{name}: {key}");
    }
    for r in 0..4 {
        for c in 0..4 {
            let (g, w) = (got["affine"][r][c].as_f64().unwrap(), want["affine"][r][c].as_f64().unwrap());
            assert!((g - w).abs() < 1e-3, "{name}: affine[{r}][{c}] {g} vs dcm2niix {w}");
        }
    }
    for stat in ["min", "max", "mean"] {
        let (g, w) = (got[stat].as_f64().unwrap(), want[stat].as_f64().unwrap());
        assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{name}: {stat} {g} vs {w}");
    }
    assert!(got["dicom_series"]["slices"].as_u64() > Some(1), "{name}: {got}");
}

#[test]
fn series_read_as_dcm2niix_converts_them() {
    let work = scratch_dir("dicom_dcm2niix");
    let mut checked = 0;
    for s in series().iter().filter(|s| s.expect == "ok" && s.name != "two_series") {
        // dcm2niix does not read deflated files ("Unsupported transfer
        // syntax"): that series holds the axial one's slices, so it is held
        // to dcm2niix's NIfTI of those.
        let source = if s.name == "deflated" { named("axial") } else { s };
        let converted = dcm2niix(&source.folder, &work.join(&s.name));
        assert_eq!(converted.len(), 1, "{}: dcm2niix wrote {converted:?}", s.name);
        agrees(s, None, &converted[0]);
        checked += 1;
    }
    assert!(checked >= 8, "only {checked} series checked");
}

#[test]
fn a_folder_with_two_series_names_them_and_reads_the_one_chosen() {
    let s = named("two_series");
    let folder = s.folder.display().to_string();
    let (ok, _, stderr) = run(&["info", &folder]);
    assert!(!ok, "two series must not be merged");
    assert!(stderr.contains("2 series among these files") && stderr.contains("\"bedside test two_series_b\", MR, 12 slices of 91×109"), "{stderr}");
    assert!(!stderr.contains("Phantom") && !stderr.contains("BEDSIDE-TEST"), "a patient identifier in a message: {stderr}");
    let converted = dcm2niix(&s.folder, &scratch_dir("dicom_two_series"));
    assert_eq!(converted.len(), 2, "{converted:?}");
    agrees(s, Some("1"), &converted[0]);
    agrees(s, Some("2"), &converted[1]);
    let (ok, _, stderr) = run(&["info", "--series", "3", &folder]);
    assert!(!ok && stderr.contains("there is no series 3 here: 2 series were found"), "{stderr}");
}

#[test]
fn a_zip_of_a_series_reads_as_its_folder() {
    let s = named("oblique");
    let zip = scratch_dir("dicom_zip").join("oblique.zip");
    run_python(&[
        "-c".into(),
        "import sys, os, zipfile\n\
         with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:\n\
         \x20   for n in sorted(os.listdir(sys.argv[1])): z.write(os.path.join(sys.argv[1], n), 'export/' + n)"
            .into(),
        s.folder.display().to_string(),
        zip.display().to_string(),
    ]);
    let (from_zip, from_folder) = (info(&["info", "--json", zip.to_str().unwrap()]), info(&["info", "--json", s.folder.to_str().unwrap()]));
    for key in ["shape", "affine", "min", "max", "mean", "dicom_series"] {
        assert_eq!(from_zip[key], from_folder[key], "{key}");
    }
    // A truncated archive is named as one.
    let bytes = std::fs::read(&zip).unwrap();
    let cut = zip.with_file_name("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let stderr = run_fails(&["info", cut.to_str().unwrap()], None);
    assert!(stderr.contains("not a readable zip archive"), "{stderr}");
}

#[test]
fn broken_series_are_refused_with_the_reason() {
    let mut refused = 0;
    for s in series().iter().filter(|s| s.expect != "ok") {
        let stderr = run_fails(&["info", &s.folder.display().to_string()], None);
        assert!(stderr.starts_with("bedside: "), "{}: no clear message: {stderr}", s.name);
        assert!(stderr.contains(&s.expect), "{}: expected \"{}\" in: {stderr}", s.name, s.expect);
        refused += 1;
    }
    assert!(refused >= 6, "only {refused} broken series");
}

#[test]
fn a_series_segments_as_its_dcm2niix_nifti() {
    let work = scratch_dir("dicom_segment");
    let s = named("oblique");
    let converted = dcm2niix(&s.folder, &work.join("nifti"));
    let (from_dicom, from_nifti) = (work.join("dicom_mask.nii.gz"), work.join("nifti_mask.nii.gz"));
    for (input, out) in [(s.folder.clone(), &from_dicom), (converted[0].clone(), &from_nifti)] {
        let (i, o) = (input.display().to_string(), out.display().to_string());
        let (ok, _, stderr) = run(&["segment", "--model", "models/student-s", "--out", &o, &i]);
        assert!(ok, "segment {i}: {stderr}");
    }
    let (a, b) = (read_nifti(&std::fs::read(&from_dicom).unwrap()).unwrap(), read_nifti(&std::fs::read(&from_nifti).unwrap()).unwrap());
    assert_eq!(a.dims, b.dims, "the mask is on the series' grid");
    for (r, c) in (0..4).flat_map(|r| (0..4).map(move |c| (r, c))) {
        assert!((a.affine[r][c] - b.affine[r][c]).abs() < 1e-3, "mask affine[{r}][{c}]: {} vs {}", a.affine[r][c], b.affine[r][c]);
    }
    let mask = |v: &bedside::volume::Volume| v.data.iter().map(|&x| (x > 0.0) as u8).collect::<Vec<u8>>();
    assert!(mask(&a).iter().any(|&v| v == 1), "an empty mask proves nothing");
    let d = bedside::metrics::dice(&mask(&a), &mask(&b));
    eprintln!("# oblique series vs its dcm2niix NIfTI, student-s: Dice {d}");
    assert!(d >= 0.999, "the series and dcm2niix's NIfTI of it segment differently: Dice {d}");
}
