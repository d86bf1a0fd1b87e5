//! Reading and writing single-file NIfTI-1 / NIfTI-2 images (`.nii`, `.nii.gz`).
//!
//! Hand-written rather than using the `nifti` crate because that crate does not
//! support NIfTI-2, and it allocates the whole voxel buffer before it can
//! validate sizes — a hostile or corrupt header (or a gzip bomb) could make it
//! allocate gigabytes. Here every size is validated from the header first and
//! gzip streams are decompressed through a reader bounded by the header-implied
//! size.
//!
//! Semantics (affine, scaling, header fix-ups) follow nibabel 5.x so that
//! `bedside info` agrees with `nibabel.load`.

use std::io::Read;

use flate2::bufread::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use super::{checked_voxel_count, Volume, VolumeError};

/// Largest grid we accept: 512³ × 2 voxels (1 GiB as f32). Larger headers are
/// refused before any voxel memory is allocated.
pub const MAX_VOXELS: usize = 512 * 512 * 512 * 2;

/// Extensions live between the header and vox_offset; real ones (CIFTI XML,
/// DICOM dumps) are at most a few MB. Capping the offset keeps a malicious
/// header from steering the bounded gzip reader into gigabytes of "extension".
const MAX_VOX_OFFSET: u64 = 256 * 1024 * 1024;

/// Decompressed bytes we tolerate past the header-implied end, so that normal
/// files are read to their end and their gzip CRC gets verified.
const GZIP_TRAILING_MARGIN: u64 = 1024 * 1024;

const NIFTI1_HEADER_SIZE: usize = 348;
const NIFTI2_HEADER_SIZE: usize = 540;
/// Header plus the 4-byte extension flag that single-file NIfTI always carries.
const NIFTI1_MIN_VOX_OFFSET: u64 = 352;
const NIFTI2_MIN_VOX_OFFSET: u64 = 544;
const NIFTI2_SINGLE_MAGIC: [u8; 8] = *b"n+2\0\r\n\x1a\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiVersion {
    Nifti1,
    Nifti2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endianness {
    Little,
    Big,
}

/// All header fields, widened to the NIfTI-2 types (every NIfTI-1 value is
/// exactly representable), as stored in the file — i.e. *before* nibabel's
/// load-time fix-ups, which are applied when deriving the affine and spacing.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    pub version: NiftiVersion,
    /// Byte order of the source file; written files are always little-endian.
    pub endianness: Endianness,
    pub dim_info: u8,
    pub dim: [i64; 8],
    pub intent_p1: f64,
    pub intent_p2: f64,
    pub intent_p3: f64,
    pub intent_code: i32,
    pub intent_name: [u8; 16],
    pub datatype: i16,
    pub bitpix: i16,
    pub slice_start: i64,
    pub slice_end: i64,
    pub slice_code: i32,
    pub slice_duration: f64,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub cal_max: f64,
    pub cal_min: f64,
    pub toffset: f64,
    /// NIfTI-1 only (unused legacy fields, kept so a rewrite is faithful).
    pub glmax: i32,
    pub glmin: i32,
    pub descrip: [u8; 80],
    pub aux_file: [u8; 24],
    pub xyzt_units: i32,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern_b: f64,
    pub quatern_c: f64,
    pub quatern_d: f64,
    pub qoffset_x: f64,
    pub qoffset_y: f64,
    pub qoffset_z: f64,
    pub srow_x: [f64; 4],
    pub srow_y: [f64; 4],
    pub srow_z: [f64; 4],
}

/// The voxel element types bedside can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VoxelType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl VoxelType {
    fn from_code(code: i16) -> Result<VoxelType, VolumeError> {
        Ok(match code {
            2 => VoxelType::U8,
            256 => VoxelType::I8,
            4 => VoxelType::I16,
            512 => VoxelType::U16,
            8 => VoxelType::I32,
            768 => VoxelType::U32,
            1024 => VoxelType::I64,
            1280 => VoxelType::U64,
            16 => VoxelType::F32,
            64 => VoxelType::F64,
            _ => {
                return Err(VolumeError::UnsupportedDatatype {
                    code,
                    name: unsupported_datatype_name(code),
                })
            }
        })
    }

    fn byte_size(self) -> usize {
        match self {
            VoxelType::U8 | VoxelType::I8 => 1,
            VoxelType::I16 | VoxelType::U16 => 2,
            VoxelType::I32 | VoxelType::U32 | VoxelType::F32 => 4,
            VoxelType::I64 | VoxelType::U64 | VoxelType::F64 => 8,
        }
    }

    fn numpy_name(self) -> &'static str {
        match self {
            VoxelType::U8 => "uint8",
            VoxelType::I8 => "int8",
            VoxelType::I16 => "int16",
            VoxelType::U16 => "uint16",
            VoxelType::I32 => "int32",
            VoxelType::U32 => "uint32",
            VoxelType::I64 => "int64",
            VoxelType::U64 => "uint64",
            VoxelType::F32 => "float32",
            VoxelType::F64 => "float64",
        }
    }
}

fn unsupported_datatype_name(code: i16) -> &'static str {
    match code {
        0 => "DT_UNKNOWN",
        1 => "binary (1 bit per voxel)",
        32 => "complex64",
        128 => "RGB24",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "RGBA32",
        _ => "unrecognised",
    }
}

