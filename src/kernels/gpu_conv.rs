//! A tiled implicit-GEMM 3D convolution for WebGPU (and any wgpu device),
//! written in CubeCL, for the layers where Burn's own kernel is weakest.
//!
//! Burn 0.22's cubecl backend, built without autotune as bedside builds it,
//! runs every conv3d on its direct kernel: each invocation computes one
//! output position for a vector of output channels, reading its inputs from
//! global memory with no reuse between invocations. Burn's implicit-GEMM
//! strategy exists, but it needs matrix-multiply units (CMMA/MMA) that the
//! WGSL compiler never enables, so on WebGPU it cannot launch ("No tile size
//! is available for the problem"). Hence this kernel, by hand.
//!
//! The convolution is the matrix product `[positions × c_in·k³]·[c_in·k³ ×
//! c_out]` with the left matrix never formed (implicit GEMM): a workgroup of
//! 128 invocations computes a block of 64 positions × 32 output channels.
//! For each slice of 8 along the reduction, it stages the 64×8 inputs (with
//! the zero padding decided on the fly) and the 8×32 weights in workgroup
//! memory, and each invocation accumulates a 4×4 register tile from them, so
//! every value read from global memory serves 32 or 64 products instead of
//! one. Bias is added as the block is written.
//!
//! Arithmetic is f32 (or the tensors' float type) with the sum in the order
//! of the reduction, so it differs from Burn's direct kernel by rounding
//! only (tested, `tests/kernels.rs`).

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::Cube;
use burn::tensor::Tensor;
use burn_cubecl::{kernel::into_contiguous, ops::numeric::empty_device_dtype, tensor::CubeTensor};
use cubecl::prelude::{CubeCount, CubeDim};

/// Positions and output channels per workgroup, invocations per workgroup.
const BLOCK_POSITIONS: usize = 64;
const BLOCK_CHANNELS: usize = 32;
const INVOCATIONS: u32 = 128;
/// Workgroups along x, at most (the rest go along z): well under WebGPU's
/// guaranteed 65,535 per dimension.
const MAX_WORKGROUPS_X: usize = 32_768;

mod shader {
    //! Its own module: cubecl's prelude has a `Tensor` of its own.
    use cubecl::prelude::*;

    /// One 64 × 32 block of `out = conv(x, w) + b`. `x`: `[n, c_in, d, h, w]`,
    /// `w`: `[c_out, c_in, k, k, k]`, `out`: `[n, c_out, od, oh, ow]`, all
    /// contiguous; cubic kernel `ks`, stride and padding the same on every axis.
    #[cube(launch)]
    pub fn conv3d_tiled<F: Float>(
        x: &Tensor<F>,
        w: &Tensor<F>,
        b: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] ks: usize,
        #[comptime] stride: usize,
        #[comptime] pad: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let n_batch = out.shape(0);
        let co_n = out.shape(1);
        let oh = out.shape(3);
        let ow = out.shape(4);
        let spatial = out.shape(2) * oh * ow;
        let ci_n = x.shape(1);
        let d = x.shape(2);
        let h = x.shape(3);
        let wd = x.shape(4);
        let m_total = n_batch * spatial;
        let kvol = ks * ks * ks;
        let k_total = ci_n * kvol;
        let in_spatial = d * h * wd;

        // Position blocks run along x then z: a single pass of HD-BET has
        // 41 k of them, near WebGPU's 65,535 workgroups per dimension.
        let m0 = (CUBE_POS_Z as usize * CUBE_COUNT_X as usize + CUBE_POS_X as usize) * 64;
        let n0 = CUBE_POS_Y as usize * 32;
        let tid = UNIT_POS as usize;
        // This invocation's 4 positions and 4 channels of the block.
        let tm = tid % 16;
        let tn = tid / 16;

        let mut acc = Array::<F>::new(16usize);
        for i in 0..16usize {
            acc[i] = F::new(0.0);
        }
        // [8 reduction steps][64 positions] and [8][32 channels].
        let mut sa = Shared::<[F]>::new_slice(512usize);
        let mut sb = Shared::<[F]>::new_slice(256usize);

