//! Importing published weights into bedside model packages.

pub mod hdbet;
pub mod pytorch;
