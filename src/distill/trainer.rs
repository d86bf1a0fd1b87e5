//! A whole training run on disk (`bedside distill`): the shared step of
//! [`super::engine`] in a loop, with checkpoints to resume from and a loss
//! log. The browser's teach room drives the same engine from memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use burn_store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};

use super::config::DistillConfig;
use super::dataset::PreparedVolume;
pub use super::engine::{batch_samples, learning_rate, Distillee, Engine, LossRecord, TapWidths};
use super::engine::step_rng;
use super::DistillError;
use crate::inference::clock::now_ms;
use crate::model::{Model, Network};

/// The student and its projection heads as `cfg` describes them (see
/// [`initial_student`]), seeded by the caller.
pub fn new_distillee(cfg: &DistillConfig, teacher: TapWidths, device: &Device) -> Result<Distillee, DistillError> {
    let student = initial_student(cfg, device)?;
    Ok(Distillee::with_student(student, teacher, cfg.loss.projection_dim, device))
}

/// The network that trains: a new unet3d as `cfg.student` describes, or the
/// package `cfg.start_from` names, with its weights.
pub fn initial_student(cfg: &DistillConfig, device: &Device) -> Result<Network, DistillError> {
    match &cfg.start_from {
        None => Ok(Network::Unet3d(cfg.student.init(device))),
        Some(dir) => Model::load_dir(dir, false, device)
            .map(|m| m.network)
            .map_err(|e| DistillError::Model(format!("{}: {e}", dir.display()))),
    }
}

/// Where a run keeps its checkpoint.
struct CheckpointPaths {
    model: PathBuf,
    optimizer: PathBuf,
    average: PathBuf,
    state: PathBuf,
}

