//! `unet3d`: the student family, a plain 3D U-Net small enough to distil into.
//!
//! Built entirely from its [`Unet3dConfig`] (depth, base width, normalisation),
//! like nnU-Net builds its networks from a plans file. The decoder upsamples
//! with trilinear interpolation followed by a convolution rather than a
//! transposed convolution, which is slow in Burn. [`Unet3d::forward_features`]
//! returns the multi-scale features (each encoder level, the bottleneck, each
//! decoder level) that feature distillation needs.

use std::cell::RefCell;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{InstanceNorm, InstanceNormConfig};
use burn::tensor::activation::leaky_relu;

use crate::kernels::instance_norm_leaky_relu;
use burn::tensor::{Device, Tensor};

use super::conv::{Conv, ConvBuilder, ConvSpec, Factorisation};
use super::taps::Taps;
use super::upsample::upsample_trilinear_x2;

#[derive(Config, Debug, PartialEq)]
pub struct Unet3dConfig {
    #[config(default = 1)]
    pub in_channels: usize,
    #[config(default = 2)]
    pub num_classes: usize,
    /// Channels at full resolution; each level below doubles them.
    #[config(default = 4)]
    pub base_filters: usize,
    /// Number of downsamplings: the bottleneck works at 1/2^depth resolution,
    /// so inputs must be divisible by 2^depth.
    #[config(default = 3)]
    pub depth: usize,
    /// Caps the width of the deeper levels (a deep but narrow network: a
    /// large receptive field for few parameters). None: no cap.
    #[config(default = "None")]
    pub max_filters: Option<usize>,
    /// Instance normalisation after every 3×3×3 convolution (per-volume
    /// statistics, as HD-BET uses them); false leaves only biases.
    #[config(default = true)]
    pub instance_norm: bool,
    #[config(default = 0.01)]
    pub leakiness: f64,
    #[config(default = 1e-5)]
    pub norm_epsilon: f64,
}

fn spec(cin: usize, cout: usize, kernel: usize, stride: usize) -> ConvSpec {
    ConvSpec { in_channels: cin, out_channels: cout, kernel, stride, bias: true }
}

/// Convolution, optional instance norm, leaky ReLU.
#[derive(Module, Debug)]
pub struct ConvUnit {
    conv: Conv,
    norm: Option<InstanceNorm>,
    leakiness: f64,
}

impl ConvUnit {
    /// `level`: the resolution of its input.
    fn new(cin: usize, cout: usize, stride: usize, level: u32, cfg: &Unet3dConfig, convs: &ConvBuilder) -> Self {
        let norm = cfg
            .instance_norm
            .then(|| InstanceNormConfig::new(cout).with_epsilon(cfg.norm_epsilon).init(convs.device()));
        Self { conv: convs.conv("conv", spec(cin, cout, 3, stride), level), norm, leakiness: cfg.leakiness }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.conv.forward(x);
        match &self.norm {
            Some(norm) => instance_norm_leaky_relu(norm, x, self.leakiness),
            None => leaky_relu(x, self.leakiness),
        }
    }
}

/// One resolution level: an optional stride-2 entry unit, then two units.
#[derive(Module, Debug)]
pub struct Level {
    down: Option<ConvUnit>,
    unit1: ConvUnit,
    unit2: ConvUnit,
}

/// One decoder level: upsample, a unit that halves the channels, concatenation
/// with the encoder's skip, and a unit that fuses them.
#[derive(Module, Debug)]
pub struct UpLevel {
    reduce: ConvUnit,
    fuse: ConvUnit,
}

#[derive(Module, Debug)]
pub struct Unet3d {
    /// `encoder[0]` at full resolution … `encoder[depth]` is the bottleneck.
    encoder: Vec<Level>,
    /// `decoder[0]` brings the bottleneck up one level, … the last returns to full resolution.
    decoder: Vec<UpLevel>,
    head: Conv,
}

/// Everything feature distillation looks at, from coarse to fine within each group.
pub struct Unet3dFeatures {
    /// Encoder outputs at full, 1/2, … resolution (not the bottleneck).
    pub encoder: Vec<Tensor<5>>,
    pub bottleneck: Tensor<5>,
    /// Decoder outputs from the coarsest to full resolution.
    pub decoder: Vec<Tensor<5>>,
    pub logits: Tensor<5>,
}

