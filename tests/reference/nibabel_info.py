#!/usr/bin/env python3
"""Print what nibabel sees in NIfTI files, as JSON, for comparison with `bedside info`.

Usage:
    python tests/reference/nibabel_info.py FILE.nii[.gz] [FILE ...] > reference.json

Requires nibabel 5.x and numpy. Output is a JSON list (one object per file, in
argument order) with keys:

    path         the path exactly as given on the command line
    shape        [nx, ny, nz]: the first three dims (padded with 1 for 1D/2D images)
    volumes      product of dims beyond the third (1 for a plain 3D image);
                 bedside refuses files where this is > 1
    affine       4x4 nested list, ``img.affine`` (= header.get_best_affine())
    orientation  ``"".join(nib.aff2axcodes(img.affine))``, '?' for an axis with
                 no direction, e.g. "RAS", "LPS"
    datatype     on-disk dtype name without byte order, e.g. "int16" (not ">i2")
    min, max, mean
                 numpy min/max/mean of ``img.get_fdata()`` (scaled, float64);
                 null for multi-volume files (which bedside refuses) and for
                 non-finite results (JSON has no NaN/inf)

Deterministic: no randomness, keys sorted, floats printed by json (repr precision).
"""

import json
import math
import sys

import nibabel as nib
import numpy as np


def finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def describe(path):
    img = nib.load(path)
    full_shape = tuple(int(d) for d in img.shape)
    shape = list(full_shape[:3]) + [1] * max(0, 3 - len(full_shape))
    volumes = int(np.prod(full_shape[3:], dtype=np.int64)) if len(full_shape) > 3 else 1
    affine = np.asarray(img.affine, dtype=np.float64)
    codes = nib.aff2axcodes(affine)
    info = {
        "path": path,
        "shape": shape,
        "volumes": volumes,
        "affine": affine.tolist(),
        "orientation": "".join(c if c is not None else "?" for c in codes),
        "datatype": img.get_data_dtype().name,
        "min": None,
        "max": None,
        "mean": None,
    }
    if volumes == 1:
        data = img.get_fdata(dtype=np.float64)
        info["min"] = finite_or_none(data.min())
        info["max"] = finite_or_none(data.max())
        info["mean"] = finite_or_none(data.mean())
    return info


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps([describe(p) for p in argv], indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
