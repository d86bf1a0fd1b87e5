//! Sliding-window inference with Gaussian blending (as nnU-Net does it).
//!
//! Patches are cut on the host and uploaded one at a time, and the class
//! probabilities are accumulated on the host, so device memory stays bounded
//! by one patch whatever the volume size. Patch centres get more weight than
//! their borders, where the network sees less context.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::model::Network;

/// Start offsets along one axis: evenly spaced, first at 0 and last at
/// `size - patch`, with at most `patch * step_fraction` between neighbours.
pub fn window_starts(size: usize, patch: usize, step_fraction: f64) -> Vec<usize> {
    if size <= patch {
        return vec![0];
    }
    let max_step = ((patch as f64) * step_fraction).max(1.0);
    let steps = ((size - patch) as f64 / max_step).ceil() as usize + 1;
    let span = (size - patch) as f64;
    (0..steps)
        .map(|i| (span * i as f64 / (steps - 1) as f64).round() as usize)
        .collect()
}

/// Gaussian importance map over a patch (x fastest), sigma = patch / 8,
/// peak 1, with zeros lifted to the smallest positive value so that every
/// voxel gets some weight.
pub fn gaussian_weights(patch: [usize; 3]) -> Vec<f32> {
    let axis = |n: usize| -> Vec<f64> {
        let c = (n as f64 - 1.0) / 2.0;
        let s = n as f64 / 8.0;
        (0..n).map(|i| (-((i as f64 - c).powi(2)) / (2.0 * s * s)).exp()).collect()
    };
    let (gx, gy, gz) = (axis(patch[0]), axis(patch[1]), axis(patch[2]));
    let mut w = Vec::with_capacity(patch.iter().product());
    for z in &gz {
        for y in &gy {
            for x in &gx {
                w.push((x * y * z) as f32);
            }
        }
    }
    let min_pos = w.iter().copied().filter(|&v| v > 0.0).fold(f32::INFINITY, f32::min);
    for v in w.iter_mut() {
        if *v <= 0.0 {
            *v = min_pos;
        }
    }
    w
}

/// The largest patch, no bigger than `patch` and a multiple of `multiple` on
/// every axis, whose biggest activation (`bytes_per_voxel` at full
/// resolution) fits in one device buffer of `max_bytes`. The longest axis is
/// shrunk first, so the patch stays as cubic as it can.
pub fn fit_patch(patch: [usize; 3], multiple: usize, bytes_per_voxel: u64, max_bytes: Option<u64>) -> [usize; 3] {
    let Some(max) = max_bytes else { return patch };
    let m = multiple.max(1);
    let mut p = patch;
    while p.iter().map(|&v| v as u64).product::<u64>() * bytes_per_voxel > max {
        let longest = (0..3).max_by_key(|&i| (p[i], i)).expect("three axes");
        if p[longest] <= m {
            break; // cannot shrink further; the device will report the failure
        }
        p[longest] -= m;
    }
    p
}

/// What [`predict_probabilities`] needs to know besides the data.
pub struct WindowPlan {
    /// Storage-order dims of the (padded) input.
    pub dims: [usize; 3],
    /// Storage-order patch size (each ≤ the matching dim).
    pub patch: [usize; 3],
    /// Fraction of the patch between window starts (0.5 = half overlap).
    pub step_fraction: f64,
    /// Average the prediction over the 8 mirrorings of the patch.
    pub mirror: bool,
}

