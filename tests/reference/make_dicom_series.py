#!/usr/bin/env python3
"""Write DICOM series from a real NIfTI volume with pydicom, with the volume's geometry.

Usage:
    python tests/reference/make_dicom_series.py VOLUME.nii[.gz] OUTPUT_DIR

Writes one folder per series under OUTPUT_DIR (replacing it) and prints, one per
line, "NAME<TAB>FOLDER<TAB>EXPECT", where EXPECT is "ok" for a series bedside must
read as dcm2niix does, or the words its refusal must contain. Every file is an MR
Image Storage instance of one slice; voxel (i, j, k) of the NIfTI becomes column i,
row j of slice k, so the series' geometry is the NIfTI's affine converted to
DICOM's LPS patient coordinates:

    ImageOrientationPatient  the unit LPS directions of the i and j axes
    PixelSpacing             [spacing along j (between rows), along i (between columns)]
    ImagePositionPatient     LPS position of voxel (0, 0, k)

The series:

    axial          the volume as stored, int16, files in slice order
    shuffled       the same, file names in random order (bedside must sort by position)
    descending     the same head with instance 1 at the top slice
    oblique        the affine rotated 20 degrees about x and 10 about z
    rescaled       stored values v with RescaleSlope 0.5, RescaleIntercept -100 (real = v/2 - 100)
    implicit_vr    Implicit VR Little Endian
    big_endian     Explicit VR Big Endian
    deflated       Deflated Explicit VR Little Endian
    rle            RLE Lossless (dcmtk's dcmcrle on the axial files)
    jpeg_lossless  JPEG Lossless, first-order prediction (dcmtk's dcmcjpeg +e1)
    jpeg_baseline  8-bit samples, JPEG Baseline quality 90 (dcmtk's dcmcjpeg +eb +q 90)
    jpeg_ls        JPEG-LS Lossless (dcmtk's dcmcjpls)                  -> "jpeg-ls ... is not supported"
    two_series     axial and oblique mixed in one folder (two SeriesInstanceUIDs)
    missing_slice  a slice in the middle left out                      -> "missing"
    irregular      one slice moved by half a slice                     -> "irregular"
    mixed_orient   one slice with another orientation                  -> "orientation"
    gantry_tilt    each slice shifted along the rows as k grows        -> "tilt"
    multi_frame    NumberOfFrames 2 in every file                      -> "multi-frame"
    not_an_image   a folder of objects without pixel data              -> "no image"

Deterministic: fixed UIDs derived from the series name, fixed random seed.
Requires nibabel, numpy, pydicom 3 and dcmtk (Debian) for the compressed series.
"""

import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    PYDICOM_IMPLEMENTATION_UID,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import rotation  # noqa: E402  (the fixtures' rotation about a world axis)

ROOT = "1.2.826.0.1.3680043.10.1417"  # a private UID root for test data


def uid(*parts):
    return ".".join([ROOT] + [str(p) for p in parts])


def slices(data, affine, name, series_number, stored=None, slope=1.0, intercept=0.0, bits=16):
    """One pydicom dataset per slice k of `data` (x, y, z), geometry from `affine` (RAS);
    samples of `bits` bits: 16 signed, or 8 unsigned."""
    lps = np.diag([-1.0, -1.0, 1.0])
    linear = lps @ affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    row_dir, col_dir = linear[:, 0] / spacing[0], linear[:, 1] / spacing[1]
    stored = data if stored is None else stored
    out = []
    for k in range(data.shape[2]):
        position = lps @ (affine[:3, :3] @ np.array([0.0, 0.0, k]) + affine[:3, 3])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = uid(series_number, k + 1)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = uid(0)
        ds.SeriesInstanceUID = uid(series_number)
        ds.FrameOfReferenceUID = uid(0, 1)
        ds.Modality = "MR"
        ds.PatientName = "Test^Phantom"
        ds.PatientID = "BEDSIDE-TEST"
        ds.StudyDate = "20261205"
        ds.SeriesDate = "20261205"
        ds.AcquisitionTime = "120000"
        ds.SeriesDescription = f"bedside test {name}"
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([row_dir, col_dir])]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.BitsAllocated = bits
        ds.BitsStored = bits
        ds.HighBit = bits - 1
        ds.PixelRepresentation = 1 if bits == 16 else 0
        ds.RescaleSlope = f"{slope}"
        ds.RescaleIntercept = f"{intercept}"
        # pixel (row r, column c) = voxel (i = c, j = r)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).astype("<i2" if bits == 16 else "u1").tobytes()
        out.append(ds)
    return out


def write(folder, datasets, syntax=ExplicitVRLittleEndian, names=None):
    os.makedirs(folder, exist_ok=True)
    for n, ds in enumerate(datasets):
        ds.file_meta.TransferSyntaxUID = syntax
        if syntax == ExplicitVRBigEndian:
            ds.PixelData = np.frombuffer(ds.PixelData, "<i2").astype(">i2").tobytes()
        name = names[n] if names else f"slice{n + 1:04d}.dcm"
        path = os.path.join(folder, name)
        if syntax == ExplicitVRBigEndian:
            # pydicom converts the data set's encoding on request only, and leaves the pixel
            # bytes to the caller (swapped above); the file meta group stays little endian,
            # with its group length and version, as Part 10 wants.
            ds.file_meta.FileMetaInformationGroupLength = 0
            ds.file_meta.FileMetaInformationVersion = b"\x00\x01"
            pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
        else:
            ds.save_as(path, enforce_file_format=True)


