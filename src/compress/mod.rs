//! Compressing a model package: every convolution's kernel replaced by its
//! Tucker-2 (three smaller convolutions), at ranks a rule chooses, as Weber
//! et al. do for TotalSegmentator. Runs on the package's bytes, so the page
//! (in its worker) and the CLI share it.
//!
//! The result is an ordinary package: the source's manifest with a
//! `compression` section (source, rule, each factorised layer's ranks and
//! report), and weights in which a factorised layer's tensors are
//! `name.first.weight`, `name.core.weight`, `name.last.weight` (+ `.bias`).

pub mod pareto;
pub mod verdict;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::conv::{factorised_tensors, ConvLayer};
use crate::model::manifest::{Compression, Manifest};
use crate::model::package::{f32_safetensors, parse_manifest, ModelError};
use crate::model::Network;
use crate::tucker::hooi::channel_spectra;
use crate::tucker::ranks::{budget_ranks, energy_ranks, evbmf_ranks, factor_ranks, BudgetLayer, BudgetMeasure};
use crate::tucker::{partial_tucker2, HooiOptions, TuckerError};

/// How ranks are chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RankRule {
    /// `ceil(channels · factor)`, at least `min_rank` (Weber et al.).
    Factor { factor: f64, min_rank: usize },
    /// Keep this fraction (0–1) of each unfolding's energy.
    Energy { energy: f64 },
    /// EVBMF's rank of each unfolding (Kim et al.).
    Evbmf,
    /// The whole model at `fraction` of its parameters or FLOPs.
    Budget { fraction: f64, measure: BudgetMeasure },
}

impl RankRule {
    /// Short tag for ids and file names.
    pub fn tag(&self) -> String {
        match self {
            RankRule::Factor { factor, .. } => format!("f{factor:.2}"),
            RankRule::Energy { energy } => format!("e{energy:.3}"),
            RankRule::Evbmf => "evbmf".into(),
            RankRule::Budget { fraction, measure } => format!("{measure:?}{fraction:.2}").to_lowercase(),
        }
    }

    fn check(&self) -> Result<(), CompressError> {
        let ok = match self {
            RankRule::Factor { factor, .. } => *factor > 0.0 && *factor <= 1.0,
            RankRule::Energy { energy } => *energy > 0.0 && *energy <= 1.0,
            RankRule::Evbmf => true,
            RankRule::Budget { fraction, .. } => *fraction > 0.0 && *fraction <= 1.0,
        };
        if ok {
            Ok(())
        } else {
            Err(CompressError::Rule(format!("{self:?}: factors, energies and budgets lie in (0, 1]")))
        }
    }
}

/// One convolution, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub name: String,
    /// The kernel's shape `[out, in, k…]`.
    pub shape: Vec<usize>,
    /// `[r_out, r_in]`, or null when the layer stays whole.
    pub ranks: Option<[usize; 2]>,
    /// ‖W − Ŵ‖ / ‖W‖ (0 for a whole layer).
    pub rel_error: f64,
    pub params_before: u64,
    pub params_after: u64,
    /// On one patch of the model's `patch_size`.
    pub flops_before: u64,
    pub flops_after: u64,
    /// Why a layer stays whole, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whole_because: Option<String>,
    /// Time its decomposition took.
    pub ms: f64,
}

/// The whole compression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressReport {
    pub source_id: String,
    pub rule: RankRule,
    pub layers: Vec<LayerReport>,
    /// Whole model (every tensor; FLOPs of the convolutions on one patch).
    pub params_before: u64,
    pub params_after: u64,
    pub flops_before: u64,
    pub flops_after: u64,
    /// The fractions saved, `1 − after / before`, as the page shows them.
    #[serde(default)]
    pub params_saved: f64,
    #[serde(default)]
    pub flops_saved: f64,
    /// Decomposing every layer, in milliseconds.
    pub ms: f64,
}

/// `1 − after / before`; 0 for nothing before.
fn saved(before: u64, after: u64) -> f64 {
    if before == 0 {
        0.0
    } else {
        1.0 - after as f64 / before as f64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("layer {layer}: {error}")]
    Tucker { layer: String, error: TuckerError },
    #[error("rank rule: {0}")]
    Rule(String),
    #[error("{0} is already compressed; compress its source instead")]
    AlreadyCompressed(String),
    #[error("cancelled")]
    Cancelled,
}

