//! Recovery of a compressed model by distillation, in memory (the page's
//! Compress panel): the compressed package trains further with its original
//! as the teacher, on the loaded volume, with `start_from`'s semantics (it
//! keeps its family, factorisation, preprocessing and window) and the
//! shared [`Engine`]. The CLI does the same from a recipe
//! (`models/recipes/recovery/`).

use burn::tensor::Device;

use super::augment::AugmentConfig;
use super::config::{DistillConfig, LossWeights, TrainingVolume};
use super::dataset::PreparedVolume;
use super::engine::{Distillee, Engine, LossRecord};
use super::lockstep::RoomVolume;
use super::record::trained_on_manifest;
use super::DistillError;
use crate::model::{Manifest, Model};

/// The recipe of an in-tab recovery: response KD alone at T = 1 (the
/// original's own probabilities; hard labels from its argmax add nothing the
/// KL does not already carry, and no feature terms: the factorised network's
/// taps are its original's), on batches of two 64³ patches of the loaded
/// volume (`grid`: its padded dims; a smaller volume gets patches of its
/// smallest side). Chosen natively on the sample, the session-12 student-m at
/// factor 0.5, 20 steps at 1e-3, Dice with the original through the inference
/// pipeline: this recipe 0.8734 → 0.9024 (the shipped student-m, retrained on
/// zscore_head_box: 0.5135 → 0.8853); with one patch per step 0.8544; with the
/// CLI recovery recipe's losses (hard labels and KD at T = 4, made for 200
/// steps over four volumes) 0.7707 after 10 steps and 0.8368 after 20 (the
/// probe test below, `PROBE_*` variables; README, Teach room).
/// The side of the cubic patches an in-memory run trains on: 64 (what a
/// browser tab's memory holds for two patches a step), a multiple of the
/// network's `divisible_by` (at least 16), and no more than the grid's
/// smallest side allows; 0 when the grid is smaller than one multiple.
pub fn patch_side(grid: [usize; 3], divisible_by: usize) -> usize {
    let multiple = divisible_by.max(16);
    let smallest = grid.into_iter().min().unwrap_or(0) / multiple * multiple;
    64usize.max(multiple).min(smallest)
}

pub fn recovery_recipe(original: &Manifest, source: &Manifest, volume: &str, grid: [usize; 3], steps: usize, learning_rate: f64) -> DistillConfig {
    let side = patch_side(grid, source.preprocessing.divisible_by.max(original.preprocessing.divisible_by));
    DistillConfig {
        id: format!("{}-recovered", source.id),
        name: format!("{}, recovered by distillation from {}", source.name, original.id),
        teacher: format!("../{}", original.id).into(),
        student: crate::model::unet3d::Unet3dConfig::new(),
        start_from: Some(format!("../{}", source.id).into()),
        volumes: vec![TrainingVolume { image: volume.to_string(), mask: None }],
        patch: [side; 3],
        window: None,
        axis_order: source.preprocessing.axis_order.clone(),
        normalisation: source.preprocessing.normalisation.clone(),
        postprocessing: None,
        batch: 2,
        steps,
        learning_rate,
        seed: 42,
        average_decay: None,
        foreground_fraction: 0.67,
        loss: LossWeights { cross_entropy: 0.0, dice: 0.0, kd: 1.0, temperature: 1.0, encoder: 0.0, bottleneck: 0.0, decoder: 0.0, ..LossWeights::default() },
        augment: AugmentConfig::none(),
        checkpoint_every: steps.max(1),
        hold_out: None,
    }
}

pub struct Recovery {
    pub data: RoomVolume,
    train: Vec<PreparedVolume>,
    pub cfg: DistillConfig,
    engine: Engine,
    source: Manifest,
    pub history: Vec<LossRecord>,
}

