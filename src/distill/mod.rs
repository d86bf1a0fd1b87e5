//! Knowledge distillation: training small students from a teacher's outputs.
//!
//! Being built (issue 3). So far: the losses, and augmentation that keeps the
//! teacher's cached outputs aligned with the image.

pub mod augment;
pub mod losses;
