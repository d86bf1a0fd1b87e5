//! How far a mask should be trusted: cheap signals computed with every run,
//! so that a student never fails silently (issue 17). A small network can
//! return a wrong brain mask with no error: on a head cropped tighter than
//! its training heads, student-s finds a third of the brain. These signals
//! need no reference and no second model:
//! - the foreground volume, against the range of adult brains;
//! - the share of the mask on the volume's outer faces (a brain that runs
//!   into the edge of the scan, or a "brain" that leaked into the air);
//! - the share of the volume the network was unsure about (foreground
//!   probability between 0.2 and 0.8), relative to the mask: a network that
//!   sees its inputs as it saw its training heads is sure of almost every
//!   voxel away from the brain's surface;
//! - the share of air in the scan (voxels within a tenth of the way from the
//!   minimum to the mask's mean intensity): the students z-score the whole
//!   volume, so a scan cropped tight or padded wide reaches them with other
//!   intensities, and that is where they fail;
//! - the skewness of the intensities in the mask's core (the contrast);
//! - on request only, the mask's agreement with the mask of the scan's
//!   left-right mirror (a brain is nearly symmetric, so a network that holds
//!   finds the mirrored brain too). It is not cheap: a second run.
//!
//! The bounds are the model's (`model.json` `quality`, calibrated on the
//! probes in README, "Heads they have not seen"); the warnings say which
//! signal failed, in plain words.

use serde::{Deserialize, Serialize};

use super::normalise::AIR_CUT;

pub use crate::model::manifest::QualityBounds;

/// Signals of one mask, and whether they are all within their bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// The foreground's volume in millilitres.
    pub foreground_ml: f64,
    /// Share of the foreground's voxels on the volume's outer faces.
    pub border_share: f64,
    /// Voxels with a foreground probability in [0.2, 0.8], per foreground
    /// voxel (on the model's grid).
    pub unsure_share: f64,
    /// Share of the scan's voxels that are air.
    pub air_share: f64,
    /// Skewness of the intensities in the mask's core (`core_skewness`).
    pub core_skewness: f64,
    /// Dice between the mask and its left-right mirror run's, flipped back;
    /// `None` when the mirror check was not asked for.
    pub mirror_dice: Option<f64>,
    /// Plain reasons not to trust the mask; empty when none.
    pub warnings: Vec<String>,
    /// One sentence for the user: the warnings, or that there is none, with
    /// the signals.
    pub summary: String,
}

impl Quality {
    pub fn trusted(&self) -> bool {
        self.warnings.is_empty()
    }
}

/// Share of foreground voxels (`labels > 0`, x fastest, `dims`) on the
/// volume's six outer faces.
pub fn border_share(labels: &[u8], dims: [usize; 3]) -> f64 {
    let [nx, ny, nz] = dims;
    let (mut on_border, mut total) = (0u64, 0u64);
    for z in 0..nz {
        for y in 0..ny {
            let row = nx * (y + ny * z);
            let edge_row = z == 0 || z + 1 == nz || y == 0 || y + 1 == ny;
            for x in 0..nx {
                if labels[row + x] > 0 {
                    total += 1;
                    on_border += (edge_row || x == 0 || x + 1 == nx) as u64;
                }
            }
        }
    }
    if total == 0 {
        0.0
    } else {
        on_border as f64 / total as f64
    }
}

/// Voxels whose foreground probability `1 − p(background)` lies in
/// [0.2, 0.8], and voxels above 0.5, over the `region` of a `padded` grid.
pub fn unsure_and_sure(background: &[f32], padded: [usize; 3], region: [usize; 3]) -> (u64, u64) {
    let (mut unsure, mut foreground) = (0u64, 0u64);
    for z in 0..region[2] {
        for y in 0..region[1] {
            let row = padded[0] * (y + padded[1] * z);
            for &b in &background[row..row + region[0]] {
                let p = 1.0 - b;
                unsure += (0.2..=0.8).contains(&p) as u64;
                foreground += (p > 0.5) as u64;
            }
        }
    }
    (unsure, foreground)
}

/// Share of `image`'s voxels at most a tenth of the way from its minimum to
/// the mean inside the mask (`labels > 0`, same grid); 0 for an empty mask.
/// The same measure as `scripts/probe-heads` prints for each probe.
pub fn air_share(image: &[f32], labels: &[u8]) -> f64 {
    let min = image.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let (sum, n) = image.iter().zip(labels).filter(|(_, &l)| l > 0).fold((0.0f64, 0u64), |(s, n), (&v, _)| (s + v as f64, n + 1));
    if n == 0 || image.is_empty() {
        return 0.0;
    }
    let threshold = min + AIR_CUT * (sum / n as f64 - min);
    image.iter().filter(|&&v| (v as f64) <= threshold).count() as f64 / image.len() as f64
}

