//! A head at another resolution gives each model the same mask (issue 17,
//! item 4). Colin27 (1 mm) is resampled over the same field of view to 0.5,
//! 0.7, 1.5 and 2 mm (`tests/reference/head_variants.py`, cubic B-spline).
//! Each shipped student's mask there must agree with its mask on the 1 mm
//! original within Dice 0.98, compared on the coarser of the two grids (the
//! finer mask brought onto it by nearest neighbour). This guards the resampling path both ways: to the model's
//! 1.5 mm grid, and the labels back to the file's grid.
//!
//! The collapse reported on "Colin27 at 0.5 mm" (student-s 0.479) is the
//! field of view of that grid, not its resolution. The same crop at 1 mm
//! collapses alike, and the whole head at 0.5 mm does not (README,
//! Students).
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI and Python

mod common;

use common::*;

#[test]
fn a_head_at_another_resolution_gives_each_student_the_same_mask() {
    let dir = scratch_dir("resolution");
    let ch2 = data("colin27/ch2.nii.gz");
    let path = |p: &std::path::Path| p.display().to_string();
    let mut args = vec![reference_script("head_variants.py"), "resample".into(), path(&ch2), path(&dir)];
    args.extend(["0.5", "0.7", "1.5", "2"].map(String::from));
    let listing = run_python(&args);
    let variants: Vec<(&str, &str)> = listing.lines().filter_map(|l| l.split_once('\t')).collect();
    assert_eq!(variants.len(), 4, "{listing}");
    for model in ["student-s", "student-m"] {
        let package = format!("{}/models/{model}", env!("CARGO_MANIFEST_DIR"));
        let segment = |image: &str, out: &std::path::Path| {
            let (ok, _, stderr) = run(&["segment", "--model", &package, "--out", &path(out), image]);
            assert!(ok, "{model} on {image}: {stderr}");
        };
        let at_1mm = dir.join(format!("{model}-1mm-mask.nii.gz"));
        segment(&path(&ch2), &at_1mm);
        for (spacing, image) in &variants {
            let mask = dir.join(format!("{model}-{spacing}mm-mask.nii.gz"));
            segment(image, &mask);
            let dice: f64 = run_python(&[reference_script("head_variants.py"), "dice".into(), path(&mask), path(&at_1mm)])
                .trim()
                .parse()
                .expect("a Dice");
            eprintln!("{model}: {spacing} mm against 1 mm, Dice {dice:.4}");
            assert!(dice >= 0.98, "{model}: the head at {spacing} mm gives a mask with Dice {dice:.4} against its 1 mm mask");
        }
    }
}
