//! Medical image volumes: NIfTI reading/writing, orientation and resampling.
//!
//! A [`Volume`] is always a single 3D grid of `f32` intensities in file
//! storage order (x fastest), plus the header it came from so that masks can be
//! written back into exactly the same grid.

pub mod archive;
pub mod dicom;
mod dicom_guard;
pub mod dicom_seg;
pub mod nifti;
pub mod orientation;
pub mod resample;
pub mod spline;

#[cfg(not(target_arch = "wasm32"))]
pub use nifti::read_nifti_file;
pub use nifti::{
    extract_volume, read_nifti, read_nifti_volume, write_float32_nifti, write_label_nifti_gz, Endianness, NiftiHeader, NiftiVersion, MAX_VOXELS,
};
pub use orientation::{axis_codes, flip_axis, io_orientation, left_right_axis, orientation_string, Reorientation};
pub use resample::{centre_pad_or_crop, nearest, pad_or_crop, pad_upper, shape_for_spacing, trilinear};
pub use spline::cubic;

/// One 3D image as read from a NIfTI file.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Everything needed to write a mask back in the same grid (NIfTI-1 or -2).
    pub header: NiftiHeader,
    /// (nx, ny, nz) in file storage order, x fastest.
    pub dims: [usize; 3],
    /// Voxel size along each storage axis: |pixdim[1..=3]| (0 read as 1, like nibabel).
    pub spacing: [f64; 3],
    /// Voxel-to-world transform, identical to nibabel's `img.affine` (row-major).
    pub affine: [[f64; 4]; 4],
    /// Scaled intensities `raw * slope + inter`; index = i + nx * (j + ny * k).
    pub data: Vec<f32>,
}

/// Summary intensities as nibabel users get them with numpy's `nanmin`,
/// `nanmax` and `nanmean` over `get_fdata()`: NaN voxels are left out (and
/// counted). A statistic that is not a finite number (every voxel NaN, or an
/// infinite voxel) is `None`, which JSON shows as null.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct IntensityStats {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub nan_voxels: usize,
}

impl Volume {
    /// Builds a float32 NIfTI-1 volume from an array already in memory (for
    /// derived images and tests). The affine is stored as an "aligned" sform.
    pub fn from_array(
        dims: [usize; 3],
        spacing: [f64; 3],
        affine: [[f64; 4]; 4],
        data: Vec<f32>,
    ) -> Result<Volume, VolumeError> {
        let expected = checked_voxel_count(dims)?;
        if data.len() != expected {
            return Err(VolumeError::LengthMismatch {
                what: "data",
                expected,
                actual: data.len(),
            });
        }
        let header = NiftiHeader::for_float32_grid(dims, spacing, &affine);
        Ok(Volume {
            header,
            dims,
            spacing: spacing.map(f64::abs),
            affine,
            data,
        })
    }

    /// The same grid and header with no voxels yet, for a derived image
    /// (cloning `data` only to replace it would copy the whole volume).
    pub fn clone_without_data(&self) -> Volume {
        Volume { header: self.header.clone(), dims: self.dims, spacing: self.spacing, affine: self.affine, data: Vec::new() }
    }

    pub fn voxel_count(&self) -> usize {
        // Saturating: the fields are public, and a hand-built Volume must not
        // be able to trigger an overflow panic here.
        self.dims
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }

    /// Axis codes such as "RAS" or "LPS", exactly as nibabel's `aff2axcodes`;
    /// an axis that maps to no world direction (degenerate affine) is shown as '?'.
    pub fn orientation(&self) -> String {
        orientation_string(&self.affine)
    }