def compress(source, folder, command):
    """Each file of folder `source` through a dcmtk `command` (its options) into `folder`."""
    os.makedirs(folder, exist_ok=True)
    for name in sorted(os.listdir(source)):
        # dcmtk warns on stderr that a modality LUT may change the values; it does not (no LUT).
        done = subprocess.run(command + [os.path.join(source, name), os.path.join(folder, name)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed on {name}: {done.stderr}")


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    src, out_dir = argv
    shutil.rmtree(out_dir, ignore_errors=True)
    img = nib.load(src)
    # A real volume, kept small so that dcm2niix and bedside read every series quickly:
    # every second voxel along x and y, 40 slices through the middle.
    full = np.asarray(img.dataobj, dtype=np.float64)
    z0 = full.shape[2] // 2 - 20
    data = np.round(full[::2, ::2, z0 : z0 + 40]).astype(np.int16)
    affine = img.affine @ np.diag([2.0, 2.0, 1.0, 1.0])
    affine[:3, 3] = (img.affine @ np.array([0, 0, z0, 1.0]))[:3]
    rot = np.eye(4)
    rot[:3, :3] = rotation(0, 20) @ rotation(2, 10)
    oblique = rot @ affine
    rng = np.random.default_rng(20261205)
    listed = []

    def series(name, datasets, expect="ok", **kw):
        folder = os.path.join(out_dir, name)
        write(folder, datasets, **kw)
        listed.append((name, folder, expect))

    series("axial", slices(data, affine, "axial", 1))
    axial = slices(data, affine, "shuffled", 2)
    series("shuffled", axial, names=[f"im{n:04d}" for n in rng.permutation(len(axial))])
    series("oblique", slices(data, oblique, "oblique", 3))
    # Instance 1 at the top: the same head, slices numbered downwards.
    down = affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, data.shape[2] - 1], [0, 0, 0, 1.0]])
    series("descending", slices(data[:, :, ::-1], down, "descending", 16))
    stored = np.clip(np.round((data.astype(np.float64) + 100) * 2), -32768, 32767).astype(np.int16)
    series("rescaled", slices(stored * 0.5 - 100, affine, "rescaled", 4, stored=stored, slope=0.5, intercept=-100))
    series("implicit_vr", slices(data, affine, "implicit_vr", 5), syntax=ImplicitVRLittleEndian)
    series("big_endian", slices(data, affine, "big_endian", 6), syntax=ExplicitVRBigEndian)
    series("deflated", slices(data, affine, "deflated", 7), syntax=DeflatedExplicitVRLittleEndian)
    axial_folder = os.path.join(out_dir, "axial")
    for name, command, expect in [
        ("rle", ["dcmcrle"], "ok"),
        ("jpeg_lossless", ["dcmcjpeg", "+e1"], "ok"),
        ("jpeg_ls", ["dcmcjpls"], "jpeg-ls lossless image compression (1.2.840.10008.1.2.4.80) is not supported"),
    ]:
        compress(axial_folder, os.path.join(out_dir, name), command)
        listed.append((name, os.path.join(out_dir, name), expect))
    grey = np.round((data - data.min()) * 255.0 / max(data.max() - data.min(), 1)).astype(np.uint8)
    write(os.path.join(out_dir, "axial8"), slices(grey, affine, "axial8", 17, bits=8))
    compress(os.path.join(out_dir, "axial8"), os.path.join(out_dir, "jpeg_baseline"), ["dcmcjpeg", "+eb", "+q", "90"])
    listed.append(("jpeg_baseline", os.path.join(out_dir, "jpeg_baseline"), "ok"))
    mixed = slices(data, affine, "two_series_a", 8) + slices(data[:, :, :12], oblique, "two_series_b", 9)
    series("two_series", mixed)

    gap = slices(data, affine, "missing_slice", 10)
    series("missing_slice", gap[:20] + gap[21:], expect="missing")
    moved = slices(data, affine, "irregular", 11)
    position = [float(v) for v in moved[25].ImagePositionPatient]
    normal = np.cross(*np.reshape([float(v) for v in moved[25].ImageOrientationPatient], (2, 3)))
    moved[25].ImagePositionPatient = [f"{v:.6f}" for v in np.array(position) + 0.5 * normal]
    series("irregular", moved, expect="irregular")
    turned = slices(data, affine, "mixed_orient", 12)
    turned[7].ImageOrientationPatient = slices(data, oblique, "x", 12)[7].ImageOrientationPatient
    series("mixed_orient", turned, expect="orientation")
    tilted = slices(data, affine, "gantry_tilt", 13)
    for k, ds in enumerate(tilted):
        row_dir = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
        p = np.array([float(v) for v in ds.ImagePositionPatient]) + 0.3 * k * row_dir
        ds.ImagePositionPatient = [f"{v:.6f}" for v in p]
    series("gantry_tilt", tilted, expect="tilt")
    frames = slices(data, affine, "multi_frame", 14)
    for ds in frames:
        ds.NumberOfFrames = 2
        ds.PixelData = ds.PixelData * 2
    series("multi_frame", frames, expect="multi-frame")
    empty = slices(data[:, :, :3], affine, "not_an_image", 15)
    for ds in empty:
        del ds.PixelData
    series("not_an_image", empty, expect="no image")

    for name, folder, expect in listed:
        print(f"{name}\t{folder}\t{expect}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