impl Recovery {
    /// `compressed` goes on training from its own weights; `data` holds its
    /// original's outputs on the volume (the teacher). Refused when the two
    /// do not see the volume the same way.
    pub fn new(compressed_json: &str, compressed_weights: Vec<u8>, data: RoomVolume, steps: usize, learning_rate: f64, device: &Device) -> Result<Self, DistillError> {
        let device = device.clone().autodiff();
        // Built on the autodiff device, from its own weights.
        let compressed = Model::from_package_bytes(compressed_json, compressed_weights, &device).map_err(|e| DistillError::Model(e.to_string()))?;
        let (pre, theirs) = (&compressed.manifest.preprocessing, &data.teacher.preprocessing);
        if pre.axis_order != theirs.axis_order || pre.normalisation != theirs.normalisation || pre.target_spacing != theirs.target_spacing {
            return Err(DistillError::Config(format!(
                "{} does not see the volume as {} does (axis order, normalisation or spacing differ): recover it with its own original",
                compressed.manifest.id, data.teacher.id
            )));
        }
        if compressed.manifest.labels.len() != data.teacher.labels.len() {
            return Err(DistillError::Config("the model and its original have different labels".into()));
        }
        let cfg = recovery_recipe(&data.teacher, &compressed.manifest, "the loaded volume", data.full.dims, steps, learning_rate);
        if cfg.patch[0] == 0 {
            return Err(DistillError::Config(format!("the volume's grid {:?} is too small to train on", data.full.dims)));
        }
        let t = &data.full.teacher;
        let widths = [t.encoder.channels, t.bottleneck.channels, t.decoder.channels];
        device.seed(cfg.seed);
        let engine = Engine::new(Distillee::with_student(compressed.network, widths, cfg.loss.projection_dim, &device), None, &device);
        let train = vec![data.full.training_part(data.full.dims[0])];
        Ok(Self { data, train, cfg, engine, source: compressed.manifest, history: Vec::new() })
    }

    pub fn steps_done(&self) -> usize {
        self.engine.steps_done
    }

    /// `n` steps; a loss that is not finite stops with the weights from
    /// before them kept.
    pub async fn steps(&mut self, n: usize) -> Result<Vec<LossRecord>, DistillError> {
        let out = self.engine.steps_on(&self.cfg, &self.train, n).await?;
        self.history.extend(out.iter().cloned());
        Ok(out)
    }

    /// The recovered package: the source's family and factorisation with
    /// the trained weights, and the recipe in its training record.
    pub async fn package(&self) -> Result<(Manifest, Vec<u8>), DistillError> {
        let network = self.engine.student();
        let volumes = serde_json::json!([{ "image": "the volume loaded in the page", "hard_labels": "teacher argmax" }]);
        let cfg = DistillConfig { steps: self.steps_done(), ..self.cfg.clone() };
        let manifest = trained_on_manifest(&cfg, &self.source, &self.data.teacher, &network, &volumes, 0.0, "the bedside page (in the browser)");
        let weights = crate::model::transfer::to_safetensors_async(&network).await.map_err(|e| DistillError::Model(e.to_string()))?;
        Ok((manifest, weights))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::compress::{compress_package, CompressOptions, RankRule};
    use crate::distill::fixtures::{toy_head, toy_teacher};
    use crate::distill::lockstep::prepare_volume;
    use crate::metrics::dice;

    /// The toy teacher at factor 0.5, recovered: its agreement with the
    /// original on the toy head rises, and the package keeps the factorisation.
    #[test]
    fn recovery_brings_a_compressed_model_closer_to_its_original() {
        let device = Device::flex();
        let original = toy_teacher(&device);
        let json = serde_json::to_string(&original.manifest).unwrap();
        let weights = original.network.to_safetensors().unwrap();
        let rule = RankRule::Factor { factor: 0.3, min_rank: 1 };
        let c = compress_package(&json, &weights, &rule, &CompressOptions::default(), &|| 0.0, &mut |_, _, _| true).unwrap();
        let c_json = serde_json::to_string(&c.manifest).unwrap();
        let compressed = Model::from_package_bytes(&c_json, c.weights.clone(), &device).unwrap();
        let data = pollster::block_on(prepare_volume(&toy_head(), &original, None, &device)).unwrap();
        let teacher_labels = crate::distill::dataset::argmax(&data.full.teacher.logits);
        let image = crate::distill::augment::Grid { dims: data.full.dims, channels: 1, data: data.full.image.clone() };
        let agreement = |m: &Model| {
            let out = crate::distill::teacher::grid_from_tensor(m.network.forward(crate::distill::teacher::tensor_from_grid(&image, &device)));
            dice(&crate::distill::dataset::argmax(&out), &teacher_labels)
        };
        let before = agreement(&compressed);
        let mut r = Recovery::new(&c_json, c.weights.clone(), data, 30, 2e-3, &device).unwrap();
        let records = pollster::block_on(r.steps(30)).unwrap();
        assert_eq!(records.len(), 30);
        let (manifest, weights) = pollster::block_on(r.package()).unwrap();
        assert_eq!(manifest.params, c.manifest.params, "the factorisation is kept");
        assert_eq!(manifest.training.as_ref().unwrap()["start_from"], c.manifest.id.as_str());
        let recovered = Model::from_package_bytes(&serde_json::to_string(&manifest).unwrap(), weights, &device).unwrap();
        let after = agreement(&recovered);
        eprintln!("Dice with the original: {before:.4} -> {after:.4}");
        assert!(after > before, "recovery raised the agreement: {before:.4} -> {after:.4}");
    }
}

/// Probe (ignored; a measurement, not a test): the page's recovery scenario
/// natively, judged through the inference pipeline the page compares with,
/// every `PROBE_EVERY` steps. `PROBE_STEPS`, `PROBE_LR`, `PROBE_CE`,
/// `PROBE_DICE`, `PROBE_KD`, `PROBE_T`, `PROBE_FG`, `PROBE_PATCH`,
/// `PROBE_BATCH` change the recipe:
///   cargo test --release --lib -- --ignored --nocapture recovery_probe
#[cfg(all(test, not(target_arch = "wasm32")))]
mod probe {
    use super::*;
    use crate::compress::{compress_package, CompressOptions, RankRule};
    use crate::distill::lockstep::prepare_volume;
    use crate::inference::pipeline::{segment, SegmentOptions};

