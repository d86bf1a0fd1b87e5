#!/usr/bin/env python3
"""Write small NIfTI fixtures with nibabel that exercise the corners of the format.

Usage:
    python tests/reference/make_fixtures.py OUTPUT_DIR

Creates OUTPUT_DIR if needed and writes the files below (overwriting them),
then prints their paths, one per line, in a fixed order. Every file is
deterministic: data comes from numpy generators with fixed seeds and gzip
streams carry no timestamp (nibabel writes .nii.gz with mtime 0; the
hand-assembled files do the same), so reruns give byte-identical files.

    nifti2_float32.nii.gz       NIfTI-2, 3D, float32, sform
    int16_scaled.nii.gz         int16 with scl_slope=2.5, scl_inter=-10 stored in the header
    float64.nii.gz              float64 data
    uint16.nii                  uint16, uncompressed
    int8.nii.gz                 int8 with negative values
    qform_only_qfac_neg.nii.gz  sform_code 0, qform_code 1, rotated qform with qfac = -1
    sform_oblique.nii.gz        sform with permuted axes plus a 25/15 degree rotation
    lps.nii.gz                  LPS-oriented (DICOM-like) axis-aligned image
    big_endian_int16.nii        big-endian NIfTI-1 header and data (>i2)
    big_endian_nifti2_float32.nii  big-endian NIfTI-2 header and data (>f4)
    no_xform.nii                sform_code = qform_code = 0 (nibabel's base affine applies)
    single_volume_4d.nii.gz     4D with dim[4] = 1
    three_volumes_4d.nii.gz     4D with dim[4] = 3, TR 2.5 s (bedside reads the volume asked for)
    nan_voxels.nii.gz           float32 with a slab of NaN voxels (statistics leave them out)

Requires nibabel 5.x and numpy.
"""

import gzip
import io
import os
import sys

import nibabel as nib
import numpy as np

SHAPE = (23, 19, 11)  # small, odd and distinct per axis so transposes show up


def rotation(axis, degrees):
    """3x3 rotation matrix about world axis 0, 1 or 2."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine_from(linear, offset):
    aff = np.eye(4)
    aff[:3, :3] = linear
    aff[:3, 3] = offset
    return aff


def smooth_image(seed, shape=SHAPE):
    """A head-like blob plus noise, so min/max/mean are not trivial."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    blob = np.exp(-2.0 * sum(g * g for g in grid))
    return blob * 1000.0 + rng.normal(0.0, 20.0, size=shape)


def write_raw_nifti1(path, header, data):
    """Write header + extension flag + data verbatim (no rescaling by nibabel).

    nibabel recomputes scl_slope/scl_inter when saving an in-memory array, so a
    fixture that must carry specific scale factors is assembled by hand.
    """
    header.set_data_offset(352)
    payload = header.binaryblock + b"\x00" * 4 + np.asarray(data).tobytes(order="F")
    if path.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0) as gz:
            gz.write(payload)
        payload = buf.getvalue()
    with open(path, "wb") as f:
        f.write(payload)


