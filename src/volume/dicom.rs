//! DICOM series in: a folder of single-frame slices (as a PACS exports a
//! series) becomes one [`Volume`], in the voxel order and with the affine
//! that dcm2niix writes and nibabel reads.
//!
//! Parsing and decoding are dicom-rs's (`dicom-object`: implicit and
//! explicit VR, little and big endian, deflate; the transfer-syntax
//! registry's pure-Rust codecs: RLE Lossless, JPEG baseline, extended and
//! lossless). What is written here is what no library does for us: grouping
//! files into series, checking that the slices make one regular grid, and
//! the geometry.
//!
//! **Geometry, as dcm2niix builds it** (checked against dcm2niix in
//! `tests/dicom_series.rs`): slices are sorted by their position along the
//! normal of ImageOrientationPatient (row × column direction), ascending,
//! whatever their instance numbers; the spacing between slices comes from
//! ImagePositionPatient (first to last), not from SliceThickness. DICOM's
//! pixel (row r, column c) of sorted slice s becomes voxel
//! (c, rows − 1 − r, s): dcm2niix flips the rows, so the affine's second
//! column points against the column direction and its origin is the first
//! slice's last row. Positions are LPS in DICOM and RAS in NIfTI (x and y
//! negated). RescaleSlope and RescaleIntercept are applied per slice.
//!
//! **Refused with a message that says why:** several images at one position
//! (4D or multi-echo), multi-frame images, slices with different
//! orientations or sizes, a sheared stack (gantry tilt), missing slices and
//! irregular spacing, colour images, JPEG-LS and JPEG 2000 (named: their
//! decoders are C libraries, which a browser's wasm cannot link), and a
//! folder with no image at all. Patient identifiers are never read into a
//! message.
//!
//! A series read here can also be *referenced* ([`reference_series`]): its
//! study, frame of reference and slices' instance UIDs in volume order, which
//! a derived object (`dicom_seg`) points back to.

use std::collections::BTreeMap;

use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_dictionary_std::tags;
use dicom_object::file::{OpenFileOptions, ReadPreamble};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, Tag};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::{checked_voxel_count, dicom_guard, Volume, VolumeError};

/// One series found among the files, as the user picks it (no patient data).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesSummary {
    /// Matched against, not shown: the page needs only the rest.
    #[serde(skip_serializing)]
    pub uid: String,
    pub number: Option<i64>,
    pub description: String,
    pub modality: String,
    /// Image files of the series (slices, before any check).
    pub slices: usize,
    pub rows: usize,
    pub columns: usize,
}