impl WindowPlan {
    pub fn windows(&self) -> Vec<[usize; 3]> {
        let starts: Vec<Vec<usize>> =
            (0..3).map(|i| window_starts(self.dims[i], self.patch[i], self.step_fraction)).collect();
        let mut out = Vec::new();
        for &z in &starts[2] {
            for &y in &starts[1] {
                for &x in &starts[0] {
                    out.push([x, y, z]);
                }
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("reading results back from the device failed: {0}")]
    Readback(String),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Worker(String),
}

/// One network pass over one window: the unit of work that can go to
/// another core.
pub struct PassInput {
    /// Which network of the ensemble (0: the model's own).
    pub member: usize,
    /// Network-order `[d, h, w]`.
    pub shape: [usize; 3],
    /// The window's voxels, x fastest.
    pub patch: Vec<f32>,
    /// Average over the 8 mirrorings.
    pub mirror: bool,
}

/// Runs passes and returns each one's softmax probabilities
/// `[classes, d, h, w]`, in the order given. The sliding window hands over
/// up to [`PassRunner::width`] passes at a time and blends the results in
/// order, so every runner gives the same probabilities, bit for bit.
#[allow(async_fn_in_trait)] // used through generics only, never as dyn, never across threads
pub trait PassRunner {
    /// How many passes run at once (1 for this thread alone).
    fn width(&self) -> usize;
    async fn run(&mut self, passes: Vec<PassInput>) -> Result<Vec<Vec<f32>>, WindowError>;
}

/// Passes on this thread, on `device`.
pub struct LocalRunner<'a> {
    pub networks: Vec<&'a Network>,
    pub device: &'a Device,
}

impl<'a> LocalRunner<'a> {
    /// The model's networks (its own, then the ensemble's) on `device`.
    pub fn new(model: &'a crate::model::Model, device: &'a Device) -> Self {
        LocalRunner { networks: model.networks().collect(), device }
    }
}

impl PassRunner for LocalRunner<'_> {
    fn width(&self) -> usize {
        1
    }

    async fn run(&mut self, passes: Vec<PassInput>) -> Result<Vec<Vec<f32>>, WindowError> {
        let mut out = Vec::with_capacity(passes.len());
        for p in passes {
            out.push(predict_patch(self.networks[p.member], self.device, p.patch, p.shape, p.mirror).await?);
        }
        Ok(out)
    }
}

