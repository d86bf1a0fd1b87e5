//! The teach room's run: a KD student and its twin, from the same seed and on
//! the same patches, trained in lock-step by the shared [`Engine`], the twin
//! on the hard labels only, so the gain from distillation shows as it happens.
//!
//! Everything here lives in memory: the teacher's outputs, the students and
//! their curves are derived from the loaded scan and are never stored. The
//! web layer (`web::teach`) only forwards calls; the CLI's tests drive the
//! same code.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::augment::Grid;
use super::config::DistillConfig;
use super::dataset::{argmax, crop, PreparedVolume};
use super::engine::{batch_samples, learning_rate, step_rng, Distillee, Engine, LossRecord, PendingLoss};
use super::losses::kd_kl_per_voxel;
use super::record::student_manifest;
use super::teach_setup::TeachSetup;
use super::teacher::{grid_from_tensor_async, run_teacher_async, tensor_from_grid};
use super::DistillError;
use crate::inference::clock::now_ms;
use crate::inference::preprocess::{labels_to_model, prepare, Prepared};
use crate::metrics::dice;
use crate::model::package::{load_module_safetensors, module_to_safetensors};
use crate::model::{Manifest, Model, Network};
use crate::volume::Volume;

/// The share of the volume held out from training for the room's Dice.
pub const HOLD_OUT: f64 = 0.25;

/// The loaded volume as the room uses it, with the teacher's outputs.
pub struct RoomVolume {
    pub prepared: Prepared,
    /// The whole grid: image, hard labels, teacher outputs.
    pub full: PreparedVolume,
    /// Columns `split..` of the first storage axis are held out.
    pub split: usize,
    /// An independent mask on the model's grid, when one was given.
    pub reference: Option<Vec<u8>>,
    pub teacher: Manifest,
    pub teacher_ms: f64,
}

/// Where the hard labels come from, in words the page shows.
pub fn label_source(has_reference: bool) -> &'static str {
    if has_reference {
        "the reference mask"
    } else {
        "the teacher's argmax (no reference mask loaded)"
    }
}

/// Runs `teacher` once over `volume` (its taps and logits, read back
/// asynchronously so WebGPU works) and prepares the room's data.
/// `reference`: an independent mask on the volume's grid.
pub async fn prepare_volume(
    volume: &Volume,
    teacher: &Model,
    reference: Option<&[u8]>,
    device: &Device,
) -> Result<RoomVolume, DistillError> {
    let pre = &teacher.manifest.preprocessing;
    let prepared = prepare(volume, pre).map_err(|e| DistillError::Volume(e.to_string()))?;
    let t0 = now_ms();
    let targets = run_teacher_async(&teacher.network, &prepared, device).await?;
    let teacher_ms = now_ms() - t0;
    let classes = teacher.manifest.labels.len().max(2);
    if targets.logits.channels != classes {
        return Err(DistillError::Model(format!(
            "the teacher gives {} channels for {} labels",
            targets.logits.channels, classes
        )));
    }
    let reference = reference.map(|r| labels_to_model(r, volume.dims, &prepared));
    if let Some(r) = &reference {
        if r.iter().any(|&l| l as usize >= classes) {
            return Err(DistillError::Config(format!(
                "the reference mask has labels the teacher does not know (it has {classes})"
            )));
        }
    }
    let labels = reference.clone().unwrap_or_else(|| argmax(&targets.logits));
    let full = PreparedVolume::new("volume".into(), prepared.padded_dims, prepared.data.clone(), labels, reference.is_some(), targets);
    Ok(RoomVolume { prepared, full, split: 0, reference, teacher: teacher.manifest.clone(), teacher_ms })
}

/// Dice of both students (and the teacher against the reference) at a step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: usize,
    /// Against the teacher's argmax, on the held-out part.
    pub dice_kd: f64,
    pub dice_scratch: f64,
    /// Against the reference mask (held-out part), when one is loaded.
    pub reference_kd: Option<f64>,
    pub reference_scratch: Option<f64>,
    pub reference_teacher: Option<f64>,
    /// Mean wall time per lock-step step (both students) since the last evaluation.
    pub ms_per_step: f64,
}

