//! Training an adapter on a site's own labelled scans, on the trainer
//! distillation uses ([`Engine`]): the base model's network with adapters
//! beside its targeted convolutions, every other weight frozen, Dice +
//! cross-entropy on the user's masks. `bedside lora train` and the page's
//! Adapt panel (`web::adapt`) both drive this code.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use super::adapter::{sha256_hex, trained_tensors, Adapter, AdapterConfig};
use super::{freeze_all_but, AdapterPlan, LoraConfig, Trainables};
use crate::distill::augment::AugmentConfig;
use crate::distill::config::{DistillConfig, LossWeights, TrainingVolume};
use crate::distill::dataset::PreparedVolume;
use crate::distill::engine::{Distillee, Engine, LossRecord};
use crate::distill::lockstep::{prepare_volume, RoomVolume};
use crate::distill::teacher::teacher_logits_on;
use crate::distill::recover::patch_side;
use crate::distill::DistillError;
use crate::inference::pipeline::{segment, SegmentOptions};
use crate::metrics::dice;
use crate::model::transfer::copy_to;
use crate::model::{Manifest, Model, Network};
use crate::volume::Volume;

/// How an adapter trains: steps and rate. Batches are two patches of up to
/// 64³ (the in-tab recovery's size, which a browser tab's memory holds),
/// foreground-centred two times in three.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub steps: usize,
    pub learning_rate: f64,
    pub seed: u64,
    /// What learns: the adapters (the default), or the comparisons.
    pub trainables: Trainables,
    /// Weight of the KD term (T²·KL at T = 4) towards a teacher's logits,
    /// when a [`Teaching`] is given; ignored (0) without one.
    #[serde(default)]
    pub kd: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { steps: 100, learning_rate: 2e-3, seed: 42, trainables: Trainables::Adapters, kd: 0.0 }
    }
}

/// A teacher for the optional KD term (HD-BET, say, which learnt from T2
/// and FLAIR too): its soft outputs on every labelled volume, and on
/// volumes without a mask, whose hard labels are then its own.
pub struct Teaching<'a> {
    pub teacher: &'a Model,
    pub unlabelled: &'a [Volume],
}

/// Parameters of `module` that learn under `trainables`.
pub fn count_learning<M: Module>(module: &M, trainables: Trainables) -> usize {
    struct Count {
        path: Vec<String>,
        trainables: Trainables,
        n: usize,
    }
    impl ModuleVisitor for Count {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.trainables.learns(&self.path.join(".")) {
                self.n += param.shape().num_elements();
            }
        }
    }
    let mut count = Count { path: Vec::new(), trainables, n: 0 };
    module.visit(&mut count);
    count.n
}

/// An image and its mask, which must share the image's grid.
pub fn mask_labels(image: &Volume, mask: &Volume) -> Result<Vec<u8>, DistillError> {
    if mask.dims != image.dims {
        return Err(DistillError::Volume(format!(
            "the mask's grid {:?} differs from the image's {:?}: give each image its own mask, on the same grid",
            mask.dims, image.dims
        )));
    }
    Ok(mask.data.iter().map(|&v| (v > 0.0) as u8).collect())
}

/// The distillation recipe an adaptation runs: the labels, and the KD term
/// when a teacher is given (no feature terms), on the base model's own
/// preprocessing and grid.
fn recipe(base: &Manifest, teacher: Option<&str>, grid: [usize; 3], labelled: usize, unlabelled: usize, options: &TrainOptions) -> DistillConfig {
    let side = patch_side(grid, base.preprocessing.divisible_by);
    DistillConfig {
        id: format!("{}-lora", base.id),
        name: format!("{} + LoRA adapter", base.name),
        teacher: format!("../{}", teacher.unwrap_or(&base.id)).into(),
        student: crate::model::unet3d::Unet3dConfig::new(),
        start_from: Some(format!("../{}", base.id).into()),
        volumes: (0..labelled)
            .map(|i| TrainingVolume { image: format!("labelled volume {}", i + 1), mask: Some("its mask".into()) })
            .chain((0..unlabelled).map(|i| TrainingVolume { image: format!("unlabelled volume {} (the teacher's labels)", i + 1), mask: None }))
            .collect(),
        patch: [side; 3],
        window: None,
        axis_order: base.preprocessing.axis_order.clone(),
        normalisation: base.preprocessing.normalisation.clone(),
        postprocessing: None,
        batch: 2,
        steps: options.steps,
        learning_rate: options.learning_rate,
        seed: options.seed,
        average_decay: None,
        foreground_fraction: 0.67,
        loss: LossWeights { cross_entropy: 1.0, dice: 1.0, kd: options.kd, encoder: 0.0, bottleneck: 0.0, decoder: 0.0, ..LossWeights::default() },
        augment: AugmentConfig::none(),
        checkpoint_every: options.steps.max(1),
        hold_out: None,
    }
}

