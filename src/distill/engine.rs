//! One distillation step, on any device and any target: the code that
//! `bedside distill` (natively, with checkpoints and a loss log on disk) and
//! the teach room in the browser's Web Worker (everything in memory) share.
//!
//! A step reads nothing back: its loss terms come out as one small tensor
//! ([`PendingLoss`]) that the caller reads when it chooses, synchronously on
//! the CPU or asynchronously on WebGPU, where a sync read panics. So the
//! browser reads its losses in batches, with one readback for all terms.
//!
//! Reproducible: every random choice at step `s` (patches, augmentation,
//! InfoNCE locations) comes from an RNG seeded with (seed, s).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::module::adaptive_avg_pool3d;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::augment::{Augmenter, Sample};
use super::average::WeightAverage;
use super::config::{DistillConfig, LossWeights};
use super::dataset::PreparedVolume;
use super::losses::{cross_entropy, dice_loss, info_nce, kd_kl};
use super::DistillError;
use crate::inference::clock::now_ms;
use crate::model::Network;

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
    /// `student` with projection heads from its tap widths and the
    /// teacher's to `projection_dim`.
    pub fn with_student(student: Network, teacher: TapWidths, projection_dim: usize, device: &Device) -> Self {
        let s = tap_widths(&student, device);
        Self {
            student,
            encoder: Projection::new(s[0], teacher[0], projection_dim, device),
            bottleneck: Projection::new(s[1], teacher[1], projection_dim, device),
            decoder: Projection::new(s[2], teacher[2], projection_dim, device),
        }
    }
}

