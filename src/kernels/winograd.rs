//! Winograd F(2×2×2, 3×3×3) for the stride-1 3³ convolutions that make up
//! most of HD-BET's and the students' arithmetic.
//!
//! The direct kernel ([`super::conv3d`]) already runs near the FMA peak of a
//! core, so a faster CPU convolution has to do fewer multiplications. Each
//! 2×2×2 block of outputs is computed from the 4×4×4 block of inputs around
//! it: the input block and the kernel are carried into a 64-point transform
//! domain (`Bᵀ d B` and `G g Gᵀ`, along each axis), multiplied there point by
//! point, and carried back (`Aᵀ m A`). Summed over input channels, the 64
//! point products are 64 small matrix products, `[tiles × c_in]·[c_in ×
//! c_out]`, which the same register tile as the direct kernel computes
//! ([`super::microkernel`]). That is 64/8 = 8 multiply-adds per output and
//! channel pair instead of 27 (3.4× fewer); the transforms are additions.
//!
//! Written by hand because no library offers a 3D Winograd convolution for
//! wasm (Burn's flex backend has im2col only). The transforms are the
//! standard F(2,3) matrices of Lavin & Gray (2016), whose constants (0, ±1,
//! ½) keep f32 rounding close to the direct sum (tested against Burn).
//!
//! Work is cut into planes of tiles (two output planes each), so the
//! transformed input of one batch of tiles stays in cache while every
//! output-channel block uses it, and natively the planes run on every core.

use super::conv3d::{check_tile, pad_channels_last, run_tile, scatter_to_ncdhw, Geometry, Lanes};
use super::microkernel::Tile;

/// The 64 points of the transform domain.
const POINTS: usize = 64;

/// Tiles per batch, at least: the register tile's weights are loaded once
/// per batch and point, so small batches (short rows) are joined.
const MIN_BATCH_TILES: usize = 48;

/// Whether this convolution is one the transform computes: a 3³ kernel at
/// stride 1 (any padding).
pub fn applies(g: &Geometry) -> bool {
    g.valid() && g.kernel == [3; 3] && g.stride == [1; 3]
}

/// `G g Gᵀ` along one axis of three taps: `[g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2]`.
fn g_row(g: [f64; 3]) -> [f64; 4] {
    [g[0], 0.5 * (g[0] + g[1] + g[2]), 0.5 * (g[0] - g[1] + g[2]), g[2]]
}

/// `[c_out, c_in, 3, 3, 3]` → `[point][block][c_in][width]`, zero past c_out.
/// Computed in f64, so the transformed weights are the exact ones rounded once.
fn transform_weights(weights: &[f32], g: &Geometry, width: usize) -> Vec<f32> {
    let c_in = g.in_channels;
    let blocks = g.out_channels.div_ceil(width);
    let mut packed = vec![0.0f32; POINTS * blocks * c_in * width];
    for o in 0..g.out_channels {
        let (block, lane) = (o / width, o % width);
        for c in 0..c_in {
            let k = &weights[(o * c_in + c) * 27..][..27];
            // Along x, then y, then z: u[h][i][j] with h the z point.
            let mut t1 = [[[0.0f64; 4]; 3]; 3];
            for a in 0..3 {
                for b in 0..3 {
                    let r = &k[(a * 3 + b) * 3..][..3];
                    t1[a][b] = g_row([r[0] as f64, r[1] as f64, r[2] as f64]);
                }
            }
            let mut t2 = [[[0.0f64; 4]; 4]; 3];
            for a in 0..3 {
                for j in 0..4 {
                    let col = g_row([t1[a][0][j], t1[a][1][j], t1[a][2][j]]);
                    for i in 0..4 {
                        t2[a][i][j] = col[i];
                    }
                }
            }
            for i in 0..4 {
                for j in 0..4 {
                    let col = g_row([t2[0][i][j], t2[1][i][j], t2[2][i][j]]);
                    for (h, &u) in col.iter().enumerate() {
                        let point = (h * 4 + i) * 4 + j;
                        packed[((point * blocks + block) * c_in + c) * width + lane] = u as f32;
                    }
                }
            }
        }
    }
    packed
}

