//! What a trained package says about itself: its `model.json` and the
//! training record in it. Shared by `bedside distill` and the teach room, so
//! a student exported from the browser carries the same record as one made
//! natively.

use std::path::PathBuf;

use super::config::DistillConfig;
use crate::model::manifest::{Preprocessing, Provenance, FORMAT};
use crate::model::{Manifest, Network};

/// What every distilled package cites.
pub const HINTON: &str = "Hinton G, Vinyals O, Dean J. Distilling the knowledge in a neural network. arXiv:1503.02531";

/// The student's `model.json`: the teacher's pre- and postprocessing (the
/// student learnt on the teacher's grid) with the recipe's window (by default
/// the training patch); FLOPs are per window, as for every model.
pub fn student_manifest(
    cfg: &DistillConfig,
    teacher: &Manifest,
    network: &Network,
    volumes: &serde_json::Value,
    train_seconds: f64,
    machine: &str,
) -> Manifest {
    let window = cfg.window.unwrap_or(cfg.patch);
    let mut pre = teacher.preprocessing.clone();
    pre.patch_size = window;
    // A student is trained on windows and run on them, whatever its teacher does.
    pre.single_pass = false;
    pre.axis_order = cfg.axis_order.clone();
    pre.normalisation = cfg.normalisation.clone();
    pre.divisible_by = pre.divisible_by.max(1 << cfg.student.depth);
    Manifest {
        format: FORMAT.into(),
        id: cfg.id.clone(),
        name: cfg.name.clone(),
        family: "unet3d".into(),
        hyperparameters: serde_json::to_value(&cfg.student).expect("config serialises"),
        flops_per_patch: cfg.student.flops(window),
        preprocessing: pre,
        postprocessing: cfg.postprocessing.clone().unwrap_or_else(|| teacher.postprocessing.clone()),
        labels: teacher.labels.clone(),
        provenance: Provenance {
            source: format!("distilled by bedside from {} ({})", teacher.id, teacher.name),
            source_sha256: String::new(),
            citation: format!("{HINTON}; multi-scale contrastive KD after MTMS, arXiv:2406.03173"),
            converted_by: format!("bedside {} distill", env!("CARGO_PKG_VERSION")),
        },
        licence: teacher.licence.clone(),
        params: network.num_params() as u64,
        ensemble: Vec::new(),
        training: Some(training_record(
            // The teacher as the recipes name it (a sibling package), not this machine's path.
            serde_json::to_value(DistillConfig { teacher: PathBuf::from(format!("../{}", teacher.id)), ..cfg.clone() })
                .expect("config serialises"),
            volumes,
            &teacher.id,
            None,
            train_seconds,
            machine,
        )),
        evaluation: Vec::new(),
        compression: None,
        quality: None,
    }
}

/// The `training` entry of a trained package's `model.json`: the recipe as
/// run, its volumes and labels, the teacher, the package it started from (if
/// any) with that package's own training record, so a student trained in
/// stages keeps every stage, and the time it took where.
pub fn training_record(
    config: serde_json::Value,
    volumes: &serde_json::Value,
    teacher: &str,
    start_from: Option<&Manifest>,
    train_seconds: f64,
    machine: &str,
) -> serde_json::Value {
    let mut record = serde_json::json!({
        "config": config,
        "volumes": volumes,
        "teacher": teacher,
        "train_seconds": (train_seconds * 10.0).round() / 10.0,
        "machine": machine,
    });
    if let Some(source) = start_from {
        record["start_from"] = source.id.as_str().into();
        if let Some(earlier) = &source.training {
            record["continued_from"] = earlier.clone();
        }
    }
    record
}


/// The `model.json` of a package trained further from `source`: the source's
/// family, network (with its factorisation), preprocessing and window, with
/// the recipe recorded and the earlier Dice table dropped (the weights changed).
/// The normalisation is the recipe's: a package may be trained further on
/// another input normalisation than it first learnt (issue 17's students).
pub fn trained_on_manifest(
    cfg: &DistillConfig,
    source: &Manifest,
    teacher: &Manifest,
    network: &Network,
    volumes: &serde_json::Value,
    train_seconds: f64,
    machine: &str,
) -> Manifest {
    let mut config = serde_json::to_value(DistillConfig {
        teacher: PathBuf::from(format!("../{}", teacher.id)),
        start_from: Some(PathBuf::from(format!("../{}", source.id))),
        ..cfg.clone()
    })
    .expect("config serialises");
    config.as_object_mut().expect("an object").remove("student");
    Manifest {
        id: cfg.id.clone(),
        name: cfg.name.clone(),
        params: network.num_params() as u64,
        postprocessing: cfg.postprocessing.clone().unwrap_or_else(|| source.postprocessing.clone()),
        provenance: Provenance {
            source: format!("{} ({}) trained further by bedside, with {} as teacher", source.id, source.name, teacher.id),
            source_sha256: String::new(),
            // A student trained further already cites Hinton et al.; a
            // converted teacher does not.
            citation: if source.provenance.citation.contains(HINTON) {
                source.provenance.citation.clone()
            } else {
                format!("{}; distillation: {HINTON}", source.provenance.citation)
            },
            converted_by: format!("bedside {} distill", env!("CARGO_PKG_VERSION")),
        },
        ensemble: Vec::new(),
        training: Some(training_record(config, volumes, &teacher.id, Some(source), train_seconds, machine)),
        evaluation: Vec::new(),
        // Calibrated for the source's weights, not these.
        quality: None,
        preprocessing: Preprocessing { normalisation: cfg.normalisation.clone(), ..source.preprocessing.clone() },
        ..source.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A student trained in two stages keeps the first stage's record
    /// (student-m: 1500 steps, then 1200 more from its package).
    #[test]
    fn a_continued_package_keeps_its_earlier_training_record() {
        let json = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/student-s/model.json")).unwrap();
        let source: Manifest = serde_json::from_str(&json).unwrap();
        let earlier = source.training.clone().expect("student-s records its training");
        let config = serde_json::json!({ "steps": 12 });
        let record = training_record(config, &serde_json::json!([]), "hd-bet", Some(&source), 3.14, "here");
        assert_eq!(record["start_from"], "student-s");
        assert_eq!(record["continued_from"], earlier);
        assert_eq!(record["config"]["steps"], 12);
        let fresh = training_record(serde_json::json!({}), &serde_json::json!([]), "hd-bet", None, 3.14, "here");
        assert!(fresh.get("start_from").is_none() && fresh.get("continued_from").is_none());
    }
}
