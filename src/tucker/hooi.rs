//! Tucker-2 of a kernel `[out, in, k…]` on its two channel modes, by HOOI
//! (higher-order orthogonal iteration) from an SVD start.
//!
//! This is what tensorly's `partial_tucker(W, rank=[r_out, r_in],
//! modes=(0, 1), init='svd')` computes, step for step, so that errors can be
//! compared with it: the same start (leading left singular vectors of each
//! unfolding of W), the same sweep order (the output factor first, then the
//! input factor with the new output factor), the same error after each sweep
//! (`sqrt(|‖W‖² − ‖G‖²|) / ‖W‖`, exact because the factors are orthonormal),
//! the same stopping rule (from the third sweep on, when two consecutive errors
//! differ by less than the tolerance) and the same signs (each factor column
//! turned so that its largest entry is positive, like tensorly's `svd_flip`).
//! The spatial modes are left whole: `W ≈ G ×₀ U_out ×₁ U_in`, with the core
//! `G` of shape `[r_out, r_in, k…]`.
//!
//! Arithmetic is f64 whatever the weights were stored in: the error formula
//! subtracts two nearly equal squared norms, which f32 cannot resolve when the
//! error is small.

use faer::{Mat, MatRef};

/// When HOOI stops.
#[derive(Debug, Clone, PartialEq)]
pub struct HooiOptions {
    /// Stop once two consecutive relative errors differ by less than this
    /// (absolute). tensorly's default `tol=10e-5`, i.e. 1e-4.
    pub tolerance: f64,
    /// Sweeps at most (tensorly's `n_iter_max`).
    pub max_sweeps: usize,
}

