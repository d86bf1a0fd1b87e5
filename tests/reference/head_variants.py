"""Reference tool for the resolution test (tests/resolution.rs): the same head on other grids.

  head_variants.py resample IMAGE OUT_DIR SPACING [SPACING ...]
      IMAGE resampled to isotropic SPACING mm over the same field of view (cubic B-spline, scipy's
      order 3, the file's own orientation). Prints one line per variant: SPACING<TAB>PATH.
  head_variants.py probe OUT_DIR FAMILIES IMAGE:MASK [IMAGE:MASK ...]
      The probes of issue 17 for each pair, image and mask alike (same brain, same mask), for the
      comma-separated FAMILIES: fov (as given; cropped to the mask's box plus 15 and 25 mm; padded
      with 20 and 40 mm of air), orientation (stored as LPS, LIA, PIR), resolution (isotropic 0.5,
      0.7, 1, 1.5, 2 mm, and 1×1×3 mm, over the same field of view), conform (256³ at 1 mm, LIA,
      centred, as FreeSurfer conforms), partial (a slab that holds only the lower half of the
      brain, cut across the head's S axis, as a scan of limited coverage). Prints one line per variant:
      STEM<TAB>VARIANT<TAB>AIR<TAB>IMAGE:MASK, AIR being the share of voxels within a tenth of the
      way from the minimum to the brain's mean.
  head_variants.py dice MASK REFERENCE
      The Dice of two masks' foregrounds on the coarser of their grids: the finer one is brought
      onto it by nearest neighbour through both affines (on the finer grid, a coarse mask's
      staircase alone costs ~0.015 Dice at 2 mm against 1 mm). Prints the Dice.
"""
import os
import sys

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates


def sample(src, shape, affine, order, fill=None):
    """src's voxels at the centres of a grid (shape, affine), through world coordinates. Past src's
    edges: the nearest edge voxel, or `fill` where given (a grid that reaches beyond the scan)."""
    data = np.asarray(src.dataobj, dtype=np.float32).reshape(src.shape[:3])
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    to_src = np.linalg.inv(src.affine) @ affine
    coords = to_src[:3, :3] @ ijk + to_src[:3, 3:4]
    mode = {"mode": "nearest"} if fill is None else {"mode": "grid-constant", "cval": fill}
    return map_coordinates(data, coords, order=order, **mode).reshape(shape)


def resample(image, out_dir, spacings):
    img = nib.load(image)
    zooms = np.array(img.header.get_zooms()[:3], dtype=float)
    extent = np.array(img.shape[:3]) * zooms
    stem = os.path.basename(image).split(".")[0]
    for s in spacings:
        shape = tuple(int(round(e / s)) for e in extent)
        affine = img.affine.copy()
        affine[:3, :3] = img.affine[:3, :3] / zooms * s
        # The same field of view: the first voxel's corner stays where it was.
        affine[:3, 3] = img.affine[:3, 3] + img.affine[:3, :3] @ (-0.5 * np.ones(3)) - affine[:3, :3] @ (-0.5 * np.ones(3))
        out = nib.Nifti1Image(sample(img, shape, affine, 3).astype(np.float32), affine)
        out.set_qform(affine, 1)
        out.set_sform(affine, 1)
        path = os.path.join(out_dir, f"{stem}-{s}mm.nii.gz")
        nib.save(out, path)
        print(f"{s}\t{path}")


def save_pair(path_stem, image, mask, affine):
    for data, kind in ((image.astype(np.float32), "image"), (mask.astype(np.uint8), "mask")):
        out = nib.Nifti1Image(data, affine)
        out.set_qform(affine, 1)
        out.set_sform(affine, 1)
        nib.save(out, f"{path_stem}-{kind}.nii.gz")
    return f"{path_stem}-image.nii.gz:{path_stem}-mask.nii.gz"


def on_grid(img, msk, shape, affine, air=None):
    """Image (cubic) and mask (nearest) sampled on another grid; past the scan's edges, `air` (and no
    brain) where given, else the edge voxels repeated."""
    return sample(img, shape, affine, 3, air), sample(msk, shape, affine, 0, None if air is None else 0) > 0


def corner_kept(affine, zooms, spacing):
    """An affine with voxel size `spacing` whose first voxel's corner is `affine`'s."""
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] / zooms * np.asarray(spacing, dtype=float)
    out[:3, 3] = affine[:3, 3] - 0.5 * affine[:3, :3].sum(1) + 0.5 * out[:3, :3].sum(1)
    return out