impl NiftiHeader {
    /// numpy-style name of the stored datatype, "unknown" for unsupported codes.
    pub fn datatype_name(&self) -> &'static str {
        VoxelType::from_code(self.datatype)
            .map(VoxelType::numpy_name)
            .unwrap_or("unknown")
    }

    /// The image's shape as nibabel's `img.shape`: dims 1..=dim[0] (a 4D
    /// series ends with its number of volumes).
    pub fn shape(&self) -> Vec<i64> {
        let ndim = self.dim[0].clamp(1, 7) as usize;
        self.dim[1..=ndim].to_vec()
    }

    /// How many 3D volumes the file holds (1 for a 3D image).
    pub fn volume_count(&self) -> u64 {
        volume_count(self)
    }

    /// The step between volumes, nibabel's `header.get_zooms()[3]` (pixdim[4],
    /// the repetition time of an fMRI series), in [`Self::time_unit`]; none
    /// for an image with fewer than 4 dimensions.
    pub fn time_step(&self) -> Option<f64> {
        (self.dim[0] >= 4).then_some(self.pixdim[4])
    }

    /// The unit of [`Self::time_step`] as nibabel's `get_xyzt_units()[1]` names it.
    pub fn time_unit(&self) -> &'static str {
        match self.xyzt_units & 0x38 {
            8 => "sec",
            16 => "msec",
            24 => "usec",
            32 => "hz",
            40 => "ppm",
            48 => "rads",
            _ => "unknown",
        }
    }

    /// Millimetres per spatial unit according to `xyzt_units` (unknown → mm).
    pub fn spatial_unit_in_mm(&self) -> f64 {
        match self.xyzt_units & 0x07 {
            1 => 1000.0, // NIFTI_UNITS_METER
            3 => 0.001,  // NIFTI_UNITS_MICRON
            _ => 1.0,    // NIFTI_UNITS_MM, or unknown: mm is the overwhelming convention
        }
    }

    /// pixdim[1..=3] after nibabel's load fix-ups (absolute value, 0 → 1).
    /// Axes beyond dim[0] count as 1, like nibabel's zero-padded zooms.
    pub fn spatial_zooms(&self) -> [f64; 3] {
        let ndim = self.dim[0];
        let mut zooms = [1.0; 3];
        for (axis, zoom) in zooms.iter_mut().enumerate() {
            if (axis as i64) < ndim {
                *zoom = fixed_pixdim(self.pixdim[axis + 1]);
            }
        }
        zooms
    }

    /// nibabel's `header.get_best_affine()`: sform if its code is set, else
    /// qform, else the "base" affine centred on the grid with x flipped.
    pub fn best_affine(&self) -> Result<[[f64; 4]; 4], VolumeError> {
        if valid_xform_code(self.sform_code) != 0 {
            Ok(self.sform_affine())
        } else if valid_xform_code(self.qform_code) != 0 {
            self.qform_affine()
        } else {
            Ok(self.base_affine())
        }
    }

    pub fn sform_affine(&self) -> [[f64; 4]; 4] {
        [self.srow_x, self.srow_y, self.srow_z, [0.0, 0.0, 0.0, 1.0]]
    }

    /// nibabel's `get_qform()`: rotation from the quaternion (b, c, d) with
    /// a = sqrt(1 - (b²+c²+d²)), zooms from pixdim with the last one times qfac.
    pub fn qform_affine(&self) -> Result<[[f64; 4]; 4], VolumeError> {
        let (b, c, d) = (self.quatern_b, self.quatern_c, self.quatern_d);
        // nibabel judges w² against the precision the quaternion was stored in.
        let w2_threshold = match self.version {
            NiftiVersion::Nifti1 => f32::EPSILON as f64 * 3.0,
            NiftiVersion::Nifti2 => f64::EPSILON * 3.0,
        };
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2.abs() < w2_threshold {
            0.0
        } else if w2 < 0.0 || !w2.is_finite() {
            return Err(VolumeError::InvalidQform(format!(
                "quaternion (b, c, d) = ({b}, {c}, {d}) is longer than 1"
            )));
        } else {
            w2.sqrt()
        };
        let rotation = quaternion_to_matrix(a, b, c, d);
        // nibabel resets any qfac other than ±1 to 1 when loading.
        let qfac = if self.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
        let zooms = [
            fixed_pixdim(self.pixdim[1]),
            fixed_pixdim(self.pixdim[2]),
            fixed_pixdim(self.pixdim[3]) * qfac,
        ];
        let offsets = [self.qoffset_x, self.qoffset_y, self.qoffset_z];
        let mut affine = identity4();
        for row in 0..3 {
            for col in 0..3 {
                affine[row][col] = rotation[row][col] * zooms[col];
            }
            affine[row][3] = offsets[row];
        }
        Ok(affine)
    }

    /// nibabel's `shape_zoom_affine(shape, zooms, x_flip=True)`: the grid centre
    /// at the origin and x pointing left, as Analyze files assumed.
    pub fn base_affine(&self) -> [[f64; 4]; 4] {
        let ndim = self.dim[0];
        let mut affine = identity4();
        let zooms = self.spatial_zooms();
        for axis in 0..3 {
            let size = if (axis as i64) < ndim {
                self.dim[axis + 1] as f64
            } else {
                1.0
            };
            let zoom = if axis == 0 { -zooms[axis] } else { zooms[axis] };
            affine[axis][axis] = zoom;
            affine[axis][3] = -((size - 1.0) / 2.0) * zoom;
        }
        affine
    }

    /// A fresh float32 NIfTI-1 header for an in-memory grid, with `affine` as
    /// an aligned sform.
    pub(crate) fn for_float32_grid(
        dims: [usize; 3],
        spacing: [f64; 3],
        affine: &[[f64; 4]; 4],
    ) -> NiftiHeader {
        let mut dim = [1i64; 8];
        dim[0] = 3;
        for axis in 0..3 {
            dim[axis + 1] = dims[axis] as i64;
        }
        let mut pixdim = [1.0; 8];
        for axis in 0..3 {
            pixdim[axis + 1] = spacing[axis].abs();
        }
        let version = if dims.iter().any(|&d| d > i16::MAX as usize) {
            NiftiVersion::Nifti2
        } else {
            NiftiVersion::Nifti1
        };
        NiftiHeader {
            version,
            endianness: Endianness::Little,
            dim_info: 0,
            dim,
            intent_p1: 0.0,
            intent_p2: 0.0,
            intent_p3: 0.0,
            intent_code: 0,
            intent_name: [0; 16],
            datatype: 16,
            bitpix: 32,
            slice_start: 0,
            slice_end: 0,
            slice_code: 0,
            slice_duration: 0.0,
            pixdim,
            vox_offset: 0.0, // "directly after the header", whichever version
            scl_slope: 1.0,
            scl_inter: 0.0,
            cal_max: 0.0,
            cal_min: 0.0,
            toffset: 0.0,
            glmax: 0,
            glmin: 0,
            descrip: [0; 80],
            aux_file: [0; 24],
            xyzt_units: 2, // mm
            qform_code: 0,
            sform_code: 2, // aligned anatomical
            quatern_b: 0.0,
            quatern_c: 0.0,
            quatern_d: 0.0,
            qoffset_x: 0.0,
            qoffset_y: 0.0,
            qoffset_z: 0.0,
            srow_x: affine[0],
            srow_y: affine[1],
            srow_z: affine[2],
        }
    }
}

fn identity4() -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

/// nibabel's `_chk_pixdims` fix: negative → absolute value, zero → 1.
fn fixed_pixdim(value: f64) -> f64 {
    if value == 0.0 {
        1.0
    } else {
        value.abs()
    }
}

/// nibabel resets xform codes outside the known set (0..=5) to 0 on load.
fn valid_xform_code(code: i32) -> i32 {
    if (0..=5).contains(&code) {
        code
    } else {
        0
    }
}

/// Same formula as nibabel's `quat2mat` (which also tolerates non-unit input).
fn quaternion_to_matrix(w: f64, x: f64, y: f64, z: f64) -> [[f64; 3]; 3] {
    let norm = w * w + x * x + y * y + z * z;
    if norm < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / norm;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Reads fixed-offset fields from a header block in either byte order. Out of
/// range offsets read as zeros instead of panicking.
struct FieldReader<'a> {
    bytes: &'a [u8],
    big_endian: bool,
}

impl FieldReader<'_> {
    fn array<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = offset
            .checked_add(N)
            .and_then(|end| self.bytes.get(offset..end))
        {
            out.copy_from_slice(src);
        }
        out
    }
    fn ordered<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut raw = self.array::<N>(offset);
        if self.big_endian {
            raw.reverse();
        }
        raw
    }
    fn u8(&self, offset: usize) -> u8 {
        self.array::<1>(offset)[0]
    }
    fn i16(&self, offset: usize) -> i16 {
        i16::from_le_bytes(self.ordered(offset))
    }
    fn i32(&self, offset: usize) -> i32 {
        i32::from_le_bytes(self.ordered(offset))
    }
    fn i64(&self, offset: usize) -> i64 {
        i64::from_le_bytes(self.ordered(offset))
    }
    fn f32(&self, offset: usize) -> f64 {
        f32::from_le_bytes(self.ordered(offset)) as f64
    }
    fn f64(&self, offset: usize) -> f64 {
        f64::from_le_bytes(self.ordered(offset))
    }
}

/// Identifies version and byte order from `sizeof_hdr`, then checks the magic.
fn detect_format(prefix: &[u8]) -> Result<(NiftiVersion, Endianness), VolumeError> {
    let Some(first4) = prefix.get(0..4) else {
        return Err(VolumeError::NotNifti(format!(
            "the data is only {} bytes long; a NIfTI header needs at least {NIFTI1_HEADER_SIZE}",
            prefix.len()
        )));
    };
    let sizeof_le = i32::from_le_bytes([first4[0], first4[1], first4[2], first4[3]]);
    let sizeof_be = i32::from_be_bytes([first4[0], first4[1], first4[2], first4[3]]);
    let (version, endianness) = match (sizeof_le, sizeof_be) {
        (348, _) => (NiftiVersion::Nifti1, Endianness::Little),
        (540, _) => (NiftiVersion::Nifti2, Endianness::Little),
        (_, 348) => (NiftiVersion::Nifti1, Endianness::Big),
        (_, 540) => (NiftiVersion::Nifti2, Endianness::Big),
        _ => return Err(VolumeError::NotNifti(
            "the first four bytes are not a NIfTI header size (348 or 540) in either byte order"
                .to_string(),
        )),
    };
    let header_size = match version {
        NiftiVersion::Nifti1 => NIFTI1_HEADER_SIZE,
        NiftiVersion::Nifti2 => NIFTI2_HEADER_SIZE,
    };
    if prefix.len() < header_size {
        return Err(VolumeError::NotNifti(format!(
            "the data is only {} bytes long but a {} header needs {header_size}",
            prefix.len(),
            version_label(version)
        )));
    }
    let magic: &[u8] = match version {
        NiftiVersion::Nifti1 => prefix.get(344..348).unwrap_or(&[]),
        NiftiVersion::Nifti2 => prefix.get(4..12).unwrap_or(&[]),
    };
    match (version, magic) {
        (NiftiVersion::Nifti1, b"n+1\0") => Ok((version, endianness)),
        (NiftiVersion::Nifti2, m) if m == NIFTI2_SINGLE_MAGIC => Ok((version, endianness)),
        (NiftiVersion::Nifti1, b"ni1\0") => Err(VolumeError::PairFileUnsupported { magic: "ni1" }),
        (NiftiVersion::Nifti2, m) if m.starts_with(b"ni2\0") => {
            Err(VolumeError::PairFileUnsupported { magic: "ni2" })
        }
        (_, m) => Err(VolumeError::NotNifti(format!(
            "the header size says {} but the magic string is {:?} (expected {:?})",
            version_label(version),
            String::from_utf8_lossy(m),
            match version {
                NiftiVersion::Nifti1 => "n+1",
                NiftiVersion::Nifti2 => "n+2",
            }
        ))),
    }
}