/// A run paused on a loss that is not finite.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub student: &'static str,
    pub step: usize,
    pub term: &'static str,
    /// Steps completed by the weights kept (those before the faulty step's batch).
    pub kept_step: usize,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}: the {} student's {} loss is not finite. The run is paused with the weights of step {}; lower the learning rate or T, then play again.",
            self.step, self.student, self.term, self.kept_step
        )
    }
}

/// What [`Room::checkpoint`] reads back: each student's weights as
/// safetensors bytes, and the setup and curves as JSON (opaque to the page).
pub struct Checkpoint {
    pub step: usize,
    pub kd: Vec<u8>,
    pub scratch: Vec<u8>,
    pub record: String,
}

#[derive(Serialize, Deserialize)]
struct CheckpointRecord {
    setup: TeachSetup,
    history: Vec<[LossRecord; 2]>,
    evaluations: Vec<Evaluation>,
}

/// The two students of the room.
pub struct Room {
    pub setup: TeachSetup,
    pub data: RoomVolume,
    train: Vec<PreparedVolume>,
    cfg: DistillConfig,
    kd: Engine,
    scratch: Engine,
    /// The device as given, and with autodiff (what trains).
    plain: Device,
    device: Device,
    pub history: Vec<[LossRecord; 2]>,
    pub evaluations: Vec<Evaluation>,
    /// Each student's logits over the whole grid at the last view refresh.
    logits: [Option<Grid>; 2],
    /// Test hook: the next step's patches are made NaN.
    poison_next: bool,
    /// Test hook: the next step fails as a lost GPU does.
    lose_device_next: bool,
    ms_since_eval: (f64, usize),
}

const NAMES: [&str; 2] = ["KD", "hard-label twin"];

impl Room {
    /// Two fresh students for `setup` on `data` (kept), on `device` (autodiff is added).
    pub fn new(setup: TeachSetup, mut data: RoomVolume, device: &Device) -> Result<Self, DistillError> {
        setup.check().map_err(DistillError::Config)?;
        let preset = setup.preset();
        data.split = data.full.hold_out_start(HOLD_OUT, preset.patch);
        if data.split < preset.patch || data.split >= data.full.dims[0] || data.full.dims.iter().any(|&d| d < preset.patch) {
            return Err(DistillError::Config(format!(
                "the volume's grid {:?} is too small for {}'s {}³ patches and a held-out quarter",
                data.full.dims, preset.id, preset.patch
            )));
        }
        let train = vec![data.full.training_part(data.split)];
        let cfg = setup.recipe(&data.teacher, "volume", None, false, HOLD_OUT);
        let plain = device.clone();
        let device = device.clone().autodiff();
        let (kd, scratch) = Self::students(&setup, &data, &device);
        Ok(Self {
            setup,
            data,
            train,
            cfg,
            kd,
            scratch,
            plain,
            device,
            history: Vec::new(),
            evaluations: Vec::new(),
            logits: [None, None],
            poison_next: false,
            lose_device_next: false,
            ms_since_eval: (0.0, 0),
        })
    }

    /// Both students from the same seed: the same initial weights, drawn on
    /// the CPU and loaded into the students on `device` (an upload, not a
    /// readback), since each backend has its own random generator: a seed
    /// gives the same students on WebGPU as on the CPU, in the browser as
    /// natively.
    fn students(setup: &TeachSetup, data: &RoomVolume, device: &Device) -> (Engine, Engine) {
        let t = &data.full.teacher;
        let widths = [t.encoder.channels, t.bottleneck.channels, t.decoder.channels];
        let unet = setup.preset().unet3d(t.logits.channels);
        let cpu = Device::flex();
        cpu.seed(setup.seed);
        let drawn = Distillee::with_student(Network::Unet3d(unet.init(&cpu)), widths, 32, &cpu);
        let weights = module_to_safetensors(&drawn).expect("a CPU module serialises");
        let make = || {
            let mut model = Distillee::with_student(Network::Unet3d(unet.init(device)), widths, 32, device);
            load_module_safetensors(&mut model, weights.clone()).expect("the same module's weights load");
            Engine::new(model, None, device)
        };
        (make(), make())
    }

    /// New students from `seed`; the teacher's outputs are kept.
    pub fn reset(&mut self, seed: u64) {
        self.setup.seed = seed;
        self.cfg.seed = seed;
        (self.kd, self.scratch) = Self::students(&self.setup, &self.data, &self.device);
        self.history.clear();
        self.evaluations.clear();
        self.logits = [None, None];
        self.ms_since_eval = (0.0, 0);
    }

