//! One volume of a 4D series, and NaN voxels, through `bedside segment`:
//! volume N of a series segments exactly like the same volume written as a
//! 3D file by nibabel, and NaN voxels are segmented as background and
//! labelled 0, the rest of the mask unchanged (`inference::pipeline::fill_non_finite`).
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI and Python

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn segment(image: &Path, out: &Path, extra: &[&str]) -> Value {
    let (i, o) = (image.display().to_string(), out.display().to_string());
    let mut args = vec!["segment", "--json", "--model", "models/student-s", "--out", &o];
    args.extend_from_slice(extra);
    args.push(&i);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "segment {i} failed: {stderr}");
    serde_json::from_str(&stdout).expect("segment JSON")
}

fn mask(path: &Path) -> bedside::volume::Volume {
    bedside::volume::read_nifti(&std::fs::read(path).expect("the mask")).expect("a NIfTI mask")
}

fn python(code: &str, args: &[&Path]) {
    let mut argv = vec!["-c".to_string(), code.to_string()];
    argv.extend(args.iter().map(|p| p.display().to_string()));
    run_python(&argv);
}

#[test]
fn a_chosen_volume_segments_like_that_volume_as_a_3d_file() {
    let dir = scratch_dir("series");
    let series = data("nibabel/example4d.nii.gz");
    let single = dir.join("example4d_volume1.nii.gz");
    python(
        "import sys, nibabel as nib\n\
         img = nib.load(sys.argv[1])\n\
         nib.Nifti1Image(img.dataobj[..., 1], img.affine, img.header).to_filename(sys.argv[2])",
        &[&series, &single],
    );
    let (from_series, from_single) = (dir.join("mask_series.nii.gz"), dir.join("mask_single.nii.gz"));
    let report = segment(&series, &from_series, &["--volume", "1"]);
    assert_eq!(report["volume"], 1);
    segment(&single, &from_single, &[]);
    let (a, b) = (mask(&from_series), mask(&from_single));
    assert_eq!(a.header.shape(), vec![128, 96, 24], "the mask of one volume is 3D");
    assert_eq!(a.affine, b.affine);
    assert!(a.data.iter().any(|&v| v > 0.0), "an empty mask proves nothing");
    assert_eq!(a.data, b.data, "volume 1 of the series and the same volume as a 3D file give different masks");
    // The first volume is a different image: its mask differs (the option is not ignored).
    let first = dir.join("mask_first.nii.gz");
    segment(&series, &first, &[]);
    assert_ne!(mask(&first).data, a.data, "volumes 0 and 1 gave the same mask");
}

#[test]
fn nan_voxels_are_background_and_labelled_zero() {
    let dir = scratch_dir("nan_voxels");
    let sample = Path::new("www/sample/ch2.nii.gz");
    let (with_nan, filled) = (dir.join("ch2_nan.nii.gz"), dir.join("ch2_filled.nii.gz"));
    // A slab through the middle of the brain, as NaN; and the same slab set
    // to the darkest finite intensity, which is what the pipeline promises to
    // segment in its place.
    python(
        "import sys, numpy as np, nibabel as nib\n\
         img = nib.load(sys.argv[1])\n\
         data = img.get_fdata(dtype=np.float32)\n\
         data[:, :, 70:76] = np.nan\n\
         out = lambda d, p: nib.Nifti1Image(d, img.affine).to_filename(p)\n\
         out(data, sys.argv[2])\n\
         out(np.where(np.isnan(data), np.nanmin(data), data).astype(np.float32), sys.argv[3])",
        &[sample, &with_nan, &filled],
    );
    let (mask_nan, mask_filled) = (dir.join("mask_nan.nii.gz"), dir.join("mask_filled.nii.gz"));
    let report = segment(&with_nan, &mask_nan, &[]);
    segment(&filled, &mask_filled, &[]);
    let (a, b) = (mask(&mask_nan), mask(&mask_filled));
    let [nx, ny, _] = a.dims;
    let slab = |i: usize| (70..76).contains(&(i / (nx * ny)));
    let slab_voxels = (0..a.data.len()).filter(|&i| slab(i)).count();
    assert_eq!(report["non_finite_voxels"], slab_voxels, "{report}");
    assert!((0..b.data.len()).any(|i| slab(i) && b.data[i] > 0.0), "the slab must cut the brain for this test to mean anything");
    for i in 0..a.data.len() {
        let want = if slab(i) { 0.0 } else { b.data[i] };
        assert_eq!(a.data[i], want, "voxel {i}");
    }
    // The label volumes count what the mask holds, without the slab.
    let brain_mm3 = report["label_volumes_mm3"]["brain"].as_f64().expect("brain volume");
    let voxels = a.data.iter().filter(|&&v| v == 1.0).count() as f64;
    assert!((brain_mm3 - voxels * a.voxel_volume_mm3()).abs() < 1e-6 * brain_mm3, "{brain_mm3} mm³ for {voxels} voxels");
}

#[test]
fn an_image_with_no_finite_voxel_is_refused() {
    let dir = scratch_dir("all_nan");
    let image = dir.join("all_nan.nii.gz");
    python(
        "import sys, numpy as np, nibabel as nib\n\
         nib.Nifti1Image(np.full((32, 32, 32), np.nan, np.float32), np.eye(4)).to_filename(sys.argv[1])",
        &[&image],
    );
    let out = dir.join("never.nii.gz");
    let (i, o) = (image.display().to_string(), out.display().to_string());
    let stderr = run_fails(&["segment", "--model", "models/student-s", "--out", &o, &i], Some(&out));
    assert!(stderr.contains("every voxel of the image is nan or infinite: there is nothing to segment"), "{stderr}");
}
