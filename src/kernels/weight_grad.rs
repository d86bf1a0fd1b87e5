//! The weight gradient of a stride-1 convolution, on the convolution's own
//! register tile ([`super::microkernel`]).
//!
//! Written by hand because Burn's generic `conv3d_weight_backward` runs it as
//! a convolution with one input channel and a kernel the size of the volume,
//! which flex computes at 3.5 GFLOP/s natively (8→8 channels at 64³: 257 ms
//! against 89 ms for the forward pass); it was most of a training step.
//!
//! For each kernel tap `t`, `dW_t[c_in][c_out] = Σ_p x[c_in][p + t] · dy[c_out][p]`:
//! a matrix product whose sum runs over the positions. Laying both operands
//! on the padded input's grid makes every `(c_in, t)` row one contiguous run
//! of the padded, channel-first input, and the output gradient (zero in the
//! padding) a `[position][c_out]` panel: exactly the tile's shape, with
//! `(c_in, t)` rows in place of positions and positions in place of the
//! kernel's taps. The padding costs `(D + 2p)³ / D³` more arithmetic (1.1×
//! at 64³), and saves any im2col copy.

use super::conv3d::{block_shape, check_tile, run_tile};
use super::microkernel::Tile;
use super::{Geometry, Lanes};

/// Positions per pass over the output gradient's panel: its `[L][4·NV]`
/// slice (32 KB) stays in L1 while every `(c_in, t)` row reads its own run.
const PANEL_FLOATS: usize = 8192;

/// Whether [`weight_gradient`] computes this layer's: stride 1 (a stride-2
/// layer's output gradient would fill one padded position in 8).
pub fn applies(g: &Geometry) -> bool {
    g.valid() && g.stride == [1; 3]
}

/// `dW` (`[c_out, c_in, k…]`) of the convolution `g` from its NCDHW input `x`
/// and the gradient `dy` of its NCDHW output, summed over the batch.
pub fn weight_gradient(x: &[f32], dy: &[f32], g: &Geometry, lanes: Lanes) -> Vec<f32> {
    assert!(applies(g), "the weight gradient kernel takes valid stride-1 layers, not {g:?}");
    let [d, h, w] = g.size;
    let [od, oh, ow] = g.out_size();
    let [pd, ph, pw] = g.padding;
    let (dp, hp, wp) = (d + 2 * pd, h + 2 * ph, w + 2 * pw);
    let padded_len = dp * hp * wp;
    let (c_in, c_out) = (g.in_channels, g.out_channels);
    assert_eq!(x.len(), g.batch * c_in * d * h * w, "input size");
    assert_eq!(dy.len(), g.batch * c_out * od * oh * ow, "output gradient size");
    let at = |z: usize, y: usize, x: usize| (z * hp + y) * wp + x;
    let taps: Vec<usize> = (0..g.kernel[0])
        .flat_map(|a| (0..g.kernel[1]).flat_map(move |b| (0..g.kernel[2]).map(move |c| at(a, b, c))))
        .collect();
    // The last output position's index + 1: past it the panel is all zeros.
    let span = at(od - 1, oh - 1, ow - 1) + 1;
    let (nv, mr) = block_shape(c_out);
    let width = 4 * nv;
    let blocks = c_out.div_ceil(width);
    let rows = c_in * taps.len();
    let row_tiles = rows.div_ceil(mr);
    // Accumulators `[block][row][width]`, one set per part of the positions
    // (natively the parts run on every core; in wasm there is one).
    let acc_len = blocks * row_tiles * mr * width;
    let parts = super::chunks_per_slab().min(span.div_ceil(PANEL_FLOATS / width)).max(1);
    let mut partial = vec![0.0f32; parts * acc_len];
    for n in 0..g.batch {
        let xp = pad_channel_first(&x[n * c_in * d * h * w..][..c_in * d * h * w], g, [dp, hp, wp]);
        let panel = pack_panel(&dy[n * c_out * od * oh * ow..][..c_out * od * oh * ow], c_out, [od, oh, ow], &at, span, width);
        let run = PANEL_FLOATS / width;
        let chunks = span.div_ceil(run);
        super::for_each_chunk(&mut partial, acc_len, |(part, acc)| {
            let mut positions = vec![0usize; mr];
            let mut scratch = vec![0.0f32; mr * width];
            let outputs: Vec<usize> = (0..mr).map(|m| m * width).collect();
            for chunk in (part..chunks).step_by(parts) {
                let q0 = chunk * run;
                let len = run.min(span - q0);
                for block in 0..blocks {
                    let weights = &panel[(block * span + q0) * width..][..len * width];
                    for tile in 0..row_tiles {
                        for (m, p) in positions.iter_mut().enumerate() {
                            let r = (tile * mr + m).min(rows - 1);
                            *p = (r / taps.len()) * padded_len + taps[r % taps.len()] + q0;
                        }
                        let t = Tile { input: &xp, positions: &positions, taps: &[0], run: len, weights, outputs: &outputs };
                        check_tile(&t, scratch.len(), width);
                        run_tile(&t, &mut scratch, nv, mr, lanes);
                        let dst = &mut acc[(block * row_tiles + tile) * mr * width..][..mr * width];
                        for (a, s) in dst.iter_mut().zip(&scratch) {
                            *a += s;
                        }
                    }
                }
            }
        });
    }
    let taps_n = taps.len();
    let mut grad = vec![0.0f32; c_out * c_in * taps_n];
    for o in 0..c_out {
        let (block, lane) = (o / width, o % width);
        for r in 0..rows {
            let cell = (block * row_tiles * mr + r) * width + lane;
            grad[o * rows + r] = (0..parts).map(|p| partial[p * acc_len + cell]).sum();
        }
    }
    grad
}

/// One batch item `[c][d][h][w]` zero-padded to `[c][dp][hp][wp]`.
fn pad_channel_first(x: &[f32], g: &Geometry, [dp, hp, wp]: [usize; 3]) -> Vec<f32> {
    let [d, h, w] = g.size;
    let [pd, ph, pw] = g.padding;
    let mut out = vec![0.0f32; g.in_channels * dp * hp * wp];
    for c in 0..g.in_channels {
        for z in 0..d {
            for y in 0..h {
                let src = ((c * d + z) * h + y) * w;
                let dst = ((c * dp + z + pd) * hp + y + ph) * wp + pw;
                out[dst..dst + w].copy_from_slice(&x[src..src + w]);
            }
        }
    }
    out
}

/// One batch item's output gradient `[c_out][od][oh][ow]` on the padded grid
/// (zero where no output lies), as `[block][position][4·NV]` up to `span`.
fn pack_panel(dy: &[f32], c_out: usize, [od, oh, ow]: [usize; 3], at: &dyn Fn(usize, usize, usize) -> usize, span: usize, width: usize) -> Vec<f32> {
    let blocks = c_out.div_ceil(width);
    let mut panel = vec![0.0f32; blocks * span * width];
    for o in 0..c_out {
        let (block, lane) = (o / width, o % width);
        let base = block * span * width + lane;
        for z in 0..od {
            for y in 0..oh {
                let src = ((o * od + z) * oh + y) * ow;
                let q = at(z, y, 0);
                for (x, v) in dy[src..src + ow].iter().enumerate() {
                    panel[base + (q + x) * width] = *v;
                }
            }
        }
    }
    panel
}
