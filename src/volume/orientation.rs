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

#[cfg(test)]
mod tests {
    use super::*;

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
}