def make_all(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def out(name):
        path = os.path.join(out_dir, name)
        written.append(path)
        return path

    ras = affine_from(np.diag([1.2, 1.1, 2.5]), [-13.0, -10.0, -12.5])

    # NIfTI-2, float32.
    img = nib.Nifti2Image(smooth_image(1).astype(np.float32), ras)
    img.to_filename(out("nifti2_float32.nii.gz"))

    # int16 with explicit scale factors in the header.
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.int16)
    hdr.set_data_shape(SHAPE)
    hdr.set_zooms((1.2, 1.1, 2.5))
    hdr.set_sform(ras, code="scanner")
    hdr.set_qform(ras, code="scanner")
    hdr.set_slope_inter(2.5, -10.0)
    raw = np.round(smooth_image(2) / 2.5).astype(np.int16)
    write_raw_nifti1(out("int16_scaled.nii.gz"), hdr, raw)

    # float64.
    img = nib.Nifti1Image(smooth_image(3) * 1e-3, ras)
    img.set_data_dtype(np.float64)
    img.to_filename(out("float64.nii.gz"))

    # uint16, uncompressed.
    rng = np.random.default_rng(4)
    img = nib.Nifti1Image(rng.integers(0, 65535, size=SHAPE, dtype=np.uint16), ras)
    img.set_data_dtype(np.uint16)
    img.to_filename(out("uint16.nii"))

    # int8 with negatives.
    rng = np.random.default_rng(5)
    img = nib.Nifti1Image(rng.integers(-128, 127, size=SHAPE, dtype=np.int8), ras)
    img.set_data_dtype(np.int8)
    img.to_filename(out("int8.nii.gz"))

    # qform only, rotated, with a left-handed voxel grid so qfac = -1.
    linear = rotation(0, 20.0) @ rotation(2, -10.0) @ np.diag([1.0, 1.3, -2.0])
    qaff = affine_from(linear, [40.0, -30.0, 12.0])
    img = nib.Nifti1Image(smooth_image(6).astype(np.float32), None)
    img.set_qform(qaff, code="scanner")
    img.set_sform(None, code="unknown")
    img.to_filename(out("qform_only_qfac_neg.nii.gz"))

    # Oblique sform with permuted axes (a sagittal-like acquisition).
    permute = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    linear = rotation(2, 25.0) @ rotation(0, 15.0) @ permute @ np.diag([0.9, 1.0, 1.4])
    saff = affine_from(linear, [5.0, -60.0, 70.0])
    img = nib.Nifti1Image(smooth_image(7).astype(np.float32), saff)
    img.to_filename(out("sform_oblique.nii.gz"))

    # LPS, as DICOM converters without reorientation produce.
    lps = affine_from(np.diag([-0.8, -0.8, 1.5]), [90.0, 110.0, -70.0])
    img = nib.Nifti1Image(np.round(smooth_image(8)).astype(np.int16), lps)
    img.to_filename(out("lps.nii.gz"))

    # Big-endian header and data.
    hdr = nib.Nifti1Header(endianness=">")
    data = np.round(smooth_image(9)).astype(">i2")
    img = nib.Nifti1Image(data, ras, header=hdr)
    img.set_data_dtype(">i2")
    img.to_filename(out("big_endian_int16.nii"))

    hdr = nib.Nifti2Header(endianness=">")
    img = nib.Nifti2Image(smooth_image(13).astype(">f4"), lps, header=hdr)
    img.set_data_dtype(">f4")
    img.to_filename(out("big_endian_nifti2_float32.nii"))

    # No usable transform: nibabel falls back to the centred, x-flipped base affine.
    img = nib.Nifti1Image(np.round(smooth_image(10)).astype(np.int16), ras)
    img.set_sform(None, code="unknown")
    img.set_qform(None, code="unknown")
    img.to_filename(out("no_xform.nii"))

    # 4D with a single volume and with three (a series with a repetition time).
    img = nib.Nifti1Image(smooth_image(11).astype(np.float32)[..., None], ras)
    img.to_filename(out("single_volume_4d.nii.gz"))
    vols = np.stack([smooth_image(12 + i) for i in range(3)], axis=-1).astype(np.float32)
    img = nib.Nifti1Image(vols, ras)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = 2.5
    img.to_filename(out("three_volumes_4d.nii.gz"))

    # NaN voxels, as a registration's out-of-field region leaves them.
    data = smooth_image(15).astype(np.float32)
    data[:4] = np.nan
    img = nib.Nifti1Image(data, ras)
    img.to_filename(out("nan_voxels.nii.gz"))

    check(out_dir)
    return written


def check(out_dir):
    """Fail loudly if nibabel did not store what the fixture is meant to cover."""
    p = lambda name: os.path.join(out_dir, name)
    assert nib.load(p("nifti2_float32.nii.gz")).header.sizeof_hdr == 540
    # A loaded image keeps the scale factors on its data proxy, not its header.
    proxy = nib.load(p("int16_scaled.nii.gz")).dataobj
    assert (proxy.slope, proxy.inter) == (2.5, -10.0), (proxy.slope, proxy.inter)
    hdr = nib.load(p("qform_only_qfac_neg.nii.gz")).header
    assert hdr["sform_code"] == 0 and hdr["qform_code"] == 1
    assert hdr["pixdim"][0] == -1, hdr["pixdim"][0]
    img = nib.load(p("big_endian_int16.nii"))
    assert img.header.endianness == ">" and img.get_data_dtype().str == ">i2"
    img = nib.load(p("big_endian_nifti2_float32.nii"))
    assert img.header.endianness == ">" and img.get_data_dtype().str == ">f4"
    assert img.header.sizeof_hdr == 540
    hdr = nib.load(p("no_xform.nii")).header
    assert hdr["sform_code"] == 0 and hdr["qform_code"] == 0
    assert "".join(nib.aff2axcodes(nib.load(p("lps.nii.gz")).affine)) == "LPS"
    assert nib.load(p("single_volume_4d.nii.gz")).shape == SHAPE + (1,)
    assert nib.load(p("three_volumes_4d.nii.gz")).shape == SHAPE + (3,)
    assert nib.load(p("three_volumes_4d.nii.gz")).header.get_zooms()[3] == 2.5
    assert np.isnan(nib.load(p("nan_voxels.nii.gz")).get_fdata()).sum() == 4 * SHAPE[1] * SHAPE[2]


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for path in make_all(argv[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
