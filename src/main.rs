//! `bedside` command-line tool: conversion, batch segmentation, evaluation and
//! benchmarks, on the same library the browser build uses.

use std::path::PathBuf;
use std::process::ExitCode;

use bedside::cli::{commands, compress, lora, teach, train, CliError};
use bedside::inference::pipeline::{SegmentOptions, Windowing};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "bedside", version, about = "3D medical-image segmentation workbench")]
struct Cli {
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// The CPU convolution: burn (flex's im2col + gemm; the native default for inference), portable
    /// (Winograd F(2,3) for the 3³ layers where it pays and the direct channels-last kernel for
    /// the rest, as the browser runs them with SIMD lanes; the default for training, whose
    /// gradients then run on the same kernels) or portable-direct (the direct kernel alone).
    /// Benchmarks and the kernel agreement tests compare them.
    #[arg(long, global = true)]
    cpu_conv: Option<String>,
    /// The convolution on a wgpu device: burn (Burn's own direct kernel; the default) or tiled
    /// (bedside's tiled implicit-GEMM kernel for the layers of 16 or more output channels; not yet
    /// measured on a real GPU).
    #[arg(long, global = true)]
    gpu_conv: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Shape (with the number of volumes of a 4D series and its time step), spacing, affine,
    /// datatype, orientation and intensity statistics of a NIfTI file, a DICOM file or a folder
    /// of DICOM files (one series, as dcm2niix would convert it).
    Info {
        volume: PathBuf,
        /// Which volume of a 4D series the statistics describe, counting from 0.
        #[arg(long = "volume", default_value_t = 0)]
        index: usize,
        /// Which DICOM series of a folder holding several: its number in the list the
        /// refusal prints (from 1), or its SeriesInstanceUID.
        #[arg(long)]
        series: Option<String>,
    },
    /// Segment a volume and write the mask (in the input's grid) as NIfTI.
    Segment {
        volume: PathBuf,
        /// Which volume of a 4D series to segment, counting from 0 (the first by default).
        #[arg(long = "volume", default_value_t = 0)]
        index: usize,
        /// Which DICOM series of a folder holding several (its number in the list, from 1, or its UID).
        #[arg(long)]
        series: Option<String>,
        /// Model package folder, or the name of one under ./models.
        #[arg(long)]
        model: String,
        /// The mask as a NIfTI file (labels on the image's grid).
        #[arg(long, required_unless_present = "out_seg")]
        out: Option<PathBuf>,
        /// The mask as a DICOM Segmentation object referencing the source series (DICOM input only).
        #[arg(long)]
        out_seg: Option<PathBuf>,
        /// cpu (Burn flex) or wgpu.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Test-time mirroring (8 passes per window).
        #[arg(long)]
        tta: bool,
        /// Also segment the scan's left-right mirror and report the two masks' Dice as a
        /// quality signal (a second run: twice the time).
        #[arg(long)]
        mirror_check: bool,
        /// One pass over the whole padded volume whatever it costs in memory (CPU only). By default
        /// a package that asks for it (HD-BET, as its own code runs) gets one where it fits, and
        /// windows of its patch size otherwise.
        #[arg(long, conflicts_with = "windows")]
        whole_volume: bool,
        /// Windows of the package's patch size even where it asks for one pass: how the windows'
        /// agreement with the single pass is measured.
        #[arg(long)]
        windows: bool,
        /// Average every ensemble member the package lists (HD-BET: all 5 folds, 5× slower).
        #[arg(long)]
        ensemble: bool,
        /// A LoRA adapter folder trained on this model, merged in before the run.
        #[arg(long)]
        adapter: Option<PathBuf>,
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
    /// Train a student from a teacher (knowledge distillation) as a config file describes;
    /// writes a model package, losses.csv and a checkpoint to --out.
    Distill {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Teacher-output cache (default ~/.cache/bedside/teacher).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Continue from the checkpoint in --out (same config).
        #[arg(long)]
        resume: bool,
        /// Training backend: cpu (flex) or wgpu (a GPU through Vulkan/Metal/DX12).
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Dice and HD95 of a model per volume, against reference masks and/or another model.
    /// Volumes are given as IMAGE or IMAGE:REFERENCE_MASK.
    Evaluate {
        #[arg(long)]
        model: String,
        #[arg(required = true)]
        volumes: Vec<String>,
        /// Which volume of each 4D image to segment, counting from 0 (the first by default).
        #[arg(long = "volume", default_value_t = 0)]
        index: usize,
        /// Which DICOM series of each folder holding several (its number in the list, from 1, or its UID).
        #[arg(long)]
        series: Option<String>,
        /// A second model to compare with (e.g. the teacher).
        #[arg(long)]
        against: Option<String>,
        /// A LoRA adapter folder trained on --model, merged in before the runs.
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Write the rows against reference masks into the model's model.json.
        #[arg(long)]
        record: bool,
        /// Also segment each scan's left-right mirror (the quality signal's mirror Dice; twice the time).
        #[arg(long)]
        mirror_check: bool,
    },
    /// Write models/index.json (the page's model list and cards) from the packages in a folder.
    Catalog {
        #[arg(default_value = "models")]
        models_dir: PathBuf,
        /// Only check that index.json is up to date.
        #[arg(long)]
        check: bool,
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
    /// The teach room's run natively: ms per lock-step step of each student preset and the
    /// held-out Dice of the KD student and its twin against the teacher as they learn.
    BenchTeach {
        volume: PathBuf,
        /// Teacher package folder, or the name of one under ./models.
        #[arg(long, default_value = "hd-bet")]
        teacher: String,
        /// Comma-separated student presets (lecture, student-s, student-m).
        #[arg(long, default_value = "lecture")]
        presets: String,
        #[arg(long, default_value = "cpu")]
        backend: String,
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Evaluate (full-volume forward of both students) every N steps.
        #[arg(long, default_value_t = 25)]
        eval_every: usize,
        /// Stop once the KD student's held-out Dice reaches this.
        #[arg(long)]
        until_dice: Option<f64>,
        /// The rest of the setup as the room's URL hash (e.g. "T=4&alpha=0.7&lr=0.003&seed=42").
        #[arg(long, default_value = "")]
        setup: String,
    },
    /// Replace every convolution of a model package by its Tucker-2 (three smaller
    /// convolutions), at ranks one rule chooses; writes a package and a per-layer report.
    Compress {
        /// Model package folder, or the name of one under ./models.
        model: String,
        /// Ranks ceil(channels x F) per mode (Weber et al.).
        #[arg(long)]
        rank_factor: Option<f64>,
        /// With --rank-factor: no rank below this (capped at the channels).
        #[arg(long, default_value_t = 1)]
        min_rank: usize,
        /// Ranks keeping this fraction (0-1] of each unfolding's energy.
        #[arg(long)]
        energy: Option<f64>,
        /// Ranks by EVBMF (Nakajima et al. 2013; Kim et al. 2016).
        #[arg(long)]
        evbmf: bool,
        /// The whole model at this fraction of its FLOPs (greedy, least error per saved FLOP).
        #[arg(long)]
        budget_flops: Option<f64>,
        /// The whole model at this fraction of its parameters.
        #[arg(long)]
        budget_params: Option<f64>,
        #[arg(long)]
        out: PathBuf,
        /// Per-layer report (name, shape, ranks, rel_error, params and FLOPs) as JSON.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// The Pareto view: the model and its Tucker-2 at each rank factor, timed on one backend
    /// and compared with the original per label; names the fastest within the margin.
    Pareto {
        /// Model package folder, or the name of one under ./models.
        model: String,
        /// IMAGE or IMAGE:REFERENCE_MASK.
        volume: String,
        /// Comma-separated rank factors in (0, 1].
        #[arg(long, default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9")]
        factors: String,
        #[arg(long, default_value_t = 1)]
        min_rank: usize,
        /// Largest Dice drop per label against the original that passes.
        #[arg(long, default_value_t = 0.01)]
        margin: f64,
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// One untimed run of each model first (default: on wgpu, where the first run compiles kernels).
        #[arg(long)]
        warmup: Option<bool>,
    },
    /// Tucker-2 (HOOI) of one kernel [out, in, k...]: relative error, sweeps and milliseconds.
    Tucker {
        /// KERNEL.npy, or WEIGHTS.safetensors:TENSOR_NAME.
        kernel: String,
        /// R_OUT,R_IN.
        #[arg(long)]
        ranks: String,
    },
    /// LoRA adapters on a model's convolutions.
    #[command(subcommand)]
    Lora(LoraCommand),
}

#[derive(Subcommand)]
enum LoraCommand {
    /// Train a LoRA adapter for a model on labelled volumes (Dice + cross-entropy on the
    /// masks; the base weights stay frozen); writes adapter_config.json,
    /// adapter_model.safetensors and losses.csv to --out.
    Train {
        #[arg(long)]
        model: String,
        /// A labelled volume as IMAGE:MASK (the mask on the image's grid); repeat for more.
        #[arg(long = "data", required = true)]
        data: Vec<String>,
        /// A held-out labelled volume, IMAGE:MASK, for the validation Dice before and after.
        #[arg(long)]
        val: Option<String>,
        /// The adapters' rank. The defaults (r 1, α 2, the decoder) are the measured best within
        /// 2% of student-m's parameters (README, "Adapt on PD, test on T2, and the reverse").
        #[arg(long, default_value_t = 1)]
        rank: usize,
        #[arg(long, default_value_t = 2.0)]
        alpha: f32,
        /// all, encoder, bottleneck, decoder, or layer-name patterns (`*` wildcards), comma-separated.
        #[arg(long, default_value = "decoder")]
        targets: String,
        #[arg(long, default_value_t = 100)]
        steps: usize,
        #[arg(long = "lr", default_value_t = 2e-3)]
        learning_rate: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// What learns: adapters, adapters-norms-biases, norms-biases, or full (writes a package).
        #[arg(long, default_value = "adapters")]
        trainables: String,
        /// A teacher (e.g. hd-bet) whose soft outputs on every volume add a KD term (T²·KL, T = 4).
        #[arg(long)]
        teacher: Option<String>,
        /// The KD term's weight (with --teacher).
        #[arg(long, default_value_t = 1.0)]
        kd: f64,
        /// A volume without a mask, labelled by the teacher; repeat for more (needs --teacher).
        #[arg(long)]
        unlabelled: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fold an adapter into its base model: a plain package that computes the same.
    Merge {
        #[arg(long)]
        model: String,
        #[arg(long)]
        adapter: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Applies a kernel choice given by name, if one was given.
fn choose<T>(name: &Option<String>, parse: fn(&str) -> Result<T, String>, set: fn(T)) -> Result<(), String> {
    if let Some(name) = name {
        set(parse(name)?);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let chosen = choose(&cli.cpu_conv, bedside::kernels::CpuConv::parse, bedside::kernels::set_cpu_conv)
        .and_then(|()| choose(&cli.gpu_conv, bedside::kernels::GpuConv::parse, bedside::kernels::set_gpu_conv));
    if let Err(e) = chosen {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Info { volume, index, series } => {
            commands::info(&volume, commands::Pick { volume: index, series: series.as_deref() }, cli.json)
        }
        Command::Segment { volume, index, series, model, out, out_seg, backend, tta, mirror_check, whole_volume, windows, ensemble, adapter } => {
            let windowing = match (whole_volume, windows) {
                (true, _) => Windowing::WholeVolume,
                (_, true) => Windowing::Windows,
                _ => Windowing::Auto,
            };
            let options = SegmentOptions { mirror: tta, mirror_check, windowing, volume: index, ..SegmentOptions::default() };
            commands::segment(&volume, &model, adapter.as_deref(), out.as_deref(), out_seg.as_deref(), &backend, options, series.as_deref(), ensemble, cli.json)
        }
        Command::Dice { a, b } => commands::dice(&a, &b, cli.json),
        Command::ImportHdbet { weights, out } => commands::import_hdbet(&weights, &out, cli.json),
        Command::Distill { config, out, cache, resume, backend } => {
            train::distill(&config, &out, cache.as_deref(), resume, &backend, cli.json)
        }
        Command::Evaluate { model, volumes, index, series, against, adapter, backend, record, mirror_check } => {
            let volumes: Vec<train::EvalVolume> = volumes
                .iter()
                .map(|v| match v.split_once(':') {
                    Some((image, reference)) => train::EvalVolume { image: image.into(), reference: Some(reference.into()) },
                    None => train::EvalVolume { image: v.into(), reference: None },
                })
                .collect();
            train::evaluate(&model, adapter.as_deref(), &volumes, commands::Pick { volume: index, series: series.as_deref() }, against.as_deref(), &backend, record, mirror_check, cli.json)
        }
        Command::Catalog { models_dir, check } => commands::catalog(&models_dir, check, cli.json),
        Command::Bench { volume, model, backends, repeat } => {
            commands::bench(&volume, &model, &backends, repeat, cli.json)
        }
        Command::BenchTeach { volume, teacher, presets, backend, steps, eval_every, until_dice, setup } => {
            match bedside::distill::teach_setup::TeachSetup::from_hash(&setup) {
                Ok(setup) => teach::bench_teach(
                    &teach::BenchTeach { volume: &volume, teacher: &teacher, presets: &presets, backend: &backend, steps, eval_every, until_dice, setup },
                    cli.json,
                ),
                Err(e) => Err(CliError(e)),
            }
        }
        Command::Compress { model, rank_factor, min_rank, energy, evbmf, budget_flops, budget_params, out, report } => {
            let rule = compress::RuleOptions { rank_factor, min_rank, energy, evbmf, budget_flops, budget_params };
            compress::compress(&model, &rule, &out, report.as_deref(), cli.json)
        }
        Command::Pareto { model, volume, factors, min_rank, margin, backend, warmup } => {
            let (image, reference) = match volume.split_once(':') {
                Some((i, r)) => (PathBuf::from(i), Some(PathBuf::from(r))),
                None => (PathBuf::from(&volume), None),
            };
            compress::pareto(&model, &image, reference.as_deref(), &factors, min_rank, margin, &backend, warmup, cli.json)
        }
        Command::Tucker { kernel, ranks } => compress::tucker(&kernel, &ranks, cli.json),
        Command::Lora(LoraCommand::Merge { model, adapter, out }) => lora::merge(&model, &adapter, &out, cli.json),
        Command::Lora(LoraCommand::Train { model, data, val, rank, alpha, targets, steps, learning_rate, seed, trainables, teacher, kd, unlabelled, out }) => {
            let trainables = match bedside::lora::Trainables::parse(&trainables) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("bedside: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let args = lora::TrainArgs {
                model: &model,
                data: &data,
                val: val.as_deref(),
                teacher: teacher.as_deref(),
                unlabelled: &unlabelled,
                lora: bedside::lora::LoraConfig { rank, alpha, targets },
                options: bedside::lora::train::TrainOptions { steps, learning_rate, seed, trainables, kd },
                out: &out,
            };
            lora::train(&args, cli.json)
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
