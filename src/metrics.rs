//! Agreement between label volumes.

/// Dice coefficient of the foregrounds (`> 0`) of two masks of equal length:
/// 2|A∩B| / (|A|+|B|). Two empty masks agree perfectly (1.0).
pub fn dice<A: Copy + PartialOrd + Default, B: Copy + PartialOrd + Default>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "dice needs masks of the same size");
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        let (fx, fy) = (x > A::default(), y > B::default());
        na += fx as u64;
        nb += fy as u64;
        both += (fx && fy) as u64;
    }
    if na + nb == 0 {
        1.0
    } else {
        2.0 * both as f64 / (na + nb) as f64
    }
}

/// 95th-percentile Hausdorff distance in mm between the surfaces of two
/// masks (`> 0`) on the same x-fastest grid: the larger of the two directed
/// 95th percentiles of surface-to-surface distances (as medpy's `hd95`).
/// `None` when either mask is empty.
///
/// Surface voxels are foreground voxels with a background 6-neighbour (or on
/// the grid's border). Distances come from an exact Euclidean distance
/// transform; written here because no kept library provides one for Rust.
pub fn hd95(a: &[u8], b: &[u8], dims: [usize; 3], spacing: [f64; 3]) -> Option<f64> {
    let n: usize = dims.iter().product();
    assert!(a.len() == n && b.len() == n, "hd95 needs masks of the grid's size");
    let (sa, sb) = (surface(a, dims), surface(b, dims));
    if !sa.iter().any(|&s| s) || !sb.iter().any(|&s| s) {
        return None;
    }
    let to_b = squared_distance_to(&sb, dims, spacing);
    let to_a = squared_distance_to(&sa, dims, spacing);
    let directed = |from: &[bool], dist: &[f64]| {
        let mut d: Vec<f64> = from.iter().zip(dist).filter(|(s, _)| **s).map(|(_, d)| d.sqrt()).collect();
        percentile(&mut d, 95.0)
    };
    Some(directed(&sa, &to_b).max(directed(&sb, &to_a)))
}

/// numpy's default (linear) percentile.
fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|x, y| x.total_cmp(y));
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn surface(m: &[u8], [nx, ny, nz]: [usize; 3]) -> Vec<bool> {
    let at = |x: usize, y: usize, z: usize| m[x + nx * (y + ny * z)] > 0;
    let mut out = vec![false; m.len()];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                if !at(x, y, z) {
                    continue;
                }
                let border = x == 0 || y == 0 || z == 0 || x + 1 == nx || y + 1 == ny || z + 1 == nz;
                out[x + nx * (y + ny * z)] = border
                    || !at(x - 1, y, z)
                    || !at(x + 1, y, z)
                    || !at(x, y - 1, z)
                    || !at(x, y + 1, z)
                    || !at(x, y, z - 1)
                    || !at(x, y, z + 1);
            }
        }
    }
    out
}

/// Squared distance (mm²) from every voxel to the nearest `site`: the
/// separable exact transform of Felzenszwalb & Huttenlocher, one axis at a time.
fn squared_distance_to(sites: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
    let mut d: Vec<f64> = sites.iter().map(|&s| if s { 0.0 } else { f64::INFINITY }).collect();
    for axis in 0..3 {
        let len = dims[axis];
        let stride: usize = dims[..axis].iter().product();
        let outer: usize = dims[axis + 1..].iter().product();
        let mut line = vec![0.0; len];
        let mut out = vec![0.0; len];
        for o in 0..outer {
            for i in 0..stride {
                let base = o * len * stride + i;
                for (k, v) in line.iter_mut().enumerate() {
                    *v = d[base + k * stride];
                }
                lower_envelope(&line, spacing[axis], &mut out);
                for (k, v) in out.iter().enumerate() {
                    d[base + k * stride] = *v;
                }
            }
        }
    }
    d
}

