//! Intensity normalisations a model may ask for (`model.json`
//! `preprocessing.normalisation`), applied on the model's grid after
//! resampling. Each returns the value to pad the volume with.

use super::preprocess::PreprocessError;

/// The `normalisation` values a model may ask for.
pub const NORMALISATIONS: [&str; 3] = ["zscore", "zscore_foreground", "zscore_head_box"];

/// The air around a head in `zscore_head_box`'s canonical field of view, in
/// mm on every side of the head's box. Chosen so that the training heads'
/// statistics move least from their whole-volume z-scores, which the shipped
/// students were first trained on (README, "Heads they have not seen").
pub const HEAD_BOX_MARGIN_MM: f64 = 20.0;

/// A voxel is air when it lies within this share of the way from the air's
/// level to the head's. The quality signal's air share and the training's
/// field-of-view augmentation use the same cut, from the scan's minimum to
/// the brain's mean.
pub const AIR_CUT: f64 = 0.1;

/// The volume a normaliser sees: its storage dims (x fastest) and spacing in mm.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    pub dims: [usize; 3],
    pub spacing: [f64; 3],
}

/// Normalises intensities in place and returns the value to pad with.
pub type Normaliser = fn(&mut [f32], Grid) -> Result<f32, PreprocessError>;

pub fn normaliser(name: &str) -> Result<Normaliser, PreprocessError> {
    match name {
        "zscore" => Ok(zscore),
        "zscore_foreground" => Ok(zscore_foreground),
        "zscore_head_box" => Ok(zscore_head_box),
        other => Err(PreprocessError::Unsupported(format!("normalisation {other}"))),
    }
}

/// HD-BET's: subtracts the mean and divides by the (population) standard
/// deviation. Returns the padding value, 0 (the mean), as HD-BET pads.
pub fn zscore(data: &mut [f32], _: Grid) -> Result<f32, PreprocessError> {
    let (mean, std) = mean_std(data, |_| true)?;
    apply(data, mean, std);
    Ok(0.0)
}

/// Z-scores with the mean and standard deviation of the head alone: the
/// voxels brighter than the volume's mean. A whole-volume z-score depends on
/// how much air the field of view holds: brain tissue lands near 1.0 on
/// Colin27 (43% air) but near 1.6 on the tightly cropped ROBEX atlas and 1.9
/// on the skull-stripped ICBM template, which a network without
/// normalisation layers takes for another tissue. Over the head alone the
/// brain's median lands within ±0.25 of 0 on all of them. Any positive
/// affine change of the input gives the same output, so a teacher with
/// instance norm sees nothing new. Returns the padding value: the volume's
/// minimum, air, rather than the head's mean.
pub fn zscore_foreground(data: &mut [f32], _: Grid) -> Result<f32, PreprocessError> {
    let (mean, _) = mean_std(data, |_| true)?;
    let (head_mean, head_std) = mean_std(data, |v| v > mean)?;
    let lowest = data.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    apply(data, head_mean, head_std);
    Ok(((lowest - head_mean) / head_std) as f32)
}

/// The whole-volume z-score the scan would get if its field of view were
/// the head's bounding box plus [`HEAD_BOX_MARGIN_MM`] of air on every side.
/// It keeps what the whole-volume z-score gives a typical scan (the head's
/// tissues relative to air and to each other), but no longer moves with how
/// much air the scanner happened to record: padding a scan with air, or
/// cropping air away, leaves the head's box and so the statistics unchanged.
/// Where the canonical box reaches past the scan, the missing voxels count
/// as air with the scan's own air's mean and spread. Returns the padding
/// value: the air's mean.
pub fn zscore_head_box(data: &mut [f32], grid: Grid) -> Result<f32, PreprocessError> {
    let (air_level, head_level) = two_levels(data)?;
    let cut = air_level + AIR_CUT * (head_level - air_level);
    // The air's own mean and spread (its noise), for the voxels the scan lacks.
    let (air, air_var) = match mean_std(data, |v| v <= cut) {
        Ok((m, s)) => (m, s * s),
        Err(PreprocessError::Constant(m)) => (m, 0.0),
        Err(e) => return Err(e),
    };
    let [lo, hi] = head_box(data, grid.dims, cut);
    let margin: [isize; 3] = std::array::from_fn(|i| (HEAD_BOX_MARGIN_MM / grid.spacing[i]).round() as isize);
    let (mut n, mut sum, mut sum_sq) = (0u64, 0.0f64, 0.0f64);
    let mut inside = 1u64;
    let mut range = [(0usize, 0usize); 3];
    for i in 0..3 {
        let (a, b) = (lo[i] as isize - margin[i], hi[i] as isize + margin[i]);
        inside *= (b - a) as u64;
        range[i] = (a.max(0) as usize, (b as usize).min(grid.dims[i]));
    }
    let [nx, ny, _] = grid.dims;
    for z in range[2].0..range[2].1 {
        for y in range[1].0..range[1].1 {
            let row = (z * ny + y) * nx;
            for &v in &data[row + range[0].0..row + range[0].1] {
                let v = v as f64;
                n += 1;
                sum += v;
                sum_sq += v * v;
            }
        }
    }
    // The box's voxels past the scan's edge: air the scanner did not record.
    let virtual_air = (inside - n) as f64;
    let count = inside as f64;
    let mean = (sum + virtual_air * air) / count;
    let var = ((sum_sq + virtual_air * (air_var + air * air)) / count - mean * mean).max(0.0);
    let std = var.sqrt();
    if std == 0.0 || !std.is_finite() {
        return Err(PreprocessError::Constant(mean));
    }
    apply(data, mean, std);
    Ok(((air - mean) / std) as f32)
}

