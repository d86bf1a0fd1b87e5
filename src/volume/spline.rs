//! Cubic B-spline resize of an image, as HD-BET resamples its input:
//! `skimage.transform.resize(image, shape, order=3, mode='edge',
//! anti_aliasing=False)`, which is `scipy.ndimage.zoom(order=3,
//! mode='nearest', grid_mode=True)` followed by clipping to the input's range.
//!
//! Written here because none of our kept libraries (Burn, faer) resizes with
//! splines, and matching scipy's boundary handling and coordinate convention
//! is the whole point; `tests/resample_vs_skimage.rs` checks it against
//! skimage on real volumes.
//!
//! How scipy does it, and so how this does it:
//! 1. each line is edge-padded by 12 samples (scipy's `_prepad_for_spline_filter`
//!    for mode 'nearest'), so the recursive prefilter's boundary start-up
//!    decays by |z|^12 ≈ 1e-7 before it reaches real data;
//! 2. the padded line is turned into B-spline coefficients by the classic
//!    causal + anti-causal recursive filter (Unser 1993; pole z = √3 − 2);
//! 3. output index `o` samples position `(o + 0.5)·n_in/n_out − 0.5` (voxel
//!    centres aligned) with the four cubic B-spline weights.
//!
//! All three steps are linear and act along one axis, so resizing axis by axis
//! gives the same result as scipy's single 3D pass (up to rounding). Lines are
//! filtered in f64, like scipy; the grid is stored as f32 between axes.

use super::resample::source_position;

/// Edge samples added on each side before prefiltering (scipy's `npad`).
const PAD: usize = 12;
/// The cubic B-spline's pole.
const POLE: f64 = -0.267_949_192_431_122_7; // sqrt(3) - 2

/// Where one output sample reads from along one axis: the first of four
/// coefficients (an index into the padded line) and their weights.
#[derive(Debug, Clone, Copy)]
struct CubicTap {
    first: usize,
    weights: [f64; 4],
}

fn cubic_taps(in_len: usize, out_len: usize) -> Vec<CubicTap> {
    (0..out_len)
        .map(|o| {
            let pos = source_position(o, in_len, out_len);
            let floor = pos.floor();
            let t = pos - floor;
            // Coefficients floor-1 ..= floor+2, shifted by the padding. For
            // pos >= -0.5 the first index is >= PAD - 2, so it never underflows.
            let first = (floor as i64 - 1 + PAD as i64).max(0) as usize;
            let s = 1.0 - t;
            let weights = [
                s * s * s / 6.0,
                (4.0 - 6.0 * t * t + 3.0 * t * t * t) / 6.0,
                (1.0 + 3.0 * t + 3.0 * t * t - 3.0 * t * t * t) / 6.0,
                t * t * t / 6.0,
            ];
            CubicTap { first, weights }
        })
        .collect()
}

/// Edge-pads `line` into `padded` and replaces it by its cubic B-spline
/// coefficients.
fn spline_coefficients(line: &[f64], padded: &mut Vec<f64>) {
    let (first, last) = (line[0], line[line.len() - 1]);
    padded.clear();
    padded.extend(std::iter::repeat_n(first, PAD));
    padded.extend_from_slice(line);
    padded.extend(std::iter::repeat_n(last, PAD));
    let c = padded.as_mut_slice();
    let n = c.len();
    let z = POLE;
    let gain = (1.0 - z) * (1.0 - 1.0 / z);
    c.iter_mut().for_each(|v| *v *= gain);
    // Causal start-up: the padded start is constant, so the infinite sum
    // Σ z^k c[k] of a constant continuation is exact: c[0] / (1 - z).
    c[0] /= 1.0 - z;
    for k in 1..n {
        c[k] += z * c[k - 1];
    }
    // Anti-causal start-up for a symmetric (mirror) continuation.
    c[n - 1] = z / (z * z - 1.0) * (c[n - 1] + z * c[n - 2]);
    for k in (0..n - 1).rev() {
        c[k] = z * (c[k + 1] - c[k]);
    }
}

/// Resizes one axis of an x-fastest grid to `new_len`, line by line. Along
/// `axis`, neighbours are `stride` apart; there are `stride * outer` lines.
fn resize_axis(data: &[f32], dims: [usize; 3], axis: usize, new_len: usize) -> Vec<f32> {
    let len = dims[axis];
    let stride: usize = dims[..axis].iter().product();
    let outer: usize = dims[axis + 1..].iter().product();
    let taps = cubic_taps(len, new_len);
    let mut out = vec![0.0f32; stride * new_len * outer];
    let mut line = vec![0.0f64; len];
    let mut padded = Vec::with_capacity(len + 2 * PAD);
    for o in 0..outer {
        let in_base = o * len * stride;
        let out_base = o * new_len * stride;
        for i in 0..stride {
            for (k, v) in line.iter_mut().enumerate() {
                *v = data[in_base + k * stride + i] as f64;
            }
            spline_coefficients(&line, &mut padded);
            for (k, tap) in taps.iter().enumerate() {
                let c = &padded[tap.first..tap.first + 4];
                let v: f64 = c.iter().zip(tap.weights).map(|(c, w)| c * w).sum();
                out[out_base + k * stride + i] = v as f32;
            }
        }
    }
    out
}

