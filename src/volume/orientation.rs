//! Which world direction each voxel axis points to, computed exactly like
//! nibabel's `aff2axcodes(io_orientation(affine))`, so "RAS"/"LPS" strings agree
//! with what users see in Python.

use faer::Mat;

/// World-axis labels for the negative and positive direction of x, y, z
/// (nibabel's default `(('L','R'), ('P','A'), ('I','S'))`).
const AXIS_LABELS: [(char, char); 3] = [('L', 'R'), ('P', 'A'), ('I', 'S')];

/// For each voxel axis: the world axis it is closest to and the direction
/// (+1 / -1), or `None` when the axis maps to nothing (degenerate affine).
///
/// Port of nibabel's `io_orientation`: divide out column zooms, take the polar
/// factor `U·Vᵀ` of the SVD (the closest shear-free rotation), then assign
/// voxel axes greedily, strongest first, removing each used world axis.
pub fn io_orientation(affine: &[[f64; 4]; 4]) -> [Option<(usize, i8)>; 3] {
    let mut orientation = [None; 3];
    let Some(mut rotation) = closest_rotation(affine) else {
        return orientation;
    };

    // Strongest voxel axis first (largest max |R[:, j]|), stable on ties, so
    // labelling does not depend on axis order — mirrors nibabel's argsort.
    let mut voxel_axes = [0usize, 1, 2];
    let strength = |r: &[[f64; 3]; 3], col: usize| {
        (0..3)
            .map(|row| r[row][col] * r[row][col])
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let strengths: [f64; 3] = std::array::from_fn(|col| strength(&rotation, col));
    voxel_axes.sort_by(|&a, &b| strengths[b].total_cmp(&strengths[a]));

    for voxel_axis in voxel_axes {
        let column: [f64; 3] = std::array::from_fn(|row| rotation[row][voxel_axis]);
        // numpy.allclose(col, 0): every |value| <= 1e-8.
        if column.iter().all(|v| v.abs() <= 1e-8) {
            continue;
        }
        // First index of the largest magnitude, like numpy.argmax.
        let mut world_axis = 0;
        for row in 1..3 {
            if column[row].abs() > column[world_axis].abs() {
                world_axis = row;
            }
        }
        let direction = if column[world_axis] < 0.0 { -1 } else { 1 };
        orientation[voxel_axis] = Some((world_axis, direction));
        rotation[world_axis] = [0.0; 3];
    }
    orientation
}

/// The rotation part of the affine with zooms and shears removed, or `None`
/// when the affine contains non-finite values (numpy's SVD would raise).
fn closest_rotation(affine: &[[f64; 4]; 4]) -> Option<[[f64; 3]; 3]> {
    let mut rs = [[0.0f64; 3]; 3];
    for col in 0..3 {
        let zoom = (0..3)
            .map(|row| affine[row][col].powi(2))
            .sum::<f64>()
            .sqrt();
        // A zero column stays zero (nibabel sets such zooms to 1).
        let zoom = if zoom == 0.0 { 1.0 } else { zoom };
        for row in 0..3 {
            rs[row][col] = affine[row][col] / zoom;
        }
    }
    if rs.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let matrix = Mat::<f64>::from_fn(3, 3, |row, col| rs[row][col]);
    let svd = matrix.svd().ok()?;
    let (u, v) = (svd.U(), svd.V());
    let singular = svd.S().column_vector();
    let singular: [f64; 3] = std::array::from_fn(|k| singular[k]);
    let largest = singular.iter().copied().fold(0.0, f64::max);
    // Rank threshold exactly as nibabel: S.max() * max(shape) * eps.
    let tolerance = largest * 3.0 * f64::EPSILON;

    let mut rotation = [[0.0f64; 3]; 3];
    for k in (0..3).filter(|&k| singular[k] > tolerance) {
        for row in 0..3 {
            for col in 0..3 {
                rotation[row][col] += u[(row, k)] * v[(col, k)];
            }
        }
    }
    Some(rotation)
}

/// Axis codes like `['R', 'A', 'S']`; `None` for an axis with no direction.
pub fn axis_codes(affine: &[[f64; 4]; 4]) -> [Option<char>; 3] {
    io_orientation(affine).map(|axis| {
        axis.map(|(world_axis, direction)| {
            let (negative, positive) = AXIS_LABELS[world_axis];
            if direction < 0 {
                negative
            } else {
                positive
            }
        })
    })
}

/// Axis codes as a string such as "RAS"; unassigned axes are shown as '?'.
pub fn orientation_string(affine: &[[f64; 4]; 4]) -> String {
    axis_codes(affine)
        .iter()
        .map(|c| c.unwrap_or('?'))
        .collect()
}

/// The storage axis that runs left-right in the world (the one closest to
/// world x), or `None` for a degenerate affine. A left-right mirror of a
/// head must flip this axis: voxel axis 0 is left-right only for heads
/// stored that way (a sagittal acquisition stores it last).
pub fn left_right_axis(affine: &[[f64; 4]; 4]) -> Option<usize> {
    io_orientation(affine).iter().position(|o| matches!(o, Some((0, _))))
}

/// `data` (x fastest, `dims`) mirrored along storage `axis`. Its own inverse.
pub fn flip_axis<T: Copy>(data: &[T], [nx, ny, nz]: [usize; 3], axis: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(data.len());
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let (sx, sy, sz) = match axis {
                    0 => (nx - 1 - x, y, z),
                    1 => (x, ny - 1 - y, z),
                    _ => (x, y, nz - 1 - z),
                };
                out.push(data[sx + nx * (sy + ny * sz)]);
            }
        }
    }
    out
}