impl SeriesSummary {
    /// One line for a list: number, description, modality, slices and size.
    pub fn line(&self) -> String {
        let number = self.number.map_or(String::new(), |n| format!("series {n}, "));
        let description = if self.description.is_empty() { "no description".to_string() } else { format!("\"{}\"", self.description) };
        format!("{number}{description}, {}, {} slices of {}×{}", self.modality, self.slices, self.columns, self.rows)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("no image among the {files} files given: none is a DICOM file with pixel data")]
    NoImage { files: usize },
    #[error("{0}")]
    Unreadable(String),
    #[error(
        "{count} series among these files; choose one (by its number in this list, from 1): {}",
        list.iter().enumerate().map(|(i, s)| format!("{}: {}", i + 1, s.line())).collect::<Vec<_>>().join("; ")
    )]
    SeveralSeries { count: usize, list: Vec<SeriesSummary> },
    #[error("there is no series {choice} here: {count} series were found (numbered from 1)")]
    NoSuchSeries { choice: String, count: usize },
    #[error("{file}: a multi-frame image ({frames} frames); bedside reads series of single-frame slices")]
    MultiFrame { file: String, frames: i64 },
    #[error("{file}: {what}; bedside reads greyscale images of 8, 16 or 32 bits")]
    UnsupportedPixels { file: String, what: String },
    #[error(
        "{file}: transfer syntax {name} ({uid}) is not supported; bedside reads uncompressed DICOM \
         (implicit or explicit VR, little or big endian), deflated, RLE Lossless, JPEG baseline and \
         extended (8 bits), and JPEG lossless"
    )]
    UnsupportedTransferSyntax { file: String, uid: String, name: String },
    #[error("{file}: {tag} is missing or unreadable")]
    MissingTag { file: String, tag: &'static str },
    #[error("{file}: PixelSpacing is {rows}\\{columns}; the distance between pixels must be positive")]
    BadPixelSpacing { file: String, rows: f64, columns: f64 },
    #[error("the slices have different orientations (ImageOrientationPatient differs between {a} and {b}); bedside needs one stack")]
    MixedOrientation { a: String, b: String },
    #[error("the slices have different sizes ({a} and {b}); bedside needs one stack")]
    MixedSize { a: String, b: String },
    #[error("{count} images share one position ({file} and another): a 4D or multi-echo series, which bedside does not read as one volume")]
    SamePosition { count: usize, file: String },
    #[error("slices are missing: a gap of {gap:.3} mm after {file} where the slices are {spacing:.3} mm apart")]
    MissingSlices { gap: f64, spacing: f64, file: String },
    #[error("the slice spacing is irregular: {min:.3} to {max:.3} mm between neighbouring slices")]
    IrregularSpacing { min: f64, max: f64 },
    #[error(
        "the slices are sheared: each one is shifted by {shift:.3} mm within its plane (gantry tilt); \
         bedside reads stacks whose slices lie along their normal"
    )]
    GantryTilt { shift: f64 },
    #[error("{file}: the {syntax} pixel data cannot be decoded: {reason}")]
    Undecodable { file: String, syntax: String, reason: String },
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// Whether `bytes` look like a DICOM Part-10 file (the "DICM" magic after
/// the 128-byte preamble).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// What one image slice says of its place in the stack (no pixels yet).
struct SliceHeader {
    file: String,
    orientation: [f64; 6],
    position: [f64; 3],
    /// PixelSpacing: between rows, between columns (mm).
    spacing: [f64; 2],
    rows: usize,
    columns: usize,
    sop_class: String,
    sop_instance: String,
    /// SliceThickness: the spacing of a single slice, as dcm2niix takes it.
    thickness: Option<f64>,
}

/// What a derived object (a DICOM SEG) needs of the series it was made
/// from: the elements it shares (patient, study, frame of reference: copied
/// as they are, never shown) and each slice's instance in volume order.
#[derive(Debug, Clone)]
pub struct SeriesReference {
    /// Patient, study and frame-of-reference elements of the first slice.
    pub shared: Vec<dicom_object::mem::InMemElement>,
    pub series_uid: String,
    pub series_number: Option<i64>,
    pub orientation: [f64; 6],
    /// PixelSpacing: between rows, between columns (mm).
    pub pixel_spacing: [f64; 2],
    /// Distance between neighbouring slices (mm).
    pub slice_gap: f64,
    pub rows: usize,
    pub columns: usize,
    /// Slice k of the volume: its SOP class and instance UIDs and its
    /// ImagePositionPatient.
    pub slices: Vec<SliceReference>,
    /// The volume's affine (as [`read_series`] gives it), to check that a
    /// mask was made on this grid.
    pub affine: [[f64; 4]; 4],
}

#[derive(Debug, Clone, PartialEq)]
pub struct SliceReference {
    pub sop_class: String,
    pub sop_instance: String,
    pub position: [f64; 3],
}

/// The elements a derived object copies from its source: Patient, General
/// Study and Frame of Reference modules (and the character set they are in).
const SHARED: [Tag; 17] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::ISSUER_OF_PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::PATIENT_AGE,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
    tags::FRAME_OF_REFERENCE_UID,
    tags::POSITION_REFERENCE_INDICATOR,
    tags::BODY_PART_EXAMINED,
];

/// Every DICOM file among `files` (name, bytes) that holds pixel data, parsed.
/// Files that are not DICOM (a DICOMDIR, a README) are skipped.
fn images(files: &[(String, Vec<u8>)]) -> impl Iterator<Item = Result<(&str, DefaultDicomObject), DicomError>> {
    files
        .iter()
        .filter(|(_, b)| is_dicom(b))
        .map(|(name, bytes)| open(name, bytes).map(|obj| (name.as_str(), obj)))
        .filter(|parsed| parsed.as_ref().map_or(true, |(_, obj)| obj.element(tags::PIXEL_DATA).is_ok()))
}

