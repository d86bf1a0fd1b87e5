//! Connected components of a binary mask: the largest one (26-connectivity),
//! as HD-BET's `postprocess_prediction` does with `skimage.measure.label`,
//! and holes within slices (scipy's `binary_fill_holes`, slice by slice).
//!
//! Written by hand: no kept Rust crate labels 3D components on a flat buffer,
//! and both are short flood fills.

/// Keeps only the largest 26-connected component of the non-zero voxels of
/// `labels` (dims x-fastest), zeroing the rest. Does nothing if empty.
pub fn keep_largest_component(labels: &mut [u8], dims: [usize; 3]) {
    let [nx, ny, nz] = dims;
    let n = nx * ny * nz;
    debug_assert_eq!(labels.len(), n);
    // Component id per voxel; 0 = background or not yet visited.
    let mut comp = vec![0u32; n];
    let mut sizes: Vec<usize> = vec![0];
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..n {
        if labels[start] == 0 || comp[start] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut size = 0usize;
        comp[start] = id;
        stack.push(start);
        while let Some(v) = stack.pop() {
            size += 1;
            let (x, y, z) = (v % nx, (v / nx) % ny, v / (nx * ny));
            for dz in -1i64..=1 {
                let zz = z as i64 + dz;
                if zz < 0 || zz >= nz as i64 {
                    continue;
                }
                for dy in -1i64..=1 {
                    let yy = y as i64 + dy;
                    if yy < 0 || yy >= ny as i64 {
                        continue;
                    }
                    for dx in -1i64..=1 {
                        let xx = x as i64 + dx;
                        if xx < 0 || xx >= nx as i64 {
                            continue;
                        }
                        let w = xx as usize + nx * (yy as usize + ny * zz as usize);
                        if labels[w] != 0 && comp[w] == 0 {
                            comp[w] = id;
                            stack.push(w);
                        }
                    }
                }
            }
        }
        sizes.push(size);
    }
    if sizes.len() <= 2 {
        return; // zero or one component: nothing to remove
    }
    let largest = (1..sizes.len()).max_by_key(|&i| sizes[i]).unwrap_or(1) as u32;
    for (l, c) in labels.iter_mut().zip(&comp) {
        if *c != largest {
            *l = 0;
        }
    }
}

/// Fills the holes of the foreground in every slice of constant z: background
/// pixels that no 4-connected background path links to the slice's edge
/// become `value`. A brain mask has no holes, but a small network tends to
/// leave the ventricles and deep grey matter out; in a model that sees
/// volumes as RAS (`axis_order` "ras"), these slices are axial.
pub fn fill_holes_in_z_slices(labels: &mut [u8], dims: [usize; 3], value: u8) {
    let [nx, ny, nz] = dims;
    let plane = nx * ny;
    debug_assert_eq!(labels.len(), plane * nz);
    let mut outside = vec![false; plane];
    let mut stack = Vec::new();
    for z in 0..nz {
        let slice = &mut labels[z * plane..(z + 1) * plane];
        outside.iter_mut().for_each(|o| *o = false);
        let edge = (0..nx).flat_map(|x| [x, x + nx * (ny - 1)]).chain((0..ny).flat_map(|y| [nx * y, nx * y + nx - 1]));
        for p in edge {
            if slice[p] == 0 && !outside[p] {
                outside[p] = true;
                stack.push(p);
            }
        }
        while let Some(p) = stack.pop() {
            let (x, y) = (p % nx, p / nx);
            let neighbours = [(x > 0).then(|| p - 1), (x + 1 < nx).then(|| p + 1), (y > 0).then(|| p - nx), (y + 1 < ny).then(|| p + nx)];
            for q in neighbours.into_iter().flatten() {
                if slice[q] == 0 && !outside[q] {
                    outside[q] = true;
                    stack.push(q);
                }
            }
        }
        for (l, o) in slice.iter_mut().zip(&outside) {
            if *l == 0 && !o {
                *l = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_biggest_blob_and_diagonal_neighbours() {
        let dims = [6, 6, 6];
        let idx = |x: usize, y: usize, z: usize| x + 6 * (y + 6 * z);
        let mut m = vec![0u8; 216];
        // a 3-voxel diagonal chain (connected only through corners)
        m[idx(0, 0, 0)] = 1;
        m[idx(1, 1, 1)] = 1;
        m[idx(2, 2, 2)] = 1;
        // an isolated 2-voxel blob
        m[idx(5, 5, 0)] = 1;
        m[idx(5, 4, 0)] = 1;
        keep_largest_component(&mut m, dims);
        assert_eq!(m.iter().filter(|&&v| v != 0).count(), 3);
        assert_eq!(m[idx(1, 1, 1)], 1);
        assert_eq!(m[idx(5, 5, 0)], 0);
    }

    #[test]
    fn fills_enclosed_holes_per_slice_but_not_open_bays() {
        let dims = [5, 5, 2];
        let idx = |x: usize, y: usize, z: usize| x + 5 * (y + 5 * z);
        let mut m = vec![0u8; 50];
        // Slice 0: a ring around (2, 2): the centre is a hole. Slice 1: the
        // same ring with a gap at (2, 1), so the centre opens to the edge.
        for z in 0..2 {
            for (x, y) in [(1, 1), (2, 1), (3, 1), (1, 2), (3, 2), (1, 3), (2, 3), (3, 3)] {
                m[idx(x, y, z)] = 1;
            }
        }
        m[idx(2, 1, 1)] = 0;
        fill_holes_in_z_slices(&mut m, dims, 1);
        assert_eq!(m[idx(2, 2, 0)], 1, "the enclosed centre is filled");
        assert_eq!(m[idx(2, 2, 1)], 0, "a bay open to the edge stays background");
        assert_eq!(m.iter().filter(|&&v| v != 0).count(), 9 + 7, "nothing else changes");
        // An empty mask stays empty.
        let mut full = vec![0u8; 50];
        fill_holes_in_z_slices(&mut full, dims, 1);
        assert!(full.iter().all(|&v| v == 0));
    }
}
