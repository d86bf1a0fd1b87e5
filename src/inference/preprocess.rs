//! The model's view of a volume: resampled to its spacing, normalised, and
//! padded to a size its network accepts (HD-BET `data_loading.py` and
//! `predict_case.py`).

use crate::model::manifest::Preprocessing;
use crate::volume::{resample, spline, Volume};

/// A volume ready for the network. Arrays are in the file's storage order,
/// x fastest, which is the network's (z, y, x) C-order array.
#[derive(Debug, Clone)]
pub struct Prepared {
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
}

pub fn prepare(volume: &Volume, pre: &Preprocessing) -> Result<Prepared, PreprocessError> {
    if pre.axis_order != "zyx" {
        return Err(PreprocessError::Unsupported(format!("axis_order {}", pre.axis_order)));
    }
    if pre.normalisation != "zscore" {
        return Err(PreprocessError::Unsupported(format!("normalisation {}", pre.normalisation)));
    }
    let resize = match pre.interpolation.as_str() {
        // HD-BET's own choice (skimage order 3); `trilinear` is cheaper, for
        // models trained with it.
        "cubic" => spline::cubic,
        "trilinear" => resample::trilinear,
        other => return Err(PreprocessError::Unsupported(format!("interpolation {other}"))),
    };
    // target_spacing is given in (z, y, x); storage axis i pairs with entry 2 - i.
    let target = [pre.target_spacing[2], pre.target_spacing[1], pre.target_spacing[0]];
    let new_dims = resample::shape_for_spacing(volume.dims, volume.spacing, target);
    let mut data = resize(&volume.data, volume.dims, new_dims);

    zscore(&mut data)?;

    let patch = [pre.patch_size[2], pre.patch_size[1], pre.patch_size[0]];
    // Pad every side at its upper end to a multiple of `divisible_by`, and to
    // at least one patch, as HD-BET's `pad_patient_3D` does.
    let m = pre.divisible_by.max(1);
    let padded_dims: [usize; 3] = std::array::from_fn(|i| (new_dims[i].div_ceil(m) * m).max(patch[i]));
    let data = resample::pad_upper(&data, new_dims, padded_dims, 0.0);
    Ok(Prepared { resampled_dims: new_dims, padded_dims, spacing: target, data })
}

/// Brings labels from the model's grid (`prepared.resampled_dims`) back to the
/// volume's, as HD-BET's `run.py` does: a nearest-neighbour resize to
/// round(n · model spacing / native spacing), then `padorcut` (centred) to the
/// native shape, which the rounding can miss by a voxel.
pub fn labels_to_native(labels: &[u8], prepared: &Prepared, volume: &Volume) -> Vec<u8> {
    let from = prepared.resampled_dims;
    let back = resample::shape_for_spacing(from, prepared.spacing, volume.spacing);
    let resized = resample::nearest(labels, from, back);
    resample::centre_pad_or_crop(&resized, back, volume.dims, 0)
}

/// Subtracts the mean and divides by the (population) standard deviation, in
/// f64 so that sums over millions of voxels do not drift.
fn zscore(data: &mut [f32]) -> Result<(), PreprocessError> {
    let n = data.len() as f64;
    let mut sum = 0.0f64;
    for &v in data.iter() {
        if !v.is_finite() {
            return Err(PreprocessError::NotFinite);
        }
        sum += v as f64;
    }
    let mean = sum / n;
    let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    if std == 0.0 || !std.is_finite() {
        return Err(PreprocessError::Constant(mean));
    }
    for v in data.iter_mut() {
        *v = ((*v as f64 - mean) / std) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_gives_zero_mean_unit_std() {
        let mut d: Vec<f32> = (0..1000).map(|i| (i % 17) as f32 * 3.0 + 5.0).collect();
        zscore(&mut d).unwrap();
        let n = d.len() as f64;
        let mean = d.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = d.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    #[test]
    fn constant_image_is_refused() {
        let mut d = vec![4.0f32; 64];
        assert!(matches!(zscore(&mut d), Err(PreprocessError::Constant(_))));
    }
}
