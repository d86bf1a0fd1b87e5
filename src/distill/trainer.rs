//! The training loop: a student (plus its projection heads) learns from hard
//! labels, the teacher's softened logits and the teacher's features, with
//! Burn's autodiff on the native CPU backend (or a GPU where one exists).
//!
//! Reproducible: every random choice at step `s` (patches, augmentation,
//! InfoNCE locations) comes from an RNG seeded with (seed, s), so a run
//! resumed from a checkpoint continues exactly as if it had not stopped.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::module::adaptive_avg_pool3d;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_store::{BurnpackStore, ModuleSnapshot};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::augment::{Augmenter, Sample};
use super::average::WeightAverage;
use super::config::{DistillConfig, LossWeights};
use super::dataset::PreparedVolume;
use super::losses::{cross_entropy, dice_loss, info_nce, kd_kl};
use super::DistillError;
use crate::model::{Model, Network};

/// Maps one tap's student and teacher features to a common width (MTMS).
#[derive(Module, Debug)]
pub struct Projection {
    student: Linear,
    teacher: Linear,
}

impl Projection {
    fn new(student_channels: usize, teacher_channels: usize, dim: usize, device: &Device) -> Self {
        Self {
            student: LinearConfig::new(student_channels, dim).init(device),
            teacher: LinearConfig::new(teacher_channels, dim).init(device),
        }
    }
}

/// Everything that trains: the student and the three projection pairs.
#[derive(Module, Debug)]
pub struct Distillee {
    pub student: Network,
    encoder: Projection,
    bottleneck: Projection,
    decoder: Projection,
}

/// Feature widths at the taps (encoder, bottleneck, decoder).
pub type TapWidths = [usize; 3];

impl Distillee {
    /// The student (see [`initial_student`]) with projection heads from its
    /// tap widths and the teacher's to `cfg.loss.projection_dim`.
    pub fn new(cfg: &DistillConfig, teacher: TapWidths, device: &Device) -> Result<Self, DistillError> {
        let student = initial_student(cfg, device)?;
        let s = tap_widths(&student, device);
        let dim = cfg.loss.projection_dim;
        Ok(Self {
            student,
            encoder: Projection::new(s[0], teacher[0], dim, device),
            bottleneck: Projection::new(s[1], teacher[1], dim, device),
            decoder: Projection::new(s[2], teacher[2], dim, device),
        })
    }
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

/// A network's channels at its three taps, read off one forward pass of a
/// small empty patch (every family reaches its coarsest level at 32³).
fn tap_widths(network: &Network, device: &Device) -> TapWidths {
    let taps = network.forward_taps(Tensor::zeros([1, 1, 32, 32, 32], device));
    [taps.encoder.dims()[1], taps.bottleneck.dims()[1], taps.decoder.dims()[1]]
}

/// One step's loss terms (already weighted in `total`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LossRecord {
    pub step: usize,
    pub total: f64,
    pub cross_entropy: f64,
    pub dice: f64,
    pub kd: f64,
    pub encoder: f64,
    pub bottleneck: f64,
    pub decoder: f64,
    pub learning_rate: f64,
    /// Time spent cutting and augmenting the batch, and in forward, backward
    /// and the optimiser step (ms).
    pub data_ms: f64,
    pub compute_ms: f64,
    pub seconds: f64,
}

impl LossRecord {
    pub const CSV_HEADER: &'static str =
        "step,total,cross_entropy,dice,kd,encoder,bottleneck,decoder,learning_rate,data_ms,compute_ms,seconds";

    pub fn csv(&self) -> String {
        format!(
            "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.0},{:.0},{:.2}",
            self.step, self.total, self.cross_entropy, self.dice, self.kd, self.encoder, self.bottleneck,
            self.decoder, self.learning_rate, self.data_ms, self.compute_ms, self.seconds
        )
    }
}

/// A batch as tensors `[batch, channels, d, h, w]`.
struct Batch {
    image: Tensor<5>,
    teacher_logits: Tensor<5>,
    hard: Tensor<5>,
    /// Teacher features: encoder, bottleneck, decoder.
    features: [Tensor<5>; 3],
}

fn stack(parts: Vec<&[f32]>, channels: usize, [w, h, d]: [usize; 3], device: &Device) -> Tensor<5> {
    let batch = parts.len();
    let data: Vec<f32> = parts.concat();
    Tensor::from_data(TensorData::new(data, [batch, channels, d, h, w]), device)
}

