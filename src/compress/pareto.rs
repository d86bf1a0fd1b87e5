//! The Pareto view: how fast and how close to the original a model is at
//! several compression factors, measured on this machine and this volume.
//!
//! Weber et al. found that fewer FLOPs did not always mean less time: Tucker-2
//! sped up weak GPUs and slowed fast ones. So the sweep measures real
//! milliseconds on the device the user has, next to the agreement with the
//! original, and names the fastest model (the original included) whose every
//! label stays within the safety margin. The page (in its worker) and
//! `bedside pareto` share it.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::verdict::{judge, Verdict};
use super::{compress_package, CompressError, CompressOptions, RankRule};
use crate::inference::backend::OpenedDevice;
use crate::inference::clock::now_ms;
use crate::inference::pipeline::{segment, SegmentError, SegmentOptions, Segmentation};
use crate::metrics::{dice_per_label, worst_label, LabelDice};
use crate::model::package::parse_manifest;
use crate::model::{Model, ModelError};
use crate::volume::Volume;

/// What to sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepOptions {
    /// Rank factors, each in (0, 1] (Weber et al.'s `ceil(channels · f)`).
    pub factors: Vec<f64>,
    #[serde(default = "one")]
    pub min_rank: usize,
    /// Largest Dice drop per label, against the original, that passes.
    pub margin: f64,
    /// One untimed run of each model first. On WebGPU the first run compiles
    /// the model's kernels (each compressed model has new shapes), which is
    /// not what a user waits for on the second volume.
    #[serde(default)]
    pub warmup: bool,
}

fn one() -> usize {
    1
}

/// One model of the sweep: the original (`factor` None) or a compressed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoPoint {
    pub factor: Option<f64>,
    pub params: u64,
    /// Convolution FLOPs on one patch.
    pub flops: u64,
    /// Segmenting the volume (preprocess, inference, postprocess), in ms.
    pub ms: f64,
    /// Of which the network's sliding windows (the part compression changes).
    pub inference_ms: f64,
    /// Decomposing the model (0 for the original).
    pub compress_ms: f64,
    /// Per label, against the original's mask (1.0 for the original).
    pub dice_vs_original: Vec<LabelDice>,
    /// Per label, against the reference mask, when one was given, and the
    /// lowest of them.
    pub dice_vs_reference: Option<Vec<LabelDice>>,
    pub worst_reference_dice: Option<f64>,
    /// `dice_vs_original` judged against the sweep's margin.
    pub verdict: Verdict,
}

/// The whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoSweep {
    pub source_id: String,
    pub margin: f64,
    pub points: Vec<ParetoPoint>,
    /// Index into `points` of the fastest model that passes the margin.
    pub fastest_passing: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ParetoError {
    #[error(transparent)]
    Compress(#[from] CompressError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("{0}")]
    Options(String),
    #[error("reference mask: {0}")]
    Reference(String),
    #[error("cancelled")]
    Cancelled,
}

impl SweepOptions {
    fn check(&self) -> Result<(), ParetoError> {
        if self.factors.is_empty() {
            return Err(ParetoError::Options("give at least one factor".into()));
        }
        if let Some(f) = self.factors.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return Err(ParetoError::Options(format!("factor {f} is not in (0, 1]")));
        }
        if !(self.margin >= 0.0 && self.margin <= 1.0) {
            return Err(ParetoError::Options(format!("margin {} is not in [0, 1]", self.margin)));
        }
        Ok(())
    }
}

impl ParetoSweep {
    /// The same measurements judged against another margin: the verdicts and
    /// the fastest passing model change, nothing is measured again.
    pub fn judged(mut self, margin: f64) -> Self {
        for p in &mut self.points {
            p.verdict = judge(&p.dice_vs_original, margin);
        }
        self.margin = margin;
        self.fastest_passing = fastest_passing(&self.points);
        self
    }
}

