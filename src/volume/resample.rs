//! Resizing 3D grids to a new shape (trilinear for images, nearest for
//! labels), choosing a shape for a target spacing, and padding/cropping.
//!
//! Coordinates follow `skimage.transform.resize` (which calls
//! `scipy.ndimage.zoom(..., grid_mode=True)`): voxel *centres* are aligned, so
//! output index `o` samples input position `(o + 0.5) * n_in / n_out - 0.5`.
//! Positions outside the grid are clamped to the edge (skimage `mode='edge'`,
//! as HD-BET uses). All grids are x-fastest: index = i + nx * (j + ny * k).

/// Where one output index samples along one axis: the two neighbouring input
/// indices (already clamped) and the weight of the upper one.
#[derive(Debug, Clone, Copy)]
struct Tap {
    lower: usize,
    upper: usize,
    upper_weight: f32,
}

/// skimage/scipy grid-mode source coordinate for output index `out_index`.
pub(super) fn source_position(out_index: usize, in_len: usize, out_len: usize) -> f64 {
    (out_index as f64 + 0.5) * (in_len as f64 / out_len as f64) - 0.5
}

/// Linear-interpolation taps for one axis, computed once per axis so the
/// voxel loop is pure index arithmetic.
fn linear_taps(in_len: usize, out_len: usize) -> Vec<Tap> {
    let last = in_len - 1;
    (0..out_len)
        .map(|o| {
            // Clamping the position is the same as edge-replicating the data.
            let pos = source_position(o, in_len, out_len).clamp(0.0, last as f64);
            let lower = (pos.floor() as usize).min(last);
            let upper = (lower + 1).min(last);
            Tap {
                lower,
                upper,
                upper_weight: (pos - lower as f64) as f32,
            }
        })
        .collect()
}

/// Nearest-neighbour source index for one axis: scipy's order-0 rule
/// `floor(pos + 0.5)` (ties round up), clamped to the grid.
fn nearest_indices(in_len: usize, out_len: usize) -> Vec<usize> {
    let last = in_len - 1;
    (0..out_len)
        .map(|o| {
            let pos = (source_position(o, in_len, out_len) + 0.5).floor();
            pos.clamp(0.0, last as f64) as usize
        })
        .collect()
}

/// Voxel count of the output after checking that `len` matches `dims`.
///
/// These functions take grids the program built itself, never raw file
/// input, so a length mismatch is a bug in the caller and panics with a
/// clear message (like an out-of-range slice index would).
pub(super) fn checked_counts(what: &str, len: usize, dims: [usize; 3], new_dims: [usize; 3]) -> usize {
    let count = |d: [usize; 3]| d.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    let expected = count(dims).unwrap_or_else(|| panic!("{what}: grid {dims:?} overflows usize"));
    assert_eq!(
        len, expected,
        "{what}: data length does not match grid {dims:?}"
    );
    count(new_dims).unwrap_or_else(|| panic!("{what}: grid {new_dims:?} overflows usize"))
}

/// Trilinear resize of an image (skimage `resize(order=1, mode='edge',
/// anti_aliasing=False)`).
///
/// Panics if `data.len()` is not the product of `dims`.
pub fn trilinear(data: &[f32], dims: [usize; 3], new_dims: [usize; 3]) -> Vec<f32> {
    let out_count = checked_counts("trilinear", data.len(), dims, new_dims);
    if dims == new_dims {
        return data.to_vec();
    }
    if data.is_empty() {
        // Nothing to interpolate from (an empty axis): the result is all zeros.
        return vec![0.0; out_count];
    }
    let [nx, ny, _] = dims;
    let taps_x = linear_taps(dims[0], new_dims[0]);
    let taps_y = linear_taps(dims[1], new_dims[1]);
    let taps_z = linear_taps(dims[2], new_dims[2]);
    let slice = nx * ny;

    let mut out = Vec::with_capacity(out_count);
    for tz in &taps_z {
        for ty in &taps_y {
            // The four input rows surrounding this output row.
            let row = |z: usize, y: usize| z * slice + y * nx;
            let r00 = row(tz.lower, ty.lower);
            let r01 = row(tz.lower, ty.upper);
            let r10 = row(tz.upper, ty.lower);
            let r11 = row(tz.upper, ty.upper);
            let (wy, wz) = (ty.upper_weight, tz.upper_weight);
            for tx in &taps_x {
                let sample = |r: usize| {
                    let a = data[r + tx.lower];
                    let b = data[r + tx.upper];
                    a + (b - a) * tx.upper_weight
                };
                let y0 = {
                    let a = sample(r00);
                    a + (sample(r01) - a) * wy
                };
                let y1 = {
                    let a = sample(r10);
                    a + (sample(r11) - a) * wy
                };
                out.push(y0 + (y1 - y0) * wz);
            }
        }
    }
    out
}

