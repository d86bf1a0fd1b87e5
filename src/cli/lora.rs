//! `bedside lora train` and `bedside lora merge`, and the `--adapter` of `segment` and `evaluate`:
//! a LoRA adapter folder (`adapter_config.json`, `adapter_model.safetensors`)
//! put on its base model, refused on any other.

use std::path::Path;

use burn::tensor::Device;
use serde_json::json;

use super::commands::{print, read_file, read_volume, resolve_model_dir};
use super::CliError;
use crate::distill::engine::LossRecord;
use crate::lora::adapter::{merged_model as fold_adapter, Adapter, CONFIG_FILE, WEIGHTS_FILE};
use crate::lora::train::{mask_labels, Adaptation, Teaching, TrainOptions};
use crate::lora::{LoraConfig, Trainables};
use crate::model::package::parse_manifest;
use crate::model::Model;
use crate::volume::Volume;

/// Reads an adapter folder.
pub fn read_adapter(dir: &Path) -> Result<Adapter, CliError> {
    let config = String::from_utf8(read_file(&dir.join(CONFIG_FILE))?)
        .map_err(|_| CliError(format!("{} is not UTF-8", dir.join(CONFIG_FILE).display())))?;
    Adapter::from_files(&config, read_file(&dir.join(WEIGHTS_FILE))?).map_err(|e| CliError(format!("{}: {e}", dir.display())))
}

/// The package in `dir` with the adapter in `adapter_dir` folded into its
/// network (which then computes what the adapted one does, with no extra
/// layers) under an adapted manifest, each file read once; and the adapter.
fn merged_model(dir: &Path, adapter_dir: &Path, device: &Device) -> Result<(Model, Adapter), CliError> {
    let adapter = read_adapter(adapter_dir)?;
    let json = String::from_utf8(read_file(&dir.join("model.json"))?).map_err(|_| CliError(format!("{}: model.json is not UTF-8", dir.display())))?;
    let manifest = parse_manifest(&json).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    let base = read_file(&dir.join("weights.safetensors"))?;
    let model = fold_adapter(&manifest, &base, &adapter, device).map_err(|e| CliError(format!("{}: {e}", adapter_dir.display())))?;
    Ok((model, adapter))
}

/// The model `model`, with `adapter` merged into it when one is given.
pub(super) fn load_model_with(model: &str, ensemble: bool, adapter: Option<&Path>, device: &Device) -> Result<Model, CliError> {
    let Some(adapter_dir) = adapter else {
        return super::commands::load_model(model, ensemble, device);
    };
    if ensemble {
        return Err(CliError("an adapter belongs to one network: leave out --ensemble with --adapter".into()));
    }
    Ok(merged_model(&resolve_model_dir(model)?, adapter_dir, device)?.0)
}

/// `bedside lora merge`: writes a plain package with the adapter folded in.
pub fn merge(model: &str, adapter_dir: &Path, out: &Path, json: bool) -> Result<(), CliError> {
    let dir = resolve_model_dir(model)?;
    let (merged, adapter) = merged_model(&dir, adapter_dir, &Device::flex())?;
    let base_id = adapter.config.base_model_name_or_path.clone();
    merged.save_dir(out).map_err(|e| CliError(format!("{}: {e}", out.display())))?;
    let value = json!({
        "base": dir.display().to_string(),
        "adapter": adapter_dir.display().to_string(),
        "out": out.display().to_string(),
        "layers": adapter.config.target_modules.len(),
        "r": adapter.config.r,
    });
    print(value, json, || {
        format!(
            "wrote {} ({base_id} with the adapter of {} layers at r = {} folded in)",
            out.display(),
            adapter.config.target_modules.len(),
            adapter.config.r
        )
    });
    Ok(())
}

/// What `bedside lora train` is given.
pub struct TrainArgs<'a> {
    pub model: &'a str,
    /// IMAGE:MASK pairs.
    pub data: &'a [String],
    pub val: Option<&'a str>,
    /// A teacher for the KD term, and volumes without masks it labels.
    pub teacher: Option<&'a str>,
    pub unlabelled: &'a [std::path::PathBuf],
    pub lora: LoraConfig,
    pub options: TrainOptions,
    pub out: &'a Path,
}

fn image_and_mask(pair: &str) -> Result<(Volume, Vec<u8>), CliError> {
    let (image, mask) = pair
        .split_once(':')
        .ok_or_else(|| CliError(format!("\"{pair}\": give each labelled volume as IMAGE:MASK")))?;
    let (image_path, mask_path) = (Path::new(image), Path::new(mask));
    let volume = read_volume(image_path)?;
    let labels = mask_labels(&volume, &read_volume(mask_path)?).map_err(|e| CliError(format!("{}: {e}", mask_path.display())))?;
    Ok((volume, labels))
}

