//! `bedside distill` and `bedside evaluate`: training students and measuring
//! any model against reference masks and against another model.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::commands::{load_model, open_device, print, quality_line, read_volume, segment_volume};
use super::CliError;
use crate::distill::run::{default_cache_dir, run, RunOptions};
use crate::inference::pipeline::SegmentOptions;
use crate::metrics::{dice, hd95};
use crate::model::manifest::Evaluation;

pub fn distill(config: &Path, out: &Path, cache: Option<&Path>, resume: bool, backend: &str, json: bool) -> Result<(), CliError> {
    let opened = open_device(backend)?;
    let machine = match &opened.adapter {
        Some(adapter) => format!("{} on {adapter}", opened.backend.name()),
        None => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            // flex's thread pool honours RAYON_NUM_THREADS (set when runs share the machine).
            let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(cores);
            format!("{} ({threads} of {cores} threads, {})", opened.backend.name(), std::env::consts::ARCH)
        }
    };
    let opts = RunOptions {
        config: config.to_path_buf(),
        out: out.to_path_buf(),
        cache: cache.map(Path::to_path_buf).unwrap_or_else(default_cache_dir),
        resume,
        device: opened.device,
        machine,
    };
    let mut log = |m: &str| eprintln!("[distill] {m}");
    let report = run(&opts, &mut log)?;
    let value = serde_json::to_value(&report).expect("report serialises");
    print(value, json, || {
        format!(
            "wrote {} ({} parameters, {:.2} GFLOPs per patch); {} steps in {:.0} s, loss {:.4} → {:.4}",
            report.package.display(),
            report.params,
            report.flops_per_patch as f64 / 1e9,
            report.steps,
            report.train_seconds,
            report.first_loss.unwrap_or(f64::NAN),
            report.last_loss.unwrap_or(f64::NAN)
        )
    });
    Ok(())
}

/// One volume to evaluate, with its independent reference mask if any.
pub struct EvalVolume {
    pub image: PathBuf,
    pub reference: Option<PathBuf>,
}

/// Segments each volume with `model` (and `against`, when given) and prints
/// Dice and HD95 against the reference masks and against the other model.
/// With `record`, the rows against references go into the package's model.json.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    model: &str,
    adapter: Option<&Path>,
    volumes: &[EvalVolume],
    pick: super::commands::Pick,
    against: Option<&str>,
    backend: &str,
    record: bool,
    mirror_check: bool,
    json: bool,
) -> Result<(), CliError> {
    if record && adapter.is_some() {
        return Err(CliError("--record writes the base model's figures: leave it out with --adapter".into()));
    }
    let opened = open_device(backend)?;
    let m = super::lora::load_model_with(model, false, adapter, &opened.device)?;
    let other = against.map(|a| load_model(a, false, &opened.device)).transpose()?;
    let mut rows = Vec::new();
    // Each volume's quality warning, as `bedside segment` words it (None when trusted).
    let mut warnings: Vec<Option<String>> = Vec::new();
    let mut recorded = Vec::new();
    for v in volumes {
        let (volume, _) = super::commands::load(&v.image, pick)?;
        let seg = segment_volume(&volume, &m, &opened, SegmentOptions { mirror_check, ..SegmentOptions::default() })?;
        let name = v.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut row = json!({ "volume": name, "ms": seg.timings_ms.total, "quality": seg.quality });
        warnings.push((!seg.quality.trusted()).then(|| quality_line(&seg.quality)));
        let score = |labels: &[u8], reference: &[u8], label: String| -> Evaluation {
            let d = dice(labels, reference);
            let h = hd95(labels, reference, volume.dims, volume.spacing).unwrap_or(f64::INFINITY);
            Evaluation { volume: name.clone(), reference: label, dice: d, hd95_mm: h }
        };
        if let Some(r) = &v.reference {
            let reference = read_volume(r)?;
            if reference.dims != volume.dims {
                return Err(CliError(format!("{}: reference grid {:?} differs from the image's {:?}", r.display(), reference.dims, volume.dims)));
            }
            let mask: Vec<u8> = reference.data.iter().map(|&x| (x > 0.0) as u8).collect();
            let r_name = r.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let e = score(&seg.labels, &mask, format!("{r_name} > 0"));
            row["reference"] = json!({ "mask": r_name, "dice": e.dice, "hd95_mm": e.hd95_mm });
            recorded.push(e);
        }
        if let Some(o) = &other {
            let oseg = segment_volume(&volume, o, &opened, SegmentOptions::default())?;
            let e = score(&seg.labels, &oseg.labels, format!("model {}", o.manifest.id));
            row["against"] = json!({ "model": o.manifest.id, "dice": e.dice, "hd95_mm": e.hd95_mm, "ms": oseg.timings_ms.total });
        }
        eprintln!("[evaluate] {row}");
        rows.push(row);
    }
    if record {
        let dir = super::commands::resolve_model_dir(model)?;
        let path = dir.join("model.json");
        let mut manifest = m.manifest.clone();
        // Replace rows for the same (volume, reference), keep the others.
        manifest.evaluation.retain(|old| !recorded.iter().any(|n| n.volume == old.volume && n.reference == old.reference));
        manifest.evaluation.extend(recorded);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises") + "\n";
        std::fs::write(&path, text).map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
    }
    let value = json!({ "model": m.manifest.id, "backend": opened.backend.name(), "volumes": rows });
    print(value.clone(), json, || {
        rows.iter()
            .zip(&warnings)
            .map(|(r, warning)| {
                let mut line = format!("{}:", r["volume"].as_str().unwrap_or(""));
                if let Some(x) = r.get("reference") {
                    line += &format!("  vs {} Dice {:.4} HD95 {:.2} mm", x["mask"].as_str().unwrap_or(""), x["dice"].as_f64().unwrap_or(f64::NAN), x["hd95_mm"].as_f64().unwrap_or(f64::NAN));
                }
                if let Some(x) = r.get("against") {
                    line += &format!("  vs {} Dice {:.4} HD95 {:.2} mm", x["model"].as_str().unwrap_or(""), x["dice"].as_f64().unwrap_or(f64::NAN), x["hd95_mm"].as_f64().unwrap_or(f64::NAN));
                }
                if let Some(w) = warning {
                    line += &format!("  {w}");
                }
                line
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
