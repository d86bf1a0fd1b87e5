//! A direct, channels-last 3D convolution for the CPU, on plain f32 slices.
//!
//! The input is copied once into a zero-padded channels-last buffer, so the
//! inner loop reads every tap in place (no im2col, no bounds tests), and the
//! weights are packed into blocks of `4·NV` output channels. Each tile then
//! computes `MR` output positions of one block in registers
//! ([`super::microkernel`]). The channel block is the outer loop, so its
//! weights (27 × C_in × 4·NV floats, at most 430 KB for HD-BET) stay in
//! cache while the tile sweeps the volume.
//!
//! Bias is added while the result is moved back to Burn's NCDHW layout.

use super::microkernel::{self, Tile};

/// Which inner loop runs the tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// Relaxed-SIMD FMA (wasm builds with the `relaxed-simd` feature).
    RelaxedSimd,
    /// SIMD128 multiply and add (wasm only).
    Simd128,
    /// Four plain f32 lanes, vectorised by the compiler (any target).
    Portable,
}

impl Lanes {
    pub fn name(self) -> &'static str {
        match self {
            Lanes::RelaxedSimd => "relaxed-simd",
            Lanes::Simd128 => "simd128",
            Lanes::Portable => "portable",
        }
    }

    /// The lanes this build can run: relaxed SIMD only in a wasm build with
    /// the `relaxed-simd` feature (the engine for browsers that validate it).
    pub fn available() -> &'static [Lanes] {
        if cfg!(all(target_arch = "wasm32", feature = "relaxed-simd")) {
            &[Lanes::RelaxedSimd, Lanes::Simd128, Lanes::Portable]
        } else if cfg!(target_arch = "wasm32") {
            &[Lanes::Simd128, Lanes::Portable]
        } else {
            &[Lanes::Portable]
        }
    }
}

/// One convolution's geometry: NCDHW input `[n, c_in, d, h, w]`, weights
/// `[c_out, c_in, k0, k1, k2]`, symmetric zero padding, no dilation, one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub size: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

impl Geometry {
    pub fn out_size(&self) -> [usize; 3] {
        std::array::from_fn(|a| (self.size[a] + 2 * self.padding[a] - self.kernel[a]) / self.stride[a] + 1)
    }

    fn padded(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.size[a] + 2 * self.padding[a])
    }

    /// Whether the kernel can compute it: every padded extent holds a kernel.
    pub fn valid(&self) -> bool {
        (0..3).all(|a| self.kernel[a] >= 1 && self.stride[a] >= 1 && self.size[a] + 2 * self.padding[a] >= self.kernel[a])
            && self.in_channels >= 1
            && self.out_channels >= 1
    }
}

/// Output channels per block (`4·NV`) and positions per tile (`MR`). The
/// `NV·MR` accumulators, `NV` weight vectors and one broadcast input must
/// fit the 16 vector registers of x86-64, of which V8 keeps one as scratch:
/// larger tiles spill and measured slower. Among the shapes that fit, the
/// one with the lowest cost: padded channels (the block's waste past
/// `c_out`) weighted by the loads each multiply-add needs,
/// `(NV + MR) / (NV·MR)`, at half the cost of the multiply-add itself.
pub(super) fn block_shape(out_channels: usize) -> (usize, usize) {
    let candidates = [(4, 2), (3, 3), (2, 5), (1, 10)];
    let cost = |&(nv, mr): &(usize, usize)| {
        let padded = out_channels.div_ceil(4 * nv) * 4 * nv;
        let loads = (nv + mr) as f64 / (nv * mr) as f64;
        padded as f64 * (1.0 + 0.5 * loads)
    };
    candidates
        .into_iter()
        .min_by(|a, b| cost(a).total_cmp(&cost(b)))
        .expect("candidates are not empty")
}

/// `[c_out, c_in, k…]` → `[block][tap][c_in][4·NV]`, zero-filled past c_out.
fn pack_weights(weights: &[f32], g: &Geometry, width: usize) -> Vec<f32> {
    let taps = g.kernel.iter().product::<usize>();
    let blocks = g.out_channels.div_ceil(width);
    let mut packed = vec![0.0f32; blocks * taps * g.in_channels * width];
    for o in 0..g.out_channels {
        let (block, lane) = (o / width, o % width);
        for c in 0..g.in_channels {
            for t in 0..taps {
                let src = (o * g.in_channels + c) * taps + t;
                packed[((block * taps + t) * g.in_channels + c) * width + lane] = weights[src];
            }
        }
    }
    packed
}