/// How to bring a volume to the closest canonical RAS orientation (nibabel's
/// `as_closest_canonical`): a permutation and flips of the voxel axes, no
/// resampling. Storage axis k of the result points to R, A, S for k = 0, 1, 2.
///
/// Why: a small network trained on heads in one orientation does not have to
/// spend its capacity on every other orientation (sagittal acquisitions
/// store A/P, S/I, R/L); it sees every input the same way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reorientation {
    /// Dims of the volume before reorientation (x fastest).
    pub source_dims: [usize; 3],
    /// Canonical axis k takes source axis `source_axis[k]` ...
    source_axis: [usize; 3],
    /// ... reversed when `reversed[k]`.
    reversed: [bool; 3],
}

impl Reorientation {
    /// `None` when the affine does not give every axis a direction (a
    /// degenerate or non-finite affine has no "closest canonical").
    pub fn to_ras(affine: &[[f64; 4]; 4], source_dims: [usize; 3]) -> Option<Self> {
        let mut source_axis = [usize::MAX; 3];
        let mut reversed = [false; 3];
        for (voxel_axis, o) in io_orientation(affine).into_iter().enumerate() {
            let (world_axis, direction) = o?;
            source_axis[world_axis] = voxel_axis;
            reversed[world_axis] = direction < 0;
        }
        Some(Self { source_dims, source_axis, reversed })
    }

    /// Dims after reorientation.
    pub fn dims(&self) -> [usize; 3] {
        self.source_axis.map(|a| self.source_dims[a])
    }

    /// Per-axis values (such as spacing) in the reoriented axis order.
    pub fn axes<T: Copy>(&self, per_source_axis: [T; 3]) -> [T; 3] {
        self.source_axis.map(|a| per_source_axis[a])
    }

    /// Whether this is the identity (the volume already is RAS).
    pub fn is_identity(&self) -> bool {
        self.source_axis == [0, 1, 2] && self.reversed == [false; 3]
    }

