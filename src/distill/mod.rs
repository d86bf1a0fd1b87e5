//! Knowledge distillation: training small students from a teacher's outputs.
//!
//! - [`config`]: the run as a file (teacher, student, volumes, losses, seed);
//! - [`teacher`]: the teacher's outputs, computed once per volume and cached;
//! - [`dataset`]: volumes on the teacher's grid and random patches from them;
//! - [`augment`]: augmentation that keeps the cached outputs aligned;
//! - [`losses`]: hard, response-KD and contrastive feature-KD losses;
//! - [`engine`]: one training step on any device and target (CLI and browser);
//! - [`trainer`] (native): the loop on disk, with checkpoints and a loss log;
//! - [`average`]: a moving average of the student's weights;
//! - [`recover`]: a compressed model trained further from its original, in memory;
//! - [`record`]: a trained package's `model.json` and training record;
//! - [`teach_setup`], [`lockstep`]: the teach room's setup (its URL state,
//!   presets, recipe) and its KD student and hard-label twin in lock-step;
//! - [`run`] (native): a whole run, from config file to model package.

pub mod augment;
pub mod average;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod fixtures;
pub mod lockstep;
pub mod losses;
pub mod record;
pub mod recover;
#[cfg(not(target_arch = "wasm32"))]
pub mod run;
pub mod teach_setup;
pub mod teacher;
#[cfg(not(target_arch = "wasm32"))]
pub mod trainer;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("distillation config: {0}")]
    Config(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("volume: {0}")]
    Volume(String),
    #[error("teacher cache or checkpoint: {0}")]
    Cache(String),
    #[error("model: {0}")]
    Model(String),
    #[error("training diverged at step {0} (the loss is not finite); lower learning_rate")]
    Diverged(usize),
    /// The device failed under a step (a lost GPU, or one out of memory).
    #[error("{0}")]
    Device(String),
}

impl DistillError {
    pub fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        DistillError::Io { path: path.display().to_string(), message: e.to_string() }
    }

    /// A teacher cache or checkpoint file that could not be read or written.
    pub fn cache(path: &Path, e: impl std::fmt::Display) -> Self {
        DistillError::Cache(format!("{}: {e}", path.display()))
    }
}