impl Unet3dConfig {
    /// Channels at `level` (0 = full resolution; `depth` = the bottleneck).
    pub fn width(&self, level: usize) -> usize {
        let w = self.base_filters << level;
        self.max_filters.map_or(w, |m| w.min(m.max(self.base_filters)))
    }

    pub fn init(&self, device: &Device) -> Unet3d {
        let (none, layers) = (Factorisation::new(), RefCell::new(Vec::new()));
        self.build(&ConvBuilder::new(&none, device, &layers))
    }

    /// Builds the network, its convolutions from `convs` (which factorises
    /// the ones a compressed package lists, and records them all).
    pub fn build(&self, convs: &ConvBuilder) -> Unet3d {
        let unit = |path: String, cin, cout, stride, level: usize| {
            ConvUnit::new(cin, cout, stride, level as u32, self, &convs.child(&path))
        };
        let encoder = (0..=self.depth)
            .map(|level| {
                let c = self.width(level);
                let (down, cin) = if level == 0 {
                    (None, self.in_channels)
                } else {
                    let prev = self.width(level - 1);
                    (Some(unit(format!("encoder.{level}.down"), prev, c, 2, level - 1)), c)
                };
                Level {
                    down,
                    unit1: unit(format!("encoder.{level}.unit1"), cin, c, 1, level),
                    unit2: unit(format!("encoder.{level}.unit2"), c, c, 1, level),
                }
            })
            .collect();
        let decoder = (0..self.depth)
            .rev()
            .enumerate()
            .map(|(index, level)| {
                let c = self.width(level);
                let below = self.width(level + 1);
                UpLevel {
                    reduce: unit(format!("decoder.{index}.reduce"), below, c, 1, level),
                    fuse: unit(format!("decoder.{index}.fuse"), 2 * c, c, 1, level),
                }
            })
            .collect();
        Unet3d { encoder, decoder, head: convs.conv("head", spec(self.base_filters, self.num_classes, 1, 1), 0) }
    }

    /// FLOPs of one forward pass on a `shape` input (multiply-add = 2).
    pub fn flops(&self, shape: [usize; 3]) -> u64 {
        let vox = |level: usize| -> u64 { shape.iter().map(|&s| (s >> level) as u64).product() };
        let c3 = |cin: usize, cout: usize, level: usize| 2 * 27 * (cin * cout) as u64 * vox(level);
        let mut f = 0;
        for level in 0..=self.depth {
            let c = self.width(level);
            let cin = if level == 0 { self.in_channels } else { c };
            if level > 0 {
                f += c3(self.width(level - 1), c, level);
            }
            f += c3(cin, c, level) + c3(c, c, level);
        }
        for level in 0..self.depth {
            let c = self.width(level);
            f += c3(self.width(level + 1), c, level) + c3(2 * c, c, level);
        }
        f + 2 * (self.base_filters * self.num_classes) as u64 * vox(0)
    }
}

