//! The innermost loop of the CPU convolution: one register tile of
//! `MR` output positions × `4·NV` output channels, accumulated over every
//! kernel tap and input channel.
//!
//! Written by hand because no library offers it for wasm: Burn's flex
//! backend lowers conv3d to im2col + the `gemm` crate, whose wasm kernel
//! multiplies and adds separately (SIMD128 has no fused multiply-add) and
//! pays for an im2col copy of 27 × the input. Relaxed SIMD's
//! `f32x4_relaxed_madd` is one hardware FMA in Chromium on x86 and ARM,
//! twice the arithmetic per instruction, and reading the padded input in
//! place saves the copy.
//!
//! Three lane types implement [`Lanes`]: relaxed SIMD and plain SIMD128 on
//! wasm (the relaxed one only in builds with the `relaxed-simd` feature), and
//! a portable one natively (four f32, which LLVM vectorises). The
//! tile body is one generic function; each lane type gets its own
//! instantiation, compiled with its target feature.

/// Where the tile reads and writes. All offsets are in f32 elements.
pub struct Tile<'a> {
    /// The padded, channels-last input `[D][H][W][C]`.
    pub input: &'a [f32],
    /// Offset of each output position's first input element (its tap 0).
    pub positions: &'a [usize],
    /// Offset of each kernel tap relative to a position's base. A tap is a
    /// kernel row: it reads `run` contiguous inputs.
    pub taps: &'a [usize],
    /// Inputs per tap: the row's kx taps × the input channels.
    pub run: usize,
    /// The packed weights of this channel block, `[tap][run][4·NV]`.
    pub weights: &'a [f32],
    /// Where each position's `4·NV` outputs go.
    pub outputs: &'a [usize],
}

/// Four f32 lanes and the three operations the tile needs.
pub trait Lanes: Copy {
    fn zero() -> Self;
    /// Four floats from `s[i..i + 4]`.
    fn load(s: &[f32], i: usize) -> Self;
    /// `s[i]` in every lane.
    fn splat(s: &[f32], i: usize) -> Self;
    /// `a · b + c`.
    fn madd(a: Self, b: Self, c: Self) -> Self;
    fn store(self, s: &mut [f32], i: usize);
}

/// The tile, generic over its lanes. `inline(always)`, so that it is
/// compiled inside each caller with that caller's target features.
#[inline(always)]
pub fn tile<L: Lanes, const NV: usize, const MR: usize>(t: &Tile, out: &mut [f32]) {
    let mut acc = [[L::zero(); NV]; MR];
    let width = 4 * NV;
    let mut w = 0;
    for &tap in t.taps {
        for c in 0..t.run {
            let mut wv = [L::zero(); NV];
            for (v, lane) in wv.iter_mut().enumerate() {
                *lane = L::load(t.weights, w + 4 * v);
            }
            for (m, row) in acc.iter_mut().enumerate() {
                let a = L::splat(t.input, t.positions[m] + tap + c);
                for (v, cell) in row.iter_mut().enumerate() {
                    *cell = L::madd(a, wv[v], *cell);
                }
            }
            w += width;
        }
    }
    for (m, row) in acc.iter().enumerate() {
        for (v, cell) in row.iter().enumerate() {
            cell.store(out, t.outputs[m] + 4 * v);
        }
    }
}

/// Portable lanes: plain arrays that LLVM turns into SSE/NEON. Used natively
/// and as the reference the SIMD lanes are checked against.
#[derive(Clone, Copy)]
pub struct Portable([f32; 4]);

impl Lanes for Portable {
    #[inline(always)]
    fn zero() -> Self {
        Portable([0.0; 4])
    }
    #[inline(always)]
    fn load(s: &[f32], i: usize) -> Self {
        Portable([s[i], s[i + 1], s[i + 2], s[i + 3]])
    }
    #[inline(always)]
    fn splat(s: &[f32], i: usize) -> Self {
        Portable([s[i]; 4])
    }
    #[inline(always)]
    fn madd(a: Self, b: Self, c: Self) -> Self {
        Portable(std::array::from_fn(|k| a.0[k] * b.0[k] + c.0[k]))
    }
    #[inline(always)]
    fn store(self, s: &mut [f32], i: usize) {
        s[i..i + 4].copy_from_slice(&self.0);
    }
}

pub fn tile_portable<const NV: usize, const MR: usize>(t: &Tile, out: &mut [f32]) {
    tile::<Portable, NV, MR>(t, out)
}

#[cfg(target_arch = "wasm32")]
pub mod wasm {
    //! The wasm lanes. Bounds are checked once per tile by the caller
    //! (`conv3d::check_tile`), so loads here are unchecked: a bounds check
    //! per lane would cost as much as the arithmetic.
    use core::arch::wasm32::*;

    use super::{Lanes, Tile};

    #[derive(Clone, Copy)]
    pub struct Simd128(v128);

    #[cfg(feature = "relaxed-simd")]
    #[derive(Clone, Copy)]
    pub struct Relaxed(v128);

    macro_rules! lanes {
        ($name:ident, $madd:expr) => {
            impl Lanes for $name {
                #[inline(always)]
                fn zero() -> Self {
                    $name(f32x4_splat(0.0))
                }
                #[inline(always)]
                fn load(s: &[f32], i: usize) -> Self {
                    // SAFETY: check_tile proved i + 4 <= s.len().
                    $name(unsafe { v128_load(s.as_ptr().add(i) as *const v128) })
                }
                #[inline(always)]
                fn splat(s: &[f32], i: usize) -> Self {
                    // SAFETY: check_tile proved i < s.len().
                    $name(unsafe { v128_load32_splat(s.as_ptr().add(i) as *const u32) })
                }
                #[inline(always)]
                fn madd(a: Self, b: Self, c: Self) -> Self {
                    $name($madd(a.0, b.0, c.0))
                }
                #[inline(always)]
                fn store(self, s: &mut [f32], i: usize) {
                    // SAFETY: check_tile proved i + 4 <= s.len().
                    unsafe { v128_store(s.as_mut_ptr().add(i) as *mut v128, self.0) }
                }
            }
        };
    }

    lanes!(Simd128, |a, b, c| f32x4_add(f32x4_mul(a, b), c));
    // Fused or not, as the engine decides (one FMA in Chromium on x86 and
    // ARM). Used only through `tile_relaxed`, which enables the feature.
    #[cfg(feature = "relaxed-simd")]
    lanes!(Relaxed, f32x4_relaxed_madd);

    /// The relaxed-SIMD tile: the FMA instruction exists only inside
    /// functions compiled with the feature.
    ///
    /// # Safety
    /// The engine must support relaxed SIMD (every Chromium since 114).
    #[cfg(feature = "relaxed-simd")]
    #[target_feature(enable = "relaxed-simd")]
    pub unsafe fn tile_relaxed<const NV: usize, const MR: usize>(t: &Tile, out: &mut [f32]) {
        super::tile::<Relaxed, NV, MR>(t, out)
    }

    pub fn tile_simd128<const NV: usize, const MR: usize>(t: &Tile, out: &mut [f32]) {
        super::tile::<Simd128, NV, MR>(t, out)
    }
}