/// How to decompose, beyond the rank rule.
#[derive(Debug, Clone, Default)]
pub struct CompressOptions {
    pub hooi: HooiOptions,
    /// Factorise even the layers whose factorised form costs at least as many
    /// FLOPs (tests use it to check that full ranks reproduce the model).
    pub factorise_all: bool,
}

/// The compressed package: manifest, weights, report.
pub struct Compressed {
    pub manifest: Manifest,
    pub weights: Vec<u8>,
    pub report: CompressReport,
}

/// Compresses the package (`model.json` text, weights bytes) by `rule`.
/// `progress(done, total, layer)` is called before each layer; returning
/// false cancels. `now_ms` is the clock (the browser's and the CLI's differ).
pub fn compress_package(
    model_json: &str,
    weights: &[u8],
    rule: &RankRule,
    options: &CompressOptions,
    now_ms: &dyn Fn() -> f64,
    progress: &mut dyn FnMut(usize, usize, &str) -> bool,
) -> Result<Compressed, CompressError> {
    rule.check()?;
    let source = parse_manifest(model_json)?;
    if source.compression.is_some() {
        return Err(CompressError::AlreadyCompressed(source.id.clone()));
    }
    let patch = source.preprocessing.patch_size;
    let layers = Network::conv_layers(&source)?;
    let tensors = read_f32_tensors(weights)?;
    let kernel = |layer: &ConvLayer| -> Result<&(Vec<usize>, Vec<f32>), CompressError> {
        let name = format!("{}.weight", layer.name);
        tensors
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| CompressError::Model(ModelError::Weights(format!("tensor {name} is missing"))))
    };

    // Ranks for every layer (None: whole), by the rule.
    let started = now_ms();
    let mut chosen: Vec<Option<[usize; 2]>> = Vec::with_capacity(layers.len());
    if let RankRule::Budget { fraction, measure } = rule {
        let mut budget_layers = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            if !progress(i, 2 * layers.len(), &layer.name) {
                return Err(CompressError::Cancelled);
            }
            let (shape, values) = kernel(layer)?;
            let spectra = channel_spectra(shape, values).map_err(|error| CompressError::Tucker { layer: layer.name.clone(), error })?;
            budget_layers.push(BudgetLayer { geometry: layer.geometry(patch), spectra });
        }
        chosen = budget_ranks(&budget_layers, *fraction, *measure).map_err(|e| CompressError::Rule(e.to_string()))?;
    } else {
        for layer in &layers {
            let (shape, values) = kernel(layer)?;
            let channels = [shape[0], shape[1]];
            let ranks = match rule {
                RankRule::Factor { factor, min_rank } => factor_ranks(channels, *factor, *min_rank),
                RankRule::Energy { energy } => energy_ranks(&spectra(layer, shape, values)?, *energy),
                RankRule::Evbmf => evbmf_ranks(shape, &spectra(layer, shape, values)?),
                RankRule::Budget { .. } => unreachable!("handled above"),
            };
            chosen.push(Some(ranks));
        }
    }

    let offset = if matches!(rule, RankRule::Budget { .. }) { layers.len() } else { 0 };
    let total = offset + layers.len();
    let mut reports = Vec::with_capacity(layers.len());
    let mut new_tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut factorised_names = std::collections::BTreeMap::new();
    for (i, (layer, ranks)) in layers.iter().zip(&chosen).enumerate() {
        if !progress(offset + i, total, &layer.name) {
            return Err(CompressError::Cancelled);
        }
        let (shape, values) = kernel(layer)?;
        let g = layer.geometry(patch);
        let flops_before = layer.flops(patch);
        let mut report = LayerReport {
            name: layer.name.clone(),
            shape: shape.clone(),
            ranks: None,
            rel_error: 0.0,
            params_before: g.params(),
            params_after: g.params(),
            flops_before,
            flops_after: flops_before,
            whole_because: None,
            ms: 0.0,
        };
        match ranks {
            None => report.whole_because = Some("the budget was met without it".into()),
            Some(r) if !options.factorise_all && !g.saves_flops(*r) => {
                report.whole_because = Some(format!("ranks {r:?} would not save FLOPs"));
            }
            Some(r) => {
                let t0 = now_ms();
                let t = partial_tucker2(shape, values, *r, &options.hooi)
                    .map_err(|error| CompressError::Tucker { layer: layer.name.clone(), error })?;
                report.ms = now_ms() - t0;
                let bias_name = format!("{}.bias", layer.name);
                let bias = tensors.iter().find(|(n, _)| *n == bias_name).map(|(_, (_, v))| v.as_slice());
                new_tensors.extend(factorised_tensors(&layer.name, &t, bias));
                factorised_names.insert(layer.name.clone(), *r);
                report.ranks = Some(*r);
                report.rel_error = t.rel_error;
                report.params_after = g.factorised_params(*r);
                report.flops_after = if layer.runs { g.factorised_flops(*r) } else { 0 };
            }
        }
        reports.push(report);
    }
    progress(total, total, "");
    let ms = now_ms() - started;

    // The weights: untouched tensors as they were, factorised layers' parts.
    let replaced = |name: &str| {
        name.rsplit_once('.').is_some_and(|(layer, part)| factorised_names.contains_key(layer) && (part == "weight" || part == "bias"))
    };
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> =
        tensors.iter().filter(|(n, _)| !replaced(n)).map(|(n, (s, v))| (n.clone(), s.clone(), v.clone())).collect();
    out.extend(new_tensors);
    let params_before: u64 = tensors.iter().map(|(_, (_, v))| v.len() as u64).sum();
    let params_after: u64 = out.iter().map(|(_, _, v)| v.len() as u64).sum();
    let new_weights = f32_safetensors(&out)?;

    let (flops_before, flops_after) = (reports.iter().map(|r| r.flops_before).sum(), reports.iter().map(|r| r.flops_after).sum());
    let report = CompressReport {
        source_id: source.id.clone(),
        rule: rule.clone(),
        params_before,
        params_after,
        flops_before,
        flops_after,
        params_saved: saved(params_before, params_after),
        flops_saved: saved(flops_before, flops_after),
        layers: reports,
        ms,
    };
    let mut manifest = source.clone();
    manifest.id = format!("{}-tucker-{}", source.id, rule.tag());
    manifest.name = format!("{}, Tucker-2 ({})", source.name, describe(rule));
    manifest.params = params_after;
    manifest.flops_per_patch = report.flops_after;
    // The ensemble's other weights are not compressed, and the old
    // measurements describe the old model.
    manifest.ensemble.clear();
    manifest.evaluation.clear();
    manifest.quality = None;
    manifest.provenance.converted_by = format!("bedside {} compress", env!("CARGO_PKG_VERSION"));
    manifest.compression = Some(Compression {
        source_id: source.id.clone(),
        source_sha256: hex(&Sha256::digest(weights)),
        rule: serde_json::to_value(rule).expect("rule serialises"),
        layers: factorised_names,
        report: report.layers.iter().map(|l| serde_json::to_value(l).expect("report serialises")).collect(),
    });
    // The package must load: the same check the page and the CLI apply.
    Network::conv_layers(&manifest)?;
    Ok(Compressed { manifest, weights: new_weights, report })
}