    /// T, α, the learning rate and the feature weight, mid-run.
    pub fn set_params(&mut self, temperature: f64, alpha: f64, lr: f64, feature: f64) -> Result<(), DistillError> {
        let next = TeachSetup { temperature, alpha, lr, feature, ..self.setup.clone() };
        next.check().map_err(DistillError::Config)?;
        self.cfg.learning_rate = lr;
        self.cfg.loss = next.kd_weights();
        self.setup = next;
        Ok(())
    }

    pub fn steps_done(&self) -> usize {
        self.kd.steps_done
    }

    /// The largest single buffer one training step allocates: the student's
    /// widest full-resolution activation over a batch of patches (autodiff
    /// keeps several of that size, but WebGPU refuses by the single buffer).
    pub fn step_buffer_bytes(&self) -> u64 {
        let p = self.setup.preset();
        self.kd.model.student.peak_bytes_per_voxel() * (p.patch as u64).pow(3) * p.batch as u64
    }

    /// The test hook behind the room's NaN check.
    pub fn poison_next_step(&mut self) {
        self.poison_next = true;
    }

    /// The test hook behind the room's lost-device path: the next step fails
    /// with the error a lost WebGPU device gives, before touching the weights.
    pub fn lose_device_next_step(&mut self) {
        self.lose_device_next = true;
    }

    /// Both students (with their projection heads) and the run's record,
    /// read back to the CPU: what the run resumes from on another device
    /// when its GPU is lost. Adam's moments are not kept (they restart).
    pub async fn checkpoint(&self) -> Result<Checkpoint, DistillError> {
        let bytes = |e: &Engine| {
            let model = e.model.valid();
            async move { crate::model::transfer::module_to_safetensors_async(&model).await.map_err(|e| DistillError::Model(e.to_string())) }
        };
        let record = serde_json::to_string(&CheckpointRecord { setup: self.setup.clone(), history: self.history.clone(), evaluations: self.evaluations.clone() })
            .map_err(|e| DistillError::Model(e.to_string()))?;
        Ok(Checkpoint { step: self.steps_done(), kd: bytes(&self.kd).await?, scratch: bytes(&self.scratch).await?, record })
    }

    /// Goes on from `checkpoint` (made by a room on the same volume, teacher
    /// and preset, on any device): its weights, step, setup and curves.
    pub fn restore(&mut self, checkpoint: Checkpoint) -> Result<(), DistillError> {
        let record: CheckpointRecord = serde_json::from_str(&checkpoint.record).map_err(|e| DistillError::Config(format!("the checkpoint's record: {e}")))?;
        if record.setup.student != self.setup.student || record.history.len() != checkpoint.step {
            return Err(DistillError::Config(format!(
                "the checkpoint is of {} at step {} with {} steps of curves; this room trains {}",
                record.setup.student,
                checkpoint.step,
                record.history.len(),
                self.setup.student
            )));
        }
        let (mut kd, mut scratch) = Self::students(&record.setup, &self.data, &self.device);
        for (engine, bytes) in [(&mut kd, checkpoint.kd), (&mut scratch, checkpoint.scratch)] {
            load_module_safetensors(&mut engine.model, bytes).map_err(|e| DistillError::Model(e.to_string()))?;
            engine.steps_done = checkpoint.step;
        }
        (self.kd, self.scratch) = (kd, scratch);
        self.cfg.seed = record.setup.seed;
        self.set_params(record.setup.temperature, record.setup.alpha, record.setup.lr, record.setup.feature)?;
        self.setup = record.setup;
        self.history = record.history;
        self.evaluations = record.evaluations;
        self.logits = [None, None];
        self.ms_since_eval = (0.0, 0);
        Ok(())
    }