/// One batch item `[c][d][h][w]` → zero-padded `[d][h][w][c]` of extents
/// `padded` (at least the geometry's; any excess is zeros at the far end).
pub(super) fn pad_channels_last(x: &[f32], g: &Geometry, padded: [usize; 3]) -> Vec<f32> {
    let [d, h, w] = g.size;
    let [pd, ph, pw] = g.padding;
    let [_, hp, wp] = padded;
    assert!((0..3).all(|a| padded[a] >= g.padded()[a]), "padded extents {padded:?} smaller than {:?}", g.padded());
    let c_in = g.in_channels;
    let mut out = vec![0.0f32; padded.iter().product::<usize>() * c_in];
    // Row by row: one output row `[w][c]` (a few KB) gathers the same row of
    // every channel, so both sides stay in L1. (Channel by channel, each of
    // the c_in sweeps would stride over the whole padded volume.)
    for z in 0..d {
        for y in 0..h {
            let dst = (((z + pd) * hp + y + ph) * wp + pw) * c_in;
            let row = &mut out[dst..dst + w * c_in];
            for c in 0..c_in {
                let src = ((c * d + z) * h + y) * w;
                for (i, &v) in x[src..src + w].iter().enumerate() {
                    row[i * c_in + c] = v;
                }
            }
        }
    }
    out
}

/// The convolution of NCDHW `x` by `weights` (`[c_out, c_in, k…]`), plus
/// `bias`, as NCDHW `[n, c_out, out_size…]`.
pub fn conv3d(x: &[f32], weights: &[f32], bias: Option<&[f32]>, g: &Geometry, lanes: Lanes) -> Vec<f32> {
    assert!(g.valid(), "invalid convolution geometry {g:?}");
    let [d, h, w] = g.size;
    let taps_n = g.kernel.iter().product::<usize>();
    assert_eq!(x.len(), g.batch * g.in_channels * d * h * w, "input size");
    assert_eq!(weights.len(), g.out_channels * g.in_channels * taps_n, "weight size");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.out_channels, "bias size");
    }
    let (nv, mr) = block_shape(g.out_channels);
    let width = 4 * nv;
    let packed = pack_weights(weights, g, width);
    let [od, oh, ow] = g.out_size();
    let [_, hp, wp] = g.padded();
    let c_in = g.in_channels;
    let row = |z: usize, y: usize, x: usize| ((z * hp + y) * wp + x) * c_in;
    // A tap here is one (kz, ky) row of the kernel: its kx taps and input
    // channels lie next to each other in the channels-last input, as they do
    // in the packed weights, so the tile runs them as one inner loop of
    // kx·c_in (3 for the one-channel first layer instead of 1).
    let taps: Vec<usize> = (0..g.kernel[0]).flat_map(|a| (0..g.kernel[1]).map(move |b| row(a, b, 0))).collect();
    let run = g.kernel[2] * c_in;
    let blocks = g.out_channels.div_ceil(width);
    let out_voxels = od * oh * ow;
    let block_len = taps_n * c_in * width;
    let mut result = vec![0.0f32; g.batch * g.out_channels * out_voxels];
    let plane_len = oh * ow * width;
    // Output planes per slab: the slab's channels-last result (`[voxel][4·NV]`)
    // is written back to NCDHW while it is still in cache, and it is all the
    // staging memory a layer needs (a whole block's staging was 100 MB at
    // HD-BET's first level). Natively a slab has planes for every core.
    let slab = super::chunks_per_slab();
    let mut staged = vec![0.0f32; slab.min(od) * plane_len];
    let item_len = c_in * d * h * w;
    for n in 0..g.batch {
        let padded = pad_channels_last(&x[n * item_len..(n + 1) * item_len], g, g.padded());
        let item = &mut result[n * g.out_channels * out_voxels..][..g.out_channels * out_voxels];
        for block in 0..blocks {
            let lanes_here = width.min(g.out_channels - block * width);
            let tile = Tile {
                input: &padded,
                positions: &[],
                taps: &taps,
                run,
                weights: &packed[block * block_len..(block + 1) * block_len],
                outputs: &[],
            };
            for z0 in (0..od).step_by(slab) {
                let planes = &mut staged[..(slab.min(od - z0)) * plane_len];
                let plane = |(i, out): (usize, &mut [f32])| sweep_plane(&tile, out, z0 + i, [oh, ow], g.stride, &row, width, nv, mr, lanes);
                super::for_each_chunk(planes, plane_len, plane);
                scatter_to_ncdhw(planes, width, block * width, lanes_here, z0 * oh * ow, item, out_voxels, bias);
            }
        }
    }
    result
}