/// Peak resident memory of this process so far, in MB (Linux), for the report.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `bedside lora train`: an adapter for `model` from labelled volumes,
/// written as an adapter folder.
pub fn train(args: &TrainArgs, json: bool) -> Result<(), CliError> {
    let device = Device::flex();
    let dir = resolve_model_dir(args.model)?;
    let base_json = String::from_utf8(read_file(&dir.join("model.json"))?).map_err(|_| CliError("model.json is not UTF-8".into()))?;
    let base_weights = read_file(&dir.join("weights.safetensors"))?;
    let labelled = args.data.iter().map(|p| image_and_mask(p)).collect::<Result<Vec<_>, _>>()?;
    if labelled.is_empty() {
        return Err(CliError("give at least one --data IMAGE:MASK".into()));
    }
    let val = args.val.map(image_and_mask).transpose()?;
    let teacher = args.teacher.map(|t| super::commands::load_model(t, false, &device)).transpose()?;
    if teacher.is_none() && !args.unlabelled.is_empty() {
        return Err(CliError("--unlabelled volumes learn from a teacher's outputs: give --teacher too".into()));
    }
    let unlabelled = args.unlabelled.iter().map(|p| read_volume(p)).collect::<Result<Vec<_>, _>>()?;
    let teaching = teacher.as_ref().map(|teacher| Teaching { teacher, unlabelled: &unlabelled });
    let t0 = std::time::Instant::now();
    let mut run = pollster::block_on(Adaptation::new(&base_json, base_weights.clone(), args.lora.clone(), &labelled, teaching, args.options.clone(), &device))?;
    let prepare_s = t0.elapsed().as_secs_f64();
    let validate = |run: &Adaptation| -> Result<Option<f64>, CliError> {
        val.as_ref().map(|(v, m)| pollster::block_on(run.validation_dice(v, m, &device)).map_err(CliError::from)).transpose()
    };
    let val_before = validate(&run)?;
    if !json {
        eprintln!(
            "adapting {} ({} trainable parameters of {}, {:.2}%) on {} volume(s) for {} steps",
            args.model,
            run.trainable,
            run.total,
            100.0 * run.trainable as f64 / run.total as f64,
            labelled.len(),
            args.options.steps
        );
    }
    let t1 = std::time::Instant::now();
    let chunk = 10;
    while run.steps_done() < args.options.steps {
        let n = chunk.min(args.options.steps - run.steps_done());
        let records = pollster::block_on(run.steps(n))?;
        if !json {
            let r = records.last().expect("n > 0");
            let kd = if run.cfg.loss.kd > 0.0 { format!(", T²·KL {:.4}", r.kd) } else { String::new() };
            eprintln!("  step {:>4}  loss {:.4}  (cross-entropy {:.4}, Dice loss {:.4}{kd})", r.step, r.total, r.cross_entropy, r.dice);
        }
    }
    let train_s = t1.elapsed().as_secs_f64();
    let val_after = validate(&run)?;
    std::fs::create_dir_all(args.out).map_err(|e| CliError(format!("cannot create {}: {e}", args.out.display())))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = args.out.join(name);
        std::fs::write(&p, bytes).map_err(|e| CliError(format!("cannot write {}: {e}", p.display())))
    };
    // A full fine-tuning is a whole package; every other choice an adapter.
    let saved_bytes = if args.options.trainables == Trainables::Full {
        let (manifest, weights) = pollster::block_on(run.package())?;
        write("weights.safetensors", &weights)?;
        write("model.json", (serde_json::to_string_pretty(&manifest).expect("plain data") + "\n").as_bytes())?;
        weights.len()
    } else {
        let adapter = pollster::block_on(run.adapter())?;
        write(WEIGHTS_FILE, &adapter.weights)?;
        write(CONFIG_FILE, adapter.config_json().as_bytes())?;
        adapter.weights.len()
    };
    let csv: String = std::iter::once(LossRecord::CSV_HEADER.to_string()).chain(run.history.iter().map(|r| r.csv())).collect::<Vec<_>>().join("\n") + "\n";
    write("losses.csv", csv.as_bytes())?;
    let value = json!({
        "model": args.model,
        "out": args.out.display().to_string(),
        "r": args.lora.rank,
        "lora_alpha": args.lora.alpha,
        "targets": args.lora.targets,
        "adapted_layers": run.plan.len(),
        "trainable_params": run.trainable,
        "total_params": run.total,
        "trainable_share": run.trainable as f64 / run.total as f64,
        "trainables": args.options.trainables.name(),
        "teacher": args.teacher,
        "kd": run.cfg.loss.kd,
        "unlabelled": args.unlabelled.len(),
        "adapter_bytes": saved_bytes,
        "base_bytes": base_weights.len(),
        "steps": run.steps_done(),
        "prepare_s": prepare_s,
        "train_s": train_s,
        "final_loss": run.history.last().map(|r| r.total),
        "val_dice_before": val_before,
        "val_dice_after": val_after,
        "peak_rss_mb": peak_rss_mb(),
    });
    print(value, json, || {
        let val = match (val_before, val_after) {
            (Some(b), Some(a)) => format!("\n  validation Dice {b:.4} -> {a:.4}"),
            _ => String::new(),
        };
        format!(
            "wrote {} ({}: {} layers at r = {}, {} trainable parameters, {:.1} KB; the base's weights are {:.1} KB)\n  {} steps in {:.1} s ({:.1} s preparing){val}",
            args.out.display(),
            args.options.trainables.name(),
            run.plan.len(),
            args.lora.rank,
            run.trainable,
            saved_bytes as f64 / 1024.0,
            base_weights.len() as f64 / 1024.0,
            run.steps_done(),
            train_s,
            prepare_s
        )
    });
    Ok(())
}