impl Default for HooiOptions {
    fn default() -> Self {
        Self { tolerance: 1e-4, max_sweeps: 100 }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TuckerError {
    #[error("a kernel needs at least two modes [out, in, …]; this one has shape {0:?}")]
    Shape(Vec<usize>),
    #[error("a kernel of shape {shape:?} holds {expected} values, but {got} were given")]
    Length { shape: Vec<usize>, expected: usize, got: usize },
    #[error("ranks [{}, {}] must each lie between 1 and the channels [{}, {}] (out, in)", ranks[0], ranks[1], channels[0], channels[1])]
    Ranks { ranks: [usize; 2], channels: [usize; 2] },
    #[error("the kernel holds a value that is not finite (NaN or infinity)")]
    NonFinite,
    #[error("the kernel is all zeros, so it has no relative error to measure")]
    Zero,
    #[error("the singular value decomposition did not converge")]
    Svd,
}

/// A Tucker-2 decomposition: `W ≈ G ×₀ out_factor ×₁ in_factor`.
#[derive(Debug, Clone)]
pub struct Tucker2 {
    /// The kernel's shape `[out, in, k…]`.
    pub shape: Vec<usize>,
    /// The core `[r_out, r_in, k…]`, row-major.
    pub core: Vec<f64>,
    /// `out × r_out`, orthonormal columns.
    pub out_factor: Mat<f64>,
    /// `in × r_in`, orthonormal columns.
    pub in_factor: Mat<f64>,
    /// The relative error after each sweep, as tensorly's `rec_errors`.
    pub sweep_errors: Vec<f64>,
    /// `‖W − Ŵ‖ / ‖W‖`, measured on the reconstruction.
    pub rel_error: f64,
}

impl Tucker2 {
    /// `[r_out, r_in]`.
    pub fn ranks(&self) -> [usize; 2] {
        [self.out_factor.ncols(), self.in_factor.ncols()]
    }

    /// The core's shape `[r_out, r_in, k…]`.
    pub fn core_shape(&self) -> Vec<usize> {
        let [r_out, r_in] = self.ranks();
        [r_out, r_in].into_iter().chain(self.shape[2..].iter().copied()).collect()
    }

    /// `Ŵ = G ×₀ U_out ×₁ U_in`, row-major in the kernel's shape.
    pub fn reconstruct(&self) -> Vec<f64> {
        let [r_out, r_in] = self.ranks();
        let (out, spatial) = (self.shape[0], spatial_size(&self.shape));
        let partial = mode0_product(self.out_factor.as_ref(), &self.core, r_out, r_in * spatial);
        mode1_product(self.in_factor.as_ref(), &partial, out, r_in, spatial)
    }
}

/// Checks a kernel's shape and values; returns `[out, in, spatial size]`.
pub fn kernel_dims(shape: &[usize], len: usize) -> Result<[usize; 3], TuckerError> {
    if shape.len() < 2 || shape.contains(&0) {
        return Err(TuckerError::Shape(shape.to_vec()));
    }
    let expected = shape.iter().product();
    if expected != len {
        return Err(TuckerError::Length { shape: shape.to_vec(), expected, got: len });
    }
    Ok([shape[0], shape[1], spatial_size(shape)])
}

fn spatial_size(shape: &[usize]) -> usize {
    shape[2..].iter().product()
}

/// Tucker-2 of `kernel` (row-major, shape `[out, in, k…]`) at `ranks`
/// `[r_out, r_in]`.
pub fn partial_tucker2(
    shape: &[usize],
    kernel: &[f32],
    ranks: [usize; 2],
    options: &HooiOptions,
) -> Result<Tucker2, TuckerError> {
    let [out, inp, spatial] = kernel_dims(shape, kernel.len())?;
    let [r_out, r_in] = ranks;
    if !(1..=out).contains(&r_out) || !(1..=inp).contains(&r_in) {
        return Err(TuckerError::Ranks { ranks, channels: [out, inp] });
    }
    if kernel.iter().any(|v| !v.is_finite()) {
        return Err(TuckerError::NonFinite);
    }
    let w: Vec<f64> = kernel.iter().map(|&v| v as f64).collect();
    let norm2: f64 = w.iter().map(|v| v * v).sum();
    if norm2 == 0.0 {
        return Err(TuckerError::Zero);
    }

    // init='svd': each factor from the unfolding of W itself.
    let w_by_in = unfold_mode1(&w, out, inp, spatial);
    let mut out_factor = leading_left_singular_vectors(MatRef::from_row_major_slice(&w, out, inp * spatial), r_out)?;
    let mut in_factor =
        leading_left_singular_vectors(MatRef::from_row_major_slice(&w_by_in, inp, out * spatial), r_in)?;

    let mut sweep_errors = Vec::new();
    let mut core = Vec::new();
    for sweep in 0..options.max_sweeps.max(1) {
        // The output factor, with the input factor fixed: W ×₁ U_inᵀ.
        let projected_in = mode1_product(in_factor.transpose(), &w, out, inp, spatial);
        out_factor =
            leading_left_singular_vectors(MatRef::from_row_major_slice(&projected_in, out, r_in * spatial), r_out)?;
        // The input factor, with the new output factor (as tensorly updates
        // its factor list in place): W ×₀ U_outᵀ, seen from mode 1.
        let projected_out = mode0_product(out_factor.transpose(), &w, out, inp * spatial);
        let by_in = unfold_mode1(&projected_out, r_out, inp, spatial);
        in_factor = leading_left_singular_vectors(MatRef::from_row_major_slice(&by_in, inp, r_out * spatial), r_in)?;

        core = mode1_product(in_factor.transpose(), &projected_out, r_out, inp, spatial);
        let core_norm2: f64 = core.iter().map(|v| v * v).sum();
        let error = (norm2 - core_norm2).abs().sqrt() / norm2.sqrt();
        sweep_errors.push(error);
        if sweep > 1 && (sweep_errors[sweep - 1] - error).abs() < options.tolerance {
            break;
        }
    }

    let mut result = Tucker2 { shape: shape.to_vec(), core, out_factor, in_factor, sweep_errors, rel_error: 0.0 };
    let residual2: f64 = result.reconstruct().iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum();
    result.rel_error = (residual2 / norm2).sqrt();
    Ok(result)
}

/// The first `rank` left singular vectors of `a`, each turned so that its
/// largest entry (the first, on ties) is positive, as tensorly's
/// `svd_flip(u_based_decision=True)`.
pub(crate) fn leading_left_singular_vectors(a: MatRef<'_, f64>, rank: usize) -> Result<Mat<f64>, TuckerError> {
    // More vectors than the thin SVD has (a 1×1×1 kernel whose out rank
    // exceeds in rank × 1) come from the full one, as in tensorly.
    let svd = if rank <= a.nrows().min(a.ncols()) { a.thin_svd() } else { a.svd() };
    let svd = svd.map_err(|_| TuckerError::Svd)?;
    let u = svd.U();
    let mut factor = Mat::from_fn(a.nrows(), rank, |row, col| u[(row, col)]);
    for col in 0..rank {
        let mut largest = 0;
        for row in 1..factor.nrows() {
            if factor[(row, col)].abs() > factor[(largest, col)].abs() {
                largest = row;
            }
        }
        if factor[(largest, col)] < 0.0 {
            for row in 0..factor.nrows() {
                factor[(row, col)] = -factor[(row, col)];
            }
        }
    }
    Ok(factor)
}

/// `m · T` for `T` of shape `[rows, cols]` (row-major): the mode-0 product.
fn mode0_product(m: MatRef<'_, f64>, t: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    to_row_major(&(m * MatRef::from_row_major_slice(t, rows, cols)))
}

/// `T ×₁ m` for `T` of shape `[a, b, k]`: out`[x, j, z]` = Σ_y m`[j, y]` T`[x, y, z]`.
fn mode1_product(m: MatRef<'_, f64>, t: &[f64], a: usize, b: usize, k: usize) -> Vec<f64> {
    let unfolded = unfold_mode1(t, a, b, k);
    let product = m * MatRef::from_row_major_slice(&unfolded, b, a * k);
    let j = product.nrows();
    let mut out = vec![0.0; a * j * k];
    for x in 0..a {
        for row in 0..j {
            for z in 0..k {
                out[(x * j + row) * k + z] = product[(row, x * k + z)];
            }
        }
    }
    out
}

/// `[a, b, k]` → the `b × (a·k)` mode-1 unfolding (row-major). Column order
/// differs from tensorly's `unfold(T, 1)` only by a permutation, which
/// changes neither singular values nor left singular vectors.
fn unfold_mode1(t: &[f64], a: usize, b: usize, k: usize) -> Vec<f64> {
    let mut out = vec![0.0; a * b * k];
    for x in 0..a {
        for y in 0..b {
            let src = &t[(x * b + y) * k..(x * b + y + 1) * k];
            out[y * a * k + x * k..y * a * k + (x + 1) * k].copy_from_slice(src);
        }
    }
    out
}

fn to_row_major(m: &Mat<f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(m.nrows() * m.ncols());
    for row in 0..m.nrows() {
        for col in 0..m.ncols() {
            out.push(m[(row, col)]);
        }
    }
    out
}

/// Singular values of the two channel unfoldings of a kernel, descending:
/// `[mode 0 (out × in·k…), mode 1 (in × out·k…)]`. What energy and EVBMF
/// rank rules look at.
pub fn channel_spectra(shape: &[usize], kernel: &[f32]) -> Result<[Vec<f64>; 2], TuckerError> {
    let [out, inp, spatial] = kernel_dims(shape, kernel.len())?;
    if kernel.iter().any(|v| !v.is_finite()) {
        return Err(TuckerError::NonFinite);
    }
    let w: Vec<f64> = kernel.iter().map(|&v| v as f64).collect();
    let by_in = unfold_mode1(&w, out, inp, spatial);
    let values = |data: &[f64], rows, cols| {
        MatRef::from_row_major_slice(data, rows, cols).singular_values().map_err(|_| TuckerError::Svd)
    };
    Ok([values(&w, out, inp * spatial)?, values(&by_in, inp, out * spatial)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-0.5, 0.5) (a 32-bit LCG), so that the
    /// fixtures need no random-number crate and can be rebuilt in Python.
    pub(crate) fn lcg_values(n: usize, seed: u32) -> Vec<f32> {
        let mut u = seed;
        (0..n)
            .map(|_| {
                u = u.wrapping_mul(1664525).wrapping_add(1013904223);
                (u as f64 / 4294967296.0 - 0.5) as f32
            })
            .collect()
    }

    fn orthonormal_columns(rows: usize, cols: usize, seed: u32) -> Mat<f64> {
        let data: Vec<f64> = lcg_values(rows * cols, seed).iter().map(|&v| v as f64).collect();
        leading_left_singular_vectors(MatRef::from_row_major_slice(&data, rows, cols), cols).unwrap()
    }

    #[test]
    fn full_ranks_reproduce_the_kernel() {
        let shape = [6, 4, 3, 3, 3];
        let w = lcg_values(6 * 4 * 27, 1);
        let t = partial_tucker2(&shape, &w, [6, 4], &HooiOptions::default()).unwrap();
        assert!(t.rel_error < 1e-12, "{}", t.rel_error);
        assert_eq!(t.core_shape(), vec![6, 4, 3, 3, 3]);
    }

    #[test]
    fn truncated_errors_agree_and_never_grow() {
        let shape = [6, 4, 3, 3, 3];
        let w = lcg_values(6 * 4 * 27, 1);
        let t = partial_tucker2(&shape, &w, [3, 2], &HooiOptions { tolerance: 0.0, max_sweeps: 20 }).unwrap();
        assert_eq!(t.sweep_errors.len(), 20);
        assert!(t.rel_error > 0.1 && t.rel_error < 1.0, "{}", t.rel_error);
        for pair in t.sweep_errors.windows(2) {
            assert!(pair[1] <= pair[0] + 1e-12, "{:?}", t.sweep_errors);
        }
        // The formula tensorly uses equals the error of the reconstruction.
        assert!((t.sweep_errors.last().unwrap() - t.rel_error).abs() < 1e-12);
        // Factors are orthonormal.
        let gram = t.out_factor.transpose() * &t.out_factor;
        for i in 0..3 {
            for j in 0..3 {
                assert!((gram[(i, j)] - (i == j) as u8 as f64).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn an_exact_tucker2_kernel_is_recovered_in_three_sweeps() {
        // W = G ×₀ U ×₁ V with orthonormal U (6×3), V (4×2): rank (3, 2) is exact.
        let core: Vec<f64> = lcg_values(3 * 2 * 27, 7).iter().map(|&v| v as f64).collect();
        let (u, v) = (orthonormal_columns(6, 3, 3), orthonormal_columns(4, 2, 5));
        let w = mode1_product(v.as_ref(), &mode0_product(u.as_ref(), &core, 3, 2 * 27), 6, 2, 27);
        let w32: Vec<f32> = w.iter().map(|&x| x as f32).collect();
        let t = partial_tucker2(&[6, 4, 3, 3, 3], &w32, [3, 2], &HooiOptions::default()).unwrap();
        assert_eq!(t.sweep_errors.len(), 3, "stops at the first sweep allowed to: {:?}", t.sweep_errors);
        assert!(t.rel_error < 1e-6, "{}", t.rel_error); // f32 input
        let projector = |m: &Mat<f64>| m * m.transpose();
        let gap = projector(&t.out_factor) - projector(&u);
        assert!(gap.norm_l2() < 1e-6, "{}", gap.norm_l2());
    }

    #[test]
    fn pointwise_and_2d_kernels_work_at_any_rank() {
        let w = lcg_values(32 * 16, 11);
        for ranks in [[32, 16], [24, 8], [1, 1]] {
            let t = partial_tucker2(&[32, 16, 1, 1, 1], &w, ranks, &HooiOptions::default()).unwrap();
            assert_eq!(t.ranks(), ranks);
            if ranks == [32, 16] {
                assert!(t.rel_error < 1e-12);
            }
        }
        let w2 = lcg_values(8 * 5 * 9, 13);
        let t = partial_tucker2(&[8, 5, 3, 3], &w2, [4, 3], &HooiOptions::default()).unwrap();
        assert_eq!(t.core_shape(), vec![4, 3, 3, 3]);
        assert!((t.reconstruct().len()) == 8 * 5 * 9);
    }

    #[test]
    fn bad_kernels_are_refused_with_a_reason() {
        let opts = HooiOptions::default();
        assert_eq!(partial_tucker2(&[4], &[0.0; 4], [1, 1], &opts).unwrap_err(), TuckerError::Shape(vec![4]));
        assert!(matches!(partial_tucker2(&[2, 2, 3], &[1.0; 11], [1, 1], &opts), Err(TuckerError::Length { .. })));
        assert!(matches!(partial_tucker2(&[2, 2], &[1.0; 4], [3, 1], &opts), Err(TuckerError::Ranks { .. })));
        assert!(matches!(partial_tucker2(&[2, 2], &[1.0; 4], [0, 1], &opts), Err(TuckerError::Ranks { .. })));
        assert_eq!(partial_tucker2(&[2, 2], &[1.0, f32::NAN, 0.0, 1.0], [1, 1], &opts).unwrap_err(), TuckerError::NonFinite);
        assert_eq!(partial_tucker2(&[2, 2], &[0.0; 4], [1, 1], &opts).unwrap_err(), TuckerError::Zero);
    }

    #[test]
    fn spectra_are_those_of_the_unfoldings() {
        let w = lcg_values(6 * 4 * 27, 1);
        let [s0, s1] = channel_spectra(&[6, 4, 3, 3, 3], &w).unwrap();
        assert_eq!((s0.len(), s1.len()), (6, 4));
        let total: f64 = w.iter().map(|&v| (v as f64).powi(2)).sum();
        for s in [&s0, &s1] {
            let energy: f64 = s.iter().map(|v| v * v).sum();
            assert!((energy - total).abs() < 1e-9 * total);
        }
    }
}