    fn env<T: std::str::FromStr>(k: &str, d: T) -> T {
        std::env::var(k).ok().and_then(|s| s.parse().ok()).unwrap_or(d)
    }

    #[test]
    #[ignore]
    fn recovery_probe_student_m() {
        let device = Device::flex();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let original = Model::load_dir(&root.join("models/student-m"), false, &device).unwrap();
        let json = serde_json::to_string(&original.manifest).unwrap();
        let weights = original.network.to_safetensors().unwrap();
        let rule = RankRule::Factor { factor: 0.5, min_rank: 1 };
        let c = compress_package(&json, &weights, &rule, &CompressOptions::default(), &|| 0.0, &mut |_, _, _| true).unwrap();
        let c_json = serde_json::to_string(&c.manifest).unwrap();
        let bytes = std::fs::read(root.join("www/sample/ch2.nii.gz")).unwrap();
        let vol = crate::volume::read_nifti(&bytes).unwrap();
        let seg = |m: &Model| pollster::block_on(segment(&vol, m, &device, SegmentOptions::default(), &mut |_, _| true)).unwrap().labels;
        let reference = seg(&original);
        let steps: usize = env("PROBE_STEPS", 10);
        let lr: f64 = env("PROBE_LR", 1e-3);
        let every: usize = env("PROBE_EVERY", 5);
        let data = pollster::block_on(prepare_volume(&vol, &original, None, &device)).unwrap();
        let mut r = Recovery::new(&c_json, c.weights.clone(), data, steps, lr, &device).unwrap();
        r.cfg.loss.cross_entropy = env("PROBE_CE", r.cfg.loss.cross_entropy);
        r.cfg.loss.dice = env("PROBE_DICE", r.cfg.loss.dice);
        r.cfg.loss.kd = env("PROBE_KD", r.cfg.loss.kd);
        r.cfg.loss.temperature = env("PROBE_T", r.cfg.loss.temperature);
        r.cfg.foreground_fraction = env("PROBE_FG", r.cfg.foreground_fraction);
        let p: usize = env("PROBE_PATCH", r.cfg.patch[0]);
        r.cfg.patch = [p; 3];
        r.cfg.batch = env("PROBE_BATCH", r.cfg.batch);
        let judge = |r: &Recovery| {
            let (manifest, w) = pollster::block_on(r.package()).unwrap();
            let m = Model::from_package_bytes(&serde_json::to_string(&manifest).unwrap(), w, &device).unwrap();
            crate::metrics::dice(&seg(&m), &reference)
        };
        eprintln!("step 0: {:.4}", judge(&r));
        for s in 1..=steps {
            let rec = pollster::block_on(r.steps(1)).unwrap();
            if s % every == 0 {
                eprintln!("step {s}: {:.4}  loss {:.4} kd {:.4}", judge(&r), rec[0].total, rec[0].kd);
            }
        }
    }
}
