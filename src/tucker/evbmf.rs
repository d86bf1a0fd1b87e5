//! Empirical variational Bayesian matrix factorisation (EVBMF): the rank a
//! matrix "really" has above its noise, from its singular values alone.
//!
//! The global analytic solution of Nakajima, Sugiyama, Babacan and Tomioka,
//! "Global analytic solution of fully-observed variational Bayesian matrix
//! factorization" (JMLR 14, 2013), as Kim et al. (2016, arXiv:1511.06530)
//! use it to pick Tucker-2 ranks: the rank of each channel unfolding of a
//! kernel. Written here because no Rust library has it; it follows
//! Nakajima's own MATLAB `VBMF.m` (noise variance estimated on a problem
//! scaled by its lower bound, so the search tolerance is relative; an
//! `L > M` matrix is transposed). The Python port that Kim et al.'s followers
//! use (jacobgil, tucker-cnn) skips both; see `tests/reference/evbmf.py`.

/// What EVBMF found for one matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvbmfEstimate {
    /// Singular values above `threshold`: the kept rank (may be 0).
    pub rank: usize,
    /// The estimated noise variance σ².
    pub noise_variance: f64,
    /// The singular value threshold `sqrt(M σ² x̄)`.
    pub threshold: f64,
}

/// Nakajima et al.'s numerical constant for the threshold τ̄ = 2.5129 √α.
const TAU_CONSTANT: f64 = 2.5129;

/// EVBMF on an `rows × cols` matrix with these singular values (any order;
/// there are min(rows, cols) of them). `None` when there are no values, they
/// are not finite or all are zero. Values below the numerical rank's
/// tolerance are left out (so are their dimensions from the noise estimate).
pub fn evbmf(singular_values: &[f64], rows: usize, cols: usize) -> Option<EvbmfEstimate> {
    // The analysis assumes L ≤ M; a tall matrix has the same singular values
    // as its transpose.
    let (l, m) = (rows.min(cols), rows.max(cols));
    let mut s: Vec<f64> = singular_values.to_vec();
    if s.is_empty() || s.len() > l || s.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return None;
    }
    s.sort_by(|a, b| b.total_cmp(a));
    // Zeros make the objective infinite everywhere (−ln 0). Values at the
    // SVD's rounding level (dead channels give them) are zeros in all but
    // name, and which of them come out above a threshold of ~1e-16 would
    // depend on the SVD's implementation. So the analysis runs on the
    // numerical rank, with numpy's `matrix_rank` tolerance.
    let floor = s[0] * l.max(m) as f64 * f64::EPSILON;
    s.retain(|&v| v > floor);
    if s.is_empty() {
        return None;
    }
    let (lf, mf) = (l as f64, m as f64);
    let alpha = lf / mf;
    let tau_bar = TAU_CONSTANT * alpha.sqrt();
    let x_bar = (1.0 + tau_bar) * (1.0 + alpha / tau_bar);
    // Energy left out of `s` (none: every nonzero value is there).
    let residual = 0.0;

    // Bounds on σ² (Nakajima's `estimatesigma2`).
    let h = s.len();
    let k = (((lf / (1.0 + alpha)).ceil() as usize).saturating_sub(1)).min(h - 1);
    let sum_sq: f64 = s.iter().map(|v| v * v).sum();
    let upper = (sum_sq + residual) / (lf * mf);
    let tail_mean = s[k..].iter().map(|v| v * v).sum::<f64>() / (h - k) as f64;
    let lower = (s[k] * s[k] / (mf * x_bar)).max(tail_mean / mf);

    let noise_variance = if lower >= upper {
        upper
    } else {
        // Minimise on the problem scaled so that the lower bound is 1, as
        // VBMF.m does, which makes the search tolerance relative to σ².
        let scale = 1.0 / lower;
        let scaled: Vec<f64> = s.iter().map(|v| v * v * scale).collect();
        let objective = |sigma2: f64| free_energy(sigma2, &scaled, l, m, alpha, x_bar, residual * scale);
        bounded_minimum(objective, 1.0, upper * scale, 1e-5, 500) / scale
    };
    let threshold = (mf * noise_variance * x_bar).sqrt();
    let rank = s.iter().filter(|&&v| v > threshold).count();
    Some(EvbmfEstimate { rank, noise_variance, threshold })
}

/// The EVB free energy as a function of σ² (Nakajima's `EVBsigma2`), up to
/// constants; `s2` are the squared singular values.
fn free_energy(sigma2: f64, s2: &[f64], l: usize, m: usize, alpha: f64, x_bar: f64, residual: f64) -> f64 {
    let mf = m as f64;
    let tau = |x: f64| 0.5 * (x - (1.0 + alpha) + ((x - (1.0 + alpha)).powi(2) - 4.0 * alpha).sqrt());
    let mut total = 0.0;
    for &v in s2 {
        let x = v / (mf * sigma2);
        total += if x > x_bar {
            let t = tau(x);
            x - t + ((t + 1.0) / x).ln() + alpha * (t / alpha + 1.0).ln()
        } else {
            x - x.ln()
        };
    }
    total + residual / (mf * sigma2) + (l - s2.len()) as f64 * sigma2.ln()
}