        let mut k0 = 0usize;
        while k0 < k_total {
            // Inputs: consecutive invocations take consecutive positions,
            // so the reads along x coalesce.
            for r in 0..4usize {
                let e = tid + r * 128;
                let kg = k0 + e / 64;
                let m = m0 + e % 64;
                let mut v = F::new(0.0);
                if kg < k_total && m < m_total {
                    let n = m / spatial;
                    let sp = m % spatial;
                    let oz = sp / (oh * ow);
                    let oy = (sp / ow) % oh;
                    let ox = sp % ow;
                    let ci = kg / kvol;
                    let t = kg % kvol;
                    // Coordinates in the padded volume: unsigned, the
                    // padding is tested rather than subtracted first.
                    let pz = oz * stride + t / (ks * ks);
                    let py = oy * stride + (t / ks) % ks;
                    let px = ox * stride + t % ks;
                    if pz >= pad && pz < d + pad && py >= pad && py < h + pad && px >= pad && px < wd + pad {
                        v = x[(n * ci_n + ci) * in_spatial + ((pz - pad) * h + (py - pad)) * wd + (px - pad)];
                    }
                }
                sa[e] = v;
            }
            for r in 0..2usize {
                let e = tid + r * 128;
                let kg = k0 + e / 32;
                let co = n0 + e % 32;
                let mut v = F::new(0.0);
                if kg < k_total && co < co_n {
                    v = w[co * k_total + kg];
                }
                sb[e] = v;
            }
            sync_cube();
            for kk in 0..8usize {
                for i in 0..4usize {
                    let a = sa[kk * 64 + tm * 4 + i];
                    for j in 0..4usize {
                        acc[i * 4 + j] += a * sb[kk * 32 + tn * 4 + j];
                    }
                }
            }
            sync_cube();
            k0 += 8;
        }
        for i in 0..4usize {
            let m = m0 + tm * 4 + i;
            if m < m_total {
                let n = m / spatial;
                let sp = m % spatial;
                for j in 0..4usize {
                    let co = n0 + tn * 4 + j;
                    if co < co_n {
                        out[(n * co_n + co) * spatial + sp] = acc[i * 4 + j] + b[co];
                    }
                }
            }
        }
    }
}

/// The tensor's cubecl primitive, or `None` off a cubecl device (flex) or
/// on the autodiff device (training keeps Burn's differentiable op).
fn cube_primitive<const D: usize>(t: &Tensor<D>) -> Option<CubeTensor> {
    if t.device().is_autodiff() {
        return None;
    }
    t.clone().try_into_primitive::<Cube>().ok()
}

/// `conv3d(x, w) + b` with a cubic kernel, the same stride and the same
/// padding on every axis, computed on the tensors' wgpu device without
/// leaving it. `None` when they are not on a cubecl device.
pub fn conv3d_tiled(x: &Tensor<5>, w: &Tensor<5>, b: Option<&Tensor<1>>, stride: usize, pad: usize) -> Option<Tensor<5>> {
    let [n, c_in, d, h, wd] = x.dims();
    let [c_out, w_in, ks, k1, k2] = w.dims();
    assert!(w_in == c_in && k1 == ks && k2 == ks && stride >= 1, "conv3d_tiled: weights {:?} for input {:?}", w.dims(), x.dims());
    let o = |s: usize| (s + 2 * pad - ks) / stride + 1;
    let out_shape = [n, c_out, o(d), o(h), o(wd)];
    let xc = into_contiguous(cube_primitive(x)?);
    let wc = into_contiguous(cube_primitive(w)?);
    let bias = match b {
        Some(b) => b.clone(),
        None => Tensor::<1>::zeros([c_out], &x.device()),
    };
    let bc = cube_primitive(&bias)?;
    let out = empty_device_dtype(xc.client.clone(), xc.device.clone(), out_shape.to_vec().into(), xc.dtype);
    let positions = out_shape[0] * out_shape[2] * out_shape[3] * out_shape[4];
    let blocks = positions.div_ceil(BLOCK_POSITIONS);
    let along_x = blocks.min(MAX_WORKGROUPS_X);
    let count = CubeCount::Static(along_x as u32, c_out.div_ceil(BLOCK_CHANNELS) as u32, blocks.div_ceil(along_x) as u32);
    let dtype = xc.dtype;
    shader::conv3d_tiled::launch(
        &out.client,
        count,
        CubeDim::new_1d(INVOCATIONS),
        xc.into_tensor_arg(),
        wc.into_tensor_arg(),
        bc.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        ks,
        stride,
        pad,
        dtype_to_storage_type(dtype),
    );
    Some(Tensor::<5>::from_primitive::<Cube>(out))
}
