//! Rank rules: which `[r_out, r_in]` a kernel's Tucker-2 gets.
//!
//! Each rule maps a layer (or, for the budget, every layer at once) to ranks
//! and knows nothing of HOOI: the decomposition takes whatever it is given.
//! A layer whose factorised form would cost at least as many FLOPs as the
//! whole one is left whole ([`ConvGeometry::saves_flops`]).

use super::evbmf::evbmf;

/// Weber et al.'s rule: `ceil(channels · factor)` per mode, raised to
/// `min_rank` and kept within `[1, channels]`. (tucker-cnn clamps to the
/// channels only when a minimum rank is set; here always, since a rank above
/// the channel count cannot be built.)
pub fn factor_ranks(channels: [usize; 2], factor: f64, min_rank: usize) -> [usize; 2] {
    channels.map(|c| ((c as f64 * factor).ceil() as usize).max(min_rank).clamp(1, c))
}

/// The smallest rank per mode whose leading singular values hold `energy`
/// (0–1) of the squared norm of that unfolding; `spectra` are
/// [`super::hooi::channel_spectra`].
pub fn energy_ranks(spectra: &[Vec<f64>; 2], energy: f64) -> [usize; 2] {
    std::array::from_fn(|mode| {
        let s = &spectra[mode];
        let total: f64 = s.iter().map(|v| v * v).sum();
        let mut kept = 0.0;
        for (i, v) in s.iter().enumerate() {
            kept += v * v;
            if kept >= energy * total * (1.0 - 1e-12) {
                return i + 1;
            }
        }
        s.len().max(1)
    })
}

/// EVBMF's rank of each channel unfolding (Kim et al. 2016), at least 1.
/// `shape` is the kernel's `[out, in, k…]`.
pub fn evbmf_ranks(shape: &[usize], spectra: &[Vec<f64>; 2]) -> [usize; 2] {
    let spatial: usize = shape[2..].iter().product();
    let (out, inp) = (shape[0], shape[1]);
    let dims = [(out, inp * spatial), (inp, out * spatial)];
    std::array::from_fn(|mode| {
        let (rows, cols) = dims[mode];
        let rank = evbmf(&spectra[mode], rows, cols).map_or(rows, |e| e.rank);
        rank.clamp(1, [out, inp][mode])
    })
}

/// A convolution's size and where it runs: enough to count what it costs,
/// whole or factorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvGeometry {
    pub out_channels: usize,
    pub in_channels: usize,
    /// Product of the kernel's spatial sizes (27 for 3×3×3, 1 for 1×1×1).
    pub kernel_volume: usize,
    /// Voxels of the input and of the output of one forward pass (they differ
    /// for strided convolutions).
    pub in_voxels: u64,
    pub out_voxels: u64,
}

impl ConvGeometry {
    pub fn channels(&self) -> [usize; 2] {
        [self.out_channels, self.in_channels]
    }

    /// Weights of the whole kernel (bias excluded: both forms keep it).
    pub fn params(&self) -> u64 {
        (self.out_channels * self.in_channels * self.kernel_volume) as u64
    }

    /// Weights of the three factorised convolutions.
    pub fn factorised_params(&self, [r_out, r_in]: [usize; 2]) -> u64 {
        (self.in_channels * r_in + r_in * r_out * self.kernel_volume + r_out * self.out_channels) as u64
    }

    /// FLOPs (multiply-add = 2) of the whole convolution.
    pub fn flops(&self) -> u64 {
        2 * self.params() * self.out_voxels
    }

    /// FLOPs of 1×1×1 (in → r_in) at the input's resolution, the core
    /// (r_in → r_out) and 1×1×1 (r_out → out) at the output's.
    pub fn factorised_flops(&self, [r_out, r_in]: [usize; 2]) -> u64 {
        2 * ((self.in_channels * r_in) as u64 * self.in_voxels
            + (r_in * r_out * self.kernel_volume + r_out * self.out_channels) as u64 * self.out_voxels)
    }

    pub fn saves_flops(&self, ranks: [usize; 2]) -> bool {
        self.factorised_flops(ranks) < self.flops()
    }
}

/// What a global budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetMeasure {
    Params,
    Flops,
}

/// One layer as the budget rule sees it.
#[derive(Debug, Clone)]
pub struct BudgetLayer {
    pub geometry: ConvGeometry,
    /// [`super::hooi::channel_spectra`] of its kernel.
    pub spectra: [Vec<f64>; 2],
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("a budget is a fraction between 0 and 1 of the original; {0} is not")]
    Fraction(f64),
    #[error("the budget of {target} cannot be met: factorising every layer as far as the rule goes still leaves {reachable}")]
    Unreachable { target: u64, reachable: u64 },
}

