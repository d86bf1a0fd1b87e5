//! The whole segmentation of one volume, stage by stage, with timings.

use burn::tensor::Device;
use serde::Serialize;

use super::clock::now_ms;
use super::components::{fill_holes_in_z_slices, keep_largest_component};
use super::preprocess::{labels_to_native, prepare, PreprocessError};
use super::quality::{air_share, assess, border_share, core_skewness, unsure_and_sure, Quality, Signals};
use super::sliding_window::{fit_patch, predict_probabilities, LocalRunner, PassRunner, WindowError, WindowPlan};
use crate::model::Model;
use crate::volume::{self, Volume, VolumeError};

#[derive(Debug, Clone, Copy)]
pub struct SegmentOptions {
    /// Average over the 8 mirrorings of each patch (HD-BET's `do_tta`); 8× slower.
    pub mirror: bool,
    /// Largest fraction of a patch between sliding-window starts. 0.75 keeps a
    /// quarter of overlap (blended) while adding as few windows as possible:
    /// HD-BET itself never tiles, so windows exist only to bound memory.
    pub step_fraction: f64,
    /// The device's largest buffer (`OpenedDevice::max_buffer_bytes`): the
    /// patch shrinks until the network's biggest activation fits in it.
    pub max_buffer_bytes: Option<u64>,
    /// Segment the scan's left-right mirror as well and report how far the
    /// two masks agree (`Quality::mirror_dice`): a second quality signal that
    /// doubles the run's time, so it is asked for, not run by default.
    pub mirror_check: bool,
    /// One pass over the whole volume, or windows.
    pub windowing: Windowing,
    /// Which volume of a 4D file [`segment_bytes`] reads, from 0.
    pub volume: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self { mirror: false, step_fraction: 0.75, max_buffer_bytes: None, mirror_check: false, windowing: Windowing::Auto, volume: 0 }
    }
}

/// Whether a network sees the whole padded volume in one pass or windows of
/// its `patch_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Windowing {
    /// One pass where the package asks for it (`Preprocessing::single_pass`:
    /// HD-BET, as its own code runs) and it fits: on the CPU within
    /// [`SINGLE_PASS_BUDGET_BYTES`]. Windows everywhere else: on WebGPU the
    /// largest buffer bounds the patch.
    Auto,
    /// One pass whatever the package says and whatever it costs in memory
    /// (the CLI offers it on the CPU only).
    WholeVolume,
    /// Windows whatever the package says: how the windows' agreement with
    /// the single pass is measured (README, Speed).
    Windows,
}

/// The memory a single pass may take on the CPU: a browser's wasm instance
/// addresses 4 GiB, which also holds the model, the volume and the
/// probabilities; natively, a workstation's share.
pub const SINGLE_PASS_BUDGET_BYTES: u64 = if cfg!(target_arch = "wasm32") { 2_500_000_000 } else { 8_000_000_000 };

/// Whether one pass over `dims` (network order) fits the CPU budget.
pub fn single_pass_fits(model: &Model, dims: [usize; 3]) -> bool {
    model.network.pass_peak_bytes(dims) <= SINGLE_PASS_BUDGET_BYTES
}

/// Wall-clock milliseconds per stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub read: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub postprocess: f64,
    /// The mirror run, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_check: Option<f64>,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelVolume {
    pub value: u8,
    pub name: String,
    pub voxels: u64,
    pub mm3: f64,
}

/// A label volume in the input's own grid, x fastest.
#[derive(Debug, Clone)]
pub struct Segmentation {
    pub labels: Vec<u8>,
    pub timings_ms: Timings,
    pub label_volumes: Vec<LabelVolume>,
    /// Number of sliding windows the volume needed, and their size (storage order).
    pub windows: usize,
    pub patch: [usize; 3],
    /// How far the mask should be trusted (see `quality`).
    pub quality: Quality,
    /// Multiply-adds ×2 of every convolution the run computed (all windows,
    /// members, mirrorings and the mirror check): what GFLOP/s is measured on.
    pub conv_flops: u64,
    /// Voxels that were NaN or infinite in the input: segmented as background
    /// and labelled 0 ([`fill_non_finite`]).
    pub non_finite_voxels: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error(transparent)]
    Window(#[from] WindowError),
}

