//! Largest connected component of a binary mask (26-connectivity), as
//! HD-BET's `postprocess_prediction` does with `skimage.measure.label`.
//!
//! Written by hand: no kept Rust crate labels 3D components on a flat buffer,
//! and the algorithm is a short two-pass flood fill.

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
}
