//! Training-time augmentation of a volume and the teacher's outputs for it.
//!
//! Spatial transforms (flips, a small affine) move the image and every target
//! channel through the *same* mapping, so the cached teacher outputs stay
//! aligned with the image the student sees. Intensity transforms (gamma,
//! scale and shift, a smooth bias field, noise, a lower resolution) touch only
//! the image: the teacher's answer for a scan does not change when the scan
//! gets noisier, which is what the student should learn.
//!
//! Volumes are x-fastest `Vec<f32>` with `dims = [nx, ny, nz]`; targets are
//! `channels` such volumes back to back.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};

use crate::inference::normalise::AIR_CUT;
use crate::volume::resample;

/// How strong each augmentation is, and how often it is applied.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct AugmentConfig {
    /// Probability of mirroring each axis ...
    pub flip_probability: f64,
    /// ... of those marked here (x, y, z). Volumes turned to RAS mirror only
    /// left-right: an upside-down head is never fed to the network.
    pub flip_axes: [bool; 3],
    /// Probability of the small affine, and its largest rotation (degrees, each
    /// axis) and relative scaling.
    pub affine_probability: f64,
    pub max_rotation_degrees: f64,
    pub max_scale: f64,
    /// Gamma drawn from [1/γ, γ] on the image mapped to [0, 1].
    pub gamma_probability: f64,
    pub max_gamma: f64,
    /// Intensity `x·a + b` with a in [1−s, 1+s], b in [−s, s] (in standard deviations).
    pub intensity_probability: f64,
    pub intensity_strength: f64,
    /// Multiplicative field exp(linear + quadratic terms) of this strength.
    pub bias_field_probability: f64,
    pub bias_field_strength: f64,
    /// Gaussian noise with σ up to this (in standard deviations of the image).
    pub noise_probability: f64,
    pub max_noise: f64,
    /// Down- then up-sampling by a factor up to this.
    pub low_resolution_probability: f64,
    pub max_low_resolution: f64,
    /// Probability of seeing the volume as if its field of view held another
    /// fraction of air, drawn from this range (see [`Background`]).
    pub field_of_view_probability: f64,
    pub air_fraction_range: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            flip_probability: 0.5,
            flip_axes: [true; 3],
            affine_probability: 0.3,
            max_rotation_degrees: 10.0,
            max_scale: 0.1,
            gamma_probability: 0.3,
            max_gamma: 1.5,
            intensity_probability: 0.3,
            intensity_strength: 0.1,
            bias_field_probability: 0.3,
            bias_field_strength: 0.3,
            noise_probability: 0.2,
            max_noise: 0.1,
            low_resolution_probability: 0.2,
            max_low_resolution: 2.0,
            field_of_view_probability: 0.0,
            air_fraction_range: [0.2, 0.75],
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all (every probability zero), e.g. to overfit a check.
    pub fn none() -> Self {
        Self {
            flip_probability: 0.0,
            affine_probability: 0.0,
            gamma_probability: 0.0,
            intensity_probability: 0.0,
            bias_field_probability: 0.0,
            noise_probability: 0.0,
            low_resolution_probability: 0.0,
            field_of_view_probability: 0.0,
            ..Self::default()
        }
    }
}

/// An image and its aligned targets (e.g. teacher logits, `channels` of them),
/// plus targets on coarser grids (e.g. teacher features at 1/2 and 1/16).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub dims: [usize; 3],
    pub image: Vec<f32>,
    pub channels: usize,
    pub target: Vec<f32>,
    /// Each covers the image: voxel j of a grid at stride s stands for image
    /// voxels s·j … s·j + s − 1, so the grids share the image's centre.
    pub coarse: Vec<Grid>,
}

/// `channels` volumes of `dims` back to back (channel-major, x fastest).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub dims: [usize; 3],
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Grid {
    /// Applies `f` to each channel's volume.
    fn map_channels(&self, f: impl Fn(&[f32]) -> Vec<f32>) -> Grid {
        let n: usize = self.dims.iter().product();
        let data = if n == 0 { Vec::new() } else { self.data.chunks_exact(n).flat_map(f).collect() };
        Grid { dims: self.dims, channels: self.channels, data }
    }
}