    /// Source index of each reoriented voxel, in reoriented storage order.
    fn source_indices(&self) -> impl Iterator<Item = usize> + '_ {
        let dims = self.dims();
        let src = self.source_dims;
        let stride = [1, src[0], src[0] * src[1]];
        let step: [usize; 3] = std::array::from_fn(|k| stride[self.source_axis[k]]);
        (0..dims[2]).flat_map(move |z| {
            (0..dims[1]).flat_map(move |y| {
                (0..dims[0]).map(move |x| {
                    let c = [x, y, z];
                    (0..3)
                        .map(|k| {
                            let i = if self.reversed[k] { dims[k] - 1 - c[k] } else { c[k] };
                            i * step[k]
                        })
                        .sum()
                })
            })
        })
    }

    /// `data` (source grid) in the reoriented grid.
    pub fn apply<T: Copy>(&self, data: &[T]) -> Vec<T> {
        self.source_indices().map(|i| data[i]).collect()
    }

    /// `data` (reoriented grid) back in the source grid.
    pub fn undo<T: Copy + Default>(&self, data: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); data.len()];
        for (value, i) in data.iter().zip(self.source_indices()) {
            out[i] = *value;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_left_right_axis_follows_the_affine_and_a_flip_undoes_itself() {
        // RAS: axis 0; a sagittal PIR-like storage (A/P, S/I, R/L): axis 2.
        assert_eq!(left_right_axis(&affine3([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])), Some(0));
        assert_eq!(left_right_axis(&affine3([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])), Some(2));
        assert_eq!(left_right_axis(&[[0.0; 4]; 4]), None);
        let dims = [2, 3, 4];
        let data: Vec<u32> = (0..24).collect();
        assert_eq!(flip_axis(&data, dims, 0)[..2], [1, 0]);
        assert_eq!(flip_axis(&data, dims, 2)[0], 18);
        for axis in 0..3 {
            assert_eq!(flip_axis(&flip_axis(&data, dims, axis), dims, axis), data);
        }
    }

    fn affine3(m: [[f64; 3]; 3]) -> [[f64; 4]; 4] {
        let mut a = [[0.0; 4]; 4];
        for r in 0..3 {
            a[r][..3].copy_from_slice(&m[r]);
            a[r][3] = 7.0 * r as f64; // translation must not matter
        }
        a[3][3] = 1.0;
        a
    }

    #[test]
    fn axis_aligned_orientations() {
        let diag = |x: f64, y: f64, z: f64| affine3([[x, 0.0, 0.0], [0.0, y, 0.0], [0.0, 0.0, z]]);
        assert_eq!(orientation_string(&diag(1.0, 1.0, 1.0)), "RAS");
        assert_eq!(orientation_string(&diag(-2.0, 3.0, 1.0)), "LAS");
        assert_eq!(orientation_string(&diag(-1.0, -1.0, 1.0)), "LPS");
        assert_eq!(orientation_string(&diag(1.0, -1.0, -0.5)), "RPI");
    }

    #[test]
    fn permuted_axes() {
        // nibabel docstring example: aff2axcodes([[0,1,0],[-1,0,0],[0,0,1]]) with
        // labels LR/BF/DU gives ('B','R','U'), i.e. "PRS" with the default labels.
        let a = affine3([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(orientation_string(&a), "PRS");
        // Typical sagittal acquisition: voxel x → A/P, y → S/I, z → R/L.
        let sag = affine3([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]);
        assert_eq!(orientation_string(&sag), "AIL");
    }

    #[test]
    fn oblique_affine_with_shear_and_zoom() {
        // 30° rotation about z plus anisotropic zoom and a small shear:
        // x is still mostly R, y mostly A.
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        let a = affine3([[2.0 * c, -s, 0.1], [2.0 * s, c, 0.0], [0.0, 0.0, 3.0]]);
        assert_eq!(orientation_string(&a), "RAS");
    }

    #[test]
    fn degenerate_affines() {
        let flat = affine3([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]);
        assert_eq!(orientation_string(&flat), "RA?");
        let nan = affine3([[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(orientation_string(&nan), "???");
    }
    #[test]
    fn reorientation_to_ras_moves_voxels_and_undoes_exactly() {
        // Sagittal "AIL": voxel x → A, y → I (S reversed), z → L (R reversed).
        let sag = affine3([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]);
        let dims = [4, 3, 2];
        let r = Reorientation::to_ras(&sag, dims).unwrap();
        assert_eq!(r.dims(), [2, 4, 3], "R comes from z, A from x, S from y");
        assert_eq!(r.axes([0.5, 1.0, 2.0]), [2.0, 0.5, 1.0]);
        let data: Vec<usize> = (0..24).collect();
        let ras = r.apply(&data);
        // Source voxel (x, y, z) has value x + 4y + 12z and world position
        // R = -z, A = x, S = -y. RAS voxel (i, j, k) is R = i - 1, A = j, S = k - 2:
        // so z = 1 - i, x = j, y = 2 - k.
        for k in 0..3 {
            for j in 0..4 {
                for i in 0..2 {
                    let (x, y, z) = (j, 2 - k, 1 - i);
                    assert_eq!(ras[i + 2 * (j + 4 * k)], x + 4 * y + 12 * z, "RAS voxel ({i}, {j}, {k})");
                }
            }
        }
        assert_eq!(r.undo(&ras), data);
        assert!(!r.is_identity());
        let ras_affine = affine3([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let id = Reorientation::to_ras(&ras_affine, dims).unwrap();
        assert!(id.is_identity());
        assert_eq!(id.apply(&data), data);
        let flat = affine3([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]);
        assert_eq!(Reorientation::to_ras(&flat, dims), None);
    }
}
