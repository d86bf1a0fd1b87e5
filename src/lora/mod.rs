//! LoRA adapters on 3D convolutions (PEFT's scheme): the base weights stay
//! frozen and a low-rank update is learnt beside each targeted convolution,
//! so a site adapts a model to its own scans with a file of kilobytes.
//!
//! This module answers *which* layers get an adapter and how large
//! ([`LoraConfig`] → [`AdapterPlan`]); [`layer`] is the adapted convolution
//! and [`adapter`] its files, the base-model check and the merge. The
//! families build adapted layers through the same `ConvBuilder` that builds
//! their plain and factorised ones.
//!
//! On a Tucker-2 factorised layer the adapter sits beside the core (r_in →
//! r_out, the spatial kernel), not beside the whole three-convolution chain:
//! there it adapts the part of the layer that holds the kernel, costs the
//! fewest parameters, and merges exactly into the core, so a merged
//! compressed model stays compressed at the same ranks.

pub mod adapter;
pub mod layer;
pub mod pairs;
pub mod train;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::model::conv::{ConvLayer, ConvSpec};

pub use layer::LoraConv3d;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoraError {
    #[error("LoRA settings: {0}")]
    Config(String),
    #[error("the adapter does not fit: {0}")]
    Mismatch(String),
    #[error("adapter file: {0}")]
    File(String),
}

/// One layer's adapter: rank r and α (the update is scaled by α / r).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdapterSpec {
    pub rank: usize,
    pub alpha: f32,
}

impl AdapterSpec {
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }
}

/// Layer path → its adapter, for the layers that carry one.
pub type AdapterPlan = BTreeMap<String, AdapterSpec>;

static NO_ADAPTERS: AdapterPlan = BTreeMap::new();

/// The plan of a network without adapters.
pub fn no_adapters() -> &'static AdapterPlan {
    &NO_ADAPTERS
}

/// What the user chooses: rank, α, and which convolutions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    /// Comma-separated: `all`, a group (`encoder`, `decoder`, `bottleneck`),
    /// or a layer-name pattern where `*` matches any run of characters
    /// (`context*.conv?` is not a pattern: only `*` is special).
    pub targets: String,
}

/// Where a layer sits in the U shape, from the build order and the levels:
/// the bottleneck is every layer whose input is at the coarsest level; the
/// encoder comes before it and the decoder after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Encoder,
    Bottleneck,
    Decoder,
}

/// The group of each layer in `layers` (build order), None for layers that
/// do not run (HD-BET's deep-supervision heads), which are never targeted.
pub fn groups(layers: &[ConvLayer]) -> Vec<Option<Group>> {
    let deepest = layers.iter().filter(|l| l.runs).map(|l| l.input_level).max().unwrap_or(0);
    let first = layers.iter().position(|l| l.runs && l.input_level == deepest);
    let last = layers.iter().rposition(|l| l.runs && l.input_level == deepest);
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| match (l.runs, first, last) {
            (false, _, _) => None,
            (true, Some(f), _) if i < f => Some(Group::Encoder),
            (true, _, Some(e)) if i > e => Some(Group::Decoder),
            _ => Some(Group::Bottleneck),
        })
        .collect()
}

/// Shell-style match where only `*` is special.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// The convolution an adapter on `layer` sits beside: the layer itself, or
/// its factorised core.
pub fn adapted_kernel(layer: &ConvLayer) -> ConvSpec {
    match layer.ranks {
        Some(r) => layer.spec.core(r),
        None => layer.spec,
    }
}