/// The typical intensities of air and of the head: the two classes'
/// means where the threshold between them sits halfway (Ridler and Calvard's
/// iterative selection). The whole volume's mean alone is no threshold: in a
/// scan that is mostly air it falls into the air's noise.
fn two_levels(data: &[f32]) -> Result<(f64, f64), PreprocessError> {
    let (mut threshold, _) = mean_std(data, |_| true)?;
    let (mut low, mut high) = (threshold, threshold);
    for _ in 0..16 {
        let (n, sum_low, sum_high) = data.iter().fold((0usize, 0.0f64, 0.0f64), |(n, a, b), &v| {
            let v = v as f64;
            if v <= threshold { (n + 1, a + v, b) } else { (n, a, b + v) }
        });
        if n == 0 || n == data.len() {
            break;
        }
        (low, high) = (sum_low / n as f64, sum_high / (data.len() - n) as f64);
        let next = (low + high) / 2.0;
        if (next - threshold).abs() <= 1e-6 * (high - low).abs() {
            break;
        }
        threshold = next;
    }
    Ok((low, high))
}

/// The head's bounding box, [lo, hi) per storage axis: along each axis, the
/// slices where at least 1% as many voxels rise above `cut` as in the
/// fullest slice. Counting per slice rather than taking every bright voxel
/// keeps a few noisy air voxels or a ghosting artefact from stretching the box.
fn head_box(data: &[f32], dims: [usize; 3], cut: f64) -> [[usize; 3]; 2] {
    let [nx, ny, nz] = dims;
    let mut counts = [vec![0u64; nx], vec![0u64; ny], vec![0u64; nz]];
    for z in 0..nz {
        for y in 0..ny {
            let row = (z * ny + y) * nx;
            for (x, &v) in data[row..row + nx].iter().enumerate() {
                if v as f64 > cut {
                    counts[0][x] += 1;
                    counts[1][y] += 1;
                    counts[2][z] += 1;
                }
            }
        }
    }
    let mut lo = [0; 3];
    let mut hi = dims;
    for i in 0..3 {
        let most = counts[i].iter().copied().max().unwrap_or(0);
        let enough = |c: &u64| *c > 0 && *c * 100 >= most;
        if let (Some(a), Some(b)) = (counts[i].iter().position(enough), counts[i].iter().rposition(enough)) {
            (lo[i], hi[i]) = (a, b + 1);
        }
    }
    [lo, hi]
}

fn apply(data: &mut [f32], mean: f64, std: f64) {
    for v in data.iter_mut() {
        *v = ((*v as f64 - mean) / std) as f32;
    }
}

