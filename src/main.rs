//! `bedside` command-line tool: conversion, batch segmentation, evaluation and
//! benchmarks, on the same library the browser build uses.

use std::path::PathBuf;
use std::process::ExitCode;

use bedside::cli::commands;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bedside", version, about = "3D medical-image segmentation workbench")]
struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shape, spacing, affine, datatype, orientation and intensity statistics of a NIfTI volume.
    Info { volume: PathBuf },
    /// Segment a volume and write the mask (in the input's grid) as NIfTI.
    Segment {
        volume: PathBuf,
        /// Model package folder, or the name of one under ./models.
        #[arg(long)]
        model: String,
        #[arg(long)]
        out: PathBuf,
        /// cpu (Burn flex) or wgpu.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Test-time mirroring (8 passes per window).
        #[arg(long)]
        tta: bool,
        /// Average every ensemble member the package lists (HD-BET: all 5 folds, 5× slower).
        #[arg(long)]
        ensemble: bool,
    },
    /// Dice coefficient between the foregrounds (> 0) of two volumes on the same grid.
    Dice { a: PathBuf, b: PathBuf },
    /// Convert HD-BET folds (PyTorch legacy pickle) into a bedside model package:
    /// the first is the default weights, any further ones are its ensemble members.
    ImportHdbet {
        #[arg(required = true)]
        weights: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Milliseconds per stage, per backend.
    Bench {
        volume: PathBuf,
        #[arg(long)]
        model: String,
        /// Comma-separated backends to measure.
        #[arg(long, default_value = "cpu,wgpu")]
        backends: String,
        /// Timed repetitions per backend (after one warm-up).
        #[arg(long, default_value_t = 1)]
        repeat: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { volume } => commands::info(&volume, cli.json),
        Command::Segment { volume, model, out, backend, tta, ensemble } => {
            commands::segment(&volume, &model, &out, &backend, tta, ensemble, cli.json)
        }
        Command::Dice { a, b } => commands::dice(&a, &b, cli.json),
        Command::ImportHdbet { weights, out } => commands::import_hdbet(&weights, &out, cli.json),
        Command::Bench { volume, model, backends, repeat } => {
            commands::bench(&volume, &model, &backends, repeat, cli.json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bedside: {}", e.0);
            ExitCode::FAILURE
        }
    }
}