/// Class probabilities `[classes][voxel]` (voxel x fastest) over the whole
/// input, averaged over `members` networks (an ensemble; usually one), each
/// pass run by `runner`. `on_step(done, total)` is called after each pass
/// is blended in; returning false cancels.
pub async fn predict_probabilities<R: PassRunner>(
    runner: &mut R,
    members: usize,
    data: &[f32],
    plan: &WindowPlan,
    num_classes: usize,
    on_step: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<f32>>, WindowError> {
    let [nx, ny, nz] = plan.dims;
    let n = nx * ny * nz;
    let [px, py, pz] = plan.patch;
    let windows = plan.windows();
    let single = windows.len() == 1;
    let weights = if single { vec![1.0; px * py * pz] } else { gaussian_weights(plan.patch) };
    let mut acc = vec![vec![0.0f32; n]; num_classes];
    let mut norm = vec![0.0f32; n];
    let pv = px * py * pz;
    // The Gaussian weight of each voxel counts once per window; each network
    // adds its share of it, so the ensemble is the plain mean.
    let share = 1.0 / members as f32;
    let passes: Vec<(usize, usize)> = (0..windows.len()).flat_map(|w| (0..members).map(move |m| (w, m))).collect();
    let cut = |[x0, y0, z0]: [usize; 3]| {
        let mut patch = Vec::with_capacity(pv);
        for z in z0..z0 + pz {
            for y in y0..y0 + py {
                let row = x0 + nx * (y + ny * z);
                patch.extend_from_slice(&data[row..row + px]);
            }
        }
        patch
    };
    let mut done = 0;
    for batch in passes.chunks(runner.width().max(1)) {
        let inputs = batch
            .iter()
            .map(|&(w, member)| PassInput { member, shape: [pz, py, px], patch: cut(windows[w]), mirror: plan.mirror })
            .collect();
        let results = runner.run(inputs).await?;
        for (&(w, _), probs) in batch.iter().zip(&results) {
            let [x0, y0, z0] = windows[w];
            let mut i = 0;
            for z in z0..z0 + pz {
                for y in y0..y0 + py {
                    let row = x0 + nx * (y + ny * z);
                    for x in 0..px {
                        let w = weights[i + x] * share;
                        norm[row + x] += w;
                        for c in 0..num_classes {
                            acc[c][row + x] += probs[c * pv + i + x] * w;
                        }
                    }
                    i += px;
                }
            }
            done += 1;
            if !on_step(done, passes.len()) {
                return Err(WindowError::Cancelled);
            }
        }
    }
    for c in acc.iter_mut() {
        for (v, w) in c.iter_mut().zip(&norm) {
            *v /= *w;
        }
    }
    Ok(acc)
}

/// Softmax probabilities `[classes, d, h, w]` flattened, for one patch of
/// shape `[d, h, w]` (network order), optionally averaged over mirrorings.
async fn predict_patch(
    network: &Network,
    device: &Device,
    patch: Vec<f32>,
    shape: [usize; 3],
    mirror: bool,
) -> Result<Vec<f32>, WindowError> {
    let [d, h, w] = shape;
    let x = Tensor::<5>::from_data(TensorData::new(patch, [1, 1, d, h, w]), device);
    let probs = if mirror {
        // The 8 subsets of the three spatial axes, as HD-BET's `predict_case_3D_net`.
        let mut sum: Option<Tensor<5>> = None;
        for mask in 0u8..8 {
            let axes: Vec<usize> = (0..3).filter(|a| mask & (1 << a) != 0).map(|a| a + 2).collect();
            let input = flip(x.clone(), &axes);
            let p = flip(softmax(network.forward(input), 1), &axes);
            sum = Some(match sum {
                Some(s) => s + p,
                None => p,
            });
        }
        sum.expect("eight mirrorings") / 8.0
    } else {
        softmax(network.forward(x), 1)
    };
    let data = probs.into_data_async().await.map_err(|e| WindowError::Readback(e.to_string()))?;
    data.try_into_vec::<f32>().map_err(|e| WindowError::Readback(format!("{e:?}")))
}

fn flip(x: Tensor<5>, axes: &[usize]) -> Tensor<5> {
    match axes.len() {
        0 => x,
        1 => x.flip([axes[0]]),
        2 => x.flip([axes[0], axes[1]]),
        _ => x.flip([axes[0], axes[1], axes[2]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_axis_with_even_steps() {
        assert_eq!(window_starts(128, 128, 0.5), vec![0]);
        assert_eq!(window_starts(160, 128, 0.5), vec![0, 32]);
        let s = window_starts(300, 128, 0.5);
        assert_eq!(*s.first().unwrap(), 0);
        assert_eq!(*s.last().unwrap(), 300 - 128);
        assert!(s.windows(2).all(|p| p[1] - p[0] <= 64));
    }

    #[test]
    fn patch_shrinks_to_fit_the_device_buffer_limit() {
        // HD-BET's widest full-resolution activation is 42 channels of f32.
        let bpv = 42 * 4;
        assert_eq!(fit_patch([128, 128, 128], 16, bpv, None), [128, 128, 128]);
        assert_eq!(fit_patch([128, 128, 128], 16, bpv, Some(1 << 30)), [128, 128, 128]);
        // lavapipe: 128 MiB per storage buffer
        let p = fit_patch([128, 128, 128], 16, bpv, Some(128 << 20));
        assert_eq!(p, [96, 96, 80]);
        assert!(p.iter().product::<usize>() as u64 * bpv <= 128 << 20);
    }

    /// An ensemble's probabilities are the mean of its members', blending included.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn ensemble_is_the_mean_of_its_members() {
        use crate::model::hdbet::HdBetConfig;
        let device = crate::inference::backend::OpenedDevice::cpu().device;
        let tiny = || Network::HdBet(HdBetConfig::new().with_base_filters(2).init(&device));
        let (a, b) = (tiny(), tiny());
        // Two overlapping windows along x, so the Gaussian blending takes part.
        let plan = WindowPlan { dims: [48, 32, 32], patch: [32, 32, 32], step_fraction: 0.5, mirror: false };
        assert_eq!(plan.windows().len(), 2);
        let data: Vec<f32> = (0..48 * 32 * 32).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let run = |nets: &[&Network]| {
            let mut runner = LocalRunner { networks: nets.to_vec(), device: &device };
            pollster::block_on(predict_probabilities(&mut runner, nets.len(), &data, &plan, 2, &mut |_, _| true)).unwrap()
        };
        let (pa, pb, pab, paa) = (run(&[&a]), run(&[&b]), run(&[&a, &b]), run(&[&a, &a]));
        let max_diff = |x: &[Vec<f32>], y: &dyn Fn(usize, usize) -> f32| {
            x.iter().enumerate().flat_map(|(c, v)| v.iter().enumerate().map(move |(i, p)| (c, i, *p))).map(|(c, i, p)| (p - y(c, i)).abs()).fold(0.0f32, f32::max)
        };
        assert!(max_diff(&pab, &|c, i| (pa[c][i] + pb[c][i]) / 2.0) < 1e-5);
        assert!(max_diff(&paa, &|c, i| pa[c][i]) < 1e-6);
        // The members differ, or the test would prove nothing.
        assert!(max_diff(&pa, &|c, i| pb[c][i]) > 1e-3);
    }

    /// A runner that takes several passes at a time (as the browser's worker
    /// pool does) gives the probabilities of one pass at a time, bit for bit:
    /// the results are blended in the same order.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn batched_passes_give_the_same_probabilities_bit_for_bit() {
        use crate::model::hdbet::HdBetConfig;
        struct Batched<'a>(LocalRunner<'a>, usize);
        impl PassRunner for Batched<'_> {
            fn width(&self) -> usize {
                self.1
            }
            async fn run(&mut self, passes: Vec<PassInput>) -> Result<Vec<Vec<f32>>, WindowError> {
                assert!(passes.len() <= self.1, "a batch of {} passes for a width of {}", passes.len(), self.1);
                // Backwards, as workers may finish in any order; the runner returns them in order.
                let mut out: Vec<(usize, Vec<f32>)> = Vec::new();
                for (i, p) in passes.into_iter().enumerate().rev() {
                    out.push((i, self.0.run(vec![p]).await?.remove(0)));
                }
                out.sort_by_key(|(i, _)| *i);
                Ok(out.into_iter().map(|(_, p)| p).collect())
            }
        }
        let device = crate::inference::backend::OpenedDevice::cpu().device;
        let (a, b) = (
            Network::HdBet(HdBetConfig::new().with_base_filters(2).init(&device)),
            Network::HdBet(HdBetConfig::new().with_base_filters(2).init(&device)),
        );
        // Three windows along x and two members: six passes, batches of four and two.
        let plan = WindowPlan { dims: [64, 32, 32], patch: [32, 32, 32], step_fraction: 0.5, mirror: false };
        assert_eq!(plan.windows().len(), 3);
        let data: Vec<f32> = (0..64 * 32 * 32).map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let one = pollster::block_on(predict_probabilities(&mut LocalRunner { networks: vec![&a, &b], device: &device }, 2, &data, &plan, 2, &mut |_, _| true)).unwrap();
        let mut steps = Vec::new();
        let batched = Batched(LocalRunner { networks: vec![&a, &b], device: &device }, 4);
        let many = pollster::block_on(predict_probabilities(&mut { batched }, 2, &data, &plan, 2, &mut |d, t| {
            steps.push((d, t));
            true
        }))
        .unwrap();
        assert!(one.iter().zip(&many).all(|(x, y)| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())));
        assert_eq!(steps, (1..=6).map(|d| (d, 6)).collect::<Vec<_>>());
    }

    #[test]
    fn gaussian_peaks_in_the_middle_and_is_positive() {
        let w = gaussian_weights([8, 8, 8]);
        assert!(w.iter().all(|&v| v > 0.0));
        let centre = w[3 + 8 * (3 + 8 * 3)];
        assert!(w.iter().all(|&v| v <= centre + 1e-6));
    }
}