/// How deep the mask is eroded before `core_skewness` reads its
/// intensities: the students' masks run a few millimetres past the brain,
/// into skull and scalp, and on a T2 head that rim alone takes the skewness
/// from 1.4 to 0.5 (reference masks dilated by 2 voxels).
pub const CORE_DEPTH_MM: f64 = 4.0;

/// Skewness (third standardised moment) of `image` over the mask's core: the
/// voxels of `labels > 0` whose every neighbour within `CORE_DEPTH_MM` along
/// each axis (a box, per axis `spacing_mm`) is in the mask too. The whole
/// mask stands in when its core is empty; 0 for an empty mask. Measured on
/// reference masks eroded by 2 voxels: Colin27 −0.96, ROBEX 0.19, MNI152
/// −0.99, ITK −0.45 (T1); ICBM 2009c T2 1.41, avg152 T2 2.18; avg152 PD
/// −0.92 (PD leans dark like T1; the brain's volume flags it).
pub fn core_skewness(image: &[f32], labels: &[u8], dims: [usize; 3], spacing_mm: [f64; 3]) -> f64 {
    let mut core: Vec<bool> = labels.iter().map(|&l| l > 0).collect();
    for axis in 0..3 {
        let radius = (CORE_DEPTH_MM / spacing_mm[axis].max(1e-6)).round() as usize;
        erode_along(&mut core, dims, axis, radius);
    }
    if !core.iter().any(|&c| c) {
        core = labels.iter().map(|&l| l > 0).collect();
    }
    let (mut n, mut sum) = (0u64, 0.0f64);
    for (i, &v) in image.iter().enumerate() {
        if core[i] {
            n += 1;
            sum += v as f64;
        }
    }
    if n == 0 {
        return 0.0;
    }
    let mean = sum / n as f64;
    let (mut m2, mut m3) = (0.0f64, 0.0f64);
    for (i, &v) in image.iter().enumerate() {
        if core[i] {
            let d = v as f64 - mean;
            m2 += d * d;
            m3 += d * d * d;
        }
    }
    let (m2, m3) = (m2 / n as f64, m3 / n as f64);
    if m2 <= 0.0 {
        0.0
    } else {
        m3 / m2.powf(1.5)
    }
}

/// Box erosion along one axis (x fastest in `dims`): a voxel stays when every
/// voxel within `radius` of it along `axis` is set; the volume's outside
/// counts as unset. By hand because it is a dozen lines with a running count,
/// and no image-morphology crate is in the stack.
fn erode_along(mask: &mut [bool], dims: [usize; 3], axis: usize, radius: usize) {
    if radius == 0 {
        return;
    }
    let stride = [1, dims[0], dims[0] * dims[1]][axis];
    let len = dims[axis];
    let mut line = vec![false; len];
    // unset[k]: unset voxels among line[0..k].
    let mut unset = vec![0usize; len + 1];
    for start in 0..mask.len() {
        // `start` is the first voxel of a line along `axis` when its coordinate there is 0.
        if (start / stride) % len != 0 {
            continue;
        }
        for (k, v) in line.iter_mut().enumerate() {
            *v = mask[start + k * stride];
        }
        for k in 0..len {
            unset[k + 1] = unset[k] + (!line[k]) as usize;
        }
        for k in 0..len {
            let whole = k >= radius && k + radius < len;
            let (lo, hi) = (k.saturating_sub(radius), (k + radius + 1).min(len));
            mask[start + k * stride] = whole && unset[hi] == unset[lo];
        }
    }
}

/// The signals, measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    pub foreground_ml: f64,
    pub border_share: f64,
    pub unsure_share: f64,
    pub air_share: f64,
    pub core_skewness: f64,
    pub mirror_dice: Option<f64>,
}