fn spectra(layer: &ConvLayer, shape: &[usize], values: &[f32]) -> Result<[Vec<f64>; 2], CompressError> {
    channel_spectra(shape, values).map_err(|error| CompressError::Tucker { layer: layer.name.clone(), error })
}

/// "factor 0.5", "energy 0.95", … for names and the page.
pub fn describe(rule: &RankRule) -> String {
    match rule {
        RankRule::Factor { factor, min_rank } if *min_rank > 1 => format!("factor {factor}, min rank {min_rank}"),
        RankRule::Factor { factor, .. } => format!("factor {factor}"),
        RankRule::Energy { energy } => format!("energy {energy}"),
        RankRule::Evbmf => "EVBMF".into(),
        RankRule::Budget { fraction, measure } => format!("{:?} budget {fraction}", measure).to_lowercase(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every f32 tensor of a safetensors file: (name, (shape, values)), in the
/// file's order. NaN or infinite values are refused, as the loader does.
fn read_f32_tensors(bytes: &[u8]) -> Result<Vec<(String, (Vec<usize>, Vec<f32>))>, ModelError> {
    let tensors = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::Weights(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in tensors.iter() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(ModelError::Weights(format!("tensor {name} is {:?}; packages hold f32", view.dtype())));
        }
        let values: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Weights(format!("tensor {name} contains NaN or infinite values")));
        }
        out.push((name.to_string(), (view.shape().to_vec(), values)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use burn::tensor::{Device, Distribution, Tensor};

    fn package(dir: &str) -> (String, Vec<u8>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(dir);
        (std::fs::read_to_string(dir.join("model.json")).unwrap(), std::fs::read(dir.join("weights.safetensors")).unwrap())
    }

    fn run(json: &str, weights: &[u8], rule: RankRule, factorise_all: bool) -> Result<Compressed, CompressError> {
        let options = CompressOptions { factorise_all, ..CompressOptions::default() };
        compress_package(json, weights, &rule, &options, &|| 0.0, &mut |_, _, _| true)
    }

    /// Full ranks on every layer reproduce the model's output (a shipped
    /// student, its real weights).
    #[test]
    fn full_rank_decomposition_reproduces_the_model() {
        let (json, weights) = package("student-s");
        let c = run(&json, &weights, RankRule::Factor { factor: 1.0, min_rank: 1 }, true).unwrap();
        assert_eq!(c.report.layers.iter().filter(|l| l.ranks.is_some()).count(), c.report.layers.len());
        assert!(c.report.layers.iter().all(|l| l.rel_error < 1e-6));
        let device = Device::flex();
        let original = Model::from_package_bytes(&json, weights.clone(), &device).unwrap();
        let manifest = serde_json::to_string(&c.manifest).unwrap();
        let compressed = Model::from_package_bytes(&manifest, c.weights, &device).unwrap();
        let x = Tensor::<5>::random([1, 1, 32, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (original.network.forward(x.clone()), compressed.network.forward(x));
        let gap = (a.clone() - b).abs().max().into_scalar::<f32>() / a.abs().max().into_scalar::<f32>();
        assert!(gap < 1e-4, "{gap}");
    }

    #[test]
    fn budgets_are_met_on_a_real_model() {
        let (json, weights) = package("student-m");
        for (fraction, measure) in [(0.5, BudgetMeasure::Flops), (0.3, BudgetMeasure::Params)] {
            let c = run(&json, &weights, RankRule::Budget { fraction, measure }, false).unwrap();
            let r = &c.report;
            let conv_params = |after: bool| -> u64 { r.layers.iter().map(|l| if after { l.params_after } else { l.params_before }).sum() };
            let (before, after) = match measure {
                BudgetMeasure::Flops => (r.flops_before, r.flops_after),
                BudgetMeasure::Params => (conv_params(false), conv_params(true)),
            };
            assert!(after as f64 <= fraction * before as f64, "{measure:?}: {after} of {before}");
            assert_eq!(c.manifest.flops_per_patch, r.flops_after);
            // What the page shows as "% fewer".
            assert!((r.flops_saved - (1.0 - r.flops_after as f64 / r.flops_before as f64)).abs() < 1e-12);
            assert!((r.params_saved - (1.0 - r.params_after as f64 / r.params_before as f64)).abs() < 1e-12);
            assert!(r.params_saved > 0.0 && r.flops_saved > 0.0);
            // It loads.
            let manifest = serde_json::to_string(&c.manifest).unwrap();
            Model::from_package_bytes(&manifest, c.weights, &Device::flex()).unwrap();
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let (json, weights) = package("student-s");
        let c = run(&json, &weights, RankRule::Factor { factor: 0.5, min_rank: 1 }, false).unwrap();
        assert!(c.manifest.id.starts_with("student-s-tucker-"));
        let again = serde_json::to_string(&c.manifest).unwrap();
        assert!(matches!(run(&again, &c.weights, RankRule::Evbmf, false), Err(CompressError::AlreadyCompressed(_))));
        assert!(matches!(run(&json, &weights, RankRule::Factor { factor: 0.0, min_rank: 1 }, false), Err(CompressError::Rule(_))));
        assert!(matches!(run(&json, &weights, RankRule::Energy { energy: 1.5 }, false), Err(CompressError::Rule(_))));
        assert!(matches!(run(&json, &weights[..1000], RankRule::Evbmf, false), Err(CompressError::Model(_))));
        // NaN in a kernel.
        let mut bad = weights.clone();
        let header = u64::from_le_bytes(bad[..8].try_into().unwrap()) as usize;
        bad[8 + header..8 + header + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        let e = run(&json, &bad, RankRule::Evbmf, false).err().unwrap().to_string();
        assert!(e.contains("NaN"), "{e}");
        // Cancelling stops it.
        let cancelled = compress_package(&json, &weights, &RankRule::Evbmf, &CompressOptions::default(), &|| 0.0, &mut |done, _, _| done < 3);
        assert!(matches!(cancelled, Err(CompressError::Cancelled)));
    }
}