impl LoraConfig {
    /// The adapters this config gives a network with `layers`: refused when a
    /// target names nothing, or the rank does not fit a targeted kernel.
    pub fn plan(&self, layers: &[ConvLayer]) -> Result<AdapterPlan, LoraError> {
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(LoraError::Config(format!("α must be a positive number, not {}", self.alpha)));
        }
        if self.rank == 0 {
            return Err(LoraError::Config("the rank must be at least 1".into()));
        }
        let groups = groups(layers);
        let mut plan = AdapterPlan::new();
        for target in self.targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let wanted: Box<dyn Fn(&ConvLayer, Option<Group>) -> bool> = match target {
                "all" => Box::new(|_, g| g.is_some()),
                "encoder" => Box::new(|_, g| g == Some(Group::Encoder)),
                "bottleneck" => Box::new(|_, g| g == Some(Group::Bottleneck)),
                "decoder" => Box::new(|_, g| g == Some(Group::Decoder)),
                pattern => Box::new(move |l: &ConvLayer, g| g.is_some() && matches_pattern(pattern, &l.name)),
            };
            let mut matched = false;
            for (layer, group) in layers.iter().zip(&groups) {
                if wanted(layer, *group) {
                    matched = true;
                    plan.insert(layer.name.clone(), AdapterSpec { rank: self.rank, alpha: self.alpha });
                }
            }
            if !matched {
                return Err(LoraError::Config(format!(
                    "\"{target}\" names no convolution of this model (use all, encoder, bottleneck, decoder, or a name pattern such as {}*)",
                    layers.first().map(|l| l.name.split('.').next().unwrap_or("")).unwrap_or("")
                )));
            }
        }
        if plan.is_empty() {
            return Err(LoraError::Config("no target convolutions given".into()));
        }
        // A rank above a layer's full rank only over-parameterises it (PEFT
        // allows it, and "all" must work on 2-class heads); a rank above
        // every targeted layer's is a mistake.
        let full = |l: &ConvLayer| {
            let k = adapted_kernel(l);
            k.out_channels.min(k.in_channels * k.kernel.pow(3))
        };
        let largest = layers.iter().filter(|l| plan.contains_key(&l.name)).map(full).max().unwrap_or(0);
        if self.rank > largest {
            return Err(LoraError::Config(format!(
                "rank {} is above the full rank of every targeted convolution (the largest is {largest}): choose at most {largest}",
                self.rank
            )));
        }
        Ok(plan)
    }
}

/// Parameters the adapters in `plan` add to a network with `layers`.
pub fn adapter_params(layers: &[ConvLayer], plan: &AdapterPlan) -> usize {
    layers
        .iter()
        .filter_map(|l| plan.get(&l.name).map(|a| (adapted_kernel(l), a.rank)))
        .map(|(k, r)| r * k.in_channels * k.kernel.pow(3) + k.out_channels * r)
        .sum()
}

/// Is `path` (a tensor's module path) one of an adapter's tensors?
pub fn is_adapter_tensor(path: &str) -> bool {
    path.split('.').any(|s| s == "lora_A" || s == "lora_B")
}

/// Which parameters learn in an adaptation. The comparison asks for
/// all four: LoRA alone, LoRA with the normalisation affines and biases
/// (counted apart), those alone, and full fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trainables {
    Adapters,
    AdaptersNormsBiases,
    NormsBiases,
    Full,
}

impl Trainables {
    pub fn parse(name: &str) -> Result<Self, LoraError> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            LoraError::Config(format!("\"{name}\": trainables are adapters, adapters-norms-biases, norms-biases or full"))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Trainables::Adapters => "adapters",
            Trainables::AdaptersNormsBiases => "adapters-norms-biases",
            Trainables::NormsBiases => "norms-biases",
            Trainables::Full => "full",
        }
    }

    /// Whether the network gets adapters at all.
    pub fn adapters(self) -> bool {
        matches!(self, Trainables::Adapters | Trainables::AdaptersNormsBiases)
    }

    /// Does the parameter at `path` (a tensor's module path) learn?
    pub fn learns(self, path: &str) -> bool {
        let adapter = is_adapter_tensor(path);
        let norm_or_bias = !adapter && matches!(path.rsplit('.').next(), Some("bias" | "gamma" | "beta"));
        match self {
            Trainables::Adapters => adapter,
            Trainables::AdaptersNormsBiases => adapter || norm_or_bias,
            Trainables::NormsBiases => norm_or_bias,
            Trainables::Full => true,
        }
    }
}

/// Switches gradients off for every parameter of `module` that does not
/// learn under `trainables`, so a training step touches, and keeps
/// optimizer state for, those that do.
pub fn freeze_all_but<M: Module>(module: M, trainables: Trainables) -> M {
    struct Freezer {
        path: Vec<String>,
        trainables: Trainables,
    }
    impl ModuleMapper for Freezer {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            // The path holds the parameter's own field name last.
            let learns = self.trainables.learns(&self.path.join("."));
            param.set_require_grad(learns)
        }
    }
    module.map(&mut Freezer { path: Vec::new(), trainables })
}

// Native only: they block on the async runs with pollster (not a wasm dependency).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