/// The images of `series` among `files`, each with its checked header: what
/// [`read_series`] and [`reference_series`] both walk.
fn slices_of<'a>(
    files: &'a [(String, Vec<u8>)],
    series: &'a SeriesSummary,
) -> impl Iterator<Item = Result<(SliceHeader, DefaultDicomObject), DicomError>> + 'a {
    images(files).filter_map(move |image| match image {
        Err(e) => Some(Err(e)),
        Ok((name, obj)) => (text(&obj, tags::SERIES_INSTANCE_UID) == series.uid).then(|| header(name, &obj).map(|h| (h, obj))),
    })
}

/// The series among `files`: their images grouped by SeriesInstanceUID,
/// ordered by series number.
pub fn list_series(files: &[(String, Vec<u8>)]) -> Result<Vec<SeriesSummary>, DicomError> {
    let mut by_uid: BTreeMap<String, SeriesSummary> = BTreeMap::new();
    for image in images(files) {
        let (_, obj) = image?;
        let uid = text(&obj, tags::SERIES_INSTANCE_UID);
        let entry = by_uid.entry(uid.clone()).or_insert_with(|| SeriesSummary {
            uid,
            number: integer(&obj, tags::SERIES_NUMBER),
            description: text(&obj, tags::SERIES_DESCRIPTION),
            modality: text(&obj, tags::MODALITY),
            slices: 0,
            rows: integer(&obj, tags::ROWS).unwrap_or(0) as usize,
            columns: integer(&obj, tags::COLUMNS).unwrap_or(0) as usize,
        });
        entry.slices += 1;
    }
    let mut list: Vec<SeriesSummary> = by_uid.into_values().collect();
    list.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.uid.cmp(&b.uid)));
    Ok(list)
}

/// Series `choice` of `list` (of `files` files): its number in the list
/// from 1, or its UID; none: the only one.
pub fn choose<'a>(list: &'a [SeriesSummary], choice: Option<&str>, files: usize) -> Result<&'a SeriesSummary, DicomError> {
    match (choice, list.len()) {
        (_, 0) => Err(DicomError::NoImage { files }),
        (None, 1) => Ok(&list[0]),
        (None, count) => Err(DicomError::SeveralSeries { count, list: list.to_vec() }),
        (Some(c), count) => match c.parse::<usize>() {
            Ok(n) if (1..=count).contains(&n) => Ok(&list[n - 1]),
            _ => list.iter().find(|s| s.uid == c).ok_or(DicomError::NoSuchSeries { choice: c.to_string(), count }),
        },
    }
}

/// Series `choice` ([`choose`]) of `files` as a volume, and its summary.
pub fn read_chosen(files: &[(String, Vec<u8>)], choice: Option<&str>) -> Result<(Volume, SeriesSummary), DicomError> {
    let list = list_series(files)?;
    let chosen = choose(&list, choice, files.len())?;
    Ok((read_series(files, chosen)?, chosen.clone()))
}

/// The images of `series` among `files` as one volume.
pub fn read_series(files: &[(String, Vec<u8>)], series: &SeriesSummary) -> Result<Volume, DicomError> {
    // Refuse absurd sizes before decoding a single slice.
    checked_voxel_count([series.columns.max(1), series.rows.max(1), series.slices])?;
    let mut headers = Vec::with_capacity(series.slices);
    let mut pixels = Vec::with_capacity(series.slices);
    for slice in slices_of(files, series) {
        let (h, obj) = slice?;
        pixels.push(samples(&h, &obj)?);
        headers.push(h);
    }
    let grid = arrange(&headers)?;
    let (columns, rows) = (grid.dims[0], grid.dims[1]);
    let mut data = vec![0.0f32; checked_voxel_count(grid.dims)?];
    for (k, &i) in grid.order.iter().enumerate() {
        let (values, _) = &pixels[i];
        for r in 0..rows {
            let j = rows - 1 - r;
            data[columns * (j + rows * k)..][..columns].copy_from_slice(&values[r * columns..][..columns]);
        }
    }
    let mut volume = Volume::from_array(grid.dims, grid.spacing, grid.affine, data)?;
    // The voxels are already rescaled; the header only says how they were stored.
    (volume.header.datatype, volume.header.bitpix) = pixels[grid.order[0]].1;
    Ok(volume)
}