/// Stage names passed to the progress callback.
pub mod stage {
    pub const READ: &str = "read";
    pub const PREPROCESS: &str = "preprocess";
    pub const INFERENCE: &str = "inference";
    pub const POSTPROCESS: &str = "postprocess";
    pub const MIRROR_CHECK: &str = "mirror check";
}

/// Reads a NIfTI file's bytes and segments it on `device`, on this thread;
/// `read` is timed too.
pub async fn segment_bytes(
    bytes: &[u8],
    model: &Model,
    device: &Device,
    options: SegmentOptions,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<(Volume, Segmentation), SegmentError> {
    segment_bytes_with(bytes, model, &mut LocalRunner::new(model, device), options, progress).await
}

/// [`segment_bytes`] with the passes run by `runner`.
pub async fn segment_bytes_with<R: PassRunner>(
    bytes: &[u8],
    model: &Model,
    runner: &mut R,
    options: SegmentOptions,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<(Volume, Segmentation), SegmentError> {
    let start = now_ms();
    progress(stage::READ, 0.0);
    let volume = volume::read_nifti_volume(bytes, options.volume)?;
    let read = now_ms() - start;
    let mut seg = segment_with(&volume, model, runner, options, progress).await?;
    seg.timings_ms.read = read;
    seg.timings_ms.total += read;
    Ok((volume, seg))
}

/// Segments a volume that is already in memory, on `device`, on this thread.
pub async fn segment(
    volume: &Volume,
    model: &Model,
    device: &Device,
    options: SegmentOptions,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<Segmentation, SegmentError> {
    segment_with(volume, model, &mut LocalRunner::new(model, device), options, progress).await
}

/// Segments a volume that is already in memory, its network passes run by
/// `runner` (a [`LocalRunner`] on this
/// thread, or a pool of workers in the browser). `progress(stage, fraction)`
/// is called as work advances; returning false cancels at the next window.
pub async fn segment_with<R: PassRunner>(
    volume: &Volume,
    model: &Model,
    runner: &mut R,
    options: SegmentOptions,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<Segmentation, SegmentError> {
    let filled = fill_non_finite(volume)?;
    let volume = filled.as_ref().map_or(volume, |(v, _)| v);
    let (mut seg, mut signals) = segment_once(volume, model, runner, options, progress).await?;
    if let Some((_, missing)) = &filled {
        for (label, _) in seg.labels.iter_mut().zip(missing).filter(|(_, &m)| m) {
            *label = 0;
        }
        seg.non_finite_voxels = missing.iter().filter(|&&m| m).count();
        seg.label_volumes = measure_labels(&seg.labels, volume.voxel_volume_mm3(), &model.manifest.labels);
    }
    if options.mirror_check {
        let mark = now_ms();
        let (mirror_dice, flops) = mirror_agreement(volume, &seg.labels, model, runner, options, progress).await?;
        signals.mirror_dice = mirror_dice;
        seg.conv_flops += flops;
        let ms = now_ms() - mark;
        seg.timings_ms.mirror_check = Some(ms);
        seg.timings_ms.total += ms;
        seg.quality = assess(signals, &model.manifest.quality.unwrap_or_default());
    }
    Ok(seg)
}

/// How the pipeline treats NaN and infinite voxels: they carry no
/// measurement (a scanner's field of view resampled into a larger grid, a
/// masked-out region), so they are set to the darkest finite intensity, the
/// background, for the network, and labelled 0 in the mask
/// ([`Segmentation::non_finite_voxels`] counts them). `None` when every voxel
/// is finite (the usual case: nothing is copied); the filled copy and which
/// voxels were filled otherwise. Refused when no voxel is finite.
pub fn fill_non_finite(volume: &Volume) -> Result<Option<(Volume, Vec<bool>)>, PreprocessError> {
    if volume.data.iter().all(|v| v.is_finite()) {
        return Ok(None);
    }
    let darkest = volume.data.iter().copied().filter(|v| v.is_finite()).reduce(f32::min).ok_or(PreprocessError::NoFiniteVoxels)?;
    let missing: Vec<bool> = volume.data.iter().map(|v| !v.is_finite()).collect();
    let data = volume.data.iter().map(|&v| if v.is_finite() { v } else { darkest }).collect();
    Ok(Some((Volume { data, ..volume.clone_without_data() }, missing)))
}

/// Dice between `labels` and the mask of the scan mirrored along its
/// anatomical left-right axis (from the affine), flipped back. The same
/// pipeline segments the mirror, so it sees a head it has not seen, with
/// the same brain. `None` when the affine names no left-right axis.
async fn mirror_agreement<R: PassRunner>(
    volume: &Volume,
    labels: &[u8],
    model: &Model,
    runner: &mut R,
    options: SegmentOptions,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<(Option<f64>, u64), SegmentError> {
    let Some(axis) = volume::left_right_axis(&volume.affine) else {
        return Ok((None, 0));
    };
    let mirrored = Volume { data: volume::flip_axis(&volume.data, volume.dims, axis), ..volume.clone_without_data() };
    let mut inner = |stage: &str, fraction: f64| {
        let into = if stage == stage::INFERENCE { fraction } else if stage == stage::POSTPROCESS { 1.0 } else { 0.0 };
        progress(stage::MIRROR_CHECK, into)
    };
    let (seg, _) = segment_once(&mirrored, model, runner, options, &mut inner).await?;
    let back = volume::flip_axis(&seg.labels, volume.dims, axis);
    Ok((Some(crate::metrics::dice(labels, &back)), seg.conv_flops))
}

/// One run of the pipeline, and the signals its quality was judged on.
async fn segment_once<R: PassRunner>(
    volume: &Volume,
    model: &Model,
    runner: &mut R,
    options: SegmentOptions,
    progress: &mut dyn FnMut(&str, f64) -> bool,
) -> Result<(Segmentation, Signals), SegmentError> {
    let manifest = &model.manifest;
    let mut t = Timings::default();
    let start = now_ms();

    progress(stage::PREPROCESS, 0.0);
    let prepared = prepare(volume, &manifest.preprocessing)?;
    t.preprocess = now_ms() - start;

    let mark = now_ms();
    let p = manifest.preprocessing.patch_size;
    let patch = fit_patch(
        [p[2], p[1], p[0]],
        manifest.preprocessing.divisible_by,
        model.network.peak_bytes_per_voxel(),
        options.max_buffer_bytes,
    );
    // The padded volume is a multiple of `divisible_by`, so it is a valid window.
    let single_pass = match options.windowing {
        Windowing::WholeVolume => true,
        Windowing::Windows => false,
        Windowing::Auto => {
            manifest.preprocessing.single_pass
                && options.max_buffer_bytes.is_none()
                && single_pass_fits(model, prepared.padded_dims)
        }
    };
    let patch = if single_pass { prepared.padded_dims } else { patch };
    let plan = WindowPlan {
        dims: prepared.padded_dims,
        patch,
        step_fraction: options.step_fraction,
        mirror: options.mirror,
    };
    let windows = plan.windows().len();
    let num_classes = manifest.labels.len().max(2);
    progress(stage::INFERENCE, 0.0);
    let members = model.networks().count();
    let passes = windows * members * if options.mirror { 8 } else { 1 };
    let conv_flops = passes as u64 * model.conv_flops_per_pass(patch);
    let probs = predict_probabilities(runner, members, &prepared.data, &plan, num_classes, &mut |done, total| {
        progress(stage::INFERENCE, done as f64 / total as f64)
    })
    .await?;
    t.inference = now_ms() - mark;

    let mark = now_ms();
    progress(stage::POSTPROCESS, 0.0);
    let labels = argmax_cropped(&probs, prepared.padded_dims, prepared.resampled_dims);
    let (unsure, sure) = unsure_and_sure(&probs[0], prepared.padded_dims, prepared.resampled_dims);
    drop(probs);
    let mut labels = labels;
    if manifest.postprocessing.largest_component {
        keep_largest_component(&mut labels, prepared.resampled_dims);
    }
    if manifest.postprocessing.fill_holes_in_z_slices {
        fill_holes_in_z_slices(&mut labels, prepared.resampled_dims, 1);
    }
    let labels = labels_to_native(&labels, &prepared, volume);
    let label_volumes = measure_labels(&labels, volume.voxel_volume_mm3(), &manifest.labels);
    let signals = Signals {
        foreground_ml: foreground_mm3(&label_volumes) / 1000.0,
        border_share: border_share(&labels, volume.dims),
        unsure_share: unsure as f64 / sure.max(1) as f64,
        air_share: air_share(&volume.data, &labels),
        core_skewness: core_skewness(&volume.data, &labels, volume.dims, volume.spacing_mm()),
        mirror_dice: None,
    };
    let quality = assess(signals, &manifest.quality.unwrap_or_default());
    t.postprocess = now_ms() - mark;
    t.total = now_ms() - start;
    progress(stage::POSTPROCESS, 1.0);
    Ok((Segmentation { labels, timings_ms: t, label_volumes, windows, patch, quality, conv_flops, non_finite_voxels: 0 }, signals))
}

/// Most probable class per voxel, over the unpadded region only.
fn argmax_cropped(probs: &[Vec<f32>], padded: [usize; 3], region: [usize; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(region.iter().product());
    for z in 0..region[2] {
        for y in 0..region[1] {
            let row = padded[0] * (y + padded[1] * z);
            for x in 0..region[0] {
                let v = row + x;
                let mut best = 0usize;
                for c in 1..probs.len() {
                    if probs[c][v] > probs[best][v] {
                        best = c;
                    }
                }
                out.push(best as u8);
            }
        }
    }
    out
}

/// The volume of every non-background label together (the brain, for a
/// brain mask), in mm³.
pub fn foreground_mm3(volumes: &[LabelVolume]) -> f64 {
    volumes.iter().filter(|l| l.value != 0).map(|l| l.mm3).sum()
}

/// Voxel counts and volumes of every non-background label.
pub fn measure_labels(labels: &[u8], voxel_mm3: f64, names: &[crate::model::Label]) -> Vec<LabelVolume> {
    let mut counts = [0u64; 256];
    for &l in labels {
        counts[l as usize] += 1;
    }
    names
        .iter()
        .filter(|l| l.value != 0)
        .map(|l| LabelVolume {
            value: l.value,
            name: l.name.clone(),
            voxels: counts[l.value as usize],
            mm3: counts[l.value as usize] as f64 * voxel_mm3,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Label;

    #[test]
    fn label_volumes_count_voxels_and_the_foreground_adds_them() {
        let label = |value: u8, name: &str| Label { value, name: name.into(), color: [0; 3], code: None };
        let names = [label(0, "background"), label(1, "a"), label(2, "b")];
        let v = measure_labels(&[0, 1, 1, 2, 0, 1], 2.5, &names);
        assert_eq!(v.iter().map(|l| (l.value, l.voxels)).collect::<Vec<_>>(), [(1, 3), (2, 1)]);
        assert_eq!(v[0].mm3, 7.5);
        assert_eq!(foreground_mm3(&v), 10.0);
    }
}
