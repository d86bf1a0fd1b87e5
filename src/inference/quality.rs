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
//!   intensities, and that is where they fail.
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

/// The signals, measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    pub foreground_ml: f64,
    pub border_share: f64,
    pub unsure_share: f64,
    pub air_share: f64,
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
    let signals = format!(
        "brain {:.0} ml, {:.2}% of the mask on the edge of the scan, unsure of {:.0}%, {:.0}% air",
        s.foreground_ml,
        100.0 * s.border_share,
        100.0 * s.unsure_share,
        100.0 * s.air_share
    );
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
        Signals { foreground_ml: ml, border_share: border, unsure_share: unsure, air_share: air }
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
    }
}
