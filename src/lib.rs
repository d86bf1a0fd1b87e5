//! bedside: 3D medical-image segmentation that runs in the browser.
//!
//! One module per capability. The native CLI (`src/main.rs`) and the web
//! build (`web`) are thin layers over the same library code.

pub mod compress;
pub mod distill;
pub mod import;
pub mod inference;
pub mod kernels;
pub mod lora;
pub mod metrics;
pub mod model;
pub mod tucker;
pub mod volume;

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;

#[cfg(target_arch = "wasm32")]
pub mod web;
