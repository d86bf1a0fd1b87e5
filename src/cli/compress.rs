//! `bedside compress`: a whole package's convolutions as Tucker-2, by a rank
//! rule. `bedside tucker`: one kernel's Tucker-2, its error and its time.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::commands::{open_device, print, read_volume, resolve_model_dir};
use super::kernel_file::read_kernel;
use super::CliError;
use crate::compress::pareto::{ParetoPoint, ParetoSweep, SweepOptions};
use crate::compress::{compress_package, describe, CompressOptions, RankRule};
use crate::metrics::reference_labels;
use crate::tucker::ranks::{BudgetMeasure, ConvGeometry};
use crate::tucker::{partial_tucker2, HooiOptions};

/// The rank rule from the command line's options; exactly one is given.
pub struct RuleOptions {
    pub rank_factor: Option<f64>,
    pub min_rank: usize,
    pub energy: Option<f64>,
    pub evbmf: bool,
    pub budget_flops: Option<f64>,
    pub budget_params: Option<f64>,
}

impl RuleOptions {
    fn rule(&self) -> Result<RankRule, CliError> {
        let mut rules = Vec::new();
        if let Some(factor) = self.rank_factor {
            rules.push(RankRule::Factor { factor, min_rank: self.min_rank });
        }
        if let Some(energy) = self.energy {
            rules.push(RankRule::Energy { energy });
        }
        if self.evbmf {
            rules.push(RankRule::Evbmf);
        }
        if let Some(fraction) = self.budget_flops {
            rules.push(RankRule::Budget { fraction, measure: BudgetMeasure::Flops });
        }
        if let Some(fraction) = self.budget_params {
            rules.push(RankRule::Budget { fraction, measure: BudgetMeasure::Params });
        }
        match rules.len() {
            1 => Ok(rules.remove(0)),
            0 => Err(CliError("choose a rank rule: --rank-factor F, --energy E, --evbmf, --budget-flops X or --budget-params X".into())),
            _ => Err(CliError("give one rank rule, not several".into())),
        }
    }
}

pub fn compress(model: &str, rule: &RuleOptions, out: &Path, report_path: Option<&Path>, json: bool) -> Result<(), CliError> {
    let rule = rule.rule()?;
    let dir = resolve_model_dir(model)?;
    let (model_json, weights) = read_package_files(&dir)?;
    let clock = Instant::now();
    let now_ms = || clock.elapsed().as_secs_f64() * 1e3;
    let mut progress = |done: usize, total: usize, layer: &str| {
        if done < total {
            eprintln!("[compress] {}/{total} {layer}", done + 1);
        }
        true
    };
    let compressed = compress_package(&model_json, &weights, &rule, &CompressOptions::default(), &now_ms, &mut progress)
        .map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    let r = &compressed.report;

    std::fs::create_dir_all(out).map_err(|e| CliError(format!("cannot create {}: {e}", out.display())))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(|e| CliError(format!("cannot write {}: {e}", p.display())))
    };
    write("weights.safetensors", &compressed.weights)?;
    let manifest = serde_json::to_string_pretty(&compressed.manifest).expect("manifest serialises") + "\n";
    write("model.json", manifest.as_bytes())?;
    let report = serde_json::to_value(r).expect("report serialises");
    if let Some(path) = report_path {
        std::fs::write(path, serde_json::to_string_pretty(&report).expect("JSON") + "\n")
            .map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
    }
    let factorised = r.layers.iter().filter(|l| l.ranks.is_some()).count();
    print(report, json, || {
        format!(
            "wrote {} ({}): {factorised} of {} convolutions factorised; parameters {} → {} ({:.1}% fewer), GFLOPs per patch {:.1} → {:.1} ({:.1}% fewer); decomposed in {:.1} s",
            out.display(),
            describe(&rule),
            r.layers.len(),
            r.params_before,
            r.params_after,
            100.0 * (1.0 - r.params_after as f64 / r.params_before as f64),
            r.flops_before as f64 / 1e9,
            r.flops_after as f64 / 1e9,
            100.0 * (1.0 - r.flops_after as f64 / r.flops_before as f64),
            r.ms / 1e3
        )
    });
    Ok(())
}

/// A package folder's `model.json` text and `weights.safetensors` bytes, as
/// the library's byte-level functions (shared with the page) take them.
fn read_package_files(dir: &Path) -> Result<(String, Vec<u8>), CliError> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read(&p).map_err(|e| CliError(format!("cannot read {}: {e}", p.display())))
    };
    let model_json = String::from_utf8(read("model.json")?).map_err(|_| CliError("model.json is not UTF-8".into()))?;
    Ok((model_json, read("weights.safetensors")?))
}