/// Four disjoint `n`-long windows of `buf` at increasing offsets.
fn four<'a>(buf: &'a [f32], offsets: [usize; 4], n: usize) -> [&'a [f32]; 4] {
    offsets.map(|o| &buf[o..o + n])
}

fn four_mut(buf: &mut [f32], offsets: [usize; 4], n: usize) -> [&mut [f32]; 4] {
    let mut rest = buf;
    let mut taken = 0;
    let mut out: [&mut [f32]; 4] = Default::default();
    for (k, &o) in offsets.iter().enumerate() {
        assert!(o >= taken, "offsets must increase");
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(o - taken);
        let (head, tail) = tail.split_at_mut(n);
        out[k] = head;
        rest = tail;
        taken = o + n;
    }
    out
}

/// `Bᵀ` on four vectors of channels: `[d0−d2, d1+d2, d2−d1, d1−d3]`.
fn input_row(d: [&[f32]; 4], [v0, v1, v2, v3]: [&mut [f32]; 4]) {
    let n = v0.len();
    let (d0, d1, d2, d3) = (&d[0][..n], &d[1][..n], &d[2][..n], &d[3][..n]);
    let (v1, v2, v3) = (&mut v1[..n], &mut v2[..n], &mut v3[..n]);
    for c in 0..n {
        v0[c] = d0[c] - d2[c];
        v1[c] = d1[c] + d2[c];
        v2[c] = d2[c] - d1[c];
        v3[c] = d1[c] - d3[c];
    }
}

/// `Aᵀ` on four vectors of lanes: `[m0+m1+m2, m1−m2−m3]`.
fn output_row(m: [&[f32]; 4], y0: &mut [f32], y1: &mut [f32]) {
    let n = y0.len();
    let (m0, m1, m2, m3) = (&m[0][..n], &m[1][..n], &m[2][..n], &m[3][..n]);
    let y1 = &mut y1[..n];
    for c in 0..n {
        y0[c] = m0[c] + m1[c] + m2[c];
        y1[c] = m1[c] - m2[c] - m3[c];
    }
}

/// What every plane of tiles shares.
struct Layer<'a> {
    g: &'a Geometry,
    /// The padded channels-last input, extended so that every tile's 4×4×4
    /// block lies inside it.
    input: &'a [f32],
    /// Padded extents `[h, w]` of that input.
    padded_hw: [usize; 2],
    weights: &'a [f32],
    tiles: [usize; 3],
    out: [usize; 3],
    width: usize,
    blocks: usize,
    nv: usize,
    mr: usize,
    lanes: Lanes,
}

