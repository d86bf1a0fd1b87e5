//! `model.json`: what a bedside model package says about itself.
//!
//! Like an nnU-Net plans file, it is enough to rebuild the network (family +
//! hyperparameters) and to reproduce the pre- and postprocessing the weights
//! were trained with; `weights.safetensors` beside it holds the tensors.

use serde::{Deserialize, Serialize};

/// The package format this build reads and writes.
pub const FORMAT: &str = "bedside-model/1";

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    pub format: String,
    /// Short stable identifier, e.g. "hd-bet".
    pub id: String,
    /// Human name for the model selector.
    pub name: String,
    /// Which network family builds it, e.g. "hd-bet".
    pub family: String,
    /// Family-specific hyperparameters (the family's `Config` as JSON).
    pub hyperparameters: serde_json::Value,
    pub preprocessing: Preprocessing,
    pub postprocessing: Postprocessing,
    pub labels: Vec<Label>,
    pub provenance: Provenance,
    pub licence: String,
    /// Number of parameters in `weights.safetensors`.
    pub params: u64,
    /// FLOPs of one forward pass on one `patch_size` patch.
    pub flops_per_patch: u64,
    /// Further weight sets for the same network (HD-BET's other cross-validation
    /// folds). Off by default; when asked for, their probabilities are averaged
    /// with the main weights', as HD-BET's own ensemble does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<EnsembleMember>,
    /// How a trained model was made: the distillation config (recipe, seed),
    /// its training volumes, steps and time (`bedside distill`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Measured agreement per evaluation volume (`bedside evaluate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evaluation: Vec<Evaluation>,
    /// For a Tucker-2 compressed model: its source and each factorised
    /// layer's ranks (`bedside compress`, or the page's Compress panel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// The quality signal's bounds for this model (see `QualityBounds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityBounds>,
}

/// How a compressed package was made from its source.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Compression {
    /// The source package's id and the sha256 of its weights file.
    pub source_id: String,
    pub source_sha256: String,
    /// The rank rule and its parameters, e.g. `{"rule": "factor", "factor": 0.5, "min_rank": 1}`.
    pub rule: serde_json::Value,
    /// Factorised layers, by weight path: `[r_out, r_in]`. Every other
    /// convolution is whole.
    pub layers: std::collections::BTreeMap<String, [usize; 2]>,
    /// Per layer: shape, ranks, relative error, parameters and FLOPs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report: Vec<serde_json::Value>,
}

/// One row of a model's Dice table.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub volume: String,
    /// What the mask was compared with, e.g. "ch2bet > 0" or "teacher hd-bet".
    pub reference: String,
    pub dice: f64,
    /// 95th-percentile symmetric surface distance in mm.
    pub hd95_mm: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct EnsembleMember {
    /// safetensors file beside `model.json`.
    pub weights: String,
    /// Where these weights came from, and the sha256 of that file.
    pub source: String,
    pub source_sha256: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// Voxel spacing in mm the network expects, in the network's axis order.
    pub target_spacing: [f64; 3],
    /// Axis order fed to the network: "zyx" means the file's storage axes
    /// reversed (SimpleITK's array order), with no reorientation.
    pub axis_order: String,
    /// "zscore": subtract the volume mean, divide by its standard deviation
    /// (HD-BET's). "zscore_foreground": the same with the statistics of the
    /// voxels brighter than the volume mean (the head), padded with the
    /// minimum. "zscore_head_box": the whole-volume z-score the scan would
    /// get with the head's box plus a fixed margin of air as its field of
    /// view (the students'). Neither depends on how much air the scan holds.
    pub normalisation: String,
    /// Image interpolation used to reach `target_spacing`.
    pub interpolation: String,
    /// Sliding-window patch, in the network's axis order.
    pub patch_size: [usize; 3],
    /// Every input side is padded (at the upper end) to a multiple of this.
    pub divisible_by: usize,
    /// The model's own code runs the whole padded volume in one pass (HD-BET's
    /// `predict_case_3D_net`), and so does bedside on the CPU where the pass
    /// fits its memory budget (`inference::pipeline::Windowing::Auto`);
    /// `patch_size` windows are the fallback. Windows do not give the single
    /// pass's mask: each normalises its features over itself (HD-BET: Dice
    /// 0.993–0.998 between the two, README Speed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_pass: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Postprocessing {
    /// Keep only the largest 26-connected foreground component.
    pub largest_component: bool,
    /// Then fill the holes of the foreground within each slice of the
    /// model's z axis (axial for `axis_order` "ras"). Not HD-BET's: off by
    /// default, and absent from its package.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fill_holes_in_z_slices: bool,
}

/// The bounds within which this model's masks are trusted: the quality
/// signal of every run (`inference::quality`), calibrated on the probes
/// (README, "Heads they have not seen"). Without them, the generic bounds of
/// `QualityBounds::default()` apply.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct QualityBounds {
    /// The foreground's plausible volume, in ml.
    pub min_ml: f64,
    pub max_ml: f64,
    /// The largest share of the mask on the scan's outer faces.
    pub max_border_share: f64,
    /// The largest share of voxels the network may be unsure of, per
    /// foreground voxel (it depends on the network: HD-BET is surer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unsure_share: Option<f64>,
    /// The share of air in the scan the model holds on (its training heads'
    /// range, widened where the probes show it holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub air_share: Option<[f64; 2]>,
    /// The largest skewness of the intensities in the mask's core
    /// (`inference::quality::core_skewness`): set for models that learnt from
    /// T1-weighted heads only, which fail on T2-weighted ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_core_skewness: Option<f64>,
    /// The lowest Dice between the mask and the mask of the scan's
    /// left-right mirror, flipped back (`SegmentOptions::mirror_check`, opt in:
    /// it doubles the run's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_mirror_dice: Option<f64>,
}

impl Default for QualityBounds {
    fn default() -> Self {
        Self { min_ml: 900.0, max_ml: 2200.0, max_border_share: 0.01, max_unsure_share: None, air_share: None, max_core_skewness: None, min_mirror_dice: None }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Label {
    pub value: u8,
    pub name: String,
    pub color: [u8; 3],
    /// What the label is, in the coded terms a DICOM SEG carries
    /// (SegmentedPropertyCategory and Type, e.g. SNOMED CT "Brain").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<LabelCode>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LabelCode {
    pub category: Code,
    #[serde(rename = "type")]
    pub kind: Code,
}

/// One coded concept: (CodeValue, CodingSchemeDesignator, CodeMeaning).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Code {
        Code { value: value.into(), scheme: scheme.into(), meaning: meaning.into() }
    }
}

impl LabelCode {
    /// SNOMED CT's "Anatomical Structure" / "Brain": HD-BET's and its students' foreground.
    pub fn brain() -> LabelCode {
        LabelCode { category: Code::new("123037004", "SCT", "Anatomical Structure"), kind: Code::new("12738006", "SCT", "Brain") }
    }

    /// A label whose package says nothing more: SNOMED CT's "Tissue", as
    /// category and type, which claims no more than a segmented region.
    pub fn unspecified() -> LabelCode {
        let tissue = Code::new("85756007", "SCT", "Tissue");
        LabelCode { category: tissue.clone(), kind: tissue }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Where the weights came from (package, file, version).
    pub source: String,
    /// sha256 of the original weights file.
    pub source_sha256: String,
    pub citation: String,
    /// Tool and version that wrote this package.
    pub converted_by: String,
}
