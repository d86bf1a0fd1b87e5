//! What feature distillation compares between a teacher and a student: one
//! encoder level, the bottleneck and one decoder level, plus the logits.
//!
//! Every family picks its taps at fixed strides so that a teacher and a
//! student line up: `encoder` and `decoder` at 1/2 resolution, `bottleneck`
//! at the network's coarsest level (1/16 for HD-BET, 1/2^depth for unet3d;
//! a finer student bottleneck is average-pooled to the teacher's).

use burn::tensor::Tensor;

/// `[batch, channels, d, h, w]` each.
pub struct Taps {
    pub encoder: Tensor<5>,
    pub bottleneck: Tensor<5>,
    pub decoder: Tensor<5>,
    pub logits: Tensor<5>,
}

/// Resolution divisors of the encoder and decoder taps (the bottleneck's
/// depends on the network).
pub const ENCODER_STRIDE: usize = 2;
pub const DECODER_STRIDE: usize = 2;