/// Cubic B-spline resize (skimage `resize(order=3, mode='edge',
/// anti_aliasing=False)`), clipped to the input's value range as skimage does.
///
/// Panics if `data.len()` is not the product of `dims` (a caller bug, as in
/// [`super::resample::trilinear`]).
pub fn cubic(data: &[f32], dims: [usize; 3], new_dims: [usize; 3]) -> Vec<f32> {
    let out_count = super::resample::checked_counts("cubic", data.len(), dims, new_dims);
    if dims == new_dims {
        return data.to_vec();
    }
    if data.is_empty() || out_count == 0 {
        return vec![0.0; out_count];
    }
    let (lo, hi) = data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mut grid = data.to_vec();
    let mut current = dims;
    for axis in 0..3 {
        // An unchanged axis is the identity (the spline interpolates its
        // samples), so it is skipped.
        if current[axis] != new_dims[axis] {
            grid = resize_axis(&grid, current, axis, new_dims[axis]);
            current[axis] = new_dims[axis];
        }
    }
    grid.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubic_polynomials_are_reproduced_away_from_the_edges() {
        // Cubic B-splines reproduce polynomials up to degree 3 exactly where
        // the edge padding is not felt.
        let n = 60;
        let f = |x: f64| 0.001 * x * x * x - 0.05 * x * x + 2.0 * x + 3.0;
        let data: Vec<f32> = (0..n).map(|i| f(i as f64) as f32).collect();
        let out = cubic(&data, [n, 1, 1], [90, 1, 1]);
        for (o, &v) in out.iter().enumerate().skip(25).take(40) {
            let x = source_position(o, n, 90);
            assert!((v as f64 - f(x)).abs() < 1e-3, "o={o}: {v} vs {}", f(x));
        }
    }

    #[test]
    fn samples_are_interpolated_at_integer_positions() {
        // Downsampling by an odd integer factor samples exact input positions.
        let data: Vec<f32> = (0..30).map(|i| ((i * 7919) % 13) as f32).collect();
        let out = cubic(&data, [30, 1, 1], [10, 1, 1]);
        for (o, &v) in out.iter().enumerate() {
            assert!((v - data[3 * o + 1]).abs() < 1e-4, "o={o}: {v} vs {}", data[3 * o + 1]);
        }
    }

    #[test]
    fn scipy_reference_values() {
        // skimage.transform.resize(np.array([0, 0, 1, 0, 0, 4, 2], np.float32), (11,),
        //                          order=3, mode='edge', anti_aliasing=False)
        let want = [
            0.025865182, 0.0, 0.077977464, 0.82813913, 0.86235648, 0.0, 0.0, 1.11070001,
            3.8391335, 3.2616763, 1.7508516,
        ];
        let out = cubic(&[0.0, 0.0, 1.0, 0.0, 0.0, 4.0, 2.0], [7, 1, 1], [11, 1, 1]);
        for (o, (&got, &w)) in out.iter().zip(&want).enumerate() {
            assert!((got - w).abs() < 1e-5, "o={o}: {got} vs {w}");
        }
    }

    #[test]
    fn output_stays_in_the_input_range_and_axes_are_independent() {
        let dims = [5, 4, 3];
        let data: Vec<f32> = (0..60).map(|i| if i % 7 == 0 { 10.0 } else { -1.0 }).collect();
        let out = cubic(&data, dims, [9, 4, 5]);
        assert_eq!(out.len(), 9 * 4 * 5);
        assert!(out.iter().all(|&v| (-1.0..=10.0).contains(&v)));
        // A grid constant along x stays constant along x.
        let planes: Vec<f32> = (0..60).map(|i| (i / 5) as f32).collect();
        let out = cubic(&planes, dims, [8, 6, 3]);
        for row in out.chunks(8) {
            assert!(row.iter().all(|&v| (v - row[0]).abs() < 1e-5));
        }
    }

    #[test]
    fn degenerate_grids() {
        assert_eq!(cubic(&[3.0], [1, 1, 1], [4, 1, 2]), vec![3.0; 8]);
        assert_eq!(cubic(&[], [0, 2, 2], [1, 1, 2]), vec![0.0; 2]);
        assert_eq!(cubic(&[1.0; 8], [2, 2, 2], [0, 3, 3]), Vec::<f32>::new());
    }
}
