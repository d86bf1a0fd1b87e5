//! Trilinear ×2 upsampling (align_corners, as PyTorch's `Upsample` in HD-BET
//! and the students) on plain f32 slices.
//!
//! The model code's version (`model::upsample`) is built from Burn
//! operations so that it trains: per axis two gathers, a subtraction, a
//! multiplication and an addition, each a pass with its own allocation,
//! and a gather along the innermost axis reads with a stride. Measured in
//! Chromium on one worker it took 6.0 s of HD-BET's 63 s on the sample and
//! 1.0 s of student-s's 3.1 s. Here each axis is one pass that reads whole
//! rows or planes in order. The arithmetic is the same, `a + (b − a) · t`
//! per axis in the same axis order, so the result is the same bit for bit.
//!
//! For training, [`trilinear_x2_adjoint`] is its backward pass: Burn's is
//! the adjoint of each gather, a scatter-add (`select_assign`) per tap and
//! axis, which was a tenth of a student-s training step natively.

/// Each output index's two source indices and weight along an axis of `n`
/// growing to `2n`, with the corners aligned.
fn taps(n: usize) -> Vec<(usize, usize, f32)> {
    let (left, right, weight) = crate::model::upsample::align_corners_taps(n, 2 * n);
    left.iter().zip(&right).zip(&weight).map(|((&l, &r), &t)| (l as usize, r as usize, t)).collect()
}

/// `a + (b − a) · t`, element by element, into `out`.
#[inline(always)]
fn lerp_into(out: &mut [f32], a: &[f32], b: &[f32], t: f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + (b - a) * t;
    }
}

/// Doubles one axis of `x`, seen as `[outer][n][inner]`.
fn axis_x2(x: &[f32], outer: usize, n: usize, inner: usize) -> Vec<f32> {
    let taps = taps(n);
    let mut out = vec![0.0f32; outer * 2 * n * inner];
    let per_outer = |(o, dst): (usize, &mut [f32])| {
        let src = &x[o * n * inner..(o + 1) * n * inner];
        if inner == 1 {
            for (j, &(l, r, t)) in taps.iter().enumerate() {
                dst[j] = src[l] + (src[r] - src[l]) * t;
            }
        } else {
            for (row, &(l, r, t)) in dst.chunks_exact_mut(inner).zip(&taps) {
                lerp_into(row, &src[l * inner..(l + 1) * inner], &src[r * inner..(r + 1) * inner], t);
            }
        }
    };
    super::for_each_chunk(&mut out, 2 * n * inner, per_outer);
    out
}

/// Trilinear ×2 of NCDHW `x` of shape `[n, c, d, h, w]`, as `[n, c, 2d, 2h, 2w]`:
/// depth, then height, then width, as `model::upsample` does.
pub fn trilinear_x2(x: &[f32], [n, c, d, h, w]: [usize; 5]) -> Vec<f32> {
    assert_eq!(x.len(), n * c * d * h * w, "upsample input size");
    let x = axis_x2(x, n * c, d, h * w);
    let x = axis_x2(&x, n * c * 2 * d, h, w);
    axis_x2(&x, n * c * 2 * d * 2 * h, w, 1)
}

/// The adjoint of [`axis_x2`]: `dy` seen as `[outer][2n][inner]` back to
/// `[outer][n][inner]`, each output's gradient shared between its two
/// sources as `dy − dy·t` and `dy·t` (Burn's gradients of `a + (b − a)·t`).
fn axis_x2_adjoint(dy: &[f32], outer: usize, n: usize, inner: usize) -> Vec<f32> {
    let taps = taps(n);
    let mut dx = vec![0.0f32; outer * n * inner];
    let per_outer = |(o, dst): (usize, &mut [f32])| {
        let src = &dy[o * 2 * n * inner..(o + 1) * 2 * n * inner];
        for (row, &(l, r, t)) in src.chunks_exact(inner).zip(&taps) {
            for (k, &g) in row.iter().enumerate() {
                let to_right = g * t;
                dst[l * inner + k] += g - to_right;
                dst[r * inner + k] += to_right;
            }
        }
    };
    super::for_each_chunk(&mut dx, n * inner, per_outer);
    dx
}

/// The gradient of [`trilinear_x2`]'s input from its output's gradient `dy`
/// (`[n, c, 2d, 2h, 2w]`): the axes' adjoints in reverse order.
pub fn trilinear_x2_adjoint(dy: &[f32], [n, c, d, h, w]: [usize; 5]) -> Vec<f32> {
    assert_eq!(dy.len(), n * c * 8 * d * h * w, "upsample gradient size");
    let g = axis_x2_adjoint(dy, n * c * 2 * d * 2 * h, w, 1);
    let g = axis_x2_adjoint(&g, n * c * 2 * d, h, w);
    axis_x2_adjoint(&g, n * c, d, h * w)
}
