//! Knowledge distillation: training small students from a teacher's outputs.
//!
//! This module is being built (issue 3). So far: the losses.

pub mod losses;