/// A run: the base, the plan, the engine and what it has logged.
pub struct Adaptation {
    engine: Engine,
    train: Vec<PreparedVolume>,
    pub cfg: DistillConfig,
    pub lora: LoraConfig,
    pub trainables: Trainables,
    pub plan: AdapterPlan,
    base: Manifest,
    base_sha256: String,
    /// Parameters that learn (the adapters') and all of the adapted network's.
    pub trainable: usize,
    pub total: usize,
    pub history: Vec<LossRecord>,
}

impl Adaptation {
    /// Prepares each labelled volume on the base model's grid (the base runs
    /// once over it, on `device`), and builds the adapted network. With
    /// `teaching`, the teacher runs once over every volume too (its logits
    /// are the KD term's targets) and its unlabelled volumes join training.
    pub async fn new(
        base_json: &str,
        base_weights: Vec<u8>,
        lora: LoraConfig,
        labelled: &[(Volume, Vec<u8>)],
        teaching: Option<Teaching<'_>>,
        options: TrainOptions,
        device: &Device,
    ) -> Result<Self, DistillError> {
        if labelled.is_empty() {
            return Err(DistillError::Config("give at least one labelled volume (an image and its mask)".into()));
        }
        let mut options = options;
        if teaching.is_none() {
            options.kd = 0.0;
        } else if !(options.kd > 0.0 && options.kd.is_finite()) {
            return Err(DistillError::Config(format!("the KD weight must be above 0 with a teacher (it is {})", options.kd)));
        }
        let base_sha256 = sha256_hex(&base_weights);
        let model = |dev: &Device| Model::from_package_bytes(base_json, base_weights.clone(), dev).map_err(|e| DistillError::Model(e.to_string()));
        let base = model(device)?;
        let mut rooms: Vec<RoomVolume> = Vec::with_capacity(labelled.len());
        for (volume, mask) in labelled {
            if mask.iter().all(|&l| l == 0) {
                return Err(DistillError::Volume("a mask is empty: it labels no voxel".into()));
            }
            rooms.push(prepare_volume(volume, &base, Some(mask), device).await?);
        }
        if let Some(t) = &teaching {
            for volume in t.unlabelled {
                rooms.push(prepare_volume(volume, &base, None, device).await?);
            }
            let volumes = labelled.iter().map(|(v, _)| v).chain(t.unlabelled);
            for (room, volume) in rooms.iter_mut().zip(volumes) {
                let logits = teacher_logits_on(t.teacher, volume, &room.prepared, device).await?;
                room.full.teach(logits);
            }
        }
        let layers = Network::conv_layers(&base.manifest).map_err(|e| DistillError::Model(e.to_string()))?;
        let plan = match options.trainables {
            t if t.adapters() => lora.plan(&layers).map_err(|e| DistillError::Config(e.to_string()))?,
            _ => AdapterPlan::new(),
        };
        let grid = rooms.iter().map(|r| r.full.dims).min_by_key(|d| d.iter().min().copied()).expect("one volume");
        let teacher_id = teaching.as_ref().map(|t| t.teacher.manifest.id.as_str());
        let cfg = recipe(&base.manifest, teacher_id, grid, labelled.len(), rooms.len() - labelled.len(), &options);
        if cfg.patch[0] == 0 {
            return Err(DistillError::Config(format!("the volume's grid {grid:?} is too small to train on")));
        }
        let train_device = device.clone().autodiff();
        let mut network = Network::build_adapted(&base.manifest, &plan, &train_device).map_err(|e| DistillError::Model(e.to_string()))?;
        network.load_base_safetensors(base_weights).map_err(|e| DistillError::Model(e.to_string()))?;
        let network = freeze_all_but(network, options.trainables);
        let (trainable, total) = (count_learning(&network, options.trainables), network.num_params());
        let t = &rooms[0].full.teacher;
        let widths = [t.encoder.channels, t.bottleneck.channels, t.decoder.channels];
        train_device.seed(options.seed);
        let engine = Engine::new(Distillee::with_student(network, widths, cfg.loss.projection_dim, &train_device), None, &train_device);
        let train = rooms.into_iter().map(|r| r.full.training_part(r.full.dims[0])).collect();
        let trainables = options.trainables;
        Ok(Self { engine, train, cfg, lora, trainables, plan, base: base.manifest, base_sha256, trainable, total, history: Vec::new() })
    }

