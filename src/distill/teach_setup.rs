//! The teach room's setup: what a lecturer chooses (teacher, student preset,
//! seed, T, α, learning rate, feature weight, steps), kept in the page's URL
//! hash so that a link restores it, and turned into the recipe that
//! `bedside distill` runs natively.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::augment::AugmentConfig;
use super::config::{DistillConfig, LossWeights, TrainingVolume};
use crate::model::unet3d::Unet3dConfig;
use crate::model::Manifest;

/// A student the room can train: a unet3d shape, the patch it learns on and
/// the batch.
#[derive(Debug, Clone, Serialize)]
pub struct Preset {
    pub id: &'static str,
    pub name: &'static str,
    pub note: &'static str,
    pub base_filters: usize,
    pub depth: usize,
    pub max_filters: Option<usize>,
    /// Patch side (voxels of the teacher's grid; a multiple of 16).
    pub patch: usize,
    pub batch: usize,
}

/// The students a lecture can pick. "lecture" is sized to learn within a
/// teaching session on one CPU core of a browser: a shallow, narrow unet3d
/// on small patches (see README, Teach room, for its measured speed).
pub const PRESETS: [Preset; 3] = [
    Preset {
        id: "lecture",
        name: "Lecture (fast, 12 k parameters)",
        note: "narrow and three levels deep, 32³ patches: learns within minutes in a browser",
        base_filters: 4,
        depth: 3,
        max_filters: Some(8),
        patch: 32,
        batch: 2,
    },
    Preset {
        id: "student-s",
        name: "Student S's shape (38 k parameters)",
        note: "the shape of the shipped student-s, 64³ patches",
        base_filters: 4,
        depth: 4,
        max_filters: Some(8),
        patch: 64,
        batch: 1,
    },
    Preset {
        id: "student-m",
        name: "Student M's shape (0.5 M parameters)",
        note: "the shape of the shipped student-m, 64³ patches; slow in a browser",
        base_filters: 4,
        depth: 4,
        max_filters: None,
        patch: 64,
        batch: 1,
    },
];

impl Preset {
    pub fn find(id: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.id == id)
    }

    pub fn unet3d(&self, num_classes: usize) -> Unet3dConfig {
        Unet3dConfig::new()
            .with_base_filters(self.base_filters)
            .with_depth(self.depth)
            .with_max_filters(self.max_filters)
            .with_num_classes(num_classes)
            // As the shipped students: windows and whole volumes then see the same statistics.
            .with_instance_norm(false)
    }
}

/// What the lecturer set. Field names are the URL hash's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeachSetup {
    pub teacher: String,
    pub student: String,
    pub seed: u64,
    /// Hinton's temperature T.
    #[serde(rename = "T")]
    pub temperature: f64,
    /// Weight of the soft term α·T²·KL; the hard labels get 1 − α.
    pub alpha: f64,
    pub lr: f64,
    /// Weight of the multi-scale feature terms (bottleneck; encoder and
    /// decoder get half, MTMS's 0.1 : 0.2 : 0.1).
    pub feature: f64,
    /// Steps the run is planned for (the learning rate's cosine decay spans them).
    pub steps: usize,
    /// Hides the advanced controls (a lecture hall's projector).
    #[serde(default)]
    pub classroom: bool,
}

impl Default for TeachSetup {
    fn default() -> Self {
        Self {
            teacher: "student-s".into(),
            student: "lecture".into(),
            seed: 42,
            temperature: 4.0,
            alpha: 0.7,
            lr: 3e-3,
            feature: 0.2,
            steps: 300,
            classroom: false,
        }
    }
}

/// Ranges the room accepts: wide enough to show what goes wrong at the
/// extremes, narrow enough that a typo cannot hang the tab.
const T_RANGE: (f64, f64) = (0.5, 20.0);
const LR_RANGE: (f64, f64) = (1e-5, 0.1);
const MAX_STEPS: usize = 100_000;

