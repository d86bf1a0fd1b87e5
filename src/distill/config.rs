//! A distillation run, as a file: the teacher, the student's shape, the
//! volumes, the losses and their weights, the optimiser, augmentation and
//! the seed. The same file and seed give the same student.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::augment::AugmentConfig;
use super::DistillError;
use crate::inference::preprocess::{AXIS_ORDERS, NORMALISATIONS};
use crate::model::manifest::Postprocessing;
use crate::model::unet3d::Unet3dConfig;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The student package's id and name (e.g. "student-s", "Student S (KD)").
    pub id: String,
    pub name: String,
    /// Teacher package folder (relative paths are relative to the config file).
    pub teacher: PathBuf,
    /// A new unet3d student; only the fields that differ from
    /// `Unet3dConfig`'s defaults are needed. Left out with `start_from`.
    #[serde(default = "Unet3dConfig::new", deserialize_with = "student_with_defaults")]
    pub student: Unet3dConfig,
    /// A model package to go on training instead of a new unet3d: its network
    /// and weights are the starting point (a Tucker-2 compressed teacher, to
    /// recover the accuracy compression cost, as Weber et al. and Kim et al.
    /// fine-tune). It keeps its family, preprocessing and window. Relative to
    /// the config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_from: Option<PathBuf>,
    /// Training volumes. Keep evaluation volumes out of this list.
    pub volumes: Vec<TrainingVolume>,
    /// Training patch in voxels of the teacher's grid (z, y, x); each side a
    /// multiple of 16 so the teacher's 1/16 features tile it. The student
    /// then runs on windows of this size.
    #[serde(default = "default_patch")]
    pub patch: [usize; 3],
    /// The sliding window the student runs on (model.json's patch_size);
    /// default: the training patch. The network is fully convolutional, so a
    /// larger window than it trained on is allowed and gives it more context:
    /// student-s trained on 64³ measured better on 128³ windows (README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<[usize; 3]>,
    /// How volumes are turned before the student (and, in training, the
    /// teacher) sees them: "zyx", HD-BET's storage order with no
    /// reorientation, or "ras", the closest canonical RAS orientation.
    #[serde(default = "default_axis_order")]
    pub axis_order: String,
    /// How the student's input is normalised: "zscore" (HD-BET's, the
    /// default), "zscore_foreground" (statistics of the head alone) or
    /// "zscore_head_box" (the head's box plus a fixed margin of air, whatever
    /// the field of view). The teacher always gets its own.
    #[serde(default = "default_normalisation")]
    pub normalisation: String,
    /// The student's postprocessing; default: the teacher's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocessing: Option<Postprocessing>,
    #[serde(default = "default_batch")]
    pub batch: usize,
    pub steps: usize,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// When set, the package gets an exponential moving average of the
    /// student's weights (this decay per step, e.g. 0.995: about the last 200
    /// steps) instead of the last step's weights. See `average`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_decay: Option<f64>,
    /// Share of patches centred on a foreground voxel (the rest anywhere).
    #[serde(default = "default_foreground_fraction")]
    pub foreground_fraction: f64,
    #[serde(default)]
    pub loss: LossWeights,
    #[serde(default)]
    pub augment: AugmentConfig,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Share of each volume kept out of training (its last columns along
    /// the first storage axis, in whole multiples of 16), for a Dice on
    /// voxels the student never learnt from; the teach room holds out a
    /// quarter, and its recipes say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_out: Option<f64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainingVolume {
    /// A NIfTI T1; `${BEDSIDE_DATA}` expands to the fetched data folder.
    pub image: String,
    /// Independent brain mask on the same grid (> 0 is brain). Without one,
    /// the teacher's argmax is the hard label.
    #[serde(default)]
    pub mask: Option<String>,
}

/// Weights of each term. The default is MTMS's preset (BRIEF §3): 0.4 Dice,
/// 0.2 response KD at T = 4, InfoNCE 0.1 encoder, 0.2 bottleneck (τ = 0.4),
/// 0.1 decoder. Zero switches a term off (and skips its computation).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    pub cross_entropy: f64,
    pub dice: f64,
    /// α of Hinton's α·T²·KL.
    pub kd: f64,
    pub temperature: f64,
    pub encoder: f64,
    pub bottleneck: f64,
    pub decoder: f64,
    pub info_nce_temperature: f64,
    /// Width both projection heads map features to.
    pub projection_dim: usize,
    /// Locations sampled per tap and step for InfoNCE (positives and negatives).
    pub samples: usize,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            cross_entropy: 0.0,
            dice: 0.4,
            kd: 0.2,
            temperature: 4.0,
            encoder: 0.1,
            bottleneck: 0.2,
            decoder: 0.1,
            info_nce_temperature: 0.4,
            projection_dim: 32,
            samples: 256,
        }
    }
}