/// A seeded augmenter: the same seed gives the same sequence of samples.
pub struct Augmenter {
    config: AugmentConfig,
    rng: StdRng,
}

impl Augmenter {
    pub fn new(config: AugmentConfig, seed: u64) -> Self {
        Self { config, rng: StdRng::seed_from_u64(seed) }
    }

    /// A randomly augmented copy of `sample`.
    pub fn augment(&mut self, sample: &Sample) -> Sample {
        let c = self.config.clone();
        let mut s = sample.clone();
        for axis in (0..3).filter(|&a| c.flip_axes[a]) {
            if self.rng.random_bool(c.flip_probability) {
                s = flip(&s, axis);
            }
        }
        if self.rng.random_bool(c.affine_probability) {
            let angles = [(); 3].map(|_| self.uniform(c.max_rotation_degrees).to_radians());
            let scale = 1.0 + self.uniform(c.max_scale);
            s = affine(&s, rotation(angles), scale);
        }
        if self.rng.random_bool(c.gamma_probability) {
            let g = c.max_gamma.powf(self.uniform(1.0));
            gamma(&mut s.image, g);
        }
        if self.rng.random_bool(c.intensity_probability) {
            let (a, b) = (1.0 + self.uniform(c.intensity_strength), self.uniform(c.intensity_strength));
            let (mean, std) = mean_std(&s.image);
            for v in s.image.iter_mut() {
                *v = (*v as f64 * a + b * std + mean * (1.0 - a)) as f32;
            }
        }
        if self.rng.random_bool(c.bias_field_probability) {
            let coefficients = [(); 9].map(|_| self.uniform(c.bias_field_strength));
            bias_field(&mut s.image, s.dims, coefficients);
        }
        if self.rng.random_bool(c.noise_probability) {
            let (_, std) = mean_std(&s.image);
            let sigma = self.rng.random::<f64>() * c.max_noise * std;
            if sigma > 0.0 {
                let normal = Normal::new(0.0, sigma).expect("finite positive sigma");
                for v in s.image.iter_mut() {
                    *v += normal.sample(&mut self.rng) as f32;
                }
            }
        }
        if self.rng.random_bool(c.low_resolution_probability) {
            let factor = 1.0 + self.rng.random::<f64>() * (c.max_low_resolution - 1.0);
            let low = s.dims.map(|n| ((n as f64 / factor).round() as usize).max(1));
            s.image = resample::trilinear(&resample::trilinear(&s.image, s.dims, low), low, s.dims);
        }
        s
    }

    /// With `field_of_view_probability`, re-standardises the image as if the
    /// whole volume (`background` describes it) held another fraction of air.
    /// Nothing is drawn when the probability is zero, so recipes without it
    /// keep their random streams.
    pub fn field_of_view(&mut self, s: &mut Sample, background: &Background) {
        let p = self.config.field_of_view_probability;
        if p <= 0.0 || !self.rng.random_bool(p) {
            return;
        }
        let [lo, hi] = self.config.air_fraction_range;
        let fraction = lo + self.rng.random::<f64>() * (hi - lo);
        let (scale, shift) = background.restandardise(fraction);
        for v in s.image.iter_mut() {
            *v = (*v as f64 * scale + shift) as f32;
        }
    }

    /// Uniform in [−range, range].
    fn uniform(&mut self, range: f64) -> f64 {
        (self.rng.random::<f64>() * 2.0 - 1.0) * range
    }
}

/// What a whole-volume z-score depends on besides the head: how much air the
/// field of view holds. A scan cropped tight to the head and one with a wide
/// margin give the same brain different z values (Colin27, 43% air: brain
/// near 1.0; the ROBEX volume, 61%: near 1.6), and a network without
/// normalisation layers reads intensities absolutely. Measured once per
/// volume on its normalised image, so that a patch can be re-standardised as
/// if air had been added or cropped away, exactly as the z-score of that
/// other scan would come out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Background {
    /// Mean and mean square of the whole normalised image.
    pub mean: f64,
    pub mean_square: f64,
    /// The air's value (the image's minimum) and its share of the voxels.
    pub air: f64,
    pub air_fraction: f64,
}

