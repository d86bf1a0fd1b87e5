//! The CLI commands, each a function from arguments to printed output.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::json;

pub use super::input::{load, Pick};
use super::CliError;
use crate::import::hdbet::import_hdbet_files;
use crate::inference::pipeline::{self, segment_bytes, SegmentOptions, Segmentation, Windowing};
use crate::inference::backend::OpenedDevice;
use crate::inference::{backend, Backend};
use crate::metrics::dice as dice_score;
use crate::model::Model;
use crate::volume::dicom_seg::{write_seg, Algorithm};
use crate::volume::{self, Volume};

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError(format!("cannot read {}: {e}", path.display())))
}

/// The image at `path` ([`load`]): the first volume of a 4D NIfTI file, or
/// the only series of DICOM files.
pub(super) fn read_volume(path: &Path) -> Result<Volume, CliError> {
    Ok(load(path, Pick::default())?.0)
}

pub(super) fn print(value: serde_json::Value, json: bool, human: impl FnOnce() -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON values serialise"));
    } else {
        println!("{}", human());
    }
}

/// What nibabel shows of a file (shape with its 4th dimension, the time
/// step of a series, affine, datatype, orientation), and the intensity
/// statistics of the volume `pick` names (the one `segment` would take). Of
/// DICOM, what nibabel shows of dcm2niix's NIfTI, and the series read.
pub fn info(path: &Path, pick: Pick, json: bool) -> Result<(), CliError> {
    let (v, series) = load(path, pick)?;
    let index = pick.volume;
    let stats = v.stats();
    let h = &v.header;
    let volumes = h.volume_count();
    let value = json!({
        "path": path.display().to_string(),
        "shape": h.shape(),
        "volumes": volumes,
        "volume": index,
        "volume_shape": v.dims,
        "time_step": h.time_step(),
        "time_unit": h.time_step().map(|_| h.time_unit()),
        "spacing": v.spacing,
        "affine": v.affine,
        "datatype": v.datatype_name(),
        "orientation": v.orientation(),
        "min": stats.min,
        "max": stats.max,
        "mean": stats.mean,
        "nan_voxels": stats.nan_voxels,
        "dicom_series": series.as_ref().map(|s| json!({
            "number": s.number, "description": s.description, "modality": s.modality, "slices": s.slices,
        })),
    });
    let number = |x: Option<f64>| x.map_or("n/a".to_string(), |x| format!("{x}"));
    print(value, json, || {
        let timing = match h.time_step() {
            Some(step) if volumes > 1 => format!("\n  {volumes} volumes, {step} {} apart; statistics of volume {index}", h.time_unit()),
            _ => String::new(),
        };
        let nan = if stats.nan_voxels > 0 { format!(" ({} NaN voxels left out)", stats.nan_voxels) } else { String::new() };
        let dicom = series.as_ref().map_or(String::new(), |s| format!("\n  DICOM {}", s.line()));
        format!(
            "{}\n  shape {:?}  spacing {:?} mm  {}  {}{timing}{dicom}\n  intensities min {} max {} mean {}{nan}\n  affine {:?}",
            path.display(),
            h.shape(),
            v.spacing,
            v.datatype_name(),
            v.orientation(),
            number(stats.min),
            number(stats.max),
            number(stats.mean.map(|m| (m * 1e4).round() / 1e4)),
            v.affine
        )
    });
    Ok(())
}

/// A model given as a folder, or by name as a folder under `./models`.
pub(super) fn resolve_model_dir(model: &str) -> Result<PathBuf, CliError> {
    let direct = PathBuf::from(model);
    if direct.join("model.json").is_file() {
        return Ok(direct);
    }
    let named = Path::new("models").join(model);
    if named.join("model.json").is_file() {
        return Ok(named);
    }
    Err(CliError(format!(
        "no model package \"{model}\": expected a folder with model.json and weights.safetensors (or ./models/{model})"
    )))
}

pub(super) fn open_device(name: &str) -> Result<OpenedDevice, CliError> {
    let backend = Backend::parse(name)?;
    Ok(pollster::block_on(backend::open_device(backend))?)
}

pub(super) fn load_model(model: &str, ensemble: bool, device: &Device) -> Result<Model, CliError> {
    let dir = resolve_model_dir(model)?;
    Model::load_dir(&dir, ensemble, device).map_err(|e| CliError(format!("{}: {e}", dir.display())))
}

/// Segments an image already read ([`load`]).
pub(super) fn segment_volume(volume: &Volume, model: &Model, opened: &OpenedDevice, options: SegmentOptions) -> Result<Segmentation, CliError> {
    let mut quiet = |_: &str, _: f64| true;
    let options = SegmentOptions { max_buffer_bytes: opened.max_buffer_bytes, ..options };
    Ok(pollster::block_on(pipeline::segment(volume, model, &opened.device, options, &mut quiet))?)
}

