#!/usr/bin/env python3
"""Print what nibabel sees in NIfTI files, as JSON, for comparison with `bedside info`.

Usage:
    python tests/reference/nibabel_info.py FILE.nii[.gz][#N] [FILE ...] > reference.json

Requires nibabel 5.x and numpy. Output is a JSON list (one object per file, in
argument order) with keys:

    path         the path as given on the command line, without any "#N"
    shape        ``img.shape``: every dimension, a 4D series ending with its
                 number of volumes
    volume_shape [nx, ny, nz]: the first three dims (padded with 1 for 1D/2D images)
    volumes      product of dims beyond the third (1 for a plain 3D image)
    volume       N of "FILE#N" (0 without it): the volume the statistics describe
    time_step    ``header.get_zooms()[3]`` for an image of 4 or more dimensions, else null
    time_unit    ``header.get_xyzt_units()[1]`` when time_step is given, else null
    affine       4x4 nested list, ``img.affine`` (= header.get_best_affine())
    orientation  ``"".join(nib.aff2axcodes(img.affine))``, '?' for an axis with
                 no direction, e.g. "RAS", "LPS"
    datatype     on-disk dtype name without byte order, e.g. "int16" (not ">i2")
    min, max, mean
                 numpy nanmin/nanmax/nanmean of volume N of ``img.get_fdata()``
                 (scaled, float64; the volumes beyond the third dimension taken
                 in storage order); null for non-finite results (every voxel
                 NaN, an infinite voxel: JSON has no NaN/inf)
    nan_voxels   how many voxels of that volume are NaN

Deterministic: no randomness, keys sorted, floats printed by json (repr precision).
"""

import json
import math
import sys
import warnings

import nibabel as nib
import numpy as np


def finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def describe(arg):
    path, _, index = arg.partition("#")
    index = int(index or 0)
    img = nib.load(path)
    full_shape = tuple(int(d) for d in img.shape)
    shape = list(full_shape[:3]) + [1] * max(0, 3 - len(full_shape))
    volumes = int(np.prod(full_shape[3:], dtype=np.int64)) if len(full_shape) > 3 else 1
    affine = np.asarray(img.affine, dtype=np.float64)
    codes = nib.aff2axcodes(affine)
    timed = len(full_shape) >= 4
    data = img.get_fdata(dtype=np.float64).reshape(tuple(shape) + (volumes,), order="F")[..., index]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        stats = [finite_or_none(f(data)) for f in (np.nanmin, np.nanmax, np.nanmean)]
    return {
        "path": path,
        "shape": list(full_shape),
        "volume_shape": shape,
        "volumes": volumes,
        "volume": index,
        "time_step": float(img.header.get_zooms()[3]) if timed else None,
        "time_unit": img.header.get_xyzt_units()[1] if timed else None,
        "affine": affine.tolist(),
        "orientation": "".join(c if c is not None else "?" for c in codes),
        "datatype": img.get_data_dtype().name,
        "min": stats[0],
        "max": stats[1],
        "mean": stats[2],
        "nan_voxels": int(np.isnan(data).sum()),
    }


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps([describe(p) for p in argv], indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
