//! A 3D convolution with a LoRA adapter beside it, PEFT's scheme for Conv3d:
//! `lora_A` has the base layer's kernel, stride and padding and maps C_in to
//! r channels (Kaiming-uniform); `lora_B` is 1×1×1 from r to C_out,
//! initialised to zero; the output is `base(x) + (α / r) · B(A(x))`.
//!
//! The base weight and bias sit here under their own names (not inside a
//! nested `Conv3d`), so an adapted layer's base tensors keep the names they
//! have in the package, and only `lora_A.weight` / `lora_B.weight` are new.

// PEFT's tensor names (`lora_A`, `lora_B`), which adapter files keep; the
// Module derive turns the field names into variables too.
#![allow(non_snake_case)]

use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::{Initializer, PaddingConfig3d};
use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use super::AdapterSpec;

#[derive(Module, Debug)]
pub struct LoraConv3d {
    pub weight: Param<Tensor<5>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub lora_A: Conv3d,
    pub lora_B: Conv3d,
    stride: usize,
    padding: usize,
    /// α / r.
    scale: f32,
}

impl LoraConv3d {
    /// Puts an adapter beside `base`, a convolution with a cubic `kernel`,
    /// `stride`, and the size-keeping padding every family here uses.
    pub fn new(base: Conv3d, kernel: usize, stride: usize, spec: AdapterSpec, device: &Device) -> Self {
        let [out, inp] = [base.weight.dims()[0], base.weight.dims()[1]];
        let padding = (kernel - 1) / 2;
        // Burn's default conv initialiser is Kaiming-uniform with gain
        // 1/√3, which is PEFT's `kaiming_uniform_(a=√5)` for lora_A.
        let lora_a = Conv3dConfig::new([inp, spec.rank], [kernel; 3])
            .with_stride([stride; 3])
            .with_padding(PaddingConfig3d::Explicit(padding, padding, padding))
            .with_bias(false)
            .init(device);
        let lora_b = Conv3dConfig::new([spec.rank, out], [1; 3]).with_bias(false).with_initializer(Initializer::Zeros).init(device);
        Self { weight: base.weight, bias: base.bias, lora_A: lora_a, lora_B: lora_b, stride, padding, scale: spec.scale() }
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let options = ConvOptions::new([self.stride; 3], [self.padding; 3], [1; 3], 1);
        let base = conv3d(x.clone(), self.weight.val(), self.bias.as_ref().map(|b| b.val()), options);
        base + self.lora_B.forward(self.lora_A.forward(x)).mul_scalar(self.scale)
    }
}

/// The kernel `weight + scale · B·A` that computes what an adapted layer does:
/// A shares the base layer's stride and padding, and B is pointwise, so the
/// composition is one convolution whose kernel mixes A's r kernels by B.
/// Shapes: weight `[out, in, k, k, k]`, a `[r, in, k, k, k]`, b `[out, r, 1, 1, 1]`.
pub fn merged_kernel(weight: Tensor<5>, a: Tensor<5>, b: Tensor<5>, scale: f32) -> Tensor<5> {
    let [out, inp, k0, k1, k2] = weight.dims();
    let rank = a.dims()[0];
    let update = b.reshape([out, rank]).matmul(a.reshape([rank, inp * k0 * k1 * k2]));
    weight + update.reshape([out, inp, k0, k1, k2]).mul_scalar(scale)
}
