//! A whole distillation run: read the config, prepare the volumes (running
//! the teacher where its outputs are not cached), train, and write the
//! student as a bedside model package.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;

use super::config::DistillConfig;
use super::dataset::prepare_volumes;
use super::trainer::{train, LossRecord};
use super::DistillError;
use super::record::{student_manifest, trained_on_manifest};
use crate::model::{Manifest, Model};

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
    let source = cfg.start_from.as_deref().map(|dir| source_manifest(dir, &cfg, &teacher.manifest)).transpose()?;
    if let Some(s) = source.as_ref().filter(|s| s.preprocessing.normalisation != cfg.normalisation) {
        log(&format!("{}: learnt on normalisation {:?}, trained on and packaged with {:?}", s.id, s.preprocessing.normalisation, cfg.normalisation));
    }
    if let Some(s) = source.as_ref().filter(|s| !s.ensemble.is_empty()) {
        // Only the main weights train; members would go stale beside them.
        log(&format!("{}: only the main weights train; its ensemble members are left out", s.id));
    }
    let t0 = std::time::Instant::now();
    let volumes = prepare_volumes(&cfg.volumes, &cfg.axis_order, &cfg.normalisation, &teacher, &cfg.teacher, &opts.cache, &plain, log)?;
    let teacher_seconds = t0.elapsed().as_secs_f64();
    let min_train = cfg.patch.iter().copied().max().unwrap_or(16);
    let volumes: Vec<_> = match cfg.hold_out {
        Some(f) => volumes.iter().map(|v| v.training_part(v.hold_out_start(f, min_train))).collect(),
        None => volumes,
    };
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

    let network = trained.student();
    let summary = volumes_summary(&cfg, &volumes);
    let manifest = match &source {
        None => student_manifest(&cfg, &teacher.manifest, &network, &summary, train_seconds, &opts.machine),
        Some(source) => trained_on_manifest(&cfg, source, &teacher.manifest, &network, &summary, train_seconds, &opts.machine),
    };
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
    let model = Model { manifest, network, members: Vec::new(), weights_sha256: None };
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

/// The manifest of the package `start_from` names, checked against the run:
/// the volumes are prepared on the teacher's grid and in the recipe's axis
/// order, so the package must expect the same. Its normalisation may differ:
/// the package then learns the recipe's, and keeps it.
fn source_manifest(dir: &Path, cfg: &DistillConfig, teacher: &Manifest) -> Result<Manifest, DistillError> {
    let path = dir.join("model.json");
    let text = std::fs::read_to_string(&path).map_err(|e| DistillError::io(&path, e))?;
    let source = crate::model::package::parse_manifest(&text).map_err(|e| DistillError::Model(format!("{}: {e}", path.display())))?;
    let (pre, theirs) = (&source.preprocessing, &teacher.preprocessing);
    let bad = |m: String| Err(DistillError::Config(format!("start_from {}: {m}", dir.display())));
    if pre.axis_order != cfg.axis_order {
        return bad(format!("it expects axis_order {:?}; set the recipe's to the same", pre.axis_order));
    }
    if pre.target_spacing != theirs.target_spacing {
        return bad(format!("its spacing {:?} differs from the teacher's {:?}", pre.target_spacing, theirs.target_spacing));
    }
    if cfg.patch.iter().any(|p| p % pre.divisible_by.max(1) != 0) {
        return bad(format!("patch {:?}: each side must be a multiple of {}", cfg.patch, pre.divisible_by));
    }
    Ok(source)
}

/// The default teacher-output cache: beside the data.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("BEDSIDE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cache/bedside"))
        .join("teacher")
}