impl Unet3d {
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward_features(x).logits
    }

    pub fn forward_features(&self, x: Tensor<5>) -> Unet3dFeatures {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut x = x;
        for level in &self.encoder {
            if let Some(down) = &level.down {
                x = down.forward(x);
            }
            x = level.unit2.forward(level.unit1.forward(x));
            skips.push(x.clone());
        }
        let bottleneck = skips.pop().expect("depth + 1 levels");
        let encoder = skips.clone();
        let mut decoder = Vec::with_capacity(self.decoder.len());
        let mut x = bottleneck.clone();
        for (up, skip) in self.decoder.iter().zip(skips.into_iter().rev()) {
            let coarse = up.reduce.forward(upsample_trilinear_x2(x));
            x = up.fuse.forward(Tensor::cat(vec![skip, coarse], 1));
            decoder.push(x.clone());
        }
        let logits = self.head.forward(x);
        Unet3dFeatures { encoder, bottleneck, decoder, logits }
    }

    /// The distillation taps: the encoder at 1/2, the bottleneck, and the
    /// decoder level at 1/2 (the second to last). Needs depth ≥ 1.
    pub fn forward_taps(&self, x: Tensor<5>) -> Taps {
        let mut f = self.forward_features(x);
        let decoder = f.decoder.len().checked_sub(2).map(|i| f.decoder.swap_remove(i));
        let bottleneck = f.bottleneck;
        Taps {
            encoder: f.encoder.get(1).cloned().unwrap_or_else(|| bottleneck.clone()),
            decoder: decoder.unwrap_or_else(|| bottleneck.clone()),
            bottleneck,
            logits: f.logits,
        }
    }

    /// Channels of the widest full-resolution tensor (skip + upsampled): the memory peak.
    pub fn widest_full_resolution_channels(&self) -> usize {
        2 * self.head.channels()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_features_and_parameter_count() {
        let device = Device::flex();
        let cfg = Unet3dConfig::new().with_base_filters(4).with_depth(3);
        let net = cfg.init(&device);
        let x = Tensor::<5>::random([1, 1, 16, 24, 32], Distribution::Default, &device);
        let f = net.forward_features(x);
        assert_eq!(f.logits.dims(), [1, 2, 16, 24, 32]);
        assert_eq!(f.encoder.iter().map(|t| t.dims()).collect::<Vec<_>>(), vec![[1, 4, 16, 24, 32], [1, 8, 8, 12, 16], [1, 16, 4, 6, 8]]);
        assert_eq!(f.bottleneck.dims(), [1, 32, 2, 3, 4]);
        assert_eq!(f.decoder.iter().map(|t| t.dims()).collect::<Vec<_>>(), vec![[1, 16, 4, 6, 8], [1, 8, 8, 12, 16], [1, 4, 16, 24, 32]]);
        // Hand count: convs (27·cin·cout + cout) and instance norms (2·c) per unit.
        let unit = |cin: usize, cout: usize| 27 * cin * cout + cout + 2 * cout;
        let mut expected = unit(1, 4) + unit(4, 4);
        for (prev, c) in [(4, 8), (8, 16), (16, 32)] {
            expected += unit(prev, c) + unit(c, c) + unit(c, c);
        }
        for c in [16, 8, 4] {
            expected += 2 * unit(2 * c, c);
        }
        expected += 4 * 2 + 2;
        assert_eq!(net.num_params(), expected);
        assert_eq!(net.widest_full_resolution_channels(), 8);
    }

    #[test]
    fn capped_widths_make_a_deep_narrow_network() {
        let device = Device::flex();
        let cfg = Unet3dConfig::new().with_base_filters(4).with_depth(4).with_max_filters(Some(8));
        assert_eq!((0..=4).map(|l| cfg.width(l)).collect::<Vec<_>>(), vec![4, 8, 8, 8, 8]);
        let net = cfg.init(&device);
        let taps = net.forward_taps(Tensor::<5>::zeros([1, 1, 32, 32, 32], &device));
        assert_eq!(taps.bottleneck.dims(), [1, 8, 2, 2, 2]);
        assert_eq!(taps.encoder.dims(), [1, 8, 16, 16, 16]);
        assert_eq!(taps.decoder.dims(), [1, 8, 16, 16, 16]);
        let unit = |cin: usize, cout: usize| 27 * cin * cout + cout + 2 * cout;
        let mut expected = unit(1, 4) + unit(4, 4);
        for (prev, c) in [(4, 8), (8, 8), (8, 8), (8, 8)] {
            expected += unit(prev, c) + 2 * unit(c, c);
        }
        for (below, c) in [(8, 8), (8, 8), (8, 8), (8, 4)] {
            expected += unit(below, c) + unit(2 * c, c);
        }
        expected += 4 * 2 + 2;
        assert_eq!(net.num_params(), expected);
        assert!(expected < 50_000, "{expected}");
    }

    #[test]
    fn without_norm_there_are_no_norm_parameters() {
        let device = Device::flex();
        let with = Unet3dConfig::new().init(&device).num_params();
        let without = Unet3dConfig::new().with_instance_norm(false).init(&device).num_params();
        // 2 per channel for every unit: level widths 4, 8, 16, 32 (units 2, 3, 3, 3) and decoder 16, 8, 4 (2 each)
        let norm_params = 2 * (4 * 2 + (8 + 16 + 32) * 3 + (16 + 8 + 4) * 2);
        assert_eq!(with - without, norm_params);
    }
}