fn version_label(version: NiftiVersion) -> &'static str {
    match version {
        NiftiVersion::Nifti1 => "NIfTI-1",
        NiftiVersion::Nifti2 => "NIfTI-2",
    }
}

/// Parses the header at the start of `prefix` (which may run past the header).
pub fn parse_header(prefix: &[u8]) -> Result<NiftiHeader, VolumeError> {
    let (version, endianness) = detect_format(prefix)?;
    let r = FieldReader {
        bytes: prefix,
        big_endian: endianness == Endianness::Big,
    };
    let header = match version {
        NiftiVersion::Nifti1 => NiftiHeader {
            version,
            endianness,
            dim_info: r.u8(39),
            dim: std::array::from_fn(|i| r.i16(40 + 2 * i) as i64),
            intent_p1: r.f32(56),
            intent_p2: r.f32(60),
            intent_p3: r.f32(64),
            intent_code: r.i16(68) as i32,
            datatype: r.i16(70),
            bitpix: r.i16(72),
            slice_start: r.i16(74) as i64,
            pixdim: std::array::from_fn(|i| r.f32(76 + 4 * i)),
            vox_offset: r.f32(108),
            scl_slope: r.f32(112),
            scl_inter: r.f32(116),
            slice_end: r.i16(120) as i64,
            slice_code: r.u8(122) as i32,
            xyzt_units: r.u8(123) as i32,
            cal_max: r.f32(124),
            cal_min: r.f32(128),
            slice_duration: r.f32(132),
            toffset: r.f32(136),
            glmax: r.i32(140),
            glmin: r.i32(144),
            descrip: r.array(148),
            aux_file: r.array(228),
            qform_code: r.i16(252) as i32,
            sform_code: r.i16(254) as i32,
            quatern_b: r.f32(256),
            quatern_c: r.f32(260),
            quatern_d: r.f32(264),
            qoffset_x: r.f32(268),
            qoffset_y: r.f32(272),
            qoffset_z: r.f32(276),
            srow_x: std::array::from_fn(|i| r.f32(280 + 4 * i)),
            srow_y: std::array::from_fn(|i| r.f32(296 + 4 * i)),
            srow_z: std::array::from_fn(|i| r.f32(312 + 4 * i)),
            intent_name: r.array(328),
        },
        NiftiVersion::Nifti2 => NiftiHeader {
            version,
            endianness,
            datatype: r.i16(12),
            bitpix: r.i16(14),
            dim: std::array::from_fn(|i| r.i64(16 + 8 * i)),
            intent_p1: r.f64(80),
            intent_p2: r.f64(88),
            intent_p3: r.f64(96),
            pixdim: std::array::from_fn(|i| r.f64(104 + 8 * i)),
            vox_offset: r.i64(168) as f64,
            scl_slope: r.f64(176),
            scl_inter: r.f64(184),
            cal_max: r.f64(192),
            cal_min: r.f64(200),
            slice_duration: r.f64(208),
            toffset: r.f64(216),
            slice_start: r.i64(224),
            slice_end: r.i64(232),
            descrip: r.array(240),
            aux_file: r.array(320),
            qform_code: r.i32(344),
            sform_code: r.i32(348),
            quatern_b: r.f64(352),
            quatern_c: r.f64(360),
            quatern_d: r.f64(368),
            qoffset_x: r.f64(376),
            qoffset_y: r.f64(384),
            qoffset_z: r.f64(392),
            srow_x: std::array::from_fn(|i| r.f64(400 + 8 * i)),
            srow_y: std::array::from_fn(|i| r.f64(432 + 8 * i)),
            srow_z: std::array::from_fn(|i| r.f64(464 + 8 * i)),
            slice_code: r.i32(496),
            xyzt_units: r.i32(500),
            intent_code: r.i32(504),
            intent_name: r.array(508),
            dim_info: r.u8(524),
            glmax: 0,
            glmin: 0,
        },
    };
    Ok(header)
}

/// What the header says about where the voxels are and how many there are,
/// validated before anything is allocated.
#[derive(Debug, Clone, Copy)]
struct DataLayout {
    dims: [usize; 3],
    voxel_type: VoxelType,
    offset: u64,
    voxel_count: usize,
}

impl DataLayout {
    fn data_bytes(&self) -> u64 {
        self.voxel_count as u64 * self.voxel_type.byte_size() as u64
    }
    fn end(&self) -> u64 {
        self.offset + self.data_bytes()
    }
}

fn validate_layout(header: &NiftiHeader, index: usize) -> Result<DataLayout, VolumeError> {
    let ndim = header.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(VolumeError::InvalidDimensions(format!(
            "dim[0] (number of dimensions) is {ndim}; it must be between 1 and 7"
        )));
    }
    let ndim = ndim as usize;
    for axis in 1..=ndim {
        if header.dim[axis] <= 0 {
            return Err(VolumeError::InvalidDimensions(format!(
                "dim[{axis}] is {}; every used dimension must be at least 1",
                header.dim[axis]
            )));
        }
    }
    // A voxel size that is not a number cannot be resampled: refused here
    // rather than passed on as NaN (negative and zero are nibabel's fix-ups,
    // see `fixed_pixdim`).
    for axis in 1..=ndim.min(3) {
        let size = header.pixdim[axis];
        if !size.is_finite() {
            return Err(VolumeError::InvalidSpacing(format!("pixdim[{axis}] is {size}; a voxel size must be a finite number of mm")));
        }
    }
    // Dimensions 4..7 (time, components) hold the volumes; `index` picks one.
    // Only the chosen volume's bytes are located, so a header that claims an
    // absurd number of them costs nothing until one is asked for.
    let volumes = volume_count(header);
    if index as u64 >= volumes {
        return Err(VolumeError::NoSuchVolume { index, volumes });
    }
    let spatial: [i64; 3] =
        std::array::from_fn(|axis| if axis < ndim { header.dim[axis + 1] } else { 1 });
    let voxels = spatial
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
        .unwrap_or(u128::MAX);
    if voxels > MAX_VOXELS as u128 {
        return Err(VolumeError::TooManyVoxels {
            voxels,
            max: MAX_VOXELS,
        });
    }
    // Each axis is now ≤ MAX_VOXELS, so it fits usize on every target.
    let dims = spatial.map(|d| d as usize);
    let voxel_count = checked_voxel_count(dims)?;
    let voxel_type = VoxelType::from_code(header.datatype)?;
    let frame_bytes = voxel_count as u64 * voxel_type.byte_size() as u64;
    let first = validate_vox_offset(header)?;
    let offset = (index as u64)
        .checked_mul(frame_bytes)
        .and_then(|skip| skip.checked_add(first))
        .ok_or(VolumeError::NoSuchVolume { index, volumes })?;
    Ok(DataLayout {
        dims,
        voxel_type,
        offset,
        voxel_count,
    })
}