/// The factors a user typed ("0.25, 0.5 0.75"): numbers in (0, 1] separated
/// by commas, semicolons or spaces, sorted, without repeats.
pub fn parse_factors(text: &str) -> Result<Vec<f64>, ParetoError> {
    let parts: Vec<&str> = text.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err(ParetoError::Options("give at least one factor, e.g. 0.25, 0.5, 0.75".into()));
    }
    let parsed: Vec<Option<f64>> = parts.iter().map(|p| p.parse::<f64>().ok().filter(|f| *f > 0.0 && *f <= 1.0)).collect();
    let bad: Vec<&str> = parts.iter().zip(&parsed).filter(|(_, f)| f.is_none()).map(|(p, _)| *p).collect();
    if !bad.is_empty() {
        return Err(ParetoError::Options(format!("{}: factors lie in (0, 1]", bad.join(", "))));
    }
    let mut factors: Vec<f64> = parsed.into_iter().flatten().collect();
    factors.sort_by(f64::total_cmp);
    factors.dedup();
    Ok(factors)
}

/// The fastest passing point; ties go to the earlier one (the original first).
pub fn fastest_passing(points: &[ParetoPoint]) -> Option<usize> {
    points
        .iter()
        .enumerate()
        .filter(|(_, p)| p.verdict.passes)
        .fold(None, |best: Option<(usize, f64)>, (i, p)| match best {
            Some((_, ms)) if ms <= p.ms => best,
            _ => Some((i, p.ms)),
        })
        .map(|(i, _)| i)
}

