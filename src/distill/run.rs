//! A whole distillation run: read the config, prepare the volumes (running
//! the teacher where its outputs are not cached), train, and write the
//! student as a bedside model package.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;

use super::config::DistillConfig;
use super::dataset::prepare_volumes;
use super::trainer::{train, trained_student, LossRecord};
use super::DistillError;
use crate::model::manifest::{Provenance, FORMAT};
use crate::model::{Manifest, Model, Network};

pub struct RunOptions {
    pub config: PathBuf,
    /// The student package folder (also holds losses.csv and the checkpoint).
    pub out: PathBuf,
    /// Where teacher outputs are cached between runs.
    pub cache: PathBuf,
    pub resume: bool,
    /// Training device (flex or wgpu; autodiff is added here).
    pub device: Device,
    /// What trained it (backend, adapter or thread count), for model.json.
    pub machine: String,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub package: PathBuf,
    pub params: u64,
    pub flops_per_patch: u64,
    pub steps: usize,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub train_seconds: f64,
    pub teacher_seconds: f64,
}

/// Mean of the first and of the last `k` totals (a smoothed start and end).
fn ends(records: &[LossRecord], k: usize) -> (Option<f64>, Option<f64>) {
    if records.is_empty() {
        return (None, None);
    }
    let k = k.clamp(1, records.len());
    let mean = |r: &[LossRecord]| r.iter().map(|r| r.total).sum::<f64>() / r.len() as f64;
    (Some(mean(&records[..k])), Some(mean(&records[records.len() - k..])))
}

pub fn run(opts: &RunOptions, log: &mut dyn FnMut(&str)) -> Result<RunReport, DistillError> {
    let cfg = DistillConfig::load(&opts.config)?;
    let plain = opts.device.clone();
    let teacher = Model::load_dir(&cfg.teacher, false, &plain).map_err(|e| DistillError::Model(e.to_string()))?;
    let t0 = std::time::Instant::now();
    let volumes = prepare_volumes(&cfg.volumes, &cfg.axis_order, &cfg.normalisation, &teacher, &cfg.teacher, &opts.cache, &plain, log)?;
    let teacher_seconds = t0.elapsed().as_secs_f64();
    std::fs::create_dir_all(&opts.out).map_err(|e| DistillError::io(&opts.out, e))?;

    let t1 = std::time::Instant::now();
    let every = (cfg.steps / 20).max(1);
    let mut on_step = |r: &LossRecord| {
        if r.step % every == 0 || r.step == cfg.steps {
            log(&format!(
                "step {}/{}: loss {:.4} (ce {:.4} dice {:.4} kd {:.4} enc {:.4} bott {:.4} dec {:.4}) data {:.0} ms, compute {:.0} ms, {:.0} s",
                r.step, cfg.steps, r.total, r.cross_entropy, r.dice, r.kd, r.encoder, r.bottleneck, r.decoder,
                r.data_ms, r.compute_ms, r.seconds
            ));
        }
    };
    let (trained, records) = train(&cfg, &volumes, &opts.out, opts.resume, &opts.device.clone().autodiff(), &mut on_step)?;
    let train_seconds = t1.elapsed().as_secs_f64();

    let network = Network::Unet3d(trained_student(&trained));
    let manifest =
        student_manifest(&cfg, &teacher.manifest, &network, &volumes_summary(&cfg, &volumes), train_seconds, &opts.machine);
    let (first_loss, last_loss) = ends(&records, 10);
    let report = RunReport {
        package: opts.out.clone(),
        params: manifest.params,
        flops_per_patch: manifest.flops_per_patch,
        steps: cfg.steps,
        first_loss,
        last_loss,
        train_seconds,
        teacher_seconds,
    };
    let model = Model { manifest, network, members: Vec::new() };
    model.save_dir(&opts.out).map_err(|e| DistillError::Model(e.to_string()))?;
    Ok(report)
}

fn volumes_summary(cfg: &DistillConfig, volumes: &[super::dataset::PreparedVolume]) -> serde_json::Value {
    cfg.volumes
        .iter()
        .zip(volumes)
        .map(|(v, p)| {
            serde_json::json!({
                "image": v.image,
                "hard_labels": if p.has_mask { v.mask.clone().unwrap_or_default() } else { "teacher argmax".to_string() },
            })
        })
        .collect()
}

/// The student's `model.json`: the teacher's pre- and postprocessing (the
/// student learnt on the teacher's grid) with the recipe's window (by default
/// the training patch); FLOPs are per window, as for every model.
fn student_manifest(
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
            citation: "Hinton G, Vinyals O, Dean J. Distilling the knowledge in a neural network. arXiv:1503.02531; \
                       multi-scale contrastive KD after MTMS, arXiv:2406.03173"
                .into(),
            converted_by: format!("bedside {} distill", env!("CARGO_PKG_VERSION")),
        },
        licence: teacher.licence.clone(),
        params: network.num_params() as u64,
        ensemble: Vec::new(),
        training: Some(serde_json::json!({
            // The teacher as the recipes name it (a sibling package), not this machine's path.
            "config": DistillConfig { teacher: PathBuf::from(format!("../{}", teacher.id)), ..cfg.clone() },
            "volumes": volumes,
            "teacher": teacher.id,
            "train_seconds": (train_seconds * 10.0).round() / 10.0,
            "machine": machine,
        })),
        evaluation: Vec::new(),
        compression: None,
    }
}

/// The default teacher-output cache: beside the data.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("BEDSIDE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/bedside"))
        .join("teacher")
}

