//! The shipped students hold on heads they have not seen, and never fail
//! silently (issue 17). Colin27 and ROBEX are probed where the students used
//! to break (`tests/reference/head_variants.py probe …`): cropped to the
//! brain's box plus 15 or 25 mm, padded with 40 mm of air, and conformed as
//! FreeSurfer conforms (256³, LIA, air around the head). Each student
//! segments each probe (`bedside evaluate`) and must meet the target
//! there: student-s ≥ 0.90 and student-m ≥ 0.93, or within 0.02 of HD-BET
//! on the same probe. The quality signal must flag every case more than 0.05
//! below HD-BET, and at most one in ten of the others; and it must flag a
//! scan that holds only the lower half of the brain. HD-BET's Dice per
//! probe are recorded from `scripts/probe-heads` (README, "Heads they have
//! not seen"), because running it here would take minutes per probe. The
//! other probes of the table (storage orders, resolutions) are guarded by
//! `tests/resolution.rs` and `tests/students.rs`, and cost CI time here.
//!
//! Other contrasts: the ICBM 2009c T2 head and SPM's avg152 T2 and PD heads
//! (`scripts/fetch-training-data icbm2009c avg152`). The shipped students
//! learnt from T1-weighted heads only and fall 0.05–0.14 below HD-BET there;
//! every one of those masks must carry a warning (the brain's volume, or the
//! core's skewness, which a T2 brain turns bright).
#![cfg(not(target_arch = "wasm32"))] // runs the native CLI and Python

mod common;

use common::*;
use serde_json::Value;

/// HD-BET (fold 0) on each probe, measured by `scripts/probe-heads`.
const HDBET: [(&str, &str, f64); 9] = [
    ("ch2", "crop-15mm", 0.9462),
    ("ch2", "pad-40mm", 0.9594),
    ("ch2", "conformed", 0.9526),
    ("atlas", "crop-15mm", 0.9670),
    ("atlas", "crop-25mm", 0.9676),
    ("atlas", "pad-40mm", 0.9680),
    ("atlas", "conformed", 0.9657),
    ("ch2", "partial-lower-half", 0.8906),
    ("atlas", "partial-lower-half", 0.9557),
];

/// The floor for each shipped student retrained on `zscore_head_box`.
const TARGETS: [(&str, f64); 2] = [("student-s", 0.90), ("student-m", 0.93)];

struct Case {
    model: &'static str,
    volume: String,
    probe: String,
    dice: f64,
    hdbet: f64,
    warned: bool,
    summary: String,
}

fn probes(dir: &std::path::Path, families: &str, pair: String) -> Vec<(String, String, String)> {
    let listing = run_python(&[reference_script("head_variants.py"), "probe".into(), dir.display().to_string(), families.into(), pair]);
    listing
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .map(|r| (r[0].to_string(), r[1].to_string(), r[3].to_string()))
        .filter(|(volume, probe, _)| HDBET.iter().any(|(v, p, _)| v == volume && p == probe))
        .collect()
}

/// Every shipped student on every probe: its Dice against the mask and its warnings.
fn cases() -> Vec<Case> {
    let dir = scratch_dir("quality-probes");
    let pair = |image: &str, mask: &str| format!("{}:{}", data(image).display(), data(mask).display());
    let mut all = probes(&dir, "fov,conform,partial", pair("colin27/ch2.nii.gz", "colin27/ch2bet.nii.gz"));
    all.extend(probes(&dir, "fov,conform,partial", pair("robex/atlas.nii.gz", "robex/atlas_mask.nii.gz")));
    assert_eq!(all.len(), HDBET.len(), "{:?}", all.iter().map(|p| format!("{} {}", p.0, p.1)).collect::<Vec<_>>());
    let mut out = Vec::new();
    for (model, _) in TARGETS {
        let package = format!("{}/models/{model}", env!("CARGO_MANIFEST_DIR"));
        for (volume, probe, images) in &all {
            let (ok, stdout, stderr) = run(&["evaluate", "--model", &package, images, "--json"]);
            assert!(ok, "{model} on {volume} {probe}: {stderr}");
            let row: Value = serde_json::from_str::<Value>(&stdout).unwrap()["volumes"][0].clone();
            let hdbet = HDBET.iter().find(|(v, p, _)| v == volume && p == probe).unwrap().2;
            let case = Case {
                model,
                volume: volume.clone(),
                probe: probe.clone(),
                dice: row["reference"]["dice"].as_f64().unwrap(),
                hdbet,
                warned: !row["quality"]["warnings"].as_array().unwrap().is_empty(),
                summary: row["quality"]["summary"].to_string(),
            };
            eprintln!("{model} {volume} {probe}: Dice {:.4} (HD-BET {hdbet:.4}), {}", case.dice, case.summary);
            out.push(case);
        }
    }
    out
}

#[test]
fn shipped_students_hold_where_they_used_to_break_and_the_signal_flags_a_partial_head() {
    let cases = cases();
    let name = |c: &Case| format!("{} {} {} ({:.4}, HD-BET {:.4})", c.model, c.volume, c.probe, c.dice, c.hdbet);
    let partial = |c: &&Case| c.probe.starts_with("partial");

    // The targets, on the probes.
    let below: Vec<String> = cases
        .iter()
        .filter(|c| !partial(c))
        .filter(|c| {
            let floor = TARGETS.iter().find(|(m, _)| *m == c.model).unwrap().1;
            c.dice < floor && c.dice < c.hdbet - 0.02
        })
        .map(name)
        .collect();
    assert!(below.is_empty(), "under target: {below:?}");

    // The flags: every case far below HD-BET, at most one in ten of the others.
    let (far, others): (Vec<&Case>, Vec<&Case>) = cases.iter().filter(|c| !partial(c)).partition(|c| c.dice < c.hdbet - 0.05);
    let missed: Vec<String> = far.iter().filter(|c| !c.warned).map(|c| name(c)).collect();
    let false_flags: Vec<String> = others.iter().filter(|c| c.warned).map(|c| name(c)).collect();
    assert!(missed.is_empty(), "far below HD-BET and not flagged: {missed:?}");
    assert!(false_flags.len() * 10 <= others.len(), "flagged though within 0.05 of HD-BET: {false_flags:?} of {}", others.len());

    // Half a brain is no brain to trust, whoever segments it.
    let unflagged: Vec<String> = cases.iter().filter(partial).filter(|c| !c.warned).map(name).collect();
    assert!(unflagged.is_empty(), "a partial head without a warning: {unflagged:?}");
}