    /// Bytes of training state beyond the model itself: a gradient and
    /// Adam's two moments, in f32, for each parameter that learns (the
    /// frozen ones have none).
    pub fn training_state_bytes(&self) -> usize {
        self.trainable * 3 * std::mem::size_of::<f32>()
    }

    pub fn steps_done(&self) -> usize {
        self.engine.steps_done
    }

    /// `n` steps; a loss that is not finite stops with the adapter from
    /// before them kept.
    pub async fn steps(&mut self, n: usize) -> Result<Vec<LossRecord>, DistillError> {
        let out = self.engine.steps_on(&self.cfg, &self.train, n).await?;
        self.history.extend(out.iter().cloned());
        Ok(out)
    }

    /// The adapted model as it stands (for inference: no autodiff).
    pub fn model(&self) -> Model {
        Model { manifest: self.base.clone(), network: self.engine.student(), members: Vec::new(), weights_sha256: None }
    }

    /// Dice of the adapted model's mask (through the inference pipeline, as
    /// the page and `bedside segment` run it) against `mask` on `volume`.
    pub async fn validation_dice(&self, volume: &Volume, mask: &[u8], device: &Device) -> Result<f64, DistillError> {
        let seg = segment(volume, &self.model(), device, SegmentOptions::default(), &mut |_, _| true)
            .await
            .map_err(|e| DistillError::Volume(e.to_string()))?;
        Ok(dice(&seg.labels, mask))
    }

    /// The adapter as files: the tensors that learnt (read back
    /// asynchronously, so this works on WebGPU) and its config, with the
    /// recipe in `training`. A full fine-tuning gives a package instead
    /// ([`Adaptation::package`]).
    pub async fn adapter(&self) -> Result<Adapter, DistillError> {
        if self.trainables == Trainables::Full {
            return Err(DistillError::Config("a fully fine-tuned model is saved as a package, not as an adapter".into()));
        }
        let weights = self.trained_weights().await?;
        let weights = trained_tensors(&weights, self.trainables).map_err(|e| DistillError::Model(e.to_string()))?;
        let last = self.history.last();
        let training = serde_json::json!({
            "steps": self.steps_done(),
            "learning_rate": self.cfg.learning_rate,
            "seed": self.cfg.seed,
            "batch": self.cfg.batch,
            "patch": self.cfg.patch,
            "loss": "Dice + cross-entropy on the masks",
            "volumes": self.train.len(),
            "final_loss": last.map(|r| r.total),
            "trainable_params": self.trainable,
            "trainables": self.trainables.name(),
        });
        Ok(Adapter {
            config: AdapterConfig {
                peft_type: "LORA".into(),
                r: if self.trainables.adapters() { self.lora.rank } else { 0 },
                lora_alpha: self.lora.alpha,
                target_modules: self.plan.keys().cloned().collect(),
                trainables: self.trainables,
                targets: self.lora.targets.clone(),
                base_model_name_or_path: self.base.id.clone(),
                base_model_sha256: self.base_sha256.clone(),
                bedside_version: env!("CARGO_PKG_VERSION").into(),
                training: Some(training),
            },
            weights,
        })
    }

    /// The adapted network's complete weights (base, adapters, and what learnt).
    async fn trained_weights(&self) -> Result<Vec<u8>, DistillError> {
        let network = copy_to(&self.engine.student(), &Device::flex()).await.map_err(|e| DistillError::Model(e.to_string()))?;
        network.to_safetensors().map_err(|e| DistillError::Model(e.to_string()))
    }

    /// The fine-tuned model as a plain package (every trainables choice; for
    /// adapters, the merge of what the adapter computes).
    pub async fn package(&self) -> Result<(Manifest, Vec<u8>), DistillError> {
        let weights = self.trained_weights().await?;
        let weights = if self.plan.is_empty() {
            weights
        } else {
            super::adapter::merge_weights(&weights, &self.plan, &Device::flex()).map_err(|e| DistillError::Model(e.to_string()))?
        };
        let manifest = super::adapter::adapted_manifest(
            &self.base,
            format!("{}-{}", self.base.id, if self.trainables == Trainables::Full { "finetuned" } else { "lora" }),
            format!("{}, adapted ({})", self.base.name, self.trainables.name()),
            serde_json::json!({ "adapted_from": self.base.id, "base_sha256": self.base_sha256, "trainables": self.trainables.name(), "steps": self.steps_done(), "kd": self.cfg.loss.kd, "teacher": self.cfg.teacher }),
        );
        Ok((manifest, weights))
    }
}
