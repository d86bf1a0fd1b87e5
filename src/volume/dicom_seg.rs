//! DICOM SEG out: a label mask made on a DICOM series, written back as a
//! binary Segmentation object (Segmentation Storage, PS3.3 A.51) that
//! references the source series, as PACS viewers and highdicom read it.
//!
//! dicom-rs writes the file (`dicom-object`); no Rust library builds the
//! Segmentation IOD itself, so the modules are assembled here, one function
//! per module group. What the object holds:
//!
//! - the source's Patient, General Study and Frame of Reference elements,
//!   copied as they are (a SEG belongs to the same patient and study);
//! - one segment per label of the model (not background): its name, its
//!   coded category and type from model.json (SNOMED CT "Tissue" when the
//!   package gives none), its colour as CIELab, and the algorithm (model id
//!   and version) that made it;
//! - one frame per segment and source slice, in the source's geometry:
//!   each frame names the slice it was derived from (its SOP instance UID)
//!   and its ImagePositionPatient;
//! - the source series and every instance in the Common Instance Reference.
//!
//! UIDs are derived from what the object is made of (source series, model,
//! mask, time) under the 2.25 root (a UUID as an integer, PS3.5 B.2), so the
//! same inputs give the same file and nothing random is needed in a tab.

use chrono::{DateTime, Utc};
use dicom_core::value::{DataSetSequence, PrimitiveValue, C};
use dicom_core::header::Header;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{InMemDicomObject, Tag};
use sha2::{Digest, Sha256};

use super::dicom::SeriesReference;
use crate::model::{Label, LabelCode};

/// Who made the segmentation: the model package's id and version.
#[derive(Debug, Clone)]
pub struct Algorithm {
    /// The package id (model.json `id`), e.g. "hd-bet".
    pub name: String,
    /// The weights' identity: the first 16 hex digits of their sha256.
    pub version: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SegError {
    #[error(
        "the mask is {mask:?} voxels but the series is {series:?}: a DICOM SEG needs the mask made on this series' own grid"
    )]
    GridMismatch { mask: [usize; 3], series: [usize; 3] },
    #[error("the mask's affine differs from the series' (by {0:.4} mm): it was not made on this series")]
    AffineMismatch(f64),
    #[error("the model has no label to save besides the background")]
    NoSegments,
    #[error("cannot write the DICOM SEG: {0}")]
    Write(String),
}

/// The SEG (a DICOM Part-10 file) of `labels`, a label volume on the grid of
/// `reference` (x fastest, as [`super::dicom::read_series`] gives the
/// series), with one segment per label of `segments` other than 0.
pub fn write_seg(
    reference: &SeriesReference,
    labels: &[u8],
    dims: [usize; 3],
    affine: &[[f64; 4]; 4],
    segments: &[Label],
    algorithm: &Algorithm,
    created: DateTime<Utc>,
) -> Result<Vec<u8>, SegError> {
    let series_dims = [reference.columns, reference.rows, reference.slices.len()];
    if dims != series_dims || labels.len() != dims.iter().product::<usize>() {
        return Err(SegError::GridMismatch { mask: dims, series: series_dims });
    }
    let off = (0..3).flat_map(|r| (0..4).map(move |c| (r, c))).map(|(r, c)| (affine[r][c] - reference.affine[r][c]).abs()).fold(0.0, f64::max);
    if off > 1e-3 {
        return Err(SegError::AffineMismatch(off));
    }
    let segments: Vec<&Label> = segments.iter().filter(|l| l.value != 0).collect();
    if segments.is_empty() {
        return Err(SegError::NoSegments);
    }
    let uid = Uids::new(reference, labels, algorithm, created);
    let frames = segments.len() * reference.slices.len();

    let mut elements: Vec<InMemElement> = reference.shared.clone();
    elements.extend(sop_and_series(reference, &uid, created));
    elements.extend(equipment(algorithm));
    elements.extend([
        string(tags::IMAGE_TYPE, VR::CS, &["DERIVED", "PRIMARY"]),
        string(tags::CONTENT_LABEL, VR::CS, &["BEDSIDE_SEG"]),
        text(tags::CONTENT_DESCRIPTION, VR::LO, &format!("{} by bedside", algorithm.name)),
        text(tags::CONTENT_CREATOR_NAME, VR::PN, ""),
        text(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        text(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        sequence(tags::SEGMENT_SEQUENCE, segments.iter().enumerate().map(|(i, l)| segment(i + 1, l, algorithm)).collect()),
    ]);
    elements.extend(image_pixel(reference, &segments, labels));
    elements.extend(functional_groups(reference, segments.len(), frames, &uid));
    elements.push(sequence(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![item([
            text(tags::SERIES_INSTANCE_UID, VR::UI, &reference.series_uid),
            sequence(tags::REFERENCED_INSTANCE_SEQUENCE, reference.slices.iter().map(|s| instance(&s.sop_class, &s.sop_instance)).collect()),
        ])],
    ));
    // A source without these type-2 elements still gets them, empty.
    for (tag, vr) in TYPE_2 {
        if !elements.iter().any(|e| e.tag() == tag) {
            elements.push(DataElement::new(tag, vr, PrimitiveValue::Empty));
        }
    }

    let object = InMemDicomObject::from_element_iter(elements);
    let file = object
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .implementation_class_uid(IMPLEMENTATION_UID)
                .implementation_version_name(format!("BEDSIDE_{}", env!("CARGO_PKG_VERSION"))),
        )
        .map_err(|e| SegError::Write(e.to_string()))?;
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).map_err(|e| SegError::Write(e.to_string()))?;
    Ok(bytes)
}