    /// `n` lock-step steps; their losses are read back once, at the end. A
    /// loss that is not finite puts both students back to their weights from
    /// before these steps and returns the [`Fault`].
    pub async fn steps(&mut self, n: usize) -> Result<Result<Vec<[LossRecord; 2]>, Fault>, DistillError> {
        if std::mem::take(&mut self.lose_device_next) {
            return Err(DistillError::Device(format!("step {}: the GPU device was lost (the test hook lost it)", self.steps_done() + 1)));
        }
        let before = (self.kd.clone(), self.scratch.clone());
        let t0 = now_ms();
        let mut pending: Vec<[PendingLoss; 2]> = Vec::with_capacity(n);
        for _ in 0..n {
            let step = self.kd.steps_done;
            let mut rng = step_rng(self.cfg.seed, step);
            let mut samples = batch_samples(&self.cfg, &self.train, &mut rng);
            if std::mem::take(&mut self.poison_next) {
                samples.iter_mut().for_each(|s| s.image.iter_mut().for_each(|v| *v = f32::NAN));
            }
            let lr = learning_rate(&self.cfg, step);
            // The twin draws nothing from its RNG (no feature terms); the KD
            // student's stream stays the native run's.
            let mut twin_rng = step_rng(self.cfg.seed, step);
            let kd = self.kd.step(&samples, &self.cfg.loss, lr, &mut rng);
            let twin = self.scratch.step(&samples, &self.setup.scratch_weights(), lr, &mut twin_rng);
            pending.push([kd, twin]);
        }
        let mut out = Vec::with_capacity(n);
        for [kd, twin] in pending {
            out.push([kd.read_async().await?, twin.read_async().await?]);
        }
        let ms = (now_ms() - t0) / n.max(1) as f64;
        for pair in out.iter() {
            for (s, r) in pair.iter().enumerate() {
                if let Some(term) = r.non_finite_term() {
                    (self.kd, self.scratch) = before;
                    return Ok(Err(Fault { student: NAMES[s], step: r.step, term, kept_step: self.kd.steps_done }));
                }
            }
        }
        for pair in out.iter_mut() {
            for r in pair.iter_mut() {
                r.compute_ms = ms;
            }
        }
        self.ms_since_eval.0 += ms * n as f64;
        self.ms_since_eval.1 += n;
        self.history.extend(out.iter().cloned());
        Ok(Ok(out))
    }

    /// Scores both students on the held-out part: each runs on the held-out
    /// columns plus 16 of context (not the whole grid: on a CPU that costs
    /// seconds), and is compared with the teacher (and the reference).
    pub async fn evaluate(&mut self) -> Result<Evaluation, DistillError> {
        let [nx, ny, nz] = self.data.full.dims;
        let from = self.data.split.saturating_sub(16);
        let size = [nx - from, ny, nz];
        let slab = Grid { dims: size, channels: 1, data: crop(&self.data.full.image, self.data.full.dims, 1, [from, 0, 0], size) };
        let mut held = Vec::with_capacity(2);
        for engine in [&self.kd, &self.scratch] {
            let logits = engine.model.student.valid().forward(tensor_from_grid(&slab, &self.plain));
            let labels = argmax(&grid_from_tensor_async(logits).await?);
            let margin = self.data.split - from;
            held.push(crop(&labels, size, 1, [margin, 0, 0], [size[0] - margin, ny, nz]));
        }
        let teacher = self.held_out(&argmax(&self.data.full.teacher.logits));
        let reference = self.data.reference.as_ref().map(|r| self.held_out(r));
        let (sum, n) = std::mem::take(&mut self.ms_since_eval);
        let e = Evaluation {
            step: self.steps_done(),
            dice_kd: dice(&held[0], &teacher),
            dice_scratch: dice(&held[1], &teacher),
            reference_kd: reference.as_ref().map(|r| dice(&held[0], r)),
            reference_scratch: reference.as_ref().map(|r| dice(&held[1], r)),
            reference_teacher: reference.as_ref().map(|r| dice(&teacher, r)),
            ms_per_step: if n > 0 { sum / n as f64 } else { f64::NAN },
        };
        self.evaluations.push(e.clone());
        Ok(e)
    }

    /// Runs both students over the whole grid, for the soft-target view and
    /// the masks (their logits are kept until the next refresh).
    pub async fn refresh_views(&mut self) -> Result<(), DistillError> {
        let image = Grid { dims: self.data.full.dims, channels: 1, data: self.data.full.image.clone() };
        for (slot, engine) in [&self.kd, &self.scratch].into_iter().enumerate() {
            let logits = engine.model.student.valid().forward(tensor_from_grid(&image, &self.plain));
            self.logits[slot] = Some(grid_from_tensor_async(logits).await?);
        }
        Ok(())
    }

