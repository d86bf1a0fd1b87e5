#!/usr/bin/env python3
"""Write the malformed-file corpus: hostile and broken inputs for every parser bedside has.

Usage:
    python tests/malformed/make_corpus.py HD_BET_FOLD.model

Writes the files beside this script (replacing them). Deterministic: the same bytes every run.
What each file is and the exact message bedside must give for it are in corpus.json; the
tests (tests/malformed_corpus.rs for the CLI, tests/e2e/malformed.test.mjs for the page) read
that list. HD_BET_FOLD.model (a fold file of HD-BET as it ships, fetched by scripts/fetch-data)
gives the truncated checkpoint its real first bytes. Needs pydicom for the DICOM files, and
Pillow (a dependency of highdicom, which scripts/setup installs) for the JPEG one.
"""

import gzip
import io
import json
import math
import os
import pickle
import random
import shutil
import struct
import sys
import zipfile
import zlib

import pydicom
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, MRImageStorage, RLELossless

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def put(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def gz(data):
    # mtime 0: the same bytes every run.
    return gzip.compress(data, compresslevel=9, mtime=0)


# ------------------------------------------------------------------------------------------
# NIfTI-1

def nifti(dims=(10, 10, 10), datatype=4, bitpix=16, pixdim=(1.0, 1.0, 1.0), data=True, **fields):
    """A NIfTI-1 single file (.nii): header, extension flag, voxels (zeros) unless data=False."""
    h = bytearray(348)
    struct.pack_into("<i", h, 0, fields.get("sizeof_hdr", 348))
    dim = [len(dims)] + list(dims) + [1] * (7 - len(dims))
    if "dim0" in fields:
        dim[0] = fields["dim0"]
    struct.pack_into("<8h", h, 40, *dim)
    struct.pack_into("<h", h, 70, datatype)
    struct.pack_into("<h", h, 72, bitpix)
    struct.pack_into("<8f", h, 76, fields.get("qfac", 1.0), *pixdim, *([1.0] * (7 - len(pixdim))))
    struct.pack_into("<f", h, 108, fields.get("vox_offset", 352.0))
    struct.pack_into("<f", h, 112, 1.0)  # scl_slope
    qform = fields.get("qform")
    if qform:
        struct.pack_into("<h", h, 252, 1)
        struct.pack_into("<6f", h, 256, *qform)
    else:
        struct.pack_into("<h", h, 254, 1)  # sform_code: scanner
        struct.pack_into("<4f", h, 280, pixdim[0], 0, 0, 0)
        struct.pack_into("<4f", h, 296, 0, pixdim[1], 0, 0)
        struct.pack_into("<4f", h, 312, 0, 0, pixdim[2], 0)
    h[344:348] = fields.get("magic", b"n+1\0")
    out = bytes(h) + b"\0\0\0\0"
    if data:
        count = 1
        for d in dims:
            count *= max(d, 0)
        out += bytes(count * max(bitpix, 8) // 8)
    return out


def nifti_files():
    valid = nifti()
    put("nifti_empty.nii", b"")
    put("nifti_text.nii", b"This is not an image, it is a note someone saved with the wrong name.\n")
    put("nifti_header_cut.nii", valid[:200])
    put("nifti_wrong_magic.nii", nifti(magic=b"abc\0"))
    put("nifti_pair_header.nii", nifti(magic=b"ni1\0"))
    put("nifti_wrong_sizeof_hdr.nii", nifti(sizeof_hdr=1234))
    put("nifti_data_cut.nii", valid[: 352 + 1000])
    put("nifti_absurd_dims.nii", nifti(dims=(30000, 30000, 30000), data=False))
    put("nifti_negative_dim.nii", nifti(dims=(10, -4, 10), data=False))
    put("nifti_zero_dim.nii", nifti(dims=(10, 10, 0), data=False))
    put("nifti_rank_9.nii", nifti(dim0=9))
    put("nifti_nan_spacing.nii", nifti(pixdim=(math.nan, 1.0, 1.0)))
    put("nifti_inf_spacing.nii", nifti(pixdim=(1.0, 1.0, math.inf)))
    put("nifti_negative_spacing.nii", nifti(pixdim=(-2.0, 1.0, 1.0)))
    put("nifti_complex_datatype.nii", nifti(datatype=32, bitpix=64))
    put("nifti_rgb_datatype.nii", nifti(datatype=128, bitpix=24))
    put("nifti_vox_offset_beyond.nii", nifti(vox_offset=1.0e9))
    put("nifti_vox_offset_nan.nii", nifti(vox_offset=math.nan))
    put("nifti_qform_nan.nii", nifti(qform=(math.nan, 0.0, 0.0, 0.0, 0.0, 0.0)))
    whole = gz(valid)
    put("nifti_gzip_cut.nii.gz", whole[: len(whole) // 2])
    put("nifti_gzip_garbage.nii.gz", b"\x1f\x8b\x08\x00" + bytes(random.Random(1).randrange(256) for _ in range(400)))
    # A gzip bomb: 256 MiB of zeros in about 256 KiB, behind a header that claims 8000^3 voxels.
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = nifti(dims=(8000, 8000, 8000), data=False)
    parts = [bomb.compress(head)]
    zeros = bytes(1 << 20)
    for _ in range(256):
        parts.append(bomb.compress(zeros))
    parts.append(bomb.flush())
    stream = b"".join(parts)
    # zlib writes the gzip header with the current time: zero it for the same bytes every run.
    stream = stream[:4] + b"\0\0\0\0" + stream[8:]
    put("nifti_gzip_bomb.nii.gz", stream)
    # NIfTI-2: its 540-byte header, cut.
    h2 = bytearray(540)
    struct.pack_into("<i", h2, 0, 540)
    h2[4:12] = b"n+2\0\r\n\x1a\n"
    put("nifti2_header_cut.nii", bytes(h2[:300]))


# ------------------------------------------------------------------------------------------
# DICOM

def dicom(syntax=ExplicitVRLittleEndian, **changes):
    """One 16x16 MR slice written by pydicom in transfer syntax `syntax` (any uncompressed one,
    deflate, or an encapsulated one given its PixelData); `changes` set (value) or delete (None) elements. fuzz/make_seeds.py uses it too."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = changes.get("SOPInstanceUID", "1.2.826.0.1.3680043.10.1417.99.1")
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1417.99"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1417.99.2"
    ds.Modality = "MR"
    ds.PatientName = "Corpus^Malformed"
    ds.PatientID = "MALFORMED-1"
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.ImagePositionPatient = ["0", "0", "0"]
    ds.PixelSpacing = ["1", "1"]
    ds.SliceThickness = "1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 16, 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = bytes(16 * 16 * 2)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    out = io.BytesIO()
    if syntax == ExplicitVRBigEndian:
        # pydicom leaves the pixel bytes to the caller (swapped here); the file meta group stays
        # little endian, with its group length and version, as Part 10 wants.
        bits = int(ds.BitsAllocated)
        if "PixelData" in ds and bits > 8:
            ds.PixelData = swap_bytes(ds.PixelData, bits // 8)
        ds.file_meta.FileMetaInformationGroupLength = 0
        ds.file_meta.FileMetaInformationVersion = b"\x00\x01"
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    else:
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def raw_deflate(data):
    """Deflate without a zlib header, as DICOM's deflated transfer syntax stores its data set."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    return squeeze.compress(data) + squeeze.flush()


def swap_bytes(data, width):
    return b"".join(data[i : i + width][::-1] for i in range(0, len(data), width))


def dicom_files():
    put("dicom_dicm_garbage.dcm", b"\0" * 128 + b"DICM" + bytes(random.Random(2).randrange(256) for _ in range(300)))
    put("dicom_missing_rows.dcm", dicom(Rows=None))
    put("dicom_missing_position.dcm", dicom(ImagePositionPatient=None))
    put("dicom_nan_position.dcm", dicom(ImagePositionPatient=["NaN", "0", "0"]))
    put("dicom_missing_orientation.dcm", dicom(ImageOrientationPatient=None))
    put("dicom_pixels_short.dcm", dicom(PixelData=bytes(100)))
    put("dicom_absurd_size.dcm", dicom(Rows=65535, Columns=65535, PixelData=bytes(64)))
    put("dicom_colour.dcm", dicom(SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0, PixelData=bytes(16 * 16 * 6)))
    put("dicom_12_bits_allocated.dcm", dicom(BitsAllocated=12, BitsStored=12, HighBit=11))
    put("dicom_zero_spacing.dcm", dicom(PixelSpacing=["0", "0"]))
    put("dicom_no_pixel_data.dcm", dicom(PixelData=None))
    # BitsStored re-declared as an OB value of 0xdadadada bytes in a 700-byte file: dicom-rs
    # reserved and zeroed the declared length (3.6 GB) before reading it (the dicom fuzz target
    # found it).
    raw = dicom()
    at = raw.index(b"\x28\x00\x01\x01US")
    put("dicom_declared_length.dcm", raw[: at + 4] + b"OB\0\0" + struct.pack("<I", 0xDADADADA) + raw[at + 8 :])
    # The dicom fuzz target's third out-of-memory input, as it found it: two stray bytes after the
    # file meta group's (0002,0001), which dicom-rs reads past, then (0002,0012) with the
    # unknown VR "Ub" declaring 4.1 GB.
    put("dicom_meta_declared_length.dcm", bytes(128) + bytes.fromhex(
        "4449434d02000000554c0400b0000000020001004f420000020000000001ff04020055491a00312e322e3834"
        "302e31303030382e352e312e342e312e312e34000200030055492000312e322e3832362e302e312e333638"
        "303034332e31302e313431372e39382e310200100055491600312e322e3834302e31303030382e312e322e"
        "312e3939020012005562fbbf5f9f02f601f4ac1e876d1a4cdb61ce2ecf7c0ffb3840c03369d14bb0c3094e"
        "718673ded725be0100"))
    # An odd length for a UL value, which dicom-rs reads as its whole words (44 of 47 bytes), so
    # the next header it reads starts inside the value; that header declares 3.6 GB. (The dicom
    # fuzz target found it: a walk that skipped the 47 bytes, as dicom-parser's lazy reader does,
    # missed that header.) For such a walk the bytes from the 47th make a harmless element of 218
    # bytes (3 zeros, then 218 bytes of filler), after which the real data set follows.
    implicit = dicom(ImplicitVRLittleEndian)
    begin = 144 + struct.unpack("<I", implicit[140:144])[0]
    odd = struct.pack("<HHI", 0, 0, 47) + bytes(44) + struct.pack("<HHI", 0x0008, 0x0001, 0xDADADADA) + bytes(3 + 218)
    put("dicom_odd_length_ul.dcm", implicit[:begin] + odd + implicit[begin:])
    # The same declared length inside a deflated data set: dicom-rs inflates as it reads, so the
    # lengths are checked on the inflated bytes (the dicom fuzz target's small deflated inputs
    # made it reserve hundreds of megabytes).
    deflated = dicom(DeflatedExplicitVRLittleEndian)
    start = 144 + struct.unpack("<I", deflated[140:144])[0]
    inner = zlib.decompress(deflated[start:], -15)
    at = inner.index(b"\x28\x00\x01\x01US")
    inner = inner[: at + 4] + b"OB\0\0" + struct.pack("<I", 0xDADADADA) + inner[at + 8 :]
    put("dicom_deflated_declared_length.dcm", deflated[:start] + raw_deflate(inner))
    # A deflate bomb: a data set whose pixel data, 300 MiB of zeros, deflates to 300 KB.
    huge = 300 << 20
    body = inner[:at] + b"\xe0\x7f\x10\x00OB\0\0" + struct.pack("<I", huge)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = squeeze.compress(body) + b"".join(squeeze.compress(bytes(1 << 20)) for _ in range(huge >> 20)) + squeeze.flush()
    put("dicom_deflate_bomb.dcm", deflated[:start] + bomb)
    # RLE fragments that dicom-rs 0.10.1's decoder indexed as they say, and panicked on (the dicom
    # fuzz target found the first): a segment of 10 bytes for 16 x 16 pixels, and a header
    # declaring 2^32 - 1 segments.
    rle8 = dict(BitsAllocated=8, BitsStored=8, HighBit=7)
    short = struct.pack("<16I", 1, 64, *[0] * 14) + bytes([9]) + bytes(range(10))
    put("dicom_rle_short_segment.dcm", dicom(RLELossless, PixelData=encapsulate([short]), **rle8))
    # 16-bit samples: two segments, the first out of the fragment, the second short. The decoder
    # reads the second first (a sample's low byte), so the short one panicked before the bad
    # range was refused (the dicom fuzz target found it).
    out_then_short = struct.pack("<16I", 2, 0x7000, 64, *[0] * 13) + bytes([9]) + bytes(range(10))
    put("dicom_rle_bad_then_short.dcm", dicom(RLELossless, PixelData=encapsulate([out_then_short])))
    # A baseline JPEG of 32 x 32 pixels in a DICOM that declares 16 x 16: dicom-rs's JPEG adapter
    # sized its output by the DICOM header and panicked copying the larger image in (the dicom
    # fuzz target found it, in a JPEG lossless file).
    picture = io.BytesIO()
    Image.new("L", (32, 32), 128).save(picture, format="JPEG", quality=90)
    put("dicom_jpeg_larger_than_header.dcm", dicom(JPEGBaseline8Bit, PixelData=encapsulate([picture.getvalue()]), **rle8))
    many = struct.pack("<16I", 0xFFFFFFFF, 64, *[0] * 14) + bytes([0x81, 0])
    put("dicom_rle_segment_count.dcm", dicom(RLELossless, PixelData=encapsulate([many]), **rle8))
    whole = dicom()
    put("dicom_truncated.dcm", whole[: len(whole) - 300])
    # A ZIP cut in half, and one whose entry inflates far past the size it declares.
    series = io.BytesIO()
    with zipfile.ZipFile(series, "w", zipfile.ZIP_DEFLATED) as z:
        for k in range(4):
            info = zipfile.ZipInfo(f"series/slice{k}.dcm", date_time=(2026, 12, 5, 0, 0, 0))
            z.writestr(info, dicom(ImagePositionPatient=["0", "0", str(k)], SOPInstanceUID=f"1.2.826.0.1.3680043.10.1417.99.1{k}"))
    data = series.getvalue()
    put("zip_cut.zip", data[: len(data) // 2])
    put("zip_lying_size.zip", lying_zip())


def lying_zip():
    """A ZIP whose one entry says it holds 1000 bytes but inflates to 64 MiB."""
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = raw.compress(bytes(64 << 20)) + raw.flush()
    name = b"slice.dcm"
    crc, declared = 0, 1000
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(body), declared, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(body), declared, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


# ------------------------------------------------------------------------------------------
# PyTorch checkpoints (the legacy format HD-BET ships in)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy(*objects):
    return b"".join(pickle.dumps(o, protocol=2) for o in objects)


def checkpoint_files(fold):
    put("ckpt_empty.model", b"")
    put("ckpt_random.model", bytes(random.Random(3).randrange(256) for _ in range(2048)))
    put("ckpt_zip_format.model", b"PK\x03\x04" + bytes(200))
    put("ckpt_wrong_magic.model", legacy(12345, 1001, {"little_endian": True}))
    put("ckpt_wrong_protocol.model", legacy(LEGACY_MAGIC, 7, {"little_endian": True}))
    put("ckpt_big_endian.model", legacy(LEGACY_MAGIC, 1001, {"little_endian": False}))
    # os.system("echo owned") as a pickle: bedside's pickle machine never calls a global, and
    # a checkpoint without a state_dict is refused.
    evil = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo ownedq\x01\x85q\x02Rq\x03."
    put("ckpt_pickle_os_system.model", legacy(LEGACY_MAGIC, 1001, {"little_endian": True}) + evil + pickle.dumps([], protocol=2))
    # An opcode torch.save never writes (INST: build an instance of a named class).
    inst = b"(ios\nsystem\nS'echo owned'\n."
    put("ckpt_pickle_inst_opcode.model", legacy(LEGACY_MAGIC, 1001, {"little_endian": True}) + inst)
    with open(fold, "rb") as f:
        put("ckpt_hdbet_cut.model", f.read(4096))


# ------------------------------------------------------------------------------------------
# Model packages (model.json + weights.safetensors), made from student-s

def safetensors_parts(data):
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def safetensors_join(header, body):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def package(name, model_json, weights):
    folder = os.path.join(HERE, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "model.json"), "w") as f:
        f.write(model_json)
    with open(os.path.join(folder, "weights.safetensors"), "wb") as f:
        f.write(weights)


def package_files():
    src = os.path.join(REPO, "models", "student-s")
    with open(os.path.join(src, "model.json")) as f:
        text = f.read()
    manifest = json.loads(text)
    with open(os.path.join(src, "weights.safetensors"), "rb") as f:
        weights = f.read()
    header, body = safetensors_parts(weights)
    names = sorted(k for k in header if k != "__metadata__")
    first = names[0]
    matrix = next(k for k in names if len(header[k]["shape"]) >= 2)

    def changed(**kv):
        m = dict(manifest)
        m.update(kv)
        return json.dumps(m, indent=2)

    # model.json is checked before the weights are read: these carry a placeholder.
    placeholder = b"weights never read"
    package("pkg_bad_json", text[: len(text) // 3], placeholder)
    package("pkg_unknown_format", changed(format="bedside-model/9"), placeholder)
    package("pkg_unknown_family", changed(family="resnet"), placeholder)
    package("pkg_absurd_filters", changed(hyperparameters={**manifest["hyperparameters"], "base_filters": 100000, "max_filters": None}), placeholder)
    # NaN in the first tensor.
    start, _ = header[first]["data_offsets"]
    nan = bytearray(body)
    nan[start : start + 4] = struct.pack("<f", math.nan)
    package("pkg_nan_weights", text, safetensors_join(header, bytes(nan)))
    # A convolution's weight with one more output channel than the network has.
    swapped = json.loads(json.dumps(header))
    shape = swapped[matrix]["shape"]
    shape[0] += 1
    count = 1
    for d in shape:
        count *= d
    # Re-lay the body so the new shape's bytes exist: the tensor grows.
    grown = {}
    out = b""
    for k in names:
        s, e = header[k]["data_offsets"]
        chunk = body[s:e] if k != matrix else bytes(count * 4)
        grown[k] = {**swapped[k], "data_offsets": [len(out), len(out) + len(chunk)]}
        out += chunk
    package("pkg_shape_mismatch", text, safetensors_join(grown, out))
    kept, out = {}, b""
    for k in names:
        if k == first:
            continue
        s, e = header[k]["data_offsets"]
        kept[k] = {**header[k], "data_offsets": [len(out), len(out) + e - s]}
        out += body[s:e]
    package("pkg_missing_tensor", text, safetensors_join(kept, out))
    package("pkg_truncated_weights", text, weights[: len(weights) // 2])
    package("pkg_absurd_header_length", text, struct.pack("<Q", 1 << 62) + weights[8:])
    package("pkg_weights_not_safetensors", text, b"\x89PNG\r\n\x1a\n" + bytes(200))


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    nifti_files()
    dicom_files()
    checkpoint_files(argv[0])
    package_files()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