impl Background {
    /// Air is every voxel within a tenth of the way from the minimum to the
    /// mean of the voxels `labels` marks as foreground (the brain): the
    /// scanner's noise floor, not dark tissue.
    pub fn measure(image: &[f32], labels: &[u8]) -> Self {
        let (mean, std) = mean_std(image);
        let air = image.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let brain: Vec<f32> = image.iter().zip(labels).filter(|(_, &l)| l > 0).map(|(&v, _)| v).collect();
        let tissue = if brain.is_empty() { mean } else { mean_std(&brain).0 };
        let threshold = air + AIR_CUT * (tissue - air);
        let air_voxels = image.iter().filter(|&&v| (v as f64) <= threshold).count();
        let air_fraction = air_voxels as f64 / image.len().max(1) as f64;
        Self { mean, mean_square: std * std + mean * mean, air, air_fraction }
    }

    /// `(scale, shift)` such that `x·scale + shift` is the z-score `x` would
    /// get if the volume held `fraction` air: air voxels are added (or
    /// removed) at the air's value, and the mean and standard deviation
    /// recomputed. The fraction is kept below 1 (a volume of air only has no
    /// z-score) and above 0.
    pub fn restandardise(&self, fraction: f64) -> (f64, f64) {
        let f = fraction.clamp(0.0, 0.99);
        // Air voxels added per voxel of the volume (negative: removed). With
        // f ≥ 0 this never removes more air than there is: −added ≤ air_fraction.
        let added = (f - self.air_fraction) / (1.0 - f);
        let total = 1.0 + added;
        let mean = (self.mean + added * self.air) / total;
        let square = (self.mean_square + added * self.air * self.air) / total;
        let std = (square - mean * mean).max(1e-12).sqrt();
        (1.0 / std, -mean / std)
    }
}

/// Mirrors `axis` of the image and of every target channel and grid.
pub fn flip(s: &Sample, axis: usize) -> Sample {
    let map = |v: &[f32]| crate::volume::flip_axis(v, s.dims, axis);
    let n: usize = s.dims.iter().product();
    let target = s.target.chunks_exact(n).flat_map(map).collect();
    let coarse = s.coarse.iter().map(|g| g.map_channels(|v| crate::volume::flip_axis(v, g.dims, axis))).collect();
    Sample { dims: s.dims, image: map(&s.image), channels: s.channels, target, coarse }
}

/// Rotation matrix from angles about x, y and z (applied in that order).
fn rotation([a, b, c]: [f64; 3]) -> [[f64; 3]; 3] {
    let (sa, ca, sb, cb, sc, cc) = (a.sin(), a.cos(), b.sin(), b.cos(), c.sin(), c.cos());
    let rx = [[1.0, 0.0, 0.0], [0.0, ca, -sa], [0.0, sa, ca]];
    let ry = [[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]];
    let rz = [[cc, -sc, 0.0], [sc, cc, 0.0], [0.0, 0.0, 1.0]];
    matmul3(rz, matmul3(ry, rx))
}