/// Ranks (`None` = left whole) that bring the whole model's parameters or
/// FLOPs to at most `fraction` of the original.
///
/// Greedy: every layer starts whole, and moves down a ladder of ranks
/// (`ceil(channels · f)` for f = 0.95, 0.90, … 0.05). At each step the move
/// taken is the one that adds the least estimated squared relative error per
/// unit saved. The error estimate is the HOSVD bound from the spectra
/// (energy beyond the kept singular values of both unfoldings), which needs
/// no decomposition; HOOI only improves on it.
pub fn budget_ranks(
    layers: &[BudgetLayer],
    fraction: f64,
    measure: BudgetMeasure,
) -> Result<Vec<Option<[usize; 2]>>, BudgetError> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(BudgetError::Fraction(fraction));
    }
    let ladder: Vec<f64> = (1..20).rev().map(|k| k as f64 * 0.05).collect();
    let cost = |layer: &BudgetLayer, ranks: Option<[usize; 2]>| match (measure, ranks) {
        (BudgetMeasure::Params, None) => layer.geometry.params(),
        (BudgetMeasure::Params, Some(r)) => layer.geometry.factorised_params(r),
        (BudgetMeasure::Flops, None) => layer.geometry.flops(),
        (BudgetMeasure::Flops, Some(r)) => layer.geometry.factorised_flops(r),
    };
    let error = |layer: &BudgetLayer, ranks: Option<[usize; 2]>| ranks.map_or(0.0, |r| hosvd_error2(&layer.spectra, r));
    let original: u64 = layers.iter().map(|l| cost(l, None)).sum();
    let target = (original as f64 * fraction).floor() as u64;

    // Each layer's ladder, keeping only the rungs that cost less than the
    // rung above them.
    let rungs: Vec<Vec<[usize; 2]>> = layers
        .iter()
        .map(|layer| {
            let mut kept: Vec<[usize; 2]> = Vec::new();
            let mut last = cost(layer, None);
            for &f in &ladder {
                let r = factor_ranks(layer.geometry.channels(), f, 1);
                let c = cost(layer, Some(r));
                if c < last && kept.last() != Some(&r) {
                    kept.push(r);
                    last = c;
                }
            }
            kept
        })
        .collect();

    let mut position = vec![0usize; layers.len()]; // rungs taken; 0 = whole
    let mut chosen: Vec<Option<[usize; 2]>> = vec![None; layers.len()];
    let mut total = original;
    while total > target {
        let mut best: Option<(f64, usize)> = None;
        for (i, layer) in layers.iter().enumerate() {
            let Some(&next) = rungs[i].get(position[i]) else { continue };
            let saved = (cost(layer, chosen[i]) - cost(layer, Some(next))) as f64;
            let added = (error(layer, Some(next)) - error(layer, chosen[i])).max(0.0);
            let price = added / saved;
            if best.is_none_or(|(p, _)| price < p) {
                best = Some((price, i));
            }
        }
        let Some((_, i)) = best else {
            return Err(BudgetError::Unreachable { target, reachable: total });
        };
        let next = rungs[i][position[i]];
        total = total - cost(&layers[i], chosen[i]) + cost(&layers[i], Some(next));
        chosen[i] = Some(next);
        position[i] += 1;
    }
    Ok(chosen)
}