/// Brent's bounded minimisation without derivatives on `[a, b]`, as
/// `scipy.optimize.fminbound` (absolute tolerance `xatol`, at most
/// `max_evaluations`). Hand-written: faer has no scalar optimiser, and this
/// is the routine Nakajima's and the Python EVBMF both call (`fminbnd`).
pub fn bounded_minimum(f: impl Fn(f64) -> f64, mut a: f64, mut b: f64, xatol: f64, max_evaluations: usize) -> f64 {
    let golden = 0.5 * (3.0 - 5f64.sqrt());
    let sqrt_eps = 2.2e-16f64.sqrt();
    let sign = |v: f64| if v >= 0.0 { 1.0 } else { -1.0 };
    let mut x = a + golden * (b - a);
    let (mut v, mut w) = (x, x);
    let mut fx = f(x);
    let (mut fv, mut fw) = (fx, fx);
    let (mut d, mut e) = (0.0f64, 0.0f64);
    let mut evaluations = 1;
    loop {
        let middle = 0.5 * (a + b);
        let tol1 = sqrt_eps * x.abs() + xatol / 3.0;
        let tol2 = 2.0 * tol1;
        if (x - middle).abs() <= tol2 - 0.5 * (b - a) || evaluations >= max_evaluations {
            return x;
        }
        let mut golden_step = true;
        if e.abs() > tol1 {
            // Try a parabola through x, w, v.
            let mut r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            r = e;
            e = d;
            if p.abs() < (0.5 * q * r).abs() && p > q * (a - x) && p < q * (b - x) {
                d = p / q;
                let u = x + d;
                if (u - a) < tol2 || (b - u) < tol2 {
                    d = tol1 * sign(middle - x);
                }
                golden_step = false;
            }
        }
        if golden_step {
            e = if x >= middle { a - x } else { b - x };
            d = golden * e;
        }
        let u = x + sign(d) * d.abs().max(tol1);
        let fu = f(u);
        evaluations += 1;
        if fu <= fx {
            if u >= x {
                a = x;
            } else {
                b = x;
            }
            (v, fv, w, fw, x, fx) = (w, fw, x, fx, u, fu);
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                (v, fv, w, fw) = (w, fw, u, fu);
            } else if fu <= fv || v == x || v == w {
                (v, fv) = (u, fu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brent_finds_a_parabola_s_minimum() {
        let x = bounded_minimum(|x| (x - 0.3).powi(2) + 1.0, -2.0, 5.0, 1e-8, 500);
        assert!((x - 0.3).abs() < 1e-6, "{x}");
        // At a bound when the minimum lies outside.
        let x = bounded_minimum(|x| x, 1.0, 2.0, 1e-8, 500);
        assert!((x - 1.0).abs() < 1e-6, "{x}");
    }

    #[test]
    fn a_clear_gap_gives_the_signal_rank() {
        // Two strong components over a flat noise floor (8 × 20).
        let s = [10.0, 5.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5];
        let e = evbmf(&s, 8, 20).unwrap();
        assert_eq!(e.rank, 2, "{e:?}");
        // A tall matrix is its transpose.
        assert_eq!(evbmf(&s, 20, 8).unwrap(), e);
    }

    #[test]
    fn the_rank_does_not_depend_on_the_scale() {
        let s = [1.0, 0.5, 0.3, 0.09, 0.08, 0.07, 0.06, 0.05];
        let small: Vec<f64> = s.iter().map(|v| v * 0.01).collect();
        let large: Vec<f64> = s.iter().map(|v| v * 100.0).collect();
        let (a, b) = (evbmf(&small, 8, 20).unwrap(), evbmf(&large, 8, 20).unwrap());
        assert_eq!(a.rank, b.rank);
        assert!((a.noise_variance * 1e8 / b.noise_variance - 1.0).abs() < 1e-3);
    }

    #[test]
    fn degenerate_spectra_are_refused_or_handled() {
        assert_eq!(evbmf(&[], 3, 4), None);
        assert_eq!(evbmf(&[0.0, 0.0], 2, 4), None);
        assert_eq!(evbmf(&[1.0, f64::NAN], 2, 4), None);
        // A single row: its one value is at the noise level, rank 0.
        assert_eq!(evbmf(&[3.0], 1, 27).unwrap().rank, 0);
        // A flat spectrum is all noise.
        assert_eq!(evbmf(&[1.0; 6], 6, 6).unwrap().rank, 0);
    }
}
