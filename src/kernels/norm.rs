//! Instance normalisation and leaky ReLU in one step, on plain f32 slices.
//!
//! Burn's `InstanceNorm` runs as a group norm: a mean, a subtraction, a
//! square, a second mean, a square root, a division, the affine and then
//! the activation, each a pass over the whole activation with its own
//! allocation. Every layer of HD-BET and of the students pays this, and on
//! one wasm thread it measured a large share of the time outside the
//! convolutions. Here each channel's plane is read once for its statistics
//! (shifted by an estimate of the mean and summed into f64, so the one-pass
//! variance does not cancel; see `moments`) and once more to
//! write the normalised, scaled, shifted and rectified value in place.

/// Normalises every `[n, c]` plane of NCDHW `x` (planes of `spatial`
/// voxels) in place: `y = (x − mean) / sqrt(var + epsilon) · gamma[c] +
/// beta[c]`, then `y < 0 ? slope · y : y`. The variance is the biased one,
/// as in `InstanceNorm`. Without `affine` (gamma, beta) it is the identity.
pub fn instance_norm_leaky_relu(
    x: &mut [f32],
    channels: usize,
    spatial: usize,
    affine: Option<(&[f32], &[f32])>,
    epsilon: f64,
    slope: f32,
) {
    assert!(channels >= 1 && spatial >= 1 && x.len().is_multiple_of(channels * spatial), "{} values are not planes of {channels} × {spatial}", x.len());
    if let Some((gamma, beta)) = affine {
        assert!(gamma.len() == channels && beta.len() == channels, "affine of {} / {} for {channels} channels", gamma.len(), beta.len());
    }
    // Chunks of one plane enumerate (item, channel) in NCDHW order.
    let per_plane = |(i, plane): (usize, &mut [f32])| {
        let c = i % channels;
        let (g, b) = affine.map_or((1.0, 0.0), |(g, b)| (g[c], b[c]));
        normalise_plane(plane, g, b, epsilon, slope);
    };
    super::for_each_chunk(x, spatial, per_plane);
}

/// Mean and biased variance in one pass. The values are shifted by an
/// estimate of the mean (the mean of the first 1024) before they are summed,
/// so `E[(x − k)²] − E[x − k]²` does not cancel when the mean is large
/// against the spread. Eight f32 lanes (which the compiler vectorises) sum
/// runs of 4096 values, and each run's total is added in f64, so a plane of
/// millions of voxels loses no precision to long f32 sums.
fn moments(p: &[f32]) -> (f64, f64) {
    let head = &p[..p.len().min(1024)];
    let k = (head.iter().map(|&v| v as f64).sum::<f64>() / head.len() as f64) as f32;
    let (mut sum, mut squares) = (0.0f64, 0.0f64);
    for run in p.chunks(4096) {
        let (mut s, mut q) = ([0.0f32; 8], [0.0f32; 8]);
        let mut lanes = run.chunks_exact(8);
        for v in &mut lanes {
            for j in 0..8 {
                let d = v[j] - k;
                s[j] += d;
                q[j] += d * d;
            }
        }
        for &v in lanes.remainder() {
            let d = v - k;
            s[0] += d;
            q[0] += d * d;
        }
        sum += s.iter().map(|&v| v as f64).sum::<f64>();
        squares += q.iter().map(|&v| v as f64).sum::<f64>();
    }
    let n = p.len() as f64;
    let shifted_mean = sum / n;
    (k as f64 + shifted_mean, (squares / n - shifted_mean * shifted_mean).max(0.0))
}

fn normalise_plane(p: &mut [f32], gamma: f32, beta: f32, epsilon: f64, slope: f32) {
    let (mean, var) = moments(p);
    let scale = gamma as f64 / (var + epsilon).sqrt();
    // y = x · scale + shift: the normalisation and the affine in one multiply-add.
    let (scale, shift) = (scale as f32, (beta as f64 - mean * scale) as f32);
    for v in p.iter_mut() {
        let y = *v * scale + shift;
        *v = if y < 0.0 { y * slope } else { y };
    }
}
