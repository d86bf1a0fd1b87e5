#!/usr/bin/env python3
"""Write the fuzz targets' seed corpora (fuzz/seeds/<target>/), small valid inputs of each kind.

Usage:
    python fuzz/make_seeds.py

Deterministic. Needs numpy, pydicom and dcmtk (the RLE and JPEG seeds). The malformed-file
corpus (tests/malformed/) is added to the seeds by scripts/fuzz itself, so its files are not
copied here.
"""

import gzip
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "seeds")

sys.path.insert(0, os.path.join(REPO, "tests", "malformed"))
from make_corpus import dicom  # noqa: E402  (one writer of small DICOM slices)


def put(target, name, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def nifti(dims, datatype=16, bitpix=32, version=1, volumes=1):
    """A small float32 (by default) NIfTI with a ramp of values and an sform."""
    count = int(np.prod(dims)) * volumes
    data = np.arange(count, dtype=np.float32).astype({16: "<f4", 4: "<i2", 2: "u1"}[datatype]).tobytes()
    full = list(dims) + ([volumes] if volumes > 1 else [])
    if version == 1:
        h = bytearray(348)
        struct.pack_into("<i", h, 0, 348)
        struct.pack_into("<8h", h, 40, len(full), *full, *([1] * (7 - len(full))))
        struct.pack_into("<hh", h, 70, datatype, bitpix)
        struct.pack_into("<8f", h, 76, 1, 2, 2, 2, 1, 1, 1, 1)
        struct.pack_into("<f", h, 108, 352.0)
        struct.pack_into("<f", h, 112, 1.0)
        struct.pack_into("<hh", h, 252, 0, 1)
        struct.pack_into("<12f", h, 280, 2, 0, 0, -4, 0, 2, 0, -4, 0, 0, 2, -4)
        h[344:348] = b"n+1\0"
        return bytes(h) + bytes(4) + data
    h = bytearray(540)
    struct.pack_into("<i", h, 0, 540)
    h[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into("<hh", h, 12, datatype, bitpix)
    struct.pack_into("<8q", h, 16, len(full), *full, *([1] * (7 - len(full))))
    struct.pack_into("<8d", h, 104, 1, 2, 2, 2, 1, 1, 1, 1)
    struct.pack_into("<q", h, 168, 544)
    struct.pack_into("<d", h, 176, 1.0)
    struct.pack_into("<ii", h, 344, 0, 1)
    struct.pack_into("<12d", h, 400, 2, 0, 0, -4, 0, 2, 0, -4, 0, 0, 2, -4)
    return bytes(h) + bytes(4) + data


def nifti_seeds():
    put("nifti", "f32_4x4x4.nii", nifti((4, 4, 4)))
    put("nifti", "i16_5x3x2.nii.gz", gzip.compress(nifti((5, 3, 2), datatype=4, bitpix=16), mtime=0))
    put("nifti", "u8_4d_3x3x3x2.nii", nifti((3, 3, 3), datatype=2, bitpix=8, volumes=2))
    put("nifti", "nifti2_3x3x3.nii", nifti((3, 3, 3), version=2))


# ------------------------------------------------------------------------------------------

class Storage:
    """Stands for a torch storage class in the pickle (module torch, name FloatStorage)."""


Storage.__module__ = "torch"
Storage.__qualname__ = "FloatStorage"
Storage.__name__ = "FloatStorage"


def _rebuild_tensor(storage, offset, size, stride):
    raise AssertionError("never called: only pickled")


_rebuild_tensor.__module__ = "torch._utils"
_rebuild_tensor.__qualname__ = "_rebuild_tensor"


class TensorStandIn:
    def __init__(self, key, shape):
        self.key, self.shape = key, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1 :])) for i in range(len(self.shape)))
        return (_rebuild_tensor, (StorageRef(self.key, int(np.prod(self.shape))), 0, tuple(self.shape), stride))


class StorageRef:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class CheckpointPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", Storage, obj.key, "cpu", obj.numel)
        return None


def legacy_checkpoint(tensors):
    """A legacy-format torch.save of {"state_dict": OrderedDict(name -> tensor)}, as HD-BET ships."""
    import collections
    import types

    torch = types.ModuleType("torch")
    torch.FloatStorage = Storage
    utils = types.ModuleType("torch._utils")
    utils._rebuild_tensor = _rebuild_tensor
    sys.modules.setdefault("torch", torch)
    sys.modules.setdefault("torch._utils", utils)
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    state = collections.OrderedDict((name, TensorStandIn(str(i), shape)) for i, (name, shape, _) in enumerate(tensors))
    CheckpointPickler(out, protocol=2).dump({"state_dict": state})
    pickle.dump([str(i) for i in range(len(tensors))], out, protocol=2)
    for _, shape, values in tensors:
        out.write(struct.pack("<q", int(np.prod(shape))))
        out.write(np.asarray(values, dtype="<f4").tobytes())
    return out.getvalue()