    /// numpy-style name of the on-disk datatype ("uint8", "int16", "float32", ...).
    pub fn datatype_name(&self) -> &'static str {
        self.header.datatype_name()
    }

    /// Volume of one voxel in mm³. Pixdims are taken as millimetres unless
    /// `xyzt_units` says metres or microns.
    pub fn voxel_volume_mm3(&self) -> f64 {
        self.spacing_mm().iter().product()
    }

    /// Voxel size along each axis in mm (`xyzt_units`, as `voxel_volume_mm3`).
    pub fn spacing_mm(&self) -> [f64; 3] {
        let to_mm = self.header.spatial_unit_in_mm();
        self.spacing.map(|s| s * to_mm)
    }

    pub fn stats(&self) -> IntensityStats {
        intensity_stats(&self.data)
    }
}

/// [`IntensityStats`] of `values`: sums in f64, NaN left out.
pub fn intensity_stats(values: &[f32]) -> IntensityStats {
    let mut min = f32::INFINITY;
    let mut max = f32::NEG_INFINITY;
    let mut sum = 0.0f64;
    let mut nan_voxels = 0usize;
    for &v in values {
        if v.is_nan() {
            nan_voxels += 1;
            continue;
        }
        min = min.min(v);
        max = max.max(v);
        sum += v as f64;
    }
    let counted = values.len() - nan_voxels;
    let finite = |x: f64| (counted > 0 && x.is_finite()).then_some(x);
    IntensityStats {
        min: finite(min as f64),
        max: finite(max as f64),
        mean: finite(sum / counted.max(1) as f64),
        nan_voxels,
    }
}

/// nx*ny*nz with overflow and size checks, shared by constructors and resamplers.
pub(crate) fn checked_voxel_count(dims: [usize; 3]) -> Result<usize, VolumeError> {
    if dims.contains(&0) {
        return Err(VolumeError::InvalidDimensions(format!(
            "shape {dims:?} has an empty axis"
        )));
    }
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(VolumeError::TooManyVoxels {
            voxels: u128::MAX,
            max: MAX_VOXELS,
        })?;
    if count > MAX_VOXELS {
        return Err(VolumeError::TooManyVoxels {
            voxels: count as u128,
            max: MAX_VOXELS,
        });
    }
    Ok(count)
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("not a NIfTI file: {0}")]
    NotNifti(String),

    #[error(
        "this is the header of a NIfTI .hdr/.img pair (magic \"{magic}\"); pairs are not supported, \
         bedside needs a single-file .nii or .nii.gz image"
    )]
    PairFileUnsupported { magic: &'static str },

    #[error("invalid image dimensions: {0}")]
    InvalidDimensions(String),

    #[error("invalid voxel size in header: {0}")]
    InvalidSpacing(String),

    #[error("image has {voxels} voxels, more than the {max} bedside can hold in memory")]
    TooManyVoxels { voxels: u128, max: usize },

    #[error("there is no volume {index} in this file: it holds {volumes} (numbered from 0)")]
    NoSuchVolume { index: usize, volumes: u64 },

    #[error(
        "unsupported NIfTI datatype {name} (code {code}); bedside reads uint8, int8, int16, \
         uint16, int32, uint32, int64, uint64, float32 and float64 images"
    )]
    UnsupportedDatatype { code: i16, name: &'static str },

    #[error(
        "file is truncated: the header needs {expected} bytes (voxel data from byte {offset}) \
         but the {source_kind} has only {actual}"
    )]
    Truncated {
        expected: u64,
        offset: u64,
        actual: u64,
        /// "file" or "decompressed stream", so the user knows which one is short.
        source_kind: &'static str,
    },

    #[error("invalid vox_offset in header: {0}")]
    InvalidVoxOffset(String),

    #[error("invalid qform in header: {0}")]
    InvalidQform(String),

    #[error("corrupt or truncated gzip stream: {0}")]
    CorruptGzip(String),

    #[error("could not read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} has {actual} elements but the grid has {expected} voxels")]
    LengthMismatch {
        what: &'static str,
        expected: usize,
        actual: usize,
    },

    #[error("could not write NIfTI output: {0}")]
    Write(String),
}
