//! The native command line: `bedside info|segment|dice|import-hdbet|bench|bench-teach|distill|evaluate|catalog|compress|pareto|tucker|lora`.
//! Each command prints human text, or JSON with `--json`, and fails with a
//! clear message and a non-zero exit status.

pub mod commands;
pub mod compress;
pub mod input;
mod kernel_file;
pub mod lora;
pub mod teach;
pub mod train;

/// An error to print for the user, then exit non-zero.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}
