//! The safety-margin verdict: does a model stay within `margin` of its
//! original on every label? A compressed model PASSes when each label's Dice
//! drop (1 − Dice against the original's mask) is at most the margin, so the
//! label that dropped most decides. One judge for `bedside pareto`, the
//! page's Compress verdict, its Pareto view and recovery, so all of them
//! judge alike; the page only shows what this returns.

use serde::{Deserialize, Serialize};

use crate::metrics::{worst_label, LabelDice};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The margin judged against.
    pub margin: f64,
    /// The label with the lowest Dice against the original ("" with no
    /// labels), that Dice, and its drop `1 − Dice`.
    pub worst_label: String,
    pub worst_dice: f64,
    pub worst_drop: f64,
    /// Every label's drop is within the margin. Never for a margin that is
    /// not a number (an emptied input), nor for a Dice that is not.
    pub passes: bool,
}

/// Judges per-label Dice against the original at `margin`.
pub fn judge(dice: &[LabelDice], margin: f64) -> Verdict {
    let (label, worst_dice) = worst_label(dice).map_or((String::new(), 1.0), |l| (l.name.clone(), l.dice));
    let worst_drop = 1.0 - worst_dice;
    Verdict { margin, worst_label: label, worst_dice, worst_drop, passes: margin.is_finite() && worst_drop <= margin }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(dice: &[f64]) -> Vec<LabelDice> {
        dice.iter().enumerate().map(|(i, &d)| LabelDice { value: i as u8 + 1, name: format!("l{}", i + 1), dice: d }).collect()
    }

    #[test]
    fn the_label_that_dropped_most_decides() {
        let v = judge(&labels(&[0.99, 0.95, 0.97]), 0.04);
        assert_eq!(v.worst_label, "l2");
        assert!((v.worst_drop - 0.05).abs() < 1e-12 && v.worst_dice == 0.95);
        assert!(!v.passes, "0.05 > 0.04");
        assert!(judge(&labels(&[0.875, 0.75]), 0.25).passes, "a drop equal to the margin passes");
        // Ties go to the first label.
        assert_eq!(judge(&labels(&[0.9, 0.9]), 0.5).worst_label, "l1");
    }

    #[test]
    fn no_number_never_passes() {
        assert!(!judge(&labels(&[1.0]), f64::NAN).passes, "an emptied margin input");
        assert!(!judge(&labels(&[1.0]), -0.1).passes);
        assert!(!judge(&labels(&[f64::NAN]), 0.5).passes, "a Dice that is not a number");
        // No labels: nothing dropped.
        let v = judge(&[], 0.0);
        assert!(v.passes && v.worst_label.is_empty() && v.worst_dice == 1.0);
    }
}