def probe(out_dir, families, pairs):
    for pair in pairs:
        image_path, mask_path = pair.split(":")
        img, msk = nib.load(image_path), nib.load(mask_path)
        x = np.asarray(img.dataobj, dtype=np.float32).reshape(img.shape[:3])
        y = np.asarray(msk.dataobj).reshape(msk.shape[:3]) > 0
        if x.shape != y.shape:
            sys.exit(f"{pair}: the mask's grid {y.shape} is not the image's {x.shape}")
        zooms = np.array(img.header.get_zooms()[:3], dtype=float)
        air_value, tissue = float(x.min()), float(x[y].mean())
        stem = os.path.basename(image_path).split(".")[0]

        def emit(name, data, mask, affine):
            air = float((data <= air_value + 0.1 * (tissue - air_value)).mean())
            print(f"{stem}\t{name}\t{air:.3f}\t{save_pair(os.path.join(out_dir, f'{stem}-{name}'), data, mask, affine)}", flush=True)

        if "fov" in families:
            emit("as-given", x, y, img.affine)
            lo_box, hi_box = np.argwhere(y).min(0), np.argwhere(y).max(0) + 1
            for margin_mm in (15, 25):
                m = np.ceil(margin_mm / zooms).astype(int)
                lo, hi = np.maximum(lo_box - m, 0), np.minimum(hi_box + m, x.shape)
                box = tuple(slice(a, b) for a, b in zip(lo, hi))
                affine = img.affine.copy()
                affine[:3, 3] += img.affine[:3, :3] @ lo
                emit(f"crop-{margin_mm}mm", x[box], y[box], affine)
            for pad_mm in (20, 40):
                p = [int(k) for k in np.ceil(pad_mm / zooms)]
                affine = img.affine.copy()
                affine[:3, 3] -= img.affine[:3, :3] @ np.asarray(p, dtype=float)
                emit(f"pad-{pad_mm}mm", np.pad(x, [(k, k) for k in p], constant_values=air_value), np.pad(y, [(k, k) for k in p]), affine)
        if "orientation" in families:
            start = nib.orientations.io_orientation(img.affine)
            for codes in ("LPS", "LIA", "PIR"):
                t = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(codes)))
                turned = img.as_reoriented(t)
                emit(codes, np.asarray(turned.dataobj, dtype=np.float32), nib.orientations.apply_orientation(y, t), turned.affine)
        if "resolution" in families:
            extent = np.array(x.shape) * zooms
            for spacing in ((0.5,) * 3, (0.7,) * 3, (1.0,) * 3, (1.5,) * 3, (2.0,) * 3, (1.0, 1.0, 3.0)):
                shape = tuple(int(round(e / s)) for e, s in zip(extent, spacing))
                affine = corner_kept(img.affine, zooms, spacing)
                name = "x".join(f"{s:g}" for s in spacing) if len(set(spacing)) > 1 else f"{spacing[0]:g}mm"
                emit(name, *on_grid(img, msk, shape, affine), affine)
        if "partial" in families:
            s_axis = int(np.argmax(np.abs(img.affine[2, :3])))  # the voxel axis that runs along world z
            lo_box, hi_box = np.argwhere(y).min(0), np.argwhere(y).max(0) + 1
            middle = (lo_box[s_axis] + hi_box[s_axis]) // 2
            keep = [slice(None)] * 3
            # Which end is superior: the half that lies lower in world z stays.
            keep[s_axis] = slice(0, middle) if img.affine[2, s_axis] > 0 else slice(middle, x.shape[s_axis])
            affine = img.affine.copy()
            affine[:3, 3] += img.affine[:3, :3] @ np.array([k.start or 0 for k in keep], dtype=float)
            emit("partial-lower-half", x[tuple(keep)], y[tuple(keep)], affine)
        if "conform" in families:
            lia = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
            centre = img.affine[:3, :3] @ ((np.array(x.shape) - 1) / 2) + img.affine[:3, 3]
            affine = np.eye(4)
            affine[:3, :3] = lia
            affine[:3, 3] = centre - lia @ np.full(3, 127.5)
            # FreeSurfer fills what the scan did not cover with 0, its air: so air here, not
            # the scan's edge slices repeated (which would grow a neck 40 mm long).
            emit("conformed", *on_grid(img, msk, (256, 256, 256), affine, air_value), affine)


def dice(mask, reference):
    voxel = lambda img: abs(np.linalg.det(img.affine[:3, :3]))
    fine, coarse = sorted((nib.load(mask), nib.load(reference)), key=voxel)
    a = sample(fine, coarse.shape[:3], coarse.affine, 0) > 0
    b = np.asarray(coarse.dataobj).reshape(coarse.shape[:3]) > 0
    print(f"{2.0 * (a & b).sum() / (a.sum() + b.sum()):.6f}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "resample":
        resample(args[0], args[1], [float(s) for s in args[2:]])
    elif cmd == "probe":
        probe(args[0], set(args[1].split(",")), args[2:])
    elif cmd == "dice":
        dice(args[0], args[1])
    else:
        sys.exit(__doc__)