def checkpoint_seeds():
    rng = np.random.default_rng(0)
    tensors = [("conv.weight", (2, 1, 3, 3, 3), rng.standard_normal(54)), ("conv.bias", (2,), [0.5, -0.5])]
    put("checkpoint", "tiny_legacy.model", legacy_checkpoint(tensors))


# ------------------------------------------------------------------------------------------

def toy_package():
    """student-s's model.json with the smallest network of its family, and weights for it."""
    with open(os.path.join(REPO, "models", "student-s", "model.json")) as f:
        manifest = json.load(f)
    manifest["hyperparameters"] = {**manifest["hyperparameters"], "base_filters": 1, "max_filters": 1, "depth": 1}
    for key in ("training", "evaluation", "quality"):
        manifest.pop(key, None)
    shapes = {
        "encoder.0.unit1.conv": (1, 1, 3, 3, 3),
        "encoder.0.unit2.conv": (1, 1, 3, 3, 3),
        "encoder.1.down.conv": (1, 1, 3, 3, 3),
        "encoder.1.unit1.conv": (1, 1, 3, 3, 3),
        "encoder.1.unit2.conv": (1, 1, 3, 3, 3),
        "decoder.0.reduce.conv": (1, 1, 3, 3, 3),
        "decoder.0.fuse.conv": (1, 2, 3, 3, 3),
        "head": (2, 1, 1, 1, 1),
    }
    rng = np.random.default_rng(1)
    header, body = {}, b""
    for name in sorted(shapes):
        for part, shape in (("weight", shapes[name]), ("bias", (shapes[name][0],))):
            data = (rng.standard_normal(int(np.prod(shape))) * 0.1).astype("<f4").tobytes()
            header[f"{name}.{part}"] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(body), len(body) + len(data)]}
            body += data
    manifest["params"] = sum(int(np.prod(v["shape"])) for v in header.values())
    text = json.dumps(manifest, indent=1)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return text, struct.pack("<Q", len(h)) + h + body


def package_seeds():
    text, weights = toy_package()
    # (Checked to load and segment: `bedside segment --model` on its two files as a folder.)
    put("package", "toy_unet3d", struct.pack("<I", len(text.encode())) + text.encode() + weights)


# ------------------------------------------------------------------------------------------

def slice_file(k=0, syntax=ExplicitVRLittleEndian):
    """Slice k of a small signed, rescaled series (4 x 6 pixels, 2 mm apart)."""
    return dicom(
        syntax=syntax,
        SOPInstanceUID=f"1.2.826.0.1.3680043.10.1417.98.{k + 1}",
        SeriesInstanceUID="1.2.826.0.1.3680043.10.1417.98.0",
        ImagePositionPatient=["0", "0", str(2 * k)],
        PixelSpacing=["1.5", "1.5"],
        SliceThickness="2",
        Rows=4,
        Columns=6,
        PixelRepresentation=1,
        RescaleSlope="2",
        RescaleIntercept="-10",
        PixelData=(np.arange(24, dtype="<i2") * (k + 1)).tobytes(),
    )


def dicom_seeds():
    put("dicom", "explicit_le.dcm", slice_file())
    put("dicom", "implicit_le.dcm", slice_file(syntax=ImplicitVRLittleEndian))
    put("dicom", "explicit_be.dcm", slice_file(syntax=ExplicitVRBigEndian))
    put("dicom", "deflated.dcm", slice_file(syntax=DeflatedExplicitVRLittleEndian))
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "src.dcm")
        with open(src, "wb") as f:
            f.write(slice_file())
        for name, command in (("rle.dcm", ["dcmcrle"]), ("jpeg_lossless.dcm", ["dcmcjpeg", "+e1"])):
            out = os.path.join(tmp, name)
            subprocess.run(command + [src, out], check=True)
            with open(out, "rb") as f:
                put("dicom", name, f.read())
    series = io.BytesIO()
    with zipfile.ZipFile(series, "w", zipfile.ZIP_DEFLATED) as z:
        for k in range(3):
            z.writestr(zipfile.ZipInfo(f"series/{k}.dcm", date_time=(2026, 12, 5, 0, 0, 0)), slice_file(k))
    put("dicom", "series_of_3.zip", series.getvalue())


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    nifti_seeds()
    checkpoint_seeds()
    package_seeds()
    dicom_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