/// Nearest-neighbour resize of a label map (skimage `resize(order=0)`; for
/// order 0 every sampled position lies inside the grid, so the boundary mode
/// does not matter).
///
/// Panics if `labels.len()` is not the product of `dims`.
pub fn nearest(labels: &[u8], dims: [usize; 3], new_dims: [usize; 3]) -> Vec<u8> {
    let out_count = checked_counts("nearest", labels.len(), dims, new_dims);
    if dims == new_dims {
        return labels.to_vec();
    }
    if labels.is_empty() {
        return vec![0; out_count];
    }
    let [nx, ny, _] = dims;
    let xs = nearest_indices(dims[0], new_dims[0]);
    let ys = nearest_indices(dims[1], new_dims[1]);
    let zs = nearest_indices(dims[2], new_dims[2]);
    let mut out = Vec::with_capacity(out_count);
    for &z in &zs {
        for &y in &ys {
            let row = &labels[(z * ny + y) * nx..][..nx];
            out.extend(xs.iter().map(|&x| row[x]));
        }
    }
    out
}

/// Shape after resampling from `spacing` to `target_spacing`, by HD-BET's
/// `resize_image` rule: round(old_spacing / new_spacing * old_dim) per axis
/// (never below 1; invalid spacings keep the old size).
pub fn shape_for_spacing(
    dims: [usize; 3],
    spacing: [f64; 3],
    target_spacing: [f64; 3],
) -> [usize; 3] {
    std::array::from_fn(|axis| {
        let size = spacing[axis] / target_spacing[axis] * dims[axis] as f64;
        if size.is_finite() && size > 0.0 {
            // Python's round() is half-to-even.
            (round_half_even(size) as usize).max(1)
        } else {
            dims[axis]
        }
    })
}

fn round_half_even(x: f64) -> f64 {
    let rounded = x.round();
    if (x - x.trunc()).abs() == 0.5 && rounded % 2.0 != 0.0 {
        rounded - x.signum()
    } else {
        rounded
    }
}

/// Pads at the upper end of each axis with `fill`, or crops the upper end, so
/// that voxel (0, 0, 0) stays where it was.
///
/// Panics if `data.len()` is not the product of `dims`.
pub fn pad_or_crop<T: Copy>(data: &[T], dims: [usize; 3], new_dims: [usize; 3], fill: T) -> Vec<T> {
    let out_count = checked_counts("pad_or_crop", data.len(), dims, new_dims);
    let [nx, ny, _] = dims;
    let copy_x = nx.min(new_dims[0]);
    let copy_y = ny.min(new_dims[1]);
    let copy_z = dims[2].min(new_dims[2]);
    let mut out = vec![fill; out_count];
    for z in 0..copy_z {
        for y in 0..copy_y {
            let src = (z * ny + y) * nx;
            let dst = (z * new_dims[1] + y) * new_dims[0];
            out[dst..dst + copy_x].copy_from_slice(&data[src..src + copy_x]);
        }
    }
    out
}

/// Pads or crops each axis symmetrically (the odd voxel at the upper end), as
/// HD-BET's `padorcut`: the centres of the two grids stay aligned.
///
/// Panics if `data.len()` is not the product of `dims`.
pub fn centre_pad_or_crop<T: Copy>(data: &[T], dims: [usize; 3], new_dims: [usize; 3], fill: T) -> Vec<T> {
    let out_count = checked_counts("centre_pad_or_crop", data.len(), dims, new_dims);
    // Per axis: (first source index, first destination index, count).
    let span = |axis: usize| {
        let (old, new) = (dims[axis], new_dims[axis]);
        if old >= new {
            ((old - new) / 2, 0, new)
        } else {
            (0, (new - old) / 2, old)
        }
    };
    let ((sx, dx, cx), (sy, dy, cy), (sz, dz, cz)) = (span(0), span(1), span(2));
    let mut out = vec![fill; out_count];
    for z in 0..cz {
        for y in 0..cy {
            let src = ((sz + z) * dims[1] + sy + y) * dims[0] + sx;
            let dst = ((dz + z) * new_dims[1] + dy + y) * new_dims[0] + dx;
            out[dst..dst + cx].copy_from_slice(&data[src..src + cx]);
        }
    }
    out
}