/// Channels-last `cells` (`cell` floats per voxel, voxels from `first_voxel`
/// on) back to one batch item's NCDHW `item`: lanes `0..channels` of each
/// cell are output channels `first_channel..`, plus their bias. 256 voxels
/// at a time, so that their cells (at most a few tens of KB) stay in L1
/// while each channel takes its lane.
#[allow(clippy::too_many_arguments)]
pub(super) fn scatter_to_ncdhw(
    cells: &[f32],
    cell: usize,
    first_channel: usize,
    channels: usize,
    first_voxel: usize,
    item: &mut [f32],
    out_voxels: usize,
    bias: Option<&[f32]>,
) {
    for (k, chunk) in cells.chunks(256 * cell).enumerate() {
        let v0 = first_voxel + k * 256;
        for lane in 0..channels {
            let o = first_channel + lane;
            let b = bias.map_or(0.0, |b| b[o]);
            let dst = &mut item[o * out_voxels + v0..][..chunk.len() / cell];
            for (out, c) in dst.iter_mut().zip(chunk.chunks_exact(cell)) {
                *out = c[lane] + b;
            }
        }
    }
}

/// Every tile of one output plane `z` of one channel block. Rows of `ow`
/// positions are cut into tiles of `mr`; the last tile of a row repeats its
/// last position, which writes the same value twice rather than needing a
/// narrower tile.
#[allow(clippy::too_many_arguments)]
fn sweep_plane(
    proto: &Tile,
    plane: &mut [f32],
    z: usize,
    [oh, ow]: [usize; 2],
    stride: [usize; 3],
    row: &(dyn Fn(usize, usize, usize) -> usize + Sync),
    width: usize,
    nv: usize,
    mr: usize,
    lanes: Lanes,
) {
    let mut positions = vec![0usize; mr];
    let mut outputs = vec![0usize; mr];
    for y in 0..oh {
        for x0 in (0..ow).step_by(mr) {
            for m in 0..mr {
                let x = (x0 + m).min(ow - 1);
                positions[m] = row(z * stride[0], y * stride[1], x * stride[2]);
                outputs[m] = (y * ow + x) * width;
            }
            let tile = Tile { positions: &positions, outputs: &outputs, ..*proto };
            check_tile(&tile, plane.len(), width);
            run_tile(&tile, plane, nv, mr, lanes);
        }
    }
}

/// The bounds the unchecked SIMD loads rely on, checked once per tile.
pub(super) fn check_tile(t: &Tile, out_len: usize, width: usize) {
    let last_tap = t.taps.iter().max().copied().unwrap_or(0);
    let furthest = t.positions.iter().max().copied().unwrap_or(0) + last_tap + t.run;
    assert!(furthest <= t.input.len(), "tile reads past the input");
    assert_eq!(t.weights.len(), t.taps.len() * t.run * width, "tile weights");
    assert!(t.outputs.iter().all(|&o| o + width <= out_len), "tile writes past the output");
}

pub(super) fn run_tile(t: &Tile, out: &mut [f32], nv: usize, mr: usize, lanes: Lanes) {
    use microkernel::tile_portable;
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    use microkernel::wasm::tile_relaxed;
    #[cfg(target_arch = "wasm32")]
    use microkernel::wasm::tile_simd128;
    macro_rules! dispatch {
        ($f:ident) => {
            match (nv, mr) {
                (4, 2) => $f::<4, 2>(t, out),
                (3, 3) => $f::<3, 3>(t, out),
                (2, 5) => $f::<2, 5>(t, out),
                (1, 10) => $f::<1, 10>(t, out),
                other => unreachable!("block shape {other:?}"),
            }
        };
    }
    match lanes {
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        // SAFETY: a module built with this feature only validates in engines
        // with relaxed SIMD (www/worker.js loads it only there).
        Lanes::RelaxedSimd => unsafe { dispatch!(tile_relaxed) },
        #[cfg(target_arch = "wasm32")]
        Lanes::Simd128 => dispatch!(tile_simd128),
        _ => dispatch!(tile_portable),
    }
}