/// out[p] = min_q f[q] + ((p − q)·h)².
fn lower_envelope(f: &[f64], h: f64, out: &mut [f64]) {
    let n = f.len();
    let mut v = vec![0usize; n]; // parabola apexes in the envelope
    let mut z = vec![0.0f64; n + 1]; // boundaries between them
    let mut k = 0usize;
    let first = match f.iter().position(|x| x.is_finite()) {
        Some(q) => q,
        None => {
            out.iter_mut().for_each(|o| *o = f64::INFINITY);
            return;
        }
    };
    v[0] = first;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    let pos = |q: usize| q as f64 * h;
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        let intersect = |p: usize| ((f[q] + pos(q) * pos(q)) - (f[p] + pos(p) * pos(p))) / (2.0 * (pos(q) - pos(p)));
        // z[0] is −∞, so this never pops the first parabola.
        let mut s = intersect(v[k]);
        while s <= z[k] {
            k -= 1;
            s = intersect(v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut k = 0;
    for (p, o) in out.iter_mut().enumerate() {
        while z[k + 1] < pos(p) {
            k += 1;
        }
        let q = v[k];
        *o = f[q] + (pos(p) - pos(q)).powi(2);
    }
}

/// Dice of one label between two label volumes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelDice {
    pub value: u8,
    pub name: String,
    pub dice: f64,
}

/// The label with the lowest Dice (the first on ties; a Dice that is not a
/// number counts as the lowest); None for no labels.
pub fn worst_label(dice: &[LabelDice]) -> Option<&LabelDice> {
    dice.iter().reduce(|w, d| if !w.dice.is_nan() && (d.dice < w.dice || d.dice.is_nan()) { d } else { w })
}

/// Dice of every non-background label of `labels` between two label volumes
/// of equal length (voxels equal to the label's value in each). A label absent
/// from both agrees perfectly (1.0).
pub fn dice_per_label(a: &[u8], b: &[u8], labels: &[crate::model::Label]) -> Vec<LabelDice> {
    assert_eq!(a.len(), b.len(), "dice needs masks of the same size");
    let (mut both, mut na, mut nb) = ([0u64; 256], [0u64; 256], [0u64; 256]);
    for (&x, &y) in a.iter().zip(b) {
        na[x as usize] += 1;
        nb[y as usize] += 1;
        both[x as usize] += (x == y) as u64;
    }
    labels
        .iter()
        .filter(|l| l.value != 0)
        .map(|l| {
            let v = l.value as usize;
            let dice = if na[v] + nb[v] == 0 { 1.0 } else { 2.0 * both[v] as f64 / (na[v] + nb[v]) as f64 };
            LabelDice { value: l.value, name: l.name.clone(), dice }
        })
        .collect()
}

/// A reference mask's voxels as labels of a model with `labels`: for a model
/// with one foreground label, any value > 0 is that label (brain masks are
/// often stored as the skull-stripped image, as Colin27's `ch2bet` is); for
/// several, the rounded value is the label.
pub fn reference_labels(values: &[f32], labels: &[crate::model::Label]) -> Vec<u8> {
    let foreground: Vec<u8> = labels.iter().map(|l| l.value).filter(|&v| v != 0).collect();
    match foreground.as_slice() {
        [only] => values.iter().map(|&x| if x > 0.0 { *only } else { 0 }).collect(),
        _ => values.iter().map(|&x| x.round().clamp(0.0, 255.0) as u8).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(value: u8, name: &str) -> crate::model::Label {
        crate::model::Label { value, name: name.into(), color: [0, 0, 0], code: None }
    }

    #[test]
    fn dice_per_label_counts_each_label_apart() {
        let labels = [label(0, "background"), label(1, "a"), label(2, "b"), label(3, "absent")];
        // a: A = {0,1,2}, B = {0,1}: 2·2/(3+2) = 0.8. b: A = {3}, B = {2,3,4}: 2·1/(1+3) = 0.5.
        let a = [1, 1, 1, 2, 0, 0];
        let b = [1, 1, 2, 2, 2, 0];
        let d = dice_per_label(&a, &b, &labels);
        assert_eq!(d.iter().map(|l| l.value).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!((d[0].dice - 0.8).abs() < 1e-12);
        assert!((d[1].dice - 0.5).abs() < 1e-12);
        assert_eq!(d[2].dice, 1.0);
    }

    #[test]
    fn reference_labels_binarise_for_one_label_and_round_for_several() {
        let one = [label(0, "background"), label(1, "brain")];
        assert_eq!(reference_labels(&[0.0, 37.5, -2.0, 1.0], &one), vec![0, 1, 0, 1]);
        let several = [label(0, "background"), label(1, "a"), label(2, "b")];
        assert_eq!(reference_labels(&[0.0, 1.0, 2.0, 1.9], &several), vec![0, 1, 2, 2]);
    }

    #[test]
    fn distance_transform_matches_brute_force() {
        let dims = [7, 5, 6];
        let spacing = [1.0, 2.0, 0.5];
        let n = 7 * 5 * 6;
        let sites: Vec<bool> = (0..n).map(|i| (i * 37 + 11) % 41 == 0).collect();
        let fast = squared_distance_to(&sites, dims, spacing);
        let coords = |i: usize| [(i % 7) as f64, ((i / 7) % 5) as f64, (i / 35) as f64];
        for i in 0..n {
            let ci = coords(i);
            let brute = (0..n)
                .filter(|&j| sites[j])
                .map(|j| {
                    let cj = coords(j);
                    (0..3).map(|a| ((ci[a] - cj[a]) * spacing[a]).powi(2)).sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            assert!((fast[i] - brute).abs() < 1e-9, "voxel {i}: {} vs {brute}", fast[i]);
        }
    }

    #[test]
    fn hd95_by_hand() {
        // Two single voxels 3 apart along z with 2 mm slices: 6 mm.
        let dims = [4, 4, 8];
        let mut a = vec![0u8; 128];
        let mut b = vec![0u8; 128];
        a[1 + 4 * (1 + 4 * 2)] = 1;
        b[1 + 4 * (1 + 4 * 5)] = 1;
        assert_eq!(hd95(&a, &b, dims, [1.0, 1.0, 2.0]), Some(6.0));
        assert_eq!(hd95(&a, &a, dims, [1.0; 3]), Some(0.0));
        assert_eq!(hd95(&a, &[0u8; 128], dims, [1.0; 3]), None);
        // Concentric cubes of half-width 3 and 5 voxels: every surface point of
        // one is 2 voxels (or, at edges/corners of the big one, more) from the other.
        let dims = [16, 16, 16];
        let cube = |r: i32| -> Vec<u8> {
            (0..4096)
                .map(|i| {
                    let c = [i % 16, (i / 16) % 16, i / 256].map(|v| (v as i32 - 8).abs());
                    (c.iter().all(|&v| v <= r)) as u8
                })
                .collect()
        };
        let h = hd95(&cube(3), &cube(5), dims, [1.0; 3]).unwrap();
        assert!((2.0..=2.0 * 3f64.sqrt()).contains(&h), "{h}");
    }

    #[test]
    fn dice_by_hand() {
        // A = {0,1,2}, B = {1,2,3}: 2*2 / (3+3)
        let a = [1u8, 1, 1, 0, 0];
        let b = [0.0f32, 2.0, 1.0, 5.0, 0.0];
        assert!((dice(&a, &b) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(dice(&[0u8; 4], &[0u8; 4]), 1.0);
        assert_eq!(dice(&[1u8, 0], &[0u8, 1]), 0.0);
    }
}