impl LossWeights {
    pub fn uses_features(&self) -> bool {
        self.encoder > 0.0 || self.bottleneck > 0.0 || self.decoder > 0.0
    }
}

/// Burn's `Config` derive wants every field; fill the missing ones from the defaults.
fn student_with_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Unet3dConfig, D::Error> {
    use serde::de::Error;
    let given = serde_json::Value::deserialize(d)?;
    let serde_json::Value::Object(given) = given else {
        return Err(D::Error::custom("student must be an object of unet3d hyperparameters"));
    };
    let mut merged = serde_json::to_value(Unet3dConfig::new()).map_err(D::Error::custom)?;
    let defaults = merged.as_object_mut().expect("a config is an object");
    for (k, v) in given {
        if !defaults.contains_key(&k) {
            return Err(D::Error::custom(format!("unknown student hyperparameter `{k}`")));
        }
        defaults.insert(k, v);
    }
    serde_json::from_value(merged).map_err(D::Error::custom)
}

fn default_patch() -> [usize; 3] {
    [64, 64, 64]
}
fn default_batch() -> usize {
    2
}
fn default_learning_rate() -> f64 {
    2e-3
}
fn default_seed() -> u64 {
    42
}
fn default_foreground_fraction() -> f64 {
    0.67
}
fn default_axis_order() -> String {
    "zyx".into()
}
fn default_normalisation() -> String {
    "zscore".into()
}
fn default_checkpoint_every() -> usize {
    50
}

impl DistillConfig {
    /// Reads and checks a config file; relative paths become relative to it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &Path) -> Result<Self, DistillError> {
        let text = std::fs::read_to_string(path).map_err(|e| DistillError::io(path, e))?;
        let bad = |e: String| DistillError::Config(format!("{}: {e}", path.display()));
        let raw: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if raw.get("start_from").is_some() && raw.get("student").is_some() {
            return Err(bad("give either `student` (a new unet3d) or `start_from` (a package to go on training), not both".into()));
        }
        let mut cfg: Self = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.teacher.is_relative() {
            cfg.teacher = base.join(&cfg.teacher);
        }
        if let Some(start) = cfg.start_from.as_mut().filter(|s| s.is_relative()) {
            *start = base.join(&*start);
        }
        cfg.check()?;
        Ok(cfg)
    }

    pub fn check(&self) -> Result<(), DistillError> {
        let bad = |m: String| Err(DistillError::Config(m));
        if self.patch.iter().any(|&p| p == 0 || p % 16 != 0) {
            return bad(format!("patch {:?}: each side must be a positive multiple of 16", self.patch));
        }
        if self.start_from.is_some() {
            // The package's own divisibility is checked when it is loaded.
            if self.window.is_some() {
                return bad("window: a package given by start_from keeps its own window".into());
            }
        } else {
            // Patch and window both pass through `depth` halvings.
            let unit = 1usize << self.student.depth;
            let tiles = |s: &[usize; 3]| s.iter().all(|&p| p > 0 && p % unit == 0);
            if self.student.depth == 0 || !tiles(&self.patch) {
                return bad(format!("student depth {} does not divide patch {:?}", self.student.depth, self.patch));
            }
            if let Some(w) = self.window.filter(|w| !tiles(w)) {
                return bad(format!("window {w:?}: each side must be a positive multiple of 2^depth = {unit}"));
            }
        }
        if !AXIS_ORDERS.contains(&self.axis_order.as_str()) {
            return bad(format!("axis_order {:?}: expected one of {AXIS_ORDERS:?}", self.axis_order));
        }
        if !NORMALISATIONS.contains(&self.normalisation.as_str()) {
            return bad(format!("normalisation {:?}: expected one of {NORMALISATIONS:?}", self.normalisation));
        }
        if self.volumes.is_empty() {
            return bad("no training volumes".into());
        }
        if self.batch == 0 || self.steps == 0 {
            return bad("batch and steps must be at least 1".into());
        }
        let l = &self.loss;
        let weights = [l.cross_entropy, l.dice, l.kd, l.encoder, l.bottleneck, l.decoder];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().all(|w| *w == 0.0) {
            return bad(format!("loss weights must be finite, non-negative and not all zero: {weights:?}"));
        }
        if !(l.temperature > 0.0) || !(l.info_nce_temperature > 0.0) || l.samples < 2 || l.projection_dim == 0 {
            return bad("temperatures must be positive, samples ≥ 2, projection_dim ≥ 1".into());
        }
        if !(self.learning_rate > 0.0) || !(0.0..=1.0).contains(&self.foreground_fraction) {
            return bad("learning_rate must be positive and foreground_fraction in [0, 1]".into());
        }
        if self.average_decay.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            return bad("average_decay must be in [0, 1)".into());
        }
        Ok(())
    }
}