/// bedside's implementation class UID (2.25 + a fixed UUID).
const IMPLEMENTATION_UID: &str = "2.25.160318873519342066233356219474880412946";

/// Type-2 elements of the Patient, General Study and Frame of Reference
/// modules: present, if empty, whatever the source lacked.
const TYPE_2: [(Tag, VR); 10] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::POSITION_REFERENCE_INDICATOR, VR::LO),
];

/// The object's own UIDs.
struct Uids {
    instance: String,
    series: String,
    dimensions: String,
}

impl Uids {
    fn new(reference: &SeriesReference, labels: &[u8], algorithm: &Algorithm, created: DateTime<Utc>) -> Uids {
        let mut seed = Sha256::new();
        seed.update(reference.series_uid.as_bytes());
        seed.update(algorithm.name.as_bytes());
        seed.update(algorithm.version.as_bytes());
        seed.update(created.timestamp_millis().to_le_bytes());
        seed.update(labels);
        let seed = seed.finalize();
        let derive = |what: &str| {
            let digest = Sha256::new().chain_update(seed).chain_update(what.as_bytes()).finalize();
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            // A version-4-shaped UUID (RFC 9562), as PS3.5 B.2 asks of 2.25 UIDs.
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            format!("2.25.{}", u128::from_be_bytes(bytes))
        };
        Uids { instance: derive("instance"), series: derive("series"), dimensions: derive("dimensions") }
    }
}