/// Judges the signals against `bounds`.
pub fn assess(s: Signals, bounds: &QualityBounds) -> Quality {
    let mut warnings = Vec::new();
    if s.foreground_ml < bounds.min_ml || s.foreground_ml > bounds.max_ml {
        warnings.push(format!(
            "the brain measures {:.0} ml, outside the plausible {:.0}–{:.0} ml",
            s.foreground_ml, bounds.min_ml, bounds.max_ml
        ));
    }
    if s.border_share > bounds.max_border_share {
        warnings.push(format!("{:.1}% of the mask lies on the edge of the scan", 100.0 * s.border_share));
    }
    if let Some(max) = bounds.max_unsure_share.filter(|&m| s.unsure_share > m) {
        warnings.push(format!(
            "the network was unsure of {:.0}% as many voxels as it called brain (at most {:.0}% on the heads it holds on)",
            100.0 * s.unsure_share,
            100.0 * max
        ));
    }
    if let Some([lo, hi]) = bounds.air_share.filter(|[lo, hi]| s.air_share < *lo || s.air_share > *hi) {
        let range = if lo > 0.0 { format!("{:.0}–{:.0}%", 100.0 * lo, 100.0 * hi) } else { format!("at most {:.0}%", 100.0 * hi) };
        warnings.push(format!(
            "the scan is {:.0}% air, and this model holds on scans of {range} air (crop or pad the field of view, or use HD-BET)",
            100.0 * s.air_share
        ));
    }
    if let Some(max) = bounds.max_core_skewness.filter(|&m| s.core_skewness > m) {
        warnings.push(format!(
            "the brain's intensities lean bright (skewness {:.2}, at most {max:.2} on the T1-weighted heads this model holds on): \
             this looks like a T2-weighted scan, and this model learnt from T1-weighted heads",
            s.core_skewness
        ));
    }
    if let (Some(dice), Some(min)) = (s.mirror_dice, bounds.min_mirror_dice) {
        if dice < min {
            warnings.push(format!(
                "the mask of the scan's left-right mirror agrees with this one by Dice {dice:.3} only \
                 (at least {min:.3} on the heads this model holds on)"
            ));
        }
    }
    let mut signals = format!(
        "brain {:.0} ml, {:.2}% of the mask on the edge of the scan, unsure of {:.0}%, {:.0}% air, skewness {:.2}",
        s.foreground_ml,
        100.0 * s.border_share,
        100.0 * s.unsure_share,
        100.0 * s.air_share,
        s.core_skewness
    );
    if let Some(dice) = s.mirror_dice {
        signals += &format!(", mirror Dice {dice:.3}");
    }
    let summary = if warnings.is_empty() {
        format!("No warning ({signals}).")
    } else {
        format!("Do not trust this mask without a look: {}.", warnings.join("; "))
    };
    Quality {
        foreground_ml: s.foreground_ml,
        border_share: s.border_share,
        unsure_share: s.unsure_share,
        air_share: s.air_share,
        core_skewness: s.core_skewness,
        mirror_dice: s.mirror_dice,
        warnings,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_border_share_counts_mask_voxels_on_the_outer_faces() {
        // 4×4×4 with a 2×2×2 block inside: nothing on the border.
        let dims = [4, 4, 4];
        let at = |x: usize, y: usize, z: usize| x + 4 * (y + 4 * z);
        let mut l = vec![0u8; 64];
        for (x, y, z) in [(1, 1, 1), (2, 1, 1), (1, 2, 1), (2, 2, 1), (1, 1, 2), (2, 1, 2), (1, 2, 2), (2, 2, 2)] {
            l[at(x, y, z)] = 1;
        }
        assert_eq!(border_share(&l, dims), 0.0);
        // Two more voxels, both on faces: 2 of 10.
        l[at(0, 1, 1)] = 1;
        l[at(2, 2, 3)] = 2;
        assert!((border_share(&l, dims) - 0.2).abs() < 1e-12);
        assert_eq!(border_share(&[0; 8], [2, 2, 2]), 0.0, "an empty mask");
    }

    #[test]
    fn unsure_voxels_are_counted_inside_the_region_only() {
        // padded 3×1×1, region 2×1×1: p(foreground) 0.9 (sure brain), 0.5 (unsure), and a padded 0.5.
        let background = [0.1f32, 0.5, 0.5];
        assert_eq!(unsure_and_sure(&background, [3, 1, 1], [2, 1, 1]), (1, 1));
    }

    #[test]
    fn the_air_share_is_measured_against_the_brain() {
        // min 0, brain mean 100: air is at most 10. Voxels 0, 5, 10 are air; 50 and two 100s are not.
        let image = [0.0f32, 5.0, 10.0, 50.0, 100.0, 100.0];
        let labels = [0u8, 0, 0, 0, 1, 1];
        assert!((air_share(&image, &labels) - 0.5).abs() < 1e-12);
        assert_eq!(air_share(&image, &[0; 6]), 0.0, "no brain: no measure");
    }

    fn signals(ml: f64, border: f64, unsure: f64, air: f64) -> Signals {
        Signals { foreground_ml: ml, border_share: border, unsure_share: unsure, air_share: air, core_skewness: 0.0, mirror_dice: None }
    }

    #[test]
    fn erosion_keeps_voxels_whose_whole_neighbourhood_is_set() {
        // A 7-voxel line along y inside a 3×9×1 grid, and a stray voxel: radius 2 keeps the middle 3.
        let dims = [3, 9, 1];
        let mut mask = vec![false; 27];
        for y in 1..8 {
            mask[1 + 3 * y] = true;
        }
        mask[0] = true;
        erode_along(&mut mask, dims, 1, 2);
        let kept: Vec<usize> = (0..27).filter(|&i| mask[i]).collect();
        assert_eq!(kept, [1 + 3 * 3, 1 + 3 * 4, 1 + 3 * 5]);
        // Along x the line is one voxel thick: radius 1 removes it all.
        erode_along(&mut mask, dims, 0, 1);
        assert!(mask.iter().all(|&m| !m));
    }

    #[test]
    fn the_core_skewness_leans_dark_for_t1_and_bright_for_t2() {
        // A 12×12×12 "brain" filling a 14³ grid: tissue at 100, with 10% of
        // the core at 30 (dark CSF, as in T1) or 300 (bright CSF, as in T2),
        // and a rim at 1000 (skull in the mask) that the erosion must leave out.
        let dims = [14, 14, 14];
        let at = |x: usize, y: usize, z: usize| x + 14 * (y + 14 * z);
        let mut labels = vec![0u8; 14 * 14 * 14];
        let mut t1 = vec![0.0f32; labels.len()];
        for z in 1..13 {
            for y in 1..13 {
                for x in 1..13 {
                    let rim = [x, y, z].iter().any(|&c| c == 1 || c == 12);
                    labels[at(x, y, z)] = 1;
                    t1[at(x, y, z)] = if rim { 1000.0 } else if (x + y + z) % 10 == 0 { 30.0 } else { 100.0 };
                }
            }
        }
        let t2: Vec<f32> = t1.iter().map(|&v| if v == 30.0 { 300.0 } else { v }).collect();
        let (t1s, t2s) = (core_skewness(&t1, &labels, dims, [1.0; 3]), core_skewness(&t2, &labels, dims, [4.0; 3]));
        assert!(t1s < -1.2 && t2s > 1.5, "T1 {t1s}, T2 {t2s}");
        assert_eq!(core_skewness(&t1, &vec![0; labels.len()], dims, [1.0; 3]), 0.0, "an empty mask");
    }

    #[test]
    fn each_failed_signal_is_named() {
        let generic = QualityBounds::default();
        let q = assess(signals(1500.0, 0.0, 0.05, 0.9), &generic);
        assert!(q.trusted(), "without calibrated bounds, neither unsure share nor air is judged");
        assert!(q.summary.starts_with("No warning (brain 1500 ml"), "{}", q.summary);
        let q = assess(signals(547.0, 0.0, 0.05, 0.4), &generic);
        assert_eq!(q.warnings.len(), 1);
        assert!(q.summary.starts_with("Do not trust this mask without a look: the brain measures 547 ml"), "{}", q.summary);
        let calibrated = QualityBounds { max_unsure_share: Some(0.2), air_share: Some([0.35, 0.7]), ..generic };
        let q = assess(signals(1500.0, 0.0, 0.1, 0.9), &QualityBounds { air_share: Some([0.0, 0.82]), ..generic });
        assert!(q.warnings[0].contains("90% air, and this model holds on scans of at most 82% air"), "{:?}", q.warnings);
        let q = assess(signals(3973.0, 0.05, 0.6, 0.8), &calibrated);
        assert_eq!(q.warnings.len(), 4, "{:?}", q.warnings);
        assert!(q.warnings[1].contains("5.0%") && q.warnings[2].contains("60%") && q.warnings[3].contains("80% air"), "{:?}", q.warnings);
        assert!(assess(signals(1500.0, 0.0, 0.1, 0.5), &calibrated).trusted());
        let t1_only = QualityBounds { max_core_skewness: Some(0.8), ..generic };
        let t2 = Signals { core_skewness: 1.4, ..signals(1900.0, 0.0, 0.05, 0.4) };
        let q = assess(t2, &t1_only);
        assert_eq!(q.warnings.len(), 1);
        assert!(q.warnings[0].contains("skewness 1.40, at most 0.80") && q.warnings[0].contains("T2-weighted"), "{:?}", q.warnings);
        assert!(assess(t2, &generic).trusted(), "HD-BET, trained on T2 too, has no such bound");
        let mirrored = QualityBounds { min_mirror_dice: Some(0.975), ..generic };
        let lopsided = Signals { mirror_dice: Some(0.95), ..signals(1500.0, 0.0, 0.05, 0.4) };
        let q = assess(lopsided, &mirrored);
        assert!(q.warnings.len() == 1 && q.warnings[0].contains("Dice 0.950 only (at least 0.975"), "{:?}", q.warnings);
        assert!(assess(lopsided, &generic).trusted(), "no calibrated bound: measured, not judged");
        assert!(assess(lopsided, &generic).summary.contains("mirror Dice 0.950"));
        let unchecked = assess(signals(1500.0, 0.0, 0.05, 0.4), &mirrored);
        assert!(unchecked.trusted() && !unchecked.summary.contains("mirror"), "no mirror run: nothing to judge");
    }
}
