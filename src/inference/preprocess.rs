//! The model's view of a volume: resampled to its spacing, normalised, and
//! padded to a size its network accepts (HD-BET `data_loading.py` and
//! `predict_case.py`).

use super::normalise::{normaliser, Grid};
pub use super::normalise::NORMALISATIONS;
use crate::model::manifest::Preprocessing;
use crate::volume::{resample, spline, Reorientation, Volume};

/// A volume ready for the network. Arrays are in the network's storage
/// order, x fastest, which is its (z, y, x) C-order array: the file's own
/// order for `axis_order` "zyx", closest canonical RAS for "ras".
#[derive(Debug, Clone)]
pub struct Prepared {
    /// How the file's axes were brought to the network's ("ras"); `None`
    /// when they are fed as stored ("zyx").
    pub reorientation: Option<Reorientation>,
    /// Storage-order dims after resampling, before padding.
    pub resampled_dims: [usize; 3],
    /// Storage-order dims after padding.
    pub padded_dims: [usize; 3],
    /// The model's spacing along the storage axes.
    pub spacing: [f64; 3],
    /// Normalised, padded intensities.
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("the image is constant (every voxel is {0}): there is nothing to segment")]
    Constant(f64),
    #[error("unsupported preprocessing in model.json: {0}")]
    Unsupported(String),
    #[error("the image contains NaN or infinite values")]
    NotFinite,
    #[error("every voxel of the image is NaN or infinite: there is nothing to segment")]
    NoFiniteVoxels,
    #[error("the image's affine gives no orientation to every axis, and this model needs one (axis_order \"ras\")")]
    NoOrientation,
}

/// The `axis_order` values a model may ask for (see [`Preprocessing`]).
pub const AXIS_ORDERS: [&str; 2] = ["zyx", "ras"];

pub fn prepare(volume: &Volume, pre: &Preprocessing) -> Result<Prepared, PreprocessError> {
    let mut views = prepare_each(volume, pre, &[pre.normalisation.as_str()])?;
    Ok(views.pop().expect("one view per normalisation"))
}

/// [`prepare`] once per normalisation in `normalisations` (`pre`'s own is
/// ignored), on the same grid: the reorientation and the resampling, the
/// costly part, are done once. Training uses it to give the teacher and the
/// student each their own view of a volume.
pub fn prepare_each(volume: &Volume, pre: &Preprocessing, normalisations: &[&str]) -> Result<Vec<Prepared>, PreprocessError> {
    let reorientation = match pre.axis_order.as_str() {
        // HD-BET's own: the file's storage axes reversed, no reorientation.
        "zyx" => None,
        "ras" => Some(Reorientation::to_ras(&volume.affine, volume.dims).ok_or(PreprocessError::NoOrientation)?),
        other => return Err(PreprocessError::Unsupported(format!("axis_order {other}"))),
    };
    let normalisers = normalisations.iter().map(|n| normaliser(n)).collect::<Result<Vec<_>, _>>()?;
    let resize = match pre.interpolation.as_str() {
        // HD-BET's own choice (skimage order 3); `trilinear` is cheaper, for
        // models trained with it.
        "cubic" => spline::cubic,
        "trilinear" => resample::trilinear,
        other => return Err(PreprocessError::Unsupported(format!("interpolation {other}"))),
    };
    // target_spacing is given in (z, y, x); storage axis i pairs with entry 2 - i.
    let target = [pre.target_spacing[2], pre.target_spacing[1], pre.target_spacing[0]];
    let (dims, spacing) = native_grid(volume, reorientation.as_ref());
    let new_dims = resample::shape_for_spacing(dims, spacing, target);
    let mut resampled = match &reorientation {
        Some(r) => resize(&r.apply(&volume.data), dims, new_dims),
        None => resize(&volume.data, dims, new_dims),
    };

    let patch = [pre.patch_size[2], pre.patch_size[1], pre.patch_size[0]];
    // Pad every side at its upper end to a multiple of `divisible_by`, and to
    // at least one patch, as HD-BET's `pad_patient_3D` does.
    let m = pre.divisible_by.max(1);
    let padded_dims: [usize; 3] = std::array::from_fn(|i| (new_dims[i].div_ceil(m) * m).max(patch[i]));
    let mut views = Vec::with_capacity(normalisers.len());
    for (i, normalise) in normalisers.iter().enumerate() {
        // The last view takes the resampled array itself: inference, with
        // one view, holds no second copy.
        let mut data = if i + 1 == normalisers.len() { std::mem::take(&mut resampled) } else { resampled.clone() };
        let background = normalise(&mut data, Grid { dims: new_dims, spacing: target })?;
        let data = resample::pad_upper(&data, new_dims, padded_dims, background);
        views.push(Prepared { reorientation, resampled_dims: new_dims, padded_dims, spacing: target, data });
    }
    Ok(views)
}

/// The volume's dims and spacing in the network's axis order, before resampling.
fn native_grid(volume: &Volume, reorientation: Option<&Reorientation>) -> ([usize; 3], [f64; 3]) {
    match reorientation {
        Some(r) => (r.dims(), r.axes(volume.spacing)),
        None => (volume.dims, volume.spacing),
    }
}

/// Labels on the volume's own grid of `native_dims` (an independent mask)
/// brought to the model's padded grid, as HD-BET brings labels (order 0).
pub fn labels_to_model(labels: &[u8], native_dims: [usize; 3], prepared: &Prepared) -> Vec<u8> {
    let (labels, dims) = match &prepared.reorientation {
        Some(r) => (r.apply(labels), r.dims()),
        None => (labels.to_vec(), native_dims),
    };
    let resampled = resample::nearest(&labels, dims, prepared.resampled_dims);
    resample::pad_upper(&resampled, prepared.resampled_dims, prepared.padded_dims, 0)
}

