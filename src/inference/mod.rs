//! From a volume and a model to a label volume in the volume's own grid:
//! preprocessing, sliding-window inference, postprocessing, with timings.
//!
//! Everything is `async` because on WebGPU in the browser every readback must
//! be awaited; natively the same code runs under `pollster::block_on`.

pub mod backend;
pub mod clock;
pub mod components;
pub mod normalise;
pub mod pipeline;
pub mod preprocess;
pub mod quality;
pub mod sliding_window;

pub use backend::{Backend, BackendError};
pub use pipeline::{segment, LabelVolume, SegmentError, SegmentOptions, Segmentation, Timings};
