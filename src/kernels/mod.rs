//! Hand-written CPU kernels behind Burn's modules: a fast path that models
//! take for inference on the flex device, while everything else (WebGPU,
//! training on the autodiff device, layers the kernel does not cover) stays
//! on Burn's own operations. Models stay Burn modules; only the arithmetic
//! of an untracked CPU convolution moves here.
//!
//! Which kernel runs is one process-wide choice ([`set_cpu_conv`]), so that
//! a benchmark or a test can compare them on the same model.

pub mod conv3d;
mod microkernel;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use burn::nn::conv::Conv3d;
use burn::nn::PaddingConfig3d;
use burn::tensor::{DType, Device, Tensor, TensorData};

pub use conv3d::{Geometry, Lanes};

/// The CPU convolution in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuConv {
    /// Burn flex's im2col + gemm.
    Burn,
    /// [`conv3d::conv3d`] with these lanes.
    Direct(Lanes),
}

impl CpuConv {
    pub fn name(self) -> &'static str {
        match self {
            CpuConv::Burn => "burn",
            CpuConv::Direct(lanes) => lanes.name(),
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        let choice = match name {
            "burn" => CpuConv::Burn,
            "relaxed-simd" => CpuConv::Direct(Lanes::RelaxedSimd),
            "simd128" => CpuConv::Direct(Lanes::Simd128),
            "portable" => CpuConv::Direct(Lanes::Portable),
            other => return Err(format!("unknown CPU convolution \"{other}\" (burn, relaxed-simd, simd128 or portable)")),
        };
        match choice {
            CpuConv::Direct(lanes) if !Lanes::available().contains(&lanes) => {
                Err(format!("{name} needs a wasm build; this build has {:?}", Lanes::available()))
            }
            ok => Ok(ok),
        }
    }

    /// The default of this build: relaxed SIMD in the browser, where it
    /// measured fastest; natively Burn's gemm, which uses AVX2/FMA and every
    /// core and which the portable lanes do not beat (README, Speed).
    pub fn default_for_build() -> Self {
        if cfg!(target_arch = "wasm32") {
            CpuConv::Direct(Lanes::RelaxedSimd)
        } else {
            CpuConv::Burn
        }
    }

    fn code(self) -> u8 {
        match self {
            CpuConv::Burn => 1,
            CpuConv::Direct(Lanes::RelaxedSimd) => 2,
            CpuConv::Direct(Lanes::Simd128) => 3,
            CpuConv::Direct(Lanes::Portable) => 4,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => CpuConv::Burn,
            2 => CpuConv::Direct(Lanes::RelaxedSimd),
            3 => CpuConv::Direct(Lanes::Simd128),
            4 => CpuConv::Direct(Lanes::Portable),
            _ => CpuConv::default_for_build(),
        }
    }
}

/// 0: not set, the build's default.
static CPU_CONV: AtomicU8 = AtomicU8::new(0);

pub fn set_cpu_conv(choice: CpuConv) {
    CPU_CONV.store(choice.code(), Ordering::Relaxed);
}

pub fn cpu_conv() -> CpuConv {
    CpuConv::from_code(CPU_CONV.load(Ordering::Relaxed))
}

/// Microseconds spent in CPU inference convolutions (either kernel) by this
/// instance so far.
static CONV_MICROS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds spent in CPU inference convolutions so far: benchmarks take
/// the difference over a run, to tell the convolutions from the rest.
pub fn conv_ms() -> f64 {
    CONV_MICROS.load(Ordering::Relaxed) as f64 / 1000.0
}

/// `conv.forward(x)`, on the direct kernel where it applies.
pub fn conv3d_forward(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    let Some(g) = direct_geometry(conv, &x) else { return conv.forward(x) };
    // Flex computes eagerly, so the clock measures the convolution itself.
    let start = crate::inference::clock::now_ms();
    let out = match cpu_conv() {
        CpuConv::Direct(lanes) => direct(conv, x, &g, lanes),
        CpuConv::Burn => conv.forward(x),
    };
    let micros = ((crate::inference::clock::now_ms() - start) * 1000.0).max(0.0) as u64;
    CONV_MICROS.fetch_add(micros, Ordering::Relaxed);
    out
}

/// The geometry when the direct kernel covers this call: untracked f32 on
/// the flex device, one group, no dilation, explicit symmetric padding.
fn direct_geometry(conv: &Conv3d, x: &Tensor<5>) -> Option<Geometry> {
    let device = x.device();
    if device.is_autodiff() || device != Device::flex() || x.dtype() != DType::F32 {
        return None;
    }
    if conv.groups != 1 || conv.dilation != [1, 1, 1] {
        return None;
    }
    let PaddingConfig3d::Explicit(p0, p1, p2) = conv.padding else { return None };
    let [batch, in_channels, d, h, w] = x.dims();
    let [out_channels, w_in, k0, k1, k2] = conv.weight.dims();
    let g = Geometry {
        batch,
        in_channels,
        out_channels,
        size: [d, h, w],
        kernel: [k0, k1, k2],
        stride: conv.stride,
        padding: [p0, p1, p2],
    };
    (w_in == in_channels && g.valid()).then_some(g)
}

fn direct(conv: &Conv3d, x: Tensor<5>, g: &Geometry, lanes: Lanes) -> Tensor<5> {
    let device = x.device();
    let input = x.into_data();
    let weight = conv.weight.val().into_data();
    let bias = conv.bias.as_ref().map(|b| b.val().into_data());
    let (Ok(input), Ok(weight)) = (input.as_slice::<f32>(), weight.as_slice::<f32>()) else {
        unreachable!("direct_geometry admitted only f32")
    };
    let bias = bias.as_ref().map(|b| b.as_slice::<f32>().expect("f32 bias of an f32 layer"));
    let out = conv3d::conv3d(input, weight, bias, g, lanes);
    let [od, oh, ow] = g.out_size();
    Tensor::from_data(TensorData::new(out, [g.batch, g.out_channels, od, oh, ow]), &device)
}