/// `${BEDSIDE_DATA}/x` → the data folder's `x` (the setup's default when unset).
#[cfg(not(target_arch = "wasm32"))]
pub fn expand_data_path(p: &str) -> PathBuf {
    match p.strip_prefix("${BEDSIDE_DATA}") {
        Some(rest) => {
            let data = std::env::var_os("BEDSIDE_DATA").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/bedside/data")
            });
            data.join(rest.trim_start_matches('/'))
        }
        None => PathBuf::from(p),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "id": "student-t", "name": "test", "teacher": "hd-bet",
            "student": {"base_filters": 2, "depth": 2},
            "volumes": [{"image": "${BEDSIDE_DATA}/a.nii.gz"}],
            "steps": 3
        })
    }

    #[test]
    fn defaults_are_the_mtms_preset() {
        let cfg: DistillConfig = serde_json::from_value(minimal()).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.loss, LossWeights::default());
        assert_eq!((cfg.loss.dice, cfg.loss.kd, cfg.loss.temperature), (0.4, 0.2, 4.0));
        assert_eq!(cfg.patch, [64; 3]);
        assert_eq!(cfg.window, None);
        assert_eq!(cfg.axis_order, "zyx", "HD-BET's own order unless a recipe asks");
        assert_eq!(cfg.normalisation, "zscore", "HD-BET's own normalisation unless a recipe asks");
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        for (key, value, needle) in [
            ("patch", serde_json::json!([60, 64, 64]), "multiple of 16"),
            ("volumes", serde_json::json!([]), "no training volumes"),
            ("axis_order", serde_json::json!("xyz"), "expected one of [\"zyx\", \"ras\"]"),
            ("normalisation", serde_json::json!("minmax"), "expected one of [\"zscore\", \"zscore_foreground\", \"zscore_head_box\"]"),
            ("window", serde_json::json!([128, 128, 126]), "multiple of 2^depth"),
            ("loss", serde_json::json!({"dice": 0, "kd": 0, "encoder": 0, "bottleneck": 0, "decoder": 0}), "not all zero"),
            ("loss", serde_json::json!({"kd": -1}), "non-negative"),
            ("average_decay", serde_json::json!(1.0), "average_decay must be in [0, 1)"),
        ] {
            let mut v = minimal();
            v[key] = value;
            let cfg: DistillConfig = serde_json::from_value(v).unwrap();
            let err = cfg.check().unwrap_err().to_string();
            assert!(err.contains(needle), "{key}: {err}");
        }
        let mut v = minimal();
        v["lerning_rate"] = serde_json::json!(1);
        assert!(serde_json::from_value::<DistillConfig>(v).is_err(), "typos are refused");
    }

    #[test]
    fn data_paths_expand() {
        let p = expand_data_path("${BEDSIDE_DATA}/colin27/ch2.nii.gz");
        assert!(p.ends_with("colin27/ch2.nii.gz") && p.is_absolute() || std::env::var_os("HOME").is_none());
        assert_eq!(expand_data_path("/x/y.nii"), PathBuf::from("/x/y.nii"));
    }

    #[test]
    fn every_shipped_recipe_loads_and_names_the_teacher_package() {
        fn recipes(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    recipes(&p, out);
                } else if p.extension().is_some_and(|e| e == "json") {
                    out.push(p);
                }
            }
        }
        let mut found = Vec::new();
        recipes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/recipes"), &mut found);
        assert!(found.len() >= 4, "{found:?}");
        for path in found {
            let cfg = DistillConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(cfg.teacher.join("model.json").is_file(), "{}: teacher {} is not a package", path.display(), cfg.teacher.display());
        }
    }
}