    /// The held-out voxels of a grid-sized label array.
    fn held_out(&self, labels: &[u8]) -> Vec<u8> {
        let [nx, _, _] = self.data.full.dims;
        labels.iter().enumerate().filter(|(i, _)| i % nx >= self.data.split).map(|(_, &l)| l).collect()
    }

    /// Model-grid labels of the teacher (0), the KD student (1) or the twin (2)
    /// at the last view refresh.
    pub fn labels(&self, which: usize) -> Option<Vec<u8>> {
        match which {
            0 => Some(argmax(&self.data.full.teacher.logits)),
            1 | 2 => self.logits[which - 1].as_ref().map(argmax),
            _ => None,
        }
    }

    /// The package of the KD student (`scratch` false) or its twin, with its
    /// training record. `volume` names the scan in the record.
    pub async fn export(&self, scratch: bool, volume: &str, mask: Option<&str>) -> Result<(Manifest, Vec<u8>), DistillError> {
        let engine = if scratch { &self.scratch } else { &self.kd };
        let mut cfg = self.setup.recipe(&self.data.teacher, volume, mask, scratch, HOLD_OUT);
        cfg.steps = self.steps_done();
        let network = engine.student();
        let last = self.history.last().map(|r| &r[scratch as usize]);
        let volumes = serde_json::json!([{ "image": volume, "hard_labels": if mask.is_some() { mask.unwrap_or_default() } else { "teacher argmax" } }]);
        let mut manifest = student_manifest(&cfg, &self.data.teacher, &network, &volumes, 0.0, "the bedside teach room (in the browser)");
        if let Some(t) = manifest.training.as_mut() {
            t["final_losses"] = serde_json::to_value(last).unwrap_or_default();
            t["temperature"] = self.setup.temperature.into();
            t["alpha"] = if scratch { 0.0.into() } else { self.setup.alpha.into() };
            t["seed"] = self.setup.seed.into();
            t["steps"] = self.steps_done().into();
        }
        let weights = crate::model::transfer::to_safetensors_async(&network).await.map_err(|e| DistillError::Model(e.to_string()))?;
        Ok((manifest, weights))
    }

    /// The curves as CSV: one row per step and student.
    pub fn csv(&self) -> String {
        let mut out = format!("student,{}\n", LossRecord::CSV_HEADER);
        for pair in &self.history {
            for (name, r) in ["kd", "scratch"].iter().zip(pair) {
                out.push_str(&format!("{name},{}\n", r.csv()));
            }
        }
        out
    }

    /// The soft-target view of slice `z` (storage order) at temperature `t`:
    /// the teacher's and the KD student's probability of the last class
    /// (the foreground) and each voxel's T²·KL, as RGBA images.
    pub fn soft_view(&self, z: usize, t: f64) -> Result<SoftView, DistillError> {
        let [nx, ny, nz] = self.data.full.dims;
        let z = z.min(nz - 1);
        let student = self.logits[0].as_ref().ok_or_else(|| DistillError::Config("no student output yet: refresh the views first".into()))?;
        let teacher = &self.data.full.teacher.logits;
        let classes = teacher.channels;
        let slice = |g: &Grid| -> Tensor<5> {
            let n = nx * ny * nz;
            let mut data = Vec::with_capacity(classes * nx * ny);
            for c in 0..classes {
                data.extend_from_slice(&g.data[c * n + z * nx * ny..c * n + (z + 1) * nx * ny]);
            }
            Tensor::from_data(TensorData::new(data, [1, classes, 1, ny, nx]), &Device::flex())
        };
        let (ts, ss) = (slice(teacher), slice(student));
        let kl = kd_kl_per_voxel(ss.clone(), ts.clone(), t);
        let fg = |x: Tensor<5>| {
            let p = burn::tensor::activation::softmax(x / t, 1);
            p.slice([0..1, classes - 1..classes]).into_data().try_to_vec::<f32>().unwrap_or_default()
        };
        let (pt, ps) = (fg(ts), fg(ss));
        let kl = kl.into_data().try_to_vec::<f32>().unwrap_or_default();
        let max_kl = kl.iter().copied().fold(0.0f32, f32::max);
        let mean_kl = kl.iter().map(|&v| v as f64).sum::<f64>() / kl.len().max(1) as f64;
        Ok(SoftView {
            width: nx,
            height: ny,
            z,
            teacher: gray(&pt),
            student: gray(&ps),
            kl: heat(&kl, max_kl.max(1e-6)),
            max_kl: max_kl as f64,
            mean_kl,
        })
    }

