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

use std::path::Path;

use bedside::volume::{dicom, read_nifti};
use common::dicom_series::{dcm2niix, files_of, named, series, Series};
use common::*;
use serde_json::Value;

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
    assert!(got["dicom_series"]["slices"].as_u64() >= Some(1), "{name}: {got}");
}

#[test]
fn series_read_as_dcm2niix_converts_them() {
    let work = scratch_dir("dicom_dcm2niix");
    let mut checked = 0;
    // JPEG Baseline is lossy: decoders may round differently, so it has its own test below.
    for s in series().iter().filter(|s| s.expect == "ok" && !["two_series", "jpeg_baseline"].contains(&s.name.as_str())) {
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

/// pydicom's own test files (from its wheel, in the test venv).
fn pydicom_test_file(name: &str) -> std::path::PathBuf {
    let dir = run_python(&["-c".into(), "import os, pydicom.data; print(os.path.dirname(pydicom.data.get_testdata_file('MR_small.dcm')))".into()]);
    Path::new(dir.trim()).join(name)
}

#[test]
fn pydicom_test_files_decode_as_the_uncompressed_original() {
    let read = |name: &str| {
        let path = pydicom_test_file(name);
        dicom::read_chosen(&[(name.to_string(), std::fs::read(&path).unwrap())], None).unwrap_or_else(|e| panic!("{name}: {e}")).0
    };
    let original = read("MR_small.dcm");
    assert_eq!(original.dims, [64, 64, 1]);
    for name in ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_RLE.dcm", "MR_small_padded.dcm"] {
        let v = read(name);
        assert_eq!(v.affine, original.affine, "{name}: geometry");
        assert!(v.data == original.data, "{name}: the voxels differ from MR_small.dcm's");
    }
    // MR_small itself as dcm2niix converts it.
    let folder = scratch_dir("pydicom_mr_small");
    std::fs::copy(pydicom_test_file("MR_small.dcm"), folder.join("MR_small.dcm")).unwrap();
    let series = Series { name: "MR_small".into(), folder: folder.clone(), expect: "ok".into() };
    let converted = dcm2niix(&folder, &scratch_dir("pydicom_mr_small_nifti"));
    agrees(&series, None, &converted[0]);
}

#[test]
fn jpeg_ls_and_jpeg_2000_are_refused_by_name() {
    for (name, expect) in [
        ("MR_small_jpeg_ls_lossless.dcm", "transfer syntax jpeg-ls lossless image compression (1.2.840.10008.1.2.4.80) is not supported"),
        ("MR_small_jp2klossless.dcm", "transfer syntax jpeg 2000 image compression (lossless only) (1.2.840.10008.1.2.4.90) is not supported"),
    ] {
        let stderr = run_fails(&["info", pydicom_test_file(name).to_str().unwrap()], None);
        assert!(stderr.contains(expect), "{name}: {stderr}");
        assert!(stderr.contains("rle lossless") && stderr.contains("jpeg lossless"), "the message says what is read: {stderr}");
    }
}

/// libjpeg-turbo's decoding of a JPEG series (Pillow, through pydicom), as a
/// NIfTI file on the grid of `like` (dcm2niix's NIfTI of it): slices sorted
/// along their normal, rows flipped as dcm2niix stores them.
const LIBJPEG_AS_NIFTI: &str = "import sys, os, numpy as np, nibabel as nib, pydicom\n\
folder, like, out = sys.argv[1:]\n\
ds = [pydicom.dcmread(os.path.join(folder, n)) for n in os.listdir(folder)]\n\
normal = np.cross(*np.reshape([float(v) for v in ds[0].ImageOrientationPatient], (2, 3)))\n\
ds.sort(key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], normal)))\n\
data = np.stack([d.pixel_array.T[:, ::-1] for d in ds], axis=2).astype(np.float32)\n\
nib.save(nib.Nifti1Image(data, nib.load(like).affine), out)\n";

#[test]
fn a_jpeg_baseline_series_decodes_as_libjpeg_does_within_its_rounding() {
    let s = named("jpeg_baseline");
    let work = scratch_dir("dicom_jpeg_baseline");
    let converted = dcm2niix(&s.folder, &work.join("dcm2niix"));
    let (ours, _) = dicom::read_chosen(&files_of(&s.folder), None).unwrap_or_else(|e| panic!("{e}"));
    let theirs = read_nifti(&std::fs::read(&converted[0]).unwrap()).unwrap();
    assert_eq!(ours.dims, theirs.dims, "grid");
    for (r, c) in (0..4).flat_map(|r| (0..4).map(move |c| (r, c))) {
        assert!((ours.affine[r][c] - theirs.affine[r][c]).abs() < 1e-3, "affine[{r}][{c}]: {} vs dcm2niix {}", ours.affine[r][c], theirs.affine[r][c]);
    }
    let libjpeg = work.join("libjpeg.nii");
    run_python(&["-c".into(), LIBJPEG_AS_NIFTI.into(), s.folder.display().to_string(), converted[0].display().to_string(), libjpeg.display().to_string()]);
    let reference = read_nifti(&std::fs::read(&libjpeg).unwrap()).unwrap();
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let differing = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64;
    let (ours_vs_libjpeg, dcm2niix_vs_libjpeg) = (diff(&ours.data, &reference.data), diff(&theirs.data, &reference.data));
    eprintln!(
        "# JPEG Baseline, 40 slices: bedside vs libjpeg-turbo: max {ours_vs_libjpeg} ({:.2} % of voxels differ); dcm2niix vs libjpeg-turbo: max {dcm2niix_vs_libjpeg} ({:.2} %)",
        100.0 * differing(&ours.data, &reference.data),
        100.0 * differing(&theirs.data, &reference.data)
    );
    assert!(ours.data.iter().any(|&v| v > 100.0), "an empty image proves nothing");
    assert!(ours_vs_libjpeg <= 1.0, "bedside's JPEG decoding strays {ours_vs_libjpeg} from libjpeg-turbo's");
}