/// Brings labels from the model's grid (`prepared.resampled_dims`) back to the
/// volume's, as HD-BET's `run.py` does: a nearest-neighbour resize to
/// round(n · model spacing / native spacing), then `padorcut` (centred) to the
/// native shape, which the rounding can miss by a voxel.
pub fn labels_to_native(labels: &[u8], prepared: &Prepared, volume: &Volume) -> Vec<u8> {
    let (dims, spacing) = native_grid(volume, prepared.reorientation.as_ref());
    let from = prepared.resampled_dims;
    let back = resample::shape_for_spacing(from, prepared.spacing, spacing);
    let resized = resample::nearest(labels, from, back);
    let native = resample::centre_pad_or_crop(&resized, back, dims, 0);
    match &prepared.reorientation {
        Some(r) => r.undo(&native),
        None => native,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(axis_order: &str) -> Preprocessing {
        Preprocessing {
            target_spacing: [1.0; 3],
            axis_order: axis_order.into(),
            normalisation: "zscore".into(),
            interpolation: "trilinear".into(),
            patch_size: [4; 3],
            divisible_by: 4,
            single_pass: false,
        }
    }

    #[test]
    fn ras_axis_order_turns_the_volume_and_labels_come_back_on_the_file_grid() {
        // A "LIA" volume (FreeSurfer's conformed order): x → L, y → I, z → A.
        let affine = [[-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        let dims = [3, 4, 2];
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let volume = Volume::from_array(dims, [1.0; 3], affine, data).unwrap();
        assert_eq!(volume.orientation(), "LIA");
        let zyx = prepare(&volume, &pre("zyx")).unwrap();
        assert!(zyx.reorientation.is_none());
        assert_eq!(zyx.resampled_dims, [3, 4, 2]);
        let ras = prepare(&volume, &pre("ras")).unwrap();
        assert_eq!(ras.resampled_dims, [3, 2, 4], "R from x, A from z, S from y");
        // RAS voxel (0, 0, 0) is the most right, posterior, inferior voxel:
        // x = 2 (L reversed), z = 0, y = 3 (I reversed) → value 2 + 3·3 = 11,
        // z-scored over 0..23 (mean 11.5, population std √((24² − 1)/12)).
        let first = ras.data[0];
        let expected = ((11.0 - 11.5) / ((24.0f64 * 24.0 - 1.0) / 12.0).sqrt()) as f32;
        assert!((first - expected).abs() < 1e-6, "{first} vs {expected}");
        // Mark one voxel on the file grid, take it to the model grid and back.
        let mut mask = vec![0u8; 24];
        mask[1 + 3 * (2 + 4 * 1)] = 1;
        let on_model = labels_to_model(&mask, dims, &ras);
        assert_eq!(on_model.iter().filter(|&&l| l == 1).count(), 1);
        let model_only = resample::pad_or_crop(&on_model, ras.padded_dims, ras.resampled_dims, 0);
        assert_eq!(labels_to_native(&model_only, &ras, &volume), mask);
    }

    #[test]
    fn a_degenerate_affine_is_refused_for_ras_only() {
        let flat = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        let volume = Volume::from_array([2, 2, 2], [1.0; 3], flat, (0..8).map(|i| i as f32).collect()).unwrap();
        assert!(prepare(&volume, &pre("zyx")).is_ok());
        assert!(matches!(prepare(&volume, &pre("ras")), Err(PreprocessError::NoOrientation)));
    }

    #[test]
    fn padding_past_the_volume_takes_the_air_for_zscore_foreground() {
        // Padding past the volume takes the air's value, not the head's mean.
        let volume = Volume::from_array([2, 2, 2], [1.0; 3], IDENTITY, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0, 20.0]).unwrap();
        let p = Preprocessing { normalisation: "zscore_foreground".into(), divisible_by: 4, ..pre("zyx") };
        let prepared = prepare(&volume, &p).unwrap();
        assert_eq!(prepared.padded_dims, [4, 4, 4]);
        assert_eq!(prepared.data.iter().filter(|&&v| v == -3.0).count(), 64 - 2);
    }

    #[test]
    fn prepare_each_gives_what_prepare_gives_for_each_normalisation() {
        let volume = Volume::from_array([3, 2, 2], [1.0; 3], IDENTITY, (0..12).map(|i| (i * i) as f32).collect()).unwrap();
        let views = prepare_each(&volume, &pre("zyx"), &["zscore_foreground", "zscore"]).unwrap();
        for (view, name) in views.iter().zip(["zscore_foreground", "zscore"]) {
            let alone = prepare(&volume, &Preprocessing { normalisation: name.into(), ..pre("zyx") }).unwrap();
            assert_eq!((view.padded_dims, &view.data), (alone.padded_dims, &alone.data), "{name}");
        }
        assert_ne!(views[0].data, views[1].data);
    }

    #[test]
    fn an_unknown_normalisation_is_refused() {
        let volume = Volume::from_array([2, 2, 2], [1.0; 3], IDENTITY, (0..8).map(|i| i as f32).collect()).unwrap();
        let p = Preprocessing { normalisation: "minmax".into(), ..pre("zyx") };
        assert!(matches!(prepare(&volume, &p), Err(PreprocessError::Unsupported(m)) if m.contains("minmax")));
    }

    const IDENTITY: [[f64; 4]; 4] = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
}