    /// One voxel's logits and softmaxes (teacher and KD student) at T = 1
    /// and at `t`, and its T²·KL.
    pub fn voxel(&self, [x, y, z]: [usize; 3], t: f64) -> Result<VoxelView, DistillError> {
        let [nx, ny, nz] = self.data.full.dims;
        if x >= nx || y >= ny || z >= nz {
            return Err(DistillError::Config(format!("voxel ({x}, {y}, {z}) is outside the grid {:?}", self.data.full.dims)));
        }
        let i = x + nx * (y + ny * z);
        let n = nx * ny * nz;
        let at = |g: &Grid| (0..g.channels).map(|c| g.data[c * n + i]).collect::<Vec<f32>>();
        let teacher = at(&self.data.full.teacher.logits);
        let student = self.logits[0].as_ref().map(at);
        let to = |v: &[f32]| Tensor::<5>::from_data(TensorData::new(v.to_vec(), [1, v.len(), 1, 1, 1]), &Device::flex());
        let soft = |v: &[f32], t: f64| burn::tensor::activation::softmax(to(v) / t, 1).into_data().try_to_vec::<f32>().unwrap_or_default();
        let kl = student.as_ref().map(|s| kd_kl_per_voxel(to(s), to(&teacher), t).into_scalar::<f32>() as f64);
        Ok(VoxelView {
            voxel: [x, y, z],
            teacher_t1: soft(&teacher, 1.0),
            teacher_t: soft(&teacher, t),
            student_t1: student.as_ref().map(|s| soft(s, 1.0)),
            student_t: student.as_ref().map(|s| soft(s, t)),
            student: student.clone(),
            teacher,
            kl_t2: kl,
            temperature: t,
        })
    }

    /// The recipe that trains the KD student natively as the room does.
    pub fn recipe(&self, volume: &str, mask: Option<&str>) -> DistillConfig {
        self.setup.recipe(&self.data.teacher, volume, mask, false, HOLD_OUT)
    }
}

/// One step of both students as the curves plot it: each loss term
/// unweighted (hard labels: cross-entropy plus Dice; features: the three
/// InfoNCE terms) and the weighted total.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    pub step: usize,
    pub kd: CurveTerms,
    pub scratch: CurveTerms,
}

#[derive(Debug, Clone, Serialize)]
pub struct CurveTerms {
    pub hard: f64,
    pub kd: f64,
    pub feature: f64,
    pub total: f64,
    pub learning_rate: f64,
}

impl CurveTerms {
    pub fn of(r: &LossRecord) -> Self {
        Self { hard: r.cross_entropy + r.dice, kd: r.kd, feature: r.encoder + r.bottleneck + r.decoder, total: r.total, learning_rate: r.learning_rate }
    }
}