/// Pads the upper end of each axis up to `new_dims` (the name callers use
/// when growing a grid to a network-friendly size); same as [`pad_or_crop`].
pub fn pad_upper<T: Copy>(data: &[T], dims: [usize; 3], new_dims: [usize; 3], fill: T) -> Vec<T> {
    pad_or_crop(data, dims, new_dims, fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(dims: [usize; 3], f: impl Fn(f64, f64, f64) -> f64) -> Vec<f32> {
        let mut v = Vec::new();
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    v.push(f(i as f64, j as f64, k as f64) as f32);
                }
            }
        }
        v
    }

    #[test]
    fn identity_resize_is_exact() {
        let dims = [4, 3, 5];
        let data = ramp(dims, |i, j, k| i * 7.0 - j + k * k);
        assert_eq!(trilinear(&data, dims, dims), data);
        let labels: Vec<u8> = (0..60).map(|i| (i % 5) as u8).collect();
        assert_eq!(nearest(&labels, dims, dims), labels);
    }

    #[test]
    fn linear_ramp_is_reproduced_inside_the_grid() {
        // A linear function is interpolated exactly wherever no clamping happens.
        let dims = [10, 8, 6];
        let new_dims = [20, 4, 6];
        let f = |i: f64, j: f64, k: f64| 2.0 * i + 3.0 * j - k + 1.0;
        let out = trilinear(&ramp(dims, f), dims, new_dims);
        for k in 0..new_dims[2] {
            for j in 0..new_dims[1] {
                for i in 0..new_dims[0] {
                    let x = source_position(i, dims[0], new_dims[0]).clamp(0.0, 9.0);
                    let y = source_position(j, dims[1], new_dims[1]);
                    let z = k as f64;
                    let got = out[i + new_dims[0] * (j + new_dims[1] * k)] as f64;
                    assert!((got - f(x, y, z)).abs() < 1e-4, "({i},{j},{k}): {got}");
                }
            }
        }
        // Upsampling by 2 along x: first output sits at -0.25 → clamped to the edge.
        assert_eq!(out[0], f(0.0, 0.5, 0.0) as f32);
        assert_eq!(out[1], f(0.25, 0.5, 0.0) as f32);
    }

    #[test]
    fn nearest_matches_scipy_order0() {
        // scipy.ndimage.zoom([0..5], 2, order=0, grid_mode=True, mode='grid-constant')
        //   -> [0 0 1 1 2 2 3 3 4 4]; downsampling 6 → 3 picks 1, 3, 5 (ties round up).
        let up = nearest(&[0, 1, 2, 3, 4], [5, 1, 1], [10, 1, 1]);
        assert_eq!(up, vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        let down = nearest(&[0, 1, 2, 3, 4, 5], [6, 1, 1], [3, 1, 1]);
        assert_eq!(down, vec![1, 3, 5]);
        let z = nearest(&[7, 9], [1, 1, 2], [1, 1, 4]);
        assert_eq!(z, vec![7, 7, 9, 9]);
    }

    #[test]
    fn shape_for_spacing_rounds_like_python() {
        assert_eq!(
            shape_for_spacing([181, 217, 181], [1.0; 3], [1.5; 3]),
            [121, 145, 121]
        );
        assert_eq!(
            shape_for_spacing([5, 7, 3], [0.5, 1.0, 2.0], [1.0; 3]),
            [2, 7, 6]
        );
        assert_eq!(
            shape_for_spacing([4, 4, 4], [1.0, 0.0, f64::NAN], [1.0; 3]),
            [4, 4, 4]
        );
    }

    #[test]
    fn pad_then_crop_round_trips() {
        let dims = [3, 2, 2];
        let data: Vec<i32> = (0..12).collect();
        let padded = pad_upper(&data, dims, [4, 3, 3], -1);
        assert_eq!(padded.len(), 36);
        assert_eq!(&padded[..4], &[0, 1, 2, -1]);
        assert_eq!(&padded[4..8], &[3, 4, 5, -1]);
        assert_eq!(&padded[8..12], &[-1, -1, -1, -1]);
        assert_eq!(pad_or_crop(&padded, [4, 3, 3], dims, 0), data);
    }

    #[test]
    fn centre_pad_or_crop_is_padorcut() {
        // padorcut(np.arange(5), [3]) -> [1, 2, 3]; padorcut(np.arange(4), [3]) -> [0, 1, 2];
        // padorcut(np.arange(2), [5]) -> [0, 0, 1, 0, 0].
        let row = |v: &[i32], n: usize| centre_pad_or_crop(v, [v.len(), 1, 1], [n, 1, 1], 0);
        assert_eq!(row(&[0, 1, 2, 3, 4], 3), vec![1, 2, 3]);
        assert_eq!(row(&[0, 1, 2, 3], 3), vec![0, 1, 2]);
        assert_eq!(row(&[7, 8], 5), vec![0, 7, 8, 0, 0]);
        // 3D: crop x by one (upper end), pad y by one (upper end), crop z 3 → 1.
        let data: Vec<i32> = (0..3 * 2 * 3).collect();
        let out = centre_pad_or_crop(&data, [3, 2, 3], [2, 3, 1], -1);
        assert_eq!(out, vec![6, 7, 9, 10, -1, -1]);
    }

    #[test]
    #[should_panic(expected = "data length does not match")]
    fn wrong_length_is_a_caller_bug() {
        trilinear(&[0.0; 5], [2, 2, 2], [3, 3, 3]);
    }

    #[test]
    fn empty_grids_do_not_panic() {
        assert_eq!(nearest(&[0; 8], [2, 2, 2], [0, 3, 3]), Vec::<u8>::new());
        assert_eq!(trilinear(&[], [0, 2, 2], [1, 1, 2]), vec![0.0; 2]);
        assert_eq!(
            pad_or_crop(&[1u8; 8], [2, 2, 2], [0, 2, 2], 0),
            Vec::<u8>::new()
        );
    }
}
