//! Hand-written CPU kernels behind Burn's modules: a fast path that models
//! take on the flex device, for inference and for training, while
//! everything else (WebGPU, layers the kernels do not cover) stays on Burn's
//! own operations. Models stay Burn modules; only the arithmetic of CPU
//! tensors moves here: the convolution ([`winograd`] for the 3³ stride-1
//! layers where it pays, [`conv3d`] for the rest), the instance norm with
//! its leaky ReLU ([`norm`]) and the trilinear ×2 upsampling ([`upsample`])
//! for inference; in training the convolution is a custom autodiff node
//! ([`tracked`]) whose backward pass runs the same kernels and
//! [`weight_grad`], so Burn's autodiff keeps the graph.
//!
//! Which kernel runs is one process-wide choice ([`set_cpu_conv`]), so that
//! a benchmark or a test can compare them on the same model.

pub mod conv3d;
pub mod gpu_conv;
mod microkernel;
pub mod norm;
pub mod tracked;
pub mod upsample;
pub mod weight_grad;
pub mod winograd;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use burn::nn::conv::Conv3d;
use burn::nn::{InstanceNorm, PaddingConfig3d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{DType, Device, Tensor, TensorData};

pub use conv3d::{Geometry, Lanes};

/// The CPU convolution in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuConv {
    /// Burn flex's im2col + gemm.
    Burn,
    /// [`winograd::conv3d`] for the 3³ stride-1 layers where it is faster,
    /// [`conv3d::conv3d`] for the rest, with these lanes.
    Fast(Lanes),
    /// [`conv3d::conv3d`] alone, with these lanes: the reference the fast
    /// choice is measured against.
    Direct(Lanes),
}

impl CpuConv {
    /// `burn`, a lane name (`relaxed-simd`, `simd128`, `portable`: the fast
    /// choice), or a lane name with `-direct` (the direct kernel alone).
    pub fn name(self) -> &'static str {
        match self {
            CpuConv::Burn => "burn",
            CpuConv::Fast(lanes) => lanes.name(),
            CpuConv::Direct(Lanes::RelaxedSimd) => "relaxed-simd-direct",
            CpuConv::Direct(Lanes::Simd128) => "simd128-direct",
            CpuConv::Direct(Lanes::Portable) => "portable-direct",
        }
    }

    /// The hand-written kernels' lanes, unless Burn's convolution is chosen.
    pub fn lanes(self) -> Option<Lanes> {
        match self {
            CpuConv::Burn => None,
            CpuConv::Fast(lanes) | CpuConv::Direct(lanes) => Some(lanes),
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        let (lanes_name, direct) = match name.strip_suffix("-direct") {
            Some(lanes) => (lanes, true),
            None => (name, false),
        };
        let lanes = match lanes_name {
            "burn" if !direct => return Ok(CpuConv::Burn),
            "relaxed-simd" => Lanes::RelaxedSimd,
            "simd128" => Lanes::Simd128,
            "portable" => Lanes::Portable,
            _ => {
                return Err(format!(
                    "unknown CPU convolution \"{name}\" (burn, relaxed-simd, simd128 or portable, each of the last three also with -direct)"
                ))
            }
        };
        if !Lanes::available().contains(&lanes) {
            let has: Vec<&str> = Lanes::available().iter().map(|l| l.name()).collect();
            return Err(format!("this engine cannot run the {name} convolution; it has burn, {}", has.join(", ")));
        }
        Ok(if direct { CpuConv::Direct(lanes) } else { CpuConv::Fast(lanes) })
    }

    /// The default of this build: in the browser the fast kernels on the
    /// fastest lanes the engine has (relaxed SIMD, else SIMD128, both faster
    /// than Burn's gemm there); natively Burn's gemm, which uses AVX2/FMA and
    /// every core and which the portable lanes do not beat (README, Speed).
    pub fn default_for_build() -> Self {
        if cfg!(target_arch = "wasm32") {
            CpuConv::Fast(Lanes::available()[0])
        } else {
            CpuConv::Burn
        }
    }

    const ALL: [CpuConv; 7] = [
        CpuConv::Burn,
        CpuConv::Fast(Lanes::RelaxedSimd),
        CpuConv::Fast(Lanes::Simd128),
        CpuConv::Fast(Lanes::Portable),
        CpuConv::Direct(Lanes::RelaxedSimd),
        CpuConv::Direct(Lanes::Simd128),
        CpuConv::Direct(Lanes::Portable),
    ];

    fn code(self) -> u8 {
        1 + Self::ALL.iter().position(|&c| c == self).expect("every choice is listed") as u8
    }

    fn from_code(code: u8) -> Self {
        match code {
            0 => CpuConv::default_for_build(),
            k => Self::ALL[k as usize - 1],
        }
    }
}

