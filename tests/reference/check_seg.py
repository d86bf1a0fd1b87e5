#!/usr/bin/env python3
"""Read a DICOM SEG with highdicom and check it against its source series and a NIfTI mask.

Usage:
    python tests/reference/check_seg.py SEG.dcm SOURCE_FOLDER MASK.nii[.gz]

Prints one JSON object:

    series_ok        the SEG references the source's SeriesInstanceUID, and exactly its instances
    study_ok         StudyInstanceUID and FrameOfReferenceUID are the source's
    patient_ok       PatientID and PatientName are the source's (the SEG belongs to that patient)
    segments         per segment: number, label, category and type (value, scheme, meaning),
                     algorithm type, name and version, and the recommended CIELab colour
    frames           number of frames
    voxels           source pixels checked (every pixel of every source slice, per segment)
    mismatched       pixels whose SEG value differs from the mask's label at the same place
    foreground       pixels set in the SEG

The comparison goes through world coordinates, not through bedside's voxel order: each
source pixel's position is computed from its slice's ImagePositionPatient,
ImageOrientationPatient and PixelSpacing (LPS), converted to RAS, and looked up in the
NIfTI mask through the inverse of its affine (nibabel). So a flipped or shifted frame
would show up as mismatched pixels.
"""

import json
import os
import sys

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom


def code(c):
    return {"value": c.value, "scheme": c.scheme_designator, "meaning": c.meaning}


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    seg_path, folder, mask_path = argv
    seg = hd.seg.segread(seg_path)
    sources = []
    for name in sorted(os.listdir(folder)):
        ds = pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True)
        sources.append(ds)
    source_uids = {ds.SOPInstanceUID for ds in sources}
    referenced = seg.ReferencedSeriesSequence[0]
    referenced_uids = {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence}
    series_ok = referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID and referenced_uids == source_uids
    study_ok = seg.StudyInstanceUID == sources[0].StudyInstanceUID and seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    patient_ok = seg.PatientID == sources[0].PatientID and str(seg.PatientName) == str(sources[0].PatientName)

    segments = []
    for number in seg.segment_numbers:
        d = seg.get_segment_description(number)
        algorithm = d.algorithm_identification
        segments.append(
            {
                "number": number,
                "label": d.segment_label,
                "category": code(d.segmented_property_category),
                "type": code(d.segmented_property_type),
                "algorithm_type": d.algorithm_type.value,
                "algorithm_name": algorithm[0].AlgorithmName if algorithm else None,
                "algorithm_version": algorithm[0].AlgorithmVersion if algorithm else None,
                "cielab": [int(v) for v in d.RecommendedDisplayCIELabValue],
            }
        )

    mask = nib.load(mask_path)
    labels = np.asarray(mask.dataobj).astype(np.int64)
    to_voxel = np.linalg.inv(mask.affine)
    checked = mismatched = foreground = 0
    for number in seg.segment_numbers:
        value = number  # bedside numbers segments by label order; the mask's labels are 1..n
        for ds in sources:
            frame = seg.get_pixels_by_source_instance(
                source_sop_instance_uids=[ds.SOPInstanceUID], segment_numbers=[number]
            )[0, :, :, 0]
            rows, cols = int(ds.Rows), int(ds.Columns)
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            ipp = np.array([float(v) for v in ds.ImagePositionPatient])
            row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
            r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
            lps = ipp[None, None, :] + c[..., None] * col_spacing * iop[None, None, :3] + r[..., None] * row_spacing * iop[None, None, 3:]
            ras = lps * np.array([-1.0, -1.0, 1.0])
            ijk = np.rint(ras @ to_voxel[:3, :3].T + to_voxel[:3, 3]).astype(np.int64)
            inside = np.all((ijk >= 0) & (ijk < np.array(labels.shape[:3])), axis=-1)
            ijk = np.clip(ijk, 0, np.array(labels.shape[:3]) - 1)
            expected = inside & (labels[ijk[..., 0], ijk[..., 1], ijk[..., 2]] == value)
            got = frame.astype(bool)
            checked += got.size
            mismatched += int(np.count_nonzero(got != expected))
            foreground += int(np.count_nonzero(got))
    print(
        json.dumps(
            {
                "series_ok": bool(series_ok),
                "study_ok": bool(study_ok),
                "patient_ok": bool(patient_ok),
                "segments": segments,
                "frames": int(seg.NumberOfFrames),
                "voxels": checked,
                "mismatched": mismatched,
                "foreground": foreground,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
