//! Model families, and the bedside model package that carries one.
//!
//! A package is a folder with `model.json` (the [`Manifest`]) and
//! `weights.safetensors`. The family named in the manifest builds the network
//! from its hyperparameters; the weights are then loaded by tensor name.

pub mod catalog;
pub mod conv;
pub mod hdbet;
pub mod manifest;
pub mod package;
pub mod taps;
pub mod transfer;
pub mod unet3d;
pub mod upsample;

pub use manifest::{Code, Label, LabelCode, Manifest};
pub use package::{Model, ModelError, Network};