/// Segments `volume` with the source package and with its Tucker-2 at each
/// factor, on `device`. `reference`, when given, holds labels in the
/// volume's grid (see `metrics::reference_labels`). `on_point` sees the
/// sweep so far as each point is measured (judged, its fastest passing model
/// named); it and `progress(what, fraction)` return false to cancel.
#[allow(clippy::too_many_arguments)]
pub async fn sweep(
    source_json: &str,
    source_weights: &[u8],
    volume: &Volume,
    reference: Option<&[u8]>,
    options: &SweepOptions,
    device: &OpenedDevice,
    on_point: &mut dyn FnMut(&ParetoSweep) -> bool,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<ParetoSweep, ParetoError> {
    options.check()?;
    let source = parse_manifest(source_json)?;
    let voxels: usize = volume.dims.iter().product();
    if let Some(r) = reference {
        if r.len() != voxels {
            return Err(ParetoError::Reference(format!("{} voxels, the volume has {voxels}", r.len())));
        }
    }
    let models = 1 + options.factors.len();
    let mut done = ParetoSweep { source_id: source.id.clone(), margin: options.margin, points: Vec::with_capacity(models), fastest_passing: None };
    let mut original_labels: Vec<u8> = Vec::new();

    for step in 0..models {
        let factor = step.checked_sub(1).map(|i| options.factors[i]);
        let what = match factor {
            None => format!("original {}", source.id),
            Some(f) => format!("factor {f:.2}"),
        };
        let fraction = |part: f64| (step as f64 + part) / models as f64;
        if !progress(&format!("Decomposing at {what}…"), fraction(0.0)) {
            return Err(ParetoError::Cancelled);
        }
        let t0 = now_ms();
        let model = match factor {
            None => Model::from_package_bytes(source_json, source_weights.to_vec(), &device.device)?,
            Some(f) => {
                let rule = RankRule::Factor { factor: f, min_rank: options.min_rank };
                let mut layer_progress = |done: usize, total: usize, _: &str| {
                    progress(&format!("Decomposing at {what}…"), fraction(0.3 * done as f64 / total.max(1) as f64))
                };
                let c = compress_package(source_json, source_weights, &rule, &CompressOptions::default(), &now_ms, &mut layer_progress)?;
                Model::from_manifest(c.manifest, c.weights, &device.device)?
            }
        };
        let compress_ms = if factor.is_some() { now_ms() - t0 } else { 0.0 };

        let mut segment_progress = |stage: &str, f: f64| progress(&format!("Segmenting with {what} ({stage})…"), fraction(0.3 + 0.7 * f));
        if options.warmup {
            run(volume, &model, &device.device, device, &mut segment_progress).await?;
        }
        let seg = run(volume, &model, &device.device, device, &mut segment_progress).await?;

        let labels = &model.manifest.labels;
        let dice_vs_original = match factor {
            None => dice_per_label(&seg.labels, &seg.labels, labels),
            Some(_) => dice_per_label(&seg.labels, &original_labels, labels),
        };
        let dice_vs_reference = reference.map(|r| dice_per_label(&seg.labels, r, labels));
        let point = ParetoPoint {
            factor,
            params: model.manifest.params,
            flops: model.manifest.flops_per_patch,
            ms: seg.timings_ms.total,
            inference_ms: seg.timings_ms.inference,
            compress_ms,
            verdict: judge(&dice_vs_original, options.margin),
            worst_reference_dice: dice_vs_reference.as_deref().and_then(worst_label).map(|l| l.dice),
            dice_vs_original,
            dice_vs_reference,
        };
        if factor.is_none() {
            original_labels = seg.labels;
        }
        done.points.push(point);
        done.fastest_passing = fastest_passing(&done.points);
        if !on_point(&done) {
            return Err(ParetoError::Cancelled);
        }
    }
    Ok(done)
}

async fn run(
    volume: &Volume,
    model: &Model,
    device: &Device,
    opened: &OpenedDevice,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<Segmentation, SegmentError> {
    let options = SegmentOptions { max_buffer_bytes: opened.max_buffer_bytes, ..SegmentOptions::default() };
    segment(volume, model, device, options, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(factor: Option<f64>, ms: f64, dice: f64, margin: f64) -> ParetoPoint {
        let d = vec![LabelDice { value: 1, name: "brain".into(), dice }];
        ParetoPoint {
            factor,
            params: 0,
            flops: 0,
            ms,
            inference_ms: ms,
            compress_ms: 0.0,
            verdict: judge(&d, margin),
            dice_vs_original: d,
            dice_vs_reference: None,
            worst_reference_dice: None,
        }
    }

    #[test]
    fn the_fastest_passing_point_is_chosen_and_the_original_can_win() {
        let m = 0.01;
        // Compressed models faster but one fails: the faster passing one wins.
        let pts = [point(None, 100.0, 1.0, m), point(Some(0.25), 40.0, 0.90, m), point(Some(0.5), 60.0, 0.995, m)];
        assert_eq!(fastest_passing(&pts), Some(2));
        // On a fast GPU compression can be slower: then the original is the answer.
        let pts = [point(None, 50.0, 1.0, m), point(Some(0.5), 60.0, 0.995, m)];
        assert_eq!(fastest_passing(&pts), Some(0));
        // Nothing passes (a margin no compressed model meets, and no original in the list).
        let pts = [point(Some(0.5), 60.0, 0.95, m)];
        assert_eq!(fastest_passing(&pts), None);
    }

    #[test]
    fn a_new_margin_judges_the_same_points_again() {
        let pts = vec![point(None, 100.0, 1.0, 0.01), point(Some(0.25), 40.0, 0.90, 0.01), point(Some(0.5), 60.0, 0.995, 0.01)];
        let sweep = ParetoSweep { source_id: "m".into(), margin: 0.01, fastest_passing: fastest_passing(&pts), points: pts };
        assert_eq!(sweep.fastest_passing, Some(2));
        let wide = sweep.clone().judged(0.2);
        assert!(wide.points.iter().all(|p| p.verdict.passes && p.verdict.margin == 0.2));
        assert_eq!((wide.margin, wide.fastest_passing), (0.2, Some(1)));
        assert_eq!(wide.points[1].ms, 40.0, "measurements unchanged");
        let none = sweep.judged(0.0);
        assert_eq!(none.points.iter().map(|p| p.verdict.passes).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(none.fastest_passing, Some(0));
    }

    #[test]
    fn typed_factors_are_read_sorted_and_bad_ones_named() {
        assert_eq!(parse_factors("0.9, 0.5;0.5  0.25").unwrap(), [0.25, 0.5, 0.9]);
        let msg = |t: &str| parse_factors(t).unwrap_err().to_string();
        assert_eq!(msg("0.5, 2"), "2: factors lie in (0, 1]");
        assert_eq!(msg("half 0 0.5"), "half, 0: factors lie in (0, 1]");
        assert!(msg(" , ").starts_with("give at least one factor"));
    }

    #[test]
    fn bad_options_are_refused() {
        let o = |factors: Vec<f64>, margin| SweepOptions { factors, min_rank: 1, margin, warmup: false };
        assert!(o(vec![], 0.01).check().is_err());
        assert!(o(vec![0.5, 1.5], 0.01).check().is_err());
        assert!(o(vec![0.0], 0.01).check().is_err());
        assert!(o(vec![0.5], f64::NAN).check().is_err());
        assert!(o(vec![0.5], 0.01).check().is_ok());
    }
}