fn to_batch(samples: &[Sample], device: &Device) -> Batch {
    let s0 = &samples[0];
    let classes = s0.channels / 2;
    let n: usize = s0.dims.iter().product();
    let image = stack(samples.iter().map(|s| s.image.as_slice()).collect(), 1, s0.dims, device);
    let teacher_logits = stack(samples.iter().map(|s| &s.target[..classes * n]).collect(), classes, s0.dims, device);
    let hard = stack(samples.iter().map(|s| &s.target[classes * n..]).collect(), classes, s0.dims, device);
    let features = std::array::from_fn(|k| {
        let g = &s0.coarse[k];
        stack(samples.iter().map(|s| s.coarse[k].data.as_slice()).collect(), g.channels, g.dims, device)
    });
    Batch { image, teacher_logits, hard, features }
}

/// Brings a student and a teacher feature map to the same grid by averaging
/// the finer one down to the coarser one.
fn align(student: Tensor<5>, teacher: Tensor<5>) -> (Tensor<5>, Tensor<5>) {
    let [_, _, sd, sh, sw] = student.dims();
    let [_, _, td, th, tw] = teacher.dims();
    let size = [sd.min(td), sh.min(th), sw.min(tw)];
    let pool = |x: Tensor<5>, d: [usize; 3]| if d == size { x } else { adaptive_avg_pool3d(x, size) };
    (pool(student, [sd, sh, sw]), pool(teacher, [td, th, tw]))
}

/// `[B, C, d, h, w]` → `[B·d·h·w, C]` rows at `rows`.
fn rows_at(x: Tensor<5>, rows: &Tensor<1, Int>) -> Tensor<2> {
    let [b, c, d, h, w] = x.dims();
    x.swap_dims(0, 1).reshape([c, b * d * h * w]).select(1, rows.clone()).transpose()
}

/// The weighted loss of one batch, and its parts.
fn loss(model: &Distillee, batch: Batch, w: &LossWeights, rng: &mut StdRng) -> (Tensor<1>, LossRecord) {
    let device = batch.image.device();
    let need_features = w.uses_features();
    let taps = model.student.forward_taps(batch.image);
    let logits = taps.logits;
    let mut record = LossRecord::default();
    let mut total = Tensor::<1>::zeros([1], &device);
    let add = |total: &mut Tensor<1>, slot: &mut f64, weight: f64, term: Tensor<1>| {
        *slot = term.clone().into_scalar::<f32>() as f64;
        *total = total.clone() + term * weight;
    };
    if w.cross_entropy > 0.0 {
        add(&mut total, &mut record.cross_entropy, w.cross_entropy, cross_entropy(logits.clone(), batch.hard.clone()));
    }
    if w.dice > 0.0 {
        add(&mut total, &mut record.dice, w.dice, dice_loss(logits.clone(), batch.hard.clone(), false, 1e-5));
    }
    if w.kd > 0.0 {
        add(&mut total, &mut record.kd, w.kd, kd_kl(logits, batch.teacher_logits, w.temperature));
    }
    if need_features {
        let [te, tb, td] = batch.features;
        let pairs = [
            (w.encoder, taps.encoder, te, &model.encoder, &mut record.encoder),
            (w.bottleneck, taps.bottleneck, tb, &model.bottleneck, &mut record.bottleneck),
            (w.decoder, taps.decoder, td, &model.decoder, &mut record.decoder),
        ];
        for (weight, student, teacher, heads, slot) in pairs {
            if weight == 0.0 {
                continue;
            }
            let (student, teacher) = align(student, teacher);
            let [b, _, d, h, wd] = student.dims();
            let available = b * d * h * wd;
            let n = w.samples.min(available);
            // Distinct locations: positives are the same location in both,
            // negatives every other sampled location (in any patch of the batch).
            let picked: Vec<i64> = rand::seq::index::sample(rng, available, n).into_iter().map(|i| i as i64).collect();
            let rows = Tensor::<1, Int>::from_data(TensorData::new(picked, [n]), &device);
            let s = heads.student.forward(rows_at(student, &rows));
            let t = heads.teacher.forward(rows_at(teacher, &rows));
            let term = info_nce(s, t, w.info_nce_temperature);
            *slot = term.clone().into_scalar::<f32>() as f64;
            total = total + term * weight;
        }
    }
    record.total = total.clone().into_scalar::<f32>() as f64;
    (total, record)
}