/// `f` on each `len`-long chunk of `x` with its index: natively on every
/// core (flex's gemm uses them too); a browser's wasm instance has one
/// thread, and workers split the work above this level.
pub(crate) fn for_each_chunk(x: &mut [f32], len: usize, f: impl Fn((usize, &mut [f32])) + Send + Sync) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        x.par_chunks_mut(len).enumerate().for_each(f);
    }
    #[cfg(target_arch = "wasm32")]
    x.chunks_mut(len).enumerate().for_each(f);
}

/// The convolution on a wgpu device (WebGPU in the browser).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuConv {
    /// Burn's own kernel (its direct convolution, as bedside builds Burn): the default.
    Burn,
    /// [`gpu_conv::conv3d_tiled`] for the layers it covers.
    Tiled,
}

impl GpuConv {
    pub fn name(self) -> &'static str {
        match self {
            GpuConv::Burn => "burn",
            GpuConv::Tiled => "tiled",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "burn" => Ok(GpuConv::Burn),
            "tiled" => Ok(GpuConv::Tiled),
            other => Err(format!("unknown GPU convolution \"{other}\" (burn or tiled)")),
        }
    }
}

/// Whether the tiled GPU convolution is chosen. Burn's stays the default
/// until the tiled one is measured faster on a real GPU (README, Speed): on
/// one, Burn's kernel ran HD-BET's 1.97 TFLOP in about 3 s.
static GPU_CONV_TILED: AtomicBool = AtomicBool::new(false);

pub fn set_gpu_conv(choice: GpuConv) {
    GPU_CONV_TILED.store(choice == GpuConv::Tiled, Ordering::Relaxed);
}

pub fn gpu_conv() -> GpuConv {
    if GPU_CONV_TILED.load(Ordering::Relaxed) {
        GpuConv::Tiled
    } else {
        GpuConv::Burn
    }
}

/// Chunks (output planes or plane pairs) to stage per slab for
/// [`for_each_chunk`]: two per core natively, so every core has work; one in
/// a browser's single-threaded wasm instance.
pub(crate) fn chunks_per_slab() -> usize {
    #[cfg(not(target_arch = "wasm32"))]
    return 2 * rayon::current_num_threads();
    #[cfg(target_arch = "wasm32")]
    return 1;
}

/// 0: not set, the build's default.
static CPU_CONV: AtomicU8 = AtomicU8::new(0);

pub fn set_cpu_conv(choice: CpuConv) {
    CPU_CONV.store(choice.code(), Ordering::Relaxed);
}

/// The convolution for inference: the chosen one, else the build's default.
pub fn cpu_conv() -> CpuConv {
    CpuConv::from_code(CPU_CONV.load(Ordering::Relaxed))
}

/// The convolution for training (autodiff tensors on the CPU): the chosen
/// one, else the fast kernels on every build. Natively too: there they
/// train 1.7–2.1× faster than flex on two cores (README, Speed), although
/// flex's AVX2 gemm runs HD-BET's inference faster than the portable lanes.
pub fn cpu_conv_for_training() -> CpuConv {
    match CPU_CONV.load(Ordering::Relaxed) {
        0 => CpuConv::Fast(Lanes::available()[0]),
        code => CpuConv::from_code(code),
    }
}