impl CurvePoint {
    pub fn of([kd, scratch]: &[LossRecord; 2]) -> Self {
        Self { step: kd.step, kd: CurveTerms::of(kd), scratch: CurveTerms::of(scratch) }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SoftView {
    pub width: usize,
    pub height: usize,
    pub z: usize,
    #[serde(skip)]
    pub teacher: Vec<u8>,
    #[serde(skip)]
    pub student: Vec<u8>,
    #[serde(skip)]
    pub kl: Vec<u8>,
    pub max_kl: f64,
    pub mean_kl: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VoxelView {
    pub voxel: [usize; 3],
    pub teacher: Vec<f32>,
    pub student: Option<Vec<f32>>,
    pub teacher_t1: Vec<f32>,
    pub teacher_t: Vec<f32>,
    pub student_t1: Option<Vec<f32>>,
    pub student_t: Option<Vec<f32>>,
    pub kl_t2: Option<f64>,
    pub temperature: f64,
}

/// Probabilities in [0, 1] as grey RGBA pixels.
fn gray(p: &[f32]) -> Vec<u8> {
    p.iter().flat_map(|&v| {
        let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        [g, g, g, 255]
    }).collect()
}

/// Values in [0, max] as a black → red → yellow ramp.
fn heat(v: &[f32], max: f32) -> Vec<u8> {
    v.iter().flat_map(|&x| {
        let s = (x / max).clamp(0.0, 1.0);
        let r = (s * 2.0).min(1.0);
        let g = (s * 2.0 - 1.0).max(0.0);
        [(r * 255.0) as u8, (g * 255.0) as u8, 0, 255]
    }).collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::distill::fixtures::{toy_room_volume, toy_setup, EXPECTED_TOTALS, LOSS_TOLERANCE};
    use crate::distill::teach_setup::TeachSetup;

    fn room() -> Room {
        let device = Device::flex();
        let data = pollster::block_on(toy_room_volume(&device));
        Room::new(toy_setup(), data, &device).unwrap()
    }

    fn steps(room: &mut Room, n: usize) -> Vec<[LossRecord; 2]> {
        pollster::block_on(room.steps(n)).unwrap().unwrap()
    }

    /// A teacher whose labels do not match its outputs, or a reference mask
    /// with labels the teacher does not know, is refused with its reason.
    #[test]
    fn a_teacher_whose_labels_do_not_fit_is_refused() {
        use crate::distill::fixtures::{toy_head, toy_teacher};
        let device = Device::flex();
        let mut teacher = toy_teacher(&device);
        let mut three = teacher.manifest.labels.clone();
        three.push(crate::model::Label { value: 2, name: "skull".into(), color: [0, 0, 255], code: None });
        let two = std::mem::replace(&mut teacher.manifest.labels, three);
        let err = pollster::block_on(prepare_volume(&toy_head(), &teacher, None, &device)).err().expect("refused").to_string();
        assert!(err.contains("the teacher gives 2 channels for 3 labels"), "{err}");
        teacher.manifest.labels = two;
        let head = toy_head();
        let reference = vec![2u8; head.data.len()];
        let err = pollster::block_on(prepare_volume(&head, &teacher, Some(&reference), &device)).err().expect("refused").to_string();
        assert!(err.contains("labels the teacher does not know"), "{err}");
    }

    /// A lost device: the step fails before touching the weights; a new
    /// room restored from the last checkpoint goes on from its weights
    /// (the next step's losses, computed before any update, are the ones the
    /// first room gives), with its curves and setup.
    #[test]
    fn a_lost_device_resumes_from_the_checkpoint_in_a_new_room() {
        let mut first = room();
        steps(&mut first, 3);
        first.set_params(2.0, 0.6, 0.002, 0.1).unwrap();
        let checkpoint = pollster::block_on(first.checkpoint()).unwrap();
        assert_eq!(checkpoint.step, 3);
        first.lose_device_next_step();
        let lost = pollster::block_on(first.steps(1)).err().expect("the lost device fails the step").to_string();
        assert!(lost.contains("step 4: the GPU device was lost"), "{lost}");
        assert_eq!(first.steps_done(), 3);
        let want = steps(&mut first, 1)[0].clone();

        let mut second = room();
        second.restore(checkpoint).unwrap();
        assert_eq!((second.steps_done(), second.history.len(), second.setup.temperature), (3, 3, 2.0));
        let got = steps(&mut second, 1)[0].clone();
        for k in 0..2 {
            assert_eq!(got[k].step, want[k].step);
            assert!((got[k].total - want[k].total).abs() <= 1e-5 * want[k].total.abs(), "{} vs {}", got[k].total, want[k].total);
        }
        // A checkpoint of another preset is refused.
        let mut other = room();
        let mut cp = pollster::block_on(first.checkpoint()).unwrap();
        cp.record = cp.record.replace("\"student\":\"", "\"student\":\"x");
        assert!(other.restore(cp).is_err());
    }

    /// The same numbers must come out of the wasm build (tests/wasm_trainer.rs).
    #[test]
    fn the_first_steps_give_the_recorded_losses() {
        let mut room = room();
        let records = steps(&mut room, EXPECTED_TOTALS.len());
        let got: Vec<[f64; 2]> = records.iter().map(|[kd, twin]| [kd.total, twin.total]).collect();
        eprintln!("totals: {got:?}");
        for (g, e) in got.iter().zip(EXPECTED_TOTALS) {
            for k in 0..2 {
                assert!((g[k] - e[k]).abs() <= LOSS_TOLERANCE * e[k].abs(), "{got:?} vs {EXPECTED_TOTALS:?}");
            }
        }
    }

    /// The recipe the room exports makes `bedside distill`'s loop (the
    /// native trainer, with its checkpoint and log files) give the room's
    /// KD losses: one trainer.
    #[test]
    fn the_exported_recipe_reproduces_the_rooms_losses_natively() {
        let device = Device::flex();
        let data = pollster::block_on(toy_room_volume(&device));
        let mut room = Room::new(TeachSetup { steps: 4, ..toy_setup() }, data, &device).unwrap();
        let records = steps(&mut room, 4);
        let cfg = room.recipe("unused", None);
        let part = room.data.full.training_part(room.data.split);
        let dir = std::env::temp_dir().join(format!("bedside-teach-recipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (_, native) = crate::distill::trainer::train(&cfg, std::slice::from_ref(&part), &dir, false, &device.autodiff(), &mut |_| {}).unwrap();
        assert_eq!(native.len(), 4);
        for (r, n) in records.iter().zip(&native) {
            assert!((r[0].total - n.total).abs() <= 1e-5 * n.total.abs(), "room {} vs native {}", r[0].total, n.total);
            assert_eq!(r[0].learning_rate, n.learning_rate);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn twins_start_equal_learn_apart_and_a_nan_pauses_with_the_weights_kept() {
        let mut room = room();
        let first = steps(&mut room, 1);
        let [kd, twin] = &first[0];
        // Same seed, same patches: the same network sees the same batch.
        assert_eq!((kd.cross_entropy, kd.dice), (twin.cross_entropy, twin.dice));
        assert!(kd.kd > 0.0 && kd.bottleneck > 0.0 && twin.kd == 0.0 && twin.bottleneck == 0.0);
        let later = steps(&mut room, 29);
        let mean = |r: &[[LossRecord; 2]], s: usize| r.iter().map(|p| p[s].cross_entropy).sum::<f64>() / r.len() as f64;
        assert!(mean(&later[24..], 1) < 0.8 * twin.cross_entropy, "the twin's hard loss fell");
        assert!(mean(&later[24..], 0) < kd.cross_entropy, "the KD student's hard loss fell");
        let e = pollster::block_on(room.evaluate()).unwrap();
        pollster::block_on(room.refresh_views()).unwrap();
        assert_eq!(e.step, 30);
        assert!((0.0..=1.0).contains(&e.dice_kd) && (0.0..=1.0).contains(&e.dice_scratch));

        // A change of T acts on the next step's KD term.
        let before = steps(&mut room, 1)[0][0].kd;
        room.set_params(1.0, 0.7, 3e-3, 0.2).unwrap();
        let after = steps(&mut room, 1)[0][0].kd;
        assert!((after - before).abs() > 0.1 * before, "T² · KL moved with T: {before} → {after}");

        let view = room.soft_view(16, 1.0).unwrap();
        assert_eq!((view.width, view.height), (64, 32));
        assert_eq!(view.kl.len(), 64 * 32 * 4);

        room.poison_next_step();
        let kept = room.steps_done();
        let fault = pollster::block_on(room.steps(3)).unwrap().unwrap_err();
        assert_eq!((fault.step, fault.kept_step, room.steps_done()), (kept + 1, kept, kept));
        assert_eq!(fault.student, "KD");
        assert!(fault.to_string().contains("not finite"));
        // The run goes on from the kept weights.
        assert!(steps(&mut room, 1)[0][0].total.is_finite());
    }

    #[test]
    fn an_exported_student_is_a_package_that_loads_and_records_its_training() {
        let mut room = room();
        steps(&mut room, 2);
        let (manifest, weights) = pollster::block_on(room.export(false, "toy.nii.gz", None)).unwrap();
        let json = serde_json::to_string(&manifest).unwrap();
        let model = Model::from_package_bytes(&json, weights, &Device::flex()).unwrap();
        assert_eq!(model.manifest.family, "unet3d");
        let t = manifest.training.unwrap();
        assert_eq!((t["teacher"].as_str(), t["steps"].as_u64(), t["alpha"].as_f64()), (Some("toy-teacher"), Some(2), Some(0.7)));
        assert!(t["final_losses"]["total"].as_f64().unwrap() > 0.0);
        let recipe = room.recipe("${BEDSIDE_DATA}/toy.nii.gz", None);
        assert_eq!((recipe.seed, recipe.hold_out, recipe.patch), (5, Some(HOLD_OUT), [32; 3]));
        assert_eq!(room.csv().lines().count(), 1 + 2 * 2);
    }
}