/// How many 3D volumes the file holds: the product of dims 4..7 (1 for a 3D
/// file), as numpy's `prod(img.shape[3:])`; saturating for absurd headers.
fn volume_count(header: &NiftiHeader) -> u64 {
    let ndim = header.dim[0].clamp(0, 7) as usize;
    header.dim[4..=ndim.max(3)]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d.max(0) as u64))
        .unwrap_or(u64::MAX)
}

fn validate_vox_offset(header: &NiftiHeader) -> Result<u64, VolumeError> {
    let minimum = match header.version {
        NiftiVersion::Nifti1 => NIFTI1_MIN_VOX_OFFSET,
        NiftiVersion::Nifti2 => NIFTI2_MIN_VOX_OFFSET,
    };
    let raw = header.vox_offset;
    if !raw.is_finite() || raw < 0.0 {
        return Err(VolumeError::InvalidVoxOffset(format!(
            "{raw} is not a byte position"
        )));
    }
    // nibabel truncates the float offset to an integer.
    let offset = raw.trunc();
    if offset == 0.0 {
        // Unset offset: the data follows the header and extension flag.
        // (nibabel would read from byte 0, which cannot be meant.)
        return Ok(minimum);
    }
    if offset < minimum as f64 {
        return Err(VolumeError::InvalidVoxOffset(format!(
            "{offset} points inside the header; a single-file {} needs at least {minimum}",
            version_label(header.version)
        )));
    }
    if offset > MAX_VOX_OFFSET as f64 {
        return Err(VolumeError::InvalidVoxOffset(format!(
            "{offset} would mean more than {MAX_VOX_OFFSET} bytes of header extensions"
        )));
    }
    Ok(offset as u64)
}

/// nibabel's slope/intercept rule: slope 0 or non-finite means "unscaled";
/// a non-finite intercept is treated as 0.
fn scaling(header: &NiftiHeader) -> Option<(f64, f64)> {
    let slope = header.scl_slope;
    if slope == 0.0 || !slope.is_finite() {
        return None;
    }
    let inter = if header.scl_inter.is_finite() {
        header.scl_inter
    } else {
        0.0
    };
    if slope == 1.0 && inter == 0.0 {
        None
    } else {
        Some((slope, inter))
    }
}

/// Reads a `.nii` or `.nii.gz` image from memory: its first volume when it
/// holds several (a 4D series), as [`read_nifti_volume`] with index 0. Gzip
/// is recognised by its magic bytes, not by a file name.
pub fn read_nifti(bytes: &[u8]) -> Result<Volume, VolumeError> {
    read_nifti_volume(bytes, 0)
}

/// Reads volume `index` (from 0) of a `.nii` or `.nii.gz` image: of a 4D
/// file, the 3D volume at that position of the 4th dimension (beyond it,
/// dims 5–7 in storage order); of a 3D file, index 0 is the image. Only that
/// volume is decompressed and converted.
pub fn read_nifti_volume(bytes: &[u8], index: usize) -> Result<Volume, VolumeError> {
    let (header, layout, data) = locate_volume(bytes, index)?;
    build_volume(header, layout, &data)
}

/// Volume `index` of a NIfTI file as a file of its own: the same header with
/// dims 4–7 set to 1 and its voxels' bytes as stored (same datatype and
/// scaling), little-endian and uncompressed. The page hands this to the
/// viewer and the engine when the user picks a volume of a 4D file, so that
/// every room sees one 3D volume and nothing is converted.
pub fn extract_volume(bytes: &[u8], index: usize) -> Result<Vec<u8>, VolumeError> {
    let (mut header, layout, data) = locate_volume(bytes, index)?;
    let mut raw = data[layout.offset as usize..layout.end() as usize].to_vec();
    let size = layout.voxel_type.byte_size();
    if header.endianness == Endianness::Big && size > 1 {
        raw.chunks_exact_mut(size).for_each(<[u8]>::reverse);
    }
    header.endianness = Endianness::Little;
    let ndim = header.dim[0].clamp(1, 3);
    header.dim[0] = ndim;
    header.dim[4..].fill(1);
    // Extensions are not copied.
    header.vox_offset = data_after_header(header.version);
    let mut file = encode_header(&header);
    file.extend_from_slice(&raw);
    Ok(file)
}