/// What a derived object needs of `series` among `files`: the same checks
/// and slice order as [`read_series`], without decoding a pixel.
pub fn reference_series(files: &[(String, Vec<u8>)], series: &SeriesSummary) -> Result<SeriesReference, DicomError> {
    let mut headers = Vec::with_capacity(series.slices);
    let mut shared = Vec::new();
    for slice in slices_of(files, series) {
        let (h, obj) = slice?;
        if headers.is_empty() {
            shared = SHARED.iter().filter_map(|&t| obj.element(t).ok().cloned()).collect();
        }
        headers.push(h);
    }
    let grid = arrange(&headers)?;
    let first = &headers[grid.order[0]];
    Ok(SeriesReference {
        shared,
        series_uid: series.uid.clone(),
        series_number: series.number,
        orientation: first.orientation,
        pixel_spacing: first.spacing,
        slice_gap: grid.spacing[2],
        rows: first.rows,
        columns: first.columns,
        slices: grid
            .order
            .iter()
            .map(|&i| SliceReference {
                sop_class: headers[i].sop_class.clone(),
                sop_instance: headers[i].sop_instance.clone(),
                position: headers[i].position,
            })
            .collect(),
        affine: grid.affine,
    })
}

fn open(name: &str, bytes: &[u8]) -> Result<DefaultDicomObject, DicomError> {
    dicom_guard::check_lengths(name, bytes)?;
    OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .from_reader(bytes)
        .map_err(|e| DicomError::Unreadable(format!("{name}: not a readable DICOM file: {e}")))
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> String {
    obj.element(tag).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().trim_end_matches('\0').to_string()).unwrap_or_default()
}

fn integer(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    obj.element(tag).ok().and_then(|e| e.to_int::<i64>().ok())
}

fn floats(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element(tag).ok().and_then(|e| e.to_multi_float64().ok())
}

fn required<const N: usize>(obj: &DefaultDicomObject, file: &str, tag: Tag, name: &'static str) -> Result<[f64; N], DicomError> {
    floats(obj, tag)
        .and_then(|v| <[f64; N]>::try_from(v).ok())
        .filter(|v| v.iter().all(|x| x.is_finite()))
        .ok_or(DicomError::MissingTag { file: file.to_string(), tag: name })
}

/// The transfer syntaxes whose pixel data is stored as plain samples.
const NATIVE: [&str; 4] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"];