/// HOSVD's bound on the squared relative error of a Tucker-2 at `ranks`:
/// the energy outside the leading `r` singular values of each unfolding.
pub fn hosvd_error2(spectra: &[Vec<f64>; 2], ranks: [usize; 2]) -> f64 {
    (0..2)
        .map(|mode| {
            let s = &spectra[mode];
            let total: f64 = s.iter().map(|v| v * v).sum();
            let tail: f64 = s.iter().skip(ranks[mode]).map(|v| v * v).sum();
            if total > 0.0 { tail / total } else { 0.0 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_rule_follows_weber() {
        assert_eq!(factor_ranks([32, 1], 0.3, 16), [16, 1]);
        assert_eq!(factor_ranks([128, 64], 0.3, 16), [39, 20]);
        assert_eq!(factor_ranks([320, 256], 0.05, 16), [16, 16]);
        // 32 · 0.1 is 3.2000000000000002 in f64: ceil gives 4, as in Python.
        assert_eq!(factor_ranks([32, 32], 0.1, 1), [4, 4]);
        assert_eq!(factor_ranks([8, 2], 2.0, 1), [8, 2]);
    }

    #[test]
    fn energy_rule_keeps_the_energy_asked_for() {
        let spectra = [vec![3.0, 2.0, 1.0, 0.5], vec![1.0, 1.0]];
        // Squares 9, 4, 1, 0.25 of 14.25: 9 is 63%, 13 is 91%, 14 is 98%.
        assert_eq!(energy_ranks(&spectra, 0.6), [1, 2]);
        assert_eq!(energy_ranks(&spectra, 0.5), [1, 1]);
        assert_eq!(energy_ranks(&spectra, 0.9), [2, 2]);
        assert_eq!(energy_ranks(&spectra, 0.95), [3, 2]);
        assert_eq!(energy_ranks(&spectra, 1.0), [4, 2]);
    }

    #[test]
    fn factorised_cost_counts_three_convolutions() {
        let g = ConvGeometry { out_channels: 64, in_channels: 32, kernel_volume: 27, in_voxels: 1000, out_voxels: 125 };
        assert_eq!(g.params(), 64 * 32 * 27);
        assert_eq!(g.factorised_params([16, 8]), (32 * 8 + 8 * 16 * 27 + 16 * 64) as u64);
        assert_eq!(g.flops(), 2 * 64 * 32 * 27 * 125);
        assert_eq!(g.factorised_flops([16, 8]), 2 * (32 * 8 * 1000 + (8 * 16 * 27 + 16 * 64) * 125));
        // A 1×1×1 conv at full rank costs more factorised than whole.
        let p = ConvGeometry { out_channels: 2, in_channels: 32, kernel_volume: 1, in_voxels: 8, out_voxels: 8 };
        assert!(!p.saves_flops([2, 32]));
        assert!(g.saves_flops([16, 8]));
    }

    fn layer(out: usize, inp: usize, voxels: u64, decay: f64) -> BudgetLayer {
        let spectrum = |n: usize| (0..n).map(|i| decay.powi(i as i32)).collect::<Vec<f64>>();
        BudgetLayer {
            geometry: ConvGeometry { out_channels: out, in_channels: inp, kernel_volume: 27, in_voxels: voxels, out_voxels: voxels },
            spectra: [spectrum(out), spectrum(inp)],
        }
    }

    #[test]
    fn budget_is_met_and_spends_error_where_it_is_cheap() {
        let layers = vec![layer(64, 64, 4096, 0.5), layer(64, 64, 4096, 0.99), layer(16, 8, 32768, 0.9)];
        let total = |ranks: &[Option<[usize; 2]>], m: BudgetMeasure| -> u64 {
            layers
                .iter()
                .zip(ranks)
                .map(|(l, r)| match (m, r) {
                    (BudgetMeasure::Flops, None) => l.geometry.flops(),
                    (BudgetMeasure::Flops, Some(r)) => l.geometry.factorised_flops(*r),
                    (BudgetMeasure::Params, None) => l.geometry.params(),
                    (BudgetMeasure::Params, Some(r)) => l.geometry.factorised_params(*r),
                })
                .sum()
        };
        for measure in [BudgetMeasure::Flops, BudgetMeasure::Params] {
            let original = total(&[None, None, None], measure);
            for fraction in [0.9, 0.5, 0.25] {
                let ranks = budget_ranks(&layers, fraction, measure).unwrap();
                let reached = total(&ranks, measure);
                assert!(reached as f64 <= fraction * original as f64, "{measure:?} {fraction}: {reached} of {original}");
            }
        }
        // The fast-decaying layer is cut deeper than the flat one.
        let ranks = budget_ranks(&layers, 0.5, BudgetMeasure::Flops).unwrap();
        let rank_of = |r: Option<[usize; 2]>| r.map_or(64, |r| r[0]);
        assert!(rank_of(ranks[0]) < rank_of(ranks[1]), "{ranks:?}");
        // Nothing to do at 1.0.
        assert_eq!(budget_ranks(&layers, 1.0, BudgetMeasure::Flops).unwrap(), vec![None, None, None]);
    }

    #[test]
    fn impossible_budgets_say_so() {
        let layers = vec![layer(8, 8, 64, 0.5)];
        assert!(matches!(budget_ranks(&layers, 0.0001, BudgetMeasure::Flops), Err(BudgetError::Unreachable { .. })));
        assert_eq!(budget_ranks(&layers, 1.5, BudgetMeasure::Flops), Err(BudgetError::Fraction(1.5)));
        assert_eq!(budget_ranks(&layers, f64::NAN, BudgetMeasure::Flops).unwrap_err().to_string().contains("NaN"), true);
    }
}