/// HD-BET (fold 0) on the T2 and PD heads, against each one's brain mask
/// (README, "Other contrasts: T2 and PD").
const HDBET_CONTRASTS: [(&str, &str, f64); 3] = [
    ("icbm2009c/mni_icbm152_t2_tal_nlin_sym_09c.nii", "icbm2009c/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii", 0.9687),
    ("avg152/avg152T2.nii", "avg152/brainmask-0.5.nii.gz", 0.9703),
    ("avg152/avg152PD.nii", "avg152/brainmask-0.5.nii.gz", 0.9700),
];

#[test]
fn on_t2_and_pd_heads_the_students_hold_or_say_so() {
    let mut silent = Vec::new();
    let mut far = 0;
    for (model, _) in TARGETS {
        let package = format!("{}/models/{model}", env!("CARGO_MANIFEST_DIR"));
        let pairs: Vec<String> = HDBET_CONTRASTS.iter().map(|(i, m, _)| format!("{}:{}", data(i).display(), data(m).display())).collect();
        let mut args = vec!["evaluate", "--model", &package, "--json"];
        args.extend(pairs.iter().map(String::as_str));
        let (ok, stdout, stderr) = run(&args);
        assert!(ok, "{model}: {stderr}");
        let rows: Value = serde_json::from_str(&stdout).unwrap();
        for ((image, _, hdbet), row) in HDBET_CONTRASTS.iter().zip(rows["volumes"].as_array().unwrap()) {
            let dice = row["reference"]["dice"].as_f64().unwrap();
            let warned = !row["quality"]["warnings"].as_array().unwrap().is_empty();
            eprintln!("{model} {image}: Dice {dice:.4} (HD-BET {hdbet:.4}), {}", row["quality"]["summary"]);
            if dice < hdbet - 0.05 {
                far += 1;
                if !warned {
                    silent.push(format!("{model} {image}: {dice:.4}"));
                }
            }
        }
    }
    assert!(silent.is_empty(), "more than 0.05 below HD-BET and not flagged: {silent:?}");
    assert!(far > 0, "no student fails on another contrast any more: this test no longer tests the signal there");
}

/// The mirror check (asked for: it is a second run) flips the head along its
/// anatomical left-right axis, wherever the file stores it: Colin27 stored
/// RAS (left-right first) and PIR (left-right last) give student-s the same
/// mirror Dice, above its calibrated bound and without a warning (README,
/// "The mirror check": 0.9836 both). Flipping storage axis 0 of the PIR file
/// would mirror front and back instead, and disagree. On the lower half of
/// ROBEX's brain the mirror Dice falls below the bound, and the warning says so.
#[test]
fn the_mirror_check_flips_left_right_wherever_the_file_stores_it() {
    let dir = scratch_dir("mirror-check");
    let pair = |image: &str, mask: &str| format!("{}:{}", data(image).display(), data(mask).display());
    let colin = pair("colin27/ch2.nii.gz", "colin27/ch2bet.nii.gz");
    let listing = run_python(&[
        reference_script("head_variants.py"),
        "probe".into(),
        dir.display().to_string(),
        "orientation,partial".into(),
        colin.clone(),
        pair("robex/atlas.nii.gz", "robex/atlas_mask.nii.gz"),
    ]);
    let probe = |volume: &str, name: &str| -> String {
        let row = listing.lines().map(|l| l.split('\t').collect::<Vec<_>>()).find(|r| r[0] == volume && r[1] == name);
        row.unwrap_or_else(|| panic!("no probe {volume} {name} in {listing}"))[3].to_string()
    };
    let bound = shipped_manifest("student-s")["quality"]["min_mirror_dice"].as_f64().expect("student-s has a mirror bound");
    let package = format!("{}/models/student-s", env!("CARGO_MANIFEST_DIR"));
    let check = |images: &str| -> (f64, String) {
        let (ok, stdout, stderr) = run(&["evaluate", "--model", &package, images, "--mirror-check", "--json"]);
        assert!(ok, "{images}: {stderr}");
        let q = serde_json::from_str::<Value>(&stdout).unwrap()["volumes"][0]["quality"].clone();
        eprintln!("{images}: {}", q["summary"]);
        (q["mirror_dice"].as_f64().expect("a mirror Dice"), q["warnings"].to_string())
    };
    let (ras, ras_warnings) = check(&colin);
    let (pir, _) = check(&probe("ch2", "PIR"));
    assert!((ras - pir).abs() < 0.002, "stored RAS {ras:.4}, stored PIR {pir:.4}");
    assert!(ras >= bound && !ras_warnings.contains("mirror"), "{ras:.4} against {bound}: {ras_warnings}");
    let (half, warnings) = check(&probe("atlas", "partial-lower-half"));
    assert!(half < bound && warnings.contains("left-right mirror agrees with this one by Dice"), "{half:.4}: {warnings}");
}