fn header(file: &str, obj: &DefaultDicomObject) -> Result<SliceHeader, DicomError> {
    let frames = integer(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
    if frames > 1 {
        return Err(DicomError::MultiFrame { file: file.to_string(), frames });
    }
    let samples = integer(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if samples != 1 {
        return Err(DicomError::UnsupportedPixels { file: file.to_string(), what: format!("{samples} samples per pixel (colour)") });
    }
    let missing = |tag| DicomError::MissingTag { file: file.to_string(), tag };
    let rows = integer(obj, tags::ROWS).filter(|&r| r > 0).ok_or(missing("Rows"))? as usize;
    let columns = integer(obj, tags::COLUMNS).filter(|&c| c > 0).ok_or(missing("Columns"))? as usize;
    let uid = |tag, name| Some(text(obj, tag)).filter(|u| !u.is_empty()).ok_or(missing(name));
    let spacing = required::<2>(obj, file, tags::PIXEL_SPACING, "PixelSpacing")?;
    if spacing.iter().any(|&s| s <= 0.0) {
        return Err(DicomError::BadPixelSpacing { file: file.to_string(), rows: spacing[0], columns: spacing[1] });
    }
    Ok(SliceHeader {
        file: file.to_string(),
        orientation: required::<6>(obj, file, tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient")?,
        position: required::<3>(obj, file, tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient")?,
        spacing,
        rows,
        columns,
        sop_class: uid(tags::SOP_CLASS_UID, "SOPClassUID")?,
        sop_instance: uid(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?,
        thickness: floats(obj, tags::SLICE_THICKNESS).and_then(|v| v.first().copied()).filter(|t| t.is_finite() && *t > 0.0),
    })
}

/// A slice's rescaled values (rows × columns, row by row) and the NIfTI
/// datatype its samples were stored as.
fn samples(h: &SliceHeader, obj: &DefaultDicomObject) -> Result<(Vec<f32>, (i16, i16)), DicomError> {
    let file = h.file.as_str();
    let unsupported = |what: String| DicomError::UnsupportedPixels { file: file.to_string(), what };
    let syntax = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let ts = TransferSyntaxRegistry.get(&syntax);
    let bits = integer(obj, tags::BITS_ALLOCATED).unwrap_or(0);
    let signed = integer(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    let raw: Vec<f64> = if NATIVE.contains(&syntax.as_str()) {
        let element = obj.element(tags::PIXEL_DATA).map_err(|_| DicomError::MissingTag { file: file.to_string(), tag: "PixelData" })?;
        let DicomValue::Primitive(pixels) = element.value() else {
            return Err(unsupported("encapsulated pixel data in a native transfer syntax".into()));
        };
        let big_endian = syntax == "1.2.840.10008.1.2.2";
        samples_of(pixels, bits, signed, big_endian).ok_or_else(|| unsupported(format!("{bits} bits allocated")))?
    } else if let Some(reader) = ts.and_then(|ts| ts.pixel_data_reader()) {
        // The registry's codecs write the samples little-endian, whatever the machine.
        let undecodable = |reason: String| DicomError::Undecodable { file: file.to_string(), syntax: ts.map_or("", |t| t.name()).to_string(), reason };
        if syntax == dicom_guard::RLE_LOSSLESS {
            dicom_guard::check_rle(obj).map_err(undecodable)?;
        } else if dicom_guard::JPEG.contains(&syntax.as_str()) {
            dicom_guard::check_jpeg(obj).map_err(undecodable)?;
        }
        let mut decoded = Vec::new();
        reader.decode_frame(obj, 0, &mut decoded).map_err(|e| undecodable(e.to_string()))?;
        samples_of(&PrimitiveValue::U8(decoded.into()), bits, signed, false).ok_or_else(|| unsupported(format!("{bits} bits allocated")))?
    } else {
        let name = ts.map_or("unknown to dicom-rs", |ts| ts.name()).to_string();
        return Err(DicomError::UnsupportedTransferSyntax { file: file.to_string(), uid: syntax, name });
    };
    let count = h.rows * h.columns;
    if raw.len() < count {
        return Err(DicomError::Unreadable(format!("{file}: the pixel data holds {} samples for {}×{} pixels", raw.len(), h.rows, h.columns)));
    }
    let slope = floats(obj, tags::RESCALE_SLOPE).and_then(|v| v.first().copied()).filter(|s| s.is_finite() && *s != 0.0).unwrap_or(1.0);
    let intercept = floats(obj, tags::RESCALE_INTERCEPT).and_then(|v| v.first().copied()).filter(|i| i.is_finite()).unwrap_or(0.0);
    let values = raw[..count].iter().map(|&v| (v * slope + intercept) as f32).collect();
    Ok((values, nifti_type(bits, signed)))
}

/// The NIfTI datatype code and bitpix of DICOM samples.
fn nifti_type(bits: i64, signed: bool) -> (i16, i16) {
    match (bits, signed) {
        (8, false) => (2, 8),
        (8, true) => (256, 8),
        (16, false) => (512, 16),
        (32, true) => (8, 32),
        (32, false) => (768, 32),
        _ => (4, 16),
    }
}

/// The samples of native pixel data as numbers. dicom-rs gives OW data
/// either as 16-bit words (already in this machine's order) or as the file's
/// bytes, depending on how it was read; both are handled.
fn samples_of(pixels: &PrimitiveValue, bits: i64, signed: bool, big_endian: bool) -> Option<Vec<f64>> {
    if let PrimitiveValue::U16(words) = pixels {
        return (bits == 16).then(|| words.iter().map(|&w| if signed { w as i16 as f64 } else { w as f64 }).collect());
    }
    let bytes = pixels.to_bytes();
    let word = |chunk: &[u8]| -> u32 {
        let mut v = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            let shift = if big_endian { 8 * (chunk.len() - 1 - i) } else { 8 * i };
            v |= (b as u32) << shift;
        }
        v
    };
    Some(match (bits, signed) {
        (8, false) => bytes.iter().map(|&b| b as f64).collect(),
        (8, true) => bytes.iter().map(|&b| b as i8 as f64).collect(),
        (16, false) => bytes.chunks_exact(2).map(|c| word(c) as f64).collect(),
        (16, true) => bytes.chunks_exact(2).map(|c| word(c) as u16 as i16 as f64).collect(),
        (32, false) => bytes.chunks_exact(4).map(|c| word(c) as f64).collect(),
        (32, true) => bytes.chunks_exact(4).map(|c| word(c) as i32 as f64).collect(),
        _ => return None,
    })
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// How far two orientations (direction cosines) may differ and still be one
/// stack, and how far a gap may stray from the slice spacing (relative).
const ORIENTATION_TOLERANCE: f64 = 1e-4;
const SPACING_TOLERANCE: f64 = 0.01;

/// Where each slice goes: the volume's grid, and the files' order along it.
struct Grid {
    /// Index into the headers of slice k of the volume.
    order: Vec<usize>,
    dims: [usize; 3],
    spacing: [f64; 3],
    affine: [[f64; 4]; 4],
}

/// Slices of one series → one grid, checked to be one regular stack.
fn arrange(slices: &[SliceHeader]) -> Result<Grid, DicomError> {
    let first = &slices[0];
    for s in &slices[1..] {
        if s.orientation.iter().zip(&first.orientation).any(|(a, b)| (a - b).abs() > ORIENTATION_TOLERANCE) {
            return Err(DicomError::MixedOrientation { a: first.file.clone(), b: s.file.clone() });
        }
        if (s.rows, s.columns) != (first.rows, first.columns) || (0..2).any(|a| (s.spacing[a] - first.spacing[a]).abs() > 1e-4 * first.spacing[a]) {
            return Err(DicomError::MixedSize { a: first.file.clone(), b: s.file.clone() });
        }
    }
    let o = first.orientation;
    let (row_dir, col_dir) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let normal = cross(row_dir, col_dir);
    let mut order: Vec<usize> = (0..slices.len()).collect();
    order.sort_by(|&a, &b| dot(slices[a].position, normal).total_cmp(&dot(slices[b].position, normal)));
    let sorted: Vec<&SliceHeader> = order.iter().map(|&i| &slices[i]).collect();
    let along: Vec<f64> = sorted.iter().map(|s| dot(s.position, normal)).collect();
    let gaps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    let (rows, columns, n) = (first.rows, first.columns, slices.len());
    let step = if n > 1 { (along[n - 1] - along[0]) / (n - 1) as f64 } else { 1.0 };
    if let Some(i) = gaps.iter().position(|&g| g.abs() < 1e-3 * step.abs().max(1e-3)) {
        let count = along.iter().filter(|&&a| (a - along[i]).abs() < 1e-3 * step.abs().max(1e-3)).count();
        return Err(DicomError::SamePosition { count, file: sorted[i].file.clone() });
    }
    if n > 2 {
        let mut by_size = gaps.clone();
        by_size.sort_by(f64::total_cmp);
        let spacing = by_size[by_size.len() / 2];
        for (i, &g) in gaps.iter().enumerate() {
            let ratio = g / spacing;
            if (ratio - 1.0).abs() <= SPACING_TOLERANCE {
                continue;
            }
            if ratio >= 1.5 && (ratio - ratio.round()).abs() <= SPACING_TOLERANCE * ratio.round() {
                return Err(DicomError::MissingSlices { gap: g, spacing, file: sorted[i].file.clone() });
            }
            return Err(DicomError::IrregularSpacing { min: by_size[0], max: by_size[by_size.len() - 1] });
        }
        // Every slice must lie on the line from the first along the normal:
        // an in-plane drift is a sheared (gantry-tilted) stack.
        let drift = |s: &&SliceHeader| {
            let d: [f64; 3] = std::array::from_fn(|a| s.position[a] - sorted[0].position[a]);
            let off = dot(d, normal);
            ((0..3).map(|a| (d[a] - off * normal[a]).powi(2)).sum::<f64>()).sqrt()
        };
        let worst = sorted.iter().map(drift).fold(0.0, f64::max);
        if worst > 0.01 * spacing {
            return Err(DicomError::GantryTilt { shift: worst / (n - 1) as f64 });
        }
    }
    // The step between slices as dcm2niix takes it: first to last position
    // (a single slice: its thickness along the normal).
    let z_step: [f64; 3] = if n > 1 {
        std::array::from_fn(|a| (sorted[n - 1].position[a] - sorted[0].position[a]) / (n - 1) as f64)
    } else {
        std::array::from_fn(|a| normal[a] * first.thickness.unwrap_or(1.0))
    };
    let [row_spacing, column_spacing] = first.spacing;
    let origin_lps: [f64; 3] = std::array::from_fn(|a| sorted[0].position[a] + (rows - 1) as f64 * row_spacing * col_dir[a]);
    let ras = [-1.0, -1.0, 1.0];
    let mut affine = [[0.0; 4]; 4];
    for a in 0..3 {
        affine[a][0] = ras[a] * column_spacing * row_dir[a];
        affine[a][1] = -ras[a] * row_spacing * col_dir[a];
        affine[a][2] = ras[a] * z_step[a];
        affine[a][3] = ras[a] * origin_lps[a];
    }
    affine[3][3] = 1.0;
    // The voxel size is PixelSpacing and the distance between slices, as
    // dcm2niix's pixdim; both, and the affine, pass through f32 as a NIfTI
    // header stores them, so that a series and dcm2niix's NIfTI of it give
    // the pipeline the same numbers (a spacing of 1.99999999 instead of 2
    // would resample where the NIfTI does not).
    let slice_gap = dot(z_step, z_step).sqrt();
    Ok(Grid {
        order,
        dims: [columns, rows, n],
        spacing: [column_spacing, row_spacing, slice_gap].map(|v| v as f32 as f64),
        affine: affine.map(|row| row.map(|v| v as f32 as f64)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_bits_sign_and_byte_order() {
        let be = PrimitiveValue::U8(vec![0xff, 0xfe, 0x01, 0x00].into());
        assert_eq!(samples_of(&be, 16, true, true), Some(vec![-2.0, 256.0]));
        assert_eq!(samples_of(&be, 16, false, true), Some(vec![65534.0, 256.0]));
        assert_eq!(samples_of(&be, 16, true, false), Some(vec![-257.0, 1.0]));
        assert_eq!(samples_of(&be, 8, true, false), Some(vec![-1.0, -2.0, 1.0, 0.0]));
        assert_eq!(samples_of(&be, 32, true, false), Some(vec![(0x0001_feff_u32 as i32) as f64]));
        let words = PrimitiveValue::U16(vec![0xfffe, 3].into());
        assert_eq!(samples_of(&words, 16, true, true), Some(vec![-2.0, 3.0]));
        assert_eq!(samples_of(&be, 12, false, false), None, "12 bits allocated is not a sample size");
    }

    #[test]
    fn a_file_without_the_dicm_magic_is_not_dicom() {
        let mut bytes = vec![0u8; 132];
        assert!(!is_dicom(&bytes));
        bytes[128..132].copy_from_slice(b"DICM");
        assert!(is_dicom(&bytes));
        assert!(!is_dicom(b"DICM"));
    }
}