/// Reads an image's bytes and segments it, the read timed (the benchmark's way).
pub(super) fn run_segmentation(
    bytes: &[u8],
    model: &Model,
    opened: &OpenedDevice,
    options: SegmentOptions,
) -> Result<(Volume, Segmentation), CliError> {
    let mut quiet = |_: &str, _: f64| true;
    let options = SegmentOptions { max_buffer_bytes: opened.max_buffer_bytes, ..options };
    Ok(pollster::block_on(segment_bytes(bytes, model, &opened.device, options, &mut quiet))?)
}

#[allow(clippy::too_many_arguments)]
pub fn segment(
    path: &Path,
    model: &str,
    adapter: Option<&Path>,
    out: Option<&Path>,
    out_seg: Option<&Path>,
    backend: &str,
    options: SegmentOptions,
    series: Option<&str>,
    ensemble: bool,
    json: bool,
) -> Result<(), CliError> {
    if options.windowing == Windowing::WholeVolume && backend != "cpu" {
        return Err(CliError(format!(
            "--whole-volume runs on the CPU only: on {backend} the device's largest buffer bounds the window"
        )));
    }
    let opened = open_device(backend)?;
    let model = super::lora::load_model_with(model, ensemble, adapter, &opened.device)?;
    let start = crate::inference::clock::now_ms();
    let pick = Pick { volume: options.volume, series };
    let input = super::input::Input::read(path)?;
    // A SEG needs the source series: a NIfTI input is refused before the run, not after it.
    let reference = out_seg.map(|_| input.reference(pick)).transpose()?;
    let (volume, _) = input.volume(pick)?;
    let read = crate::inference::clock::now_ms() - start;
    let mut seg = segment_volume(&volume, &model, &opened, options)?;
    seg.timings_ms.read = read;
    seg.timings_ms.total += read;
    let backend = opened.backend;
    let write = |file: &Path, bytes: Vec<u8>| std::fs::write(file, bytes).map_err(|e| CliError(format!("cannot write {}: {e}", file.display())));
    if let Some(out) = out {
        write(out, volume::write_label_nifti_gz(&volume, &seg.labels)?)?;
    }
    if let (Some(file), Some(reference)) = (out_seg, &reference) {
        let algorithm = Algorithm { name: model.manifest.id.clone(), version: model.weights_digest()? };
        let bytes = write_seg(reference, &seg.labels, volume.dims, &volume.affine, &model.manifest.labels, &algorithm, chrono::Utc::now())
            .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
        write(file, bytes)?;
    }
    let written: Vec<String> = out.iter().chain(out_seg.iter()).map(|p| p.display().to_string()).collect();

    let volumes: serde_json::Map<String, serde_json::Value> =
        seg.label_volumes.iter().map(|l| (l.name.clone(), json!(l.mm3))).collect();
    let value = json!({
        "model": model.manifest.id,
        "lora_adapter": adapter.map(|a| a.display().to_string()),
        "backend": backend.name(),
        "out": out.map(|p| p.display().to_string()),
        "out_seg": out_seg.map(|p| p.display().to_string()),
        "adapter": opened.adapter,
        "windows": seg.windows,
        "networks": model.networks().count(),
        "patch": seg.patch,
        "timings_ms": seg.timings_ms,
        "label_volumes_mm3": volumes,
        "quality": seg.quality,
        "volume": options.volume,
        "non_finite_voxels": seg.non_finite_voxels,
    });
    print(value, json, || {
        let t = &seg.timings_ms;
        format!(
            "wrote {}\n  backend {}  windows {}\n  ms: read {:.0}  preprocess {:.0}  inference {:.0}  postprocess {:.0}{}  total {:.0}\n  {}\n  {}",
            written.join(" and "),
            backend.name(),
            seg.windows,
            t.read,
            t.preprocess,
            t.inference,
            t.postprocess,
            t.mirror_check.map(|ms| format!("  mirror check {ms:.0}")).unwrap_or_default(),
            t.total,
            seg.label_volumes.iter().map(|l| format!("{}: {:.0} mm³", l.name, l.mm3)).collect::<Vec<_>>().join("  "),
            quality_line(&seg.quality)
        ) + &non_finite_line(seg.non_finite_voxels)
    });
    Ok(())
}

/// The note a mask gets when the input had NaN or infinite voxels.
pub(super) fn non_finite_line(voxels: usize) -> String {
    if voxels == 0 {
        String::new()
    } else {
        format!("\n  {voxels} NaN or infinite voxels were segmented as background and left out of the mask")
    }
}

/// The quality signal in one line, with what to do about a warning.
pub(super) fn quality_line(q: &crate::inference::quality::Quality) -> String {
    if q.trusted() {
        format!("quality: {}", q.summary)
    } else {
        format!("WARNING: {} Check it with HD-BET (--model hd-bet).", q.summary)
    }
}