/// Back to the build's defaults, as if nothing had been chosen.
pub fn reset_cpu_conv() {
    CPU_CONV.store(0, Ordering::Relaxed);
}

/// Microseconds spent in CPU inference convolutions (either kernel) by this
/// instance so far.
static CONV_MICROS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds spent in CPU inference convolutions so far: benchmarks take
/// the difference over a run, to tell the convolutions from the rest.
pub fn conv_ms() -> f64 {
    CONV_MICROS.load(Ordering::Relaxed) as f64 / 1000.0
}

/// Whether a hand-written kernel may take `x`: f32 on the flex device, with
/// no autodiff graph to record (training keeps Burn's differentiable ops).
pub fn untracked_cpu_f32(x: &Tensor<5>) -> bool {
    let device = x.device();
    !device.is_autodiff() && device == Device::flex() && x.dtype() == DType::F32
}

/// `conv.forward(x)`, on the hand-written kernels where they apply: the
/// CPU's on the flex device (untracked for inference, or as a custom
/// autodiff node for training, [`tracked`]), the tiled one on a wgpu device.
pub fn conv3d_forward(conv: &Conv3d, x: Tensor<5>) -> Tensor<5> {
    if let Some(out) = tiled_gpu(conv, &x) {
        return out;
    }
    let training = tracked::covers(&x);
    let choice = if training { cpu_conv_for_training() } else { cpu_conv() };
    let geometry = geometry(conv, &x);
    let by_winograd = |g: &Geometry| matches!(choice, CpuConv::Fast(_)) && winograd::pays(g);
    if training {
        let node = choice.lanes().zip(geometry).and_then(|(lanes, g)| tracked::forward(conv, &x, &g, lanes, by_winograd(&g)));
        return node.unwrap_or_else(|| conv.forward(x));
    }
    let Some(g) = geometry.filter(|_| untracked_cpu_f32(&x)) else { return conv.forward(x) };
    // Flex computes eagerly, so the clock measures the convolution itself,
    // Burn's too when it is chosen (benchmarks compare them).
    let start = crate::inference::clock::now_ms();
    let out = match choice.lanes() {
        Some(lanes) => direct(conv, x, &g, lanes, by_winograd(&g)),
        None => conv.forward(x),
    };
    let micros = ((crate::inference::clock::now_ms() - start) * 1000.0).max(0.0) as u64;
    CONV_MICROS.fetch_add(micros, Ordering::Relaxed);
    out
}

/// Output channels from which the tiled GPU kernel pays: its blocks hold 32,
/// so narrower layers (the students' first, every segmentation head) would
/// compute mostly padding, and stay on Burn's kernel.
const TILED_GPU_MIN_CHANNELS: usize = 16;

/// `conv` by the tiled GPU kernel, when it is chosen and covers the call:
/// untracked tensors on a cubecl (wgpu) device, one group, no dilation, a
/// cubic kernel with the same stride and explicit padding on every axis.
fn tiled_gpu(conv: &Conv3d, x: &Tensor<5>) -> Option<Tensor<5>> {
    if gpu_conv() != GpuConv::Tiled || x.device().is_autodiff() || x.device() == Device::flex() {
        return None;
    }
    let [out_channels, _, k, k1, k2] = conv.weight.dims();
    let PaddingConfig3d::Explicit(p, p1, p2) = conv.padding else { return None };
    let [s, s1, s2] = conv.stride;
    let uniform = k == k1 && k == k2 && p == p1 && p == p2 && s == s1 && s == s2;
    if conv.groups != 1 || conv.dilation != [1, 1, 1] || !uniform || out_channels < TILED_GPU_MIN_CHANNELS {
        return None;
    }
    let bias = conv.bias.as_ref().map(|b| b.val());
    gpu_conv::conv3d_tiled(x, &conv.weight.val(), bias.as_ref(), s, p)
}