/// Cosine decay from the configured rate to 1% of it.
pub fn learning_rate(cfg: &DistillConfig, step: usize) -> f64 {
    let t = step as f64 / cfg.steps.max(1) as f64;
    let floor = 0.01 * cfg.learning_rate;
    floor + (cfg.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The batch for `step`: patches from volumes drawn at random, augmented.
pub fn batch_samples(cfg: &DistillConfig, volumes: &[PreparedVolume], rng: &mut StdRng) -> Vec<Sample> {
    let size = [cfg.patch[2], cfg.patch[1], cfg.patch[0]];
    let mut augmenter = Augmenter::new(cfg.augment.clone(), rng.random());
    (0..cfg.batch)
        .map(|_| {
            let v = &volumes[rng.random_range(0..volumes.len())];
            let mut patch = v.random_patch(size, cfg.foreground_fraction, rng);
            augmenter.field_of_view(&mut patch, &v.background);
            augmenter.augment(&patch)
        })
        .collect()
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
pub struct Trained {
    pub model: Distillee,
    pub average: Option<WeightAverage>,
}

impl Trained {
    /// The student to ship, without autodiff: the average where there is one.
    pub fn student(&self) -> Network {
        match &self.average {
            Some(average) => average.network().clone(),
            None => self.model.student.valid(),
        }
    }
}

/// Trains for `cfg.steps` (from the checkpoint in `out` when `resume`).
/// Writes `out/losses.csv` and checkpoints; returns the trained module and
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
    let mut model = Distillee::new(cfg, widths, device)?;
    let mut optim = AdamConfig::new().init();
    let mut average = cfg.average_decay.map(|decay| WeightAverage::new(decay, model.student.valid()));
    let paths = CheckpointPaths::new(out);
    let mut first_step = 0;
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
        model
            .load_from(&mut BurnpackStore::from_file(&paths.model))
            .map_err(|e| DistillError::cache(&paths.model, e))?;
        optim = optim
            .load(&paths.optimizer)
            .map_err(|e| DistillError::cache(&paths.optimizer, e))?;
        if let Some(average) = average.as_mut() {
            average.load(&paths.average)?;
        }
        first_step = state.step;
    }
    let csv_path = out.join("losses.csv");
    let mut csv = open_csv(&csv_path, first_step)?;
    let start = std::time::Instant::now();
    let mut records = Vec::new();
    for step in first_step..cfg.steps {
        let mut rng = step_rng(cfg.seed, step);
        let t_data = std::time::Instant::now();
        let samples = batch_samples(cfg, volumes, &mut rng);
        let batch = to_batch(&samples, device);
        let data_ms = t_data.elapsed().as_secs_f64() * 1e3;
        let t_compute = std::time::Instant::now();
        let (total, mut record) = loss(&model, batch, &cfg.loss, &mut rng);
        if !record.total.is_finite() {
            return Err(DistillError::Diverged(step));
        }
        let grads = GradientsParams::from_grads(total.backward(), &model);
        let lr = learning_rate(cfg, step);
        model = optim.step(lr, model, grads);
        if let Some(average) = average.as_mut() {
            average.update(&model.student.valid());
        }
        record.step = step + 1;
        record.learning_rate = lr;
        record.data_ms = data_ms;
        record.compute_ms = t_compute.elapsed().as_secs_f64() * 1e3;
        record.seconds = start.elapsed().as_secs_f64();
        writeln!(csv, "{}", record.csv()).map_err(|e| DistillError::io(&csv_path, e))?;
        on_step(&record);
        records.push(record);
        if (step + 1) % cfg.checkpoint_every == 0 || step + 1 == cfg.steps {
            std::fs::create_dir_all(paths.model.parent().unwrap()).map_err(|e| DistillError::io(out, e))?;
            model
                .save_into(&mut BurnpackStore::from_file(&paths.model).overwrite(true))
                .map_err(|e| DistillError::cache(&paths.model, e))?;
            optim.save(&paths.optimizer).map_err(|e| DistillError::cache(&paths.optimizer, e))?;
            if let Some(average) = &average {
                average.save(&paths.average)?;
            }
            let state = serde_json::to_string_pretty(&CheckpointState { step: step + 1, config: cfg.clone() }).unwrap();
            std::fs::write(&paths.state, state).map_err(|e| DistillError::io(&paths.state, e))?;
        }
    }
    Ok((Trained { model, average }, records))
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
        use burn::tensor::Distribution;
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