pub fn tucker(kernel: &str, ranks: &str, json: bool) -> Result<(), CliError> {
    let ranks = parse_ranks(ranks)?;
    let k = read_kernel(kernel)?;
    let started = Instant::now();
    let t = partial_tucker2(&k.shape, &k.values, ranks, &HooiOptions::default())
        .map_err(|e| CliError(format!("{kernel}: {e}")))?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let geometry = ConvGeometry {
        out_channels: k.shape[0],
        in_channels: k.shape[1],
        kernel_volume: k.shape[2..].iter().product(),
        in_voxels: 1,
        out_voxels: 1,
    };
    let (params_before, params_after) = (geometry.params(), geometry.factorised_params(ranks));
    let value = json!({
        "kernel": kernel,
        "shape": k.shape,
        "ranks": ranks,
        "rel_error": t.rel_error,
        "sweep_errors": t.sweep_errors,
        "sweeps": t.sweep_errors.len(),
        "ms": ms,
        "params_before": params_before,
        "params_after": params_after,
    });
    print(value, json, || {
        format!(
            "{kernel} {:?} at ranks [{}, {}]: relative error {:.6} after {} sweeps, {ms:.1} ms; {params_before} → {params_after} weights",
            k.shape,
            ranks[0],
            ranks[1],
            t.rel_error,
            t.sweep_errors.len()
        )
    });
    Ok(())
}

/// `R_OUT,R_IN`.
fn parse_ranks(text: &str) -> Result<[usize; 2], CliError> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [a, b] => match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => Ok([a, b]),
            _ => Err(CliError(format!("--ranks {text}: two whole numbers R_OUT,R_IN"))),
        },
        _ => Err(CliError(format!("--ranks {text}: give R_OUT,R_IN"))),
    }
}

/// `bedside pareto`: the model and its Tucker-2 at each factor, timed on one
/// backend and compared with the original (and a reference mask).
#[allow(clippy::too_many_arguments)]
pub fn pareto(model: &str, image: &Path, reference_path: Option<&Path>, factors: &str, min_rank: usize, margin: f64, backend: &str, warmup: Option<bool>, json: bool) -> Result<(), CliError> {
    let factors = crate::compress::pareto::parse_factors(factors).map_err(|e| CliError(format!("--factors {factors}: {e}")))?;
    let dir = resolve_model_dir(model)?;
    let (model_json, weights) = read_package_files(&dir)?;
    let volume = read_volume(image)?;
    let source = crate::model::package::parse_manifest(&model_json).map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    let reference = match reference_path {
        Some(r) => {
            let mask = read_volume(r)?;
            if mask.dims != volume.dims {
                return Err(CliError(format!("{}: reference grid {:?} differs from the image's {:?}", r.display(), mask.dims, volume.dims)));
            }
            Some(reference_labels(&mask.data, &source.labels))
        }
        None => None,
    };
    let opened = open_device(backend)?;
    // On wgpu each model's first run compiles its kernels: time the second by default.
    let warmup = warmup.unwrap_or(opened.adapter.is_some());
    let options = SweepOptions { factors, min_rank, margin, warmup };
    let mut on_point = |so_far: &ParetoSweep| {
        if let Some(p) = so_far.points.last() {
            eprintln!("[pareto] {}", point_line(p));
        }
        true
    };
    let mut last = String::new();
    let mut progress = |what: &str, _: f64| {
        if what != last {
            last = what.to_string();
            if what.starts_with("Decomposing") {
                eprintln!("[pareto] {what}");
            }
        }
        true
    };
    let sweep = pollster::block_on(crate::compress::pareto::sweep(&model_json, &weights, &volume, reference.as_deref(), &options, &opened, &mut on_point, &mut progress))
        .map_err(|e| CliError(format!("{}: {e}", dir.display())))?;
    let value = json!({
        "model": sweep.source_id,
        "volume": image.display().to_string(),
        "reference": reference_path.map(|r| r.display().to_string()),
        "backend": opened.backend.name(),
        "adapter": opened.adapter,
        "warmup": warmup,
        "sweep": sweep,
    });
    print(value, json, || {
        let mut lines: Vec<String> = sweep.points.iter().map(point_line).collect();
        lines.push(match sweep.fastest_passing {
            Some(i) => format!("fastest within the margin of {}: {}", sweep.margin, point_name(&sweep.points[i])),
            None => format!("no model stays within the margin of {}", sweep.margin),
        });
        lines.join("\n")
    });
    Ok(())
}

fn point_name(p: &ParetoPoint) -> String {
    match p.factor {
        None => "the original".into(),
        Some(f) => format!("factor {f:.2}"),
    }
}

fn point_line(p: &ParetoPoint) -> String {
    let reference = p
        .dice_vs_reference
        .as_ref()
        .map(|d| d.iter().map(|l| format!("{} {:.4}", l.name, l.dice)).collect::<Vec<_>>().join(", "))
        .map_or(String::new(), |d| format!("  vs reference {d}"));
    format!(
        "{:>12}  params {:>10}  GFLOP {:>7.1}  {:>9.0} ms (inference {:>8.0})  Dice vs original {:.4} ({}){reference}  {}",
        point_name(p),
        p.params,
        p.flops as f64 / 1e9,
        p.ms,
        p.inference_ms,
        p.verdict.worst_dice,
        p.verdict.worst_label,
        if p.verdict.passes { "PASS" } else { "FAIL" }
    )
}