impl Layer<'_> {
    /// Offset of the padded input at `[z, y, x]`.
    fn at(&self, z: usize, y: usize, x: usize) -> usize {
        let [hp, wp] = self.padded_hw;
        ((z * hp + y) * wp + x) * self.g.in_channels
    }

    /// Output planes `2·tz` and `2·tz + 1` into `staged`, channels-last
    /// `[2][oh][ow][blocks·width]`.
    ///
    /// Every transform runs on long vectors: `Bᵀ` along z and y on whole
    /// padded rows (`wp·c_in` floats, shared by the overlapping tiles of a
    /// row), `Bᵀ` along x on each tile's four `c_in` runs, and `Aᵀ` on whole
    /// `[tile][width]` rows of the products, which it treats element by
    /// element. Per-tile calls on `c_in` or `width` floats cost three times
    /// as much in wasm.
    fn plane(&self, tz: usize, staged: &mut [f32]) {
        let c_in = self.g.in_channels;
        let [_, ty_n, tx_n] = self.tiles;
        let [od, oh, ow] = self.out;
        let [_, wp] = self.padded_hw;
        let row_len = wp * c_in;
        let cells = self.blocks * self.width;
        let w = self.width;
        let rows = MIN_BATCH_TILES.div_ceil(tx_n).clamp(1, ty_n);
        let batch_max = rows * tx_n;
        let mut v = vec![0.0f32; POINTS * batch_max * c_in];
        let mut m = vec![0.0f32; POINTS * batch_max * w];
        // Bᵀ along z as zt[b][h], then along y as yt[h][i]: 16 rows each.
        let mut zt = vec![0.0f32; 16 * row_len];
        let mut yt = vec![0.0f32; 16 * row_len];
        // Aᵀ along x, y and z: 32, 16 and 8 rows of `[tile][width]`.
        let mut s1 = vec![0.0f32; 32 * batch_max * w];
        let mut s2 = vec![0.0f32; 16 * batch_max * w];
        let mut ys = vec![0.0f32; 8 * batch_max * w];
        let (mut positions, mut outputs) = (vec![0usize; self.mr], vec![0usize; self.mr]);
        for ty0 in (0..ty_n).step_by(rows) {
            let batch = rows.min(ty_n - ty0) * tx_n;
            for r in 0..batch / tx_n {
                let ty = ty0 + r;
                for b in 0..4 {
                    let src = [0, 1, 2, 3].map(|a| self.at(2 * tz + a, 2 * ty + b, 0));
                    let dst = [0, 1, 2, 3].map(|h| (b * 4 + h) * row_len);
                    input_row(four(self.input, src, row_len), four_mut(&mut zt, dst, row_len));
                }
                for h in 0..4 {
                    let src = [0, 1, 2, 3].map(|b| (b * 4 + h) * row_len);
                    let dst = [0, 1, 2, 3].map(|i| (h * 4 + i) * row_len);
                    input_row(four(&zt, src, row_len), four_mut(&mut yt, dst, row_len));
                }
                // Along x, tile by tile: v[point][tile][c_in].
                for hi in 0..16 {
                    let row = &yt[hi * row_len..][..row_len];
                    for tx in 0..tx_n {
                        let t = r * tx_n + tx;
                        let src = [0, 1, 2, 3].map(|k| (2 * tx + k) * c_in);
                        let dst = [0, 1, 2, 3].map(|j| ((hi * 4 + j) * batch + t) * c_in);
                        input_row(four(row, src, c_in), four_mut(&mut v, dst, c_in));
                    }
                }
            }
            let n = batch * w;
            for block in 0..self.blocks {
                let block_len = c_in * w;
                // The 64 products, m[point][tile][width].
                for point in 0..POINTS {
                    let weights = &self.weights[(point * self.blocks + block) * block_len..][..block_len];
                    for t0 in (0..batch).step_by(self.mr) {
                        for k in 0..self.mr {
                            let t = (t0 + k).min(batch - 1);
                            positions[k] = (point * batch + t) * c_in;
                            outputs[k] = (point * batch + t) * w;
                        }
                        let tile = Tile { input: &v, positions: &positions, taps: &[0], run: c_in, weights, outputs: &outputs };
                        check_tile(&tile, m.len(), w);
                        run_tile(&tile, &mut m, self.nv, self.mr, self.lanes);
                    }
                }
                // Aᵀ along x (s1[h][i][jj]), y (s2[h][jj][ii]) and z (ys[ii][jj][hh]).
                for hi in 0..16 {
                    let src = four(&m, [0, 1, 2, 3].map(|j| (hi * 4 + j) * n), n);
                    let (y0, y1) = s1[hi * 2 * n..][..2 * n].split_at_mut(n);
                    output_row(src, y0, y1);
                }
                for h in 0..4 {
                    for jj in 0..2 {
                        let src = four(&s1, [0, 1, 2, 3].map(|i| ((h * 4 + i) * 2 + jj) * n), n);
                        let (y0, y1) = s2[(h * 2 + jj) * 2 * n..][..2 * n].split_at_mut(n);
                        output_row(src, y0, y1);
                    }
                }
                for ii in 0..2 {
                    for jj in 0..2 {
                        let src = four(&s2, [0, 1, 2, 3].map(|h| ((h * 2 + jj) * 2 + ii) * n), n);
                        let (y0, y1) = ys[(ii * 2 + jj) * 2 * n..][..2 * n].split_at_mut(n);
                        output_row(src, y0, y1);
                    }
                }
                // Into the staged outputs, dropping the past-the-edge half
                // of tiles on odd extents.
                for ii in 0..2 {
                    for jj in 0..2 {
                        for hh in 0..2 {
                            let z = 2 * tz + hh;
                            if z >= od {
                                continue;
                            }
                            let y = &ys[((ii * 2 + jj) * 2 + hh) * n..][..n];
                            for (t, lanes) in y.chunks_exact(w).enumerate() {
                                let (row, col) = (2 * (ty0 + t / tx_n) + ii, 2 * (t % tx_n) + jj);
                                if row < oh && col < ow {
                                    let cell = ((hh * oh + row) * ow + col) * cells + block * w;
                                    staged[cell..cell + w].copy_from_slice(lanes);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The convolution of NCDHW `x` by 3³ `weights` at stride 1, plus `bias`,
/// as NCDHW `[n, c_out, out_size…]`; the same contract as
/// [`super::conv3d::conv3d`].
pub fn conv3d(x: &[f32], weights: &[f32], bias: Option<&[f32]>, g: &Geometry, lanes: Lanes) -> Vec<f32> {
    assert!(applies(g), "Winograd F(2,3) takes 3³ kernels at stride 1, not {g:?}");
    let [d, h, w] = g.size;
    assert_eq!(x.len(), g.batch * g.in_channels * d * h * w, "input size");
    assert_eq!(weights.len(), g.out_channels * g.in_channels * 27, "weight size");
    if let Some(b) = bias {
        assert_eq!(b.len(), g.out_channels, "bias size");
    }
    let out = g.out_size();
    let tiles = out.map(|o| o.div_ceil(2));
    // Each tile reads 4 inputs from 2·t: one more zero plane, row or column
    // than the padding gives when an output extent is odd.
    let padded = std::array::from_fn(|a| 2 * tiles[a] + 2);
    let (nv, mr) = super::conv3d::block_shape(g.out_channels);
    let width = 4 * nv;
    let blocks = g.out_channels.div_ceil(width);
    let packed = transform_weights(weights, g, width);
    let [od, oh, ow] = out;
    let out_voxels = od * oh * ow;
    let cells = blocks * width;
    let plane_pair = 2 * oh * ow * cells;
    let slab = super::chunks_per_slab();
    let mut staged = vec![0.0f32; slab.min(tiles[0]) * plane_pair];
    let mut result = vec![0.0f32; g.batch * g.out_channels * out_voxels];
    let item_len = g.in_channels * d * h * w;
    for n in 0..g.batch {
        let input = pad_channels_last(&x[n * item_len..(n + 1) * item_len], g, padded);
        let layer = Layer {
            g,
            input: &input,
            padded_hw: [padded[1], padded[2]],
            weights: &packed,
            tiles,
            out,
            width,
            blocks,
            nv,
            mr,
            lanes,
        };
        let item = &mut result[n * g.out_channels * out_voxels..][..g.out_channels * out_voxels];
        for tz0 in (0..tiles[0]).step_by(slab) {
            let count = slab.min(tiles[0] - tz0);
            let planes = &mut staged[..count * plane_pair];
            super::for_each_chunk(planes, plane_pair, |(i, out)| layer.plane(tz0 + i, out));
            // The real output planes of these tiles (the last may be half).
            let real = (2 * (tz0 + count)).min(od) - 2 * tz0;
            let cells_here = &planes[..real * oh * ow * cells];
            scatter_to_ncdhw(cells_here, cells, 0, g.out_channels, 2 * tz0 * oh * ow, item, out_voxels, bias);
        }
    }
    result
}

/// Whether the transform is the faster way for this convolution. The
/// transforms cost per input and output channel, the products per pair of
/// them, so narrow layers lose. Measured in Chromium on one core (relaxed
/// SIMD, 64³ unless named; ms direct → Winograd): 1→21 16 → 57, 4→8 20 →
/// 30, 8→8 39 → 39, 16→16 139 → 78, 21→21 202 → 116, 42→42 634 → 305,
/// 84→84 at 32³ 253 → 107, 168→168 at 16³ 135 → 52.
pub fn pays(g: &Geometry) -> bool {
    applies(g) && g.in_channels >= 8 && g.in_channels * g.out_channels >= 128
}