fn matmul3(a: [[f64; 3]; 3], b: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Rotates and scales about the volume's centre; every output voxel samples
/// the input trilinearly at the same source point for the image and the
/// targets (edge values outside). Coarse grids get the same rotation and
/// scale about their own centre, which is the image's. Written by hand
/// because it is a few lines over a trilinear sampler, not worth a dependency.
pub fn affine(s: &Sample, rotation: [[f64; 3]; 3], scale: f64) -> Sample {
    let n: usize = s.dims.iter().product();
    let sources = affine_sources(s.dims, rotation, scale);
    let map = |v: &[f32]| sources.iter().map(|&p| sample_trilinear(v, s.dims, p)).collect::<Vec<f32>>();
    let target = s.target.chunks_exact(n).flat_map(map).collect();
    let coarse = s
        .coarse
        .iter()
        .map(|g| {
            let sources = affine_sources(g.dims, rotation, scale);
            g.map_channels(|v| sources.iter().map(|&p| sample_trilinear(v, g.dims, p)).collect())
        })
        .collect();
    Sample { dims: s.dims, image: map(&s.image), channels: s.channels, target, coarse }
}

/// For each output voxel, the input position it samples.
fn affine_sources(dims: [usize; 3], rotation: [[f64; 3]; 3], scale: f64) -> Vec<[f64; 3]> {
    let [nx, ny, nz] = dims;
    let centre = [(nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0, (nz as f64 - 1.0) / 2.0];
    // Output → input: the inverse of "scale then rotate" is "rotate back, unscale".
    let mut sources = Vec::with_capacity(nx * ny * nz);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let d = [x as f64 - centre[0], y as f64 - centre[1], z as f64 - centre[2]];
                let p: [f64; 3] = std::array::from_fn(|i| (0..3).map(|k| rotation[k][i] * d[k]).sum::<f64>() / scale + centre[i]);
                sources.push(p);
            }
        }
    }
    sources
}