/// Mean and (population) standard deviation of the voxels `keep` selects, in
/// f64 so that sums over millions of voxels do not drift.
fn mean_std(data: &[f32], keep: impl Fn(f64) -> bool) -> Result<(f64, f64), PreprocessError> {
    let (mut n, mut sum) = (0usize, 0.0f64);
    for &v in data.iter() {
        if !v.is_finite() {
            return Err(PreprocessError::NotFinite);
        }
        if keep(v as f64) {
            n += 1;
            sum += v as f64;
        }
    }
    let mean = sum / n.max(1) as f64;
    let var = data.iter().map(|&v| v as f64).filter(|&v| keep(v)).map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
    let std = var.sqrt();
    if n == 0 || std == 0.0 || !std.is_finite() {
        return Err(PreprocessError::Constant(mean));
    }
    Ok((mean, std))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: Grid = Grid { dims: [8, 1, 1], spacing: [1.0; 3] };

    #[test]
    fn zscore_gives_zero_mean_unit_std() {
        let mut d: Vec<f32> = (0..1000).map(|i| (i % 17) as f32 * 3.0 + 5.0).collect();
        zscore(&mut d, Grid { dims: [1000, 1, 1], spacing: [1.0; 3] }).unwrap();
        let n = d.len() as f64;
        let mean = d.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = d.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }

    #[test]
    fn constant_image_is_refused() {
        for name in NORMALISATIONS {
            let mut d = vec![4.0f32; 64];
            let grid = Grid { dims: [4, 4, 4], spacing: [1.0; 3] };
            assert!(matches!(normaliser(name).unwrap()(&mut d, grid), Err(PreprocessError::Constant(_))), "{name}");
        }
    }

    #[test]
    fn zscore_foreground_uses_the_voxels_above_the_mean_and_pads_with_air() {
        // Air 0 (six voxels), head 10 and 20 (one each): the mean is 3.75,
        // so the head is {10, 20}: mean 15, std 5.
        let mut d = vec![0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 10.0, 20.0];
        let pad = zscore_foreground(&mut d, FLAT).unwrap();
        assert_eq!(d, vec![-3.0, -3.0, -3.0, -3.0, -3.0, -3.0, -1.0, 1.0]);
        assert_eq!(pad, -3.0);
        // Invariant to a positive affine change of the input.
        let mut scaled = vec![7.0f32, 7.0, 7.0, 7.0, 7.0, 7.0, 37.0, 67.0];
        zscore_foreground(&mut scaled, FLAT).unwrap();
        assert_eq!(scaled, d);
    }

    /// A noisy "head" (a ball of tissue, brighter inside) in a box of air of
    /// `pad` voxels on every side, at 2 mm: the margin is 10 voxels.
    fn head_in_air(pad: usize) -> (Vec<f32>, Grid) {
        let r = 12usize;
        let n = 2 * r + 2 * pad;
        let mut data = Vec::with_capacity(n * n * n);
        for z in 0..n {
            for y in 0..n {
                for x in 0..n {
                    let d2 = [x, y, z].iter().map(|&c| (c as f64 + 0.5 - n as f64 / 2.0).powi(2)).sum::<f64>();
                    // Noise tied to the head's frame, so that every scan holds the same head.
                    let [hx, hy, hz] = [x + 64 - pad, y + 64 - pad, z + 64 - pad];
                    let noise = ((hx * 7 + hy * 13 + hz * 29) % 11) as f32 * 0.5;
                    data.push(if d2 < (r * r) as f64 { 100.0 - d2.sqrt() as f32 * 3.0 + noise } else { noise });
                }
            }
        }
        (data, Grid { dims: [n; 3], spacing: [2.0; 3] })
    }

    #[test]
    fn the_head_box_z_score_does_not_move_with_the_air_around_the_head() {
        // Tight (the box's margin reaches past the scan), as wide as the
        // margin, and far wider: the same head gets the same intensities.
        let centre = |pad: usize| {
            let (mut data, grid) = head_in_air(pad);
            let pad_value = zscore_head_box(&mut data, grid).unwrap();
            let n = grid.dims[0];
            let mid = ((n / 2) * n + n / 2) * n + n / 2;
            (data[mid], pad_value)
        };
        let (tight, tight_pad) = centre(2);
        for pad in [10, 25] {
            let (v, p) = centre(pad);
            assert!((v - tight).abs() < 2e-3 && (p - tight_pad).abs() < 2e-3, "pad {pad}: {v} {p} vs {tight} {tight_pad}");
        }
        // A whole-volume z-score of the same scans moves by far more.
        let mut a = head_in_air(2).0;
        let mut b = head_in_air(25).0;
        let ga = Grid { dims: [28; 3], spacing: [2.0; 3] };
        let gb = Grid { dims: [74; 3], spacing: [2.0; 3] };
        zscore(&mut a, ga).unwrap();
        zscore(&mut b, gb).unwrap();
        let mid = |d: &[f32], n: usize| d[((n / 2) * n + n / 2) * n + n / 2];
        assert!((mid(&a, 28) - mid(&b, 74)).abs() > 1.0, "{} vs {}", mid(&a, 28), mid(&b, 74));
    }

    #[test]
    fn the_head_box_is_the_margin_plus_the_tissue_and_ignores_stray_voxels() {
        let (mut data, grid) = head_in_air(25);
        // One bright voxel in a corner does not stretch the box.
        data[0] = 100.0;
        let [lo, hi] = head_box(&data, grid.dims, 10.0);
        assert_eq!((lo, hi), ([25; 3], [49; 3]));
    }
}