pub fn dice(a: &Path, b: &Path, json: bool) -> Result<(), CliError> {
    let (va, vb) = (read_volume(a)?, read_volume(b)?);
    if va.dims != vb.dims {
        return Err(CliError(format!(
            "the volumes are on different grids: {:?} vs {:?}",
            va.dims, vb.dims
        )));
    }
    let d = dice_score(&va.data, &vb.data);
    print(json!({ "dice": d }), json, || format!("{d:.6}"));
    Ok(())
}

pub fn import_hdbet(weights: &[PathBuf], out: &Path, json: bool) -> Result<(), CliError> {
    let device = Device::flex();
    let model = import_hdbet_files(weights, &device)?;
    model.save_dir(out)?;
    let m = &model.manifest;
    let value = json!({ "out": out.display().to_string(), "params": m.params, "flops_per_patch": m.flops_per_patch, "source_sha256": m.provenance.source_sha256 });
    print(value, json, || {
        format!("wrote {} ({} parameters, {:.1} GFLOPs per patch)", out.display(), m.params, m.flops_per_patch as f64 / 1e9)
    });
    Ok(())
}

pub fn bench(path: &Path, model: &str, backends: &str, repeat: usize, json: bool) -> Result<(), CliError> {
    let bytes = read_file(path)?;
    let mut rows = Vec::new();
    for name in backends.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let opened = match open_device(name) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("skipping {name}: {}", e.0);
                rows.push(json!({ "backend": name, "error": e.0 }));
                continue;
            }
        };
        let backend = opened.backend;
        let model = load_model(model, false, &opened.device)?;
        // The first run compiles kernels and warms allocators; it is reported apart.
        let (_, warm) = run_segmentation(&bytes, &model, &opened, SegmentOptions::default())?;
        let mut runs = Vec::new();
        let mut conv_ms = Vec::new();
        for _ in 0..repeat.max(1) {
            let conv_start = crate::kernels::conv_ms();
            let (_, seg) = run_segmentation(&bytes, &model, &opened, SegmentOptions::default())?;
            runs.push(seg.timings_ms);
            conv_ms.push(crate::kernels::conv_ms() - conv_start);
        }
        let gflop = warm.conv_flops as f64 / 1e9;
        let conv = if backend == crate::inference::Backend::Cpu { crate::kernels::cpu_conv().name() } else { "wgpu" };
        if !json {
            for (t, c) in runs.iter().zip(&conv_ms) {
                println!(
                    "{:>5}  conv {:<8} read {:>7.0}  preprocess {:>7.0}  inference {:>8.0} (of which convolutions {:>8.0})  postprocess {:>7.0}  total {:>8.0} ms  {:>6.1} GFLOP/s  (warm-up total {:.0} ms)",
                    backend.name(), conv, t.read, t.preprocess, t.inference, c, t.postprocess, t.total, gflop / (t.inference / 1e3), warm.timings_ms.total
                );
            }
        }
        let best_inference = runs.iter().map(|t| t.inference).fold(f64::INFINITY, f64::min);
        rows.push(json!({
            "backend": backend.name(), "adapter": opened.adapter, "conv": conv, "threads": rayon_threads(),
            "patch": warm.patch, "windows": warm.windows, "conv_gflop": gflop,
            "gflops": gflop / (best_inference / 1e3), "warmup_ms": warm.timings_ms, "runs_ms": runs,
            "conv_ms": conv_ms,
        }));
    }
    let peak = peak_memory_mb();
    if !json {
        if let Some(mb) = peak {
            println!("peak memory of this process: {mb:.0} MB");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&json!({ "volume": path.display().to_string(), "peak_memory_mb": peak, "results": rows })).expect("serialises"));
    }
    if rows.iter().all(|r| r.get("error").is_some()) {
        return Err(CliError(format!("no backend could run (asked for: {backends})")));
    }
    Ok(())
}

/// The process's peak resident memory (Linux `VmHWM`), in MB.
fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Threads flex's rayon pool runs on (`RAYON_NUM_THREADS`, else every core).
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    })
}

/// Writes `<models_dir>/index.json` from the packages there; with `check`,
/// only verifies that the file on disk is up to date.
pub fn catalog(models_dir: &Path, check: bool, json: bool) -> Result<(), CliError> {
    let entries = crate::model::catalog::build_catalog(models_dir)?;
    let text = serde_json::to_string_pretty(&entries).expect("catalog serialises") + "\n";
    let path = models_dir.join("index.json");
    if check {
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        if on_disk != text {
            return Err(CliError(format!("{} is out of date: run `bedside catalog {}`", path.display(), models_dir.display())));
        }
    } else {
        std::fs::write(&path, &text).map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
    }
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    print(json!({ "index": path.display().to_string(), "models": ids }), json, || {
        format!("{} {}: {}", if check { "checked" } else { "wrote" }, path.display(), ids.join(", "))
    });
    Ok(())
}