/// The geometry when the direct kernel covers this layer: one group, no
/// dilation, explicit symmetric padding.
fn geometry(conv: &Conv3d, x: &Tensor<5>) -> Option<Geometry> {
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

/// `conv` on the hand-written kernels: by Winograd's transform or directly.
fn direct(conv: &Conv3d, x: Tensor<5>, g: &Geometry, lanes: Lanes, by_winograd: bool) -> Tensor<5> {
    let device = x.device();
    let input = x.into_data();
    let weight = conv.weight.val().into_data();
    let bias = conv.bias.as_ref().map(|b| b.val().into_data());
    let (Ok(input), Ok(weight)) = (input.as_slice::<f32>(), weight.as_slice::<f32>()) else {
        unreachable!("untracked_cpu_f32 admitted only f32")
    };
    let bias = bias.as_ref().map(|b| b.as_slice::<f32>().expect("f32 bias of an f32 layer"));
    let out = if by_winograd {
        winograd::conv3d(input, weight, bias, g, lanes)
    } else {
        conv3d::conv3d(input, weight, bias, g, lanes)
    };
    let [od, oh, ow] = g.out_size();
    Tensor::from_data(TensorData::new(out, [g.batch, g.out_channels, od, oh, ow]), &device)
}

/// `leaky_relu(norm.forward(x), slope)`: in one step ([`norm`]) wherever the
/// direct convolution runs, so that choosing "burn" keeps Burn's own
/// arithmetic throughout, as the reference (the slice upsampling gives
/// Burn's bits, so it runs either way). It rounds differently from Burn's
/// passes: HD-BET's mask moves by a few voxels (Dice 0.999998, README Speed).
pub fn instance_norm_leaky_relu(norm: &InstanceNorm, x: Tensor<5>, slope: f64) -> Tensor<5> {
    let affine_complete = !norm.affine || (norm.gamma.is_some() && norm.beta.is_some());
    if cpu_conv().lanes().is_none() || !untracked_cpu_f32(&x) || !affine_complete {
        return leaky_relu(norm.forward(x), slope);
    }
    let dims @ [_, c, d, h, w] = x.dims();
    assert_eq!(c, norm.num_channels, "instance norm of {} channels on {c}", norm.num_channels);
    let device = x.device();
    let values = |t: Tensor<1>| t.into_data().try_into_vec::<f32>().expect("f32 parameters of an f32 layer");
    let mut data = f32_values(x);
    let gamma = norm.gamma.as_ref().filter(|_| norm.affine).map(|g| values(g.val()));
    let beta = norm.beta.as_ref().filter(|_| norm.affine).map(|b| values(b.val()));
    let affine = gamma.as_deref().zip(beta.as_deref());
    norm::instance_norm_leaky_relu(&mut data, c, d * h * w, affine, norm.epsilon, slope as f32);
    Tensor::from_data(TensorData::new(data, dims), &device)
}

/// Trilinear ×2 ([`upsample`]) of a tensor [`untracked_cpu_f32`] admits,
/// whichever convolution is chosen: it gives the Burn version's bits, faster
/// (natively too).
pub fn upsample_trilinear_x2(x: Tensor<5>) -> Tensor<5> {
    assert!(untracked_cpu_f32(&x), "the slice upsampling takes untracked f32 on the CPU");
    let [n, c, d, h, w] = x.dims();
    let device = x.device();
    let out = upsample::trilinear_x2(&f32_values(x), [n, c, d, h, w]);
    Tensor::from_data(TensorData::new(out, [n, c, 2 * d, 2 * h, 2 * w]), &device)
}

/// The values of a tensor [`untracked_cpu_f32`] admitted.
fn f32_values(x: Tensor<5>) -> Vec<f32> {
    x.into_data().try_into_vec::<f32>().expect("untracked_cpu_f32 admitted only f32")
}