fn sample_trilinear(v: &[f32], [nx, ny, nz]: [usize; 3], p: [f64; 3]) -> f32 {
    let clamp = |x: f64, n: usize| x.clamp(0.0, (n - 1) as f64);
    let (x, y, z) = (clamp(p[0], nx), clamp(p[1], ny), clamp(p[2], nz));
    let (x0, y0, z0) = (x.floor() as usize, y.floor() as usize, z.floor() as usize);
    let (x1, y1, z1) = ((x0 + 1).min(nx - 1), (y0 + 1).min(ny - 1), (z0 + 1).min(nz - 1));
    let (fx, fy, fz) = (x - x0 as f64, y - y0 as f64, z - z0 as f64);
    let at = |x: usize, y: usize, z: usize| v[x + nx * (y + ny * z)] as f64;
    let lerp = |a: f64, b: f64, t: f64| a + (b - a) * t;
    let c00 = lerp(at(x0, y0, z0), at(x1, y0, z0), fx);
    let c10 = lerp(at(x0, y1, z0), at(x1, y1, z0), fx);
    let c01 = lerp(at(x0, y0, z1), at(x1, y0, z1), fx);
    let c11 = lerp(at(x0, y1, z1), at(x1, y1, z1), fx);
    lerp(lerp(c00, c10, fy), lerp(c01, c11, fy), fz) as f32
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// `x ↦ min + (max − min)·((x − min)/(max − min))^γ`: the range is kept.
fn gamma(v: &mut [f32], g: f64) {
    let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let span = (hi - lo) as f64;
    if !(span > 0.0) {
        return;
    }
    for x in v.iter_mut() {
        *x = (lo as f64 + span * ((*x - lo) as f64 / span).powf(g)) as f32;
    }
}

/// Multiplies by `exp(Σ c·monomial)` over the linear and quadratic monomials
/// of coordinates scaled to [−1, 1]: a smooth field like an MRI coil's.
fn bias_field(v: &mut [f32], [nx, ny, nz]: [usize; 3], c: [f64; 9]) {
    let unit = |i: usize, n: usize| if n > 1 { 2.0 * i as f64 / (n - 1) as f64 - 1.0 } else { 0.0 };
    let mut i = 0;
    for z in 0..nz {
        let w = unit(z, nz);
        for y in 0..ny {
            let v_ = unit(y, ny);
            for x in 0..nx {
                let u = unit(x, nx);
                let e = c[0] * u + c[1] * v_ + c[2] * w + c[3] * u * u + c[4] * v_ * v_ + c[5] * w * w + c[6] * u * v_ + c[7] * u * w + c[8] * v_ * w;
                v[i] = (v[i] as f64 * e.exp()) as f32;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image and a target that are the same function of position (the
    /// target in two channels, one negated): any spatial transform must keep
    /// them equal, voxel for voxel.
    fn aligned_sample() -> Sample {
        let dims = [12, 10, 8];
        let image: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|i| {
                let (x, y, z) = (i % 12, (i / 12) % 10, i / 120);
                (x * x + 3 * y + 7 * z * y) as f32 / 10.0
            })
            .collect();
        let target = image.iter().copied().chain(image.iter().map(|v| -v)).collect();
        Sample { dims, image, channels: 2, target, coarse: Vec::new() }
    }

    fn assert_aligned(s: &Sample) {
        let n = s.image.len();
        for i in 0..n {
            assert!((s.image[i] - s.target[i]).abs() < 1e-5, "channel 0 at {i}");
            assert!((s.image[i] + s.target[n + i]).abs() < 1e-5, "channel 1 at {i}");
        }
    }

    #[test]
    fn spatial_transforms_keep_image_and_target_aligned() {
        let s = aligned_sample();
        for axis in 0..3 {
            let f = flip(&s, axis);
            assert_aligned(&f);
            assert_ne!(f.image, s.image, "flip {axis} changed nothing");
            assert_eq!(flip(&f, axis), s, "flipping twice is the identity");
        }
        let a = affine(&s, rotation([0.1, -0.15, 0.2]), 1.08);
        assert_aligned(&a);
        assert_ne!(a.image, s.image);
        let identity = affine(&s, rotation([0.0; 3]), 1.0);
        assert!(identity.image.iter().zip(&s.image).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn coarse_grids_follow_the_image() {
        // A linear image, and a stride-2 grid holding the same function at
        // each coarse voxel's centre (fine position 2j + 0.5). After any
        // spatial transform, a coarse voxel must equal the mean of the fine
        // voxels it covers (exact for a linear function away from the edges).
        let f = |x: f64, y: f64, z: f64| (x + 2.0 * y - 0.5 * z) as f32;
        let grid = |n: usize, at: &dyn Fn(usize) -> f64| -> Vec<f32> {
            let mut v = Vec::new();
            for z in 0..n {
                for y in 0..n {
                    for x in 0..n {
                        v.push(f(at(x), at(y), at(z)));
                    }
                }
            }
            v
        };
        let image = grid(16, &|i| i as f64);
        let coarse = Grid { dims: [8; 3], channels: 1, data: grid(8, &|j| 2.0 * j as f64 + 0.5) };
        let s = Sample { dims: [16; 3], image, channels: 0, target: Vec::new(), coarse: vec![coarse] };
        let check = |t: &Sample, interior: std::ops::Range<usize>| {
            let c = &t.coarse[0].data;
            for z in interior.clone() {
                for y in interior.clone() {
                    for x in interior.clone() {
                        let mut mean = 0.0;
                        for (dx, dy, dz) in (0..8).map(|k| (k & 1, (k >> 1) & 1, k >> 2)) {
                            mean += t.image[(2 * x + dx) + 16 * ((2 * y + dy) + 16 * (2 * z + dz))] / 8.0;
                        }
                        let got = c[x + 8 * (y + 8 * z)];
                        assert!((got - mean).abs() < 1e-3, "({x},{y},{z}): coarse {got} vs fine mean {mean}");
                    }
                }
            }
        };
        check(&s, 0..8);
        for axis in 0..3 {
            check(&flip(&s, axis), 0..8);
        }
        check(&affine(&s, rotation([0.05, -0.04, 0.03]), 1.03), 2..6);
    }

    #[test]
    fn intensity_transforms_leave_the_target_alone() {
        let s = aligned_sample();
        let all = AugmentConfig {
            flip_probability: 0.0,
            affine_probability: 0.0,
            gamma_probability: 1.0,
            intensity_probability: 1.0,
            bias_field_probability: 1.0,
            noise_probability: 1.0,
            low_resolution_probability: 1.0,
            ..AugmentConfig::default()
        };
        let out = Augmenter::new(all, 7).augment(&s);
        assert_eq!(out.target, s.target);
        assert_ne!(out.image, s.image);
        assert!(out.image.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn every_augmentation_at_once_keeps_alignment_up_to_intensity() {
        // Spatial only, with every spatial transform forced: still aligned.
        let spatial = AugmentConfig { flip_probability: 1.0, affine_probability: 1.0, ..AugmentConfig::none() };
        let mut augmenter = Augmenter::new(spatial, 3);
        for _ in 0..4 {
            assert_aligned(&augmenter.augment(&aligned_sample()));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_samples() {
        let s = aligned_sample();
        let (mut a, mut b) = (Augmenter::new(AugmentConfig::default(), 42), Augmenter::new(AugmentConfig::default(), 42));
        for _ in 0..5 {
            assert_eq!(a.augment(&s), b.augment(&s));
        }
    }

    /// Re-standardising for another air fraction gives exactly the z-score
    /// of the volume with that much air added or cropped away.
    #[test]
    fn field_of_view_matches_the_z_score_of_a_padded_or_cropped_volume() {
        let zscore = |v: &[f64]| -> Vec<f64> {
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
            v.iter().map(|x| (x - m) / s).collect()
        };
        // A head: 40 air voxels at 0 and 60 of tissue (brain labelled), raw.
        let raw: Vec<f64> = (0..100).map(|i| if i < 40 { 0.0 } else { 100.0 + (i % 7) as f64 * 20.0 }).collect();
        let labels: Vec<u8> = (0..100).map(|i| (i >= 70) as u8).collect();
        let z: Vec<f32> = zscore(&raw).iter().map(|&v| v as f32).collect();
        let b = Background::measure(&z, &labels);
        assert!((b.air_fraction - 0.4).abs() < 1e-12, "{b:?}");
        assert!(b.mean.abs() < 1e-6 && (b.mean_square - 1.0).abs() < 1e-6, "{b:?}");
        // 60 more air voxels (100 of 160: 62.5% air), and 30 fewer (10 of 70).
        for (extra_air, fraction) in [(60i64, 100.0 / 160.0), (-30, 10.0 / 70.0)] {
            let other: Vec<f64> = if extra_air > 0 {
                raw.iter().copied().chain(std::iter::repeat_n(0.0, extra_air as usize)).collect()
            } else {
                raw[(-extra_air) as usize..].to_vec()
            };
            let expected = zscore(&other);
            let offset = if extra_air > 0 { 0 } else { (-extra_air) as usize };
            let (scale, shift) = b.restandardise(fraction);
            for (i, &zi) in z.iter().enumerate().skip(offset) {
                let got = zi as f64 * scale + shift;
                assert!((got - expected[i - offset]).abs() < 1e-5, "{extra_air}: voxel {i}: {got} vs {}", expected[i - offset]);
            }
        }
        // Its own air fraction changes nothing.
        let (scale, shift) = b.restandardise(0.4);
        assert!((scale - 1.0).abs() < 1e-6 && shift.abs() < 1e-6);
    }

    #[test]
    fn field_of_view_draws_nothing_when_off_and_leaves_the_target_alone() {
        let s = aligned_sample();
        let labels = vec![1u8; s.image.len()];
        let background = Background::measure(&s.image, &labels);
        // Off (the default): the sample and the random stream are untouched.
        let (mut a, mut b) = (Augmenter::new(AugmentConfig::default(), 5), Augmenter::new(AugmentConfig::default(), 5));
        let mut t = s.clone();
        a.field_of_view(&mut t, &background);
        assert_eq!(t, s);
        assert_eq!(a.augment(&s), b.augment(&s));
        // On: the image moves, the target does not.
        let on = AugmentConfig { field_of_view_probability: 1.0, air_fraction_range: [0.7, 0.7], ..AugmentConfig::none() };
        let mut t = s.clone();
        Augmenter::new(on, 5).field_of_view(&mut t, &background);
        assert_eq!(t.target, s.target);
        assert_ne!(t.image, s.image);
    }

    #[test]
    fn gamma_keeps_the_range() {
        let mut v = vec![-2.0f32, 0.0, 1.0, 6.0];
        gamma(&mut v, 2.0);
        assert_eq!((v[0], v[3]), (-2.0, 6.0));
        assert!((v[1] - (-2.0 + 8.0 * 0.0625)).abs() < 1e-6);
    }
}