fn sop_and_series(reference: &SeriesReference, uid: &Uids, created: DateTime<Utc>) -> Vec<InMemElement> {
    let date = created.format("%Y%m%d").to_string();
    let time = created.format("%H%M%S").to_string();
    vec![
        text(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, &uid.instance),
        text(tags::INSTANCE_CREATION_DATE, VR::DA, &date),
        text(tags::INSTANCE_CREATION_TIME, VR::TM, &time),
        text(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000"),
        text(tags::MODALITY, VR::CS, "SEG"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &uid.series),
        // Beside the source's number, and clear of it.
        text(tags::SERIES_NUMBER, VR::IS, &(reference.series_number.unwrap_or(0).rem_euclid(1000) + 1000).to_string()),
        text(tags::SERIES_DESCRIPTION, VR::LO, "bedside segmentation"),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
        text(tags::CONTENT_DATE, VR::DA, &date),
        text(tags::CONTENT_TIME, VR::TM, &time),
    ]
}

fn equipment(algorithm: &Algorithm) -> Vec<InMemElement> {
    vec![
        text(tags::MANUFACTURER, VR::LO, "bedside"),
        text(tags::MANUFACTURER_MODEL_NAME, VR::LO, &lo(&algorithm.name)),
        // No device: the browser tab or CLI that ran it has no serial number.
        text(tags::DEVICE_SERIAL_NUMBER, VR::LO, "none"),
        text(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
    ]
}

/// One item of the Segment Sequence.
fn segment(number: usize, label: &Label, algorithm: &Algorithm) -> InMemDicomObject {
    let code = label.code.clone().unwrap_or_else(LabelCode::unspecified);
    item([
        u16s(tags::SEGMENT_NUMBER, &[number as u16]),
        text(tags::SEGMENT_LABEL, VR::LO, &lo(&label.name)),
        sequence(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, vec![coded(&code.category.value, &code.category.scheme, &code.category.meaning)]),
        sequence(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![coded(&code.kind.value, &code.kind.scheme, &code.kind.meaning)]),
        text(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
        text(tags::SEGMENT_ALGORITHM_NAME, VR::LO, &lo(&algorithm.name)),
        sequence(
            tags::SEGMENTATION_ALGORITHM_IDENTIFICATION_SEQUENCE,
            vec![item([
                sequence(tags::ALGORITHM_FAMILY_CODE_SEQUENCE, vec![coded("123110", "DCM", "Artificial Intelligence")]),
                text(tags::ALGORITHM_NAME, VR::LO, &lo(&algorithm.name)),
                text(tags::ALGORITHM_VERSION, VR::LO, &lo(&algorithm.version)),
            ])],
        ),
        u16s(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE, &cielab(label.color)),
    ])
}

/// The Image Pixel module: one bit per pixel, the frames of each segment
/// (source slice order) one after another, packed with no gap between
/// frames (PS3.5 8.1.1: the first pixel in the lowest bit).
fn image_pixel(reference: &SeriesReference, segments: &[&Label], labels: &[u8]) -> Vec<InMemElement> {
    let (rows, columns, slices) = (reference.rows, reference.columns, reference.slices.len());
    let bits = segments.len() * slices * rows * columns;
    let mut packed = vec![0u8; bits.div_ceil(8).next_multiple_of(2)];
    let mut bit = 0usize;
    for l in segments {
        for k in 0..slices {
            for r in 0..rows {
                // DICOM row r is the volume's row rows − 1 − r (see dicom.rs).
                let line = &labels[columns * ((rows - 1 - r) + rows * k)..][..columns];
                for &v in line {
                    if v == l.value {
                        packed[bit / 8] |= 1 << (bit % 8);
                    }
                    bit += 1;
                }
            }
        }
    }
    vec![
        u16s(tags::SAMPLES_PER_PIXEL, &[1]),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        u16s(tags::ROWS, &[rows as u16]),
        u16s(tags::COLUMNS, &[columns as u16]),
        u16s(tags::BITS_ALLOCATED, &[1]),
        u16s(tags::BITS_STORED, &[1]),
        u16s(tags::HIGH_BIT, &[0]),
        u16s(tags::PIXEL_REPRESENTATION, &[0]),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(packed)),
    ]
}

/// The Multi-frame Functional Groups and Multi-frame Dimension modules:
/// frames are indexed by segment number, then by position along the stack.
fn functional_groups(reference: &SeriesReference, segments: usize, frames: usize, uid: &Uids) -> Vec<InMemElement> {
    let o = reference.orientation;
    let shared = item([
        sequence(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item([
                decimals(tags::PIXEL_SPACING, &reference.pixel_spacing),
                decimals(tags::SLICE_THICKNESS, &[reference.slice_gap]),
                decimals(tags::SPACING_BETWEEN_SLICES, &[reference.slice_gap]),
            ])],
        ),
        sequence(tags::PLANE_ORIENTATION_SEQUENCE, vec![item([decimals(tags::IMAGE_ORIENTATION_PATIENT, &o)])]),
    ]);
    let mut per_frame = Vec::with_capacity(frames);
    for s in 1..=segments {
        for (k, slice) in reference.slices.iter().enumerate() {
            per_frame.push(item([
                sequence(
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![item([
                        sequence(tags::DERIVATION_CODE_SEQUENCE, vec![coded("113076", "DCM", "Segmentation")]),
                        sequence(
                            tags::SOURCE_IMAGE_SEQUENCE,
                            vec![{
                                let mut source = instance(&slice.sop_class, &slice.sop_instance);
                                // The frame is the slice's own grid: a viewer may index by source frame.
                                source.put(text(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"));
                                source.put(sequence(
                                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                                    vec![coded("121322", "DCM", "Source image for image processing operation")],
                                ));
                                source
                            }],
                        ),
                    ])],
                ),
                sequence(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![item([DataElement::new(tags::DIMENSION_INDEX_VALUES, VR::UL, PrimitiveValue::U32(C::from_vec(vec![s as u32, k as u32 + 1])))])],
                ),
                sequence(tags::PLANE_POSITION_SEQUENCE, vec![item([decimals(tags::IMAGE_POSITION_PATIENT, &slice.position)])]),
                sequence(tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![item([u16s(tags::REFERENCED_SEGMENT_NUMBER, &[s as u16])])]),
            ]));
        }
    }
    let index = |pointer: Tag, group: Tag, label: &str| {
        item([
            text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &uid.dimensions),
            DataElement::new(tags::DIMENSION_INDEX_POINTER, VR::AT, PrimitiveValue::Tags(C::from_vec(vec![pointer]))),
            DataElement::new(tags::FUNCTIONAL_GROUP_POINTER, VR::AT, PrimitiveValue::Tags(C::from_vec(vec![group]))),
            text(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    vec![
        text(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        sequence(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]),
        sequence(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
        sequence(tags::DIMENSION_ORGANIZATION_SEQUENCE, vec![item([text(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &uid.dimensions)])]),
        text(tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D"),
        sequence(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                index(tags::REFERENCED_SEGMENT_NUMBER, tags::SEGMENT_IDENTIFICATION_SEQUENCE, "Segment Number"),
                index(tags::IMAGE_POSITION_PATIENT, tags::PLANE_POSITION_SEQUENCE, "Image Position Patient"),
            ],
        ),
    ]
}

/// sRGB (0–255) → DICOM's scaled CIELab (PS3.3 C.10.7.1.1: L* 0–100 and
/// a*, b* −128–127 onto 0–65535), with the D65 white point. No kept crate
/// does this one conversion; it is the standard formula.
fn cielab(rgb: [u8; 3]) -> [u16; 3] {
    let linear = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
    };
    let [r, g, b] = rgb.map(linear);
    // Divided by the matrix's own white (its row sums) so that white is a* = b* = 0 exactly.
    let x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.9505;
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.089;
    let f = |t: f64| if t > (6.0f64 / 29.0).powi(3) { t.cbrt() } else { t / (3.0 * (6.0f64 / 29.0).powi(2)) + 4.0 / 29.0 };
    let (l, a, bb) = (116.0 * f(y) - 16.0, 500.0 * (f(x) - f(y)), 200.0 * (f(y) - f(z)));
    let scale = |v: f64, lo: f64, hi: f64| (((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 65535.0).round() as u16;
    [scale(l, 0.0, 100.0), scale(a, -128.0, 127.0), scale(bb, -128.0, 127.0)]
}

fn item<const N: usize>(elements: [InMemElement; N]) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn text(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn string(tag: Tag, vr: VR, values: &[&str]) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect()))
}

fn u16s(tag: Tag, values: &[u16]) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::U16(C::from_slice(values)))
}

fn decimals(tag: Tag, values: &[f64]) -> InMemElement {
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(values.iter().map(|&v| ds(v)).collect()))
}

/// A code sequence item.
fn coded(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item([
        text(tags::CODE_VALUE, VR::SH, value),
        text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        text(tags::CODE_MEANING, VR::LO, &lo(meaning)),
    ])
}

/// A referenced SOP instance item.
fn instance(class: &str, uid: &str) -> InMemDicomObject {
    item([text(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class), text(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid)])
}

/// A Long String (LO) holds at most 64 characters.
fn lo(value: &str) -> String {
    value.chars().take(64).collect()
}

/// A Decimal String (DS) value: at most 16 characters (PS3.5 6.2), as
/// precise as that allows.
fn ds(v: f64) -> String {
    let shortest = format!("{v}");
    if shortest.len() <= 16 {
        return shortest;
    }
    let whole = format!("{:.0}", v.abs()).len() + usize::from(v < 0.0);
    if whole + 2 <= 16 {
        let s = format!("{v:.*}", 16 - whole - 1);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_string();
    }
    format!("{v:.6e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        assert_eq!(ds(0.5), "0.5");
        assert_eq!(ds(-90.00000000000001), "-90");
        assert_eq!(ds(1.0 / 3.0), "0.33333333333333");
        assert_eq!(ds(-123.456789012345678), "-123.45678901235");
        for v in [1.0 / 7.0, -1.0 / 7.0, 123456.789012345, -1e20, 1e-20, 0.0] {
            let s = ds(v);
            assert!(s.len() <= 16, "{s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= 1e-9 * v.abs().max(1.0), "{v} → {s}");
        }
    }

    #[test]
    fn cielab_of_white_black_and_red() {
        assert_eq!(cielab([255, 255, 255]), [65535, 32896, 32896]);
        assert_eq!(cielab([0, 0, 0]), [0, 32896, 32896]);
        // sRGB red is L* 53.24, a* 80.09, b* 67.20.
        let [l, a, b] = cielab([255, 0, 0]);
        assert!((l as f64 / 655.35 - 53.24).abs() < 0.05 && (a as f64 * 255.0 / 65535.0 - 128.0 - 80.09).abs() < 0.1 && (b as f64 * 255.0 / 65535.0 - 128.0 - 67.20).abs() < 0.1);
    }
}