impl TeachSetup {
    /// Reads a URL hash (`#teacher=hd-bet&student=lecture&T=4…`, with or
    /// without the `#`). Keys left out keep their defaults; an unknown key or
    /// a bad value is refused with a message that names it.
    pub fn from_hash(hash: &str) -> Result<Self, String> {
        let mut s = Self::default();
        for pair in hash.trim_start_matches('#').split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| value.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or(format!("{key}={value}: {what} expected"));
            match key {
                "teacher" => s.teacher = value.to_string(),
                "student" => s.student = value.to_string(),
                "seed" => s.seed = value.parse().map_err(|_| format!("seed={value}: a whole number expected"))?,
                "T" => s.temperature = number("a temperature")?,
                "alpha" => s.alpha = number("a weight between 0 and 1")?,
                "lr" => s.lr = number("a learning rate")?,
                "feature" => s.feature = number("a weight")?,
                "steps" => s.steps = value.parse().map_err(|_| format!("steps={value}: a whole number expected"))?,
                "classroom" => s.classroom = matches!(value, "1" | "true" | ""),
                other => return Err(format!("unknown setting `{other}` in the link")),
            }
        }
        s.check()?;
        Ok(s)
    }

    /// The URL hash (without `#`), every key written, so a link is complete.
    pub fn to_hash(&self) -> String {
        let mut h = format!(
            "teacher={}&student={}&seed={}&T={}&alpha={}&lr={}&feature={}&steps={}",
            self.teacher, self.student, self.seed, self.temperature, self.alpha, self.lr, self.feature, self.steps
        );
        if self.classroom {
            h.push_str("&classroom=1");
        }
        h
    }

    pub fn check(&self) -> Result<(), String> {
        let id_ok = |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !id_ok(&self.teacher) {
            return Err(format!("teacher `{}`: a model id expected", self.teacher));
        }
        if Preset::find(&self.student).is_none() {
            let ids: Vec<_> = PRESETS.iter().map(|p| p.id).collect();
            return Err(format!("student `{}`: one of {} expected", self.student, ids.join(", ")));
        }
        if !(T_RANGE.0..=T_RANGE.1).contains(&self.temperature) {
            return Err(format!("T = {}: between {} and {} expected", self.temperature, T_RANGE.0, T_RANGE.1));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("alpha = {}: between 0 and 1 expected", self.alpha));
        }
        if !(LR_RANGE.0..=LR_RANGE.1).contains(&self.lr) {
            return Err(format!("lr = {}: between {} and {} expected", self.lr, LR_RANGE.0, LR_RANGE.1));
        }
        if !(0.0..=10.0).contains(&self.feature) {
            return Err(format!("feature = {}: between 0 and 10 expected", self.feature));
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(format!("steps = {}: between 1 and {MAX_STEPS} expected", self.steps));
        }
        Ok(())
    }

    pub fn preset(&self) -> &'static Preset {
        Preset::find(&self.student).expect("checked")
    }

    /// The KD student's loss: Hinton's α·T²·KL plus (1 − α) of the hard
    /// labels (half cross-entropy, half Dice), and the feature terms.
    pub fn kd_weights(&self) -> LossWeights {
        let hard = 1.0 - self.alpha;
        LossWeights {
            cross_entropy: 0.5 * hard,
            dice: 0.5 * hard,
            kd: self.alpha,
            temperature: self.temperature,
            encoder: 0.5 * self.feature,
            bottleneck: self.feature,
            decoder: 0.5 * self.feature,
            ..LossWeights::default()
        }
    }

    /// The twin's: the hard labels only, at full weight.
    pub fn scratch_weights(&self) -> LossWeights {
        LossWeights { cross_entropy: 0.5, dice: 0.5, kd: 0.0, encoder: 0.0, bottleneck: 0.0, decoder: 0.0, ..self.kd_weights() }
    }

    /// The recipe `bedside distill` runs to train the KD student (or, with
    /// `scratch`, its twin) as the room does: same student, patches, seed,
    /// losses and held-out share; `volume` and `mask` as the recipe should
    /// name them (e.g. `${BEDSIDE_DATA}/colin27/ch2.nii.gz`).
    pub fn recipe(&self, teacher: &Manifest, volume: &str, mask: Option<&str>, scratch: bool, hold_out: f64) -> DistillConfig {
        let p = self.preset();
        let which = if scratch { "scratch" } else { "kd" };
        DistillConfig {
            id: format!("teach-{}-{which}", p.id),
            name: format!("{} ({}, teach room)", p.name, if scratch { "hard labels only" } else { "KD" }),
            teacher: PathBuf::from(format!("../{}", teacher.id)),
            student: p.unet3d(teacher.labels.len().max(2)),
            start_from: None,
            volumes: vec![TrainingVolume { image: volume.to_string(), mask: mask.map(str::to_string) }],
            patch: [p.patch; 3],
            window: Some(teacher.preprocessing.patch_size),
            axis_order: teacher.preprocessing.axis_order.clone(),
            normalisation: teacher.preprocessing.normalisation.clone(),
            postprocessing: None,
            batch: p.batch,
            steps: self.steps,
            learning_rate: self.lr,
            seed: self.seed,
            average_decay: None,
            foreground_fraction: 0.67,
            loss: if scratch { self.scratch_weights() } else { self.kd_weights() },
            augment: AugmentConfig::none(),
            checkpoint_every: self.steps,
            hold_out: Some(hold_out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_hash_round_trips_and_bad_links_are_refused() {
        let s = TeachSetup {
            teacher: "hd-bet".into(),
            student: "student-s".into(),
            seed: 7,
            temperature: 2.5,
            alpha: 0.25,
            lr: 0.0015,
            feature: 0.0,
            steps: 1234,
            classroom: true,
        };
        let hash = s.to_hash();
        assert_eq!(hash, "teacher=hd-bet&student=student-s&seed=7&T=2.5&alpha=0.25&lr=0.0015&feature=0&steps=1234&classroom=1");
        assert_eq!(TeachSetup::from_hash(&format!("#{hash}")).unwrap(), s);
        assert_eq!(TeachSetup::from_hash("").unwrap(), TeachSetup::default());
        assert_eq!(TeachSetup::from_hash("#T=8").unwrap().temperature, 8.0);
        for bad in ["T=0", "T=nan", "alpha=1.5", "lr=1", "steps=0", "student=huge", "teacher=../x", "seed=-1", "colour=red"] {
            assert!(TeachSetup::from_hash(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_twin_learns_from_hard_labels_only_and_the_kd_student_follows_hinton() {
        let s = TeachSetup { alpha: 0.75, temperature: 3.0, feature: 0.2, ..TeachSetup::default() };
        let kd = s.kd_weights();
        assert_eq!((kd.kd, kd.temperature, kd.cross_entropy + kd.dice), (0.75, 3.0, 0.25));
        assert_eq!((kd.encoder, kd.bottleneck, kd.decoder), (0.1, 0.2, 0.1));
        let twin = s.scratch_weights();
        assert!(twin.kd == 0.0 && !twin.uses_features() && twin.cross_entropy + twin.dice == 1.0);
    }
}