impl CheckpointPaths {
    fn new(out: &Path) -> Self {
        let dir = out.join("checkpoint");
        Self {
            model: dir.join("model.bpk"),
            optimizer: dir.join("optimizer.bpk"),
            average: dir.join("average.bpk"),
            state: dir.join("state.json"),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    /// Steps completed.
    step: usize,
    /// The config the checkpoint belongs to: resuming with another is refused.
    config: DistillConfig,
}

/// What a run ends with: the module that trained and, when the config asks
/// for it, the moving average of the student's weights.
pub type Trained = Engine;

/// Trains for `cfg.steps` (from the checkpoint in `out` when `resume`).
/// Writes `out/losses.csv` and checkpoints; returns the trained engine and
/// the loss records of this call. `on_step` sees every record.
pub fn train(
    cfg: &DistillConfig,
    volumes: &[PreparedVolume],
    out: &Path,
    resume: bool,
    device: &Device,
    on_step: &mut dyn FnMut(&LossRecord),
) -> Result<(Trained, Vec<LossRecord>), DistillError> {
    let t = &volumes.first().ok_or_else(|| DistillError::Config("no training volumes".into()))?.teacher;
    let widths = [t.encoder.channels, t.bottleneck.channels, t.decoder.channels];
    device.seed(cfg.seed);
    let mut engine = Engine::new(new_distillee(cfg, widths, device)?, cfg.average_decay, device);
    let paths = CheckpointPaths::new(out);
    if resume && paths.state.is_file() {
        let text = std::fs::read_to_string(&paths.state).map_err(|e| DistillError::io(&paths.state, e))?;
        let state: CheckpointState =
            serde_json::from_str(&text).map_err(|e| DistillError::cache(&paths.state, e))?;
        if state.config != *cfg {
            return Err(DistillError::Config(format!(
                "{} was written with a different config; start without --resume or use the same config",
                paths.state.display()
            )));
        }
        engine
            .model
            .load_from(&mut BurnpackStore::from_file(&paths.model))
            .map_err(|e| DistillError::cache(&paths.model, e))?;
        engine.optim = engine
            .optim
            .clone()
            .load(&paths.optimizer)
            .map_err(|e| DistillError::cache(&paths.optimizer, e))?;
        if let Some(average) = engine.average.as_mut() {
            average.load(&paths.average)?;
        }
        engine.steps_done = state.step;
    }
    let csv_path = out.join("losses.csv");
    let mut csv = open_csv(&csv_path, engine.steps_done)?;
    let start = now_ms();
    let mut records = Vec::new();
    for step in engine.steps_done..cfg.steps {
        let mut rng = step_rng(cfg.seed, step);
        let t_data = now_ms();
        let samples = batch_samples(cfg, volumes, &mut rng);
        let data_ms = now_ms() - t_data;
        let mut record = engine.step(&samples, &cfg.loss, learning_rate(cfg, step), &mut rng).read();
        if !record.total.is_finite() {
            return Err(DistillError::Diverged(step));
        }
        record.data_ms = data_ms;
        record.seconds = (now_ms() - start) / 1e3;
        writeln!(csv, "{}", record.csv()).map_err(|e| DistillError::io(&csv_path, e))?;
        on_step(&record);
        records.push(record);
        if (step + 1) % cfg.checkpoint_every == 0 || step + 1 == cfg.steps {
            std::fs::create_dir_all(paths.model.parent().unwrap()).map_err(|e| DistillError::io(out, e))?;
            engine
                .model
                .save_into(&mut BurnpackStore::from_file(&paths.model).overwrite(true))
                .map_err(|e| DistillError::cache(&paths.model, e))?;
            engine.optim.save(&paths.optimizer).map_err(|e| DistillError::cache(&paths.optimizer, e))?;
            if let Some(average) = &engine.average {
                average.save(&paths.average)?;
            }
            let state = serde_json::to_string_pretty(&CheckpointState { step: step + 1, config: cfg.clone() }).unwrap();
            std::fs::write(&paths.state, state).map_err(|e| DistillError::io(&paths.state, e))?;
        }
    }
    Ok((engine, records))
}

/// Opens the loss log; on resume keeps only the rows up to `keep_steps`.
fn open_csv(path: &Path, keep_steps: usize) -> Result<std::fs::File, DistillError> {
    let kept: Vec<String> = if keep_steps > 0 {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .filter(|l| l.split(',').next().and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= keep_steps))
            .map(str::to_string)
            .collect()
    } else {
        Vec::new()
    };
    let mut f = std::fs::File::create(path).map_err(|e| DistillError::io(path, e))?;
    writeln!(f, "{}", LossRecord::CSV_HEADER).map_err(|e| DistillError::io(path, e))?;
    for l in kept {
        writeln!(f, "{l}").map_err(|e| DistillError::io(path, e))?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use crate::distill::augment::AugmentConfig;
    use crate::distill::average::flat_weights;
    use crate::distill::teacher::run_teacher;
    use crate::inference::preprocess::Prepared;
    use crate::model::unet3d::Unet3dConfig;
    use crate::model::Network;

    /// A 32³ "head": a bright ball (the brain) in a darker shell, with noise.
    fn toy_volume(device: &Device) -> PreparedVolume {
        let n = 32usize;
        let mut image = Vec::with_capacity(n * n * n);
        let mut labels = Vec::with_capacity(n * n * n);
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    let r = [x, y, z].iter().map(|&c| (c as f64 - 15.5).powi(2)).sum::<f64>().sqrt();
                    let brain = r < 9.0;
                    let noise = (((x * 7919 + y * 104729 + z * 1299709) % 1000) as f32 / 1000.0 - 0.5) * 0.3;
                    image.push(if brain { 1.0 } else if r < 13.0 { -0.5 } else { -1.0 } + noise);
                    labels.push(brain as u8);
                }
            }
        }
        // A random network stands in for the teacher: the test is about the loop, not the teacher.
        // Seeded, so that its targets (and the KD terms) do not change from run to run.
        device.seed(3);
        let teacher = Network::Unet3d(Unet3dConfig::new().with_base_filters(2).with_depth(4).init(device));
        let prepared = Prepared { reorientation: None, resampled_dims: [n; 3], padded_dims: [n; 3], spacing: [1.5; 3], data: image.clone() };
        let targets = run_teacher(&teacher, &prepared, device);
        PreparedVolume::new("toy".into(), [n; 3], image, labels, true, targets)
    }

    #[test]
    fn a_short_run_lowers_the_loss_and_resumes_exactly() {
        let plain = Device::flex();
        let volume = toy_volume(&plain);
        let cfg: DistillConfig = serde_json::from_value(serde_json::json!({
            "id": "toy", "name": "toy", "teacher": "unused",
            "student": {"base_filters": 2, "depth": 2},
            "volumes": [{"image": "unused"}],
            "patch": [32, 32, 32], "batch": 1, "steps": 24, "learning_rate": 0.01,
            "loss": {"cross_entropy": 0.2, "dice": 0.4, "kd": 0.2, "encoder": 0.1, "bottleneck": 0.2, "decoder": 0.1, "samples": 64},
            "checkpoint_every": 12, "average_decay": 0.9
        }))
        .unwrap();
        let cfg = DistillConfig { augment: AugmentConfig::none(), ..cfg };
        let dir = std::env::temp_dir().join(format!("bedside-train-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let device = plain.clone().autodiff();
        // Keep a copy of the step-12 checkpoint (step 13 starts after it is written).
        let half = dir.join("half");
        let mut keep = |r: &LossRecord| {
            if r.step == 13 {
                std::fs::create_dir_all(half.join("checkpoint")).unwrap();
                for f in ["model.bpk", "optimizer.bpk", "average.bpk", "state.json"] {
                    std::fs::copy(dir.join("checkpoint").join(f), half.join("checkpoint").join(f)).unwrap();
                }
                std::fs::copy(dir.join("losses.csv"), half.join("losses.csv")).unwrap();
            }
        };
        let (trained, records) = train(&cfg, std::slice::from_ref(&volume), &dir, false, &device, &mut keep).unwrap();
        assert_eq!(records.len(), 24);
        // The package gets the moving average, not the last step's weights.
        let (shipped, last_step) = (flat_weights(&trained.student()), flat_weights(&trained.model.student.valid()));
        assert!(shipped.iter().zip(&last_step).any(|(a, b)| (a - b).abs() > 1e-4));
        let mean = |r: &[LossRecord], f: fn(&LossRecord) -> f64| r.iter().map(f).sum::<f64>() / r.len() as f64;
        let (first, last) = (mean(&records[..4], |r| r.total), mean(&records[20..], |r| r.total));
        assert!(last < 0.85 * first, "loss {first:.4} → {last:.4} did not fall");
        // The hard labels are learnt first; the contrastive terms against a
        // random teacher move more slowly.
        let (first, last) = (mean(&records[..4], |r| r.cross_entropy), mean(&records[20..], |r| r.cross_entropy));
        assert!(last < 0.9 * first, "cross-entropy {first:.4} → {last:.4} did not fall by a tenth");
        let csv = std::fs::read_to_string(dir.join("losses.csv")).unwrap();
        assert_eq!(csv.lines().count(), 25, "a header and one row per step");

        // Resuming from the step-12 checkpoint repeats steps 13–24.
        let (trained_again, resumed) = train(&cfg, std::slice::from_ref(&volume), &half, true, &device, &mut |_| {}).unwrap();
        assert_eq!(resumed.len(), 12);
        // The average resumes too (it is kept with the checkpoint).
        for (a, b) in flat_weights(&trained_again.student()).iter().zip(&shipped) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "averaged weight {a} vs {b}");
        }
        for (a, b) in resumed.iter().zip(&records[12..]) {
            assert_eq!(a.step, b.step);
            assert!((a.total - b.total).abs() <= 1e-3 * b.total.abs().max(1e-3), "step {}: {} vs {}", a.step, a.total, b.total);
        }
        let csv = std::fs::read_to_string(half.join("losses.csv")).unwrap();
        assert_eq!(csv.lines().count(), 25, "the log keeps steps 1–12 and appends 13–24");
        let other = DistillConfig { seed: 7, ..cfg.clone() };
        assert!(matches!(
            train(&other, std::slice::from_ref(&volume), &half, true, &device, &mut |_| {}),
            Err(DistillError::Config(_))
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
    /// `start_from`: a Tucker-2 compressed student-m starts from its own
    /// weights (not a fresh initialisation), keeps its factorisation, and its
    /// loss falls on the toy head.
    #[test]
    fn a_compressed_package_goes_on_training_from_its_own_weights() {
        use crate::compress::{compress_package, CompressOptions, RankRule};
        use burn::tensor::{Distribution, Tensor};
        let plain = Device::flex();
        let volume = toy_volume(&plain);
        let dir = std::env::temp_dir().join(format!("bedside-start-from-{}", std::process::id()));
        let source = dir.join("source");
        std::fs::create_dir_all(&source).unwrap();
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/student-m");
        let json = std::fs::read_to_string(models.join("model.json")).unwrap();
        let weights = std::fs::read(models.join("weights.safetensors")).unwrap();
        let rule = RankRule::Factor { factor: 0.5, min_rank: 1 };
        let c = compress_package(&json, &weights, &rule, &CompressOptions::default(), &|| 0.0, &mut |_, _, _| true).unwrap();
        std::fs::write(source.join("model.json"), serde_json::to_string_pretty(&c.manifest).unwrap()).unwrap();
        std::fs::write(source.join("weights.safetensors"), &c.weights).unwrap();

        let cfg: DistillConfig = serde_json::from_value(serde_json::json!({
            "id": "toy-recovered", "name": "toy", "teacher": "unused", "start_from": source,
            "volumes": [{"image": "unused"}],
            "patch": [32, 32, 32], "batch": 1, "steps": 16, "learning_rate": 0.002,
            "loss": {"cross_entropy": 0.5, "dice": 0.5, "kd": 0.0, "encoder": 0.0, "bottleneck": 0.0, "decoder": 0.0},
            "checkpoint_every": 100
        }))
        .unwrap();
        let cfg = DistillConfig { augment: AugmentConfig::none(), ..cfg };

        let x = Tensor::<5>::random([1, 1, 32, 32, 32], Distribution::Normal(0.0, 1.0), &plain);
        let package = Model::load_dir(&source, false, &plain).unwrap();
        let start = initial_student(&cfg, &plain).unwrap();
        let (a, b) = (package.network.forward(x.clone()), start.forward(x.clone()));
        assert!((a - b).abs().max().into_scalar::<f32>() == 0.0, "the student starts from the package's weights");

        let device = plain.clone().autodiff();
        let (trained, records) = train(&cfg, std::slice::from_ref(&volume), &dir, false, &device, &mut |_| {}).unwrap();
        let student = trained.student();
        assert_eq!(student.num_params() as u64, c.manifest.params, "the factorisation is kept");
        let mean = |r: &[LossRecord]| r.iter().map(|r| r.total).sum::<f64>() / r.len() as f64;
        let (first, last) = (mean(&records[..4]), mean(&records[12..]));
        eprintln!("start_from: loss {first:.4} -> {last:.4}");
        assert!(last < 0.9 * first, "loss {first:.4} → {last:.4} did not fall by a tenth");
        let moved = (package.network.forward(x.clone()) - student.forward(x)).abs().max().into_scalar::<f32>();
        assert!(moved > 0.0, "the weights trained");
        std::fs::remove_dir_all(&dir).ok();
    }
}