/// A network's channels at its three taps, read off one forward pass of a
/// small empty patch (every family reaches its coarsest level at 32³).
pub fn tap_widths(network: &Network, device: &Device) -> TapWidths {
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

/// The terms as [`PendingLoss`] packs them, with the names a message gives them.
const TERMS: [&str; 7] = ["total", "cross-entropy", "Dice", "T²·KL", "encoder InfoNCE", "bottleneck InfoNCE", "decoder InfoNCE"];

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

    fn terms(&self) -> [f64; 7] {
        [self.total, self.cross_entropy, self.dice, self.kd, self.encoder, self.bottleneck, self.decoder]
    }

    /// The first term that is NaN or infinite, by name (the total last: a
    /// part names the cause better).
    pub fn non_finite_term(&self) -> Option<&'static str> {
        let t = self.terms();
        (1..7).chain([0]).find(|&i| !t[i].is_finite()).map(|i| TERMS[i])
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

/// The weighted loss of one batch, and its terms packed as [`TERMS`]
/// (detached; zero where a term is off).
fn loss(model: &Distillee, batch: Batch, w: &LossWeights, rng: &mut StdRng) -> (Tensor<1>, Tensor<1>) {
    let device = batch.image.device();
    let taps = model.student.forward_taps(batch.image);
    let logits = taps.logits;
    let zero = || Tensor::<1>::zeros([1], &device);
    let mut terms: [Tensor<1>; 7] = std::array::from_fn(|_| zero());
    let mut total = zero();
    let mut add = |slot: usize, weight: f64, term: Tensor<1>| {
        terms[slot] = term.clone().detach();
        total = total.clone() + term * weight;
    };
    if w.cross_entropy > 0.0 {
        add(1, w.cross_entropy, cross_entropy(logits.clone(), batch.hard.clone()));
    }
    if w.dice > 0.0 {
        add(2, w.dice, dice_loss(logits.clone(), batch.hard.clone(), false, 1e-5));
    }
    if w.kd > 0.0 {
        add(3, w.kd, kd_kl(logits, batch.teacher_logits, w.temperature));
    }
    if w.uses_features() {
        let [te, tb, td] = batch.features;
        let pairs = [
            (4, w.encoder, taps.encoder, te, &model.encoder),
            (5, w.bottleneck, taps.bottleneck, tb, &model.bottleneck),
            (6, w.decoder, taps.decoder, td, &model.decoder),
        ];
        for (slot, weight, student, teacher, heads) in pairs {
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
            add(slot, weight, info_nce(s, t, w.info_nce_temperature));
        }
    }
    terms[0] = total.clone().detach();
    (total, Tensor::cat(terms.to_vec(), 0))
}

/// Cosine decay from the configured rate to 1% of it.
pub fn learning_rate(cfg: &DistillConfig, step: usize) -> f64 {
    let t = step as f64 / cfg.steps.max(1) as f64;
    let floor = 0.01 * cfg.learning_rate;
    floor + (cfg.learning_rate - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The RNG of step `step` (0-based) of a run seeded with `seed`.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
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

/// A step's loss terms, not read back yet.
pub struct PendingLoss {
    terms: Tensor<1>,
    record: LossRecord,
}

impl PendingLoss {
    fn fill(mut record: LossRecord, t: &[f32]) -> LossRecord {
        let v = |i: usize| t.get(i).copied().unwrap_or(f32::NAN) as f64;
        (record.total, record.cross_entropy, record.dice, record.kd) = (v(0), v(1), v(2), v(3));
        (record.encoder, record.bottleneck, record.decoder) = (v(4), v(5), v(6));
        record
    }

    /// Reads the terms now (a CPU device; natively any device).
    pub fn read(self) -> LossRecord {
        let t = self.terms.into_data().convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        Self::fill(self.record, &t)
    }

    /// Reads the terms on any device, WebGPU in a browser included.
    pub async fn read_async(self) -> Result<LossRecord, DistillError> {
        let data = self.terms.into_data_async().await.map_err(|e| DistillError::Model(format!("reading the loss back: {e:?}")))?;
        let t = data.convert::<f32>().try_to_vec::<f32>().unwrap_or_default();
        Ok(Self::fill(self.record, &t))
    }
}

/// The state of a training run: the module that learns, Adam's moments and
/// the optional weight average. Cloning it is cheap (tensor handles), so a
/// caller can keep the state from before a step and go back to it.
#[derive(Clone)]
pub struct Engine {
    pub model: Distillee,
    pub(super) optim: ModuleOptimizer,
    pub average: Option<WeightAverage>,
    /// Steps completed.
    pub steps_done: usize,
    device: Device,
}

impl Engine {
    /// `model` on an autodiff `device`; Adam with Burn's defaults.
    pub fn new(model: Distillee, average_decay: Option<f64>, device: &Device) -> Self {
        let average = average_decay.map(|decay| WeightAverage::new(decay, model.student.valid()));
        Self { model, optim: AdamConfig::new().init(), average, steps_done: 0, device: device.clone() }
    }

    /// One step on `samples` with the loss `weights` and learning rate `lr`.
    /// `rng` is the step's own (see [`step_rng`]), already used for the batch.
    /// Reads nothing back.
    pub fn step(&mut self, samples: &[Sample], weights: &LossWeights, lr: f64, rng: &mut StdRng) -> PendingLoss {
        let t0 = now_ms();
        let batch = to_batch(samples, &self.device);
        let (total, terms) = loss(&self.model, batch, weights, rng);
        let grads = GradientsParams::from_grads(total.backward(), &self.model);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        if let Some(average) = self.average.as_mut() {
            average.update(&self.model.student.valid());
        }
        self.steps_done += 1;
        let record = LossRecord { step: self.steps_done, learning_rate: lr, compute_ms: now_ms() - t0, ..Default::default() };
        PendingLoss { terms, record }
    }

    /// `n` steps of the recipe `cfg` on `volumes` (each step's batch and
    /// rate from `cfg`), with the losses read back together at the end,
    /// asynchronously, so WebGPU works. A loss that is not finite puts back
    /// the state from before the `n` steps. The in-memory runs (recovery in
    /// the Compress panel, LoRA adaptation) step this way.
    pub async fn steps_on(&mut self, cfg: &DistillConfig, volumes: &[PreparedVolume], n: usize) -> Result<Vec<LossRecord>, DistillError> {
        let before = self.clone();
        let mut pending = Vec::with_capacity(n);
        for _ in 0..n {
            let step = self.steps_done;
            let mut rng = step_rng(cfg.seed, step);
            let samples = batch_samples(cfg, volumes, &mut rng);
            pending.push(self.step(&samples, &cfg.loss, learning_rate(cfg, step), &mut rng));
        }
        let mut out = Vec::with_capacity(n);
        for p in pending {
            let r = p.read_async().await?;
            if r.non_finite_term().is_some() {
                *self = before;
                return Err(DistillError::Diverged(r.step));
            }
            out.push(r);
        }
        Ok(out)
    }

    /// The student to ship, without autodiff: the average where there is one.
    pub fn student(&self) -> Network {
        match &self.average {
            Some(average) => average.network().clone(),
            None => self.model.student.valid(),
        }
    }
}