/// The header, the chosen volume's layout and the bytes that hold it (the
/// file itself, or as much of its decompressed stream as reaches the volume).
fn locate_volume(bytes: &[u8], index: usize) -> Result<(NiftiHeader, DataLayout, std::borrow::Cow<'_, [u8]>), VolumeError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let (header, layout, decompressed) = read_gzipped(bytes, index)?;
        Ok((header, layout, std::borrow::Cow::Owned(decompressed)))
    } else {
        let header = parse_header(bytes)?;
        let layout = validate_layout(&header, index)?;
        check_length(&layout, bytes.len(), "file")?;
        Ok((header, layout, std::borrow::Cow::Borrowed(bytes)))
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub fn read_nifti_file(path: &std::path::Path) -> Result<Volume, VolumeError> {
    let bytes = std::fs::read(path).map_err(|source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_nifti(&bytes)
}

fn check_length(
    layout: &DataLayout,
    available: usize,
    source_kind: &'static str,
) -> Result<(), VolumeError> {
    if (available as u64) < layout.end() {
        return Err(VolumeError::Truncated {
            expected: layout.end(),
            offset: layout.offset,
            actual: available as u64,
            source_kind,
        });
    }
    Ok(())
}

/// Decompresses only as much as the header says the file needs (plus a small
/// margin), so a gzip bomb cannot exhaust memory.
fn read_gzipped(compressed: &[u8], index: usize) -> Result<(NiftiHeader, DataLayout, Vec<u8>), VolumeError> {
    let mut decoder = MultiGzDecoder::new(compressed);
    let mut decompressed = Vec::new();
    read_bounded(&mut decoder, &mut decompressed, NIFTI2_HEADER_SIZE as u64)?;
    let header = parse_header(&decompressed)?;
    let layout = validate_layout(&header, index)?;

    let wanted = layout.end() + GZIP_TRAILING_MARGIN;
    let remaining = wanted.saturating_sub(decompressed.len() as u64);
    // Reserve what the header promises (already capped by MAX_VOXELS) only up
    // to a modest amount; beyond that the buffer grows with real data.
    let reserve = layout.end().min(64 * 1024 * 1024) as usize;
    decompressed.reserve(reserve.saturating_sub(decompressed.len()));
    read_bounded(&mut decoder, &mut decompressed, remaining)?;

    check_length(&layout, decompressed.len(), "decompressed stream")?;
    Ok((header, layout, decompressed))
}

fn read_bounded(reader: &mut impl Read, into: &mut Vec<u8>, limit: u64) -> Result<(), VolumeError> {
    reader
        .take(limit)
        .read_to_end(into)
        .map(|_| ())
        .map_err(|err| VolumeError::CorruptGzip(err.to_string()))
}

fn build_volume(
    header: NiftiHeader,
    layout: DataLayout,
    file_bytes: &[u8],
) -> Result<Volume, VolumeError> {
    let start = usize::try_from(layout.offset).map_err(|_| truncated(&layout, file_bytes))?;
    let end = usize::try_from(layout.end()).map_err(|_| truncated(&layout, file_bytes))?;
    let raw = file_bytes
        .get(start..end)
        .ok_or_else(|| truncated(&layout, file_bytes))?;
    let data = decode_voxels(
        raw,
        layout.voxel_type,
        header.endianness == Endianness::Big,
        scaling(&header),
    );
    let affine = header.best_affine()?;
    Ok(Volume {
        spacing: header.spatial_zooms(),
        dims: layout.dims,
        affine,
        data,
        header,
    })
}

fn truncated(layout: &DataLayout, file_bytes: &[u8]) -> VolumeError {
    VolumeError::Truncated {
        expected: layout.end(),
        offset: layout.offset,
        actual: file_bytes.len() as u64,
        source_kind: "file",
    }
}

/// Converts raw voxel bytes to scaled f32. Scaling is done in f64 like
/// nibabel's `get_fdata()`, then narrowed once.
fn decode_voxels(
    raw: &[u8],
    voxel_type: VoxelType,
    big_endian: bool,
    scale: Option<(f64, f64)>,
) -> Vec<f32> {
    fn convert<const N: usize>(
        raw: &[u8],
        big_endian: bool,
        scale: Option<(f64, f64)>,
        to_f64: impl Fn([u8; N]) -> f64,
    ) -> Vec<f32> {
        let mut out = Vec::with_capacity(raw.len() / N);
        let chunks = raw.chunks_exact(N);
        let read = |chunk: &[u8]| {
            let mut bytes = [0u8; N];
            bytes.copy_from_slice(chunk);
            if big_endian {
                bytes.reverse();
            }
            to_f64(bytes)
        };
        match scale {
            None => out.extend(chunks.map(|c| read(c) as f32)),
            Some((slope, inter)) => out.extend(chunks.map(|c| (read(c) * slope + inter) as f32)),
        }
        out
    }
    // Byte arrays are normalised to little-endian order above.
    match voxel_type {
        VoxelType::U8 => convert::<1>(raw, big_endian, scale, |b| b[0] as f64),
        VoxelType::I8 => convert::<1>(raw, big_endian, scale, |b| b[0] as i8 as f64),
        VoxelType::I16 => convert::<2>(raw, big_endian, scale, |b| i16::from_le_bytes(b) as f64),
        VoxelType::U16 => convert::<2>(raw, big_endian, scale, |b| u16::from_le_bytes(b) as f64),
        VoxelType::I32 => convert::<4>(raw, big_endian, scale, |b| i32::from_le_bytes(b) as f64),
        VoxelType::U32 => convert::<4>(raw, big_endian, scale, |b| u32::from_le_bytes(b) as f64),
        VoxelType::I64 => convert::<8>(raw, big_endian, scale, |b| i64::from_le_bytes(b) as f64),
        VoxelType::U64 => convert::<8>(raw, big_endian, scale, |b| u64::from_le_bytes(b) as f64),
        VoxelType::F32 => convert::<4>(raw, big_endian, scale, |b| f32::from_le_bytes(b) as f64),
        VoxelType::F64 => convert::<8>(raw, big_endian, scale, f64::from_le_bytes),
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Writes a volume's intensities as an uncompressed float32 NIfTI in its own
/// header's grid: how a DICOM series reaches the page's viewer and every
/// room that takes NIfTI bytes, with the values already rescaled.
pub fn write_float32_nifti(volume: &Volume) -> Result<Vec<u8>, VolumeError> {
    let expected = volume.voxel_count();
    if volume.data.len() != expected {
        return Err(VolumeError::LengthMismatch { what: "intensities", expected, actual: volume.data.len() });
    }
    let mut header = derived_header(&volume.header, volume.dims);
    header.datatype = 16; // float32
    header.bitpix = 32;
    let mut file = encode_header(&header);
    file.reserve(volume.data.len() * 4);
    for v in &volume.data {
        file.extend_from_slice(&v.to_le_bytes());
    }
    Ok(file)
}

/// Writes a uint8 label mask in the reference image's grid and header (same
/// NIfTI version, dims, pixdim, qform/sform codes and values), gzip-compressed.
pub fn write_label_nifti_gz(reference: &Volume, labels: &[u8]) -> Result<Vec<u8>, VolumeError> {
    let expected = reference.voxel_count();
    if labels.len() != expected {
        return Err(VolumeError::LengthMismatch {
            what: "label mask",
            expected,
            actual: labels.len(),
        });
    }
    let header = label_header(&reference.header, reference.dims, labels);
    let mut file = encode_header(&header);
    file.extend_from_slice(labels);

    let mut encoder = GzEncoder::new(Vec::with_capacity(file.len() / 8), Compression::default());
    std::io::Write::write_all(&mut encoder, &file)
        .map_err(|err| VolumeError::Write(err.to_string()))?;
    encoder
        .finish()
        .map_err(|err| VolumeError::Write(err.to_string()))
}

fn label_header(reference: &NiftiHeader, dims: [usize; 3], labels: &[u8]) -> NiftiHeader {
    let mut header = derived_header(reference, dims);
    header.datatype = 2; // uint8
    header.bitpix = 8;
    header.cal_max = labels.iter().copied().max().unwrap_or(0) as f64;
    let description = b"bedside segmentation mask";
    header.descrip[..description.len()].copy_from_slice(description);
    header
}

/// The header of an image bedside derives on `reference`'s grid (a mask, a
/// DICOM series' intensities): the same version, pixdim and transforms,
/// exactly 3D, unscaled, little-endian, with no statistical intent, no
/// description and no extensions. The caller sets the datatype.
fn derived_header(reference: &NiftiHeader, dims: [usize; 3]) -> NiftiHeader {
    let mut header = reference.clone();
    header.endianness = Endianness::Little;
    // NIfTI-1 stores dims as i16; a grid that does not fit needs NIfTI-2.
    if dims.iter().any(|&d| d > i16::MAX as usize) {
        header.version = NiftiVersion::Nifti2;
    }
    // Exactly 3D even if the source had trailing singleton dims.
    header.dim = [1; 8];
    header.dim[0] = 3;
    for (axis, &size) in dims.iter().enumerate() {
        header.dim[axis + 1] = size as i64;
    }
    header.scl_slope = 1.0;
    header.scl_inter = 0.0;
    header.cal_min = 0.0;
    header.cal_max = 0.0;
    header.glmax = 0;
    header.glmin = 0;
    // The source's statistical intent does not describe a derived image.
    header.intent_code = 0;
    header.intent_p1 = 0.0;
    header.intent_p2 = 0.0;
    header.intent_p3 = 0.0;
    header.intent_name = [0; 16];
    header.descrip = [0; 80];
    header.vox_offset = data_after_header(header.version);
    header
}

/// The vox_offset of a file written without extensions: the data directly
/// follows the header and its 4-byte extension flag.
fn data_after_header(version: NiftiVersion) -> f64 {
    match version {
        NiftiVersion::Nifti1 => NIFTI1_MIN_VOX_OFFSET as f64,
        NiftiVersion::Nifti2 => NIFTI2_MIN_VOX_OFFSET as f64,
    }
}

/// Little-endian field writer for a fixed-size header block.
struct FieldWriter {
    bytes: Vec<u8>,
}

impl FieldWriter {
    fn put(&mut self, offset: usize, value: &[u8]) {
        if let Some(dst) = self.bytes.get_mut(offset..offset + value.len()) {
            dst.copy_from_slice(value);
        }
    }
    fn i16(&mut self, offset: usize, v: i64) {
        self.put(offset, &(v as i16).to_le_bytes());
    }
    fn i32(&mut self, offset: usize, v: i64) {
        self.put(offset, &(v as i32).to_le_bytes());
    }
    fn i64(&mut self, offset: usize, v: i64) {
        self.put(offset, &v.to_le_bytes());
    }
    fn f32(&mut self, offset: usize, v: f64) {
        self.put(offset, &(v as f32).to_le_bytes());
    }
    fn f64(&mut self, offset: usize, v: f64) {
        self.put(offset, &v.to_le_bytes());
    }
}

/// Serialises a header (plus the 4-byte empty extension flag) in little-endian
/// order. NIfTI-1 fields were read from 32-bit values, so narrowing is exact.
fn encode_header(h: &NiftiHeader) -> Vec<u8> {
    match h.version {
        NiftiVersion::Nifti1 => {
            let mut w = FieldWriter {
                bytes: vec![0u8; NIFTI1_MIN_VOX_OFFSET as usize],
            };
            w.i32(0, NIFTI1_HEADER_SIZE as i64);
            w.put(38, b"r");
            w.put(39, &[h.dim_info]);
            for (i, &d) in h.dim.iter().enumerate() {
                w.i16(40 + 2 * i, d);
            }
            w.f32(56, h.intent_p1);
            w.f32(60, h.intent_p2);
            w.f32(64, h.intent_p3);
            w.i16(68, h.intent_code as i64);
            w.i16(70, h.datatype as i64);
            w.i16(72, h.bitpix as i64);
            w.i16(74, h.slice_start);
            for (i, &p) in h.pixdim.iter().enumerate() {
                w.f32(76 + 4 * i, p);
            }
            w.f32(108, h.vox_offset);
            w.f32(112, h.scl_slope);
            w.f32(116, h.scl_inter);
            w.i16(120, h.slice_end);
            w.put(122, &[h.slice_code as u8]);
            w.put(123, &[h.xyzt_units as u8]);
            w.f32(124, h.cal_max);
            w.f32(128, h.cal_min);
            w.f32(132, h.slice_duration);
            w.f32(136, h.toffset);
            w.i32(140, h.glmax as i64);
            w.i32(144, h.glmin as i64);
            w.put(148, &h.descrip);
            w.put(228, &h.aux_file);
            w.i16(252, h.qform_code as i64);
            w.i16(254, h.sform_code as i64);
            w.f32(256, h.quatern_b);
            w.f32(260, h.quatern_c);
            w.f32(264, h.quatern_d);
            w.f32(268, h.qoffset_x);
            w.f32(272, h.qoffset_y);
            w.f32(276, h.qoffset_z);
            for i in 0..4 {
                w.f32(280 + 4 * i, h.srow_x[i]);
                w.f32(296 + 4 * i, h.srow_y[i]);
                w.f32(312 + 4 * i, h.srow_z[i]);
            }
            w.put(328, &h.intent_name);
            w.put(344, b"n+1\0");
            w.bytes
        }
        NiftiVersion::Nifti2 => {
            let mut w = FieldWriter {
                bytes: vec![0u8; NIFTI2_MIN_VOX_OFFSET as usize],
            };
            w.i32(0, NIFTI2_HEADER_SIZE as i64);
            w.put(4, &NIFTI2_SINGLE_MAGIC);
            w.i16(12, h.datatype as i64);
            w.i16(14, h.bitpix as i64);
            for (i, &d) in h.dim.iter().enumerate() {
                w.i64(16 + 8 * i, d);
            }
            w.f64(80, h.intent_p1);
            w.f64(88, h.intent_p2);
            w.f64(96, h.intent_p3);
            for (i, &p) in h.pixdim.iter().enumerate() {
                w.f64(104 + 8 * i, p);
            }
            w.i64(168, h.vox_offset as i64);
            w.f64(176, h.scl_slope);
            w.f64(184, h.scl_inter);
            w.f64(192, h.cal_max);
            w.f64(200, h.cal_min);
            w.f64(208, h.slice_duration);
            w.f64(216, h.toffset);
            w.i64(224, h.slice_start);
            w.i64(232, h.slice_end);
            w.put(240, &h.descrip);
            w.put(320, &h.aux_file);
            w.i32(344, h.qform_code as i64);
            w.i32(348, h.sform_code as i64);
            w.f64(352, h.quatern_b);
            w.f64(360, h.quatern_c);
            w.f64(368, h.quatern_d);
            w.f64(376, h.qoffset_x);
            w.f64(384, h.qoffset_y);
            w.f64(392, h.qoffset_z);
            for i in 0..4 {
                w.f64(400 + 8 * i, h.srow_x[i]);
                w.f64(432 + 8 * i, h.srow_y[i]);
                w.f64(464 + 8 * i, h.srow_z[i]);
            }
            w.i32(496, h.slice_code as i64);
            w.i32(500, h.xyzt_units as i64);
            w.i32(504, h.intent_code as i64);
            w.put(508, &h.intent_name);
            w.put(524, &[h.dim_info]);
            w.bytes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ras_affine(spacing: [f64; 3]) -> [[f64; 4]; 4] {
        [
            [spacing[0], 0.0, 0.0, -10.0],
            [0.0, spacing[1], 0.0, -20.0],
            [0.0, 0.0, spacing[2], -30.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    fn sample_volume(dims: [usize; 3]) -> Volume {
        let n = dims[0] * dims[1] * dims[2];
        let data = (0..n).map(|i| (i % 7) as f32).collect();
        Volume::from_array(dims, [1.0, 1.5, 2.0], ras_affine([1.0, 1.5, 2.0]), data)
            .expect("valid test volume")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).expect("in-memory write");
        enc.finish().expect("in-memory gzip")
    }

    /// An uncompressed NIfTI-1 file with the given header tweaks applied.
    fn nifti1_bytes(dims: [usize; 3], tweak: impl Fn(&mut NiftiHeader)) -> Vec<u8> {
        let reference = sample_volume(dims);
        let mut header = reference.header.clone();
        header.datatype = 2;
        header.bitpix = 8;
        tweak(&mut header);
        let mut bytes = encode_header(&header);
        bytes.extend(reference.data.iter().map(|&v| v as u8));
        bytes
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn a_float32_volume_round_trips() {
        let reference = sample_volume([5, 4, 3]);
        let v = Volume { data: (0..60).map(|i| i as f32 * 0.5 - 3.0).collect(), ..reference.clone_without_data() };
        let back = read_nifti(&write_float32_nifti(&v).expect("write")).expect("read back");
        assert_eq!((&back.data, back.dims, back.affine, back.datatype_name()), (&v.data, v.dims, v.affine, "float32"));
    }

    #[test]
    fn label_round_trip_nifti1() {
        let reference = sample_volume([5, 4, 3]);
        let labels: Vec<u8> = (0..reference.voxel_count())
            .map(|i| (i % 3) as u8)
            .collect();
        let written = write_label_nifti_gz(&reference, &labels).expect("write");
        assert_eq!(&written[..2], &[0x1f, 0x8b]);
        let back = read_nifti(&written).expect("read back");
        assert_eq!(back.dims, reference.dims);
        assert_eq!(back.affine, reference.affine);
        assert_eq!(back.spacing, reference.spacing);
        assert_eq!(back.datatype_name(), "uint8");
        assert_eq!(back.header.version, NiftiVersion::Nifti1);
        assert_eq!(back.header.cal_max, 2.0);
        let as_labels: Vec<u8> = back.data.iter().map(|&v| v as u8).collect();
        assert_eq!(as_labels, labels);
    }

    #[test]
    fn label_round_trip_nifti2_keeps_qform_and_version() {
        let mut reference = sample_volume([3, 3, 2]);
        reference.header.version = NiftiVersion::Nifti2;
        reference.header.sform_code = 0;
        reference.header.qform_code = 1;
        reference.header.quatern_b = 0.0;
        reference.header.quatern_c = 0.0;
        reference.header.quatern_d = 1.0; // 180° about z
        reference.header.pixdim[0] = -1.0;
        reference.affine = reference.header.best_affine().expect("valid qform");
        let labels = vec![1u8; reference.voxel_count()];
        let back = read_nifti(&write_label_nifti_gz(&reference, &labels).expect("write"))
            .expect("read back");
        assert_eq!(back.header.version, NiftiVersion::Nifti2);
        assert_eq!(back.header.qform_code, 1);
        assert_eq!(back.header.sform_code, 0);
        assert_eq!(back.affine, reference.affine);
        assert_eq!(back.orientation(), "LPI");
    }

    #[test]
    fn long_axis_that_does_not_fit_nifti1_is_written_as_nifti2() {
        let dims = [40_000, 1, 2];
        let reference = Volume::from_array(dims, [1.0; 3], ras_affine([1.0; 3]), vec![0.0; 80_000])
            .expect("valid grid");
        let labels = vec![3u8; 80_000];
        let back = read_nifti(&write_label_nifti_gz(&reference, &labels).expect("write"))
            .expect("read back");
        assert_eq!(back.header.version, NiftiVersion::Nifti2);
        assert_eq!(back.dims, dims);
    }

    #[test]
    fn zero_vox_offset_means_data_follows_header() {
        let bytes = nifti1_bytes([2, 2, 2], |h| h.vox_offset = 0.0);
        assert_eq!(read_nifti(&bytes).expect("offset 0").stats().max, Some(6.0));
    }

    #[test]
    fn write_rejects_wrong_label_count() {
        let reference = sample_volume([2, 2, 2]);
        let err = write_label_nifti_gz(&reference, &[0u8; 7]).unwrap_err();
        assert!(matches!(
            err,
            VolumeError::LengthMismatch {
                expected: 8,
                actual: 7,
                ..
            }
        ));
    }

    #[test]
    fn reads_big_endian_int16_with_scaling() {
        let reference = sample_volume([2, 2, 2]);
        let mut header = reference.header.clone();
        header.datatype = 4;
        header.bitpix = 16;
        header.scl_slope = 2.5;
        header.scl_inter = -10.0;
        // Re-encode as big-endian by swapping every field of the LE encoding.
        let le = encode_header(&header);
        let parsed_le = parse_header(&le).expect("le header");
        let be = encode_big_endian_nifti1(&parsed_le);
        let mut bytes = be;
        for v in [-3i16, 0, 1, 2, 300, -300, 7, 8] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        let volume = read_nifti(&bytes).expect("big-endian file");
        assert_eq!(volume.header.endianness, Endianness::Big);
        assert_eq!(
            volume.data,
            vec![-17.5, -10.0, -7.5, -5.0, 740.0, -760.0, 7.5, 10.0]
        );
        assert_eq!(volume.affine, reference.affine);
    }

    /// Test-only big-endian encoder: swaps each multi-byte field of a LE header.
    fn encode_big_endian_nifti1(h: &NiftiHeader) -> Vec<u8> {
        let mut bytes = encode_header(h);
        let swap = |bytes: &mut Vec<u8>, start: usize, width: usize, count: usize| {
            for k in 0..count {
                bytes[start + k * width..start + (k + 1) * width].reverse();
            }
        };
        swap(&mut bytes, 0, 4, 1);
        swap(&mut bytes, 40, 2, 8);
        swap(&mut bytes, 56, 4, 3);
        swap(&mut bytes, 68, 2, 4);
        swap(&mut bytes, 76, 4, 11);
        swap(&mut bytes, 120, 2, 1);
        swap(&mut bytes, 124, 4, 6);
        swap(&mut bytes, 252, 2, 2);
        swap(&mut bytes, 256, 4, 18);
        bytes
    }

    #[test]
    fn uncompressed_and_gzipped_give_same_volume() {
        let plain = nifti1_bytes([4, 3, 2], |_| {});
        let a = read_nifti(&plain).expect("plain");
        let b = read_nifti(&gzip(&plain)).expect("gzipped");
        assert_eq!(a, b);
        assert_eq!(a.stats().max, Some(6.0));
    }

    #[test]
    fn four_d_with_single_volume_is_accepted() {
        let bytes = nifti1_bytes([4, 3, 2], |h| {
            h.dim[0] = 4;
            h.dim[4] = 1;
        });
        assert_eq!(read_nifti(&bytes).expect("4D, one volume").dims, [4, 3, 2]);
    }

    #[test]
    fn rejects_truncated_file() {
        let mut bytes = nifti1_bytes([4, 3, 2], |_| {});
        bytes.truncate(bytes.len() - 1);
        assert!(matches!(
            read_nifti(&bytes),
            Err(VolumeError::Truncated {
                expected: 376,
                actual: 375,
                ..
            })
        ));
        // Truncated inside the header.
        assert!(matches!(
            read_nifti(&bytes[..200]),
            Err(VolumeError::NotNifti(_))
        ));
        // Truncated voxel data inside an intact gzip stream.
        assert!(matches!(
            read_nifti(&gzip(&bytes)),
            Err(VolumeError::Truncated {
                source_kind: "decompressed stream",
                ..
            })
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(read_nifti(b""), Err(VolumeError::NotNifti(_))));
        assert!(matches!(
            read_nifti(&[0u8; 1000]),
            Err(VolumeError::NotNifti(_))
        ));
        let text = "hello, this is not an image ".repeat(40);
        assert!(matches!(
            read_nifti(text.as_bytes()),
            Err(VolumeError::NotNifti(_))
        ));
        let bad_magic = nifti1_bytes([2, 2, 2], |_| {});
        let mut bad_magic = bad_magic.clone();
        bad_magic[344..348].copy_from_slice(b"xyz\0");
        let err = read_nifti(&bad_magic).unwrap_err();
        assert!(matches!(err, VolumeError::NotNifti(_)));
        assert!(err.to_string().contains("magic"), "{err}");
    }

    #[test]
    fn rejects_pair_header() {
        let mut bytes = nifti1_bytes([2, 2, 2], |_| {});
        bytes[344..348].copy_from_slice(b"ni1\0");
        assert!(matches!(
            read_nifti(&bytes),
            Err(VolumeError::PairFileUnsupported { magic: "ni1" })
        ));
    }

    /// A 2×2×2×3 int16 series whose volume t holds `100·t + voxel`, big- or
    /// little-endian.
    fn series_bytes(big_endian: bool) -> Vec<u8> {
        let mut header = sample_volume([2, 2, 2]).header.clone();
        header.datatype = 4;
        header.bitpix = 16;
        header.dim[0] = 4;
        header.dim[4] = 3;
        header.pixdim[4] = 2.5;
        header.xyzt_units = 2 | 8; // mm, sec
        let le = encode_header(&header);
        let mut bytes = if big_endian { encode_big_endian_nifti1(&parse_header(&le).expect("header")) } else { le };
        for v in (0..3i16).flat_map(|t| (0..8).map(move |i| 100 * t + i)) {
            bytes.extend_from_slice(&if big_endian { v.to_be_bytes() } else { v.to_le_bytes() });
        }
        bytes
    }

    #[test]
    fn statistics_leave_nan_voxels_out() {
        let s = crate::volume::intensity_stats(&[1.0, f32::NAN, 3.0]);
        assert_eq!((s.min, s.max, s.mean, s.nan_voxels), (Some(1.0), Some(3.0), Some(2.0), 1));
        let all = crate::volume::intensity_stats(&[f32::NAN; 4]);
        assert_eq!((all.min, all.max, all.mean, all.nan_voxels), (None, None, None, 4));
        let inf = crate::volume::intensity_stats(&[1.0, f32::INFINITY]);
        assert_eq!((inf.min, inf.max, inf.mean), (Some(1.0), None, None));
    }

    #[test]
    fn reads_each_volume_of_a_4d_series() {
        for big_endian in [false, true] {
            let plain = series_bytes(big_endian);
            for bytes in [plain.clone(), gzip(&plain)] {
                for t in 0..3 {
                    let v = read_nifti_volume(&bytes, t).expect("a volume of the series");
                    let want: Vec<f32> = (0..8).map(|i| (100 * t + i) as f32).collect();
                    assert_eq!(v.data, want, "volume {t}, big-endian {big_endian}");
                    assert_eq!(v.dims, [2, 2, 2]);
                    assert_eq!(v.header.shape(), vec![2, 2, 2, 3]);
                    assert_eq!(v.header.volume_count(), 3);
                    assert_eq!(v.header.time_step(), Some(2.5));
                    assert_eq!(v.header.time_unit(), "sec");
                }
                assert_eq!(read_nifti(&bytes).expect("the first volume").data[7], 7.0);
                let err = read_nifti_volume(&bytes, 3).unwrap_err();
                assert!(matches!(err, VolumeError::NoSuchVolume { index: 3, volumes: 3 }), "{err}");
                assert_eq!(err.to_string(), "there is no volume 3 in this file: it holds 3 (numbered from 0)");
            }
        }
    }

    #[test]
    fn an_extracted_volume_is_a_3d_file_with_the_same_voxels() {
        for big_endian in [false, true] {
            let series = series_bytes(big_endian);
            let one = extract_volume(&gzip(&series), 2).expect("extract");
            let v = read_nifti(&one).expect("the extracted file reads");
            let from_series = read_nifti_volume(&series, 2).expect("volume 2");
            assert_eq!(v.data, from_series.data);
            assert_eq!(v.affine, from_series.affine);
            assert_eq!(v.header.shape(), vec![2, 2, 2]);
            assert_eq!(v.header.volume_count(), 1);
            assert_eq!(v.datatype_name(), "int16");
            assert_eq!(v.header.endianness, Endianness::Little);
        }
    }

    #[test]
    fn a_series_truncated_after_the_chosen_volume_still_reads_it() {
        let mut bytes = series_bytes(false);
        bytes.truncate(bytes.len() - 16); // the last volume is cut
        assert_eq!(read_nifti_volume(&bytes, 1).expect("volume 1 is whole").data[0], 100.0);
        assert!(matches!(read_nifti_volume(&bytes, 2), Err(VolumeError::Truncated { .. })));
    }

    #[test]
    fn rejects_absurd_dims_before_allocating() {
        let zero = nifti1_bytes([2, 2, 2], |h| h.dim[2] = 0);
        assert!(matches!(
            read_nifti(&zero),
            Err(VolumeError::InvalidDimensions(_))
        ));
        let negative = nifti1_bytes([2, 2, 2], |h| h.dim[3] = -5);
        assert!(matches!(
            read_nifti(&negative),
            Err(VolumeError::InvalidDimensions(_))
        ));
        let bad_ndim = nifti1_bytes([2, 2, 2], |h| h.dim[0] = 9);
        assert!(matches!(
            read_nifti(&bad_ndim),
            Err(VolumeError::InvalidDimensions(_))
        ));
        // 32767³ voxels: only the header exists, so a reader that allocated
        // first would abort; ours must refuse from the header alone.
        let huge = nifti1_bytes([2, 2, 2], |h| {
            h.dim[1] = 32767;
            h.dim[2] = 32767;
            h.dim[3] = 32767;
        });
        assert!(matches!(
            read_nifti(&huge),
            Err(VolumeError::TooManyVoxels { .. })
        ));
        assert!(matches!(
            read_nifti(&gzip(&huge)),
            Err(VolumeError::TooManyVoxels { .. })
        ));
        // NIfTI-2 dims whose product overflows u64.
        let mut v2 = sample_volume([2, 2, 2]);
        v2.header.version = NiftiVersion::Nifti2;
        v2.header.dim[1] = i64::MAX;
        v2.header.dim[2] = i64::MAX;
        v2.header.dim[3] = i64::MAX;
        let bytes = encode_header(&v2.header);
        assert!(matches!(
            read_nifti(&bytes),
            Err(VolumeError::TooManyVoxels { .. })
        ));
    }

    #[test]
    fn rejects_unsupported_datatypes_by_name() {
        for (code, name) in [
            (32i16, "complex64"),
            (128, "RGB24"),
            (1, "binary (1 bit per voxel)"),
        ] {
            let bytes = nifti1_bytes([2, 2, 2], |h| h.datatype = code);
            let err = read_nifti(&bytes).unwrap_err();
            assert!(
                matches!(err, VolumeError::UnsupportedDatatype { code: c, name: n } if c == code && n == name),
                "{err}"
            );
            assert!(err.to_string().contains(name));
        }
    }

    #[test]
    fn rejects_bad_gzip() {
        let good = gzip(&nifti1_bytes([4, 3, 2], |_| {}));
        // Corrupt the deflate payload.
        let mut corrupt = good.clone();
        for b in corrupt.iter_mut().skip(12).take(20) {
            *b ^= 0xA5;
        }
        let err = read_nifti(&corrupt).unwrap_err();
        assert!(
            matches!(err, VolumeError::CorruptGzip(_) | VolumeError::NotNifti(_)),
            "{err}"
        );
        // Stream cut short.
        let cut = &good[..good.len() / 2];
        assert!(matches!(read_nifti(cut), Err(VolumeError::CorruptGzip(_))));
        // Only the magic bytes.
        assert!(matches!(
            read_nifti(&[0x1f, 0x8b]),
            Err(VolumeError::CorruptGzip(_))
        ));
        // Bad CRC in the trailer.
        let mut bad_crc = good.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 0xFF;
        assert!(matches!(
            read_nifti(&bad_crc),
            Err(VolumeError::CorruptGzip(_))
        ));
    }

    #[test]
    fn gzip_bomb_is_not_fully_decompressed() {
        // A valid 2×2×2 image followed by 64 MiB of zeros inside the stream.
        let mut bytes = nifti1_bytes([2, 2, 2], |_| {});
        bytes.resize(bytes.len() + 64 * 1024 * 1024, 0);
        let volume = read_nifti(&gzip(&bytes)).expect("reads the image, ignores the tail");
        assert_eq!(volume.voxel_count(), 8);
    }

    #[test]
    fn rejects_bad_vox_offset() {
        let inside_header = nifti1_bytes([2, 2, 2], |h| h.vox_offset = 100.0);
        assert!(matches!(
            read_nifti(&inside_header),
            Err(VolumeError::InvalidVoxOffset(_))
        ));
        let nan = nifti1_bytes([2, 2, 2], |h| h.vox_offset = f64::NAN);
        assert!(matches!(
            read_nifti(&nan),
            Err(VolumeError::InvalidVoxOffset(_))
        ));
        let past_end = nifti1_bytes([2, 2, 2], |h| h.vox_offset = 4096.0);
        assert!(matches!(
            read_nifti(&past_end),
            Err(VolumeError::Truncated { .. })
        ));
    }

    #[test]
    fn scaling_rules_follow_nibabel() {
        let unscaled = nifti1_bytes([2, 2, 2], |h| h.scl_slope = 0.0);
        assert_eq!(read_nifti(&unscaled).expect("slope 0").stats().max, Some(6.0));
        let nan_slope = nifti1_bytes([2, 2, 2], |h| {
            h.scl_slope = f64::NAN;
            h.scl_inter = 5.0;
        });
        assert_eq!(read_nifti(&nan_slope).expect("nan slope").stats().max, Some(6.0));
        let inf_inter = nifti1_bytes([2, 2, 2], |h| {
            h.scl_slope = 2.0;
            h.scl_inter = f64::INFINITY;
        });
        assert_eq!(read_nifti(&inf_inter).expect("inf inter").stats().max, Some(12.0));
    }

    #[test]
    fn base_affine_when_no_xform() {
        let bytes = nifti1_bytes([4, 3, 2], |h| {
            h.sform_code = 0;
            h.qform_code = 0;
            h.pixdim[1] = -2.0; // nibabel takes the absolute value
            h.pixdim[3] = 0.0; // ... and reads 0 as 1
        });
        let v = read_nifti(&bytes).expect("no xform");
        assert_eq!(
            v.affine,
            [
                [-2.0, 0.0, 0.0, 3.0],
                [0.0, 1.5, 0.0, -1.5],
                [0.0, 0.0, 1.0, -0.5],
                [0.0, 0.0, 0.0, 1.0]
            ]
        );
        assert_eq!(v.spacing, [2.0, 1.5, 1.0]);
        assert_eq!(v.orientation(), "LAS");
    }

    #[test]
    fn voxel_volume_respects_units() {
        let mut v = sample_volume([2, 2, 2]);
        assert_eq!(v.voxel_volume_mm3(), 3.0);
        v.header.xyzt_units = 1; // metres
        assert_eq!(v.voxel_volume_mm3(), 3.0e9);
        v.header.xyzt_units = 3 | 8; // microns, with a time unit set too
        assert!((v.voxel_volume_mm3() - 3.0e-9).abs() < 1e-20);
    }

    #[test]
    fn header_survives_reencoding() {
        let bytes = nifti1_bytes([3, 2, 2], |h| {
            h.descrip[0] = b'x';
            h.qform_code = 1;
            h.quatern_c = 0.5;
        });
        let header = parse_header(&bytes).expect("parse");
        assert_eq!(
            parse_header(&encode_header(&header)).expect("reparse"),
            header
        );
        let _ = gunzip(&gzip(&bytes));
    }
}
